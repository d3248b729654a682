"""Plain NumPy twins of the compiled kernels, written to be read, not to be fast.

Each function computes what its kernel computes by the most direct route: dense sums over
all neurons, every integral by 4-point Gauss-Legendre on every piece between consecutive
kinks (exact for the piecewise polynomials of degree <= 7 met here; docs/maths.rst §3).
Positions are scaled as ``z = (x - u) * (1 / eta)``, exactly as in the kernels.
"""
import math

import numpy as np

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(4)


def activation(name, z):
    """s(z) for the activation ``name`` (docs/maths.rst §2)."""
    z = np.asarray(z, dtype=float)
    if name == "ramp":
        return np.clip(z + 0.5, 0.0, 1.0)
    if name == "smoothstep":
        return np.select([z <= -0.5, z <= 0.0, z < 0.5], [0.0, 4 * (z + 0.5) ** 3, 1 - 4 * (0.5 - z) ** 3], 1.0)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "heaviside":
        return (z >= 0).astype(float)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name, z):
    """s'(z), with the kink convention of docs/maths.rst §2."""
    z = np.asarray(z, dtype=float)
    if name == "ramp":
        return ((z >= -0.5) & (z <= 0.5)).astype(float)
    if name == "smoothstep":
        return np.select([z <= -0.5, z <= 0.0, z < 0.5], [0.0, 12 * (z + 0.5) ** 2, 12 * (0.5 - z) ** 2], 0.0)
    if name == "relu":
        return (z > 0).astype(float)
    raise ValueError(f"{name} has no derivative")


def second_derivative(name, z):
    """The bounded part of s''(z): the smoothstep's 24(z+1/2) on (-1/2, 0], -24(1/2-z) on
    (0, 1/2); 0 for the ramp and the ReLU, whose s'' is Dirac masses at the kinks."""
    z = np.asarray(z, dtype=float)
    if name == "smoothstep":
        return np.select([z <= -0.5, z <= 0.0, z < 0.5], [0.0, 24 * (z + 0.5), -24 * (0.5 - z)], 0.0)
    return np.zeros_like(z)


_KINKS = {"ramp": [-0.5, 0.5], "smoothstep": [-0.5, 0.0, 0.5], "relu": [0.0], "heaviside": [0.0]}


def features(net, x):
    """The matrix ``phi[i, k] = phi_i(x_k)``, ``phi_0 = 1``, ``phi_j = s((x - u_j) / eta)``."""
    z = (np.asarray(x)[None, :] - net.u[:, None]) * (1.0 / net.eta)
    return np.vstack([np.ones((1, z.shape[1])), activation(net.activation, z)])


def evaluate(net, x):
    """f(x) = a . phi(x)."""
    x = np.asarray(x, dtype=float)
    return (net.a @ features(net, x.ravel())).reshape(x.shape)


def quadrature(*nets):
    """Nodes and weights that integrate over [0, 1] exactly any polynomial of degree <= 7
    between the kinks of the given networks."""
    kinks = [np.asarray(n.u)[:, None] + np.asarray(_KINKS[n.activation])[None, :] * n.eta
             for n in nets]
    grid = np.unique(np.clip(np.concatenate([[0.0, 1.0]] + [k.ravel() for k in kinks]), 0, 1))
    left, right = grid[:-1], grid[1:]
    mid, half = (left + right) / 2, (right - left) / 2
    x = mid[:, None] + half[:, None] * _NODES[None, :]
    w = half[:, None] * _WEIGHTS[None, :]
    return x.ravel(), w.ravel()


def population_loss(net, target):
    """L = int_0^1 (f - f*)^2."""
    x, w = quadrature(net, target)
    return float(w @ (evaluate(net, x) - evaluate(target, x)) ** 2)


def population_grad(net, target):
    """grad_a = 2 int r phi, grad_u = -(2 a / eta) int r s'((x - u) / eta), r = f - f*."""
    x, w = quadrature(net, target)
    r = evaluate(net, x) - evaluate(target, x)
    grad_a = 2 * features(net, x) @ (w * r)
    z = (x[None, :] - net.u[:, None]) * (1.0 / net.eta)
    grad_u = -2 * net.a[1:] / net.eta * (derivative(net.activation, z) @ (w * r))
    return grad_a, grad_u


