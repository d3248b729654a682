# cython: language_level=3
"""Small inline helpers that more than one kernel module uses."""


cdef inline bint all_finite(const double *v, Py_ssize_t n) noexcept nogil:
    """True when every v[i] is finite: one sum of v[i] * 0, which is NaN for an infinite or
    NaN entry, so the loop has no branch and vectorises."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += v[i] * 0.0
    return total == 0.0
