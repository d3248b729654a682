"""Where training ends: Newton polishing to a nearby stationary point, and the kind of point
it is, from the exact gradient and Hessian (docs/maths.rst §7).

The parameters are flat, ``theta = (a, u)`` as ``net.flat()`` gives them, the order of a
:class:`Trajectory` record: ``a[0..m]`` then ``u[1..m]`` for a network; ``a0``, ``a`` and
``u`` coordinate by coordinate for an additive network.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import _checks
from ._compiled import _network
from .flows import _jumps, jump_floor
from .network import Network
from .population import hessian, loss_and_grad

VERDICTS = ("strict local minimum", "degenerate minimum", "saddle", "not stationary")


def _flat(net):
    """theta = (a, u), flat, in the order of net.flat() and of a Trajectory record."""
    return np.concatenate(net.flat())


def _at(net, theta):
    """The network at the flat parameters theta."""
    n_a = net.flat()[0].size
    return net.from_flat(theta[:n_a], theta[n_a:])


def _loss_grad(net, target):
    """(L, flat gradient)."""
    out = loss_and_grad(net, target)
    if net.additive:
        loss, g0, ga, gu = out
        return loss, np.concatenate([[g0], ga.ravel(), gu.ravel()])
    loss, ga, gu = out
    return loss, np.concatenate([ga, gu])


def _unit_diagonal(H):
    """D = sqrt(|diag H|), at least 1e-3 of its largest entry (1 for H = 0): D^-1 H D^-1
    has a unit diagonal where D is not clamped, free of the units of a and u (whose
    curvatures differ by (a / eta)^2), and the same inertia. The clamp keeps a coordinate of
    almost no curvature (a neuron with a_j ~ 0) from taking a step of any length."""
    d = np.sqrt(np.abs(np.diag(H)))
    top = d.max(initial=0.0)
    return np.maximum(d, 1e-3 * top) if top > 0 else np.ones_like(d)


def _trust_region_step(g, w, V, radius):
    """argmin of g.d + d.H.d / 2 over |d| <= radius, H = V diag(w) V^T (Moré and Sorensen):
    the Newton step when H is positive definite and the step fits, else
    d(lam) = -(H + lam I)^-1 g on the boundary, lam > max(0, -min w) found by bisection; in
    the hard case (g has no component along the lowest eigenvector) that eigenvector makes
    up the length."""
    gt = V.T @ g
    low = w[0]
    if low > 0:
        newton = -gt / w
        if np.linalg.norm(newton) <= radius:
            return V @ newton
    floor = max(0.0, -low)
    def length(lam):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.linalg.norm(gt / (w + lam))
    top = floor + np.linalg.norm(g) / radius + abs(low) + 1e-300
    bottom = floor
    if length(floor + 1e-12 * (1 + abs(low))) < radius:           # the hard case
        lam = floor
        keep = w + lam > 1e-12 * (1 + abs(low))
        rest = np.where(keep, -gt / np.where(keep, w + lam, 1.0), 0.0)
        tau = np.sqrt(max(radius ** 2 - rest @ rest, 0.0))
        return V @ rest - np.copysign(tau, gt[0]) * V[:, 0]        # downhill, to first order
    for _ in range(200):
        lam = 0.5 * (bottom + top)
        if length(lam) > radius:
            bottom = lam
        else:
            top = lam
        if top - bottom <= 1e-15 * top:
            break
    return V @ (-gt / (w + top))


@dataclass(frozen=True)
class PolishInfo:
    """What :func:`polish` did: its iterations, the loss and gradient norm at the start and
    at the end, and why it stopped."""

    iterations: int
    start_loss: float
    loss: float
    start_grad_norm: float
    grad_norm: float
    converged: bool        # the gradient norm reached tol
    moved: float           # |theta_end - theta_start|, Euclidean in (a, u)
    reason: str

    def __repr__(self):
        return (f"PolishInfo({'converged' if self.converged else 'NOT converged'} in "
                f"{self.iterations} iterations: |grad| {self.start_grad_norm:.3g} -> "
                f"{self.grad_norm:.3g}, loss {self.start_loss:.10g} -> {self.loss:.10g}, moved "
                f"{self.moved:.3g}; {self.reason})")


def _trust_region_move(net, target, theta, loss, g, H, radius):
    """One accepted trust-region step from theta: (theta, loss, gradient, radius) after it,
    or None when the radius falls below rounding first. A step is kept when the exact loss
    does not rise and either the model predicted at least a tenth of the fall or the
    gradient shrank (near rounding the predicted fall means nothing); the radius, in the
    scaled variables D theta, halves to a quarter of a rejected step and doubles after a
    full step the model predicted well."""
    D = _unit_diagonal(H)
    w, V = np.linalg.eigh(H / np.outer(D, D))
    norm = np.linalg.norm(g)
    while radius > 1e-15 * (1.0 + np.linalg.norm(theta * D)):
        step = _trust_region_step(g / D, w, V, radius) / D
        predicted = -(g @ step + 0.5 * step @ H @ step)
        new_loss, new_g = _loss_grad(_at(net, theta + step), target)
        if new_loss <= loss and (predicted <= 0 or loss - new_loss >= 0.1 * predicted
                                 or np.linalg.norm(new_g) < norm):
            ratio = (loss - new_loss) / predicted if predicted > 0 else 1.0
            if ratio > 0.75 and np.linalg.norm(step * D) >= 0.99 * radius:
                radius *= 2.0
            return theta + step, new_loss, new_g, radius
        radius = 0.25 * np.linalg.norm(step * D)
    return None


def polish(net, target, *, tol: float = 1e-12, max_iter: int = 100):
    """Newton's method with a trust region, on the exact loss, gradient and Hessian, from
    ``net`` to a nearby stationary point of the population loss.

    Each iteration minimises the quadratic model ``g.d + d.H.d / 2`` over ``|D d| <= radius``,
    ``D = sqrt|diag H|`` (the curvatures of ``a`` and ``u`` differ by ``(a / eta)^2``), so it
    descends along negative curvature instead of climbing to a saddle, and keeps the
    step only if the exact loss does not increase; the radius grows when the model predicts
    well and shrinks when it does not. Near a strict minimum the steps are Newton's, and the
    gradient falls quadratically.

    Parameters
    ----------
    net : Network or AdditiveNetwork
        A trained network: ramp, smoothstep or relu.
    target : Network or AdditiveNetwork
        Its teacher.
    tol : float
        Stop when the Euclidean norm of the gradient in ``(a, u)`` is at most this.
    max_iter : int
        At most this many Hessians.

    Returns
    -------
    net : Network or AdditiveNetwork
        The polished network; its loss is never larger than that of ``net``.
    info : PolishInfo
        Iterations, losses and gradient norms, ``converged`` and the reason it stopped:
        the gradient norm reached ``tol``, ``max_iter`` was reached, the trust region fell
        below rounding (no lower loss within reach: the gradient is as small as rounding
        lets it be), or the Hessian does not exist at the point reached.
    """
    _checks.pair(net, target)
    _checks.trainable(net)
    tol = _checks.as_nonnegative(tol, "tol")
    max_iter = _checks.as_count(max_iter, "max_iter", 0)
    theta = start = _flat(net)
    loss, g = _loss_grad(net, target)
    start_loss, start_norm = loss, float(np.linalg.norm(g))
    radius = 1.0                       # in the scaled variables D theta: about unit curvature
    reason, iterations = f"max_iter = {max_iter} reached", 0
    while True:
        norm = float(np.linalg.norm(g))
        if norm <= tol:
            reason = f"|grad| <= tol = {tol:g}"
            break
        if iterations >= max_iter:
            break
        try:
            H = hessian(_at(net, theta), target)
        except ValueError as exc:
            reason = f"stopped where {exc}"
            break
        iterations += 1
        moved = _trust_region_move(net, target, theta, loss, g, H, radius)
        if moved is None:
            reason = "the trust region fell below rounding: no lower loss within reach"
            break
        theta, loss, g, radius = moved
    norm = float(np.linalg.norm(g))
    return _at(net, theta), PolishInfo(iterations=iterations, start_loss=float(start_loss),
                                       loss=float(loss), start_grad_norm=start_norm,
                                       grad_norm=norm, converged=norm <= tol,
                                       moved=float(np.linalg.norm(theta - start)),
                                       reason=reason)


@functools.lru_cache(maxsize=64)
def _floor(a, u, target_eta, eta, activation):
    """jump_floor of the heaviside target (a, u) as bytes, once per target, width and
    activation: every run of a sweep's grid point asks for the same one."""
    target = Network(np.frombuffer(a), np.frombuffer(u), eta=target_eta, activation="heaviside")
    return jump_floor(target, eta=eta, activation=activation)