def gram(net):
    """G = int phi phi^T."""
    x, w = quadrature(net)
    phi = features(net, x)
    return (phi * w) @ phi.T


def normal_equations(net, target):
    """G = int phi phi^T and b = int phi f*: L(a) = a.G a - 2 a.b + int f*^2."""
    x, w = quadrature(net, target)
    phi = features(net, x)
    return (phi * w) @ phi.T, phi @ (w * evaluate(target, x))


def optimal_outer(net, target):
    """Minimum-norm solution of G a = b, b = int phi f*."""
    return np.linalg.lstsq(*normal_equations(net, target), rcond=None)[0]


def hessian(net, target):
    """H = 2 J + 2 R in the order (a_0..a_m, u_1..u_m) (docs/maths.rst §7): J = int psi psi^T
    with psi = (phi_0..phi_m, -(a_j/eta) s'(z_j)); R[a_j, u_j] = -(1/eta) int r s'(z_j),
    R[u_j, u_j] = (a_j/eta^2) int r s''(z_j), the Dirac parts of s'' (ramp: +1 at z = -1/2,
    -1 at z = 1/2; relu: +1 at z = 0) as eta times r at the kinks inside (0, 1)."""
    m, eta = net.m, net.eta
    x, w = quadrature(net, target)
    z = (x[None, :] - net.u[:, None]) * (1.0 / eta)
    psi = np.vstack([features(net, x), -(net.a[1:, None] / eta) * derivative(net.activation, z)])
    r = evaluate(net, x) - evaluate(target, x)
    R = np.zeros((2 * m + 1, 2 * m + 1))
    j = np.arange(m)
    R[1 + j, m + 1 + j] = R[m + 1 + j, 1 + j] = -(derivative(net.activation, z) @ (w * r)) / eta
    curve = second_derivative(net.activation, z) @ (w * r)
    masses = {"ramp": [(-0.5, 1.0), (0.5, -1.0)], "relu": [(0.0, 1.0)]}.get(net.activation, [])
    for kink, sign in masses:
        point = net.u + kink * eta
        inside = (0.0 < point) & (point < 1.0)
        curve += np.where(inside, sign * eta * (evaluate(net, point) - evaluate(target, point)), 0.0)
    R[m + 1 + j, m + 1 + j] = net.a[1:] / eta ** 2 * curve
    return 2 * (psi * w) @ psi.T + 2 * R


def additive_hessian(net, target):
    """H of an additive pair, flat order (a0, a[0..d-1], u[0..d-1]): within coordinate k the
    univariate H of the residual averaged over the other coordinates, E[r | x_k]; between
    coordinates 2 E psi_p E psi_q; the bias row 2 E psi."""
    d, m = net.d, net.m
    means = [w @ r for _, _, w, r in (_coordinate_moments(net, target, k) for k in range(d))]
    total = net.a0 - target.a0 + sum(means)
    n = 1 + 2 * d * m
    H = np.zeros((n, n))
    H[0, 0] = 2.0
    mean_psi = []
    for k in range(d):
        idx = np.concatenate([1 + k * m + np.arange(m), 1 + d * m + k * m + np.arange(m)])
        Hk = hessian(net.coordinate(k, total - means[k]), target.coordinate(k))
        H[np.ix_(idx, idx)] = Hk[1:, 1:]
        H[0, idx] = H[idx, 0] = Hk[0, 1:]
        mean_psi.append((idx, Hk[0, 1:] / 2))
    for k, (idx, ek) in enumerate(mean_psi):
        for l, (jdx, el) in enumerate(mean_psi):
            if k != l:
                H[np.ix_(idx, jdx)] = 2 * np.outer(ek, el)
    return H


