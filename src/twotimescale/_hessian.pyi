"""Type stubs of the compiled Hessian (ext/twotimescale/_hessian.pyx)."""
import numpy as np
from numpy.typing import NDArray

from ._network import Net

def hessian(net: Net, teacher: Net, out: NDArray[np.float64]) -> None: ...
