"""The paper's own loop, as a reproduction mode of the command line:
``twotimescale reproduce fig3|fig5|fig7 --as-published`` (docs/reproductions.rst).

The paper's code trains differently from our presets in four ways, and this mode follows it
in all four:

* its forward pass is the cubic step (our smoothstep), but its u-gradient is the ramp's: the
  indicator of ``|x - u| <= eta/2``, over ``eta``;
* its starts and its samples come from NumPy's legacy stream (``RandomState``, MT19937)
  seeded with 42, in its order: the m initial positions (then sorted), then per step x and
  the noise ``2 rand() - 1``; the runs of Figure 7 follow one another on that one stream
  (eps = 0.01, 0.1, 1, twenty runs each);
* it takes ``int(t / (h eps)) + 1`` updates;
* its bias is a neuron at ``-eta/2``, whose value is 1 on [0, 1] and whose position moves
  only when x is exactly 0 (probability 2^-53 a draw): a plain bias here.

Its target is the cubic step network of width 1e-8 that its code builds. Nothing here is an
activation a user trains with by accident: the rule lives in the kernel behind a private flag.
The NumPy twin is ``twotimescale.reference.published_sgd``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import _checks, plots
from ._compiled import _sgd_dense, _sgd_sorted
from .dynamics import Trajectory, _trajectory, kernel_threads
from .experiment import make_target
from .flows import covers_jumps, jump_floor, limit_flow
from .network import Network

SEED = 42                                  # main.py of the paper's code
M, ETA, H = 20, 4e-3, 1e-5
#: the paper's target as its code builds it: a cubic step network of width 1e-8
TARGET = Network([1, 4, -4, 2, -2, 4], np.linspace(0.2, 0.8, 5), eta=1e-8, activation="smoothstep")
#: preset -> (eps of its runs, slow time, runs per eps)
SETTINGS = {"fig3": ((2e-5,), 0.035, 1), "fig5": ((1.0,), 10.0, 1),
            "fig7": ((0.01, 0.1, 1.0), 3.0, 20)}


def paper_stream(seed: int = SEED) -> np.random.RandomState:
    """The paper's random stream: NumPy's legacy ``RandomState(seed)``."""
    return np.random.RandomState(seed)


def bit_generator_at(rng: np.random.RandomState) -> np.random.MT19937:
    """A new MT19937 in the state ``rng`` is in now: it draws what ``rng.rand()`` would."""
    key, pos = rng.get_state()[1:3]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}
    return bits


def skip(rng: np.random.RandomState, draws: int, chunk: int = 1 << 22) -> None:
    """Advance ``rng`` by ``draws`` uniform draws, a chunk at a time."""
    while draws > 0:
        rng.random_sample(min(chunk, draws))
        draws -= chunk


def bit_state(rng: np.random.RandomState) -> np.random.RandomState:
    """A copy of ``rng`` in its present state (the original goes on independently)."""
    copy = np.random.RandomState()
    copy.set_state(rng.get_state())
    return copy


def published_sgd(start: Network, rng, *, h: float, eps: float, steps: int,
                  n_records: int = 100) -> Trajectory:
    """The paper's SGD (its rule: the ramp's slope in u) from ``start``, a smoothstep
    network, for ``steps`` updates drawing from ``rng`` (a RandomState, left untouched:
    the kernel draws from a copy of its state). Returns a Trajectory against TARGET."""
    if start.activation != "smoothstep":
        raise ValueError("the paper's rule evaluates the cubic step: start must be a "
                         f"smoothstep network, got {start.activation!r}")
    record_steps = _checks.record_steps(steps, n_records)
    a_rec, u_rec = np.empty((len(record_steps), M + 1)), np.empty((len(record_steps), M))
    taken, written = _sgd_sorted.sgd_sorted(start._kernel, TARGET._kernel, h=h, eps=eps,
                                            record_steps=record_steps, a_rec=a_rec, u_rec=u_rec,
                                            bit_generator=bit_generator_at(rng), noise=1.0,
                                            noise_dist=_sgd_dense.NOISE["uniform"],
                                            published=True)
    return _trajectory(start, TARGET, a_rec, u_rec, record_steps, taken, written, h * eps)


def paper_runs(name: str, *, quick: bool = False, workers=None, settings=None) -> list:
    """Every SGD run of preset ``name`` as the paper's code makes it: (eps, start,
    Trajectory), in its order on its stream. The stream advances past each run's draws
    while earlier runs train on the other threads. ``settings`` replaces the preset's
    (eps tuple, slow time, runs per eps)."""
    eps_list, t_end, repeats = settings or SETTINGS[name]
    h = 10 * H if quick else H
    rng = paper_stream()
    with kernel_threads(_checks.workers(workers)) as pool:
        jobs = []
        for eps in eps_list:
            steps = int(t_end / (h * eps)) + 1
            for _ in range(repeats):
                start = Network(np.zeros(M + 1), np.sort(rng.rand(M)), eta=ETA,
                                activation="smoothstep")
                n_records = 200 if repeats == 1 else 50
                jobs.append((eps, start, pool.submit(published_sgd, start, bit_state(rng), h=h,
                                                     eps=eps, steps=steps, n_records=n_records)))
                skip(rng, 2 * steps)
        return [(eps, start, job.result()) for eps, start, job in jobs]


def reproduce_published(name: str, *, quick: bool = False, out: str = "out", workers=None):
    """``reproduce NAME --as-published``: the paper's runs, their figures and a summary in
    ``out/NAME-published`` (``-published-quick``). Returns the paths written."""
    if name not in SETTINGS:
        raise ValueError(f"--as-published reproduces {', '.join(SETTINGS)}; {name!r} has no "
                         "published loop of that kind")
    folder = os.path.join(out, f"{name}-published" + ("-quick" if quick else ""))
    os.makedirs(folder, exist_ok=True)
    begin = time.perf_counter()
    runs = paper_runs(name, quick=quick, workers=workers)
    wall = time.perf_counter() - begin
    jumps = make_target({"breaks": list(np.linspace(0.2, 0.8, 5)), "values": [1, 5, 1, 3, 1, 5]})
    floor = jump_floor(jumps, eta=ETA, activation="smoothstep")
    made = []
    if name == "fig7":
        made.append(plots.boxes(os.path.join(folder, "fig7.png"),
                                {f"{eps:g}": np.array([t.loss[-1] for e, _, t in runs if e == eps])
                                 for eps in SETTINGS[name][0]}, xlabel="$\\varepsilon$",
                                title="fig7 as published: final loss per eps", floor=floor))
    else:
        eps, start, traj = runs[0]
        limit = limit_flow(start, TARGET, t_end=traj.t[-1], n_records=200)
        made += [plots.fit(os.path.join(folder, f"{name}.png"), traj.final, jumps,
                           f"as published: SGD, eps = {eps:g}, t = {traj.t[-1]:.4g}"),
                 plots.losses(os.path.join(folder, "losses.png"),
                              {"SGD (the paper's rule)": (traj.t, traj.loss),
                               "limit (exact, same start)": (limit.t, limit.loss)}),
                 plots.positions(os.path.join(folder, "positions.png"), traj.t, traj.u,
                                 jumps.breaks, "as published: neuron positions")]
    made.append(_summary(os.path.join(folder, "summary.txt"), name, quick, runs, jumps, floor, wall))
    return made


def _summary(path, name, quick, runs, jumps, floor, wall):
    lines = [f"twotimescale reproduce {name} --as-published{' --quick' if quick else ''}: "
             f"{len(runs)} runs of the paper's loop (seed {SEED}, legacy MT19937), {wall:.1f} s",
             "", f"floor, one neuron on each jump (smoothstep, eta = {ETA}): L = {floor:.5g}",
             f"{'eps':>8} {'runs':>5} {'steps':>10} {'on every jump':>14} {'final loss: median':>19} "
             f"{'min':>9} {'max':>9}"]
    for eps in dict.fromkeys(e for e, _, _ in runs):
        trajs = [t for e, _, t in runs if e == eps]
        final = np.array([t.loss[-1] for t in trajs])
        covered = sum(covers_jumps(t.final, jumps) for t in trajs)
        lines.append(f"{eps:>8g} {len(trajs):>5} {trajs[0].steps:>10} {covered:>9} of {len(trajs):<3} "
                     f"{np.median(final):>19.4g} {final.min():>9.4g} {final.max():>9.4g}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
