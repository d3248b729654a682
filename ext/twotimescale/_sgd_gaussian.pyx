# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD and mini-batch GD for networks on Gaussian inputs, x ~ N(0, I_d)
(docs/maths.rst §8.3).

Design: W is kept transposed, W^T (d x mp), its m columns padded to mp, a multiple of LANES,
with inert neurons (a_j = 0 and w_j = 0: s(0) = 0, so they neither add to f nor move), so
that z = W x is a sum of axpys over the rows of W^T (each z_j summed over k in order): it
vectorises without reassociation. As in sgd_dense.pyx, a step applies the previous step's
update to W^T in the same pass that computes its z (``advance``), and sums f in eight partial
sums (``tree8``, sgd.pxd). Samples come a block at a time: for each step in order, d normals
(numpy's ziggurat, random_standard_normal) and then the label noise, and the block's labels
from the teacher (gaussian.pxd). The activation is a compile-time tag (gact_t). The NumPy
twins are ``twotimescale.reference.gaussian_sgd`` and ``gaussian_gd``.
"""
import numpy as np
from libc.math cimport isfinite
from libc.string cimport memcpy
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal
from ._common cimport all_finite
from ._gaussian cimport (G_RELU, G_ERF, GRelu, GErf, GLinear, gact_t, sigma, slope,
                         value)
from ._network cimport Net, interrupted, raise_interrupt
from ._sgd cimport Sgd, UNIFORM, LANES, BLOCK, tree8, run_init, samples_init, cache_aligned


cdef struct Model:
    double *a                 # (1 + mp,): a[0] the bias, then the neurons
    double *wt                # (d mp,): W^T, row k at k mp
    Py_ssize_t d, m, mp
    double *z                 # scratch (mp,): w_j . x at the current point
    double *phi               # scratch (mp,): s(z_j)
    double *g                 # scratch (mp,): a_j s'(z_j)


cdef extern from *:
    """
    /* z += the terms of four rows r[0..3] of W^T (length n), each row first updated by
       w -= s[i] g when update is set; z_j sums its terms in row order, so the bits are those
       of one row a pass. restrict: rows, z and g never overlap, so the loop vectorises
       without run-time alias checks (too many pointers for the compiler to version). */
    static inline void twotimescale_four_rows(
            double *restrict r0, double *restrict r1, double *restrict r2,
            double *restrict r3, double *restrict z, const double *restrict g,
            const double *x, const double *s, int update, Py_ssize_t n) {
        const double x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
        const double s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
        Py_ssize_t j;
        if (!update) {
            for (j = 0; j < n; j++)
                z[j] = (((z[j] + r0[j] * x0) + r1[j] * x1) + r2[j] * x2) + r3[j] * x3;
            return;
        }
        for (j = 0; j < n; j++) {
            double w0 = r0[j] - s0 * g[j], w1 = r1[j] - s1 * g[j];
            double w2 = r2[j] - s2 * g[j], w3 = r3[j] - s3 * g[j];
            r0[j] = w0; r1[j] = w1; r2[j] = w2; r3[j] = w3;
            z[j] = (((z[j] + w0 * x0) + w1 * x1) + w2 * x2) + w3 * x3;
        }
    }
    """
    void four_rows "twotimescale_four_rows" (double *r0, double *r1, double *r2, double *r3,
                                             double *z, const double *g, const double *x,
                                             const double *s, int update, Py_ssize_t n) nogil


cdef inline void rows_into_z(double *wt, Py_ssize_t mp, Py_ssize_t k, Py_ssize_t n,
                             const double *x, const double *x_old, double su, const double *g,
                             double *z) noexcept nogil:
    """z += the terms of rows k..k+n-1 (n <= 4) of W^T (row stride mp), each updated first
    when x_old is given (w -= su x_old[k] g); rows missing from four are zero rows of a
    scratch block past W^T's end (see Padded), so every pass is ``four_rows``."""
    cdef Py_ssize_t i
    cdef double xs[4]
    cdef double steps[4]
    for i in range(4):
        xs[i] = x[k + i] if i < n else 0.0
        steps[i] = su * x_old[k + i] if x_old != NULL and i < n else 0.0
    four_rows(wt + k * mp, wt + (k + 1) * mp, wt + (k + 2) * mp, wt + (k + 3) * mp, z, g,
              xs, steps, x_old != NULL, mp)


cdef inline double advance(gact_t *kind, Model *p, const double *x, const double *x_old,
                           double sa, double su) noexcept nogil:
    """Apply the pending update of the previous step at x_old (unless NULL),
    w_j -= su g_j x_old and a_j -= sa phi_j, in the pass that computes z = W x (z_j summed
    over k in order); then store phi_j = s(z_j), g_j = a_j s'(z_j) and return
    sum_j a_j phi_j (the bias aside)."""
    cdef Py_ssize_t j, k, l, mp = p.mp, d = p.d
    cdef double aj
    cdef double acc[LANES]
    for j in range(mp):
        p.z[j] = 0.0
    for k in range(0, d, 4):
        rows_into_z(p.wt, mp, k, min(4, d - k), x, x_old, su, p.g, p.z)
    for l in range(LANES):
        acc[l] = 0.0
    for j in range(0, mp, 8):             # LANES
        for l in range(LANES):
            aj = p.a[1 + j + l] - sa * p.phi[j + l]
            p.a[1 + j + l] = aj
            p.phi[j + l] = sigma(kind, p.z[j + l])
            p.g[j + l] = aj * slope(kind, p.z[j + l])
            acc[l] += aj * p.phi[j + l]
    return tree8(acc, 1)


cdef void fill_block(Sgd *run, Py_ssize_t start, Py_ssize_t count) noexcept nogil:
    """The samples of steps start..start+count into run.cur_x, run.cur_y: x ~ N(0, I_d) then
    the noise xi for each step in order (or read from xs, xis), y = f*(x) + xi."""
    cdef Py_ssize_t i, k, d = run.teacher.d
    cdef bitgen_t *rng = run.rng
    cdef double *x
    for i in range(count):
        x = run.cur_x + i * d
        if rng == NULL:
            memcpy(x, run.xs + (start + i) * d, d * sizeof(double))
            run.cur_y[i] = run.xis[start + i]
        else:
            for k in range(d):
                x[k] = random_standard_normal(rng)
            if run.noise_dist == UNIFORM:
                run.cur_y[i] = run.noise * (2.0 * rng.next_double(rng.state) - 1.0)
            else:
                run.cur_y[i] = run.noise * random_standard_normal(rng)
        run.cur_y[i] += value(&run.teacher, x)


cdef Py_ssize_t sgd_steps(gact_t *kind, Model *p, Sgd *run, Py_ssize_t n,
                          Py_ssize_t check) noexcept nogil:
    """n steps of online SGD from step run.steps_done, which it advances; returns how many
    were taken (fewer if the residual became non-finite or an interrupt came). With
    r = f(x) - y and the gradients at the old values,

        a_j <- a_j - 2 h r s(w_j . x)        w_j <- w_j - 2 h eps r a_j s'(w_j . x) x

    Each step applies the previous one's update in ``advance``; the last is applied here."""
    cdef Py_ssize_t i, pos, step, d = p.d
    cdef double r, sa = 0.0, su = 0.0
    cdef double ca = 2.0 * run.h, cu = 2.0 * run.h * run.eps
    cdef const double *x_old = NULL
    for i in range(n):
        step = run.steps_done + i
        pos = step % BLOCK
        if pos == 0:                     # a new block: x_old's sample is about to go
            if x_old != NULL:
                apply_pending(p, x_old, sa, su)
                sa = su = 0.0
                x_old = NULL
            if (step // BLOCK) % check == 0 and interrupted():
                run.interrupted = True
                run.steps_done = step
                return i
            fill_block(run, step, min(BLOCK, run.total - step))
        p.a[0] -= sa
        r = advance(kind, p, run.cur_x + pos * d, x_old, sa, su) + (p.a[0] - run.cur_y[pos])
        if not isfinite(r):              # this step is not applied; the previous one was
            run.steps_done = step
            return i
        sa = ca * r
        su = cu * r
        x_old = run.cur_x + pos * d
    run.steps_done += n
    if x_old != NULL:
        apply_pending(p, x_old, sa, su)
    return n


cdef void apply_pending(Model *p, const double *x_old, double sa, double su) noexcept nogil:
    """The pending update alone: w_j -= su g_j x_old, a_j -= sa phi_j, a_0 -= sa."""
    cdef Py_ssize_t j, k, mp = p.mp
    cdef double step
    cdef double *row
    p.a[0] -= sa
    for k in range(p.d):
        row = p.wt + k * mp
        step = su * x_old[k]
        for j in range(mp):
            row[j] = row[j] - step * p.g[j]
    for j in range(mp):
        p.a[1 + j] = p.a[1 + j] - sa * p.phi[j]


cdef bint record(const Model *p, double *a_rec, double *u_rec) noexcept nogil:
    """Copy a and W (by rows, without padding); False if not finite."""
    cdef Py_ssize_t j, k
    memcpy(a_rec, p.a, (1 + p.m) * sizeof(double))
    for j in range(p.m):
        for k in range(p.d):
            u_rec[j * p.d + k] = p.wt[k * p.mp + j]
    return all_finite(a_rec, 1 + p.m) and all_finite(u_rec, p.m * p.d)


cdef Py_ssize_t sgd_run(gact_t *kind, Model *p, Sgd *run) noexcept nogil:
    """Run to the last record step, writing the state at each one (the first is step 0);
    returns the records written (fewer when the run diverged or was interrupted)."""
    cdef Py_ssize_t k, took, want, check = 1 + (1 << 22) // (BLOCK * p.mp * p.d)
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        took = sgd_steps(kind, p, run, want, check)
        if took < want or not record(p, run.a_rec + k * (1 + p.m), run.u_rec + k * p.m * p.d):
            return k
    return run.nrec


cdef Py_ssize_t gd_epoch_steps(gact_t *kind, Model *p, double h, double eps, const double *X,
                               const double *Y, const Py_ssize_t *order, Py_ssize_t n,
                               Py_ssize_t batch, double *grad) noexcept nogil:
    """One epoch of mini-batch GD over X[order], Y[order] in batches of ``batch`` (the last
    may be smaller), on the mean square over each batch at the old values:

        a_j <- a_j - h (2/B) sum_i r_i s(w_j . x_i)
        w_j <- w_j - h eps (2/B) sum_i r_i a_j s'(w_j . x_i) x_i

    Returns the number of batches taken (fewer if a residual became non-finite)."""
    cdef Py_ssize_t start = 0, stop, i, j, k, done = 0, mp = p.mp, d = p.d
    cdef double r, scale, total
    cdef double *ga = grad                # (mp,)
    cdef double *gw = grad + mp           # (d mp,): the gradient of W^T
    cdef const double *x
    while start < n:
        stop = start + batch if start + batch < n else n
        for j in range((1 + d) * mp):
            grad[j] = 0.0
        total = 0.0
        for i in range(start, stop):
            x = X + order[i] * d
            r = advance(kind, p, x, NULL, 0.0, 0.0) + (p.a[0] - Y[order[i]])
            total += r
            for j in range(mp):
                ga[j] += r * p.phi[j]
            for k in range(d):
                for j in range(mp):
                    gw[k * mp + j] += (r * p.g[j]) * x[k]
        if not isfinite(total):
            return done
        scale = 2.0 * h / (stop - start)
        p.a[0] -= scale * total
        for j in range(mp):
            p.a[1 + j] -= scale * ga[j]
        for j in range(d * mp):
            p.wt[j] -= scale * eps * gw[j]
        done += 1
        start = stop
    return done


cdef GRelu RELU_TAG
cdef GErf ERF_TAG
cdef GLinear LINEAR_TAG


cdef class Padded:
    """A Gaussian-input network's parameters in the kernel's layout (a padded, W^T padded)
    and the scratch space of a step; ``copy_to`` writes them back. GD keeps one across
    epochs."""
    cdef double[::1] a, wt, scratch
    cdef Py_ssize_t d, m, mp
    cdef int code

    def __init__(self, Net net):
        cdef Py_ssize_t j, k, d = net.view.d, m = net.view.m
        cdef const double[::1] u = net.u
        cdef const double[::1] a = net.a
        self.d, self.m = d, m
        self.mp = max(LANES, (m + LANES - 1) // LANES * LANES)
        self.code = net.view.code
        self.a = cache_aligned(LANES + self.mp, 0.0)[LANES - 1:]
        self.a[:m + 1] = a
        self.wt = cache_aligned((d + 3) * self.mp, 0.0)    # 3 zero rows: see rows_into_z
        for j in range(m):
            for k in range(d):
                self.wt[k * self.mp + j] = u[j * d + k]
        self.scratch = cache_aligned((4 + d) * self.mp, 0.0)

    def finite(self):
        """True while every parameter is finite."""
        return all_finite(&self.a[0], 1 + self.mp) and all_finite(&self.wt[0], self.d * self.mp)

    def copy_to(self, double[::1] a, double[::1] u):
        cdef Model p
        model_of(self, &p)
        record(&p, &a[0], &u[0])


cdef inline void model_of(Padded params, Model *p) noexcept:
    p.a = &params.a[0]
    p.wt = &params.wt[0]
    p.d, p.m, p.mp = params.d, params.m, params.mp
    p.z = &params.scratch[0]
    p.phi = &params.scratch[params.mp]
    p.g = &params.scratch[2 * params.mp]


cdef Py_ssize_t sgd_dispatch(int code, Model *p, Sgd *run) noexcept nogil:
    if code == G_RELU:
        return sgd_run(&RELU_TAG, p, run)
    if code == G_ERF:
        return sgd_run(&ERF_TAG, p, run)
    return sgd_run(&LINEAR_TAG, p, run)


def sgd(Net net, Net teacher, *, double h, double eps, const Py_ssize_t[::1] record_steps,
        double[:, ::1] a_rec, double[:, ::1] u_rec, bit_generator=None, double noise=0.0,
        int noise_dist=UNIFORM, const double[:, ::1] xs=None, const double[::1] xis=None):
    """Run SGD from the network to record_steps[-1], writing the state at each record step
    into a_rec (m+1) and u_rec (W by rows, m d). Draws from bit_generator, or reads xs
    (steps, d), xis when it is None. Returns (steps taken, records written)."""
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
        written = sgd_dispatch(params.code, &p, &run)
    if run.interrupted:
        raise_interrupt()
    return run.steps_done, written


def gd_epoch(Padded params, double h, double eps, const double[:, ::1] X,
             const double[::1] Y, const Py_ssize_t[::1] order, Py_ssize_t batch, /):
    """One epoch of mini-batch GD on the padded parameters, in place; returns the batches
    taken."""
    cdef Model p
    cdef double *grad = &params.scratch[3 * params.mp]
    cdef Py_ssize_t n = order.shape[0], done
    model_of(params, &p)
    with nogil:
        if params.code == G_RELU:
            done = gd_epoch_steps(&RELU_TAG, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch, grad)
        elif params.code == G_ERF:
            done = gd_epoch_steps(&ERF_TAG, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch, grad)
        else:
            done = gd_epoch_steps(&LINEAR_TAG, &p, h, eps, &X[0, 0], &Y[0], &order[0], n, batch,
                                  grad)
    return done
