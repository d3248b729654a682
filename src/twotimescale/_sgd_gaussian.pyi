"""Type stubs of the Gaussian-input SGD and GD kernels (ext/twotimescale/_sgd_gaussian.pyx)."""
import numpy as np
from numpy.typing import NDArray

from ._network import Net

class Padded:
    def __init__(self, net: Net) -> None: ...
    def finite(self) -> bool: ...
    def copy_to(self, a: NDArray[np.float64], u: NDArray[np.float64]) -> None: ...

def sgd(net: Net, teacher: Net, *, h: float, eps: float, record_steps: NDArray[np.intp],
        a_rec: NDArray[np.float64], u_rec: NDArray[np.float64], bit_generator: object = None,
        noise: float = 0.0, noise_dist: int = 0, xs: NDArray[np.float64] | None = None,
        xis: NDArray[np.float64] | None = None) -> tuple[int, int]: ...
def gd_epoch(params: Padded, h: float, eps: float, X: NDArray[np.float64],
             Y: NDArray[np.float64], order: NDArray[np.intp], batch: int, /) -> int: ...
