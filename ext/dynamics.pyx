# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD and mini-batch GD with two step sizes (DESIGN.md section 4), for a network on
[0, 1]^d that is additive over its coordinates (d = 1: the univariate network).

Design: the loops are compiled once per activation through the fused tag type ``act_t``
(ext/activations.pxd), so no dispatch sits inside them. One SGD step is a single pass over
the neurons (``advance``) that applies the previous step's update and evaluates the network at
the new point, so a step waits on the one before only through registers; the sum runs in
eight partial sums (j mod 8), so that it vectorises without -ffast-math (which would also
delete the NaN checks). Neurons are stored coordinate by coordinate, each block padded to a
multiple of LANES with inert neurons (a = 0, u = +inf: s = s' = 0 exactly) and aligned to a
cache line, so loops have no remainder and no result changes. Inputs and labels come a block
ahead: each step draws its counterpart in the next block, from a numpy BitGenerator through
its C interface without the GIL, so the draws overlap the step instead of adding to it; a run
is a function of its seed alone. ``sgd_lanes`` runs GROUP replicas in lockstep, one per vector
lane, each to the same bits as alone. The kernels only compute: twotimescale.dynamics checks
every argument first. The NumPy twins are in ``twotimescale.reference`` (sgd, gd,
additive_sgd).
"""
import threading

import numpy as np
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport isfinite
from libc.string cimport memcpy
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal, random_standard_uniform_fill
from activations cimport (act_t, Ramp, Smoothstep, Relu, RAMP, SMOOTHSTEP, s, s_of,
                          weighted_slope, saturated, inert)

cdef enum:
    UNIFORM = 0
    GAUSSIAN = 1
    LANES = 8           # each coordinate's neurons are padded to a multiple of LANES
    GROUP = 16          # replicas in lockstep (sgd_lanes), one per vector lane
    BLOCK = 64          # steps whose draws and labels are made ahead


ctypedef struct One:       # a univariate network: d = 1 at compile time, no coordinate loops
    char tag
ctypedef struct Many:      # an additive network on [0, 1]^d
    char tag
ctypedef fused dim_t:
    One
    Many

ctypedef struct Pending:   # advance() first applies the previous SGD step's update
    char tag
ctypedef struct Settled:   # advance() only evaluates: the parameters are current (GD)
    char tag
ctypedef fused update_t:
    Pending
    Settled


cdef struct Model:
    double *a                 # (1 + d mp,): a[0] the bias, then coordinate k at 1 + k mp
    double *u                 # (d mp,): coordinate k at k mp
    Py_ssize_t d              # coordinates
    Py_ssize_t m              # neurons per coordinate
    Py_ssize_t mp             # neurons and inert padding per coordinate
    double inv_eta
    const double *ta          # the teacher: (1 + d tm,), (d tm,), unpadded
    const double *tu
    Py_ssize_t tm
    double tinv_eta
    int tcode
    double *phi               # scratch (d mp,): s(z_j) at the current point
    double *adphi             # scratch (d mp,): a_j s'(z_j)


cdef enum:
    SORTED_BLOCK = 32


cdef struct Sorted:
    double *a                 # (m,) stored outer weights, in place order
    double *u                 # (m,) positions, ascending
    Py_ssize_t *index         # (m,) the neuron at each place
    double *offset            # (blocks,) pending offset of each block
    double *total             # (blocks,) sum of the stored weights of each block
    double *phi               # (m,) scratch: s(z) of the band
    double *adphi             # (m,) scratch: a s'(z) of the band
    double *prod              # (m,) scratch: a s(z) of the band
    Py_ssize_t m, blocks
    double bias, inv_eta


ctypedef fused model_t:     # a network for SGD: dense (padded blocks) or sorted by position
    Model
    Sorted


cdef inline Py_ssize_t coordinates(dim_t *dim, const Model *p) noexcept nogil:
    if dim_t is One:
        return 1
    else:
        return p.d


cdef inline double old_slope(act_t *kind, double a, const double *phi,
                             const double *adphi) noexcept nogil:
    """a_j s'(z_j) at the last evaluation, from the old a_j: stored in adphi, except for a
    ReLU, where s(z) > 0 exactly when z > 0 rebuilds it from phi (the same value) and saves a
    store per neuron."""
    if act_t is Relu:
        return weighted_slope(kind, a, phi[0])
    return adphi[0]


cdef inline double advance(act_t *kind, dim_t *dim, update_t *mode, Model *p, const double *x,
                          double sa, double su) noexcept nogil:
    """With ``Pending``, apply the update of the previous step, a_j -= sa phi_j,
    u_j += su adphi_j (phi_j and adphi_j = a_j s'(z_j) from that step, a_j its old value);
    then evaluate the network at x: store phi_j = s(z_j), adphi_j = a_j s'(z_j) and return
    sum_j a_j phi_j (the bias aside). The update and the evaluation share one loop, so an
    SGD step's dependency chain, r -> (sa, su) -> a_j, u_j -> z_j -> s(z_j) -> the sum -> r,
    does not go through memory. The sum runs in eight partial sums (j mod 8), one per lane
    of a block of eight neurons, so the loop vectorises without reassociation and the
    products are never stored."""
    cdef Py_ssize_t j, jb, k, d = coordinates(dim, p), mp = p.mp & ~(LANES - 1)  # no remainder
    cdef int l
    cdef double z, sz, xk, aj, uj, inv_eta = p.inv_eta
    cdef double f[8]
    cdef double *u
    cdef double *w
    cdef double *phi
    cdef double *adphi
    for l in range(8):
        f[l] = 0.0
    for k in range(d):
        xk = x[k]
        u = p.u + k * mp
        w = p.a + 1 + k * mp
        phi = p.phi + k * mp
        adphi = p.adphi + k * mp
        for jb in range(0, mp, 8):
            for l in range(8):
                j = jb + l
                if update_t is Pending:
                    aj = w[j] - sa * phi[j]
                    uj = u[j] + su * old_slope(kind, w[j], &phi[j], &adphi[j])
                    w[j] = aj
                    u[j] = uj
                else:
                    aj = w[j]
                    uj = u[j]
                z = (xk - uj) * inv_eta
                sz = s(kind, z)
                phi[j] = sz
                if act_t is not Relu or update_t is Settled:     # see old_slope
                    adphi[j] = weighted_slope(kind, aj, z)
                f[l] += aj * sz
    return ((f[0] + f[4]) + (f[1] + f[5])) + ((f[2] + f[6]) + (f[3] + f[7]))


cdef inline void teacher_values(dim_t *dim, const Model *p, const double *x, double *y,
                                Py_ssize_t n) noexcept nogil:
    """y[i] += f*(x[i]) for the n points x (n x d, by rows); the teacher's neurons outside,
    the points inside (vectorises)."""
    cdef Py_ssize_t i, k, t, d = coordinates(dim, p)
    cdef double c, v
    for i in range(n):
        y[i] += p.ta[0]
    for k in range(d):
        for t in range(k * p.tm, (k + 1) * p.tm):
            c = p.ta[t + 1]
            v = p.tu[t]
            for i in range(n):
                y[i] += c * s_of(p.tcode, (x[i * d + k] - v) * p.tinv_eta)


cdef inline void update(act_t *kind, dim_t *dim, Model *p, double sa, double su) noexcept nogil:
    """The pending update alone (see advance): a_j -= sa phi_j, u_j += su adphi_j."""
    cdef Py_ssize_t j, n = coordinates(dim, p) * (p.mp & ~(LANES - 1))
    for j in range(n):
        p.u[j] += su * old_slope(kind, p.a[j + 1], &p.phi[j], &p.adphi[j])
        p.a[j + 1] -= sa * p.phi[j]


cdef struct Sgd:
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


cdef inline void draw(dim_t *dim, Sgd *run, const Model *p, Py_ssize_t step, double *x,
                      double *y) noexcept nogil:
    """The sample of one step: x ~ U[0, 1)^d then the label noise xi, from the bit generator,
    or read from xs, xis at ``step`` (nothing past their end: those steps never run)."""
    cdef Py_ssize_t k, d = coordinates(dim, p)
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


cdef void next_block(dim_t *dim, Sgd *run, const Model *p) noexcept nogil:
    """Make the next block current: its labels become y = f*(x) + xi (vectorised over the
    block), and the block after it starts empty."""
    cdef double *swap
    teacher_values(dim, p, run.next_x, run.next_y, BLOCK)
    swap = run.cur_x
    run.cur_x = run.next_x
    run.next_x = swap
    swap = run.cur_y
    run.cur_y = run.next_y
    run.next_y = swap
    run.block_start += BLOCK
    run.pos = 0


cdef inline double sgd_step(act_t *kind, dim_t *dim, model_t *p, const double *x, double y,
                            double ca, double cu, double *sa, double *su) noexcept nogil:
    """One step of online SGD at (x, y); returns r. A dense network applies the previous step's
    update (sa, su) while it evaluates, and leaves this step's pending in (sa, su); a sorted
    one applies its own at once."""
    cdef double r
    if model_t is Model:
        p.a[0] -= sa[0]
        r = advance(kind, dim, &PENDING, p, x, sa[0], su[0]) + (p.a[0] - y)
        sa[0] = ca * r
        su[0] = cu * r
        return r
    else:
        return sorted_step(kind, p, x[0], y, ca, cu)


cdef Py_ssize_t sgd_steps(act_t *kind, dim_t *dim, model_t *p, const Model *teacher, Sgd *run,
                          Py_ssize_t n) noexcept nogil:
    """n steps of online SGD from step run.steps_done, which it advances; returns how many
    were taken (fewer if the residual became non-finite: that step is not applied). With
    r = f(x) - y and the gradients at the old values,

        a_j <- a_j - 2 h r phi_j(x)        u_j <- u_j + 2 h eps r a_j s'_j(x) / eta

    Each step also draws its counterpart in the next block: the draws overlap the step's
    dependency chain instead of adding to it."""
    cdef Py_ssize_t i, d = coordinates(dim, teacher)
    cdef double r, sa = 0.0, su = 0.0
    cdef double ca = 2.0 * run.h, cu = 2.0 * run.h * run.eps * p.inv_eta
    for i in range(n):
        if run.pos == BLOCK:
            next_block(dim, run, teacher)
        draw(dim, run, teacher, run.block_start + BLOCK + run.pos, run.next_x + run.pos * d,
             run.next_y + run.pos)
        r = sgd_step(kind, dim, p, run.cur_x + run.pos * d, run.cur_y[run.pos], ca, cu, &sa, &su)
        if not isfinite(r):              # this step is not applied; the previous one was
            run.steps_done += i
            return i
        run.pos += 1
    run.steps_done += n
    if model_t is Model:                 # the last step's update, still pending
        p.a[0] -= sa
        update(kind, dim, p, sa, su)
    return n


cdef bint all_finite(const double *v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += v[i] * 0.0      # NaN for an infinite or NaN entry
    return total == 0.0


cdef bint record(model_t *p, double *a_rec, double *u_rec) noexcept nogil:
    """Copy the state, in the neurons' own order and without padding (a sorted network's
    pending offsets read, not folded: a record must not change the run's rounding); False if
    it is not finite."""
    cdef Py_ssize_t j, k, m = p.m
    if model_t is Model:
        a_rec[0] = p.a[0]
        for k in range(p.d):
            memcpy(a_rec + 1 + k * p.m, p.a + 1 + k * p.mp, p.m * sizeof(double))
            memcpy(u_rec + k * p.m, p.u + k * p.mp, p.m * sizeof(double))
        m = p.d * p.m
    else:
        a_rec[0] = p.bias
        for j in range(m):
            a_rec[p.index[j] + 1] = p.a[j] - p.offset[j // SORTED_BLOCK]
            u_rec[p.index[j]] = p.u[j]
    return all_finite(a_rec, 1 + m) and all_finite(u_rec, m)


cdef Py_ssize_t sgd_run(act_t *kind, dim_t *dim, model_t *p, const Model *teacher,
                        Sgd *run) noexcept nogil:
    """Run to the last record step, writing the state at each one (the first is step 0);
    returns the number of records written. Stops early, after its last finite record, when
    the residual or a parameter becomes non-finite."""
    cdef Py_ssize_t k, took, want, width = 1 + teacher.d * p.m
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        took = sgd_steps(kind, dim, p, teacher, run, want)
        if took < want or not record(p, run.a_rec + k * width, run.u_rec + k * (width - 1)):
            return k
    return run.nrec


cdef Py_ssize_t gd_epoch_steps(act_t *kind, dim_t *dim, Model *p, double h, double eps,
                               const double *X, const double *Y, const Py_ssize_t *order,
                               Py_ssize_t n, Py_ssize_t batch, double *grad) noexcept nogil:
    """One epoch of mini-batch GD over X[order], Y[order] in batches of ``batch`` (the last may
    be smaller): gradient steps on the mean square over each batch, taken at the old values,

        a_j <- a_j - h (2/B) sum_i r_i phi_j(x_i)
        u_j <- u_j + h eps (2/B) (a_j / eta) sum_i r_i s'_j(x_i)

    Returns the number of batches taken (fewer if a residual became non-finite)."""
    cdef Py_ssize_t d = coordinates(dim, p), start = 0, stop, i, j, done = 0
    cdef Py_ssize_t nn = d * (p.mp & ~(LANES - 1))
    cdef double r, scale, total
    cdef double *ga = grad             # (nn,)
    cdef double *gu = grad + nn        # (nn,)
    while start < n:
        stop = start + batch if start + batch < n else n
        for j in range(2 * nn):
            grad[j] = 0.0
        total = 0.0
        for i in range(start, stop):
            r = advance(kind, dim, &SETTLED, p, X + order[i] * d, 0.0, 0.0) + (p.a[0] - Y[order[i]])
            total += r
            for j in range(nn):
                ga[j] += r * p.phi[j]
                gu[j] += r * p.adphi[j]
        if not isfinite(total):
            return done
        scale = 2.0 * h / (stop - start)
        p.a[0] -= scale * total
        for j in range(nn):
            p.u[j] += scale * eps * p.inv_eta * gu[j]
            p.a[j + 1] -= scale * ga[j]
        done += 1
        start = stop
    return done


cdef Ramp RAMP_TAG
cdef Smoothstep SMOOTHSTEP_TAG
cdef Relu RELU_TAG
cdef One ONE
cdef Many MANY
cdef Pending PENDING
cdef Settled SETTLED


cdef Py_ssize_t sgd_dispatch(dim_t *dim, int code, model_t *p, const Model *teacher,
                             Sgd *run) noexcept nogil:
    """sgd_run compiled for the activation ``code`` (d = 1 or any d, by ``dim``; dense or
    sorted, by ``model_t``), after drawing the first block."""
    first_block(dim, run, teacher)
    if code == RAMP:
        return sgd_run(&RAMP_TAG, dim, p, teacher, run)
    if code == SMOOTHSTEP:
        return sgd_run(&SMOOTHSTEP_TAG, dim, p, teacher, run)
    return sgd_run(&RELU_TAG, dim, p, teacher, run)


cdef Py_ssize_t gd_dispatch(dim_t *dim, int code, Model *p, double h, double eps,
                            const double *X, const double *Y, const Py_ssize_t *order,
                            Py_ssize_t n, Py_ssize_t batch, double *grad) noexcept nogil:
    """gd_epoch_steps compiled for the activation ``code`` and ``dim``."""
    if code == RAMP:
        return gd_epoch_steps(&RAMP_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)
    if code == SMOOTHSTEP:
        return gd_epoch_steps(&SMOOTHSTEP_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)
    return gd_epoch_steps(&RELU_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)


REPLICAS_IN_LOCKSTEP = GROUP          # sgd_lanes runs up to this many replicas at once


def cache_aligned(Py_ssize_t n, double fill):
    """n float64 entries starting on a 64-byte boundary, so that a vector of LANES doubles
    never straddles two cache lines (a stored vector then forwards to the next load)."""
    buf = np.full(n + LANES, fill)
    start = (-buf.ctypes.data % 64) // 8
    return buf[start:start + n]


cdef class Padded:
    """The parameters copied into per-coordinate blocks padded with inert neurons, and the
    scratch space; ``copy_to`` writes them back."""
    cdef double[::1] a, u, scratch
    cdef Py_ssize_t d, m, mp

    def __init__(self, const double[::1] a, const double[::1] u, Py_ssize_t d):
        cdef Py_ssize_t k
        self.d = d
        self.m = u.shape[0] // d
        self.mp = (self.m + LANES - 1) // LANES * LANES
        self.a = cache_aligned(LANES + d * self.mp, 0.0)[LANES - 1:]   # a[1:] aligned
        self.u = cache_aligned(d * self.mp, np.inf)
        self.a[0] = a[0]
        for k in range(d):
            self.a[1 + k * self.mp:1 + k * self.mp + self.m] = a[1 + k * self.m:1 + (k + 1) * self.m]
            self.u[k * self.mp:k * self.mp + self.m] = u[k * self.m:(k + 1) * self.m]
        self.scratch = cache_aligned(4 * d * self.mp, 0.0)

    def finite(self):
        """True while every parameter (padding aside) is finite."""
        cdef Py_ssize_t k
        if not all_finite(&self.a[0], 1):
            return False
        for k in range(self.d):
            if not (all_finite(&self.a[1 + k * self.mp], self.m)
                    and all_finite(&self.u[k * self.mp], self.m)):
                return False
        return True

    def copy_to(self, double[::1] a, double[::1] u):
        cdef Py_ssize_t k
        a[0] = self.a[0]
        for k in range(self.d):
            a[1 + k * self.m:1 + (k + 1) * self.m] = self.a[1 + k * self.mp:1 + k * self.mp + self.m]
            u[k * self.m:(k + 1) * self.m] = self.u[k * self.mp:k * self.mp + self.m]


cdef void teacher_init(Model *p, const double[::1] ta, const double[::1] tu, double teta,
                       int tcode, Py_ssize_t d):
    """The teacher's part of p (the labels y = f*(x) + xi are made from it)."""
    p.d = d
    p.ta = &ta[0]
    p.tu = &tu[0] if tu.shape[0] else NULL
    p.tm = tu.shape[0] // d
    p.tinv_eta = 1.0 / teta
    p.tcode = tcode


cdef void run_init(Sgd *run, double h, double eps, double noise, int noise_dist,
                   const Py_ssize_t[::1] record_steps, double *a_rec, double *u_rec):
    """Fill run's step sizes, noise and records."""
    run.h = h
    run.eps = eps
    run.noise = noise
    run.noise_dist = noise_dist
    run.record_steps = &record_steps[0]
    run.nrec = record_steps.shape[0]
    run.a_rec = a_rec
    run.u_rec = u_rec
    run.steps_done = 0
    run.total = record_steps[record_steps.shape[0] - 1]


cdef samples_init(Sgd *run, Py_ssize_t d, double *blocks, bit_generator, const double *xs,
                  const double *xis):
    """Where run's samples come from: bit_generator, or xs (steps, d) and xis when it is None,
    made a block of BLOCK steps ahead in ``blocks`` (2 BLOCK (d + 1) doubles). Returns the lock
    to hold while the run draws."""
    run.xs = xs
    run.xis = xis
    run.cur_x = blocks
    run.next_x = run.cur_x + BLOCK * d
    run.cur_y = run.next_x + BLOCK * d
    run.next_y = run.cur_y + BLOCK
    if bit_generator is None:
        run.rng = NULL
        return threading.Lock()
    run.rng = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    return bit_generator.lock


cdef void first_block(dim_t *dim, Sgd *run, const Model *p) noexcept nogil:
    """Draw the first block; the first step makes it current (see next_block)."""
    cdef Py_ssize_t i, d = coordinates(dim, p)
    for i in range(BLOCK):
        draw(dim, run, p, i, run.next_x + i * d, run.next_y + i)
    run.block_start = -BLOCK
    run.pos = BLOCK


cdef void model_init(Model *p, Padded net, double eta):
    """The network's part of p, on the padded parameters (the teacher's: teacher_init)."""
    p.d = net.d
    p.a = &net.a[0]
    p.u = &net.u[0]
    p.m = net.m
    p.mp = net.mp
    p.inv_eta = 1.0 / eta
    p.phi = &net.scratch[0]
    p.adphi = &net.scratch[net.d * net.mp]


def sgd(const double[::1] a, const double[::1] u, Py_ssize_t d, double eta, int code,
        const double[::1] ta, const double[::1] tu, double teta, int tcode,
        double h, double eps, const Py_ssize_t[::1] record_steps,
        double[:, ::1] a_rec, double[:, ::1] u_rec,
        bit_generator=None, double noise=0.0, int noise_dist=UNIFORM,
        const double[:, ::1] xs=None, const double[::1] xis=None):
    """Run SGD from (a, u) (d coordinates, flat, coordinate by coordinate) to
    record_steps[-1], writing the state at each record step into a_rec, u_rec. Draws from
    bit_generator, or reads xs (steps, d), xis when it is None.
    Returns (steps taken, records written)."""
    cdef Model p
    cdef Sgd run
    cdef Padded net = Padded(a, u, d)
    cdef double[::1] blocks = np.empty(2 * BLOCK * (d + 1))
    cdef Py_ssize_t written
    model_init(&p, net, eta)
    teacher_init(&p, ta, tu, teta, tcode, d)
    run_init(&run, h, eps, noise, noise_dist, record_steps, &a_rec[0, 0], &u_rec[0, 0])
    lock = samples_init(&run, d, &blocks[0], bit_generator,
                        &xs[0, 0] if xs is not None else NULL, &xis[0] if xis is not None else NULL)
    with lock, nogil:
        if d == 1:
            written = sgd_dispatch(&ONE, code, &p, &p, &run)
        else:
            written = sgd_dispatch(&MANY, code, &p, &p, &run)
    return run.steps_done, written


# ---- lockstep replicas: GROUP univariate replicas of one shape, one per vector lane -------
#
# One replica's step waits on the previous one (r -> update -> z -> s -> sum -> r); GROUP
# independent replicas side by side fill that wait, and their neuron loop vectorises across
# replicas. Each lane does, in the same order, exactly the arithmetic of sgd_steps on its own
# replica, draws from its own stream in the same order, and keeps the same eight partial sums
# (j mod 8; the single run's padding adds only +0.0 to them, which changes no bit), so a
# replica is the same bits in a batch as alone.

cdef struct Lanes:
    double *bias              # (GROUP,)
    double *state             # m blocks of 4 GROUP: a_j, u_j, phi_j, adphi_j of each lane
    double *drawn             # (2 BLOCK,): one lane's block of draws
    Py_ssize_t m
    double inv_eta
    bitgen_t *rng[GROUP]      # NULL for an unused lane
    bint alive[GROUP]         # a lane stops for good when it diverges
    Py_ssize_t steps[GROUP]
    Py_ssize_t written[GROUP]
    double *cur_x             # (BLOCK, GROUP): the inputs of the current block
    double *cur_y             # and their labels
    Py_ssize_t pos            # the next step's place in the block


cdef inline void lanes_advance(act_t *kind, Lanes *q, const double *x, const double *sa,
                               const double *su, double *out) noexcept nogil:
    """advance() for every lane: out[l] = sum_j a_j phi_j of lane l at x[l]. The inputs,
    step constants and partial sums sit in local arrays, which the compiler knows the state
    does not overlap, so the lane loop vectorises without run-time alias checks; it has GROUP
    iterations, too long a body to be unrolled into scalar branches."""
    cdef Py_ssize_t j, l
    cdef double aj, uj, z, sz, inv_eta = q.inv_eta
    cdef double acc[8 * GROUP]
    cdef double xl[GROUP]
    cdef double sal[GROUP]
    cdef double sul[GROUP]
    cdef double *block
    cdef double *part
    for l in range(GROUP):
        xl[l] = x[l]
        sal[l] = sa[l]
        sul[l] = su[l]
    for l in range(8 * GROUP):
        acc[l] = 0.0
    for j in range(q.m):
        block = q.state + j * 4 * GROUP
        part = acc + (j & 7) * GROUP
        for l in range(GROUP):
            aj = block[l] - sal[l] * block[2 * GROUP + l]
            uj = block[GROUP + l] + sul[l] * old_slope(kind, block[l], &block[2 * GROUP + l],
                                                       &block[3 * GROUP + l])
            block[l] = aj
            block[GROUP + l] = uj
            z = (xl[l] - uj) * inv_eta
            sz = s(kind, z)
            block[2 * GROUP + l] = sz
            if act_t is not Relu:                              # see old_slope
                block[3 * GROUP + l] = weighted_slope(kind, aj, z)
            part[l] += aj * sz
    for l in range(GROUP):
        out[l] = (((acc[l] + acc[4 * GROUP + l]) + (acc[GROUP + l] + acc[5 * GROUP + l]))
                  + ((acc[2 * GROUP + l] + acc[6 * GROUP + l]) + (acc[3 * GROUP + l] + acc[7 * GROUP + l])))


cdef void lanes_fill(Lanes *q, Sgd *run, const Model *teacher) noexcept nogil:
    """The next BLOCK samples of every used lane, each from its own stream in the order a
    single run draws them (x, then xi, step by step), and their labels y = f*(x) + xi."""
    cdef Py_ssize_t i, l
    cdef bitgen_t *rng
    cdef double *drawn = q.drawn
    for l in range(GROUP):
        rng = q.rng[l]
        if rng == NULL:
            continue
        if run.noise_dist == UNIFORM:
            random_standard_uniform_fill(rng, 2 * BLOCK, drawn)
            for i in range(BLOCK):
                q.cur_x[i * GROUP + l] = drawn[2 * i]
                q.cur_y[i * GROUP + l] = run.noise * (2.0 * drawn[2 * i + 1] - 1.0)
        else:
            for i in range(BLOCK):
                q.cur_x[i * GROUP + l] = rng.next_double(rng.state)
                q.cur_y[i * GROUP + l] = run.noise * random_standard_normal(rng)
    teacher_values(&ONE, teacher, q.cur_x, q.cur_y, BLOCK * GROUP)
    q.pos = 0


cdef Py_ssize_t lanes_steps(act_t *kind, Lanes *q, Sgd *run, const Model *teacher,
                            Py_ssize_t n) noexcept nogil:
    """n steps of every lane (sgd_steps, lane by lane); a lane whose residual is not finite
    stops there, its step count kept."""
    cdef Py_ssize_t i, j, l
    cdef double r, ca = 2.0 * run.h, cu = 2.0 * run.h * run.eps * q.inv_eta
    cdef double sa[GROUP]
    cdef double su[GROUP]
    cdef double total[GROUP]
    cdef double *block
    for l in range(GROUP):
        sa[l] = 0.0
        su[l] = 0.0
    for i in range(n):
        if q.pos == BLOCK:
            lanes_fill(q, run, teacher)
        for l in range(GROUP):
            q.bias[l] -= sa[l]
        lanes_advance(kind, q, q.cur_x + q.pos * GROUP, sa, su, total)
        for l in range(GROUP):
            r = total[l] + (q.bias[l] - q.cur_y[q.pos * GROUP + l])
            if q.alive[l] and not isfinite(r):
                q.alive[l] = False
                q.steps[l] = run.steps_done + i
            sa[l] = ca * r if q.alive[l] else 0.0
            su[l] = cu * r if q.alive[l] else 0.0
        q.pos += 1
    run.steps_done += n
    for l in range(GROUP):
        q.bias[l] -= sa[l]
    for j in range(q.m):
        block = q.state + j * 4 * GROUP
        for l in range(GROUP):
            block[GROUP + l] += su[l] * old_slope(kind, block[l], &block[2 * GROUP + l],
                                                  &block[3 * GROUP + l])
            block[l] -= sa[l] * block[2 * GROUP + l]
    return n


cdef void lanes_run(act_t *kind, Lanes *q, Sgd *run, const Model *teacher) noexcept nogil:
    """Every lane to the last record step, recording each live lane as sgd_run does."""
    cdef Py_ssize_t k, l, j, m = q.m
    cdef double *a_rec
    cdef double *u_rec
    for k in range(run.nrec):
        lanes_steps(kind, q, run, teacher, run.record_steps[k] - run.steps_done)
        for l in range(GROUP):
            if not q.alive[l]:
                continue
            a_rec = run.a_rec + (l * run.nrec + k) * (m + 1)
            u_rec = run.u_rec + (l * run.nrec + k) * m
            a_rec[0] = q.bias[l]
            for j in range(m):
                a_rec[j + 1] = q.state[j * 4 * GROUP + l]
                u_rec[j] = q.state[j * 4 * GROUP + GROUP + l]
            q.steps[l] = run.steps_done
            if all_finite(a_rec, m + 1) and all_finite(u_rec, m):
                q.written[l] = k + 1
            else:
                q.alive[l] = False


def sgd_lanes(const double[:, ::1] a, const double[:, ::1] u, double eta, int code,
              const double[::1] ta, const double[::1] tu, double teta, int tcode,
              double h, double eps, const Py_ssize_t[::1] record_steps,
              double[:, :, ::1] a_rec, double[:, :, ::1] u_rec, bit_generators,
              double noise=0.0, int noise_dist=UNIFORM):
    """Up to GROUP univariate replicas in lockstep (rows of a and u, one bit generator each),
    each exactly as sgd() runs it alone; records into a_rec, u_rec (replica, record, .).
    Returns [(steps taken, records written)] per replica."""
    cdef Py_ssize_t n = a.shape[0], m = u.shape[1], l, j
    cdef Lanes q
    cdef Sgd run
    cdef Model teacher
    cdef double[::1] state = cache_aligned(GROUP + 4 * GROUP * m + 2 * BLOCK * GROUP
                                           + 2 * BLOCK, 0.0)
    if not 1 <= n <= GROUP:
        raise ValueError(f"sgd_lanes runs 1 to {GROUP} replicas, got {n}")
    q.bias = &state[0]
    q.state = q.bias + GROUP
    q.cur_x = q.state + 4 * GROUP * m
    q.cur_y = q.cur_x + BLOCK * GROUP
    q.drawn = q.cur_y + BLOCK * GROUP
    q.m = m
    q.inv_eta = 1.0 / eta
    generators = list(bit_generators)                    # kept alive through the run
    for l in range(GROUP):
        q.alive[l] = l < n
        q.rng[l] = (<bitgen_t *> PyCapsule_GetPointer(generators[l].capsule, "BitGenerator")
                    if l < n else NULL)
        q.steps[l] = 0
        q.written[l] = 0
        if l < n:
            q.bias[l] = a[l, 0]
            for j in range(m):
                q.state[j * 4 * GROUP + l] = a[l, j + 1]
                q.state[j * 4 * GROUP + GROUP + l] = u[l, j]
    teacher_init(&teacher, ta, tu, teta, tcode, 1)
    run_init(&run, h, eps, noise, noise_dist, record_steps, &a_rec[0, 0, 0], &u_rec[0, 0, 0])
    with nogil:
        q.pos = BLOCK
        if code == RAMP:
            lanes_run(&RAMP_TAG, &q, &run, &teacher)
        elif code == SMOOTHSTEP:
            lanes_run(&SMOOTHSTEP_TAG, &q, &run, &teacher)
        else:
            lanes_run(&RELU_TAG, &q, &run, &teacher)
    return [(q.steps[l], q.written[l]) for l in range(n)]


# ---- wide networks: neurons sorted by position --------------------------------------------
#
# For a ramp or smoothstep, a neuron well left of x is saturated (s = 1, s' = 0: the step
# only does a_j -= sa) and one well right of it is inert (s = s' = 0: nothing moves). With the
# neurons sorted by position, the saturated ones are a prefix and the inert ones a suffix, so
# only the band of neurons in transition needs work of its own. The prefix is kept in blocks
# of SORTED_BLOCK places: a block wholly saturated takes the step's update as a pending
# offset (a_j = stored_j - offset_b) and answers the sum with its stored total; the step
# folds the offset into the stored weights of any block it works in, and recomputes that
# block's total. A step costs O(m / SORTED_BLOCK + SORTED_BLOCK + band) instead of O(m).
# Band neurons that pass a neighbour are moved by insertion, so the order stays sorted.

cdef inline void fold(Sorted *q, Py_ssize_t b) noexcept nogil:
    """Fold block b's pending offset into its stored weights."""
    cdef Py_ssize_t j
    cdef double off = q.offset[b]
    if off != 0.0:
        for j in range(b * SORTED_BLOCK, min((b + 1) * SORTED_BLOCK, q.m)):
            q.a[j] -= off
        q.offset[b] = 0.0


cdef inline void retotal(Sorted *q, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t j
    cdef double t = 0.0
    for j in range(b * SORTED_BLOCK, min((b + 1) * SORTED_BLOCK, q.m)):
        t += q.a[j]
    q.total[b] = t


cdef inline double band_sum(const double *v, Py_ssize_t n) noexcept nogil:
    """sum of v[:n] in eight partial sums (i mod 8), so that it vectorises."""
    cdef Py_ssize_t i
    cdef double total
    cdef double part[8]
    for i in range(8):
        part[i] = 0.0
    for i in range(n - n % 8):
        part[i & 7] += v[i]
    total = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]))
    for i in range(n - n % 8, n):
        total += v[i]
    return total