def draw_samples(seed, steps, noise=1.0, noise_dist="uniform"):
    """The inputs and label noise that ``twotimescale.sgd(..., seed=seed)`` draws: from
    ``Generator(PCG64(SeedSequence(seed, spawn_key=(1,))))``, the seed's "samples" child:
    x ~ U[0, 1) then xi, step after step."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1,))))
    x, xi = np.empty(steps), np.empty(steps)
    for i in range(steps):
        x[i] = rng.random()
        xi[i] = noise * (2 * rng.random() - 1) if noise_dist == "uniform" else noise * rng.standard_normal()
    return x, xi


def sgd(net, target, h, eps, x, xi):
    """Online SGD, one step per sample: returns the final (a, u). With r = f(x) - f*(x) - xi,
    a <- a - 2 h r phi(x),  u <- u + h eps (2 r a / eta) s'((x - u) / eta), at the old values."""
    a, u = net.a.copy(), net.u.copy()
    for xk, xik in zip(x, xi):
        z = (xk - u) * (1.0 / net.eta)
        phi = np.concatenate([[1.0], activation(net.activation, z)])
        r = a @ phi - evaluate(target, np.array([xk]))[0] - xik
        a, u = a - h * 2 * r * phi, u + h * eps * (2 * r * a[1:] / net.eta) * derivative(net.activation, z)
    return a, u


def gd(net, X, Y, h, eps, batches):
    """Mini-batch GD over the given batches (arrays of indices into X, Y), in order, on the
    mean square over each batch: returns the final (a, u)."""
    a, u = net.a.copy(), net.u.copy()
    for batch in batches:
        x, y = X[batch], Y[batch]
        z = (x[None, :] - u[:, None]) * (1.0 / net.eta)
        phi = np.vstack([np.ones((1, x.size)), activation(net.activation, z)])
        r = a @ phi - y
        grad_a = 2 * phi @ r / x.size
        grad_u = -2 * a[1:] / net.eta * (derivative(net.activation, z) @ r) / x.size
        a, u = a - h * grad_a, u - h * eps * grad_u
    return a, u


# ---- the gradient flow eps da/dt = -grad_a L, du/dt = -grad_u L (twotimescale.flows) ------

# ARS(4,4,3): explicit tableau for u, L-stable DIRK (gamma = 1/2) for a; the last rows are the
# weights; the error on u compares them with the trapezoid (1/2, 0, 0, 0, 1/2).
ARS_E = np.array([[0, 0, 0, 0, 0], [1 / 2, 0, 0, 0, 0], [11 / 18, 1 / 18, 0, 0, 0],
                  [5 / 6, -5 / 6, 1 / 2, 0, 0], [1 / 4, 7 / 4, 3 / 4, -7 / 4, 0]])
ARS_I = np.array([[0, 0, 0, 0, 0], [0, 1 / 2, 0, 0, 0], [0, 1 / 6, 1 / 2, 0, 0],
                  [0, -1 / 2, 1 / 2, 1 / 2, 0], [0, 3 / 2, -3 / 2, 1 / 2, 1 / 2]])
ARS_ERR = ARS_E[-1] - np.array([1 / 2, 0, 0, 0, 1 / 2])


def ars_step(net, target, a, u, dt, eps):
    """One ARS(4,4,3) step from (a, u): returns (a, u, error estimate on u), or None when a
    stage is not finite. Stage i: u_i explicit; then (I + c G(u_i)) a_i = rhs_i + c b(u_i),
    c = 2 dt gamma / eps, or a_i = a*(u_i) (minimum norm) when eps = 0."""
    slopes_u = [-population_grad(net.replace(a=a, u=u), target)[1]]
    slopes_a = [np.zeros_like(a)]
    for i in range(1, 5):
        u_i = u + dt * (ARS_E[i, :i] @ np.array(slopes_u))
        if not np.all(np.isfinite(u_i)):
            return None
        G, b = normal_equations(net.replace(u=u_i), target)
        if eps == 0:
            a_i = np.linalg.lstsq(G, b, rcond=None)[0]
        else:
            rhs = a + dt * (ARS_I[i, :i] @ np.array(slopes_a))
            c = dt / eps                                 # 2 dt gamma / eps
            a_i = np.linalg.solve(np.eye(a.size) + c * G, rhs + c * b)
            slopes_a.append((a_i - rhs) / (dt / 2))
        if not np.all(np.isfinite(a_i)):
            return None
        slopes_u.append(-population_grad(net.replace(a=a_i, u=u_i), target)[1])
    return a_i, u_i, dt * (ARS_ERR @ np.array(slopes_u))


