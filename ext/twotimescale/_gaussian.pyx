# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Exact population loss, gradient, Gram matrix and b for x ~ N(0, I_d) (docs/maths.rst §8).

Design: every expectation of two neurons is a function of their norms, their inner product
and the angle between them (``Geometry``). The inner products come first, W W^T and W V^T
as rows of axpys over the transposed rows (they vectorise without reassociation); then one
pass over the pairs j <= l evaluates each pair's expectation K and the two coefficients of
its gradient, grad_p K = alpha q + beta p (``pair``), once for both orders; the gradient in W
is then one more product, grad_W = 2 diag(a) (diag(s) W + A W - B V). The angle comes from
arccos where that is well conditioned (|cos| <= 0.9) and from Kahan's
theta = 2 atan2(|p^ - q^|, |p^ + q^|) near parallel and antiparallel rows; the ReLU's
sin(phi) - phi cos(phi) (phi = pi - theta) from its series below phi = 0.1, so near
antiparallel rows lose no digits either. The NumPy twin is
``twotimescale.reference.gaussian_population``.
"""
import numpy as np
from libc.math cimport sqrt, acos, atan2, fabs, M_PI, NAN
from libc.stdlib cimport malloc, free
from ._network cimport Net, NetView, KIND_HERMITE

#: activation name -> the code the Gaussian kernels use (gaussian.pxd): the one table of them
ACTIVATIONS = {"relu": G_RELU, "erf": G_ERF, "linear": G_LINEAR}

cdef double INV_SQRT_2PI = 0.3989422804014327      # 1 / sqrt(2 pi)
cdef double SQRT_2_OVER_PI = 0.7978845608028654    # sqrt(2 / pi)
cdef GRelu RELU_TAG
cdef GErf ERF_TAG
cdef GLinear LINEAR_TAG


cdef double value(const NetView *net, const double *x) noexcept nogil:
    """f(x) of a Gaussian-input network or a Hermite target, at one point x (d,)."""
    cdef Py_ssize_t j, d = net.d
    cdef double z, total = net.a[0]
    if net.kind == KIND_HERMITE:
        return hermite_sum(net.a, net.m, dot(net.u, x, d))
    for j in range(net.m):
        z = dot(net.u + j * d, x, d)
        if net.code == G_RELU:
            z = sigma(&RELU_TAG, z)
        elif net.code == G_ERF:
            z = sigma(&ERF_TAG, z)
        total += net.a[j + 1] * z
    return total


def evaluate(Net net, const double[:, ::1] X, double[::1] out):
    """out[i] = f(X[i]) for each row of X (n, d)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(X.shape[0]):
            out[i] = value(&net.view, &X[i, 0])


cdef struct Geometry:
    # two vectors p and q: all that the expectations of their neurons depend on
    double np, nq             # |p|, |q|
    double rho                # p . q
    double cos, sin           # of the angle theta between p and q
    double phi                # pi - theta, to full relative accuracy
    double cross              # |p| |q| sin(theta) = sqrt(|p|^2 |q|^2 - rho^2), stably


cdef inline void geometry(Geometry *g, const double *p, const double *q, Py_ssize_t d,
                          double np, double nq, double rho) noexcept nogil:
    """g <- the geometry of p and q (norms and inner product given). theta from arccos when
    |cos| <= 0.9, else from Kahan's half-angle form, O(d); a zero vector counts as parallel."""
    cdef Py_ssize_t k
    cdef double c, s2 = 0.0, t2 = 0.0, x, y, s, t
    g.np, g.nq, g.rho = np, nq, rho
    if np == 0.0 or nq == 0.0:
        g.cos, g.sin, g.phi, g.cross = 1.0, 0.0, M_PI, 0.0
        return
    c = rho / (np * nq)
    if fabs(c) <= 0.9:
        g.cos = c
        g.sin = sqrt((1.0 - c) * (1.0 + c))
        g.phi = acos(-c)
    else:
        for k in range(d):
            x = p[k] / np
            y = q[k] / nq
            s2 += (x - y) * (x - y)
            t2 += (x + y) * (x + y)
        s = sqrt(s2)                        # 2 sin(theta / 2)
        t = sqrt(t2)                        # 2 cos(theta / 2)
        g.cos = (t2 - s2) / (t2 + s2)
        g.sin = 2.0 * s * t / (t2 + s2)
        g.phi = 2.0 * atan2(t, s)
    g.cross = np * nq * g.sin


