"""Exact population loss, gradients, Gram matrix and optimal outer weights (docs/maths.rst §3).

``L(a, u) = int_0^1 (f(x; a, u) - f*(x))^2 dx`` with ``x ~ U[0, 1]``; any Network may be the
teacher ``f*``. Computed to rounding by ``ext/population.pyx`` (Gauss-Legendre on the merged
kink grid, O(m log m)); the NumPy twin is ``twotimescale.reference``.

Additive networks on ``[0, 1]^d`` (issue: the paper's appendix) reduce to the same kernels:
with ``r = beta + sum_k r_k(x_k)`` and independent coordinates,
``E r^2 = E (beta + r_1)^2 + 2 E(beta + r_1) S + S^2 + sum_{k>1} Var r_k``, ``S = sum_{k>1} E r_k``
(coordinate 1 carries the biases, so d = 1 is the univariate computation, bit for bit).
"""
from __future__ import annotations

import numpy as np

from . import _checks
from ._compiled import _gaussian, _hessian, _network, _population
from .network import GaussianNetwork, Network

ONE = Network([1.0], [], eta=1.0)         # the constant 1, as a teacher: b = int phi


def _additive_loss_and_grad(net, target, want_grad=True):
    """L, grad_a0, grad_a (d, m), grad_u (d, m) of an additive pair (formulas above)."""
    if want_grad:
        _checks.trainable(net)
    parts = [loss_and_grad(net.coordinate(k, net.a0 if k == 0 else 0.0),
                           target.coordinate(k, target.a0 if k == 0 else 0.0))
             for k in range(net.d)]
    means = np.array([p[1][0] / 2 for p in parts])        # E(beta + r_1), E r_2, ...
    rest = means[1:].sum()
    loss = parts[0][0] + 2 * means[0] * rest + rest ** 2 + sum(
        p[0] - mk ** 2 for p, mk in zip(parts[1:], means[1:]))
    if not want_grad:
        return loss
    total = means[0] + rest                               # E r
    grad_a = np.empty((net.d, net.m))
    grad_u = np.empty((net.d, net.m))
    for k, (_, ga, gu) in enumerate(parts):
        others = rest if k == 0 else total - means[k]     # E of the residual off coordinate k
        mean_phi = features_target(net.coordinate(k), ONE)[1:]
        ends = np.empty(2 * net.m)                        # s((1 - u)/eta), s((0 - u)/eta)
        _network.activate(net.code, np.concatenate([1.0 - net.u[k], 0.0 - net.u[k]])
                          * (1.0 / net.eta), ends)
        grad_a[k] = ga[1:] + 2 * others * mean_phi
        grad_u[k] = gu - 2 * net.a[k] * others * (ends[:net.m] - ends[net.m:])
    return loss, parts[0][1][0] + 2 * rest, grad_a, grad_u


def _additive_hessian(net, target):
    """H of an additive pair in the flat order (a0, a[0], ..., a[d-1], u[0], ..., u[d-1]).

    Coordinate k sees the residual averaged over the others, r_k(x_k) = E[r | x_k]: the
    univariate Hessian H_k of net.coordinate(k) against target.coordinate(k), their biases
    shifted so that their difference is r_k's constant, gives the block of coordinate k, and
    its bias row 2 E psi gives the blocks between coordinates, 2 E psi_p E psi_q."""
    d, m = net.d, net.m
    means = np.array([features_target(net.coordinate(k), ONE)[1:] @ net.a[k]
                      - features_target(target.coordinate(k), ONE)[1:] @ target.a[k]
                      for k in range(d)])                   # E g_k - E g*_k
    shift = net.a0 - target.a0 + means.sum()
    n = 1 + 2 * d * m
    H = np.empty((n, n))
    H[0, 0] = 2.0
    blocks = [hessian(net.coordinate(k, shift - means[k]), target.coordinate(k))
              for k in range(d)]
    index = [np.concatenate([1 + k * m + np.arange(m), 1 + d * m + k * m + np.arange(m)])
             for k in range(d)]                            # the flat indices of coordinate k
    mean_psi = np.empty(n - 1)                              # 2 E psi, in the flat order
    for idx, Hk in zip(index, blocks):
        mean_psi[idx - 1] = Hk[0, 1:]
    H[0, 1:] = H[1:, 0] = mean_psi
    H[1:, 1:] = np.outer(mean_psi, mean_psi) / 2            # between coordinates
    for idx, Hk in zip(index, blocks):
        H[np.ix_(idx, idx)] = Hk[1:, 1:]                    # within one
    return H