def _structural_flats(net):
    """The flat directions that symmetries of the model explain: (count, reasons)."""
    if net.additive:
        groups = [(f"coordinate {k}, ", net.a[k], net.u[k]) for k in range(net.d)]
    else:
        groups = [("", net.a[1:], net.u)]
    kinks = _network.KINKS[net.activation]
    lo, hi = kinks[0], kinks[-1]                 # the transition, in z
    count, reasons = 0, []
    for where, a, u in groups:
        for j in range(u.size):
            left, right = u[j] + lo * net.eta, u[j] + hi * net.eta
            if right <= 0 and net.activation != "relu":
                count += 2
                reasons.append(f"{where}neuron {j} lies left of [0, 1] (s = 1 there): u[{j}] "
                               f"does not change f, and a[{j}] trades with the bias")
            elif left >= 1:
                count += 2
                reasons.append(f"{where}neuron {j} lies right of [0, 1] (s = 0 there): "
                               f"neither a[{j}] nor u[{j}] changes f")
            elif right <= 0:
                count += 1
                reasons.append(f"{where}neuron {j} is a line on [0, 1] (its kink is left of "
                               f"0): u[{j}] trades with the bias")
            elif a[j] == 0:
                count += 1
                reasons.append(f"{where}neuron {j} has a[{j}] = 0: u[{j}] does not change f")
        inside = (u + hi * net.eta > 0) & (u + lo * net.eta < 1)
        values, counts = np.unique(u[inside], return_counts=True)
        for v, c in zip(values, counts):
            if c > 1:
                count += c - 1
                reasons.append(f"{where}{c} neurons coincide at u = {v:.6g}: their weights "
                               "trade with one another")
    return count, tuple(reasons)


