"""What a benchmark ran on, printed with its figures."""
import os
import platform

import numpy as np


def describe():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"NumPy {np.__version__}")


def best_of(fn, number, repeat=5):
    """Smallest mean time of one call over ``repeat`` batches of ``number`` calls, in seconds."""
    import timeit
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number
