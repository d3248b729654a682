# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Exact population integrals over x ~ U[0, 1] (docs/maths.rst §3).

Design: every integrand is a polynomial of degree <= 6 between consecutive kinks (of the
student, of the teacher, and 0 and 1), so 4-point Gauss-Legendre on each piece of the merged
kink grid is exact to rounding. The work is one left-to-right sweep over that grid:

* neurons are sorted by position; all of one network's neurons share the transition width,
  so the neurons in transition over a piece are a contiguous run [tail, start) of the sorted
  order, and two pointers find it;
* neurons left behind the sweep (x past their last kink) sit on their tail, c0 + c1 (x - 1)
  (1 for steps, the line of a ReLU); their sum is two running totals;
* so the residual r = f - f* costs O(active) per node, and so do the pieces of the gradient
  that live inside a transition; the tail pieces of the gradient,
  int_{hi_j}^1 r (c0 + c1 (x - 1)), come from suffix sums of int r and int r (x - 1) (moments
  about the right end: no cancellation for a ReLU near 1).

Cost O(m log m) for the sort plus O(sum over pieces of the active neurons), against O(m^2)
for the dense sum. The Gram matrix takes G_0j and G_jj in closed form from each activation's
antiderivatives and the other pairs by ``overlap`` (population.pxd), which the flow integrator
(flow.pyx) also calls for b(u). The NumPy twin is ``twotimescale.reference``.
"""
import numpy as np
from libc.stdlib cimport malloc, free, qsort
from ._activations cimport RELU, SMOOTHSTEP, s_of, ds_of, dds_of, kinks, tail, antiderivatives
from ._network cimport Net, NetView

cdef struct Neuron:
    double u
    double a
    Py_ssize_t index


cdef struct Side:
    # one network on the merged grid: the student (sign +1) or its teacher (sign -1)
    Neuron *n
    Py_ssize_t m
    double bias, inv_eta, lo, hi   # transition of neuron j: [u_j + lo, u_j + hi]
    double kink[3]                 # kinks of s, times eta
    int nkink, code
    Py_ssize_t tail, start         # neurons [tail, start) are in transition on this piece
    double c0, c1                  # neurons [0, tail) add up to c0 + c1 (x - 1)


cdef inline bint before(const Neuron *x, const Neuron *y) noexcept nogil:
    """x comes before y: by (u, a)."""
    return x.u < y.u or (x.u == y.u and x.a < y.a)


cdef int by_position(const void *p, const void *q) noexcept nogil:
    cdef const Neuron *x = <const Neuron *> p
    cdef const Neuron *y = <const Neuron *> q
    return -1 if before(x, y) else (1 if before(y, x) else 0)


cdef inline void insertion_sort(Neuron *v, Py_ssize_t n) noexcept nogil:
    """Sort v[:n] by (u, a) by insertion: for a few dozen neurons libc's qsort spends more on
    its calls than on the sorting. Equal neurons are interchangeable."""
    cdef Py_ssize_t i, k
    cdef Neuron x
    for i in range(1, n):
        x = v[i]
        k = i - 1
        while k >= 0 and before(&x, &v[k]):
            v[k + 1] = v[k]
            k -= 1
        v[k + 1] = x


cdef void side_init(Side *side, Neuron *buf, const NetView *net) noexcept nogil:
    """Copy the neurons into buf sorted by (u, a): the order, not the input's, fixes the
    rounding, so permuting neurons changes no bit of the result."""
    cdef Py_ssize_t j, m = net.m
    cdef double z[3]
    cdef double eta = net.eta
    cdef int code = net.code
    for j in range(m):
        buf[j].u = net.u[j]
        buf[j].a = net.a[j + 1]
        buf[j].index = j
    if m > 32:                                    # sorted by (u, a)
        qsort(buf, m, sizeof(Neuron), by_position)
    else:
        insertion_sort(buf, m)
    side.n = buf
    side.m = m
    side.bias = net.a[0]
    side.inv_eta = net.inv_eta
    side.code = code
    side.nkink = kinks(code, z)
    for j in range(side.nkink):
        side.kink[j] = z[j] * eta
    side.lo = side.kink[0]
    side.hi = side.kink[side.nkink - 1]
    side.tail = 0
    side.start = 0
    side.c0 = 0.0
    side.c1 = 0.0


cdef Py_ssize_t merge_grid(Side *sides, int nsides, double *grid) noexcept nogil:
    """Merge the sorted kink streams of all sides, clipped to [0, 1], between 0 and 1."""
    cdef Py_ssize_t pos[6]
    cdef Side *owner[6]
    cdef double offset[6]
    cdef int nstream = 0, k, best
    cdef Py_ssize_t n = 1
    cdef double v, bestv
    for k in range(nsides):
        for best in range(sides[k].nkink):
            owner[nstream] = &sides[k]
            offset[nstream] = sides[k].kink[best]
            pos[nstream] = 0
            nstream += 1
    grid[0] = 0.0
    while True:
        best = -1
        bestv = 0.0
        for k in range(nstream):
            if pos[k] < owner[k].m:
                v = owner[k].n[pos[k]].u + offset[k]
                if best < 0 or v < bestv:
                    best = k
                    bestv = v
        if best < 0:
            break
        grid[n] = clip01(bestv)
        pos[best] += 1
        n += 1
    grid[n] = 1.0
    return n + 1


cdef inline void side_advance(Side *side, double left, double right, Py_ssize_t piece,
                              Py_ssize_t *joined) noexcept nogil:
    """Move the sweep to the piece [left, right]."""
    cdef double c0, c1
    cdef Neuron *nj
    while side.tail < side.m and side.n[side.tail].u + side.hi <= left:
        nj = &side.n[side.tail]
        tail(side.code, nj.u, side.inv_eta, &c0, &c1)
        side.c0 += nj.a * c0
        side.c1 += nj.a * c1
        if joined != NULL:
            joined[side.tail] = piece
        side.tail += 1
    while side.start < side.m and side.n[side.start].u + side.lo < right:
        side.start += 1


cdef inline void side_values(const Side *side, const double *x, double *f) noexcept nogil:
    """f[k] = the side's network at the four nodes x[k] of a piece (four independent sums,
    each in neuron order)."""
    cdef Py_ssize_t j
    cdef int k
    for k in range(4):
        f[k] = side.bias + side.c0 + side.c1 * (x[k] - 1.0)
    for j in range(side.tail, side.start):
        for k in range(4):
            f[k] += side.n[j].a * s_of(side.code, (x[k] - side.n[j].u) * side.inv_eta)


cdef struct Scratch:
    # the sweep's working memory, one block
    double *grid                   # the merged kink grid
    double *int_r                  # int_{g_p}^1 r, after the suffix sum
    double *int_rx                 # int_{g_p}^1 r (x - 1)
    double *in_a                   # int r s over the transition, per sorted j
    double *in_u                   # int r s' over the transition
    double *in_uu                  # int r s'' over the transition (smoothstep; the Hessian)
    Py_ssize_t *joined             # the piece where neuron j (sorted) joined the tail


cdef double sweep(const NetView *net, const NetView *teacher, double *grad_a,
                  double *grad_u, double *slopes=NULL) except? -1.0 nogil:
    """Return L = int_0^1 (f - f*)^2 of a univariate network against its teacher; if grad_a
    is not NULL, also write grad_a[i] = 2 int r phi_i and
    grad_u[j] = -(2 a_j / eta) int r s'((x - u_j) / eta) (docs/maths.rst §3.1-3.2); if slopes
    is not NULL too, slopes[j] = int r s'(z_j) and slopes[m + j] = int r s''(z_j), the
    bounded part of s'' (the Hessian's residual part, §7)."""
    cdef Py_ssize_t m = net.m, tm = teacher.m, ngrid_max = 3 * (m + tm) + 2, ngrid, j
    cdef Py_ssize_t nbytes = ((m + tm) * sizeof(Neuron) + (3 * ngrid_max + 3 * m) * sizeof(double)
                              + m * sizeof(Py_ssize_t))
    cdef char *block = <char *> malloc(nbytes)
    cdef Scratch w
    cdef Side sides[2]
    cdef double loss
    if block == NULL:
        with gil:
            raise MemoryError("twotimescale: no memory for the population sweep")
    cdef Neuron *neurons = <Neuron *> block
    w.grid = <double *> (neurons + m + tm)
    w.int_r = w.grid + ngrid_max
    w.int_rx = w.int_r + ngrid_max
    w.in_a = w.int_rx + ngrid_max
    w.in_u = w.in_a + m
    w.in_uu = w.in_u + m
    w.joined = <Py_ssize_t *> (w.in_uu + m)
    side_init(&sides[0], neurons, net)
    side_init(&sides[1], neurons + m, teacher)
    ngrid = merge_grid(sides, 2, w.grid)
    for j in range(m):
        w.in_a[j] = 0.0
        w.in_u[j] = 0.0
        w.in_uu[j] = 0.0
        w.joined[j] = ngrid - 1
    loss = sweep_pieces(&sides[0], &sides[1], &w, ngrid, grad_a != NULL,
                        slopes != NULL and net.code == SMOOTHSTEP)
    if grad_a != NULL:
        assemble_gradient(&sides[0], &w, ngrid, grad_a, grad_u, slopes)
    free(block)
    return loss


cdef double sweep_pieces(Side *net, Side *tgt, Scratch *w, Py_ssize_t ngrid,
                         bint want_grad, bint want_curve) noexcept nogil:
    """The sweep proper: on each piece of the grid, the residual at its four nodes, the
    loss, int r and int r (x - 1) of the piece, and (want_grad) the integrals over the piece
    of r s and r s' of every neuron in transition (want_curve: and of r s''). Returns the
    loss."""
    cdef Py_ssize_t p, j
    cdef int k, code = net.code
    cdef double left, right, r, loss = 0.0, z, sr, srx, sl, sa, su
    cdef double fnet[4]
    cdef double ftgt[4]
    cdef double xs[4]
    cdef double wr[4]
    for p in range(ngrid - 1):
        left = w.grid[p]
        right = w.grid[p + 1]
        side_advance(net, left, right, p, w.joined if want_grad else NULL)
        side_advance(tgt, left, right, p, NULL)
        w.int_r[p] = 0.0
        w.int_rx[p] = 0.0
        if right <= left:                          # a piece of zero length
            continue
        gauss_legendre(left, right, xs, wr)
        side_values(net, xs, fnet)
        side_values(tgt, xs, ftgt)
        sr = 0.0
        srx = 0.0
        sl = 0.0
        for k in range(4):
            r = fnet[k] - ftgt[k]
            wr[k] *= r
            sl += wr[k] * r
            sr += wr[k]
            srx += wr[k] * (xs[k] - 1.0)
        w.int_r[p] = sr
        w.int_rx[p] = srx
        loss += sl
        if want_grad:
            for j in range(net.tail, net.start):
                sa = 0.0
                su = 0.0
                for k in range(4):
                    z = (xs[k] - net.n[j].u) * net.inv_eta
                    sa += wr[k] * s_of(code, z)
                    su += wr[k] * ds_of(code, z)
                w.in_a[j] += sa
                w.in_u[j] += su
        if want_curve:
            for j in range(net.tail, net.start):
                su = 0.0
                for k in range(4):
                    su += wr[k] * dds_of(code, (xs[k] - net.n[j].u) * net.inv_eta)
                w.in_uu[j] += su
    return loss


cdef void assemble_gradient(const Side *net, Scratch *w, Py_ssize_t ngrid, double *grad_a,
                            double *grad_u, double *slopes) noexcept nogil:
    """The gradient from the sweep's pieces: the tail parts int_{hi_j}^1 r (c0 + c1 (x - 1))
    from suffix sums of int r and int r (x - 1), added to each neuron's transition part."""
    cdef Py_ssize_t p, j, q
    cdef double sr = 0.0, srx = 0.0, c0, c1, total
    w.int_r[ngrid - 1] = 0.0
    w.int_rx[ngrid - 1] = 0.0
    for p in range(ngrid - 2, -1, -1):            # suffix sums
        sr = w.int_r[p] + sr
        srx = w.int_rx[p] + srx
        w.int_r[p] = sr
        w.int_rx[p] = srx
    grad_a[0] = 2.0 * w.int_r[0]
    for j in range(net.m):
        q = w.joined[j]
        tail(net.code, net.n[j].u, net.inv_eta, &c0, &c1)
        total = w.in_a[j] + c0 * w.int_r[q] + c1 * w.int_rx[q]
        grad_a[net.n[j].index + 1] = 2.0 * total
        total = w.in_u[j] + (w.int_r[q] if net.code == RELU else 0.0)
        grad_u[net.n[j].index] = -2.0 * net.n[j].a * net.inv_eta * total
        if slopes != NULL:
            slopes[net.n[j].index] = total
            slopes[net.m + net.n[j].index] = w.in_uu[j]


cdef void act_init(Act *p, int code, double eta) noexcept nogil:
    cdef double z[3]
    cdef int nk = kinks(code, z)
    p.code = code
    p.eta = eta
    p.inv_eta = 1.0 / eta
    p.lo = z[0] * eta
    p.hi = z[nk - 1] * eta
    p.step = code != RELU


cdef double pair_integral(const Act *p, double ui, const Act *q, double uj) noexcept nogil:
    """int_0^1 s_p((x - ui) / eta_p) s_q((x - uj) / eta_q) dx, piece by piece."""
    cdef double pts[8]
    cdef double x[4]
    cdef double w[4]
    cdef int n = pair_grid(p, ui, q, uj, pts), k, i
    cdef double total = 0.0
    for i in range(n - 1):
        if pts[i + 1] <= pts[i]:
            continue
        gauss_legendre(pts[i], pts[i + 1], x, w)
        for k in range(4):          # four independent products, summed as a tree
            w[k] *= s_of(p.code, (x[k] - ui) * p.inv_eta) * s_of(q.code, (x[k] - uj) * q.inv_eta)
        total += (w[0] + w[1]) + (w[2] + w[3])
    return total


cdef void self_integrals(const Act *p, double u, double *mass, double *square) noexcept nogil:
    """mass = int_0^1 s((x - u) / eta) dx and square = int_0^1 s((x - u) / eta)^2 dx, in
    closed form from s's antiderivatives at z = (1 - u) / eta and (0 - u) / eta."""
    cdef double m1, q1, m0, q0
    antiderivatives(p.code, (1.0 - u) * p.inv_eta, &m1, &q1)
    antiderivatives(p.code, (0.0 - u) * p.inv_eta, &m0, &q0)
    mass[0] = p.eta * (m1 - m0)
    square[0] = p.eta * (q1 - q0)


cdef void gram_fill(const double *u, Py_ssize_t m, const Act *act, double *out) noexcept nogil:
    """out = G, (m + 1) x (m + 1) row-major: G[i, j] = int_0^1 phi_i phi_j, phi_0 = 1 (the
    Heaviside neuron at 0). G_0j and G_jj in closed form, the other pairs by overlap."""
    cdef Py_ssize_t n = m + 1, i, j
    cdef double g
    out[0] = 1.0
    for j in range(m):
        self_integrals(act, u[j], &out[j + 1], &out[(j + 1) * n + j + 1])
        out[(j + 1) * n] = out[j + 1]
    for j in range(m):
        for i in range(j):
            g = overlap(act, u[i], out[i + 1], act, u[j], out[j + 1])
            out[(i + 1) * n + j + 1] = g
            out[(j + 1) * n + i + 1] = g


# ---- Python entry points: twotimescale.population checks the networks, not these --------

def loss_and_grad(Net net, Net teacher, double[::1] grad_a=None, double[::1] grad_u=None):
    """L of a univariate network against its teacher; fills grad_a and grad_u when given."""
    cdef double *ga = NULL
    cdef double *gu = NULL
    cdef double loss
    if grad_a is not None:
        ga = &grad_a[0]
        gu = &grad_u[0] if net.view.m > 0 else ga
    with nogil:
        loss = sweep(&net.view, &teacher.view, ga, gu)
    return loss


def record_losses(Net net, Net teacher, const double[:, ::1] a_rec, const double[:, ::1] u_rec):
    """L at every record (a_rec[k], u_rec[k]) of a univariate network's run."""
    cdef Py_ssize_t k, n = a_rec.shape[0]
    cdef NetView at = net.view
    cdef double[::1] out = np.empty(n)
    with nogil:
        for k in range(n):
            at.a = &a_rec[k, 0]
            at.u = &u_rec[k, 0] if at.m else NULL
            out[k] = sweep(&at, &teacher.view, NULL, NULL)
    return np.asarray(out)


def gram(Net net, double[:, ::1] out):
    """out = G(u) (see gram_fill)."""
    cdef Act act
    with nogil:
        act_init(&act, net.view.code, net.view.eta)
        gram_fill(net.view.u, net.view.m, &act, &out[0, 0])
