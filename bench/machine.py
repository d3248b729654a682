"""What a benchmark ran on, printed with its figures. Every bench imports this module before
NumPy: it pins OpenBLAS to one thread. Its idle threads spin after each call, even on tiny
matrices, and here they took the core the kernels ran on: both the kernels and the NumPy
references ran up to 1.7x slower (ramp, m = 20: 40 against 30 ns per SGD step)."""
import os
import platform

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the thread count is set)


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
