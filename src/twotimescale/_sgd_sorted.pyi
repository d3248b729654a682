"""Type stubs of the sorted SGD kernel (ext/twotimescale/_sgd_sorted.pyx)."""
import numpy as np
from numpy.typing import NDArray

from ._network import Net

def sgd_sorted(net: Net, teacher: Net, *, h: float, eps: float, record_steps: NDArray[np.intp],
               a_rec: NDArray[np.float64], u_rec: NDArray[np.float64],
               bit_generator: object = None, noise: float = 0.0, noise_dist: int = 0,
               xs: NDArray[np.float64] | None = None,
               xis: NDArray[np.float64] | None = None,
               published: bool = False) -> tuple[int, int]: ...