DOPRI_A = np.array([[0, 0, 0, 0, 0, 0],
                    [1 / 5, 0, 0, 0, 0, 0],
                    [3 / 40, 9 / 40, 0, 0, 0, 0],
                    [44 / 45, -56 / 15, 32 / 9, 0, 0, 0],
                    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0],
                    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0]])
DOPRI_B = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])
DOPRI_ERR = np.array([-71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40])
# Shampine's quartic dense output (as SciPy's RK45.P): stage i weighs sum_p P[i, p] theta^(p+1)
DOPRI_DENSE = np.array([
    [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
    [0, 0, 0, 0],
    [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
    [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
    [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
    [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
    [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423]])


def dopri_step(net, target, a, u, dt, eps):
    """One Dormand-Prince 5(4) step on y = (a, u), y' = (-grad_a L / eps, -grad_u L):
    returns (a, u, error estimate on (a, u), the seven stage slopes), or None when a stage
    is not finite."""
    def slope(y):
        grad_a, grad_u = population_grad(net.replace(a=y[:a.size], u=y[a.size:]), target)
        return np.concatenate([-grad_a / eps, -grad_u])

    y = np.concatenate([a, u])
    k = [slope(y)]
    for i in range(1, 7):
        weights = DOPRI_A[i, :i] if i < 6 else DOPRI_B
        y_i = y + dt * (weights @ np.array(k))
        if not np.all(np.isfinite(y_i)):
            return None
        k.append(slope(y_i))
    return y_i[:a.size], y_i[a.size:], dt * (DOPRI_ERR @ np.array(k)), np.array(k)


def dopri_dense(a, u, dt, stages, theta):
    """(a, u) at theta in [0, 1] of the step of dt from (a, u) whose stages are given."""
    y = np.concatenate([a, u]) + dt * (DOPRI_DENSE @ theta ** np.arange(1, 5)) @ stages
    return y[:a.size], y[a.size:]


def flow(net, target, eps, times, rtol, atol, method="ars"):
    """The flow through ``times`` (from 0) by ARS or dopri5 steps: a step is kept when the
    RMS of ``err / (atol + rtol max(|y|, |y_new|))`` is at most 1, y being u (ARS) or (a, u)
    (dopri5), and the next is that step times 0.9 norm^(-1/(q+1)), kept within [0.2, 5], q the
    embedded order (2 or 4). ARS's steps end on the record times; dopri5's run to the last
    and interpolate the records they pass. Returns the states at ``times`` and the steps."""
    step_of, q = (ars_step, 2) if method == "ars" else (dopri_step, 4)
    controlled = (lambda a, u: u) if method == "ars" else (lambda a, u: np.concatenate([a, u]))
    a = net.a if eps > 0 else optimal_outer(net, target)
    u = net.u
    y = controlled(a, u)
    scale = atol + rtol * np.abs(y)
    grad = population_grad(net.replace(a=a), target)
    slope = controlled(-grad[0] / eps if eps > 0 else 0 * a, -grad[1])
    dt = 0.01 * max(np.sqrt(np.mean((y / scale) ** 2)), 1e-5) / max(
        np.sqrt(np.mean((slope / scale) ** 2)), 1e-5)
    t, steps, a_rec, u_rec = 0.0, 0, [a], [u]
    while len(a_rec) < len(times):
        t_next = times[-1] if method == "dopri5" else times[len(a_rec)]
        step = min(dt, t_next - t)
        new = step_of(net, target, a, u, step, eps)
        if new is None:
            dt = step / 10
            continue
        y, y_new = controlled(a, u), controlled(new[0], new[1])
        norm = np.sqrt(np.mean((new[2] / (atol + rtol * np.maximum(np.abs(y), np.abs(y_new)))) ** 2))
        if norm <= 1:
            t_new = t_next if step == t_next - t else t + step
            for t_rec in times[len(a_rec):]:
                if t_rec > t_new:
                    break
                a_k, u_k = new[:2] if t_rec == t_new else dopri_dense(a, u, step, new[3],
                                                                      (t_rec - t) / step)
                a_rec.append(a_k)
                u_rec.append(u_k)
            t, a, u, steps = t_new, new[0], new[1], steps + 1
        dt = step * min(5.0, max(0.2, 0.9 * (norm + 1e-300) ** (-1 / (q + 1))))
    return np.array(a_rec), np.array(u_rec), steps


# ---- additive networks on [0, 1]^d: r = a0 - c0 + sum_k r_k(x_k), coordinates independent ---

def _coordinate_moments(net, target, k):
    """Nodes, weights and the residual r_k of coordinate k (no biases)."""
    student, teacher = net.coordinate(k), target.coordinate(k)
    x, w = quadrature(student, teacher)
    return student, x, w, evaluate(student, x) - evaluate(teacher, x)


def additive_loss(net, target):
    """E r^2 = (E r)^2 + sum_k Var r_k."""
    mean, variance = net.a0 - target.a0, 0.0
    for k in range(net.d):
        _, _, w, r = _coordinate_moments(net, target, k)
        mean += w @ r
        variance += w @ r ** 2 - (w @ r) ** 2
    return float(mean ** 2 + variance)


def additive_grad(net, target):
    """grad_a0 = 2 E r; grad_a[k, j] = 2 E[r phi_kj]; grad_u[k, j] = -(2 a_kj / eta) E[r s'_kj],
    with E[r g(x_k)] = E[r_k g] + (E r - E r_k) E g."""
    moments = [_coordinate_moments(net, target, k) for k in range(net.d)]
    means = [w @ r for _, _, w, r in moments]
    total = net.a0 - target.a0 + sum(means)
    grad_a, grad_u = np.empty((net.d, net.m)), np.empty((net.d, net.m))
    for k, (student, x, w, r) in enumerate(moments):
        phi = features(student, x)[1:]
        ds = derivative(net.activation, (x[None, :] - student.u[:, None]) * (1.0 / net.eta))
        rest = total - means[k]
        grad_a[k] = 2 * (phi @ (w * r) + rest * (phi @ w))
        grad_u[k] = -2 * net.a[k] / net.eta * (ds @ (w * r) + rest * (ds @ w))
    return 2 * total, grad_a, grad_u


def additive_evaluate(net, X):
    """f(X) for X of shape (n, d)."""
    return net.a0 + sum(evaluate(net.coordinate(k), X[:, k]) for k in range(net.d))


def additive_sgd(net, target, h, eps, X, xi):
    """Online SGD of an additive network, one step per row of X: returns (a0, a, u)."""
    a0, a, u = net.a0, net.a.copy(), net.u.copy()
    for x, noise in zip(X, xi):
        z = (x[:, None] - u) * (1.0 / net.eta)
        phi, ds = activation(net.activation, z), derivative(net.activation, z)
        r = a0 + np.sum(a * phi) - additive_evaluate(target, x[None, :])[0] - noise
        a0, a, u = a0 - h * 2 * r, a - h * 2 * r * phi, u + h * eps * (2 * r * a / net.eta) * ds
    return a0, a, u


def additive_optimal_outer(net, target):
    """(a0*, a*): least squares over the features 1, phi_kj(x_k), whose Gram matrix is, by
    independence, E[phi_kj phi_lj'] = E phi_kj E phi_lj' for k != l."""
    d, m = net.d, net.m
    means = []
    for k in range(d):
        student = net.coordinate(k)
        x, w = quadrature(student, target.coordinate(k))
        phi = features(student, x)[1:]
        means.append((phi @ w, x, w, phi))
    mean_target = [w @ evaluate(target.coordinate(k), x) for k, (_, x, w, _) in enumerate(means)]
    G = np.eye(1 + d * m)
    b = np.empty(1 + d * m)
    b[0] = target.a0 + sum(mean_target)
    for k, (mk, x, w, phi) in enumerate(means):
        rows = slice(1 + k * m, 1 + (k + 1) * m)
        G[0, rows] = G[rows, 0] = mk
        for l, (ml, _, _, _) in enumerate(means):
            G[rows, 1 + l * m:1 + (l + 1) * m] = (phi * w) @ phi.T if l == k else np.outer(mk, ml)
        rest = target.a0 + sum(mean_target) - mean_target[k]
        b[rows] = phi @ (w * evaluate(target.coordinate(k), x)) + mk * rest
    a = np.linalg.lstsq(G, b, rcond=None)[0]
    return a[0], a[1:].reshape(d, m)


def additive_gd(net, X, Y, h, eps, batches):
    """Mini-batch GD of an additive network over the given batches (as gd): (a0, a, u)."""
    a0, a, u = net.a0, net.a.copy(), net.u.copy()
    for batch in batches:
        x, y = X[batch], Y[batch]                          # (B, d), (B,)
        z = (x[:, :, None] - u[None, :, :]) * (1.0 / net.eta)   # (B, d, m)
        phi, ds = activation(net.activation, z), derivative(net.activation, z)
        r = a0 + np.sum(a * phi, axis=(1, 2)) - y
        grad_a0 = 2 * r.mean()
        grad_a = 2 * np.tensordot(r, phi, axes=1) / x.shape[0]
        grad_u = -2 * a / net.eta * np.tensordot(r, ds, axes=1) / x.shape[0]
        a0, a, u = a0 - h * grad_a0, a - h * grad_a, u - h * eps * grad_u
    return a0, a, u


# ---- the paper's own loop (twotimescale.published, reproduce --as-published) --------------

def published_cubic(z):
    """The paper's cubic step, as its code writes it: two clipped halves,
    min(max(4 (z + 1/2)^3, 0), 1/2) + min(max(1/2 - 4 (1/2 - z)^3, 0), 1/2); our smoothstep
    to rounding."""
    z = np.asarray(z, dtype=float)
    return (np.minimum(np.maximum(4 * (z + 0.5) ** 3, 0), 0.5)
            + np.minimum(np.maximum(0.5 - 4 * (0.5 - z) ** 3, 0), 0.5))


def published_sgd(rng, a, u, eta, teacher, h, eps, steps, noise=1.0):
    """The paper's SGD loop, step by step: x = rng.rand(), then its noise
    noise (2 rng.rand() - 1); r = f(x) - f*(x) - noise, with f(x) = a . phi(x),
    phi_0 = 1 (the paper's bias, a neuron at -eta/2, is 1 on [0, 1]) and
    phi_j = cubic((x - u_j) / eta); then, at the old values::

        a <- a - 2 h r phi        u_j <- u_j + 2 h eps r a_j 1{|x - u_j| <= eta/2} / eta

    ``rng`` is a numpy.random.RandomState (the paper's legacy stream), ``teacher`` any
    Network. Returns the final (a, u)."""
    a, u = np.array(a, dtype=float), np.array(u, dtype=float)
    for _ in range(steps):
        x = rng.rand()
        xi = noise * (2 * rng.rand() - 1)
        phi = np.concatenate([[1.0], published_cubic((x - u) / eta)])
        r = a @ phi - evaluate(teacher, np.array([x]))[0] - xi
        inside = (x >= u - eta / 2) & (x <= u + eta / 2)
        a, u = a - h * 2 * r * phi, u + h * eps * 2 * r * a[1:] * inside / eta
    return a, u


# ---- networks on Gaussian inputs x ~ N(0, I_d) (docs/maths.rst §8) ----------------------

_erf = np.vectorize(math.erf, otypes=[float])


def gaussian_activation(name, z):
    """s(z): max(z, 0), erf(z / sqrt 2) or z."""
    z = np.asarray(z, dtype=float)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "erf":
        return _erf(z / np.sqrt(2.0))
    return z


def gaussian_derivative(name, z):
    """s'(z), with s'(0) = 0 for the ReLU."""
    z = np.asarray(z, dtype=float)
    if name == "relu":
        return (z > 0).astype(float)
    if name == "erf":
        return np.sqrt(2 / np.pi) * np.exp(-z ** 2 / 2)
    return np.ones_like(z)


def gaussian_evaluate(net, X):
    """f at the rows of X: a network, or a Hermite target sum_k c_k He_k(v . x)."""
    X = np.asarray(X, dtype=float)
    if net.activation == "hermite":
        return np.polynomial.hermite_e.hermeval(X @ net.v, net.coeffs)
    return net.a[0] + gaussian_activation(net.activation, X @ net.W.T) @ net.a[1:]


def _angle(p, q):
    """The angle between p and q by Kahan's formula 2 atan2(|p^ - q^|, |p^ + q^|)."""
    p, q = p / np.linalg.norm(p), q / np.linalg.norm(q)
    return 2 * np.arctan2(np.linalg.norm(p - q), np.linalg.norm(p + q))


def gaussian_pair(sp, sq, p, q):
    """K = E s_p(p . x) s_q(q . x) and grad_p K (sq equal to sp, or linear)."""
    rho = p @ q
    if sp == sq == "relu":
        np_, nq, theta = np.linalg.norm(p), np.linalg.norm(q), _angle(p, q)
        K = (np_ * nq * np.sin(theta) + (np.pi - theta) * rho) / (2 * np.pi)
        return K, ((np.pi - theta) * q + nq * np.sin(theta) / np_ * p) / (2 * np.pi)
    if sp == sq == "erf":
        A, B = 1 + p @ p, 1 + q @ q
        K = 2 / np.pi * np.arcsin(rho / np.sqrt(A * B))
        return K, 2 / np.pi * (q - rho / A * p) / np.sqrt(A * B - rho ** 2)
    if sp == "erf":                                      # against linear
        A = 1 + p @ p
        return (np.sqrt(2 / np.pi) * rho / np.sqrt(A),
                np.sqrt(2 / np.pi) * (q / np.sqrt(A) - rho * p / A ** 1.5))
    c = 0.5 if sp == "relu" else 1.0                     # relu or linear, against linear
    return c * rho, c * q


def gaussian_mean(s, p):
    """M = E s(p . x) and grad_p M."""
    if s == "relu":
        n = np.linalg.norm(p)
        return n / np.sqrt(2 * np.pi), p / (n * np.sqrt(2 * np.pi))
    return 0.0, np.zeros_like(p)


def relu_hermite_coefficient(k):
    """mu_k = E relu(g) He_k(g), g ~ N(0, 1)."""
    if k == 0:
        return 1 / np.sqrt(2 * np.pi)
    if k == 1:
        return 0.5
    if k % 2:
        return 0.0
    return (-1) ** (k // 2 + 1) * math.prod(range(k - 3, 0, -2)) / np.sqrt(2 * np.pi)


def gaussian_hermite(s, p, target):
    """E s(p . x) f*(x) for a Hermite target, and its gradient in p."""
    v, c = target.v, target.coeffs
    if s == "linear":
        c1 = c[1] if c.size > 1 else 0.0
        return c1 * (p @ v), c1 * v
    n = np.linalg.norm(p)
    cos = p @ v / n
    value, grad = 0.0, np.zeros_like(p)
    for k, ck in enumerate(c):
        mu = ck * relu_hermite_coefficient(k)
        value += mu * n * cos ** k                       # |p| mu_k cos^k
        grad += mu * ((k * cos ** (k - 1) if k else 0.0) * v + (1 - k) * cos ** k * p / n)
    return value, grad


def _teacher_terms(s, p, target):
    """E s(p . x) f*(x) and its gradient in p."""
    if target.activation == "hermite":
        return gaussian_hermite(s, p, target)
    value, grad = gaussian_mean(s, p)
    value, grad = target.a[0] * value, target.a[0] * grad
    for ck, vk in zip(target.a[1:], target.W):
        K, gK = gaussian_pair(s, target.activation, p, vk)
        value, grad = value + ck * K, grad + ck * gK
    return value, grad


def gaussian_gram(s, W):
    """E phi phi^T for phi = (1, s(w_j . x)): the Gram matrix of a network's features."""
    m = W.shape[0]
    G = np.ones((m + 1, m + 1))
    for j in range(m):
        G[0, j + 1] = G[j + 1, 0] = gaussian_mean(s, W[j])[0]
        for l in range(m):
            G[j + 1, l + 1] = gaussian_pair(s, s, W[j], W[l])[0]
    return G


def gaussian_normal_equations(net, target):
    """G = E phi phi^T, b = E phi f* and E f*^2, phi = (1, s(w_j . x))."""
    b = np.array([0.0] + [_teacher_terms(net.activation, w, target)[0] for w in net.W])
    if target.activation == "hermite":
        b[0] = target.coeffs[0]
        square = sum(ck ** 2 * math.factorial(k) for k, ck in enumerate(target.coeffs))
    else:                                    # the teacher's own features: E f* and E f*^2
        Gt = gaussian_gram(target.activation, target.W)
        b[0] = Gt[0] @ target.a
        square = target.a @ Gt @ target.a
    return gaussian_gram(net.activation, net.W), b, square


def gaussian_loss(net, target):
    """L = E (f - f*)^2 = a.G.a - 2 a.b + E f*^2."""
    G, b, square = gaussian_normal_equations(net, target)
    return float(net.a @ G @ net.a - 2 * net.a @ b + square)


def gaussian_grad(net, target):
    """grad_a = 2 (G a - b); grad_{w_j} = 2 a_j (a_0 grad M_j + sum_l a_l grad_p K(w_j, w_l)
    - grad_p E s(w_j . x) f*)."""
    G, b, _ = gaussian_normal_equations(net, target)
    a, W, s = net.a, net.W, net.activation
    grad_w = np.empty_like(W)
    for j in range(net.m):
        total = a[0] * gaussian_mean(s, W[j])[1] - _teacher_terms(s, W[j], target)[1]
        for l in range(net.m):       # l = j too: grad_p K(p, q) at q = p
            total = total + a[l + 1] * gaussian_pair(s, s, W[j], W[l])[1]
        grad_w[j] = 2 * a[j + 1] * total
    return 2 * (G @ a - b), grad_w


def draw_gaussian_samples(seed, steps, d, noise=1.0, noise_dist="uniform"):
    """The inputs and label noise that ``twotimescale.sgd(..., seed=seed)`` draws for a
    GaussianNetwork: from the seed's "samples" child, d standard normals then xi, step after
    step."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1,))))
    X, xi = np.empty((steps, d)), np.empty(steps)
    for i in range(steps):
        X[i] = rng.standard_normal(d)
        xi[i] = noise * (2 * rng.random() - 1) if noise_dist == "uniform" else noise * rng.standard_normal()
    return X, xi


def gaussian_sgd(net, target, h, eps, X, xi):
    """Online SGD on a GaussianNetwork, one step per sample: returns the final (a, W). With
    r = f(x) - f*(x) - xi, a <- a - 2 h r phi(x), w_j <- w_j - 2 h eps r a_j s'(w_j . x) x,
    at the old values."""
    a, W = net.a.copy(), net.W.copy()
    for x, noise in zip(X, xi):
        z = W @ x
        phi = np.concatenate([[1.0], gaussian_activation(net.activation, z)])
        r = a @ phi - gaussian_evaluate(target, x[None, :])[0] - noise
        a, W = (a - 2 * h * r * phi,
                W - 2 * h * eps * r * np.outer(a[1:] * gaussian_derivative(net.activation, z), x))
    return a, W


def gaussian_gd(net, X, Y, h, eps, batches):
    """Mini-batch GD on a GaussianNetwork over the given batches (index arrays), on the mean
    square over each batch: returns the final (a, W)."""
    a, W = net.a.copy(), net.W.copy()
    for batch in batches:
        x, y = X[batch], Y[batch]
        z = x @ W.T                                       # (B, m)
        phi = np.hstack([np.ones((len(batch), 1)), gaussian_activation(net.activation, z)])
        r = phi @ a - y
        grad_a = 2 * phi.T @ r / len(batch)
        grad_w = 2 * ((r[:, None] * gaussian_derivative(net.activation, z)) * a[1:]).T @ x / len(batch)
        a, W = a - h * grad_a, W - h * eps * grad_w
    return a, W
