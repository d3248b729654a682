# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Online SGD of a wide univariate ramp or smoothstep network, its neurons kept sorted by
position (docs/maths.rst §4.4).

Design: a neuron well left of x is saturated (s = 1, s' = 0: the step only does a_j -= sa)
and one well right of it is inert (s = s' = 0: nothing moves). With the neurons sorted by
position, the saturated ones are a prefix and the inert ones a suffix, so only the band of
neurons in transition needs work of its own. The prefix is kept in blocks of SORTED_BLOCK
places: a block wholly saturated takes the step's update as a pending offset
(a_j = stored_j - offset_b) and answers the sum with its stored total; the step folds the
offset into the stored weights of any block it works in, and recomputes that block's total.
A step costs O(m / SORTED_BLOCK + SORTED_BLOCK + band) instead of O(m). Band neurons that pass
a neighbour are moved by insertion, so the order stays sorted. The samples are the dense
kernel's (sgd.pxd), so a run draws the same stream; its sums run in another order, so its
bits differ from the dense kernel's within rounding. The NumPy twin is
``twotimescale.reference.sgd``. The paper's own rule (Published: a smoothstep forward, the
ramp's slope in u; twotimescale.published) runs here too, its twin
``twotimescale.reference.published_sgd``: in the dense module a fourth specialisation slowed
the ramp's loop 2.9x (GCC stopped inlining it).
"""
import numpy as np
from libc.math cimport isfinite
from ._activations cimport (act_t, Ramp, Smoothstep, Published, RAMP, SMOOTHSTEP, s,
                           weighted_slope, saturated, inert)
from ._common cimport all_finite
from ._network cimport Net, interrupted, raise_interrupt
from ._sgd cimport (Sgd, One, UNIFORM, BLOCK, CHECK, tree8, first_block, next_sample, run_init,
                   samples_init)

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
    total = tree8(part, 1)
    for i in range(n - n % 8, n):
        total += v[i]
    return total


cdef inline void swap_places(Sorted *q, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    q.a[i], q.a[j] = q.a[j], q.a[i]
    q.u[i], q.u[j] = q.u[j], q.u[i]
    q.index[i], q.index[j] = q.index[j], q.index[i]


cdef inline Py_ssize_t first_unsaturated(act_t *kind, const Sorted *q, double x) noexcept nogil:
    """The first place whose neuron is not saturated at x (binary search)."""
    cdef Py_ssize_t lo = 0, hi = q.m, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if saturated(kind, (x - q.u[mid]) * q.inv_eta):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef void keep_sorted(Sorted *q, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t *first,
                      Py_ssize_t *last) noexcept nogil:
    """Restore the order after the band [lo, hi) moved: insertion from the band on (the rest
    was sorted), folding the offsets of the blocks it touches and widening [first, last] to
    them."""
    cdef Py_ssize_t j = lo, k
    while j < q.m and (j < hi or (j > 0 and q.u[j] < q.u[j - 1])):
        k = j
        while k > 0 and q.u[k - 1] > q.u[k]:
            fold(q, (k - 1) // SORTED_BLOCK)
            fold(q, k // SORTED_BLOCK)
            first[0] = min(first[0], (k - 1) // SORTED_BLOCK)
            last[0] = max(last[0], k // SORTED_BLOCK)
            swap_places(q, k - 1, k)
            k -= 1
        j += 1


cdef double sorted_step(act_t *kind, Sorted *q, double x, double y, double ca,
                        double cu) noexcept nogil:
    """One SGD step at the sample (x, y); returns r (the step is not applied if r is not
    finite)."""
    cdef Py_ssize_t lo = first_unsaturated(kind, q, x), hi, j, b, first, last
    cdef Py_ssize_t full = lo // SORTED_BLOCK        # blocks [0, full) are wholly saturated
    cdef double z, sz, f, r, sa, su
    hi = lo                                          # the band: places [lo, hi)
    while hi < q.m and not inert(kind, (x - q.u[hi]) * q.inv_eta):
        hi += 1
    first = full
    last = min(hi // SORTED_BLOCK, q.blocks - 1)     # blocks the step works in (and a neighbour)
    for b in range(first, last + 1):
        fold(q, b)
    f = 0.0
    for b in range(full):
        f += q.total[b] - SORTED_BLOCK * q.offset[b]
    for j in range(full * SORTED_BLOCK, lo):
        f += q.a[j]
    for j in range(lo, hi):                          # the band: vectorised, its products
        z = (x - q.u[j]) * q.inv_eta                 # summed in eight partial sums below
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
    keep_sorted(q, lo, hi, &first, &last)
    for b in range(first, last + 1):
        retotal(q, b)
    return r


cdef bint record(const Sorted *q, double *a_rec, double *u_rec) noexcept nogil:
    """Copy the state in the neurons' own order, the pending offsets read, not folded (a
    record must not change the run's rounding); False if it is not finite."""
    cdef Py_ssize_t j
    a_rec[0] = q.bias
    for j in range(q.m):
        a_rec[q.index[j] + 1] = q.a[j] - q.offset[j // SORTED_BLOCK]
        u_rec[q.index[j]] = q.u[j]
    return all_finite(a_rec, 1 + q.m) and all_finite(u_rec, q.m)


cdef One ONE


cdef Py_ssize_t sorted_run(act_t *kind, Sorted *q, Sgd *run) noexcept nogil:
    """Run to the last record step, as the dense kernel's sgd_run does; returns the records
    written."""
    cdef Py_ssize_t i, k, place, want, n = q.m
    cdef double r, ca = 2.0 * run.h, cu = 2.0 * run.h * run.eps * q.inv_eta
    first_block(&ONE, run)
    for k in range(run.nrec):
        want = run.record_steps[k] - run.steps_done
        for i in range(want):
            place = next_sample(&ONE, run)
            r = sorted_step(kind, q, run.cur_x[place], run.cur_y[place], ca, cu)
            if not isfinite(r):
                return k
            run.pos += 1
            run.steps_done += 1
            if run.steps_done % CHECK == 0 and interrupted():
                run.interrupted = True
                return k
        if not record(q, run.a_rec + k * (n + 1), run.u_rec + k * n):
            return k
    return run.nrec


cdef Ramp RAMP_TAG
cdef Smoothstep SMOOTHSTEP_TAG
cdef Published PUBLISHED_TAG


def sgd_sorted(Net net, Net teacher, *, double h, double eps,
               const Py_ssize_t[::1] record_steps, double[:, ::1] a_rec, double[:, ::1] u_rec,
               bit_generator=None, double noise=0.0, int noise_dist=UNIFORM,
               const double[:, ::1] xs=None, const double[::1] xis=None,
               bint published=False):
    """The dense kernel's sgd() for a univariate ramp or smoothstep network, its neurons kept
    sorted by position (for wide networks). ``published``: a smoothstep network trained by
    the paper's rule, its u-gradient the ramp's (twotimescale.published; it lives here, not
    in the dense kernel, where a fourth specialisation slowed the ramp's loop 2.9x).
    Returns (steps taken, records written)."""
    cdef Py_ssize_t m = net.view.m, j, written
    cdef Sorted q
    cdef Sgd run
    cdef Py_ssize_t[::1] index = np.argsort(net.u, kind="stable")
    cdef double[::1] work = np.zeros(5 * m + 2 * ((m + SORTED_BLOCK - 1) // SORTED_BLOCK)
                                     + 4 * BLOCK)
    if net.view.code != RAMP and net.view.code != SMOOTHSTEP:
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
    q.bias = net.view.a[0]
    q.inv_eta = net.view.inv_eta
    for j in range(m):
        q.a[j] = net.view.a[index[j] + 1]
        q.u[j] = net.view.u[index[j]]
    for j in range(q.blocks):
        retotal(&q, j)
    run_init(&run, &teacher.view, h, eps, noise, noise_dist, &record_steps[0],
             record_steps.shape[0], &a_rec[0, 0], &u_rec[0, 0])
    lock = samples_init(&run, q.total + q.blocks, bit_generator,
                        &xs[0, 0] if xs is not None else NULL, &xis[0] if xis is not None else NULL)
    with lock, nogil:
        if published:
            written = sorted_run(&PUBLISHED_TAG, &q, &run)
        elif net.view.code == RAMP:
            written = sorted_run(&RAMP_TAG, &q, &run)
        else:
            written = sorted_run(&SMOOTHSTEP_TAG, &q, &run)
    if run.interrupted:
        raise_interrupt()
    return run.steps_done, written
