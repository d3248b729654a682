"""twotimescale: shallow univariate networks trained on two timescales, simulated exactly.

Marion & Berthier, "Leveraging the two-timescale regime to demonstrate convergence of neural
networks", NeurIPS 2023 (arXiv 2304.09576).
"""
from .endpoints import Certificate, PolishInfo, certify, polish
from .dynamics import Trajectory, gd, sgd, sgd_many
from .flows import (Assumptions, FlowTrajectory, check_assumptions, covers_jumps, flow,
                    jump_floor, limit_flow)
from .network import (ACTIVATIONS, GAUSSIAN_ACTIVATIONS, AdditiveNetwork, GaussianNetwork,
                      HermiteTarget, Network, PiecewiseConstant, init_additive, init_gaussian,
                      init_network)
from .population import (features_target, gram, hessian, loss_and_grad, optimal_outer,
                         population_grad, population_loss)
from .store import Store
from .sweep import sweep

__version__ = "0.2.0"

__all__ = [
    "ACTIVATIONS", "Network", "PiecewiseConstant", "init_network", "AdditiveNetwork",
    "init_additive", "GAUSSIAN_ACTIVATIONS", "GaussianNetwork", "HermiteTarget", "init_gaussian",
    "features_target", "gram", "hessian", "loss_and_grad", "optimal_outer", "population_grad",
    "population_loss",
    "Trajectory", "gd", "sgd", "sgd_many",
    "Assumptions", "FlowTrajectory", "check_assumptions", "covers_jumps", "flow", "jump_floor",
    "limit_flow",
    "Certificate", "PolishInfo", "certify", "polish",
    "Store", "sweep",
]
