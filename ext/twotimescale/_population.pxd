# cython: language_level=3
"""What the population kernels share with the flow integrator (flow.pyx cimports it)."""
from ._activations cimport kinks
from ._network cimport NetView


cdef struct Act:
    # one network's activation, as the pair integrals see it
    int code
    double eta, inv_eta
    double lo, hi                  # a neuron at u is in transition on [u + lo, u + hi]
    bint step                      # s = 1 right of its transition (all but relu)


cdef void act_init(Act *p, int code, double eta) noexcept nogil
cdef double pair_integral(const Act *p, double ui, const Act *q, double uj) noexcept nogil


cdef inline double clip01(double x) noexcept nogil:
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


cdef inline void gauss_legendre(double left, double right, double *x, double *w) noexcept nogil:
    """The 4 Gauss-Legendre nodes and weights on [left, right]: exact for polynomials of
    degree <= 7. Inline here: the sweep calls it on every piece, the Hessian on every pair."""
    cdef double mid = 0.5 * (left + right), half = 0.5 * (right - left)
    x[0] = mid + half * -0.8611363115940526
    x[1] = mid + half * -0.33998104358485626
    x[2] = mid + half * 0.33998104358485626
    x[3] = mid + half * 0.8611363115940526
    w[0] = half * 0.34785484513745385
    w[1] = half * 0.6521451548625461
    w[2] = half * 0.6521451548625461
    w[3] = half * 0.34785484513745385


cdef inline int pair_grid(const Act *p, double ui, const Act *q, double uj,
                          double *pts) noexcept nogil:
    """Write into pts (room for 8) the kinks of two neurons clipped to [0, 1], with 0 and 1,
    ascending (by insertion: a handful of points); return how many. Between consecutive
    points both neurons are one polynomial each."""
    cdef double z[3]
    cdef double t
    cdef int n = 2, k, i, nk
    pts[0] = 0.0
    pts[1] = 1.0
    nk = kinks(p.code, z)
    for k in range(nk):
        pts[n] = clip01(ui + z[k] * p.eta)
        n += 1
    nk = kinks(q.code, z)
    for k in range(nk):
        pts[n] = clip01(uj + z[k] * q.eta)
        n += 1
    for i in range(1, n):
        t = pts[i]
        k = i - 1
        while k >= 0 and t < pts[k]:
            pts[k + 1] = pts[k]
            k -= 1
        pts[k + 1] = t
    return n


cdef inline double overlap(const Act *p, double ui, double mass_i, const Act *q, double uj,
                           double mass_j) noexcept nogil:
    """int_0^1 phi_i phi_j, given each neuron's mass int_0^1 phi. Two steps whose transitions
    do not meet: the left one is 1 wherever the right one is not 0, so the pair integrates to
    the right one's mass; otherwise piece by piece. Inline here: the flow calls it m x tm
    times a stage (docs/maths.rst §3.3)."""
    if p.step and q.step:
        if ui + p.hi <= uj + q.lo:
            return mass_j
        if uj + q.hi <= ui + p.lo:
            return mass_i
    return pair_integral(p, ui, q, uj)


cdef void self_integrals(const Act *p, double u, double *mass, double *square) noexcept nogil
cdef void gram_fill(const double *u, Py_ssize_t m, const Act *act, double *out) noexcept nogil
cdef double sweep(const NetView *net, const NetView *teacher, double *grad_a,
                  double *grad_u, double *slopes=*) except? -1.0 nogil
