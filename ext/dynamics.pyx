# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD and mini-batch GD with two step sizes (DESIGN.md section 4).

Design: one step is a forward pass that stores s(z_j) and s'(z_j), then the update of every
parameter from the old values. The loops are compiled once per activation through the fused
tag type ``act_t`` (ext/activations.pxd), so no dispatch sits inside them; the forward sum
runs in four interleaved partial sums so that it vectorises without -ffast-math (which would
also delete the NaN checks). The random draws come from a numpy BitGenerator through its C
interface, without the GIL; a run is a function of its seed alone. The kernels only compute:
twotimescale.dynamics checks every argument before calling them. The NumPy twins are
``twotimescale.reference.sgd`` and ``reference.gd``.
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


cdef enum:
    LANES = 8           # neurons are padded to a multiple of LANES, so loops have no remainder


cdef struct Model:
    double *a                 # (mp + 1,) a[0] is the bias; updated in place
    double *u                 # (mp,)
    Py_ssize_t m              # neurons
    Py_ssize_t mp             # neurons and inert padding (a = 0, u = +inf: s = s' = 0 exactly)
    double inv_eta
    const double *ta          # the teacher
    const double *tu
    Py_ssize_t tm
    double tinv_eta
    int tcode
    double *phi               # scratch (mp,): s(z_j) of the current point
    double *dphi              # scratch (mp,): s'(z_j)


cdef inline double forward(act_t *kind, const Model *p, double x) noexcept nogil:
    """f(x), storing s(z_j) and s'(z_j); the sum in eight partial sums, over j mod 8, so
    that it vectorises (and its dependency chain is short) without reassociation."""
    cdef Py_ssize_t j, m = p.mp & ~(LANES - 1)      # tells the compiler: no remainder
    cdef double z, inv_eta = p.inv_eta
    cdef double f0 = 0.0, f1 = 0.0, f2 = 0.0, f3 = 0.0, f4 = 0.0, f5 = 0.0, f6 = 0.0, f7 = 0.0
    cdef const double *u = p.u
    cdef const double *w = p.a + 1
    cdef double *phi = p.phi
    cdef double *dphi = p.dphi
    for j in range(m):
        z = (x - u[j]) * inv_eta
        phi[j] = s(kind, z)
        dphi[j] = ds(kind, z)
    for j in range(0, m, 8):
        f0 += w[j] * phi[j]
        f1 += w[j + 1] * phi[j + 1]
        f2 += w[j + 2] * phi[j + 2]
        f3 += w[j + 3] * phi[j + 3]
        f4 += w[j + 4] * phi[j + 4]
        f5 += w[j + 5] * phi[j + 5]
        f6 += w[j + 6] * phi[j + 6]
        f7 += w[j + 7] * phi[j + 7]
    return p.a[0] + (((f0 + f4) + (f1 + f5)) + ((f2 + f6) + (f3 + f7)))


cdef void teacher_values(const Model *p, const double *x, double *y, Py_ssize_t n) noexcept nogil:
    """y[i] += f*(x[i]); the teacher's neurons outside, the points inside (vectorises)."""
    cdef Py_ssize_t i, k
    cdef double c, v
    for i in range(n):
        y[i] += p.ta[0]
    for k in range(p.tm):
        c = p.ta[k + 1]
        v = p.tu[k]
        for i in range(n):
            y[i] += c * s_of(p.tcode, (x[i] - v) * p.tinv_eta)


cdef enum:
    BLOCK = 64          # steps whose draws and labels are made ahead, off the critical path


cdef struct Sgd:
    double h, eps, noise
    int noise_dist
    bitgen_t *rng             # NULL: read the draws from xs, xis instead
    const double *xs
    const double *xis
    const Py_ssize_t *record_steps
    Py_ssize_t nrec
    double *a_rec             # (nrec, m + 1)
    double *u_rec             # (nrec, m)
    Py_ssize_t steps_done


