"""Online SGD and mini-batch GD with two step sizes (DESIGN.md section 4).

The outer weights move with step ``h``, the positions with ``h * eps``; time is reported as
slow time ``t = steps * h * eps``. Every argument is checked here, before any work; the loops
run in ``ext/dynamics.pyx`` without the GIL. The NumPy twins are ``reference.sgd``/``gd``.
"""
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from ._compiled import _dynamics, _population
from .network import AdditiveNetwork, Network, as_count, as_positive

NOISE = {"uniform": 0, "gaussian": 1}


# Sorted SGD wins when m eta <= c m - d. On the bench machine (bench/bench_sgd.py) a step
# costs about 13 + 0.36 m ns dense and 80 + 0.06 m + 3.9 m eta sorted for a ramp, and
# 17 + 0.68 m against 80 + 0.07 m + 4.8 m eta for a smoothstep.
_SORTED_WHEN = {"ramp": (0.078, 17.0), "smoothstep": (0.127, 13.0)}


def _sorted(net):
    """Whether SGD trains ``net`` with its neurons sorted by position (_dynamics.sgd_sorted):
    only ramp and smoothstep saturate, and it wins where few neurons are in transition,
    m eta <= c m - d (_SORTED_WHEN: a ramp of m = 1000 up to eta = 0.06, a smoothstep up to
    0.11; never a ramp below m = 220 nor a smoothstep below m = 103)."""
    if not isinstance(net, Network) or net.activation not in _SORTED_WHEN:
        return False
    c, d = _SORTED_WHEN[net.activation]
    return net.m * net.eta <= c * net.m - d


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A training run, recorded at ``len(t)`` times (the first at 0).

    ``t`` slow time of each record; ``a`` ``(n, m+1)`` and ``u`` ``(n, m)`` the parameters
    (for an AdditiveNetwork, flat: ``a`` ``(n, 1 + d m)`` with a0 first, then coordinate by
    coordinate, ``u`` ``(n, d m)``);
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


class _Flat:
    """A network as the kernels see it: flat ``a`` (bias first), flat ``u``, coordinate by
    coordinate, ``d`` coordinates (1 for a univariate Network)."""

    def __init__(self, net):
        self.net = net
        self.additive = isinstance(net, AdditiveNetwork)
        self.a, self.u = net.flat() if self.additive else (net.a, net.u)
        self.d = net.d if self.additive else 1

    def rebuild(self, a, u):
        net = self.net
        if self.additive:
            return net.replace(a0=a[0], a=a[1:].reshape(net.d, net.m), u=u.reshape(net.d, net.m))
        return net.replace(a=a, u=u)

    def loss(self, target, a, u):
        if self.additive:
            from .population import population_loss
            return population_loss(self.rebuild(a, u), target)
        net = self.net
        return _population.loss_and_grad(a, u, net.eta, net.code, target.a, target.u,
                                         target.eta, target.code)


def _check_pair(net, target, name="net"):
    """A trainable network and a teacher of the same kind: the network's _Flat."""
    _check_network(net, name)
    if isinstance(net, AdditiveNetwork):
        if not isinstance(target, AdditiveNetwork) or target.d != net.d:
            raise ValueError(f"target must be an AdditiveNetwork with d = {net.d}, like {name}")
    elif not isinstance(target, Network):
        raise TypeError(f"target must be a twotimescale.Network, got {type(target).__name__}")
    return _Flat(net)


def _check_network(net, name="net"):
    if not isinstance(net, (Network, AdditiveNetwork)):
        raise TypeError(f"{name} must be a twotimescale.Network, got {type(net).__name__}")
    if net.activation == "heaviside":
        raise ValueError(f"{name}: a heaviside network cannot be trained by gradient steps (its "
                         "derivative is a Dirac mass); use ramp, smoothstep or relu, or the "
                         "eta -> 0 limit")


