"""Online SGD and mini-batch GD with two step sizes (docs/maths.rst §4).

The outer weights move with step ``h``, the positions with ``h * eps``; time is reported as
slow time ``t = steps * h * eps``. Every argument is checked here (``_checks``), before any
work; the loops run in the kernels without the GIL: ``_sgd_dense`` (any network, and GD),
``_sgd_lockstep`` (replicas side by side) and ``_sgd_sorted`` (wide ramp and smoothstep
networks). The NumPy twins are ``reference.sgd``/``gd``.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from . import _checks
from ._compiled import (_gaussian, _network, _population, _sgd_dense, _sgd_gaussian,
                        _sgd_lockstep, _sgd_sorted)
from .network import Network

#: label-noise name -> the kernels' code (defined once, in ext/twotimescale/_sgd_dense.pyx)
NOISE = _sgd_dense.NOISE
KERNELS = ("auto", "dense", "sorted")

# Sorted SGD wins when m eta <= c m - d. On the bench machine (bench/bench_sgd.py) a step
# costs about 13 + 0.36 m ns dense and 80 + 0.06 m + 3.9 m eta sorted for a ramp, and
# 17 + 0.68 m against 80 + 0.07 m + 4.8 m eta for a smoothstep.
_SORTED_WHEN = {"ramp": (0.078, 17.0), "smoothstep": (0.127, 13.0)}


def sorted_pays(net) -> bool:
    """Whether ``kernel="auto"`` trains ``net`` with its neurons sorted by position: only
    univariate ramp and smoothstep networks saturate, and sorting wins where few neurons are
    in transition, m eta <= c m - d (a ramp of m = 1000 up to eta = 0.06, a smoothstep up to
    0.11; never a ramp below m = 220 nor a smoothstep below m = 103; docs/maths.rst §4.4)."""
    if not isinstance(net, Network) or net.activation not in _SORTED_WHEN:
        return False
    c, d = _SORTED_WHEN[net.activation]
    return net.m * net.eta <= c * net.m - d


def _kernel_choice(kernel, net, name="net"):
    """True for the sorted kernel: ``kernel`` checked against what ``net`` allows."""
    _checks.choice(kernel, "kernel", KERNELS)
    if kernel == "sorted" and not (isinstance(net, Network) and net.activation in _SORTED_WHEN):
        raise ValueError(f"kernel='sorted' is for univariate ramp and smoothstep networks; "
                         f"{name} is {net!r}: use kernel='dense' or 'auto'")
    return kernel == "sorted" or (kernel == "auto" and sorted_pays(net))


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A training run, recorded at ``len(t)`` times (the first at 0).

    ``t`` slow time of each record; ``a`` ``(n, m+1)`` and ``u`` ``(n, m)`` the parameters
    (for an AdditiveNetwork, flat: ``a`` ``(n, 1 + d m)`` with a0 first, then coordinate by
    coordinate, ``u`` ``(n, d m)``; for a GaussianNetwork ``u`` holds W by rows, ``(n, m d)``);
    ``loss`` the exact population loss at each record (no noise); ``steps`` the steps taken;
    ``status`` ``"ok"`` or ``"diverged"`` (the parameters became non-finite; the records stop
    at the last finite state); ``final`` the last recorded state as a Network.
    """

    t: np.ndarray
    a: np.ndarray
    u: np.ndarray
    loss: np.ndarray
    steps: int
    status: str
    final: Network

    def __repr__(self):
        return (f"Trajectory(status={self.status!r}, steps={self.steps}, records={len(self.t)}, "
                f"t_end={self.t[-1]:.6g}, final loss={self.loss[-1]:.6g})")


def record_losses(net, target, a_rec, u_rec) -> np.ndarray:
    """The exact population loss at every record (flat rows, as in a Trajectory)."""
    if net.kind == "gaussian":
        return _gaussian.record_losses(net._kernel, target._kernel, a_rec, u_rec)
    if net.kind == "additive":
        from .population import population_loss
        return np.array([population_loss(net.from_flat(a, u), target)
                         for a, u in zip(a_rec, u_rec)])
    return _population.record_losses(net._kernel, target._kernel, a_rec, u_rec)


def _trajectory(net, target, a_rec, u_rec, record_steps, steps, written, dt):
    """Cut the records to those written and add their exact population losses."""
    a_rec, u_rec = a_rec[:written], u_rec[:written]
    status = "ok" if written == len(record_steps) else "diverged"
    return Trajectory(t=record_steps[:written] * dt, a=a_rec, u=u_rec,
                      loss=record_losses(net, target, a_rec, u_rec), steps=steps,
                      status=status, final=net.from_flat(a_rec[-1], u_rec[-1]))