cdef void draw(Sgd *run, const Model *p, double *x, double *y, Py_ssize_t n) noexcept nogil:
    """The next n inputs x ~ U[0, 1) and labels y = f*(x) + xi: x then xi each step, from
    the bit generator, or read from xs, xis."""
    cdef Py_ssize_t i
    cdef bitgen_t *rng = run.rng
    if rng == NULL:
        memcpy(x, run.xs + run.steps_done, n * sizeof(double))
        memcpy(y, run.xis + run.steps_done, n * sizeof(double))
    else:
        for i in range(n):
            x[i] = rng.next_double(rng.state)
            if run.noise_dist == UNIFORM:
                y[i] = run.noise * (2.0 * rng.next_double(rng.state) - 1.0)
            else:
                y[i] = run.noise * random_standard_normal(rng)
    teacher_values(p, x, y, n)


cdef Py_ssize_t sgd_steps(act_t *kind, Model *p, Sgd *run, Py_ssize_t n) noexcept nogil:
    """n steps of online SGD from step run.steps_done, which it advances; returns how many
    were taken (fewer if the residual became non-finite: that step is not applied). With
    r = f(x) - y and the gradients at the old values,

        a_j <- a_j - 2 h r phi_j(x)        u_j <- u_j + 2 h eps r a_j s'_j(x) / eta
    """
    cdef Py_ssize_t i, j, b, taken = 0, m = p.mp & ~(LANES - 1)
    cdef double r, step_a, step_u, aj
    cdef double xs[BLOCK]
    cdef double ys[BLOCK]
    cdef double *w = p.a + 1
    cdef double *u = p.u
    cdef const double *phi = p.phi
    cdef const double *dphi = p.dphi
    while taken < n:
        b = n - taken if n - taken < BLOCK else BLOCK
        draw(run, p, xs, ys, b)
        for i in range(b):
            r = forward(kind, p, xs[i]) - ys[i]
            if not isfinite(r):
                run.steps_done += i
                return taken + i
            step_a = 2.0 * run.h * r
            step_u = step_a * run.eps * p.inv_eta
            p.a[0] -= step_a
            for j in range(m):
                aj = w[j]
                w[j] = aj - step_a * phi[j]
                u[j] += step_u * aj * dphi[j]
        taken += b
        run.steps_done += b
    return taken


cdef Py_ssize_t sgd_run(act_t *kind, Model *p, Sgd *run) noexcept nogil:
    """Run to the last record step, copying the state at each one (the first is step 0);
    returns the number of records written. Stops early, after its last good record, when
    the residual or a parameter becomes non-finite."""
    cdef Py_ssize_t k, took, want, m = p.m
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        took = sgd_steps(kind, p, run, want)
        if took < want or not (all_finite(p.a, m + 1) and all_finite(p.u, m)):
            return k
        memcpy(run.a_rec + k * (m + 1), p.a, (m + 1) * sizeof(double))
        memcpy(run.u_rec + k * m, p.u, m * sizeof(double))
    return run.nrec


cdef Py_ssize_t gd_epoch_steps(act_t *kind, Model *p, double h, double eps,
                               const double *X, const double *Y, const Py_ssize_t *order,
                               Py_ssize_t n, Py_ssize_t batch, double *grad) noexcept nogil:
    """One epoch of mini-batch GD over X[order], Y[order] in batches of ``batch`` (the last may
    be smaller): gradient steps on the mean square over each batch, taken at the old values,

        a_j <- a_j - h (2/B) sum_i r_i phi_j(x_i)
        u_j <- u_j + h eps (2/B) (a_j / eta) sum_i r_i s'_j(x_i)

    Returns the number of batches taken (fewer if a residual became non-finite)."""
    cdef Py_ssize_t start = 0, stop, i, j, m = p.mp & ~(LANES - 1), done = 0
    cdef double r, x, scale, total
    cdef double *ga = grad             # (m,)
    cdef double *gu = grad + m         # (m,)
    while start < n:
        stop = start + batch if start + batch < n else n
        for j in range(2 * m):
            grad[j] = 0.0
        total = 0.0
        for i in range(start, stop):
            x = X[order[i]]
            r = forward(kind, p, x) - Y[order[i]]
            total += r
            for j in range(m):
                ga[j] += r * p.phi[j]
                gu[j] += r * p.dphi[j]
        if not isfinite(total):
            return done
        scale = 2.0 * h / (stop - start)
        p.a[0] -= scale * total
        for j in range(m):
            p.u[j] += scale * eps * p.inv_eta * p.a[j + 1] * gu[j]
            p.a[j + 1] -= scale * ga[j]
        done += 1
        start = stop
    return done


