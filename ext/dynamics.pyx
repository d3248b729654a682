# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD and mini-batch GD with two step sizes (DESIGN.md section 4), for a network on
[0, 1]^d that is additive over its coordinates (d = 1: the univariate network).

Design: one step is a forward pass that stores s(z_j) and s'(z_j), then the update of every
parameter from the old values. The loops are compiled once per activation through the fused
tag type ``act_t`` (ext/activations.pxd), so no dispatch sits inside them. Neurons are stored
coordinate by coordinate, each block padded to a multiple of LANES with inert neurons
(a = 0, u = +inf: s = s' = 0 exactly), so loops have no remainder and no result changes; the
forward sum runs in eight partial sums (j mod 8), so that it vectorises without -ffast-math
(which would also delete the NaN checks). Inputs and labels are made BLOCK steps ahead, off
the step-to-step dependency chain, from a numpy BitGenerator through its C interface,
without the GIL: a run is a function of its seed alone. The kernels only compute:
twotimescale.dynamics checks every argument first. The NumPy twins are in
``twotimescale.reference`` (sgd, gd, additive_sgd).
"""
import threading

import numpy as np
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport isfinite
from libc.string cimport memcpy
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal
from activations cimport act_t, Ramp, Smoothstep, Relu, RAMP, SMOOTHSTEP, s, ds, s_of

cdef enum:
    UNIFORM = 0
    GAUSSIAN = 1
    LANES = 8           # each coordinate's neurons are padded to a multiple of LANES
    BLOCK = 64          # steps whose draws and labels are made ahead


ctypedef struct One:       # a univariate network: d = 1 at compile time, no coordinate loops
    char tag
ctypedef struct Many:      # an additive network on [0, 1]^d
    char tag
ctypedef fused dim_t:
    One
    Many


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
    double *dphi              # scratch (d mp,): s'(z_j)


cdef inline Py_ssize_t coordinates(dim_t *dim, const Model *p) noexcept nogil:
    if dim_t is One:
        return 1
    else:
        return p.d


cdef inline double forward(act_t *kind, dim_t *dim, const Model *p, const double *x) noexcept nogil:
    """f(x) for x in [0, 1]^d, storing s(z_j) and s'(z_j); the sum in eight partial sums,
    over j mod 8, so that it vectorises (and its dependency chain is short) without
    reassociation."""
    cdef Py_ssize_t j, k, d = coordinates(dim, p), mp = p.mp & ~(LANES - 1)  # no remainder
    cdef Py_ssize_t n = d * mp
    cdef double z, xk, inv_eta = p.inv_eta
    cdef double f0 = 0.0, f1 = 0.0, f2 = 0.0, f3 = 0.0, f4 = 0.0, f5 = 0.0, f6 = 0.0, f7 = 0.0
    cdef const double *u
    cdef double *phi
    cdef double *dphi
    cdef const double *w = p.a + 1
    for k in range(d):
        xk = x[k]
        u = p.u + k * mp
        phi = p.phi + k * mp
        dphi = p.dphi + k * mp
        for j in range(mp):
            z = (xk - u[j]) * inv_eta
            phi[j] = s(kind, z)
            dphi[j] = ds(kind, z)
    phi = p.phi
    for j in range(0, n, 8):
        f0 += w[j] * phi[j]
        f1 += w[j + 1] * phi[j + 1]
        f2 += w[j + 2] * phi[j + 2]
        f3 += w[j + 3] * phi[j + 3]
        f4 += w[j + 4] * phi[j + 4]
        f5 += w[j + 5] * phi[j + 5]
        f6 += w[j + 6] * phi[j + 6]
        f7 += w[j + 7] * phi[j + 7]
    return p.a[0] + (((f0 + f4) + (f1 + f5)) + ((f2 + f6) + (f3 + f7)))


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


cdef inline void update(dim_t *dim, Model *p, double step_a, double step_u) noexcept nogil:
    """a_j <- a_j - step_a phi_j, u_j <- u_j + step_u a_j s'_j (old a_j), for every neuron."""
    cdef Py_ssize_t j, n = coordinates(dim, p) * (p.mp & ~(LANES - 1))
    cdef double aj
    cdef double *w = p.a + 1
    cdef double *u = p.u
    cdef const double *phi = p.phi
    cdef const double *dphi = p.dphi
    p.a[0] -= step_a
    for j in range(n):
        aj = w[j]
        w[j] = aj - step_a * phi[j]
        u[j] += step_u * aj * dphi[j]


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


cdef void draw(dim_t *dim, Sgd *run, const Model *p, double *x, double *y,
               Py_ssize_t n) noexcept nogil:
    """The next n inputs x ~ U[0, 1)^d and labels y = f*(x) + xi: x_1..x_d then xi each
    step, from the bit generator, or read from xs, xis."""
    cdef Py_ssize_t i, k, d = coordinates(dim, p)
    cdef bitgen_t *rng = run.rng
    if rng == NULL:
        memcpy(x, run.xs + run.steps_done * d, n * d * sizeof(double))
        memcpy(y, run.xis + run.steps_done, n * sizeof(double))
    else:
        for i in range(n):
            for k in range(d):
                x[i * d + k] = rng.next_double(rng.state)
            if run.noise_dist == UNIFORM:
                y[i] = run.noise * (2.0 * rng.next_double(rng.state) - 1.0)
            else:
                y[i] = run.noise * random_standard_normal(rng)
    teacher_values(dim, p, x, y, n)


cdef Py_ssize_t sgd_steps(act_t *kind, dim_t *dim, Model *p, Sgd *run, Py_ssize_t n,
                          double *xs) noexcept nogil:
    """n steps of online SGD from step run.steps_done, which it advances; returns how many
    were taken (fewer if the residual became non-finite: that step is not applied). With
    r = f(x) - y and the gradients at the old values,

        a_j <- a_j - 2 h r phi_j(x)        u_j <- u_j + 2 h eps r a_j s'_j(x) / eta

    xs: scratch for BLOCK inputs."""
    cdef Py_ssize_t i, b, taken = 0
    cdef double r, step_a
    cdef double ys[BLOCK]
    while taken < n:
        b = n - taken if n - taken < BLOCK else BLOCK
        draw(dim, run, p, xs, ys, b)
        for i in range(b):
            r = forward(kind, dim, p, xs + i * coordinates(dim, p)) - ys[i]
            if not isfinite(r):
                run.steps_done += i
                return taken + i
            step_a = 2.0 * run.h * r
            update(dim, p, step_a, step_a * run.eps * p.inv_eta)
        taken += b
        run.steps_done += b
    return taken


cdef bint all_finite(const double *v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += v[i] * 0.0      # NaN for an infinite or NaN entry
    return total == 0.0


cdef bint record(const Model *p, double *a_rec, double *u_rec) noexcept nogil:
    """Copy the state, without its padding; False if it is not finite."""
    cdef Py_ssize_t k
    a_rec[0] = p.a[0]
    for k in range(p.d):
        memcpy(a_rec + 1 + k * p.m, p.a + 1 + k * p.mp, p.m * sizeof(double))
        memcpy(u_rec + k * p.m, p.u + k * p.mp, p.m * sizeof(double))
    return all_finite(a_rec, 1 + p.d * p.m) and all_finite(u_rec, p.d * p.m)


cdef Py_ssize_t sgd_run(act_t *kind, dim_t *dim, Model *p, Sgd *run, double *xs) noexcept nogil:
    """Run to the last record step, writing the state at each one (the first is step 0);
    returns the number of records written. Stops early, after its last finite record, when
    the residual or a parameter becomes non-finite."""
    cdef Py_ssize_t k, took, want, width = 1 + p.d * p.m
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        took = sgd_steps(kind, dim, p, run, want, xs)
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
            r = forward(kind, dim, p, X + order[i] * d) - Y[order[i]]
            total += r
            for j in range(nn):
                ga[j] += r * p.phi[j]
                gu[j] += r * p.dphi[j]
        if not isfinite(total):
            return done
        scale = 2.0 * h / (stop - start)
        p.a[0] -= scale * total
        for j in range(nn):
            p.u[j] += scale * eps * p.inv_eta * p.a[j + 1] * gu[j]
            p.a[j + 1] -= scale * ga[j]
        done += 1
        start = stop
    return done


cdef Ramp RAMP_TAG
cdef Smoothstep SMOOTHSTEP_TAG
cdef Relu RELU_TAG
cdef One ONE
cdef Many MANY


cdef Py_ssize_t sgd_dispatch(dim_t *dim, int code, Model *p, Sgd *run, double *xs) noexcept nogil:
    """sgd_run compiled for the activation ``code`` (and for d = 1 or any d, by ``dim``)."""
    if code == RAMP:
        return sgd_run(&RAMP_TAG, dim, p, run, xs)
    if code == SMOOTHSTEP:
        return sgd_run(&SMOOTHSTEP_TAG, dim, p, run, xs)
    return sgd_run(&RELU_TAG, dim, p, run, xs)


cdef Py_ssize_t gd_dispatch(dim_t *dim, int code, Model *p, double h, double eps,
                            const double *X, const double *Y, const Py_ssize_t *order,
                            Py_ssize_t n, Py_ssize_t batch, double *grad) noexcept nogil:
    """gd_epoch_steps compiled for the activation ``code`` and ``dim``."""
    if code == RAMP:
        return gd_epoch_steps(&RAMP_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)
    if code == SMOOTHSTEP:
        return gd_epoch_steps(&SMOOTHSTEP_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)
    return gd_epoch_steps(&RELU_TAG, dim, p, h, eps, X, Y, order, n, batch, grad)


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
        self.a = np.zeros(1 + d * self.mp)
        self.u = np.full(d * self.mp, np.inf)
        self.a[0] = a[0]
        for k in range(d):
            self.a[1 + k * self.mp:1 + k * self.mp + self.m] = a[1 + k * self.m:1 + (k + 1) * self.m]
            self.u[k * self.mp:k * self.mp + self.m] = u[k * self.m:(k + 1) * self.m]
        self.scratch = np.zeros(4 * d * self.mp + 1)

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


cdef void model_init(Model *p, Padded net, double eta, const double[::1] ta,
                     const double[::1] tu, double teta, int tcode):
    p.a = &net.a[0]
    p.u = &net.u[0]
    p.d = net.d
    p.m = net.m
    p.mp = net.mp
    p.inv_eta = 1.0 / eta
    p.ta = &ta[0]
    p.tu = &tu[0] if tu.shape[0] else NULL
    p.tm = tu.shape[0] // net.d
    p.tinv_eta = 1.0 / teta
    p.tcode = tcode
    p.phi = &net.scratch[0]
    p.dphi = &net.scratch[net.d * net.mp]


def sgd(double[::1] a, double[::1] u, Py_ssize_t d, double eta, int code,
        const double[::1] ta, const double[::1] tu, double teta, int tcode,
        double h, double eps, const Py_ssize_t[::1] record_steps,
        double[:, ::1] a_rec, double[:, ::1] u_rec,
        bit_generator=None, double noise=0.0, int noise_dist=UNIFORM,
        const double[:, ::1] xs=None, const double[::1] xis=None):
    """Run SGD from (a, u) (d coordinates, flat, coordinate by coordinate), in place, to
    record_steps[-1], writing the state at each record step into a_rec, u_rec. Draws from
    bit_generator, or reads xs (steps, d), xis when it is None.
    Returns (steps taken, records written)."""
    cdef Model p
    cdef Sgd run
    cdef Padded net = Padded(a, u, d)
    cdef double[::1] inputs = np.empty(BLOCK * d)
    cdef Py_ssize_t written
    model_init(&p, net, eta, ta, tu, teta, tcode)
    run.h = h
    run.eps = eps
    run.noise = noise
    run.noise_dist = noise_dist
    run.rng = NULL
    run.xs = &xs[0, 0] if xs is not None else NULL
    run.xis = &xis[0] if xis is not None else NULL
    run.record_steps = &record_steps[0]
    run.nrec = record_steps.shape[0]
    run.a_rec = &a_rec[0, 0]
    run.u_rec = &u_rec[0, 0]
    run.steps_done = 0
    if bit_generator is not None:
        run.rng = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
        lock = bit_generator.lock
    else:
        lock = threading.Lock()
    with lock, nogil:
        if d == 1:
            written = sgd_dispatch(&ONE, code, &p, &run, &inputs[0])
        else:
            written = sgd_dispatch(&MANY, code, &p, &run, &inputs[0])
    net.copy_to(a, u)
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
    model_init(&p, net, eta, net.a, net.u[:0], 1.0, RAMP)   # no teacher: Y is given
    with nogil:
        if net.d == 1:
            done = gd_dispatch(&ONE, code, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch, grad)
        else:
            done = gd_dispatch(&MANY, code, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch, grad)
    return done