class _SgdJob:
    """One checked SGD run, ready to go: ``job.run(net, seed, samples)``."""

    def __init__(self, target, h, eps, t_end, steps, noise, noise_dist, n_records, width):
        self.target = target
        self.h = _checks.as_positive(h, "h")
        self.eps = _checks.as_positive(eps, "eps")
        self.steps = _checks.steps(self.h, self.eps, t_end, steps)
        self.noise = _checks.as_nonnegative(noise, "noise")
        self.noise_dist = _checks.noise_code(noise_dist)
        self.record_steps = _checks.record_steps(self.steps, n_records, width)

    def settings(self):
        """The keyword arguments every SGD kernel takes."""
        return dict(h=self.h, eps=self.eps, record_steps=self.record_steps, noise=self.noise,
                    noise_dist=self.noise_dist)

    def run(self, net, seed, samples, use_sorted):
        kernel = net._kernel
        n = len(self.record_steps)
        a_rec, u_rec = np.empty((n, kernel.a.size)), np.empty((n, kernel.u.size))
        if samples is None:
            draws = dict(bit_generator=np.random.PCG64(_checks.stream(seed, "samples")))
        else:
            draws = dict(xs=samples[0], xis=samples[1])
        run = (_sgd_sorted.sgd_sorted if use_sorted else
               _sgd_gaussian.sgd if net.kind == "gaussian" else _sgd_dense.sgd)
        steps, written = run(kernel, self.target._kernel, a_rec=a_rec, u_rec=u_rec,
                             **self.settings(), **draws)
        return _trajectory(net, self.target, a_rec, u_rec, self.record_steps, steps, written,
                           self.h * self.eps)

    def run_lanes(self, nets, seeds):
        """Up to REPLICAS_IN_LOCKSTEP (16) univariate replicas of one shape in lockstep, one
        per vector lane: the same bits as the dense kernel gives each of them alone."""
        n = len(self.record_steps)
        first = nets[0]
        a_rec, u_rec = np.empty((len(nets), n, first.m + 1)), np.empty((len(nets), n, first.m))
        counts = _sgd_lockstep.sgd_lanes([net._kernel for net in nets], self.target._kernel,
                                         a_rec=a_rec, u_rec=u_rec,
                                         bit_generators=[np.random.PCG64(_checks.stream(s, "samples"))
                                                         for s in seeds],
                                         **self.settings())
        return [_trajectory(net, self.target, a_rec[i], u_rec[i], self.record_steps,
                            steps, written, self.h * self.eps)
                for i, (net, (steps, written)) in enumerate(zip(nets, counts))]


def sgd(net, target, *, h, eps, t_end=None, steps=None, noise=1.0, noise_dist="uniform",
        seed=0, n_records=100, samples=None, kernel="auto") -> Trajectory:
    """Online SGD on fresh samples ``x ~ U[0, 1)``, ``y = f*(x) + xi``, two step sizes
    (docs/maths.rst §4.1).

    Each step, with ``r = f(x) - y`` and both gradients at the old parameters::

        a_j <- a_j - h * 2 r phi_j(x)         u_j <- u_j + h * eps * (2 r a_j / eta) s'((x - u_j)/eta)

    Parameters
    ----------
    net : Network, AdditiveNetwork or GaussianNetwork
        The start: ramp, smoothstep or relu (relu, erf or linear on Gaussian inputs).
    target : Network, AdditiveNetwork, GaussianNetwork or HermiteTarget
        The teacher, of the same kind. For a GaussianNetwork each step draws
        ``x ~ N(0, I_d)`` and updates ``w_j <- w_j - 2 h eps r a_j s'(w_j . x) x``.
    h, eps : float
        Step of the outer weights, and ratio of the positions' step to it (both > 0).
    t_end, steps : float, int
        Exactly one: slow time (``steps = round(t_end / (h * eps))``) or the step count.
    noise : float
        Label noise scale: uniform on ``[-noise, noise]`` or Gaussian with standard
        deviation ``noise`` (``noise_dist``, "uniform" or "gaussian").
    seed : int or SeedSequence
        The draws come from PCG64 on the seed's "samples" child
        (``SeedSequence(seed, spawn_key=(1,))``; docs/maths.rst §4.3): x then xi, each step.
    n_records : int
        Records evenly spaced in steps, first and last included.
    samples : (x, xi), optional
        Two arrays of length ``steps`` that replace the draws.
    kernel : {"auto", "dense", "sorted"}
        "dense" visits every neuron every step; "sorted" keeps a univariate ramp or
        smoothstep network sorted by position and visits only the neurons in transition
        (faster for wide networks of narrow neurons); "auto" picks by :func:`sorted_pays`.
        The two agree to rounding, not to the bit.

    Returns
    -------
    Trajectory
    """
    _checks.trainable(net)
    _checks.pair(net, target)
    use_sorted = _kernel_choice(kernel, net)
    job = _SgdJob(target, h, eps, t_end, steps, noise, noise_dist, n_records,
                  net._kernel.a.size + net._kernel.u.size)
    seed = _checks.seed(seed)
    if samples is not None:
        samples = _checks.samples(samples, job.steps, net._kernel.d)
    return job.run(net, seed, samples, use_sorted)


