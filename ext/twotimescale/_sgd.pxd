# cython: language_level=3
"""What the three SGD kernels share (docs/maths.rst §4; docs/architecture.rst, "Kernels"):
the run's settings and its samples, drawn a block ahead; the pending update; the tree that
adds eight partial sums.

Design: sgd_dense.pyx (every neuron every step, any d; and mini-batch GD), sgd_lockstep.pyx
(GROUP univariate replicas, one per vector lane) and sgd_sorted.pyx (wide ramp or smoothstep
networks, neurons sorted by position) each keep their own layout of the parameters and their
own step, and take from here the samples (``Sgd``, ``next_sample``) and the arithmetic that
must be the same bits in all three (``old_slope``, ``tree8``). Everything here is inline:
it sits in the hot loops.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.string cimport memcpy
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal
from ._activations cimport act_t, Relu, s_of, weighted_slope
from ._network cimport NetView

cdef enum:
    UNIFORM = 0         # the label-noise codes (NOISE in sgd_dense.pyx)
    GAUSSIAN = 1
    LANES = 8           # dense: each coordinate's neurons are padded to a multiple of LANES
    GROUP = 16          # lockstep: replicas in lockstep, one per vector lane
    BLOCK = 64          # steps whose draws and labels are made ahead
    CHECK = 1 << 18     # steps between checks for an interrupt (milliseconds of work)


ctypedef struct One:       # a univariate network: d = 1 at compile time, no coordinate loops
    char tag
ctypedef struct Many:      # an additive network on [0, 1]^d
    char tag
ctypedef fused dim_t:
    One
    Many


cdef struct Sgd:
    # one run: its settings, its records, and its samples a block ahead
    NetView teacher           # labels y = f*(x) + xi
    double h, eps, noise
    int noise_dist
    bitgen_t *rng             # NULL: read the draws from xs, xis instead
    const double *xs          # (steps, d)
    const double *xis
    const Py_ssize_t *record_steps
    Py_ssize_t nrec
    double *a_rec             # (nrec, 1 + d m)
    double *u_rec             # (nrec, d m)
    Py_ssize_t steps_done
    Py_ssize_t total          # steps of the whole run
    double *cur_x             # (BLOCK, d): the inputs of the current block, and their
    double *cur_y             # labels y = f*(x) + xi
    double *next_x            # the next block, drawn one step at a time: x, and xi alone
    double *next_y
    Py_ssize_t block_start    # the step of the current block's first sample
    Py_ssize_t pos            # the next step's place in the current block
    bint interrupted          # the run stopped at a check (_network.interrupted)


cdef inline Py_ssize_t coordinates(dim_t *dim, const NetView *net) noexcept nogil:
    if dim_t is One:
        return 1
    else:
        return net.d


cdef inline double tree8(const double *f, Py_ssize_t stride) noexcept nogil:
    """f[0] + ... + f[7] (entries ``stride`` apart) in the one order every SGD kernel uses,
    ((f0 + f4) + (f1 + f5)) + ((f2 + f6) + (f3 + f7)), so that a replica is the same bits in
    every kernel."""
    return (((f[0] + f[4 * stride]) + (f[stride] + f[5 * stride]))
            + ((f[2 * stride] + f[6 * stride]) + (f[3 * stride] + f[7 * stride])))


cdef inline double old_slope(act_t *kind, double a, const double *phi,
                             const double *adphi) noexcept nogil:
    """a_j s'(z_j) at the last evaluation, from the old a_j, for the pending update: stored
    in adphi, except for a ReLU, where s(z) > 0 exactly when z > 0 rebuilds it from phi (the
    same value) and saves a store per neuron."""
    if act_t is Relu:
        return weighted_slope(kind, a, phi[0])
    return adphi[0]


cdef inline void teacher_values(dim_t *dim, const NetView *t, const double *x, double *y,
                                Py_ssize_t n) noexcept nogil:
    """y[i] += f*(x[i]) for the n points x (n x d, by rows); the teacher's neurons outside,
    the points inside (vectorises: the teacher's fields are read into locals first, since a
    store to y could otherwise alias them)."""
    cdef Py_ssize_t i, k, j, d = coordinates(dim, t), m = t.m
    cdef int code = t.code
    cdef double c, v, inv_eta = t.inv_eta, bias = t.a[0]
    cdef const double *a = t.a
    cdef const double *u = t.u
    for i in range(n):
        y[i] += bias
    for k in range(d):
        for j in range(k * m, (k + 1) * m):
            c = a[j + 1]
            v = u[j]
            for i in range(n):
                y[i] += c * s_of(code, (x[i * d + k] - v) * inv_eta)


cdef inline void draw(dim_t *dim, Sgd *run, Py_ssize_t step, double *x, double *y) noexcept nogil:
    """The sample of one step: x ~ U[0, 1)^d then the label noise xi, from the bit generator,
    or read from xs, xis at ``step`` (nothing past their end: those steps never run)."""
    cdef Py_ssize_t k, d = coordinates(dim, &run.teacher)
    cdef bitgen_t *rng = run.rng
    if rng == NULL:
        if step < run.total:
            memcpy(x, run.xs + step * d, d * sizeof(double))
            y[0] = run.xis[step]
        return
    for k in range(d):
        x[k] = rng.next_double(rng.state)
    if run.noise_dist == UNIFORM:
        y[0] = run.noise * (2.0 * rng.next_double(rng.state) - 1.0)
    else:
        y[0] = run.noise * random_standard_normal(rng)


cdef inline void first_block(dim_t *dim, Sgd *run) noexcept nogil:
    """Draw the first block; the first step makes it current (see next_sample)."""
    cdef Py_ssize_t i, d = coordinates(dim, &run.teacher)
    for i in range(BLOCK):
        draw(dim, run, i, run.next_x + i * d, run.next_y + i)
    run.block_start = -BLOCK
    run.pos = BLOCK


cdef inline Py_ssize_t next_sample(dim_t *dim, Sgd *run) noexcept nogil:
    """The place in the current block of the next step's sample (x at cur_x + place d, y at
    cur_y + place); the caller advances run.pos once the step is taken. At the end of a block
    the next one becomes current, its labels y = f*(x) + xi made for the whole block at once.
    Each step also draws its counterpart in the block after, so the draws overlap the steps'
    dependency chains instead of adding to them."""
    cdef double *swap
    cdef Py_ssize_t d = coordinates(dim, &run.teacher)
    if run.pos == BLOCK:
        teacher_values(dim, &run.teacher, run.next_x, run.next_y, BLOCK)
        swap = run.cur_x
        run.cur_x = run.next_x
        run.next_x = swap
        swap = run.cur_y
        run.cur_y = run.next_y
        run.next_y = swap
        run.block_start += BLOCK
        run.pos = 0
    draw(dim, run, run.block_start + BLOCK + run.pos, run.next_x + run.pos * d,
         run.next_y + run.pos)
    return run.pos


cdef inline void run_init(Sgd *run, const NetView *teacher, double h, double eps, double noise,
                          int noise_dist, const Py_ssize_t *record_steps, Py_ssize_t nrec,
                          double *a_rec, double *u_rec) noexcept nogil:
    """Fill run's teacher, step sizes, noise and records."""
    run.teacher = teacher[0]
    run.h = h
    run.eps = eps
    run.noise = noise
    run.noise_dist = noise_dist
    run.record_steps = record_steps
    run.nrec = nrec
    run.a_rec = a_rec
    run.u_rec = u_rec
    run.steps_done = 0
    run.total = record_steps[nrec - 1]
    run.interrupted = False


cdef inline object samples_init(Sgd *run, double *blocks, bit_generator, const double *xs,
                                const double *xis):
    """Where run's samples come from: bit_generator, or xs (steps, d) and xis when it is
    None, made a block of BLOCK steps ahead in ``blocks`` (2 BLOCK (d + 1) doubles). Returns
    the lock to hold while the run draws (a fresh one when nothing is drawn)."""
    cdef Py_ssize_t d = run.teacher.d
    run.xs = xs
    run.xis = xis
    run.cur_x = blocks
    run.next_x = run.cur_x + BLOCK * d
    run.cur_y = run.next_x + BLOCK * d
    run.next_y = run.cur_y + BLOCK
    if bit_generator is None:
        run.rng = NULL
        import threading
        return threading.Lock()
    run.rng = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    return bit_generator.lock


cdef inline object cache_aligned(Py_ssize_t n, double fill):
    """n float64 entries starting on a 64-byte boundary, so that a vector of LANES doubles
    never straddles two cache lines (a stored vector then forwards to the next load)."""
    import numpy
    buf = numpy.full(n + LANES, fill)
    start = (-buf.ctypes.data % 64) // 8
    return buf[start:start + n]
