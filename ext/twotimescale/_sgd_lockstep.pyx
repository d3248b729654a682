# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD of up to GROUP univariate replicas of one shape in lockstep, one per vector
lane (docs/maths.rst §4.4).

Design: one replica's step waits on the previous one (r -> update -> z -> s -> sum -> r);
GROUP independent replicas side by side fill that wait, and their neuron loop vectorises
across replicas. Each lane does, in the same order, exactly the arithmetic of the dense kernel
(sgd_dense.pyx) on its own replica: the same pending update (``old_slope``), the same eight
partial sums (j mod 8) added by the same tree (``tree8``; the dense kernel's padding adds
only +0.0 to them, which changes no bit), and draws from its own stream in the same order.
So a replica is the same bits in a batch as alone. The NumPy twin is
``twotimescale.reference.sgd``.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport isfinite
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal, random_standard_uniform_fill
from ._activations cimport act_t, Ramp, Smoothstep, Relu, RAMP, SMOOTHSTEP, s, weighted_slope
from ._common cimport all_finite
from ._network cimport Net, NetView, interrupted, raise_interrupt
from ._sgd cimport (Sgd, One, UNIFORM, GROUP, BLOCK, CHECK, tree8, old_slope, teacher_values,
                   run_init, cache_aligned)

#: the most replicas one call runs side by side
REPLICAS_IN_LOCKSTEP = GROUP


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
    """The dense kernel's advance() for every lane: out[l] = sum_j a_j phi_j of lane l at
    x[l]. The inputs, step constants and partial sums sit in local arrays, which the compiler
    knows the state does not overlap, so the lane loop vectorises without run-time alias
    checks; it has GROUP iterations, too long a body to be unrolled into scalar branches."""
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
        out[l] = tree8(acc + l, GROUP)


cdef One ONE


cdef void lanes_fill(Lanes *q, Sgd *run) noexcept nogil:
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
    teacher_values(&ONE, &run.teacher, q.cur_x, q.cur_y, BLOCK * GROUP)
    q.pos = 0


cdef Py_ssize_t lanes_steps(act_t *kind, Lanes *q, Sgd *run, Py_ssize_t n) noexcept nogil:
    """n steps of every lane (the dense kernel's sgd_steps, lane by lane); a lane whose
    residual is not finite stops there, its step count kept."""
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
            lanes_fill(q, run)
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


cdef void lanes_record(Lanes *q, Sgd *run, Py_ssize_t k) noexcept nogil:
    """Record k of every live lane (a lane whose state is not finite stops there)."""
    cdef Py_ssize_t l, j, m = q.m
    cdef double *a_rec
    cdef double *u_rec
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


cdef void lanes_run(act_t *kind, Lanes *q, Sgd *run) noexcept nogil:
    """Every lane to the last record step, recording each live lane as the dense kernel
    does; in chunks of at most CHECK steps between interrupt checks (no bit changes)."""
    cdef Py_ssize_t k, want, chunk
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        while want > 0:
            chunk = want if want < CHECK else CHECK
            lanes_steps(kind, q, run, chunk)
            want -= chunk
            if interrupted():
                run.interrupted = True
                return
        lanes_record(q, run, k)


cdef Ramp RAMP_TAG
cdef Smoothstep SMOOTHSTEP_TAG
cdef Relu RELU_TAG


def sgd_lanes(nets, Net teacher, *, double h, double eps, const Py_ssize_t[::1] record_steps,
              double[:, :, ::1] a_rec, double[:, :, ::1] u_rec, bit_generators,
              double noise=0.0, int noise_dist=UNIFORM):
    """Up to GROUP univariate replicas in lockstep (Nets of one m, eta and activation; one bit
    generator each), each exactly as the dense kernel runs it alone; records into a_rec,
    u_rec (replica, record, .). Returns [(steps taken, records written)] per replica."""
    nets = list(nets)
    cdef Py_ssize_t n = len(nets), l, j, m
    cdef Net first, net
    cdef Lanes q
    cdef Sgd run
    if not 1 <= n <= GROUP:
        raise ValueError(f"sgd_lanes runs 1 to {GROUP} replicas, got {n}")
    first = nets[0]
    m = first.view.m
    cdef double[::1] state = cache_aligned(GROUP + 4 * GROUP * m + 2 * BLOCK * GROUP
                                           + 2 * BLOCK, 0.0)
    q.bias = &state[0]
    q.state = q.bias + GROUP
    q.cur_x = q.state + 4 * GROUP * m
    q.cur_y = q.cur_x + BLOCK * GROUP
    q.drawn = q.cur_y + BLOCK * GROUP
    q.m = m
    q.inv_eta = first.view.inv_eta
    generators = list(bit_generators)                    # kept alive through the run
    for l in range(GROUP):
        q.alive[l] = l < n
        q.rng[l] = (<bitgen_t *> PyCapsule_GetPointer(generators[l].capsule, "BitGenerator")
                    if l < n else NULL)
        q.steps[l] = 0
        q.written[l] = 0
        if l < n:
            net = nets[l]
            q.bias[l] = net.view.a[0]
            for j in range(m):
                q.state[j * 4 * GROUP + l] = net.view.a[j + 1]
                q.state[j * 4 * GROUP + GROUP + l] = net.view.u[j]
    run_init(&run, &teacher.view, h, eps, noise, noise_dist, &record_steps[0],
             record_steps.shape[0], &a_rec[0, 0, 0], &u_rec[0, 0, 0])
    with nogil:
        q.pos = BLOCK
        if first.view.code == RAMP:
            lanes_run(&RAMP_TAG, &q, &run)
        elif first.view.code == SMOOTHSTEP:
            lanes_run(&SMOOTHSTEP_TAG, &q, &run)
        else:
            lanes_run(&RELU_TAG, &q, &run)
    if run.interrupted:
        raise_interrupt()
    return [(q.steps[l], q.written[l]) for l in range(n)]
