"""Type stubs of the compiled population integrals (ext/twotimescale/_population.pyx)."""
import numpy as np
from numpy.typing import NDArray

from ._network import Net

def loss_and_grad(net: Net, teacher: Net, grad_a: NDArray[np.float64] | None = None,
                  grad_u: NDArray[np.float64] | None = None) -> float: ...
def record_losses(net: Net, teacher: Net, a_rec: NDArray[np.float64],
                  u_rec: NDArray[np.float64]) -> NDArray[np.float64]: ...
def gram(net: Net, out: NDArray[np.float64]) -> None: ...
