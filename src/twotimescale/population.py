"""Exact population loss, gradients, Gram matrix and optimal outer weights (DESIGN.md sec. 3).

``L(a, u) = int_0^1 (f(x; a, u) - f*(x))^2 dx`` with ``x ~ U[0, 1]``; any Network may be the
teacher ``f*``. Computed to rounding by ``ext/population.pyx`` (Gauss-Legendre on the merged
kink grid, O(m log m)); the NumPy twin is ``twotimescale.reference``.
"""
import numpy as np

from ._compiled import _population
from .network import Network


def _check(net, name):
    if not isinstance(net, Network):
        raise TypeError(f"{name} must be a twotimescale.Network, got {type(net).__name__}")


def loss_and_grad(net, target):
    """``(L, grad_a, grad_u)`` in one sweep.

    ``grad_a[i] = 2 int (f - f*) phi_i`` (``phi_0 = 1``) and
    ``grad_u[j] = -(2 a_j / eta) int (f - f*) s'((x - u_j) / eta)``.
    """
    _check(net, "net")
    _check(target, "target")
    if net.activation == "heaviside":
        raise ValueError("net: the gradient in u of a heaviside network is a Dirac mass; use a "
                         "ramp, smoothstep or relu network (or the eta -> 0 limit flow)")
    grad_a = np.empty(net.m + 1)
    grad_u = np.empty(net.m)
    loss = _population.loss_and_grad(net.a, net.u, net.eta, net.code,
                                     target.a, target.u, target.eta, target.code, grad_a, grad_u)
    return loss, grad_a, grad_u


def population_loss(net, target):
    """``L = int_0^1 (f(x) - f*(x))^2 dx``, exact to rounding (no factor 1/2)."""
    _check(net, "net")
    _check(target, "target")
    return _population.loss_and_grad(net.a, net.u, net.eta, net.code,
                                     target.a, target.u, target.eta, target.code)


def population_grad(net, target):
    """``(grad_a, grad_u)`` of the population loss; see :func:`loss_and_grad`."""
    return loss_and_grad(net, target)[1:]


def gram(net):
    """``G[i, j] = int_0^1 phi_i phi_j``, ``phi_0 = 1``, ``phi_j = s((x - u_j) / eta)``."""
    _check(net, "net")
    out = np.empty((net.m + 1, net.m + 1))
    _population.gram(net.u, net.eta, net.code, out)
    return out


def features_target(net, target):
    """``b[i] = int_0^1 phi_i f*`` (so that ``grad_a L = 2 (G a - b)``)."""
    _check(net, "net")
    _check(target, "target")
    grad_a = np.empty(net.m + 1)
    grad_u = np.empty(net.m)
    zero = np.zeros(net.m + 1)
    _population.loss_and_grad(zero, net.u, net.eta, net.code,
                              target.a, target.u, target.eta, target.code, grad_a, grad_u)
    return -0.5 * grad_a


def optimal_outer(net, target):
    """``a*(u)``: the minimum-norm solution of ``G a = b``, the outer weights that minimise
    the loss at fixed positions (G is singular when neurons coincide or leave [0, 1])."""
    return np.linalg.lstsq(gram(net), features_target(net, target), rcond=None)[0]