def _gaussian_gram_b(net, target=None):
    """G and b of a GaussianNetwork against its teacher (none: the zero function)."""
    if target is None:
        target = GaussianNetwork([0.0], np.zeros((0, net.d)), activation=net.activation)
    G, b = np.empty((net.m + 1, net.m + 1)), np.empty(net.m + 1)
    _gaussian.gram_and_b(net._kernel, target._kernel, G, b)
    return G, b


def _kinks_off_jumps(net, target):
    """Refuse a ramp or ReLU kink inside (0, 1) on a jump of a heaviside teacher, where the
    residual is discontinuous and the Hessian does not exist (docs/maths.rst §7)."""
    if target.activation != "heaviside" or net.activation == "smoothstep":
        return
    jumps = target.u[target.a[1:] != 0]
    for z in _network.KINKS[net.activation]:               # each a Dirac mass of s''
        x = net.u + z * net.eta                             # as the kernel computes them
        on = np.flatnonzero((0.0 < x) & (x < 1.0) & np.isin(x, jumps))
        if on.size:
            j = int(on[0])
            raise ValueError(
                f"the Hessian does not exist here: the kink of neuron {j} (u[{j}] = "
                f"{net.u[j]!r}) at x = {x[j]!r} sits on a jump of the target, where the "
                f"residual is discontinuous; move u[{j}] off it, by any amount")


def _additive_optimal_outer(net, target):
    """(a0*, a* of shape (d, m)): the minimum-norm least-squares outer weights."""
    d, m = net.d, net.m
    mean_phi = [features_target(net.coordinate(k), ONE)[1:] for k in range(d)]
    cross = [features_target(net.coordinate(k), target.coordinate(k)) for k in range(d)]
    mean_target = np.array([c[0] for c in cross])      # E g*_k; c[1:] = E[phi_kj g*_k]
    G = np.empty((1 + d * m, 1 + d * m))
    b = np.empty(1 + d * m)
    G[0, 0] = 1.0
    b[0] = target.a0 + mean_target.sum()
    for k in range(d):
        rows = slice(1 + k * m, 1 + (k + 1) * m)
        G[0, rows] = G[rows, 0] = mean_phi[k]
        for l in range(d):
            G[rows, 1 + l * m:1 + (l + 1) * m] = (gram(net.coordinate(k))[1:, 1:] if l == k
                                                  else np.outer(mean_phi[k], mean_phi[l]))
        b[rows] = cross[k][1:] + mean_phi[k] * (target.a0 + mean_target.sum() - mean_target[k])
    a = np.linalg.lstsq(G, b, rcond=None)[0]
    return a[0], a[1:].reshape(d, m)


def loss_and_grad(net, target) -> tuple:
    """The population loss and its gradient in one sweep (docs/maths.rst §3.1).

    Parameters
    ----------
    net : Network or AdditiveNetwork
        The student: ramp, smoothstep or relu.
    target : Network or AdditiveNetwork
        The teacher ``f*``, of the same kind (any activation).

    Returns
    -------
    loss : float
        ``L = int (f - f*)^2`` (no factor 1/2).
    grad_a : ndarray, shape (m+1,)
        ``2 int (f - f*) phi_i``, ``phi_0 = 1``.
    grad_u : ndarray, shape (m,)
        ``-(2 a_j / eta) int (f - f*) s'((x - u_j) / eta)``.

    For additive networks ``(loss, grad_a0, grad_a, grad_u)``, the last two of shape
    ``(d, m)``.
    """
    kind = _checks.pair(net, target)
    if kind == "additive":
        return _additive_loss_and_grad(net, target)
    _checks.trainable(net)
    if kind == "gaussian":
        grad_a, grad_w = np.empty(net.m + 1), np.empty((net.m, net.d))
        loss = _gaussian.loss_and_grad(net._kernel, target._kernel, grad_a, grad_w.reshape(-1))
        return loss, grad_a, grad_w
    grad_a = np.empty(net.m + 1)
    grad_u = np.empty(net.m)
    loss = _population.loss_and_grad(net._kernel, target._kernel, grad_a, grad_u)
    return loss, grad_a, grad_u


def population_loss(net, target) -> float:
    """The population loss ``L = int_0^1 (f(x) - f*(x))^2 dx``, exact to rounding (no
    factor 1/2; over ``[0, 1]^d`` for additive networks; docs/maths.rst §3).

    Parameters
    ----------
    net : Network or AdditiveNetwork
        The student, any activation.
    target : Network or AdditiveNetwork
        The teacher ``f*``, of the same kind.

    Returns
    -------
    float
    """
    kind = _checks.pair(net, target)
    if kind == "additive":
        return _additive_loss_and_grad(net, target, want_grad=False)
    if kind == "gaussian":
        return _gaussian.loss_and_grad(net._kernel, target._kernel)
    return _population.loss_and_grad(net._kernel, target._kernel)