cdef bint all_finite(const double *v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += v[i] * 0.0      # NaN for an infinite or NaN entry
    return total == 0.0


cdef class Padded:
    """The parameters copied into arrays padded with inert neurons, and the scratch space."""
    cdef double[::1] a, u, scratch
    cdef Py_ssize_t m, mp

    def __init__(self, const double[::1] a, const double[::1] u):
        self.m = u.shape[0]
        self.mp = (self.m + LANES - 1) // LANES * LANES
        self.a = np.zeros(self.mp + 1)
        self.a[:self.m + 1] = a
        self.u = np.full(self.mp, np.inf)
        self.u[:self.m] = u
        self.scratch = np.zeros(4 * self.mp + 1)

    def copy_to(self, double[::1] a, double[::1] u):
        a[:] = self.a[:self.m + 1]
        u[:] = self.u[:self.m]


cdef void model_init(Model *p, Padded net, double eta, const double[::1] ta,
                     const double[::1] tu, double teta, int tcode):
    p.a = &net.a[0]
    p.u = &net.u[0]
    p.m = net.m
    p.mp = net.mp
    p.inv_eta = 1.0 / eta
    p.ta = &ta[0]
    p.tu = &tu[0] if tu.shape[0] else NULL
    p.tm = tu.shape[0]
    p.tinv_eta = 1.0 / teta
    p.tcode = tcode
    p.phi = &net.scratch[0]
    p.dphi = &net.scratch[net.mp]


def sgd(double[::1] a, double[::1] u, double eta, int code,
        const double[::1] ta, const double[::1] tu, double teta, int tcode,
        double h, double eps, const Py_ssize_t[::1] record_steps,
        double[:, ::1] a_rec, double[:, ::1] u_rec,
        bit_generator=None, double noise=0.0, int noise_dist=UNIFORM,
        const double[::1] xs=None, const double[::1] xis=None):
    """Run SGD from (a, u), in place, to record_steps[-1], writing the state at each record
    step into a_rec, u_rec. Draws from bit_generator, or reads xs, xis when it is None.
    Returns (steps taken, records written)."""
    cdef Model p
    cdef Sgd run
    cdef Padded net = Padded(a, u)
    cdef Ramp ramp_tag
    cdef Smoothstep smooth_tag
    cdef Relu relu_tag
    cdef Py_ssize_t written
    model_init(&p, net, eta, ta, tu, teta, tcode)
    run.h = h
    run.eps = eps
    run.noise = noise
    run.noise_dist = noise_dist
    run.rng = NULL
    run.xs = &xs[0] if xs is not None else NULL
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
        if code == RAMP:
            written = sgd_run(&ramp_tag, &p, &run)
        elif code == SMOOTHSTEP:
            written = sgd_run(&smooth_tag, &p, &run)
        else:
            written = sgd_run(&relu_tag, &p, &run)
    net.copy_to(a, u)
    return run.steps_done, written


def gd_epoch(double[::1] a, double[::1] u, double eta, int code, double h, double eps,
             const double[::1] X, const double[::1] Y, const Py_ssize_t[::1] order,
             Py_ssize_t batch):
    """One epoch of mini-batch GD, in place; returns the number of batches taken."""
    cdef Model p
    cdef Padded net = Padded(a, u)
    cdef double *grad = &net.scratch[2 * net.mp]
    cdef Ramp ramp_tag
    cdef Smoothstep smooth_tag
    cdef Relu relu_tag
    cdef Py_ssize_t n = order.shape[0], done
    model_init(&p, net, eta, a, u[:0], 1.0, RAMP)   # no teacher: Y is given
    with nogil:
        if code == RAMP:
            done = gd_epoch_steps(&ramp_tag, &p, h, eps, &X[0], &Y[0], &order[0], n, batch, grad)
        elif code == SMOOTHSTEP:
            done = gd_epoch_steps(&smooth_tag, &p, h, eps, &X[0], &Y[0], &order[0], n, batch, grad)
        else:
            done = gd_epoch_steps(&relu_tag, &p, h, eps, &X[0], &Y[0], &order[0], n, batch, grad)
    net.copy_to(a, u)
    return done
