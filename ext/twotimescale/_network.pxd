# cython: language_level=3
"""The boundary between the Python API and the kernels: one network, validated once.

Design: ``twotimescale.network`` checks the user's arrays and builds one ``Net`` per network;
every kernel takes ``Net`` objects and reads them through ``NetView``, a plain struct the
nogil loops can hold. A kind of network that the kernels learn to handle adds a field here,
not an argument to every kernel. docs/architecture.rst, "The boundary".
"""

cdef enum:
    KIND_UNIFORM = 0          # x ~ U[0, 1]^d: univariate (d = 1) or additive networks
    KIND_GAUSSIAN = 1         # x ~ N(0, I_d): f(x) = a[0] + sum_j a[j] s(w_j . x)
    KIND_HERMITE = 2          # x ~ N(0, I_d): f(x) = sum_k a[k] He_k(v . x)


cdef struct NetView:
    const double *a           # (1 + d m,): the bias a[0], then coordinate by coordinate
    const double *u           # (d m,): coordinate k at k m
    Py_ssize_t d              # coordinates (1: a univariate network)
    Py_ssize_t m              # neurons per coordinate
    double eta, inv_eta       # the activation's width and 1 / eta (z = (x - u) * inv_eta)
    int code                  # the activation (activations.pxd; gaussian.pxd for Gaussian)
    int kind                  # KIND_*: for KIND_GAUSSIAN a = (a0, a_1..a_m), u = W (m x d,
                              # by rows), d the input dimension; for KIND_HERMITE
                              # a = (c_0..c_m), the coefficients of He_0..He_m, u = v (d,)


cdef bint interrupted() noexcept nogil
cdef int raise_interrupt() except -1


cdef class Net:
    cdef readonly object a    # read-only float64 copies the kernels own
    cdef readonly object u
    cdef NetView view
