# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The kernels' view of a network (network.pxd), the activation codes, and point evaluation.

docs/architecture.rst, "The boundary"; the activations are docs/maths.rst §2.
"""
import numpy as np
from cpython.exc cimport PyErr_CheckSignals

from ._activations cimport RAMP, SMOOTHSTEP, RELU, HEAVISIDE, s_of, kinks, network_value

#: activation name -> the code the kernels use (activations.pxd): the one table of them
ACTIVATIONS = {"ramp": RAMP, "smoothstep": SMOOTHSTEP, "relu": RELU, "heaviside": HEAVISIDE}


def _kinks_of(int code):
    cdef double z[3]
    cdef int n = kinks(code, z)
    return tuple(z[k] for k in range(n))


#: kind of network -> the code of NetView.kind (network.pxd)
KINDS = {"uniform": KIND_UNIFORM, "gaussian": KIND_GAUSSIAN, "hermite": KIND_HERMITE}


#: the kinks of each activation, in z = (x - u) / eta, ascending (docs/maths.rst §2)
KINKS = {name: _kinks_of(code) for name, code in ACTIVATIONS.items()}


cdef extern from "Python.h":
    unsigned long PyThread_get_thread_ident() nogil   # callable without the GIL

cdef int STOP = 0                            # set by stop_kernels(): every kernel returns
cdef unsigned long MAIN = PyThread_get_thread_ident()   # signals reach this thread only
cdef object PENDING = None                   # what a signal handler raised, for later


cdef bint signal_raised() noexcept:
    """Run the signal handlers (GIL held); keep what one raises in PENDING, so that no
    exception is set while a kernel unwinds (a lock's __exit__ would fail on it)."""
    global PENDING
    try:
        PyErr_CheckSignals()
    except BaseException as exc:
        PENDING = exc
        return True
    return False


cdef bint interrupted() noexcept nogil:
    """Whether a long kernel should stop now: stop_kernels() was called, or (on the main
    thread) a signal arrived whose handler raised (KeyboardInterrupt for Ctrl-C). Kernels
    call it every few milliseconds; raise_interrupt() raises it once they have returned."""
    if STOP:
        return True
    if PyThread_get_thread_ident() != MAIN:
        return False
    with gil:
        return signal_raised()


cdef int raise_interrupt() except -1:
    """After an interrupted kernel: raise what the signal handler raised, or
    KeyboardInterrupt when stop_kernels() stopped it."""
    global PENDING
    exc, PENDING = PENDING, None
    if exc is None:
        exc = KeyboardInterrupt("twotimescale: kernels stopped")
    raise exc


def stop_kernels(bint stop=True):
    """Make every running kernel return at its next check (a thread pool's workers, whose
    threads do not see signals), or with ``stop=False`` let them run again."""
    global STOP
    STOP = stop


def _owned(values):
    arr = np.array(values, dtype=np.float64, order="C").ravel()
    arr.setflags(write=False)
    return arr


cdef class Net:
    """A network as the kernels see it: flat ``a`` (bias first) and ``u``, coordinate by
    coordinate, ``d`` coordinates of ``m`` neurons, ``eta`` and the activation's code; or,
    by ``kind`` (KINDS), a network on Gaussian inputs (u = W by rows, d the dimension) or a
    Hermite target (a its coefficients, u = v). It copies the arrays it is given, so nothing
    the caller does later changes what a kernel reads. Built by ``twotimescale.network``,
    which validates first."""

    def __cinit__(self, a, u, double eta, int code, Py_ssize_t d=1, int kind=KIND_UNIFORM):
        cdef const double[::1] av, uv
        cdef Py_ssize_t m
        self.a = _owned(a)
        self.u = _owned(u)
        av = self.a
        uv = self.u
        m = av.shape[0] - 1
        if kind == KIND_UNIFORM:
            ok = m == uv.shape[0] and d >= 1 and uv.shape[0] % d == 0
            m = uv.shape[0] // d if ok else 0
        elif kind == KIND_GAUSSIAN:
            ok = m >= 0 and d >= 1 and uv.shape[0] == m * d
        else:
            ok = kind == KIND_HERMITE and m >= 0 and d >= 1 and uv.shape[0] == d
        if not ok:
            raise ValueError(f"Net: a of {av.shape[0]} and u of {uv.shape[0]} entries do not "
                             f"make a network of kind {kind} in d = {d}")
        self.view.a = &av[0]
        self.view.u = &uv[0] if uv.shape[0] else NULL
        self.view.d = d
        self.view.m = m
        self.view.eta = eta
        self.view.inv_eta = 1.0 / eta
        self.view.code = code
        self.view.kind = kind

    @property
    def d(self):
        return self.view.d

    @property
    def m(self):
        return self.view.m

    @property
    def eta(self):
        return self.view.eta

    @property
    def code(self):
        return self.view.code


def evaluate(Net net, const double[::1] x, double[::1] out):
    """out[i] = f(x[i]) for a univariate network, the dense sum over neurons."""
    cdef Py_ssize_t i
    cdef NetView v = net.view
    with nogil:
        for i in range(x.shape[0]):
            out[i] = network_value(v.a, v.u, v.m, v.inv_eta, v.code, x[i])


def activate(int code, const double[::1] z, double[::1] out):
    """out[i] = s(z[i]) for the activation code."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(z.shape[0]):
            out[i] = s_of(code, z[i])
