# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD and mini-batch GD, every neuron every step (docs/maths.rst §4.1-4.2, §4.4), for
a network on [0, 1]^d that is additive over its coordinates (d = 1: the univariate network).

Design: the loops are compiled once per activation through the fused tag type ``act_t``
(activations.pxd), and for d = 1 or any d through ``dim_t`` (sgd.pxd), so no dispatch sits
inside them. One SGD step is a single pass over the neurons (``advance``) that applies the
previous step's update and evaluates the network at the new point, so a step waits on the one
before only through registers; the sum runs in eight partial sums (j mod 8), so that it
vectorises without -ffast-math (which would also delete the NaN checks). Neurons are stored
coordinate by coordinate, each block padded to a multiple of LANES with inert neurons
(a = 0, u = +inf: s = s' = 0 exactly) and aligned to a cache line, so loops have no
remainder and no result changes. Samples come a block ahead (sgd.pxd). GD evaluates the same
way, with nothing pending (``Settled``), and sums the batch's gradient. The kernels only
compute: twotimescale.dynamics checks every argument first. The NumPy twins are
``twotimescale.reference.sgd``, ``gd``, ``additive_sgd`` and ``additive_gd``.
"""
import numpy as np
from libc.math cimport isfinite
from libc.string cimport memcpy
from ._activations cimport act_t, Ramp, Smoothstep, Relu, RAMP, SMOOTHSTEP, s, weighted_slope
from ._common cimport all_finite
from ._network cimport Net, NetView, interrupted, raise_interrupt
from ._sgd cimport (Sgd, One, Many, dim_t, UNIFORM, GAUSSIAN, LANES, BLOCK, CHECK, coordinates,
                   tree8, old_slope, first_block, next_sample, run_init, samples_init,
                   cache_aligned)

#: label-noise name -> the code the kernels use (sgd.pxd): the one table of them
NOISE = {"uniform": UNIFORM, "gaussian": GAUSSIAN}

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
    double *phi               # scratch (d mp,): s(z_j) at the current point
    double *adphi             # scratch (d mp,): a_j s'(z_j)


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
    cdef Py_ssize_t j, jb, k, d = p.d if dim_t is Many else 1
    cdef Py_ssize_t mp = p.mp & ~(LANES - 1)      # no remainder
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
    return tree8(f, 1)


cdef inline void update(act_t *kind, Model *p, double sa, double su) noexcept nogil:
    """The pending update alone (see advance): a_j -= sa phi_j, u_j += su adphi_j."""
    cdef Py_ssize_t j, n = p.d * (p.mp & ~(LANES - 1))
    for j in range(n):
        p.u[j] += su * old_slope(kind, p.a[j + 1], &p.phi[j], &p.adphi[j])
        p.a[j + 1] -= sa * p.phi[j]


cdef Pending PENDING
cdef Settled SETTLED


cdef Py_ssize_t sgd_steps(act_t *kind, dim_t *dim, Model *p, Sgd *run,
                          Py_ssize_t n) noexcept nogil:
    """n steps of online SGD from step run.steps_done, which it advances; returns how many
    were taken (fewer if the residual became non-finite: that step is not applied). With
    r = f(x) - y and the gradients at the old values,

        a_j <- a_j - 2 h r phi_j(x)        u_j <- u_j + 2 h eps r a_j s'_j(x) / eta

    Each step applies the previous step's update while it evaluates (advance) and leaves its
    own pending in (sa, su) for the next."""
    cdef Py_ssize_t i, k, d = coordinates(dim, &run.teacher)
    cdef double r, sa = 0.0, su = 0.0
    cdef double ca = 2.0 * run.h, cu = 2.0 * run.h * run.eps * p.inv_eta
    for i in range(n):
        k = next_sample(dim, run)
        if k == 0 and run.block_start % CHECK == 0 and interrupted():
            run.interrupted = True       # the run is abandoned: its pending update too
            run.steps_done += i
            return i
        p.a[0] -= sa
        r = advance(kind, dim, &PENDING, p, run.cur_x + k * d, sa, su) + (p.a[0] - run.cur_y[k])
        if not isfinite(r):              # this step is not applied; the previous one was
            run.steps_done += i
            return i
        sa = ca * r
        su = cu * r
        run.pos += 1
    run.steps_done += n
    p.a[0] -= sa                         # the last step's update, still pending
    update(kind, p, sa, su)
    return n


cdef bint record(const Model *p, double *a_rec, double *u_rec) noexcept nogil:
    """Copy the state, in the neurons' own order and without padding; False if it is not
    finite."""
    cdef Py_ssize_t k
    a_rec[0] = p.a[0]
    for k in range(p.d):
        memcpy(a_rec + 1 + k * p.m, p.a + 1 + k * p.mp, p.m * sizeof(double))
        memcpy(u_rec + k * p.m, p.u + k * p.mp, p.m * sizeof(double))
    return all_finite(a_rec, 1 + p.d * p.m) and all_finite(u_rec, p.d * p.m)


cdef Py_ssize_t sgd_run(act_t *kind, dim_t *dim, Model *p, Sgd *run) noexcept nogil:
    """Run to the last record step, writing the state at each one (the first is step 0);
    returns the number of records written. Stops early, after its last finite record, when
    the residual or a parameter becomes non-finite."""
    cdef Py_ssize_t k, took, want, width = 1 + p.d * p.m
    first_block(dim, run)
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        took = sgd_steps(kind, dim, p, run, want)
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
    cdef Py_ssize_t d = p.d if dim_t is Many else 1, start = 0, stop, i, j, done = 0
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


cdef Py_ssize_t sgd_dispatch(dim_t *dim, int code, Model *p, Sgd *run) noexcept nogil:
    """sgd_run compiled for the activation ``code``."""
    if code == RAMP:
        return sgd_run(&RAMP_TAG, dim, p, run)
    if code == SMOOTHSTEP:
        return sgd_run(&SMOOTHSTEP_TAG, dim, p, run)
    return sgd_run(&RELU_TAG, dim, p, run)


cdef Py_ssize_t gd_dispatch(dim_t *dim, int code, Model *p, double h, double eps,
                            const double *X, const double *Y, const Py_ssize_t *order,
                            Py_ssize_t n, Py_ssize_t batch, double *grad) noexcept nogil:
    """gd_epoch_steps compiled for the activation ``code``."""
    if code == RAMP:
        return gd_epoch_steps(&RAMP_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)
    if code == SMOOTHSTEP:
        return gd_epoch_steps(&SMOOTHSTEP_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)
    return gd_epoch_steps(&RELU_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)


cdef class Padded:
    """A network's parameters copied into per-coordinate blocks padded with inert neurons,
    and the scratch space of a step; ``copy_to`` writes them back. GD keeps one across
    epochs."""
    cdef double[::1] a, u, scratch
    cdef Py_ssize_t d, m, mp, code
    cdef double eta

    def __init__(self, Net net):
        cdef Py_ssize_t k, d = net.view.d, m = net.view.m
        cdef const double[::1] a = net.a
        cdef const double[::1] u = net.u
        self.d = d
        self.m = m
        self.mp = (m + LANES - 1) // LANES * LANES
        self.eta = net.view.eta
        self.code = net.view.code
        self.a = cache_aligned(LANES + d * self.mp, 0.0)[LANES - 1:]   # a[1:] aligned
        self.u = cache_aligned(d * self.mp, np.inf)
        self.a[0] = a[0]
        for k in range(d):
            self.a[1 + k * self.mp:1 + k * self.mp + m] = a[1 + k * m:1 + (k + 1) * m]
            self.u[k * self.mp:k * self.mp + m] = u[k * m:(k + 1) * m]
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


cdef inline void model_of(Padded params, Model *p) noexcept:
    """p <- the padded parameters and scratch (a plain function, not a method: inlined, it
    lets the compiler see that nothing else holds p)."""
    p.d = params.d
    p.a = &params.a[0]
    p.u = &params.u[0]
    p.m = params.m
    p.mp = params.mp
    p.inv_eta = 1.0 / params.eta
    p.phi = &params.scratch[0]
    p.adphi = &params.scratch[params.d * params.mp]


def sgd(Net net, Net teacher, *, double h, double eps, const Py_ssize_t[::1] record_steps,
        double[:, ::1] a_rec, double[:, ::1] u_rec, bit_generator=None, double noise=0.0,
        int noise_dist=UNIFORM, const double[:, ::1] xs=None, const double[::1] xis=None):
    """Run SGD from the network to record_steps[-1], writing the state at each record step
    into a_rec, u_rec (flat, as Net). Draws from bit_generator, or reads xs (steps, d), xis
    when it is None. Returns (steps taken, records written)."""
    cdef Model p
    cdef Sgd run
    cdef Padded params = Padded(net)
    cdef double[::1] blocks = np.empty(2 * BLOCK * (net.view.d + 1))
    cdef Py_ssize_t written
    model_of(params, &p)
    run_init(&run, &teacher.view, h, eps, noise, noise_dist, &record_steps[0],
             record_steps.shape[0], &a_rec[0, 0], &u_rec[0, 0])
    lock = samples_init(&run, &blocks[0], bit_generator,
                        &xs[0, 0] if xs is not None else NULL, &xis[0] if xis is not None else NULL)
    with lock, nogil:
        if p.d == 1:
            written = sgd_dispatch(&ONE, params.code, &p, &run)
        else:
            written = sgd_dispatch(&MANY, params.code, &p, &run)
    if run.interrupted:
        raise_interrupt()
    return run.steps_done, written


def gd_epoch(Padded params, double h, double eps, const double[:, ::1] X,
             const double[::1] Y, const Py_ssize_t[::1] order, Py_ssize_t batch, /):
    """One epoch of mini-batch GD on the padded parameters, in place (X of shape (n, d));
    returns the batches taken. Positional: it is called once per epoch. The caller keeps ``params`` across epochs and copies out with
    ``params.copy_to`` when it records."""
    cdef Model p
    cdef double *grad = &params.scratch[2 * params.d * params.mp]
    cdef Py_ssize_t n = order.shape[0], done
    model_of(params, &p)
    with nogil:
        if p.d == 1:
            done = gd_dispatch(&ONE, params.code, &p, h, eps, &X[0, 0], &Y[0], &order[0], n,
                               batch, grad)
        else:
            done = gd_dispatch(&MANY, params.code, &p, h, eps, &X[0, 0], &Y[0], &order[0], n,
                               batch, grad)
    return done
