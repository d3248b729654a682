# cython: language_level=3
"""Activations s(z) and their derivatives s'(z), one point at a time (docs/maths.rst §2).

Design: each activation is a pair of branch-free inline functions that the compiler can
vectorise; s propagates NaN (a comparison with NaN is false, so NaN falls through to an arm
that computes with z), which is how a run that blows up stops. The forms are chosen for the
vector units, never at the cost of a bit: s and s' test z against the same constants, so the
comparisons are shared, and a ramp's or ReLU's a s'(z) selects rather than multiplies by 0
or 1 (weighted_slope). Two ways to pick one:

* at compile time, through the fused type ``act_t`` of empty tag structs, so that a hot loop
  (SGD) is compiled once per activation with no dispatch inside it;
* at run time, through ``s_of(code, z)``, where a loop mixes activations (a student and its
  teacher) and a switch per call costs nothing next to the rest.

The scaled position is always z = (x - u) * (1 / eta), in the kernels and in the NumPy
reference alike, so that both agree to the bit at the kinks.
"""

from libc.math cimport fabs

cdef enum:
    RAMP = 0
    SMOOTHSTEP = 1
    RELU = 2
    HEAVISIDE = 3


cdef inline double ramp(double z) noexcept nogil:
    """min(max(z + 1/2, 0), 1), tested on z itself, as ramp_d is (the same bits as clamping
    z + 1/2: rounding is monotone and keeps the sign of z + 1/2)."""
    cdef double v = z + 0.5
    v = 0.0 if z < -0.5 else v
    return 1.0 if z > 0.5 else v


cdef inline double ramp_d(double z) noexcept nogil:
    """1 on [-1/2, 1/2], else 0 (and 1 for NaN, which no run sees: s(NaN) = NaN stops it)."""
    return 0.0 if (z < -0.5) | (z > 0.5) else 1.0


cdef inline double near_end(double z) noexcept nogil:
    """max(1/2 - |z|, 0): the distance from z to the nearer end of (-1/2, 1/2), 0 outside.
    1/2 - |z| is z + 1/2 for z <= 0 and 1/2 - z above, to the bit."""
    cdef double w = 0.5 - fabs(z)
    return 0.0 if w < 0.0 else w


cdef inline double smoothstep(double z) noexcept nogil:
    """0 | 4(z+1/2)^3 on (-1/2, 0] | 1 - 4(1/2-z)^3 on (0, 1/2) | 1: with w = near_end(z),
    4 w^3 for z <= 0, else 1 - 4 w^3 (w = 0 outside gives the 0 and the 1)."""
    cdef double w = near_end(z)
    cdef double c = (4.0 * w) * (w * w)      # = ((4 w) w) w to the bit: 4 w is exact
    return c if z <= 0.0 else 1.0 - c


cdef inline double smoothstep_d(double z) noexcept nogil:
    """12(z+1/2)^2 on (-1/2, 0] | 12(1/2-z)^2 on (0, 1/2) | 0: 12 near_end(z)^2."""
    cdef double w = near_end(z)
    return 12.0 * w * w


cdef inline double relu(double z) noexcept nogil:
    """max(z, 0)."""
    return 0.0 if z < 0.0 else z


cdef inline double relu_d(double z) noexcept nogil:
    """1 for z > 0, else 0."""
    return <double>(z > 0.0)


cdef inline double heaviside(double z) noexcept nogil:
    """1 for z >= 0, else 0."""
    return <double>(z >= 0.0)


# ---- compile-time choice --------------------------------------------------------------
ctypedef struct Ramp:
    char tag
ctypedef struct Smoothstep:
    char tag
ctypedef struct Relu:
    char tag
ctypedef struct Published:  # the paper's code: the cubic step forward, the ramp's slope in u
    char tag                # (only twotimescale.published trains with it; docs/maths.rst §6)

ctypedef fused act_t:
    Ramp
    Smoothstep
    Relu
    Published


cdef inline double s(act_t *kind, double z) noexcept nogil:
    if act_t is Ramp:
        return ramp(z)
    elif act_t is Smoothstep or act_t is Published:
        return smoothstep(z)
    else:
        return relu(z)


cdef inline double ds(act_t *kind, double z) noexcept nogil:
    if act_t is Ramp or act_t is Published:
        return ramp_d(z)
    elif act_t is Smoothstep:
        return smoothstep_d(z)
    else:
        return relu_d(z)


cdef inline bint saturated(act_t *kind, double z) noexcept nogil:
    """True where s(z) = 1 and s'(z) = 0 exactly (never for relu, which does not saturate);
    for Published, where its slope (the ramp's) is 0 on the right."""
    if act_t is Ramp or act_t is Published:
        return z > 0.5
    elif act_t is Smoothstep:
        return z >= 0.5
    else:
        return False