def population_grad(net, target) -> tuple:
    """``(grad_a, grad_u)`` of the population loss; see :func:`loss_and_grad`. For additive
    networks ``(grad_a0, grad_a, grad_u)``, the last two of shape ``(d, m)``."""
    return loss_and_grad(net, target)[1:]


def gram(net) -> np.ndarray:
    """The Gram matrix of the features (docs/maths.rst §3.3).

    Parameters
    ----------
    net : Network
        A univariate network, any activation.

    Returns
    -------
    ndarray, shape (m+1, m+1)
        ``G[i, j] = int_0^1 phi_i phi_j``, ``phi_0 = 1``, ``phi_j = s((x - u_j) / eta)``.
    """
    _checks.network(net, kinds=("univariate", "gaussian"))
    if net.kind == "gaussian":
        return _gaussian_gram_b(net)[0]
    out = np.empty((net.m + 1, net.m + 1))
    _population.gram(net._kernel, out)
    return out


def features_target(net, target) -> np.ndarray:
    """The features against the target (docs/maths.rst §3.3).

    Parameters
    ----------
    net, target : Network
        Univariate networks, any activations.

    Returns
    -------
    ndarray, shape (m+1,)
        ``b[i] = int_0^1 phi_i f*``, so that ``grad_a L = 2 (G a - b)``.
    """
    if _checks.network(net, kinds=("univariate", "gaussian")).kind == "gaussian":
        _checks.pair(net, target)
        return _gaussian_gram_b(net, target)[1]
    _checks.network(target, "target", kinds=("univariate",))
    grad_a = np.empty(net.m + 1)
    grad_u = np.empty(net.m)
    zero = net.replace(a=np.zeros(net.m + 1))
    _population.loss_and_grad(zero._kernel, target._kernel, grad_a, grad_u)
    return -0.5 * grad_a


def hessian(net, target) -> np.ndarray:
    """The exact Hessian of the population loss in the parameters (docs/maths.rst §7).

    ``H = 2 J + 2 R``: ``J`` the Gram matrix of the features ``phi_j`` (for ``a_j``) and
    ``-(a_j / eta) s'((x - u_j) / eta)`` (for ``u_j``), ``R`` the residual's part on each
    neuron's own pairs, ``R[a_j, u_j] = -(1/eta) int r s'`` and
    ``R[u_j, u_j] = (a_j / eta^2) int r s''`` (for the ramp and the ReLU, point values of
    ``r = f - f*`` at the kinks inside (0, 1)). O(m^2).

    Parameters
    ----------
    net : Network or AdditiveNetwork
        The student: ramp, smoothstep or relu.
    target : Network or AdditiveNetwork
        The teacher, of the same kind (any activation).

    Returns
    -------
    ndarray, shape (2m+1, 2m+1)
        Symmetric, in the order ``a[0..m]``, then ``u[1..m]``; its a-block is ``2 G``. For an
        additive network the flat order of a :class:`Trajectory` record, ``(a0, a[0], ...,
        a[d-1], u[0], ..., u[d-1])``, shape ``(1 + 2dm, 1 + 2dm)``.

    Raises
    ------
    ValueError
        Where the Hessian does not exist: a kink of a ramp or ReLU neuron on a jump of a
        piecewise-constant target (the message names the neuron).
    """
    kind = _checks.pair(net, target)
    if kind == "gaussian":
        raise ValueError("hessian: not yet for a GaussianNetwork (its exact Hessian, the "
                         "second derivatives of docs/maths.rst §8.1, is not built); use "
                         "central differences of loss_and_grad meanwhile")
    additive = kind == "additive"
    _checks.trainable(net)
    if additive:
        return _additive_hessian(net, target)
    _kinks_off_jumps(net, target)
    out = np.empty((2 * net.m + 1, 2 * net.m + 1))
    _hessian.hessian(net._kernel, target._kernel, out)
    return out


def optimal_outer(net, target) -> np.ndarray | tuple:
    """The outer weights that minimise the loss at fixed positions (docs/maths.rst §3.3).

    Parameters
    ----------
    net, target : Network or AdditiveNetwork
        The student (its positions are kept) and the teacher, of the same kind.

    Returns
    -------
    ndarray, shape (m+1,), or (float, ndarray of shape (d, m)) for additive networks
        ``a*(u)``, the minimum-norm solution of ``G a = b`` (G is singular when neurons
        coincide or leave [0, 1]).
    """
    kind = _checks.pair(net, target)
    if kind == "additive":
        return _additive_optimal_outer(net, target)
    if kind == "gaussian":
        return np.linalg.lstsq(*_gaussian_gram_b(net, target), rcond=None)[0]
    return np.linalg.lstsq(gram(net), features_target(net, target), rcond=None)[0]
