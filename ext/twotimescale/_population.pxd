# cython: language_level=3
"""What the population kernels share with the flow integrator (flow.pyx cimports it)."""
from ._network cimport NetView


cdef struct Act:
    # one network's activation, as the pair integrals see it
    int code
    double eta, inv_eta
    double lo, hi                  # a neuron at u is in transition on [u + lo, u + hi]
    bint step                      # s = 1 right of its transition (all but relu)


cdef void act_init(Act *p, int code, double eta) noexcept nogil
cdef void gauss_legendre(double left, double right, double *x, double *w) noexcept nogil
cdef int pair_grid(const Act *p, double ui, const Act *q, double uj, double *pts) noexcept nogil
cdef double pair_integral(const Act *p, double ui, const Act *q, double uj) noexcept nogil


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
