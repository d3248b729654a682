# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The population gradient flow and its two-timescale limit, integrated without the GIL
(docs/maths.rst §5):

    eps da/dt = -grad_a L = -2 (G(u) a - b(u))        du/dt = -grad_u L(a, u)

Design: each stage is a sweep (the gradient) or a Gram matrix and b(u), cimported from
population.pyx (population.pxd); the whole integration, step control included, runs here.
Two schemes, one step control (twotimescale.flows says which runs when):

* ARS(4,4,3), for stiff a (small eps): u through the explicit tableau E, a through the
  L-stable DIRK tableau I with gamma = 1/2, one SPD solve
  (I + (2 dt gamma / eps) G) a_i = rhs_i + (2 dt gamma / eps) b per stage; at eps = 0 each
  stage takes a_i = a*(u_i), the minimum-norm solution of G a = b. Both solves go through
  one Cholesky factorisation (n = m + 1 is small; cost n^3 / 3), pivoted and rank-revealing
  for a*(u) only. Error on u.
* Dormand-Prince 5(4), for a that is not stiff: explicit on (a, u), one sweep per stage and
  no Gram matrix nor solve. Error on (a, u). Its records come from Shampine's quartic
  dense output (as SciPy's RK45), so they do not cut its steps.

The NumPy twins are twotimescale.reference.ars_step, dopri_step and flow.
"""
from libc.math cimport sqrt, fabs, fmax, fmin, pow, isfinite
from libc.float cimport DBL_EPSILON
from libc.stdlib cimport malloc, free
from ._network cimport Net, NetView, KIND_GAUSSIAN, interrupted, raise_interrupt
from ._gaussian cimport population
from ._common cimport all_finite
from ._population cimport Act, act_init, overlap, self_integrals, gram_fill, sweep

cdef enum:
    STAGES = 5
cdef double ARS_E[25]          # row i: the explicit stage weights
cdef double ARS_I[25]          # row i: the implicit stage weights (column 0 unused)
cdef double ARS_ERR[5]         # b_E - b_trapezoid: the embedded order-2 error estimate on u
ARS_E[:] = [0, 0, 0, 0, 0,
            0.5, 0, 0, 0, 0,
            11.0 / 18, 1.0 / 18, 0, 0, 0,
            5.0 / 6, -5.0 / 6, 0.5, 0, 0,
            0.25, 1.75, 0.75, -1.75, 0]
ARS_I[:] = [0, 0, 0, 0, 0,
            0, 0.5, 0, 0, 0,
            0, 1.0 / 6, 0.5, 0, 0,
            0, -0.5, 0.5, 0.5, 0,
            0, 1.5, -1.5, 0.5, 0.5]
ARS_ERR[:] = [0.25 - 0.5, 1.75, 0.75, -1.75, -0.5]
cdef double GAMMA = 0.5

cdef enum:
    ARS = 0                     # the method codes of flow_integrate and flow_step
    DOPRI5 = 1
    DOPRI_STAGES = 7

#: method name -> the code flow_integrate takes: the one table of them
METHODS = {"ars": ARS, "dopri5": DOPRI5}
cdef double DOPRI_A[36]         # row i - 1: the weights of stage i (the last: the solution's)
cdef double DOPRI_ERR[7]        # b_5 - b_4, the last stage being the slope at the new state
DOPRI_A[:] = [1.0 / 5, 0, 0, 0, 0, 0,
              3.0 / 40, 9.0 / 40, 0, 0, 0, 0,
              44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0,
              19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0,
              9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0,
              35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84]
DOPRI_ERR[:] = [-71.0 / 57600, 0, 71.0 / 16695, -71.0 / 1920, 17253.0 / 339200, -22.0 / 525,
                1.0 / 40]
cdef double DOPRI_DENSE[28]     # row i: stage i's weight at theta is sum_p P[i, p] theta^(p+1)
DOPRI_DENSE[:] = [1, -8048581381.0 / 2820520608, 8663915743.0 / 2820520608,
                  -12715105075.0 / 11282082432,
                  0, 0, 0, 0,
                  0, 131558114200.0 / 32700410799, -68118460800.0 / 10900136933,
                  87487479700.0 / 32700410799,
                  0, -1754552775.0 / 470086768, 14199869525.0 / 1410260304,
                  -10690763975.0 / 1880347072,
                  0, 127303824393.0 / 49829197408, -318862633887.0 / 49829197408,
                  701980252875.0 / 199316789632,
                  0, -282668133.0 / 205662961, 2019193451.0 / 616988883,
                  -1453857185.0 / 822651844,
                  0, 40617522.0 / 29380423, -110615467.0 / 29380423, 69997945.0 / 29380423]


cdef Py_ssize_t cholesky(double *A, Py_ssize_t n, double tol, Py_ssize_t *perm,
                         bint pivot=True) noexcept nogil:
    """Pivoted Cholesky P^T A P = L L^T of a symmetric positive semidefinite A (n x n,
    row-major, its lower triangle read), in place: L in the lower triangle, in pivot order,
    with perm[k] the original index of pivot k (LAPACK's dpstrf, unblocked); the upper
    triangle is left as scratch. Stops when the largest remaining pivot is not above tol
    (Higham's rule) and returns the rank. Without ``pivot`` the order stays (perm is the
    identity): enough for a well-conditioned SPD matrix such as I + c G, and cheaper."""
    cdef Py_ssize_t i, j, k, q
    cdef double d, lik
    for k in range(n):
        perm[k] = k
    for k in range(n):
        q = k
        for i in range(k + 1, n if pivot else k + 1):
            if A[i * n + i] > A[q * n + q]:
                q = i
        if not A[q * n + q] > tol:
            return k
        if q != k:                                # swap k and q, rows and columns, within
            perm[k], perm[q] = perm[q], perm[k]   # the lower triangle
            A[k * n + k], A[q * n + q] = A[q * n + q], A[k * n + k]
            for j in range(k):
                A[k * n + j], A[q * n + j] = A[q * n + j], A[k * n + j]
            for i in range(k + 1, q):
                A[i * n + k], A[q * n + i] = A[q * n + i], A[i * n + k]
            for i in range(q + 1, n):
                A[i * n + k], A[i * n + q] = A[i * n + q], A[i * n + k]
        d = sqrt(A[k * n + k])
        A[k * n + k] = d
        for i in range(k + 1, n):                 # column k of L, copied along row k (the
            A[i * n + k] /= d                     # upper triangle, unused) for contiguous
            A[k * n + i] = A[i * n + k]           # reads below
        for i in range(k + 1, n):                 # the trailing lower triangle
            lik = A[k * n + i]
            for j in range(k + 1, i + 1):
                A[i * n + j] -= lik * A[k * n + j]
    return n


cdef void triangular_solves(const double *L, Py_ssize_t n, Py_ssize_t r, double *y) noexcept nogil:
    """y <- (L L^T)^{-1} y for the leading r x r block of L (row stride n). Both sweeps
    update the unknowns still open as each one settles (no long dot-product chains)."""
    cdef Py_ssize_t i, k
    cdef double yk
    for k in range(r):
        yk = y[k] / L[k * n + k]
        y[k] = yk
        for i in range(k + 1, r):
            y[i] -= L[i * n + k] * yk
    for i in range(r - 1, -1, -1):
        yk = y[i] / L[i * n + i]
        y[i] = yk
        for k in range(i):
            y[k] -= L[i * n + k] * yk


cdef struct Flow:
    # one flow: the network's shape and its teacher, and scratch space for a step
    Py_ssize_t m, n, tm # entries of u (m neurons, or m d weights on Gaussian inputs), of a,
                        # and the teacher's neurons
    bint gaussian       # inputs x ~ N(0, I_d): G, b and the gradient from gaussian.pxd
    NetView net         # the network (its a and u: the start), and its teacher
    NetView teacher
    Act act, tact       # the network's activation and its teacher's
    double eps
    bint pairwise       # student and teacher are steps: b(u) pair by pair (features_fill)
    double b0           # int f*
    double *tmass       # tm: int phi*_k, the teacher's neurons' own integrals
    long nfev
    double *G           # n x n: G(u), then its factor
    double *M           # n x n: the Gram matrix of the factor's columns (a*(u), rank < n)
    double *b           # b(u) = int phi f*
    double *zeros       # a = 0, for b
    double *y           # n: right-hand side in pivot order
    double *v           # n: scratch
    double *grad_a      # n: scratch gradient in a
    double *rhs         # n: the explicit part of an a-stage
    double *ku          # STAGES x m: u-slopes -grad_u L of the stages
    double *ka          # STAGES x n: a-slopes of the stages
    double *k           # DOPRI_STAGES x (n + m): slopes (a, u) of the explicit stages
    double *state       # y = (a, u), y_new, err of the integration (3 (n + m))
    double *GS          # n x n and n: scratch G and b for a Gaussian-input gradient
    Py_ssize_t *perm    # 2 n: pivot order, and scratch for a second factorisation


cdef void features_fill(Flow *F, const double *u) noexcept nogil:
    """F.b <- b(u) when student and teacher are steps, from G's first row (G_0j = int phi_j):
    b_{j+1} = ta_0 G_0j + sum_k ta_k int phi_j phi*_k, each pair by overlap, which integrates
    only the pairs whose transitions meet: O(m tm) cheap tests against a sweep for b."""
    cdef Py_ssize_t j, k
    cdef double total, g
    F.b[0] = F.b0
    for j in range(F.m):
        g = F.G[j + 1]
        total = F.teacher.a[0] * g
        for k in range(F.tm):
            total += F.teacher.a[k + 1] * overlap(&F.act, u[j], g, &F.tact, F.teacher.u[k],
                                                  F.tmass[k])
        F.b[j + 1] = total


cdef double sweep_at(Flow *F, const double *a, const double *u, double *grad_a,
                     double *grad_u) except? -1.0 nogil:
    """The sweep (loss and gradient) of the flow's network at (a, u) against its teacher
    (for Gaussian inputs, the closed forms of gaussian.pxd)."""
    cdef NetView at = F.net
    at.a = a
    at.u = u
    if F.gaussian:
        return population(&at, &F.teacher, F.GS, F.GS + F.n * F.n, grad_a, grad_u)
    return sweep(&at, &F.teacher, grad_a, grad_u)


cdef int flow_at(Flow *F, const double *u) except -1 nogil:
    """F.G <- G(u), F.b <- b(u): pair by pair (features_fill) for steps, else from the loss
    at a = 0 (grad_a = -2 b)."""
    cdef Py_ssize_t i
    cdef NetView at = F.net
    if F.gaussian:
        at.a = F.zeros
        at.u = u
        population(&at, &F.teacher, F.G, F.b, NULL, NULL)
        F.nfev += 1
        return 0
    gram_fill(u, F.m, &F.act, F.G)
    if F.pairwise:
        features_fill(F, u)
    else:
        sweep_at(F, F.zeros, u, F.b, F.v)
        for i in range(F.n):
            F.b[i] *= -0.5
    F.nfev += 1
    return 0


cdef int flow_slope(Flow *F, const double *a, const double *u, double *out) except -1 nogil:
    """out <- -grad_u L(a, u)."""
    cdef Py_ssize_t j
    sweep_at(F, a, u, F.grad_a, out)
    for j in range(F.m):
        out[j] = -out[j]
    F.nfev += 1
    return 0


cdef int full_slope(Flow *F, const double *y, double *out) except -1 nogil:
    """out <- (-grad_a L / eps, -grad_u L) at y = (a, u): one sweep."""
    cdef Py_ssize_t i, n = F.n
    sweep_at(F, y, y + n, out, out + n)
    for i in range(n):
        out[i] = -out[i] / F.eps
    for i in range(n, n + F.m):
        out[i] = -out[i]
    F.nfev += 1
    return 0


cdef void minimum_norm(Flow *F, double *a) noexcept nogil:
    """a <- G^+ b, the minimum-norm solution of G a = b: with P^T G P = L L^T of rank r and
    Z = L[:, :r], G^+ = P Z (Z^T Z)^{-2} Z^T P^T (Z has full column rank); when r = n this is
    the plain Cholesky solve. Pivots below n eps trace(G) >= n eps |G| count as zero (numpy's
    lstsq cuts singular values below n eps |G|): G's entries carry rounding of that order."""
    cdef Py_ssize_t n = F.n, i, j, k, r
    cdef double trace = 0.0, s
    cdef double *L = F.G
    for i in range(n):
        trace += F.G[i * n + i]
    r = cholesky(L, n, n * DBL_EPSILON * trace, F.perm)
    for k in range(n):
        F.y[k] = F.b[F.perm[k]]
    if r == n:
        triangular_solves(L, n, n, F.y)
    else:
        for i in range(r):                       # v = Z^T y, M = Z^T Z
            s = 0.0
            for k in range(i, n):
                s += L[k * n + i] * F.y[k]
            F.v[i] = s
            for j in range(i + 1):
                s = 0.0
                for k in range(i, n):
                    s += L[k * n + i] * L[k * n + j]
                F.M[i * r + j] = s
                F.M[j * r + i] = s
        cholesky(F.M, r, 0.0, F.perm + n)        # full rank; perm tail is scratch
        for k in range(r):
            F.y[k] = F.v[F.perm[n + k]]
        triangular_solves(F.M, r, r, F.y)
        triangular_solves(F.M, r, r, F.y)
        for k in range(r):
            F.v[F.perm[n + k]] = F.y[k]
        for k in range(n):                       # y = Z v
            s = 0.0
            for i in range(min(k + 1, r)):
                s += L[k * n + i] * F.v[i]
            F.y[k] = s
    for k in range(n):
        a[F.perm[k]] = F.y[k]


cdef bint implicit_solve(Flow *F, double c, double *a) noexcept nogil:
    """a <- (I + c G)^{-1} (F.rhs + c b); False if the factorisation breaks down (NaN)."""
    cdef Py_ssize_t n = F.n, i, k
    for i in range(n * n):
        F.G[i] *= c
    for i in range(n):
        F.G[i * n + i] += 1.0
    if cholesky(F.G, n, 0.0, F.perm, False) < n:     # eigenvalues >= 1: no pivoting
        return False
    for k in range(n):
        F.y[k] = F.rhs[F.perm[k]] + c * F.b[F.perm[k]]
    triangular_solves(F.G, n, n, F.y)
    for k in range(n):
        a[F.perm[k]] = F.y[k]
    return True


cdef void stage_sum(double *out, const double *base, double dt, const double *w,
                    const double *k, Py_ssize_t stages, Py_ssize_t n) noexcept nogil:
    """out = base + dt sum_l w[l] k_l over the first ``stages`` slopes k_l (rows of n in k),
    summed in stage order; without base (NULL), dt times the sum alone."""
    cdef Py_ssize_t j, l
    cdef double s
    for j in range(n):
        s = 0.0
        for l in range(stages):
            s += w[l] * k[l * n + j]
        out[j] = dt * s if base == NULL else base[j] + dt * s


cdef int ars_step(Flow *F, const double *a, const double *u, double dt, double *a_new,
                  double *u_new, double *err) except -1 nogil:
    """One ARS(4,4,3) step from (a, u), whose u-slope is F.ku[0]: writes the new state, its
    u-slope in F.ku[4] and the error estimate on u; returns 0 if a stage left the finite
    numbers (the caller shrinks the step), else 1."""
    cdef Py_ssize_t m = F.m, n = F.n, i, j
    cdef double c = 2.0 * dt * GAMMA / F.eps if F.eps > 0 else 0.0
    for i in range(1, STAGES):
        stage_sum(u_new, u, dt, ARS_E + i * STAGES, F.ku, i, m)
        if not all_finite(u_new, m):
            return 0
        flow_at(F, u_new)
        if F.eps == 0.0:
            minimum_norm(F, a_new)
        else:
            # the implicit tableau's column 0 is zero: its stages from 1
            stage_sum(F.rhs, a, dt, ARS_I + i * STAGES + 1, F.ka + n, i - 1, n)
            if not implicit_solve(F, c, a_new):
                return 0
            for j in range(n):
                F.ka[i * n + j] = (a_new[j] - F.rhs[j]) / (dt * GAMMA)
        if not all_finite(a_new, n):
            return 0
        flow_slope(F, a_new, u_new, F.ku + i * m)
    stage_sum(err, NULL, dt, ARS_ERR, F.ku, STAGES, m)
    return 1


cdef int dopri_step(Flow *F, const double *y, double dt, double *y_new,
                    double *err) except -1 nogil:
    """One Dormand-Prince 5(4) step from y = (a, u), whose slope is F.k[0]: writes the new
    state, its slope in F.k[6] (first same as last) and the error estimate on (a, u);
    returns 0 if a stage left the finite numbers, else 1."""
    cdef Py_ssize_t N = F.n + F.m, i
    for i in range(1, DOPRI_STAGES):
        stage_sum(y_new, y, dt, DOPRI_A + (i - 1) * 6, F.k, i, N)
        if not all_finite(y_new, N):
            return 0
        full_slope(F, y_new, F.k + i * N)
    stage_sum(err, NULL, dt, DOPRI_ERR, F.k, DOPRI_STAGES, N)
    return 1


cdef void dopri_dense(const Flow *F, const double *y, double dt, double theta,
                      double *out) noexcept nogil:
    """out <- the state at theta in [0, 1] of the step of dt from y just taken (its stages
    in F.k): y + dt sum_i k_i sum_p P[i, p] theta^(p+1)."""
    cdef Py_ssize_t N = F.n + F.m, i, j
    cdef double w[DOPRI_STAGES]
    cdef const double *P
    for i in range(DOPRI_STAGES):
        P = DOPRI_DENSE + 4 * i
        w[i] = dt * theta * (P[0] + theta * (P[1] + theta * (P[2] + theta * P[3])))
    for j in range(N):
        out[j] = y[j]
        for i in range(DOPRI_STAGES):
            out[j] += w[i] * F.k[i * N + j]


cdef int take_step(Flow *F, int method, const double *y, double dt, double *y_new,
                   double *err) except -1 nogil:
    if method == DOPRI5:
        return dopri_step(F, y, dt, y_new, err)
    return ars_step(F, y, y + F.n, dt, y_new, y_new + F.n, err + F.n)


cdef class FlowWork:
    """The memory of one Flow, owned by Python so that it is freed however a call ends; it
    holds the two Nets whose arrays the Flow reads."""
    cdef Flow F
    cdef double *block
    cdef Py_ssize_t *perm
    cdef Net net, teacher

    def __cinit__(self, Net net, Net teacher, double eps):
        cdef Py_ssize_t m = net.view.m * net.view.d, n = net.view.m + 1, i, tm = teacher.view.m
        cdef Flow *F = &self.F
        cdef double square
        self.net = net
        self.teacher = teacher
        # G, M; b, zeros, y, v, grad_a, rhs; ku, ka; k; state (y, y_new, err); tmass; GS
        self.block = <double *> malloc((3 * n * n + 7 * n + (STAGES + DOPRI_STAGES + 3) * (m + n)
                                        + tm) * sizeof(double))
        self.perm = <Py_ssize_t *> malloc(2 * n * sizeof(Py_ssize_t))
        if self.block == NULL or self.perm == NULL:
            raise MemoryError("twotimescale: no memory for the flow")
        F.m, F.n, F.tm = m, n, tm
        F.gaussian = net.view.kind == KIND_GAUSSIAN
        F.net = net.view
        F.teacher = teacher.view
        F.eps = eps
        act_init(&F.act, net.view.code, net.view.eta)
        act_init(&F.tact, teacher.view.code, teacher.view.eta)
        F.nfev = 0
        F.G = self.block
        F.M = F.G + n * n
        F.b = F.M + n * n
        F.zeros = F.b + n
        F.y = F.zeros + n
        F.v = F.y + n
        F.grad_a = F.v + n
        F.rhs = F.grad_a + n
        F.ku = F.rhs + n
        F.ka = F.ku + STAGES * m
        F.k = F.ka + STAGES * n
        F.state = F.k + DOPRI_STAGES * (n + m)
        F.tmass = F.state + 3 * (n + m)
        F.GS = F.tmass + tm
        F.pairwise = F.act.step and F.tact.step and not F.gaussian
        F.b0 = teacher.view.a[0]
        for i in range(0 if F.gaussian else tm):
            self_integrals(&F.tact, teacher.view.u[i], &F.tmass[i], &square)
            F.b0 += teacher.view.a[i + 1] * F.tmass[i]
        F.perm = self.perm
        for i in range(n):
            F.zeros[i] = 0.0
        for i in range(STAGES * n):
            F.ka[i] = 0.0

    def __dealloc__(self):
        free(self.block)
        free(self.perm)


cdef double *first_slope(Flow *F, int method, const double *y) except NULL nogil:
    """The slope at y of the components whose error is controlled, for the first step:
    (a, u) for DOPRI5, u for ARS (which keeps it as its first stage)."""
    if method == DOPRI5:
        full_slope(F, y, F.k)
        return F.k
    flow_slope(F, y, y + F.n, F.ku)
    return F.ku


def flow_step(FlowWork work, int method, const double[::1] y, double dt, double[::1] y_new,
              double[::1] err):
    """One step of ``method`` (ARS or DOPRI5) from y = (a, u), after computing the slope at
    y; err gets the error estimate (zero on a for ARS). Returns whether every stage stayed
    finite. For testing against twotimescale.reference.ars_step and dopri_step."""
    cdef Flow *F = &work.F
    cdef Py_ssize_t i
    cdef int ok
    with nogil:
        for i in range(F.n):
            err[i] = 0.0
        first_slope(F, method, &y[0])
        ok = take_step(F, method, &y[0], dt, &y_new[0], &err[0])
    return bool(ok)


cdef void split_state(const double *y, Py_ssize_t n, Py_ssize_t m, double *a_row,
                      double *u_row) noexcept nogil:
    """A record of the state y = (a, u): a_row <- a, u_row <- u."""
    cdef Py_ssize_t j
    for j in range(n):
        a_row[j] = y[j]
    for j in range(m):
        u_row[j] = y[n + j]


cdef double first_dt(const double *y, const double *slope, Py_ssize_t nc, double rtol,
                     double atol) noexcept nogil:
    """The first step, from the initial slope of the nc controlled components: 1% of the
    ratio of their RMS sizes, each scaled by atol + rtol |y|."""
    cdef Py_ssize_t j
    cdef double sy = 0.0, sk = 0.0, scale
    for j in range(nc):
        scale = atol + rtol * fabs(y[j])
        sy += (y[j] / scale) ** 2
        sk += (slope[j] / scale) ** 2
    return 0.01 * fmax(sqrt(sy / nc), 1e-5) / fmax(sqrt(sk / nc), 1e-5)


cdef double error_norm(const double *y, const double *y_new, const double *err, Py_ssize_t nc,
                       double rtol, double atol) noexcept nogil:
    """RMS of err / (atol + rtol max(|y|, |y_new|)) over the nc controlled components."""
    cdef Py_ssize_t j
    cdef double norm = 0.0, scale
    for j in range(nc):
        scale = atol + rtol * fmax(fabs(y[j]), fabs(y_new[j]))
        norm += (err[j] / scale) ** 2
    return sqrt(norm / nc)


cdef enum:
    OK = 0                      # flow_integrate's outcomes
    DIVERGED = 1                # a stage left the finite numbers at the smallest step
    STALLED = 2                 # the step fell below what t resolves, or the budget ran out

#: outcome code -> the status a FlowTrajectory reports
STATUSES = {OK: "ok", DIVERGED: "diverged", STALLED: "stalled"}


def flow_integrate(FlowWork work, int method, const double[::1] times, double rtol, double atol,
                   double[:, ::1] a_rec, double[:, ::1] u_rec, Py_ssize_t max_steps):
    """Integrate from the network's (a, u) at times[0] = 0 through times by ``method`` (a is
    replaced by a*(u) when eps = 0), writing the state at each time into a_rec, u_rec: ARS's
    steps end on the record times, DOPRI5's run free to times[-1] and interpolate. Error per
    step, on u (ARS) or (a, u) (DOPRI5): error_norm <= 1; step factor 0.9 norm^(-1/(q+1))
    within [0.2, 5], q the embedded order (2 for ARS, 4 for DOPRI5). Stops STALLED when a
    step would be below 1e-14 of the time it starts from (t + step no longer moves t) or
    after ``max_steps`` attempted steps, checking for an interrupt every 64.
    Returns (records written, accepted steps, nfev, outcome code)."""
    cdef Flow *F = &work.F
    cdef Py_ssize_t m = F.m, n = F.n, N = F.n + F.m, j, k, nsteps = 0, nrec = times.shape[0]
    cdef Py_ssize_t lo = 0 if method == DOPRI5 else n     # the controlled components of y
    cdef Py_ssize_t nc = N - lo, fsal = (DOPRI_STAGES - 1) * N if method == DOPRI5 else (STAGES - 1) * m
    cdef double t = 0.0, t_next, t_new, step, dt, norm
    cdef double order = 5.0 if method == DOPRI5 else 3.0
    cdef bint dense = method == DOPRI5            # records between steps, else steps end on them
    cdef double t_end = times[nrec - 1]
    cdef int outcome = OK
    cdef Py_ssize_t attempts = 0
    cdef bint stopped = False
    cdef double *y = F.state
    cdef double *y_new = y + N
    cdef double *err = y_new + N
    cdef double *slope
    with nogil:
        for j in range(m):
            y[n + j] = F.net.u[j]
        if F.eps == 0.0:
            flow_at(F, y + n)
            minimum_norm(F, y)
        else:
            for j in range(n):
                y[j] = F.net.a[j]
        slope = first_slope(F, method, y)
        dt = first_dt(y + lo, slope, nc, rtol, atol)
        split_state(y, n, m, &a_rec[0, 0], &u_rec[0, 0])  # times[0] = 0
        k = 1                                             # the next record
        while k < nrec:
            t_next = t_end if dense else times[k]
            step = fmin(dt, t_next - t)
            if step <= 1e-14 * fmax(fabs(t), t_end) and step < t_next - t or attempts >= max_steps:
                outcome = STALLED
                break
            attempts += 1
            if attempts % 64 == 0 and interrupted():
                stopped = True
                break
            if not take_step(F, method, y, step, y_new, err):
                if step < 1e-14 * fmax(t_end, 1.0):
                    outcome = DIVERGED
                    break
                dt = step / 10
                continue
            norm = error_norm(y + lo, y_new + lo, err + lo, nc, rtol, atol)
            if norm <= 1.0:
                t_new = t_next if step == t_next - t else t + step
                k = records_reached(F, &times[0], nrec, k, t, step, t_new, y, y_new, err,
                                    &a_rec[0, 0], &u_rec[0, 0])
                t = t_new
                y, y_new = y_new, y
                for j in range(nc):
                    slope[j] = slope[fsal + j]
                nsteps += 1
            dt = step * fmin(5.0, fmax(0.2, 0.9 * pow(norm + 1e-300, -1.0 / order)))
    if stopped:
        raise_interrupt()
    return k, nsteps, F.nfev, outcome


cdef Py_ssize_t records_reached(const Flow *F, const double *times, Py_ssize_t nrec,
                                Py_ssize_t k, double t, double step, double t_new,
                                const double *y, const double *y_new, double *spare,
                                double *a_rec, double *u_rec) noexcept nogil:
    """Write the records from k on that the step from t to t_new reaches (one that ends on
    the step is its new state; one inside it, dopri5's dense output, made in ``spare``);
    returns the next record."""
    cdef Py_ssize_t n = F.n, m = F.m
    while k < nrec and times[k] <= t_new:
        if times[k] == t_new:
            split_state(y_new, n, m, a_rec + k * n, u_rec + k * m)
        else:
            dopri_dense(F, y, step, (times[k] - t) / step, spare)
            split_state(spare, n, m, a_rec + k * n, u_rec + k * m)
        k += 1
    return k