cdef inline bint inert(act_t *kind, double z) noexcept nogil:
    """True where s(z) = s'(z) = 0 exactly."""
    if act_t is Ramp or act_t is Published:
        return z < -0.5
    elif act_t is Smoothstep:
        return z <= -0.5
    else:
        return z <= 0.0


cdef inline double weighted_slope(act_t *kind, double a, double z) noexcept nogil:
    """a s'(z). The ramp's and the ReLU's s' are 1 wherever the neuron is neither inert nor
    saturated, so they select a or 0 instead of multiplying: the same value but for the sign
    of a zero (and a non-finite a, whose run has already stopped: a_j s(z_j) in the sum is
    NaN)."""
    if act_t is Smoothstep:
        return a * ds(kind, z)
    return 0.0 if inert(kind, z) | saturated(kind, z) else a


# ---- run-time choice ------------------------------------------------------------------
cdef inline double s_of(int code, double z) noexcept nogil:
    if code == RAMP:
        return ramp(z)
    if code == SMOOTHSTEP:
        return smoothstep(z)
    if code == RELU:
        return relu(z)
    return heaviside(z)


cdef inline double ds_of(int code, double z) noexcept nogil:
    """s'(z); 0 for heaviside, whose derivative is a Dirac mass (never asked for)."""
    if code == RAMP:
        return ramp_d(z)
    if code == SMOOTHSTEP:
        return smoothstep_d(z)
    if code == RELU:
        return relu_d(z)
    return 0.0


cdef inline double dds_of(int code, double z) noexcept nogil:
    """The bounded part of s''(z): 24(z+1/2) on (-1/2, 0], -24(1/2-z) on (0, 1/2) for the
    smoothstep, else 0 (the ramp's and ReLU's s'' are Dirac masses at their kinks, which the
    Hessian takes as point values of the residual; docs/maths.rst §7)."""
    cdef double w
    if code != SMOOTHSTEP:
        return 0.0
    w = near_end(z)
    return 24.0 * w if z <= 0.0 else -24.0 * w


cdef inline void antiderivatives(int code, double z, double *s1, double *s2) noexcept nogil:
    """s1 = int_{-inf}^z s, s2 = int_{-inf}^z s^2 (s is 0 left of its first kink); a NaN z
    falls through to the last arm. ramp: p = z + 1/2, p^2 / 2 and p^3 / 3 in transition;
    smoothstep: p^4 and 16 p^7 / 7 on (-1/2, 0], z + q^4 and z + 2 q^4 - 16 q^7 / 7 - 5/56
    on (0, 1/2), q = 1/2 - z; both z and z - 1/6 (ramp) or z - 5/56 (smoothstep) beyond."""
    cdef double p = z + 0.5, q = 0.5 - z, q4
    if code == RELU:
        p = 0.0 if z <= 0.0 else z
        s1[0] = p * p / 2
        s2[0] = p * p * p / 3
    elif code == HEAVISIDE:
        s1[0] = 0.0 if z <= 0.0 else z
        s2[0] = s1[0]
    elif z <= -0.5:
        s1[0] = 0.0
        s2[0] = 0.0
    elif code == RAMP and z < 0.5:
        s1[0] = p * p / 2
        s2[0] = p * p * p / 3
    elif code == RAMP:
        s1[0] = z
        s2[0] = z - 1.0 / 6
    elif z <= 0.0:
        s1[0] = p * p * p * p
        s2[0] = 16.0 * p * p * p * p * p * p * p / 7
    elif z < 0.5:
        q4 = q * q * q * q
        s1[0] = z + q4
        s2[0] = z + 2.0 * q4 - 16.0 * q4 * q * q * q / 7 - 5.0 / 56
    else:
        s1[0] = z
        s2[0] = z - 5.0 / 56


cdef inline int kinks(int code, double *z) noexcept nogil:
    """Write the points where s stops being one polynomial, ascending; return how many."""
    if code == RAMP:
        z[0] = -0.5; z[1] = 0.5
        return 2
    if code == SMOOTHSTEP:
        z[0] = -0.5; z[1] = 0.0; z[2] = 0.5
        return 3
    z[0] = 0.0
    return 1


cdef inline void tail(int code, double u, double inv_eta, double *c0, double *c1) noexcept nogil:
    """Right of its last kink, s((x - u) / eta) = c0 + c1 (x - 1). About the right end, so that
    a tail integral over [u, 1] adds terms of its own size: no cancellation when u is near 1."""
    if code == RELU:
        c0[0] = (1.0 - u) * inv_eta
        c1[0] = inv_eta
    else:
        c0[0] = 1.0
        c1[0] = 0.0


cdef inline double network_value(const double *a, const double *u, Py_ssize_t m,
                                 double inv_eta, int code, double x) noexcept nogil:
    """f(x) = a[0] + sum_j a[j+1] s((x - u[j]) / eta), summed in neuron order."""
    cdef double f = a[0]
    cdef Py_ssize_t j
    for j in range(m):
        f += a[j + 1] * s_of(code, (x - u[j]) * inv_eta)
    return f
