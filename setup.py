"""Build the Cython kernels in ext/ as twotimescale._population and twotimescale._dynamics."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so a result does not depend on how the compiler
# chose to vectorise a loop (a replica in a batch equals the same run alone, to the bit).
FLAGS = ["-O3", "-ffp-contract=off"]


def kernel(name, **kwargs):
    return Extension(f"twotimescale._{name}", [f"ext/{name}.pyx"],
                     include_dirs=[np.get_include()], extra_compile_args=FLAGS, **kwargs)


setup(ext_modules=cythonize([kernel("population")], include_path=["ext"],
                            compiler_directives={"language_level": 3}))
