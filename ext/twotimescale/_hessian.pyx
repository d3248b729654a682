# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The exact Hessian of the population loss of a univariate network (docs/maths.rst §7).

Design: H = 2 J + 2 R over the parameters (a_0..a_m, u_1..u_m). J is the Gram matrix of the
features psi_{a_j} = phi_j and psi_{u_j} = c_j s'(z_j), c_j = -a_j / eta: its a-block is G
(gram_fill, so the a-block is 2 G to the bit), its other entries are the pair integrals
int s_i s'_j and int s'_i s'_j. A pair of steps whose transitions do not meet integrates in
closed form (the left one is 1 wherever the right one's slope is not 0), a ReLU pair always
does; other pairs go piece by piece, 4-point Gauss-Legendre on the pair's kink grid, exact
for these polynomials of degree <= 5. R lives on each neuron's own pairs: int r s'(z_j),
which the population sweep returns beside the gradient, and int r s''(z_j): for the
smoothstep a bounded integrand (the same sweep), for the ramp and the ReLU the point values
of the residual at the kinks inside (0, 1). Cost O(m^2) pairs plus O(m (m + teacher's m))
point values. Where a kink sits on a jump of the teacher the point value, and so the
Hessian, does not exist: twotimescale.population refuses that before calling here. The
NumPy twin is ``twotimescale.reference.hessian``.
"""
from libc.stdlib cimport malloc, free
from ._activations cimport RELU, SMOOTHSTEP, s_of, ds_of, kinks, network_value
from ._network cimport Net, NetView
from ._population cimport Act, act_init, gram_fill, sweep, gauss_legendre, pair_grid


cdef void pair_pieces(const Act *p, double ui, double uj, double *sd, double *ds,
                      double *dd) noexcept nogil:
    """sd = int_0^1 s_i s'_j, ds = int_0^1 s'_i s_j, dd = int_0^1 s'_i s'_j, piece by piece
    on the kinks of both neurons (s_i = s((x - ui) / eta)), as population's pair_integral."""
    cdef double pts[8]
    cdef double x[4]
    cdef double w[4]
    cdef double si, sj, di, dj
    cdef int n = pair_grid(p, ui, p, uj, pts), k, i
    sd[0] = 0.0
    ds[0] = 0.0
    dd[0] = 0.0
    for i in range(n - 1):
        if pts[i + 1] <= pts[i]:
            continue
        gauss_legendre(pts[i], pts[i + 1], x, w)
        for k in range(4):
            si = s_of(p.code, (x[k] - ui) * p.inv_eta)
            sj = s_of(p.code, (x[k] - uj) * p.inv_eta)
            di = ds_of(p.code, (x[k] - ui) * p.inv_eta)
            dj = ds_of(p.code, (x[k] - uj) * p.inv_eta)
            sd[0] += w[k] * si * dj
            ds[0] += w[k] * di * sj
            dd[0] += w[k] * di * dj


cdef void pair_slopes(const Act *p, double ui, double uj, double mass_slope_i,
                      double mass_slope_j, double *sd, double *ds, double *dd) noexcept nogil:
    """The pair integrals of pair_pieces, in closed form where they have one; mass_slope_j =
    int_0^1 s'_j."""
    cdef double c
    if p.code == RELU:                          # s' = 1 right of u: int over [max u, 1]
        c = ui if ui > uj else uj
        c = 0.0 if c < 0.0 else (1.0 if c > 1.0 else c)
        dd[0] = 1.0 - c
        sd[0] = (1.0 - c) * ((1.0 - ui) + (c - ui)) * (0.5 * p.inv_eta)
        ds[0] = (1.0 - c) * ((1.0 - uj) + (c - uj)) * (0.5 * p.inv_eta)
    elif ui + p.hi <= uj + p.lo:                # i saturated wherever j slopes
        sd[0] = mass_slope_j
        ds[0] = 0.0
        dd[0] = 0.0
    elif uj + p.hi <= ui + p.lo:
        sd[0] = 0.0
        ds[0] = mass_slope_i
        dd[0] = 0.0
    else:
        pair_pieces(p, ui, uj, sd, ds, dd)


cdef double kink_residual(const NetView *net, const NetView *teacher, Py_ssize_t j) noexcept nogil:
    """int_0^1 r s''(z_j) dx for the ramp and the ReLU, whose s'' is a Dirac mass at each kink:
    eta (r(u - eta/2) - r(u + eta/2)) and eta r(u), counting the points inside (0, 1)."""
    cdef double z[3]
    cdef double x, r, total = 0.0, sign
    cdef int nk = kinks(net.code, z), k
    for k in range(nk):
        x = net.u[j] + z[k] * net.eta
        if not (0.0 < x < 1.0):
            continue
        r = (network_value(net.a, net.u, net.m, net.inv_eta, net.code, x)
             - network_value(teacher.a, teacher.u, teacher.m, teacher.inv_eta, teacher.code, x))
        sign = -1.0 if (net.code != RELU and k == nk - 1) else 1.0
        total += sign * r
    return net.eta * total


cdef int hessian_fill(const NetView *net, const NetView *teacher, double *H) except -1 nogil:
    """H, (2m + 1) x (2m + 1) row-major, of a univariate network against its teacher."""
    cdef Py_ssize_t m = net.m, n = 2 * m + 1, i, j, U = m + 1
    cdef Act act
    cdef double eta = net.eta, inv_eta = net.inv_eta, s0, s1, sd, ds, dd, curve
    cdef double *block = <double *> malloc(((m + 1) * (m + 1) + 6 * m + 1) * sizeof(double))
    if block == NULL:
        with gil:
            raise MemoryError("twotimescale: no memory for the Hessian")
    cdef double *G = block
    cdef double *grad_a = G + (m + 1) * (m + 1)
    cdef double *grad_u = grad_a + m + 1
    cdef double *slopes = grad_u + m            # int r s'(z_j), then int r s''(z_j)
    cdef double *c = slopes + 2 * m             # -a_j / eta
    cdef double *mass_slope = c + m             # int_0^1 s'_j
    act_init(&act, net.code, eta)
    gram_fill(net.u, m, &act, G)
    for i in range(m + 1):
        for j in range(m + 1):
            H[i * n + j] = 2.0 * G[i * (m + 1) + j]
    sweep(net, teacher, grad_a, grad_u, slopes)
    for j in range(m):
        c[j] = -net.a[j + 1] * inv_eta
        s1 = s_of(net.code, (1.0 - net.u[j]) * inv_eta)
        s0 = s_of(net.code, (0.0 - net.u[j]) * inv_eta)
        mass_slope[j] = eta * (s1 - s0)
        H[U + j] = 2.0 * c[j] * mass_slope[j]                                  # (a_0, u_j)
        pair_slopes(&act, net.u[j], net.u[j], mass_slope[j], mass_slope[j], &sd, &ds, &dd)
        H[(1 + j) * n + U + j] = (2.0 * c[j] * (0.5 * eta * (s1 * s1 - s0 * s0))
                                  - 2.0 * inv_eta * slopes[j])                 # (a_j, u_j)
        curve = slopes[m + j] if net.code == SMOOTHSTEP else kink_residual(net, teacher, j)
        H[(U + j) * n + U + j] = (2.0 * c[j] * c[j] * dd
                                  + 2.0 * net.a[j + 1] * inv_eta * inv_eta * curve)
        for i in range(j):
            pair_slopes(&act, net.u[i], net.u[j], mass_slope[i], mass_slope[j], &sd, &ds, &dd)
            H[(1 + i) * n + U + j] = 2.0 * c[j] * sd                           # (a_i, u_j)
            H[(1 + j) * n + U + i] = 2.0 * c[i] * ds                           # (a_j, u_i)
            H[(U + i) * n + U + j] = 2.0 * c[i] * c[j] * dd                    # (u_i, u_j)
    for i in range(n):                          # the lower triangle of the u-columns
        for j in range(U if i < U else i + 1, n):
            H[j * n + i] = H[i * n + j]
    free(block)
    return 0


def hessian(Net net, Net teacher, double[:, ::1] out):
    """Fill out, (2m + 1, 2m + 1), with the Hessian of the population loss in (a, u);
    twotimescale.population checks the networks and the kinks first."""
    with nogil:
        hessian_fill(&net.view, &teacher.view, &out[0, 0])