def _lockstep_groups(nets, alone):
    """Slices of the replicas that run together: groups of REPLICAS_IN_LOCKSTEP where they
    share one shape (and nothing asks them to run ``alone``), a short last group one by
    one (a group costs as much as a full one)."""
    n = len(nets)
    if alone or len({(type(net), net.m, net.eta, net.activation) for net in nets}) > 1:
        return [slice(i, i + 1) for i in range(n)]
    width = _sgd_lockstep.REPLICAS_IN_LOCKSTEP
    groups = [slice(i, min(i + width, n)) for i in range(0, n, width)]
    if groups[-1].stop - groups[-1].start < width // 2:
        last = groups.pop()
        groups += [slice(i, i + 1) for i in range(last.start, last.stop)]
    return groups


def _replicas(nets, target, seeds, samples, kernel, run):
    """sgd_many's arguments checked: one net, seed and sample pair per replica, whether each
    takes the sorted kernel, and the checked run."""
    if isinstance(seeds, (int, np.integer)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"seeds must be a sequence of seeds, one per replica (e.g. "
                         f"range({seeds!r})), got {seeds!r}")
    seeds = [_checks.seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if isinstance(nets, _checks.Validated):
        nets = [nets] * len(seeds)
    elif hasattr(nets, "__iter__") and not isinstance(nets, str):
        nets = list(nets)
    else:
        raise TypeError(f"nets must be a Network or a sequence of them, one per seed; got "
                        f"{type(nets).__name__}")
    if len(nets) != len(seeds):
        raise ValueError(f"nets must be one Network or one per seed: {len(nets)} nets for "
                         f"{len(seeds)} seeds")
    for i, net in enumerate(nets):
        _checks.trainable(net, f"nets[{i}]")
        _checks.pair(net, target, f"nets[{i}]")
    use_sorted = [_kernel_choice(kernel, net, f"nets[{i}]") for i, net in enumerate(nets)]
    job = _SgdJob(target, *run, max(net._kernel.a.size + net._kernel.u.size for net in nets))
    if samples is None:
        samples = [None] * len(seeds)
    elif not isinstance(samples, (list, tuple)):
        raise TypeError(f"samples must be a list of (x, xi) pairs, one per seed; got "
                        f"{type(samples).__name__}")
    elif len(samples) != len(seeds):
        raise ValueError(f"samples must hold one (x, xi) pair per seed, got {len(samples)}")
    else:
        samples = [_checks.samples(s, job.steps, net._kernel.d, f"samples[{i}]")
                   for i, (s, net) in enumerate(zip(samples, nets))]
    return nets, seeds, samples, use_sorted, job


def sgd_many(nets, target, *, seeds, h, eps, t_end=None, steps=None, noise=1.0,
             noise_dist="uniform", n_records=100, samples=None, workers=None, progress=False,
             kernel="auto") -> list:
    """Independent SGD replicas on all cores; one :class:`Trajectory` per replica.

    Parameters
    ----------
    nets : Network, AdditiveNetwork, GaussianNetwork, or a sequence of them
        One network (a shared start) or one per seed.
    seeds : sequence of int
        One per replica.
    samples : sequence of (x, xi), optional
        One pair per replica, replacing its draws.
    workers : int, optional
        Threads; all cores by default.
    progress : bool
        Show a tqdm bar (if tqdm is installed).
    h, eps, t_end, steps, noise, noise_dist, n_records, kernel
        As for :func:`sgd`.

    Returns
    -------
    list of Trajectory
        Replica ``i`` equals ``sgd(nets[i], target, seed=seeds[i], ...)`` to the bit,
        whatever ``workers``: each replica has its own random stream, and replicas of one
        shape run 16 at a time in lockstep, one per vector lane, in one nogil kernel call.
    """
    nets, seeds, samples, use_sorted, job = _replicas(nets, target, seeds, samples, kernel,
                                                      (h, eps, t_end, steps, noise, noise_dist,
                                                       n_records))
    workers = _checks.workers(workers)
    groups = _lockstep_groups(nets, samples[0] is not None or any(use_sorted)
                              or nets[0].kind != "univariate")

    def run(group):
        if group.stop - group.start > 1:
            return job.run_lanes(nets[group], seeds[group])
        i = group.start
        return [job.run(nets[i], seeds[i], samples[i], use_sorted[i])]

    if workers == 1 and not progress:                  # no thread to start nor wait on
        return [traj for group in groups for traj in run(group)]
    bar = progress_bar(len(nets), 0, progress, "sgd_many", "replica")
    try:
        with kernel_threads(workers) as pool:
            futures = {pool.submit(run, group): group for group in groups}
            if bar is not None:
                for future in as_completed(futures):
                    bar.update(futures[future].stop - futures[future].start)
            return [traj for future in futures for traj in future.result()]
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def kernel_threads(workers):
    """A thread pool for kernels. Signals reach the main thread only, which waits on the
    pool; if anything ends that wait (Ctrl-C), the kernels on the workers are told to stop
    (_network.stop_kernels) and the queued work is cancelled, so that it ends at once."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    except BaseException:
        _network.stop_kernels()
        pool.shutdown(wait=True, cancel_futures=True)
        _network.stop_kernels(False)
        raise
    pool.shutdown(wait=True)


def progress_bar(total, initial, enabled, desc, unit):
    """A tqdm bar when ``enabled`` and tqdm is installed (the ``progress`` extra), else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit=unit, desc=desc)


