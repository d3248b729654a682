"""Type stubs of the lockstep SGD kernel (ext/twotimescale/_sgd_lockstep.pyx)."""
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ._network import Net

REPLICAS_IN_LOCKSTEP: int

def sgd_lanes(nets: Sequence[Net], teacher: Net, *, h: float, eps: float,
              record_steps: NDArray[np.intp], a_rec: NDArray[np.float64],
              u_rec: NDArray[np.float64], bit_generators: Sequence[np.random.BitGenerator],
              noise: float = 0.0, noise_dist: int = 0) -> list[tuple[int, int]]: ...