def _resolve_steps(h, eps, t_end, steps):
    if (t_end is None) == (steps is None):
        raise ValueError("give exactly one of t_end (slow time) and steps")
    if steps is not None:
        return as_count(steps, "steps", 1)
    t_end = as_positive(t_end, "t_end")
    n = round(t_end / (h * eps))
    if n < 1:
        raise ValueError(f"t_end = {t_end} is less than one step (h * eps = {h * eps}); "
                         "raise t_end or h")
    return n


def _record_steps(steps, n_records):
    n_records = as_count(n_records, "n_records", 2)
    return np.unique(np.round(np.linspace(0, steps, n_records)).astype(np.intp))


def _inputs(X, rows, d, name):
    """Inputs as a (rows, d) float64 array: (rows,) is accepted for d = 1."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if X.ndim == 1 and d == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != d or (rows is not None and X.shape[0] != rows):
        want = f"({rows if rows is not None else 'n'},{'' if d == 1 else f' {d}'})"
        raise ValueError(f"{name} must have shape {want}, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must be finite")
    return np.ascontiguousarray(X)


def _check_samples(samples, steps, d, name="samples"):
    try:
        x, xi = samples
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (x, xi) of arrays of length steps") from None
    x = _inputs(x, steps, d, f"{name}: x")
    xi = np.ascontiguousarray(xi, dtype=np.float64)
    if xi.shape != (steps,):
        raise ValueError(f"{name}: xi must have shape ({steps},) (one per step), got {xi.shape}")
    if not np.all(np.isfinite(xi)):
        raise ValueError(f"{name}: xi must be finite")
    return x, xi


def _trajectory(flat, target, a_rec, u_rec, record_steps, steps, written, dt):
    """Cut the records to those written and add their exact population losses."""
    a_rec, u_rec = a_rec[:written], u_rec[:written]
    loss = np.array([flat.loss(target, a, u) for a, u in zip(a_rec, u_rec)])
    status = "ok" if written == len(record_steps) else "diverged"
    return Trajectory(t=record_steps[:written] * dt, a=a_rec, u=u_rec, loss=loss, steps=steps,
                      status=status, final=flat.rebuild(a_rec[-1], u_rec[-1]))


class _SgdJob:
    """One checked SGD run, ready to go: ``job.run(net, seed, samples)``."""

    def __init__(self, target, h, eps, t_end, steps, noise, noise_dist, n_records):
        self.target = target
        self.teacher = _Flat(target)
        self.h = as_positive(h, "h")
        self.eps = as_positive(eps, "eps")
        self.steps = _resolve_steps(self.h, self.eps, t_end, steps)
        try:
            self.noise = float(noise)
        except (TypeError, ValueError):
            raise ValueError(f"noise must be a number >= 0, got {noise!r}") from None
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be finite and >= 0, got {noise}")
        if noise_dist not in NOISE:
            raise ValueError(f"noise_dist must be one of {', '.join(NOISE)}; got {noise_dist!r}")
        self.noise_dist = NOISE[noise_dist]
        self.record_steps = _record_steps(self.steps, n_records)

    def run(self, net, seed, samples):
        flat = _Flat(net)
        n = len(self.record_steps)
        a_rec, u_rec = np.empty((n, flat.a.size)), np.empty((n, flat.u.size))
        kwargs = {}
        if samples is None:
            kwargs["bit_generator"] = np.random.PCG64(seed)
        else:
            kwargs["xs"], kwargs["xis"] = samples
        t = self.teacher
        common = (net.eta, net.code, t.a, t.u, t.net.eta, t.net.code, self.h, self.eps,
                  self.record_steps, a_rec, u_rec)
        if _sorted(net):
            steps, written = _dynamics.sgd_sorted(flat.a, flat.u, *common, noise=self.noise,
                                                  noise_dist=self.noise_dist, **kwargs)
        else:
            steps, written = _dynamics.sgd(flat.a, flat.u, flat.d, *common, noise=self.noise,
                                           noise_dist=self.noise_dist, **kwargs)
        return _trajectory(flat, self.target, a_rec, u_rec, self.record_steps, steps, written,
                           self.h * self.eps)

    def run_lanes(self, nets, seeds):
        """Up to GROUP (16) univariate replicas of one shape in lockstep, one per vector lane: the
        same bits as ``run`` gives each of them alone."""
        first = nets[0]
        a, u = np.stack([net.a for net in nets]), np.stack([net.u for net in nets])
        n = len(self.record_steps)
        a_rec, u_rec = np.empty((len(nets), n, first.m + 1)), np.empty((len(nets), n, first.m))
        t = self.teacher
        counts = _dynamics.sgd_lanes(a, u, first.eta, first.code, t.a, t.u, t.net.eta,
                                     t.net.code, self.h, self.eps, self.record_steps, a_rec,
                                     u_rec, [np.random.PCG64(s) for s in seeds],
                                     noise=self.noise, noise_dist=self.noise_dist)
        return [_trajectory(_Flat(net), self.target, a_rec[i], u_rec[i], self.record_steps,
                            steps, written, self.h * self.eps)
                for i, (net, (steps, written)) in enumerate(zip(nets, counts))]


def _check_seed(seed, name="seed"):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    try:
        return np.random.SeedSequence(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a whole number >= 0 or a SeedSequence: {exc}") from None


def sgd(net, target, *, h, eps, t_end=None, steps=None, noise=1.0, noise_dist="uniform",
        seed=0, n_records=100, samples=None):
    """Online SGD on fresh samples ``x ~ U[0, 1)``, ``y = f*(x) + xi``, two step sizes.

    Each step, with ``r = f(x) - y`` and both gradients at the old parameters::

        a_j <- a_j - h * 2 r phi_j(x)         u_j <- u_j + h * eps * (2 r a_j / eta) s'((x - u_j)/eta)

    Give exactly one of ``t_end`` (slow time; ``steps = round(t_end / (h * eps))``) and
    ``steps``. ``noise`` is the label noise scale: uniform on ``[-noise, noise]`` or Gaussian
    with standard deviation ``noise`` (``noise_dist``). The draws come from
    ``PCG64(SeedSequence(seed))``: x then xi, each step; ``samples=(x, xi)``, two arrays of
    length ``steps``, replaces them. Records (``n_records``, first and last included) are
    evenly spaced in steps. Returns a :class:`Trajectory`.
    """
    flat = _check_pair(net, target)
    job = _SgdJob(target, h, eps, t_end, steps, noise, noise_dist, n_records)
    seed = _check_seed(seed)
    if samples is not None:
        samples = _check_samples(samples, job.steps, flat.d)
    return job.run(net, seed, samples)


def sgd_many(nets, target, *, seeds, h, eps, t_end=None, steps=None, noise=1.0,
             noise_dist="uniform", n_records=100, samples=None, workers=None, progress=False):
    """Independent SGD replicas on all cores; one :class:`Trajectory` per replica.

    ``nets`` is one network (shared start) or one per seed; ``seeds`` one per replica.
    Replica ``i`` equals ``sgd(nets[i], target, seed=seeds[i], ...)`` to the bit, whatever
    ``workers`` (threads; default all cores): each replica has its own random stream, and
    replicas of one shape run 16 at a time in lockstep, one per vector lane, in one nogil
    kernel call. ``samples``, if given, is one ``(x, xi)`` pair per replica. ``progress=True``
    shows a tqdm bar (if tqdm is installed).
    """
    seeds = [_check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    nets = [nets] * len(seeds) if isinstance(nets, (Network, AdditiveNetwork)) else list(nets)
    if len(nets) != len(seeds):
        raise ValueError(f"nets must be one Network or one per seed: {len(nets)} nets for "
                         f"{len(seeds)} seeds")
    flats = [_check_pair(net, target, f"nets[{i}]") for i, net in enumerate(nets)]
    job = _SgdJob(target, h, eps, t_end, steps, noise, noise_dist, n_records)
    if samples is None:
        samples = [None] * len(seeds)
    elif len(samples) != len(seeds):
        raise ValueError(f"samples must hold one (x, xi) pair per seed, got {len(samples)}")
    else:
        samples = [_check_samples(s, job.steps, f.d, f"samples[{i}]")
                   for i, (s, f) in enumerate(zip(samples, flats))]
    workers = os.cpu_count() if workers is None else as_count(workers, "workers", 1)
    n = len(nets)
    if (samples[0] is not None or len({(type(net), net.m, net.eta, net.activation) for net in nets}) > 1
            or isinstance(nets[0], AdditiveNetwork) or _sorted(nets[0])):
        groups = [slice(i, i + 1) for i in range(n)]
    else:                           # lockstep groups; a short last one runs replica by replica
        width = _dynamics.REPLICAS_IN_LOCKSTEP  # (a group costs as much as a full one)
        groups = [slice(i, min(i + width, n)) for i in range(0, n, width)]
        if groups[-1].stop - groups[-1].start < width // 2:
            last = groups.pop()
            groups += [slice(i, i + 1) for i in range(last.start, last.stop)]

    def run(group):
        if group.stop - group.start > 1:
            return job.run_lanes(nets[group], seeds[group])
        return [job.run(nets[group.start], seeds[group.start], samples[group.start])]

    bar = progress_bar(n, 0, progress, "sgd_many", "replica")
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run, group): group for group in groups}
            if bar is not None:
                for future in as_completed(futures):
                    bar.update(futures[future].stop - futures[future].start)
            return [traj for future in futures for traj in future.result()]
    finally:
        if bar is not None:
            bar.close()


def progress_bar(total, initial, enabled, desc, unit):
    """A tqdm bar when ``enabled`` and tqdm is installed (the ``progress`` extra), else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit=unit, desc=desc)


