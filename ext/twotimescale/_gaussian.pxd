# cython: language_level=3
"""Exact population quantities of networks on Gaussian inputs (docs/maths.rst §8), shared with
the flow integrator."""
from ._network cimport NetView

cdef enum:
    G_RELU = 0          # the activations of a network on Gaussian inputs (ACTIVATIONS)
    G_ERF = 1           # erf(z / sqrt 2)
    G_LINEAR = 2


cdef double population(const NetView *net, const NetView *teacher, double *G, double *b,
                       double *grad_a, double *grad_w) noexcept nogil


# The activations as point functions, compiled once per activation through the fused tag
# type gact_t (as activations.pxd does for the univariate ones), and by code.
ctypedef struct GRelu:
    char tag
ctypedef struct GErf:
    char tag
ctypedef struct GLinear:
    char tag
ctypedef fused gact_t:
    GRelu
    GErf
    GLinear

cdef extern from "math.h" nogil:
    double erf(double)
    double exp(double)


cdef inline double sigma(gact_t *kind, double z) noexcept nogil:
    """s(z): max(z, 0), erf(z / sqrt 2) or z."""
    if gact_t is GRelu:
        return z if z > 0.0 else 0.0
    elif gact_t is GErf:
        return erf(z * 0.7071067811865476)           # z / sqrt 2
    else:
        return z


cdef inline double slope(gact_t *kind, double z) noexcept nogil:
    """s'(z): 1 for z > 0 else 0 (the ReLU's choice at its kink), sqrt(2/pi) exp(-z^2 / 2),
    or 1."""
    if gact_t is GRelu:
        return 1.0 if z > 0.0 else 0.0
    elif gact_t is GErf:
        return 0.7978845608028654 * exp(-0.5 * z * z)   # sqrt(2 / pi)
    else:
        return 1.0


cdef inline double dot(const double *p, const double *q, Py_ssize_t n) noexcept nogil:
    """p . q in eight partial sums (k mod 8), added as ((s0 + s4) + (s1 + s5)) +
    ((s2 + s6) + (s3 + s7)), then the last n mod 8 terms in order: it vectorises without
    reassociation, and its bits do not depend on how."""
    cdef Py_ssize_t k, l, n8 = n - n % 8
    cdef double acc[8]
    cdef double total
    for l in range(8):
        acc[l] = 0.0
    for k in range(0, n8, 8):
        for l in range(8):
            acc[l] += p[k + l] * q[k + l]
    total = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
    for k in range(n8, n):
        total += p[k] * q[k]
    return total


cdef inline double hermite_sum(const double *c, Py_ssize_t K, double z) noexcept nogil:
    """sum_{k=0..K} c_k He_k(z), the probabilists' Hermite polynomials by their recurrence
    He_{k+1} = z He_k - k He_{k-1}."""
    cdef Py_ssize_t k
    cdef double prev = 1.0, cur = z, nxt, total = c[0]
    if K >= 1:
        total += c[1] * z
    for k in range(1, K):
        nxt = z * cur - k * prev
        prev = cur
        cur = nxt
        total += c[k + 1] * cur
    return total


cdef double value(const NetView *net, const double *x) noexcept nogil