@dataclass(frozen=True)
class Certificate:
    """The kind of point a network sits at, from the exact gradient and Hessian
    (:func:`certify`)."""

    verdict: str                # one of VERDICTS
    loss: float
    grad_norm: float
    eigenvalues: np.ndarray     # all of the Hessian's, ascending
    n_flat: int                 # how many are flat (within flat_tol of 0, scaled; certify)
    flat_tol: float
    structural: int             # how many flat directions the symmetries below explain
    flat_reasons: tuple
    negative: int               # how many are negative (scaled, below -flat_tol)
    descent: np.ndarray | None  # for a saddle: a unit direction of negative curvature
    floor: float | None         # jump_floor of the target, where it applies
    gtol: float

    @property
    def above_floor(self) -> float | None:
        """loss / floor, where a floor applies."""
        return None if self.floor is None else self.loss / self.floor

    def __repr__(self):
        lam = self.eigenvalues
        lines = [f"Certificate({self.verdict}: loss = {self.loss:.6g}, |grad| = "
                 f"{self.grad_norm:.3g} (stationary below {self.gtol:g}))"]
        if self.floor is not None:
            lines.append(f"  floor (one neuron on each jump) = {self.floor:.6g}: loss is "
                         f"{self.above_floor:.4g} x the floor")
        if lam.size:
            lines.append(f"  Hessian eigenvalues: {lam.size}, from {lam[0]:.4g} to {lam[-1]:.4g}; "
                         f"{self.negative} negative, {self.n_flat} flat, {self.structural} "
                         "flat directions explained by symmetry")
        lines += [f"  - {reason}" for reason in self.flat_reasons]
        return "\n".join(lines)