cdef inline void same(Geometry *g, double np) noexcept nogil:
    """g <- the geometry of p with itself."""
    g.np, g.nq, g.rho = np, np, np * np
    g.cos, g.sin, g.phi, g.cross = 1.0, 0.0, M_PI, 0.0


cdef inline double relu_j(const Geometry *g) noexcept nogil:
    """J = sin(theta) + (pi - theta) cos(theta) = sin(phi) - phi cos(phi), by its series
    phi^3/3 - phi^5/30 + ... below phi = 0.1 (the two terms cancel there)."""
    cdef double f = g.phi, f2
    if f >= 0.1:
        return g.sin + f * g.cos
    f2 = f * f
    return f * f2 * (1.0 / 3 - f2 * (1.0 / 30 - f2 * (1.0 / 840 - f2 * (1.0 / 45360
                                                                         - f2 / 3991680))))


cdef inline double pair(int cp, int cq, const Geometry *g, double *alpha,
                        double *beta) noexcept nogil:
    """K = E s_p(p . x) s_q(q . x), and grad_p K = alpha q + beta p (docs/maths.rst §8.1);
    the activations are equal, or cq is linear."""
    cdef double A, D
    if cp == G_RELU and cq == G_RELU:
        alpha[0] = g.phi / (2.0 * M_PI)
        beta[0] = g.nq * g.sin / (g.np * 2.0 * M_PI)
        return g.np * g.nq * relu_j(g) / (2.0 * M_PI)
    if cp == G_ERF and cq == G_ERF:
        A = 1.0 + g.np * g.np
        D = sqrt(A + g.nq * g.nq + g.cross * g.cross)      # sqrt((1+|p|^2)(1+|q|^2) - rho^2)
        alpha[0] = 2.0 / M_PI / D
        beta[0] = -alpha[0] * g.rho / A
        return 2.0 / M_PI * atan2(g.rho, D)
    if cp == G_ERF:                                        # against a linear neuron
        A = 1.0 + g.np * g.np
        alpha[0] = SQRT_2_OVER_PI / sqrt(A)
        beta[0] = -alpha[0] * g.rho / A
        return alpha[0] * g.rho
    alpha[0] = 0.5 if cp == G_RELU else 1.0               # relu or linear, against linear
    beta[0] = 0.0
    return alpha[0] * g.rho


cdef inline double mean(int code, double np, double *mu) noexcept nogil:
    """M = E s(p . x), and grad_p M = mu p."""
    if code == G_RELU:
        mu[0] = INV_SQRT_2PI / np
        return INV_SQRT_2PI * np
    mu[0] = 0.0
    return 0.0