cdef inline void swap_places(Sorted *q, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    q.a[i], q.a[j] = q.a[j], q.a[i]
    q.u[i], q.u[j] = q.u[j], q.u[i]
    q.index[i], q.index[j] = q.index[j], q.index[i]


cdef double sorted_step(act_t *kind, Sorted *q, double x, double y, double ca,
                        double cu) noexcept nogil:
    """One SGD step at the sample (x, y); returns r (the step is not applied if r is not
    finite)."""
    cdef Py_ssize_t lo = 0, hi = q.m, mid, j, k, b, first, last, full
    cdef double z, sz, f, r, sa, su
    while lo < hi:                                # first place that is not saturated
        mid = (lo + hi) // 2
        if saturated(kind, (x - q.u[mid]) * q.inv_eta):
            lo = mid + 1
        else:
            hi = mid
    full = lo // SORTED_BLOCK                     # blocks [0, full) are wholly saturated
    hi = lo                                       # the band: places [lo, hi)
    while hi < q.m and not inert(kind, (x - q.u[hi]) * q.inv_eta):
        hi += 1
    first = full
    last = min(hi // SORTED_BLOCK, q.blocks - 1)  # blocks the step works in (and a neighbour)
    for b in range(first, last + 1):
        fold(q, b)
    f = 0.0
    for b in range(full):
        f += q.total[b] - SORTED_BLOCK * q.offset[b]
    for j in range(full * SORTED_BLOCK, lo):
        f += q.a[j]
    for j in range(lo, hi):                       # the band: vectorised, its products
        z = (x - q.u[j]) * q.inv_eta              # summed in eight partial sums below
        sz = s(kind, z)
        q.phi[j] = sz
        q.adphi[j] = weighted_slope(kind, q.a[j], z)
        q.prod[j] = q.a[j] * sz
    f += band_sum(q.prod + lo, hi - lo)
    r = f + (q.bias - y)
    if not isfinite(r):
        return r
    sa = ca * r
    su = cu * r
    q.bias -= sa
    for b in range(full):
        q.offset[b] += sa
    for j in range(full * SORTED_BLOCK, lo):
        q.a[j] -= sa
    for j in range(lo, hi):
        q.a[j] -= sa * q.phi[j]
        q.u[j] += su * q.adphi[j]
    j = lo                                        # keep the order: insertion sort from the
    while j < q.m and (j < hi or (j > 0 and q.u[j] < q.u[j - 1])):  # band on; the rest was sorted
        k = j
        while k > 0 and q.u[k - 1] > q.u[k]:
            fold(q, (k - 1) // SORTED_BLOCK)
            fold(q, k // SORTED_BLOCK)
            first = min(first, (k - 1) // SORTED_BLOCK)
            last = max(last, k // SORTED_BLOCK)
            swap_places(q, k - 1, k)
            k -= 1
        j += 1
    for b in range(first, last + 1):
        retotal(q, b)
    return r


def sgd_sorted(const double[::1] a, const double[::1] u, double eta, int code,
               const double[::1] ta, const double[::1] tu, double teta, int tcode,
               double h, double eps, const Py_ssize_t[::1] record_steps,
               double[:, ::1] a_rec, double[:, ::1] u_rec, bit_generator=None,
               double noise=0.0, int noise_dist=UNIFORM, const double[:, ::1] xs=None,
               const double[::1] xis=None):
    """sgd() for a univariate ramp or smoothstep network, its neurons kept sorted by
    position (for wide networks). Returns (steps taken, records written)."""
    cdef Py_ssize_t m = u.shape[0], j, written
    cdef Sorted q
    cdef Sgd run
    cdef Model teacher
    cdef Py_ssize_t[::1] index = np.argsort(u, kind="stable")
    cdef double[::1] work = np.zeros(5 * m + 2 * ((m + SORTED_BLOCK - 1) // SORTED_BLOCK)
                                     + 4 * BLOCK)
    if code != RAMP and code != SMOOTHSTEP:
        raise ValueError("sgd_sorted: only ramp and smoothstep networks saturate")
    q.m = m
    q.blocks = (m + SORTED_BLOCK - 1) // SORTED_BLOCK
    q.a = &work[0]
    q.u = q.a + m
    q.phi = q.u + m
    q.adphi = q.phi + m
    q.prod = q.adphi + m
    q.offset = q.prod + m
    q.total = q.offset + q.blocks
    q.index = &index[0]
    q.bias = a[0]
    q.inv_eta = 1.0 / eta
    for j in range(m):
        q.a[j] = a[index[j] + 1]
        q.u[j] = u[index[j]]
    for j in range(q.blocks):
        retotal(&q, j)
    teacher_init(&teacher, ta, tu, teta, tcode, 1)
    run_init(&run, h, eps, noise, noise_dist, record_steps, &a_rec[0, 0], &u_rec[0, 0])
    lock = samples_init(&run, 1, q.total + q.blocks, bit_generator,
                        &xs[0, 0] if xs is not None else NULL, &xis[0] if xis is not None else NULL)
    with lock, nogil:
        written = sgd_dispatch(&ONE, code, &q, &teacher, &run)
    return run.steps_done, written


def gd_epoch(Padded net, double eta, int code, double h, double eps,
             const double[:, ::1] X, const double[::1] Y, const Py_ssize_t[::1] order,
             Py_ssize_t batch):
    """One epoch of mini-batch GD on the padded parameters, in place (X of shape (n, d));
    returns the batches taken. The caller keeps ``net`` across epochs and copies out with
    ``net.copy_to`` when it records."""
    cdef Model p
    cdef double *grad = &net.scratch[2 * net.d * net.mp]
    cdef Py_ssize_t n = order.shape[0], done
    model_init(&p, net, eta)                   # no teacher: Y is given
    with nogil:
        if net.d == 1:
            done = gd_dispatch(&ONE, code, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch, grad)
        else:
            done = gd_dispatch(&MANY, code, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch, grad)
    return done
