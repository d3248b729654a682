"""Population gradient flow in slow time, and its two-timescale limit (docs/maths.rst §5).

    eps da/dt = -grad_a L(a, u) = -2 (G(u) a - b(u))        du/dt = -grad_u L(a, u)

Two integrators share one step control; ``method="auto"`` picks the cheaper.

* ``"ars"``, for stiff a: an implicit-explicit Runge-Kutta pair, ARS(4,4,3) of Ascher, Ruuth
  and Spiteri (1997, Appl. Numer. Math. 25). The stiff block a, linear at frozen u, goes
  through the L-stable DIRK tableau (one SPD solve with I + (2 dt gamma / eps) G per stage);
  u goes through the explicit tableau. The u-stages are explicit, so each stage knows its u
  before it solves for a. Both tableaux end on their last stage (globally stiffly accurate)
  and the implicit one never uses its first stage, so no stiff residual is ever evaluated
  explicitly: as eps -> 0 every stage puts a on a*(u), the scheme becomes the explicit method
  applied to the limit du/dt = -grad_u L(a*(u), u), and the cost does not grow as eps
  shrinks. The error on u is estimated with embedded trapezoid weights (order 2) on the
  explicit stages. ``limit_flow`` is the limit itself (eps = 0: a = a*(u), the minimum-norm
  optimum, at every stage).
* ``"dopri5"``, for a that is not stiff: Dormand-Prince 5(4) (the pair of SciPy's RK45) on
  (a, u), error on both. A stage is one sweep for the whole gradient, with no Gram matrix
  and no solve, so it costs about a quarter of an ARS stage, and its order is higher; but
  its stability needs dt <= 3.3 eps / (2 lambda_max(G)). Its records come from Shampine's
  quartic dense output, so they do not cut its steps (ARS's steps end on them).

``"auto"`` bounds the steps that stability alone would ask of dopri5 over the run,
t_end 2 lambda_max(G(u0)) / (3.3 eps), and takes dopri5 when they are at most
``EXPLICIT_STEPS``. On the paper's setting the bound is about 800 at eps = 3e-4: there dopri5
costs 1.9x ARS at equal rtol but, its error control covering a, ends 40x closer to the exact
flow; for the same accuracy (2e-7) it is the cheaper, 4.9 against 6.1 ms.

The whole integration, step control included, runs in the kernel
(``ext/twotimescale/_flow.pyx``) without the GIL; ARS's solves are one Cholesky factorisation per stage (pivoted and rank-revealing
for a*(u) at eps = 0). Its NumPy twin is ``twotimescale.reference.flow``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import _checks
from ._compiled import _flow
from .dynamics import Trajectory, record_losses
from .network import Network
from .population import gram, optimal_outer, population_loss

#: method name -> the kernel's code (defined once, in ext/twotimescale/_flow.pyx)
METHODS = _flow.METHODS
EXPLICIT_STEPS = 1000                       # "auto" takes dopri5 up to this stiffness


@dataclass(frozen=True, eq=False)
class FlowTrajectory(Trajectory):
    """A :class:`Trajectory` of a flow, with ``nfev`` (evaluations of the population
    quantities: G and b, or the gradient), ``nsteps`` (accepted steps) and ``method`` (the
    integrator that ran: "ars", "dopri5", or "closed form" for a heaviside limit)."""

    nfev: int = 0
    nsteps: int = 0
    method: str = "ars"

    def __repr__(self):
        return (f"FlowTrajectory(method={self.method!r}, status={self.status!r}, "
                f"nsteps={self.nsteps}, nfev={self.nfev}, "
                f"t_end={self.t[-1]:.6g}, final loss={self.loss[-1]:.6g})")


def _choose(net, eps, t_end, method):
    """The method to run: ``method`` itself, or for "auto" dopri5 when the steps its
    stability would ask, t_end 2 lambda_max(G) / (3.3 eps) at the start, are few; G >= 0
    entrywise, so lambda_max is at most G's largest row sum (within 1.3x here). A forced
    dopri5 that stability would hold to far more steps gets a warning."""
    _checks.choice(method, "method", ("auto", *METHODS))
    if method == "ars":
        return method
    stiff_steps = t_end * 2 * np.abs(gram(net)).sum(axis=1).max() / (3.3 * eps)
    if method == "dopri5" and stiff_steps > 100 * EXPLICIT_STEPS:
        warnings.warn(f"flow: with method='dopri5' at eps = {eps:g}, stability alone asks "
                      f"about {stiff_steps:.2g} steps; method='ars' (or 'auto') costs the "
                      "same at any eps", RuntimeWarning, stacklevel=3)
    if method == "auto":
        return "dopri5" if stiff_steps <= EXPLICIT_STEPS else "ars"
    return method


def _integrate(net, target, eps, t_end, rtol, atol, n_records, method, max_steps):
    times = np.linspace(0.0, t_end, n_records)
    work = _flow.FlowWork(net._kernel, target._kernel, eps)
    a_rec = np.empty((n_records, net._kernel.a.size))
    u_rec = np.empty((n_records, net._kernel.u.size))
    count, nsteps, nfev, outcome = _flow.flow_integrate(work, METHODS[method], times, rtol,
                                                        atol, a_rec, u_rec, max_steps)
    return _trajectory(net, target, times[:count], a_rec[:count], u_rec[:count],
                       _flow.STATUSES[outcome], nfev, nsteps, method)


def _trajectory(net, target, times, a_rec, u_rec, status, nfev, nsteps, method):
    """A FlowTrajectory of the records, with their exact population losses."""
    return FlowTrajectory(t=times, a=a_rec, u=u_rec, loss=record_losses(net, target, a_rec, u_rec),
                          steps=nsteps, status=status, final=net.from_flat(a_rec[-1], u_rec[-1]),
                          nfev=nfev, nsteps=nsteps, method=method)


#: below this rtol a step's error estimate is rounding, and no step passes
MIN_RTOL = 100 * np.finfo(float).eps


def _check(net, target, t_end, rtol, atol, n_records, max_steps):
    _checks.network(net, kinds=("univariate", "gaussian"))
    _checks.network(target, "target", kinds=("univariate", "gaussian"))
    _checks.pair(net, target)
    if net.m == 0:
        raise ValueError("net has no neurons: its flow only relaxes the bias to the mean of "
                         "the target (the step error is controlled on the positions); give it "
                         "at least one neuron")
    rtol = _checks.as_positive(rtol, "rtol")
    if rtol < MIN_RTOL:
        raise ValueError(f"rtol must be at least {MIN_RTOL:.2g} (100 x machine epsilon): below "
                         f"it a step's error estimate is rounding; got {rtol:g}")
    n_records = _checks.as_count(n_records, "n_records", 2)
    _checks.record_steps(_checks.MAX_STEPS, n_records,                   # their memory
                         net._kernel.a.size + net._kernel.u.size)
    max_steps = _checks.as_count(max_steps, "max_steps", 1)
    if max_steps > _checks.MAX_STEPS:
        raise ValueError(f"max_steps must be at most 2^53 = {_checks.MAX_STEPS:.3g}, got {max_steps}")
    return (_checks.as_positive(t_end, "t_end"), rtol, _checks.as_positive(atol, "atol"),
            n_records, max_steps)


def flow(net, target, *, eps: float, t_end: float, rtol: float = 1e-6, atol: float = 1e-9,
         n_records: int = 100, method: str = "auto", max_steps: int = 1_000_000) -> FlowTrajectory:
    """The population gradient flow ``eps da/dt = -grad_a L``, ``du/dt = -grad_u L`` in
    slow time (docs/maths.rst §5).

    Parameters
    ----------
    net : Network
        The start: a univariate ramp, smoothstep or relu network with at least one neuron.
    target : Network
        The teacher, any activation.
    eps : float
        Ratio of the timescales, > 0.
    t_end : float
        Slow time of the last record.
    rtol, atol : float
        Local error tolerances (RMS norm of ``err / (atol + rtol |y|)``).
    n_records : int
        Records evenly spaced in t, first and last included.
    method : {"auto", "ars", "dopri5"}
        "ars" is implicit in a, its error held on u, and its cost does not grow as
        ``eps -> 0``; "dopri5" is explicit, its error held on a and u; "auto" takes dopri5
        unless a is stiff over the run.
    max_steps : int
        Attempted steps at most; past them, or when the step falls below what t can
        resolve (1e-14 t), the run stops with status "stalled" and keeps its records.

    Returns
    -------
    FlowTrajectory
        With ``nfev``, ``nsteps`` and the ``method`` that ran; ``status`` is "ok",
        "diverged" (a stage left the finite numbers) or "stalled".
    """
    t_end, rtol, atol, n_records, max_steps = _check(net, target, t_end, rtol, atol, n_records,
                                                     max_steps)
    _checks.trainable(net)
    eps = _checks.as_positive(eps, "eps")
    return _integrate(net, target, eps, t_end, rtol, atol, n_records,
                      _choose(net, eps, t_end, method), max_steps)


# ---- the two-timescale limit ------------------------------------------------------------

def limit_flow(net, target, *, t_end: float, rtol: float = 1e-6, atol: float = 1e-9,
               n_records: int = 100, max_steps: int = 1_000_000) -> FlowTrajectory:
    """The two-timescale limit: ``a = a*(u)`` (minimum norm) at every record and
    ``du/dt = -grad_u L(a*(u), u)`` (docs/maths.rst §5.4).

    Parameters
    ----------
    net : Network
        The start (its positions; its outer weights are replaced by ``a*(u)``).
    target : Network
        The teacher.
    t_end, rtol, atol, n_records, max_steps
        As for :func:`flow`.

    Returns
    -------
    FlowTrajectory

    Notes
    -----
    For a ``heaviside`` network and a piecewise-constant target this is the paper's closed
    form (docs/maths.rst §5.5): only the two neurons flanking each jump move, and a pair
    stops exactly when one of them reaches its jump. Otherwise the ARS integrator of
    :func:`flow` runs with ``eps = 0``.
    """
    t_end, rtol, atol, n_records, max_steps = _check(net, target, t_end, rtol, atol, n_records,
                                                     max_steps)
    if net.activation == "heaviside":
        return _heaviside_limit(net, target, t_end, n_records)
    return _integrate(net, target, 0.0, t_end, rtol, atol, n_records, "ars", max_steps)


def _jumps(target):
    """(positions, heights) of a piecewise-constant target, or a ValueError."""
    if target.activation != "heaviside":
        raise ValueError("target: the closed-form limit of a heaviside network needs a "
                         "piecewise-constant target (a PiecewiseConstant or heaviside Network)")
    order = np.argsort(target.u, kind="stable")
    v, d = target.u[order], target.a[1:][order]
    if np.any(np.diff(v) == 0) or (v.size and (v[0] <= 0 or v[-1] >= 1)):
        raise ValueError("target: jumps must be distinct and inside (0, 1)")
    return v, d


@dataclass(frozen=True)
class Assumptions:
    """The hypotheses of the convergence theorem, checked on a network and a target:
    every piece of the piecewise-constant target holds at least two neurons."""

    ok: bool
    pieces: tuple          # ((left, right), number of neurons inside), left to right
    smallest_piece: float
    smallest_jump: float
    eta: float

    def __repr__(self):
        lines = [f"Assumptions({'ok' if self.ok else 'NOT met'}: every target piece needs "
                 f">= 2 neurons; eta = {self.eta:g}, smallest piece = {self.smallest_piece:.4g}, "
                 f"smallest jump = {self.smallest_jump:.4g})"]
        for (left, right), count in self.pieces:
            mark = "" if count >= 2 else "   <- fewer than 2"
            lines.append(f"  [{left:.4g}, {right:.4g}): {count} neurons{mark}")
        return "\n".join(lines)


def check_assumptions(net, target) -> Assumptions:
    """Report on the theorem's hypotheses for ``net`` learning a piecewise-constant target.

    Parameters
    ----------
    net : Network
        A univariate network.
    target : Network
        A piecewise-constant target (``PiecewiseConstant`` or a heaviside network).

    Returns
    -------
    Assumptions
        The neurons in each piece ``[v_k, v_{k+1})`` (every piece needs two), and the
        scales involved.
    """
    _checks.network(net, kinds=("univariate",))
    v, d = _jumps(target)
    edges = np.concatenate([[0.0], v, [1.0]])
    counts = np.histogram(net.u, bins=edges)[0]
    counts[-1] -= np.count_nonzero(net.u == 1.0)         # histogram's last bin is closed
    pieces = tuple(((float(lo), float(hi)), int(c)) for lo, hi, c in zip(edges[:-1], edges[1:], counts))
    return Assumptions(ok=bool(np.all(counts >= 2)), pieces=pieces,
                       smallest_piece=float(np.diff(edges).min()),
                       smallest_jump=float(np.abs(d).min()) if d.size else 0.0, eta=net.eta)


def jump_floor(target, *, eta: float, activation: str = "smoothstep") -> float:
    """The loss of a network with one neuron on each jump of a piecewise-constant target and
    its best outer weights: the end point the theorem's limit reaches (docs/maths.rst §5.5).

    Parameters
    ----------
    target : Network
        Piecewise constant (``PiecewiseConstant`` or a heaviside network).
    eta : float
        The width of the network's activation.
    activation : {"ramp", "smoothstep", "relu"}

    Returns
    -------
    float
        ``L(a*(v), v)`` for the positions ``v`` of the jumps, computed exactly; about
        ``sum D^2 eta / 12`` for the ramp and ``sum D^2 eta / 28`` for the smoothstep when
        the jumps are far apart. Not proven to be the least loss of every network of that
        width: two neurons sharing a jump can go a little below it.
    """
    v, _ = _jumps(target)
    net = Network(np.zeros(v.size + 1), v, eta=eta, activation=activation)
    return float(population_loss(net.replace(a=optimal_outer(net, target)), target))


def covers_jumps(net, target) -> bool:
    """Whether every jump of a piecewise-constant target has a neuron of ``net`` within
    ``eta/2`` of it (inside its transition): the end point of the theorem."""
    v, _ = _jumps(target)
    return bool(np.all(np.abs(np.asarray(net.u)[None, :] - v[:, None]).min(axis=1, initial=np.inf)
                       <= net.eta / 2))


_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


def _pair_time(lo, hi, c, height2):
    """Time for the smaller gap x of a flanking pair to go from hi down to lo, where the
    larger gap is y = (c + x^3)^(1/3) (dL^3 - dR^3 is invariant) and
    dx/dt = -D^2 y^2 / (x + y)^2: the integral of (x + y)^2 / (D^2 y^2) over [lo, hi],
    by 16-point Gauss-Legendre on a mesh graded towards c^(1/3), where y bends."""
    if hi <= lo:
        return 0.0
    bend = np.cbrt(c)
    cuts = [p for p in bend * 2.0 ** np.arange(-6, 7) if lo < p < hi] if bend > 0 else []
    edges = np.array([lo] + cuts + [hi])
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    x = (mid[:, None] + half[:, None] * _GL_X).ravel()
    y = np.cbrt(c + x ** 3)
    return float(((half[:, None] * _GL_W).ravel() @ ((x + y) / y) ** 2) / height2)


def _pair_gap(x0, c, height2, t):
    """The smaller gap at time t (0 once the pair has stopped): solve
    _pair_time(x, x0) = t for x by safeguarded Newton steps (dt/dx = -(x+y)^2/(D^2 y^2))."""
    if _pair_time(0.0, x0, c, height2) <= t:
        return 0.0
    lo, hi, x = 0.0, x0, max(x0 - t * height2 / 2.5, 0.0)
    for _ in range(100):
        f = _pair_time(x, x0, c, height2) - t            # decreasing in x
        if f > 0:
            lo = x
        else:
            hi = x
        y = np.cbrt(c + x ** 3)
        step = f / (((x + y) / y) ** 2 / height2)
        x_new = x + step
        if not lo < x_new < hi:
            x_new = (lo + hi) / 2
        if abs(x_new - x) <= 1e-16 * max(x0, 1e-300):
            return x_new
        x = x_new
    return x


def _heaviside_limit(net, target, t_end, n_records):
    v, d = _jumps(target)
    report = check_assumptions(net, target)
    if not report.ok:
        (lo, hi), count = next(p for p in report.pieces if p[1] < 2)
        raise ValueError(f"the target piece [{lo:.4g}, {hi:.4g}) holds {count} neuron(s); the "
                         "closed-form limit needs at least two in every piece")
    times = np.linspace(0.0, t_end, n_records)
    u_rec = np.repeat(net.u[None, :], n_records, axis=0)
    for vk, dk in zip(v, d):
        left = np.flatnonzero(net.u <= vk)
        right = np.flatnonzero(net.u >= vk)
        j_left = left[np.argmax(net.u[left])]
        j_right = right[np.argmin(net.u[right])]
        gap_l, gap_r = vk - net.u[j_left], net.u[j_right] - vk
        small_is_left = gap_l <= gap_r
        x0, y0 = (gap_l, gap_r) if small_is_left else (gap_r, gap_l)
        c = y0 ** 3 - x0 ** 3
        for k, t in enumerate(times):
            x = _pair_gap(x0, c, dk * dk, t) if x0 > 0 else 0.0
            y = np.cbrt(c + x ** 3)
            gl, gr = (x, y) if small_is_left else (y, x)
            u_rec[k, j_left], u_rec[k, j_right] = vk - gl, vk + gr
    a_rec = np.array([optimal_outer(net.replace(u=u), target) for u in u_rec])
    return _trajectory(net, target, times, a_rec, u_rec, "ok", n_records, 0, "closed form")