def gd(net, target, X, Y=None, *, h, eps, epochs, batch_size=None, seed=0,
       n_records=100) -> Trajectory:
    """Mini-batch gradient descent on a fixed data set, two step sizes, on the mean square
    over each batch (docs/maths.rst §4.2)::

        a <- a - h grad_a mean (f(x_i) - y_i)^2       u <- u - h * eps grad_u (same)

    Parameters
    ----------
    net, target : Network, AdditiveNetwork or GaussianNetwork (target: or HermiteTarget)
        The start and the teacher, of the same kind.
    X : array_like, shape (n,) or (n, d)
        The inputs.
    Y : array_like, shape (n,), optional
        The labels; ``target(X)`` by default.
    h, eps : float
        Step of the outer weights, and ratio of the positions' step to it.
    epochs : int
        Passes over the data.
    batch_size : int, optional
        The whole set by default (full-batch GD, the paper's appendix); smaller batches are
        drawn from a fresh permutation every epoch, from PCG64 on the seed's "batches"
        child (``SeedSequence(seed, spawn_key=(2,))``; docs/maths.rst §4.3).
    n_records : int
        Records evenly spaced in epochs; slow time is ``steps * h * eps``.

    Returns
    -------
    Trajectory
        Its losses are exact population losses against ``target``.
    """
    _checks.trainable(net)
    _checks.pair(net, target)
    h, eps = _checks.as_positive(h, "h"), _checks.as_positive(eps, "eps")
    d = net._kernel.d
    X, Y = _checks.data(X, Y, target, d)
    epochs = _checks.as_count(epochs, "epochs", 1)
    if epochs > _checks.MAX_STEPS:
        raise ValueError(f"epochs must be at most 2^53 = {_checks.MAX_STEPS:.3g}, got {epochs}")
    n = X.shape[0]
    batch = n if batch_size is None else _checks.as_count(batch_size, "batch_size", 1)
    if batch > n:
        raise ValueError(f"batch_size must be at most the data size {n}, got {batch}")
    rng = np.random.Generator(np.random.PCG64(_checks.stream(seed, "batches")))
    record_epochs = _checks.record_steps(epochs, n_records, net._kernel.a.size + net._kernel.u.size)
    per_epoch = -(-n // batch)
    kernels = _sgd_gaussian if net.kind == "gaussian" else _sgd_dense
    params = kernels.Padded(net._kernel)                   # the kernel's layout, made once
    a_rec = np.empty((len(record_epochs), net._kernel.a.size))
    u_rec = np.empty((len(record_epochs), net._kernel.u.size))
    a_rec[0], u_rec[0] = net._kernel.a, net._kernel.u
    order = np.arange(n, dtype=np.intp)
    written, steps = 1, 0
    for epoch in range(1, epochs + 1):
        if batch < n:
            order = rng.permutation(n).astype(np.intp)
        took = kernels.gd_epoch(params, h, eps, X, Y, order, batch)
        steps += took
        if took < per_epoch or not params.finite():
            break
        if epoch == record_epochs[written]:
            params.copy_to(a_rec[written], u_rec[written])
            written += 1
    return _trajectory(net, target, a_rec, u_rec, record_epochs * per_epoch, steps, written,
                       h * eps)