def certify(net, target, *, gtol: float = 1e-8, flat_tol: float = 1e-7) -> Certificate:
    """Say what kind of point ``net`` sits at: a minimum, a saddle, or not stationary.

    The gradient decides stationarity (``|grad| <= gtol``); the Hessian's eigenvalues decide
    the rest: one below ``-flat_tol`` makes a saddle (its eigenvector is ``descent``), none
    within ``flat_tol`` of 0 a strict local minimum, otherwise a degenerate minimum (the
    second-order test says nothing along the flat directions; those that ``flat_reasons``
    explains are exact symmetries of the model and change nothing). Run :func:`polish` first
    to certify the stationary point near a trained network.

    Parameters
    ----------
    net, target : Network or AdditiveNetwork
        The student (ramp, smoothstep or relu) and its teacher.
    gtol : float
        Stationary when the Euclidean norm of the gradient in ``(a, u)`` is at most this.
    flat_tol : float
        The signs and the flat directions are counted on ``D^-1 H D^-1``,
        ``D = sqrt|diag H|``, whose diagonal is 1: the same inertia as ``H`` (Sylvester's
        law), without the units of ``a`` and ``u``. Its eigenvalues within ``flat_tol`` of 0
        count as flat: its rounding reaches 1e-10 where the scaling is clamped, and within
        ``gtol`` of a degenerate minimum its eigenvalues move by about ``gtol`` too.

    Returns
    -------
    Certificate
        ``verdict``, ``loss``, ``grad_norm``, ``eigenvalues`` (ascending), ``n_flat``,
        ``structural`` and ``flat_reasons``, ``descent`` (saddles), and, for a univariate
        network learning a piecewise-constant target with at least one neuron per jump,
        ``floor``: :func:`jump_floor`, the loss of one neuron centred on each jump with the
        best outer weights, the end point of the paper's theorem, and ``above_floor``, the
        loss over it. The floor is not proven to be the global minimum at this width (two
        neurons sharing a jump can go a little below it).
    """
    _checks.pair(net, target)
    _checks.trainable(net)
    gtol = _checks.as_positive(gtol, "gtol")
    loss, g = _loss_grad(net, target)
    H = hessian(net, target)
    w = np.linalg.eigvalsh(H)
    D = _unit_diagonal(H)
    scaled, V = np.linalg.eigh(H / np.outer(D, D))
    flat_tol = _checks.as_positive(flat_tol, "flat_tol")
    n_flat = int(np.sum(np.abs(scaled) <= flat_tol))
    structural, reasons = _structural_flats(net)
    grad_norm = float(np.linalg.norm(g))
    descent = None
    if grad_norm > gtol:
        verdict = "not stationary"
    elif scaled.size and scaled[0] < -flat_tol:
        verdict, descent = "saddle", V[:, 0] / D / np.linalg.norm(V[:, 0] / D)
    elif n_flat == 0:
        verdict = "strict local minimum"
    else:
        verdict = "degenerate minimum"
    floor = None
    if not net.additive and target.activation == "heaviside":
        try:
            v, _ = _jumps(target)
        except ValueError:
            v = None
        if v is not None and 0 < v.size <= net.m:
            floor = _floor(target.a.tobytes(), target.u.tobytes(), target.eta, net.eta,
                           net.activation)
    return Certificate(verdict=verdict, loss=float(loss), grad_norm=grad_norm, eigenvalues=w,
                       n_flat=n_flat, flat_tol=float(flat_tol), structural=structural,
                       negative=int(np.sum(scaled < -flat_tol)),
                       flat_reasons=reasons, descent=descent, floor=floor, gtol=gtol)
