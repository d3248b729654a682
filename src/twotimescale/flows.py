"""Population gradient flow in slow time, and its two-timescale limit (DESIGN.md section 4).

    eps da/dt = -grad_a L(a, u) = -2 (G(u) a - b(u))        du/dt = -grad_u L(a, u)

The integrator is an implicit-explicit Runge-Kutta pair, ARS(4,4,3) of Ascher, Ruuth and
Spiteri (1997, Appl. Numer. Math. 25): the stiff block a, linear at frozen u, goes through the
L-stable DIRK tableau (one SPD solve with I + (2 dt gamma / eps) G per stage); u goes through
the explicit tableau. The u-stages are explicit, so each stage knows its u before it solves
for a. Both tableaux end on their last stage (globally stiffly accurate) and the implicit one
never uses its first stage, so no stiff residual is ever evaluated explicitly: as eps -> 0
every stage puts a on a*(u), the scheme becomes the explicit method applied to the limit
du/dt = -grad_u L(a*(u), u), and the cost does not grow as eps shrinks. The error on u is
estimated with embedded trapezoid weights (order 2) on the explicit stages. ``limit_flow`` is
the limit itself (eps = 0: a = a*(u), the minimum-norm optimum, at every stage).
"""
from dataclasses import dataclass
from fractions import Fraction as Q

import numpy as np

from .dynamics import Trajectory, _check_count
from .network import Network, as_positive
from .population import _population


def _table(rows):
    return np.array([[float(Q(x)) for x in row] for row in rows])


# ARS(4,4,3): nodes c = (0, 1/2, 2/3, 1/2, 1); both weight vectors are the last rows.
A_E = _table([[0, 0, 0, 0, 0], ["1/2", 0, 0, 0, 0], ["11/18", "1/18", 0, 0, 0],
              ["5/6", "-5/6", "1/2", 0, 0], ["1/4", "7/4", "3/4", "-7/4", 0]])
A_I = _table([[0, 0, 0, 0, 0], [0, "1/2", 0, 0, 0], [0, "1/6", "1/2", 0, 0],
              [0, "-1/2", "1/2", "1/2", 0], [0, "3/2", "-3/2", "1/2", "1/2"]])
B_E = A_E[-1]
B_HAT = np.array([0.5, 0.0, 0.0, 0.0, 0.5])        # trapezoid: order 2, for the error on u
GAMMA = 0.5
ORDER_EMBEDDED = 2
STAGES = 5


class _Problem:
    """The population quantities of one flow at a given u, from the exact kernels."""

    def __init__(self, net, target):
        self.net, self.target = net, target
        self.nfev = 0

    def at(self, u):
        """G(u) and b(u) (b = -grad_a L / 2 at a = 0), straight from the kernels."""
        net, t = self.net, self.target
        grad_a, grad_u, G = np.empty(net.m + 1), np.empty(net.m), np.empty((net.m + 1, net.m + 1))
        _population.loss_and_grad(np.zeros(net.m + 1), u, net.eta, net.code, t.a, t.u,
                                  t.eta, t.code, grad_a, grad_u)
        _population.gram(u, net.eta, net.code, G)
        self.nfev += 1
        return G, -0.5 * grad_a

    def grad_u(self, a, u):
        net, t = self.net, self.target
        grad_a, grad_u = np.empty(net.m + 1), np.empty(net.m)
        _population.loss_and_grad(a, u, net.eta, net.code, t.a, t.u, t.eta, t.code, grad_a, grad_u)
        self.nfev += 1
        return grad_u

    def loss(self, a, u):
        net, t = self.net, self.target
        return _population.loss_and_grad(a, u, net.eta, net.code, t.a, t.u, t.eta, t.code)


def _minimum_norm(G, b):
    return np.linalg.lstsq(G, b, rcond=None)[0]


def _ars_step(problem, a, u, k_first, dt, eps):
    """One ARS(4,4,3) step from (a, u), whose u-slope k_first = -grad_u L(a, u) is known:
    returns (a, u, its u-slope, error estimate on u)."""
    m = u.size
    k_u = np.empty((STAGES, m))
    k_a = np.empty((STAGES, m + 1))
    k_u[0] = k_first
    for i in range(1, STAGES):
        u_i = u + dt * (A_E[i, :i] @ k_u[:i])
        G, b = problem.at(u_i)
        if eps == 0.0:                                  # the limit: a on a*(u) at every stage
            a_i = _minimum_norm(G, b)
        else:                                           # (I + c G) a_i = rhs + c b
            rhs = a + dt * (A_I[i, 1:i] @ k_a[1:i])
            c = 2.0 * dt * GAMMA / eps
            a_i = np.linalg.solve(np.eye(m + 1) + c * G, rhs + c * b)
            k_a[i] = (a_i - rhs) / (dt * GAMMA)
        k_u[i] = -problem.grad_u(a_i, u_i)
    return a_i, u_i, k_u[-1], dt * ((B_E - B_HAT) @ k_u)


@dataclass(frozen=True, eq=False)
class FlowTrajectory(Trajectory):
    """A :class:`Trajectory` of a flow, with ``nfev`` (evaluations of the population
    quantities: G and b, or the gradient) and ``nsteps`` (accepted steps)."""

    nfev: int = 0
    nsteps: int = 0

    def __repr__(self):
        return (f"FlowTrajectory(status={self.status!r}, nsteps={self.nsteps}, nfev={self.nfev}, "
                f"t_end={self.t[-1]:.6g}, final loss={self.loss[-1]:.6g})")