cdef inline double relu_hermite(Py_ssize_t k) noexcept nogil:
    """mu_k = E relu(g) He_k(g): 1/sqrt(2 pi), 1/2, then 0 for odd k and
    (-1)^(k/2 + 1) (k - 3)!! / sqrt(2 pi) for even k."""
    cdef Py_ssize_t i
    cdef double v
    if k == 0:
        return INV_SQRT_2PI
    if k == 1:
        return 0.5
    if k % 2:
        return 0.0
    v = INV_SQRT_2PI
    for i in range(k - 3, 0, -2):
        v *= i
    return v if (k // 2) % 2 else -v


cdef inline double hermite(int cp, const Geometry *g, const double *c, Py_ssize_t K,
                           double *alpha, double *beta) noexcept nogil:
    """E s(p . x) f*(x) for f* = sum_k c_k He_k(v . x), |v| = 1, and its gradient
    alpha v + beta p: relu, sum_k c_k |p| mu_k cos^k (docs/maths.rst §8.2); linear, c_1 rho."""
    cdef Py_ssize_t k
    cdef double value, power = 1.0, mu                # power = cos^(k-1)
    alpha[0] = 0.0
    beta[0] = 0.0
    if cp != G_RELU:
        if K >= 1:
            alpha[0] = c[1]
        return alpha[0] * g.rho
    value = c[0] * g.np * INV_SQRT_2PI
    beta[0] = c[0] * INV_SQRT_2PI / g.np
    for k in range(1, K + 1):
        mu = c[k] * relu_hermite(k)
        alpha[0] += mu * k * power
        power *= g.cos
        value += mu * g.np * power
        beta[0] += mu * (1 - k) * power / g.np
    return value


cdef extern from *:
    """
    /* out[0..n) += sum_i c[i] rows[i * stride + (0..n)] over i = 0..count-1, in order of i,
       four rows to a pass so that out goes through memory once per four terms (the same
       bits as one row a pass). restrict: out never overlaps the rows. */
    static void twotimescale_combine(double *restrict out, const double *restrict rows,
                                     Py_ssize_t stride, const double *c, Py_ssize_t count,
                                     Py_ssize_t n) {
        Py_ssize_t i = 0, j;
        for (; i + 4 <= count; i += 4) {
            const double *restrict r0 = rows + i * stride, *restrict r1 = r0 + stride;
            const double *restrict r2 = r1 + stride, *restrict r3 = r2 + stride;
            const double c0 = c[i], c1 = c[i + 1], c2 = c[i + 2], c3 = c[i + 3];
            for (j = 0; j < n; j++)
                out[j] = (((out[j] + c0 * r0[j]) + c1 * r1[j]) + c2 * r2[j]) + c3 * r3[j];
        }
        for (; i < count; i++) {
            const double *restrict r0 = rows + i * stride;
            const double c0 = c[i];
            for (j = 0; j < n; j++)
                out[j] = out[j] + c0 * r0[j];
        }
    }
    """
    void combine "twotimescale_combine" (double *out, const double *rows, Py_ssize_t stride,
                                         const double *c, Py_ssize_t count,
                                         Py_ssize_t n) nogil


cdef inline void products(const double *W, Py_ssize_t m, const double *V, Py_ssize_t n,
                          Py_ssize_t d, double *WT, double *out) noexcept nogil:
    """out (m x n) <- W V^T for W (m x d) and V (n x d) by rows: row j of out is
    sum_k W[j, k] V^T[k, :], rows of V's transpose (written into WT, d x n) combined in order
    of k."""
    cdef Py_ssize_t j, k, l
    for k in range(d):
        for l in range(n):
            WT[k * n + l] = V[l * d + k]
    for j in range(m):
        for l in range(n):
            out[j * n + l] = 0.0
        combine(out + j * n, WT, n, W + j * d, d, n)


cdef double population(const NetView *net, const NetView *teacher, double *G, double *b,
                       double *grad_a, double *grad_w) noexcept nogil:
    """The loss L = a.G.a - 2 a.b + E f*^2 of a Gaussian-input network against its teacher;
    G ((m+1) x (m+1)) and b (m+1) are written; grad_a (m+1) and grad_w (m d, by rows) too
    unless grad_a is NULL. O((m + tm) m d) for the products, O((m + tm) m) pairs."""
    cdef Py_ssize_t m = net.m, d = net.d, n = m + 1, j, l, k
    cdef bint hermite_target = teacher.kind == KIND_HERMITE
    cdef Py_ssize_t tm = 1 if hermite_target else teacher.m
    cdef int cp = net.code, cq = teacher.code
    cdef const double *W = net.u
    cdef const double *V = teacher.u
    cdef const double *a = net.a
    cdef const double *c = teacher.a
    cdef double loss, total, kv, al, be, al2, be2, mu, square
    cdef Geometry g
    cdef double *P = <double *> malloc((m * m + m * tm + tm * tm + d * (m + tm) + m * m
                                        + m * tm + 2 * m + tm) * sizeof(double))
    cdef double *Q = P + m * m              # W V^T
    cdef double *R = Q + m * tm             # V V^T
    cdef double *T = R + tm * tm            # scratch: a transpose
    cdef double *A = T + d * (m + tm)       # A[j, l] = a_l alpha_jl
    cdef double *B = A + m * m              # B[j, k] = c_k alpha*_jk
    cdef double *s = B + m * tm             # s_j: the coefficient of w_j itself
    cdef double *nw = s + m                 # |w_j|
    cdef double *nv = nw + m                # |v_k|
    if P == NULL:
        return NAN
    products(W, m, W, m, d, T, P)
    products(W, m, V, tm, d, T, Q)
    products(V, tm, V, tm, d, T, R)
    for j in range(m):
        nw[j] = sqrt(P[j * m + j])
    for k in range(tm):
        nv[k] = sqrt(R[k * tm + k])
    # the teacher alone: E f* and E f*^2
    if hermite_target:
        b[0] = c[0]
        square = 0.0
        total = 1.0                          # k!
        for k in range(teacher.m + 1):
            if k:
                total *= k
            square += c[k] * c[k] * total
    else:
        b[0] = c[0]
        square = 0.0
        for k in range(tm):
            b[0] += c[k + 1] * mean(cq, nv[k], &mu)
            for l in range(k, tm):
                if l == k:
                    same(&g, nv[k])
                else:
                    geometry(&g, V + k * d, V + l * d, d, nv[k], nv[l], R[k * tm + l])
                kv = c[k + 1] * c[l + 1] * pair(cq, cq, &g, &al, &be)
                square += kv if l == k else 2.0 * kv
        square += c[0] * (2.0 * b[0] - c[0])  # c0^2 + 2 c0 sum_k c_k M*_k
    # the student's pairs, the means, and the student against the teacher
    G[0] = 1.0
    for j in range(m):
        G[j + 1] = G[(j + 1) * n] = mean(cp, nw[j], &mu)
        s[j] = (a[0] - (0.0 if hermite_target else c[0])) * mu
    for j in range(m):
        for l in range(j, m):
            if l == j:
                same(&g, nw[j])
            else:
                geometry(&g, W + j * d, W + l * d, d, nw[j], nw[l], P[j * m + l])
            kv = pair(cp, cp, &g, &al, &be)
            G[(j + 1) * n + l + 1] = G[(l + 1) * n + j + 1] = kv
            A[j * m + l] = a[l + 1] * al
            s[j] += a[l + 1] * be
            if l != j:                       # the same pair seen from w_l
                g.np, g.nq = g.nq, g.np
                pair(cp, cp, &g, &al, &be)
                A[l * m + j] = a[j + 1] * al
                s[l] += a[j + 1] * be
        if hermite_target:
            geometry(&g, W + j * d, V, d, nw[j], nv[0], Q[j])
            b[j + 1] = hermite(cp, &g, c, teacher.m, &al, &be)
            B[j] = al
            s[j] -= be
        else:
            b[j + 1] = c[0] * G[j + 1]
            for k in range(tm):
                geometry(&g, W + j * d, V + k * d, d, nw[j], nv[k], Q[j * tm + k])
                b[j + 1] += c[k + 1] * pair(cp, cq, &g, &al, &be)
                B[j * tm + k] = c[k + 1] * al
                s[j] -= c[k + 1] * be
    loss = square
    for j in range(n):
        total = 0.0
        for l in range(n):
            total += G[j * n + l] * a[l]
        loss += a[j] * (total - 2.0 * b[j])
        if grad_a != NULL:
            grad_a[j] = 2.0 * (total - b[j])
    if grad_a != NULL:
        for l in range(m * tm):
            B[l] = -B[l]                     # x + (-b) v is x - b v, to the bit
        for j in range(m):
            for k in range(d):
                grad_w[j * d + k] = s[j] * W[j * d + k]
            combine(grad_w + j * d, W, d, A + j * m, m, d)
            combine(grad_w + j * d, V, d, B + j * tm, tm, d)
            for k in range(d):
                grad_w[j * d + k] *= 2.0 * a[j + 1]
    free(P)
    return loss if loss > 0.0 else 0.0


def loss_and_grad(Net net, Net teacher, double[::1] grad_a=None, double[::1] grad_w=None):
    """The loss (clamped at 0: a.G.a - 2 a.b + E f*^2 carries rounding of eps E f*^2), and
    the gradient into grad_a (m+1) and grad_w (m d) when given."""
    cdef Py_ssize_t n = net.view.m + 1
    cdef double[::1] scratch = np.empty(n * n + n)
    cdef double loss
    with nogil:
        loss = population(&net.view, &teacher.view, &scratch[0], &scratch[n * n],
                          &grad_a[0] if grad_a is not None else NULL,
                          &grad_w[0] if grad_w is not None and grad_w.shape[0] else NULL)
    return loss


def gram_and_b(Net net, Net teacher, double[:, ::1] G, double[::1] b):
    """G (the Gram matrix of the features 1, s(w_j . x)) and b = E phi f*; returns the loss."""
    cdef double loss
    with nogil:
        loss = population(&net.view, &teacher.view, &G[0, 0], &b[0], NULL, NULL)
    return loss


def record_losses(Net net, Net teacher, const double[:, ::1] a_rec, const double[:, ::1] u_rec):
    """The loss at every record (rows of a and of W by rows, as a Trajectory holds them)."""
    cdef Py_ssize_t i, n = net.view.m + 1
    cdef double[::1] out = np.empty(a_rec.shape[0])
    cdef double[::1] scratch = np.empty(n * n + n)
    cdef NetView at = net.view
    with nogil:
        for i in range(a_rec.shape[0]):
            at.a = &a_rec[i, 0]
            at.u = &u_rec[i, 0]
            out[i] = population(&at, &teacher.view, &scratch[0], &scratch[n * n], NULL, NULL)
    return np.asarray(out)
