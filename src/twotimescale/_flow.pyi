"""Type stubs of the compiled flow integrators (ext/twotimescale/_flow.pyx)."""
import numpy as np
from numpy.typing import NDArray

from ._network import Net

METHODS: dict[str, int]
STATUSES: dict[int, str]

class FlowWork:
    def __init__(self, net: Net, teacher: Net, eps: float) -> None: ...

def flow_step(work: FlowWork, method: int, y: NDArray[np.float64], dt: float,
              y_new: NDArray[np.float64], err: NDArray[np.float64]) -> bool: ...
def flow_integrate(work: FlowWork, method: int, times: NDArray[np.float64], rtol: float,
                   atol: float, a_rec: NDArray[np.float64],
                   u_rec: NDArray[np.float64], max_steps: int) -> tuple[int, int, int, int]: ...