def _integrate(net, target, eps, t_end, rtol, atol, n_records):
    problem = _Problem(net, target)
    times = np.linspace(0.0, t_end, n_records)
    u = net.u.copy()
    a = net.a.copy() if eps > 0 else _minimum_norm(*problem.at(u))
    a_rec, u_rec = [a.copy()], [u.copy()]
    t, nsteps, status = 0.0, 0, "ok"
    slope = -problem.grad_u(a, u)
    scale = atol + rtol * np.abs(u)                     # first step: from the initial slope
    dt = 0.01 * max(np.sqrt(np.mean((u / scale) ** 2)), 1e-5) / max(
        np.sqrt(np.mean((slope / scale) ** 2)), 1e-5)
    for t_next in times[1:]:
        while t < t_next:
            step = min(dt, t_next - t)
            a_new, u_new, slope_new, err = _ars_step(problem, a, u, slope, step, eps)
            if not (np.all(np.isfinite(a_new)) and np.all(np.isfinite(u_new))):
                if step < 1e-14 * max(t_end, 1.0):
                    status = "diverged"
                    break
                dt = step / 10
                continue
            scale = atol + rtol * np.maximum(np.abs(u), np.abs(u_new))
            norm = np.sqrt(np.mean((err / scale) ** 2))
            if norm <= 1.0:
                t = t_next if step == t_next - t else t + step
                a, u, slope = a_new, u_new, slope_new
                nsteps += 1
            dt = step * min(5.0, max(0.2, 0.9 * (norm + 1e-300) ** (-1.0 / (ORDER_EMBEDDED + 1))))
        if status != "ok":
            break
        a_rec.append(a.copy())
        u_rec.append(u.copy())
    a_rec, u_rec = np.array(a_rec), np.array(u_rec)
    loss = np.array([problem.loss(x, y) for x, y in zip(a_rec, u_rec)])
    return FlowTrajectory(t=times[:len(a_rec)], a=a_rec, u=u_rec, loss=loss, steps=nsteps,
                          status=status, final=net.replace(a=a_rec[-1], u=u_rec[-1]),
                          nfev=problem.nfev, nsteps=nsteps)


def _check(net, target, t_end, rtol, atol, n_records):
    if not isinstance(net, Network):
        raise TypeError(f"net must be a twotimescale.Network, got {type(net).__name__}")
    if not isinstance(target, Network):
        raise TypeError(f"target must be a twotimescale.Network, got {type(target).__name__}")
    return (as_positive(t_end, "t_end"), as_positive(rtol, "rtol"), as_positive(atol, "atol"),
            _check_count(n_records, "n_records", 2))


def flow(net, target, *, eps, t_end, rtol=1e-6, atol=1e-9, n_records=100):
    """The population gradient flow from ``net`` at t = 0 to ``t_end`` (slow time):
    ``eps da/dt = -grad_a L``, ``du/dt = -grad_u L``; records evenly spaced in t.

    Local error on u held under ``atol + rtol |u|`` (RMS norm); the cost does not grow as
    ``eps -> 0``. Returns a :class:`FlowTrajectory` (``nfev``, ``nsteps``).
    """
    t_end, rtol, atol, n_records = _check(net, target, t_end, rtol, atol, n_records)
    if net.activation == "heaviside":
        raise ValueError("net: the flow of a heaviside network is not defined (s' is a Dirac "
                         "mass); use limit_flow, or a ramp, smoothstep or relu network")
    return _integrate(net, target, as_positive(eps, "eps"), t_end, rtol, atol, n_records)


# ---- the two-timescale limit ------------------------------------------------------------

def limit_flow(net, target, *, t_end, rtol=1e-6, atol=1e-9, n_records=100):
    """The two-timescale limit: ``a = a*(u)`` (minimum norm) at every record and
    ``du/dt = -grad_u L(a*(u), u)``, from ``net.u`` at t = 0 to ``t_end``.

    For a ``heaviside`` network and a piecewise-constant target this is the paper's closed
    form (DESIGN.md section 4): only the two neurons flanking each jump move, and a pair stops
    exactly when one of them reaches its jump. Otherwise the ARS integrator of :func:`flow`
    runs with ``eps = 0``. Returns a :class:`FlowTrajectory`.
    """
    t_end, rtol, atol, n_records = _check(net, target, t_end, rtol, atol, n_records)
    if net.activation == "heaviside":
        return _heaviside_limit(net, target, t_end, n_records)
    return _integrate(net, target, 0.0, t_end, rtol, atol, n_records)


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


def check_assumptions(net, target):
    """Report on the theorem's hypotheses for ``net`` learning the piecewise-constant
    ``target``: the neurons in each piece ``[v_k, v_{k+1})`` and the scales involved."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a twotimescale.Network, got {type(net).__name__}")
    v, d = _jumps(target)
    edges = np.concatenate([[0.0], v, [1.0]])
    counts = np.histogram(net.u, bins=edges)[0]
    counts[-1] -= np.count_nonzero(net.u == 1.0)         # histogram's last bin is closed
    pieces = tuple(((float(lo), float(hi)), int(c)) for lo, hi, c in zip(edges[:-1], edges[1:], counts))
    return Assumptions(ok=bool(np.all(counts >= 2)), pieces=pieces,
                       smallest_piece=float(np.diff(edges).min()),
                       smallest_jump=float(np.abs(d).min()) if d.size else 0.0, eta=net.eta)


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
    problem = _Problem(net, target)
    a_rec = np.array([_minimum_norm(*problem.at(u)) for u in u_rec])
    loss = np.array([problem.loss(a, u) for a, u in zip(a_rec, u_rec)])
    return FlowTrajectory(t=times, a=a_rec, u=u_rec, loss=loss, steps=0, status="ok",
                          final=net.replace(a=a_rec[-1], u=u_rec[-1]), nfev=problem.nfev,
                          nsteps=0)
