"""Type stubs of the Gaussian-input population kernels (ext/twotimescale/_gaussian.pyx)."""
import numpy as np
from numpy.typing import NDArray

from ._network import Net

ACTIVATIONS: dict[str, int]

def evaluate(net: Net, X: NDArray[np.float64], out: NDArray[np.float64]) -> None: ...
def loss_and_grad(net: Net, teacher: Net, grad_a: NDArray[np.float64] | None = None,
                  grad_w: NDArray[np.float64] | None = None) -> float: ...
def gram_and_b(net: Net, teacher: Net, G: NDArray[np.float64],
               b: NDArray[np.float64]) -> float: ...
def record_losses(net: Net, teacher: Net, a_rec: NDArray[np.float64],
                  u_rec: NDArray[np.float64]) -> NDArray[np.float64]: ...
