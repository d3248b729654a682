"""Build the Cython kernels: ext/twotimescale/_NAME.pyx becomes twotimescale._NAME, one
extension module per job, sharing through .pxd files (docs/architecture.rst)."""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so a result does not depend on how the compiler
# chose to vectorise a loop (a replica in a batch equals the same run alone, to the bit).
# -fno-trapping-math: floating-point exception flags are never read, so the compiler may
# evaluate both arms of a select (the activations) and vectorise; values and NaNs unchanged.
# -march=native: the kernels are built where they run (pip install from source); set
# TWOTIMESCALE_PORTABLE=1 to build for any x86-64/ARM machine instead. Results are the same
# bits either way: without contraction or reassociation, vector width changes no rounding.
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
if not os.environ.get("TWOTIMESCALE_PORTABLE"):
    FLAGS.append("-march=native")

# numpy's C random library (random_standard_normal), as in numpy/random/_examples/cython
NPYRANDOM = dict(libraries=["npyrandom"],
                 library_dirs=[os.path.join(np.get_include(), "..", "..", "random", "lib")])

# module -> whether it draws random numbers through numpy's C library
KERNELS = {"network": False, "population": False, "flow": False, "hessian": False,
           "gaussian": False, "sgd_dense": True, "sgd_lockstep": True, "sgd_sorted": True,
           "sgd_gaussian": True}


def kernel(name, draws):
    return Extension(f"twotimescale._{name}", [f"ext/twotimescale/_{name}.pyx"],
                     include_dirs=[np.get_include()], extra_compile_args=FLAGS,
                     **(NPYRANDOM if draws else {}))


setup(ext_modules=cythonize([kernel(name, draws) for name, draws in KERNELS.items()],
                            include_path=["ext"],
                            compiler_directives={"language_level": 3}))