def gd(net, target, X, Y=None, *, h, eps, epochs, batch_size=None, seed=0, n_records=100):
    """Mini-batch gradient descent on the fixed data set ``(X, Y)`` (``Y = target(X)`` by
    default), two step sizes, on the mean square over each batch::

        a <- a - h grad_a mean (f(x_i) - y_i)^2       u <- u - h * eps grad_u (same)

    ``batch_size`` defaults to the whole set (full-batch GD, the paper's appendix); smaller
    batches are drawn from a fresh permutation every epoch (``PCG64(SeedSequence(seed))``).
    Records are evenly spaced in epochs; slow time is ``steps * h * eps``. Returns a
    :class:`Trajectory` whose losses are exact population losses against ``target``.
    """
    flat = _check_pair(net, target)
    h, eps = as_positive(h, "h"), as_positive(eps, "eps")
    X = _inputs(X, None, flat.d, "X")
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one point")
    Y = (target(X if flat.additive else X[:, 0]) if Y is None
         else np.ascontiguousarray(Y, dtype=np.float64))
    if Y.shape != (X.shape[0],):
        raise ValueError(f"Y must have one value per point of X, shape ({X.shape[0]},); "
                         f"got {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y must be finite")
    epochs = as_count(epochs, "epochs", 1)
    n = X.shape[0]
    batch = n if batch_size is None else as_count(batch_size, "batch_size", 1)
    if batch > n:
        raise ValueError(f"batch_size must be at most the data size {n}, got {batch}")
    rng = np.random.Generator(np.random.PCG64(_check_seed(seed)))
    record_epochs = _record_steps(epochs, n_records)
    per_epoch = -(-n // batch)
    params = _dynamics.Padded(flat.a, flat.u, flat.d)        # the kernel's layout, made once
    a_rec, u_rec = np.empty((len(record_epochs), flat.a.size)), np.empty((len(record_epochs), flat.u.size))
    a_rec[0], u_rec[0] = flat.a, flat.u
    order = np.arange(n, dtype=np.intp)
    written, steps = 1, 0
    for epoch in range(1, epochs + 1):
        if batch < n:
            order = rng.permutation(n).astype(np.intp)
        took = _dynamics.gd_epoch(params, net.eta, net.code, h, eps, X, Y, order, batch)
        steps += took
        if took < per_epoch or not params.finite():
            break
        if epoch == record_epochs[written]:
            params.copy_to(a_rec[written], u_rec[written])
            written += 1
    return _trajectory(flat, target, a_rec, u_rec, record_epochs * per_epoch, steps, written,
                       h * eps)
