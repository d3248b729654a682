"""Monte Carlo sweeps: every run of an experiment, on all local cores or on a Dask cluster,
each stored the moment it ends, so that an interrupted sweep resumes where it stopped.

A run is the pure function :func:`execute` of its params and seed, so where it runs (thread,
process, cluster worker) changes none of its results. Seeds of one grid point travel in
groups (:func:`execute_group`), whose SGD runs go side by side, with the same results.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, wait

import numpy as np

from . import _checks
from ._compiled import _sgd_lockstep
from .dynamics import gd, kernel_threads, progress_bar, sgd, sgd_many
from .endpoints import certify, polish
from .experiment import by_point, canonical, expand, load, make_network, make_target
from .flows import flow, limit_flow
from .network import Network
from .population import features_target, population_loss
from .store import Store


def execute(params, seed):
    """Run one grid point with one seed; returns the stored fields (trajectory included).

    The network is ``init_network(m, seed, ...)``; GD draws its data set from the child
    stream ``SeedSequence(seed, spawn_key=(1,))`` (its "samples" child) and its batches from
    ``spawn_key=(2,)``, as ``gd(seed=seed)`` does (docs/maths.rst §4.3).
    """
    nw, dyn = params["network"], params["dynamics"]
    target = make_target(params["target"], nw["d"])
    net = make_network(nw, seed)
    method = dyn["method"]
    start = time.perf_counter()
    if method == "sgd":
        traj = sgd(net, target, seed=seed, **_sgd_keywords(dyn))
    elif method == "gd":
        data = np.random.default_rng(_checks.stream(seed, "samples"))
        traj = gd(net, target, data.random((dyn["n_points"], nw["d"])), h=dyn["h"], eps=dyn["eps"],
                  epochs=dyn["epochs"], batch_size=dyn["batch_size"],
                  seed=seed, n_records=dyn["n_records"])
    elif method == "flow":
        traj = flow(net, target, eps=dyn["eps"], t_end=dyn["t_end"], rtol=dyn["rtol"],
                    atol=dyn["atol"], n_records=dyn["n_records"])
    else:
        traj = limit_flow(net, target, t_end=dyn["t_end"], rtol=dyn["rtol"], atol=dyn["atol"],
                          n_records=dyn["n_records"])
    return _stored(traj, time.perf_counter() - start, _analysed(params, traj, target))


def _sgd_keywords(dyn):
    return {key: dyn[key] for key in ("h", "eps", "t_end", "steps", "noise", "noise_dist",
                                      "n_records")}


def _analysed(params, traj, target):
    """With [analysis] certify = true, where the run ended (docs/maths.rst §7): its last
    state polished and certified; else None."""
    if not params.get("analysis", {}).get("certify"):
        return None
    polished, info = polish(traj.final, target)
    try:
        cert = certify(polished, target)
        verdict, lowest = cert.verdict, float(cert.eigenvalues[0])
    except ValueError:                                  # a kink on a jump: no Hessian there
        verdict, lowest = "no Hessian", np.nan
    return {"verdict": verdict, "polished_loss": info.loss, "min_eigenvalue": lowest,
            "end_grad_norm": info.start_grad_norm}


def _stored(traj, wall, analysis=None):
    """The fields the store keeps of a run."""
    return {"final_loss": float(traj.loss[-1]), "status": traj.status, "steps": int(traj.steps),
            "wall_s": wall, "t": traj.t, "loss": traj.loss, "u": traj.u, "a": traj.a,
            **(analysis or {})}


def execute_group(params, seeds):
    """:func:`execute` for several seeds of one grid point, the same results: SGD runs go
    through :func:`sgd_many` (replicas side by side in one thread, each the same bits as
    alone), the others one by one. ``wall_s`` is the group's time shared evenly."""
    dyn = params["dynamics"]
    if dyn["method"] != "sgd":
        return [execute(params, seed) for seed in seeds]
    start = time.perf_counter()
    nets = [make_network(params["network"], seed) for seed in seeds]
    target = make_target(params["target"], params["network"]["d"])
    runs = sgd_many(nets, target, seeds=seeds, workers=1, **_sgd_keywords(dyn))
    wall = (time.perf_counter() - start) / len(seeds)
    return [_stored(traj, wall, _analysed(params, traj, target)) for traj in runs]


def _groups(runs, slots):
    """The runs in groups of seeds of one grid point: at most a lockstep group of SGD
    replicas, and small enough that the ``slots`` threads get at least two groups each."""
    size = max(1, min(_sgd_lockstep.REPLICAS_IN_LOCKSTEP, len(runs) // (2 * slots)))
    return [same[i:i + size] for same in by_point(runs, lambda run: run.params)
            for i in range(0, len(same), size)]


def _local(runs, workers, tick):
    """(run, result) pairs as groups finish on local threads; None every ``tick`` seconds
    in which none did (the caller commits then)."""
    with kernel_threads(workers) as pool:
        pending = {pool.submit(execute_group, group[0].params, [run.seed for run in group]): group
                   for group in _groups(runs, workers)}
        while pending:
            done, _ = wait(pending, timeout=tick, return_when=FIRST_COMPLETED)
            if not done:
                yield None
            for future in done:
                yield from zip(pending.pop(future), future.result())


def execute_groups(groups):
    """:func:`execute_group` for several (params, seeds) groups, one after another: a Dask
    task, large enough that the scheduler's cost per run is small."""
    return [result for params, seeds in groups for result in execute_group(params, seeds)]


def _tasks(groups, slots):
    """The groups in consecutive tasks of about runs / (4 slots) runs each (at least one
    group): four tasks a worker thread, so that the cluster stays busy to the end and results
    come back in a few steps."""
    size = max(1, -(-sum(len(g) for g in groups) // (4 * slots)))
    tasks, current = [], []
    for group in groups:
        current.append(group)
        if sum(len(g) for g in current) >= size:
            tasks.append(current)
            current = []
    return tasks + ([current] if current else [])


def _dask(runs, scheduler, tick):
    """As _local, on a Dask cluster: tasks of several groups travel as params and seeds
    (_tasks), results come back as each task finishes."""
    try:
        from distributed import Client, wait as dask_wait
    except ImportError:
        raise ImportError("a Dask scheduler needs the 'distributed' package: "
                          "pip install 'twotimescale[dask]'") from None
    with Client(scheduler) as client:
        slots = max(1, sum(client.nthreads().values()))
        pending = {client.submit(execute_groups, [(g[0].params, [run.seed for run in g])
                                                  for g in task],
                                 key=f"twotimescale-{task[0][0].key}-{len(task)}", pure=False):
                   [run for g in task for run in g]
                   for task in _tasks(_groups(runs, slots), slots)}
        while pending:
            try:
                done = dask_wait(list(pending), timeout=tick, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                yield None
                continue
            for future in done:
                yield from zip(pending.pop(future), future.result())


def sweep(experiment, *, store, workers: int | None = None, scheduler: str | None = None,
          progress: bool = True) -> dict:
    """Run every grid point x seed of an experiment that the store does not hold yet,
    storing each run as it ends.

    Parameters
    ----------
    experiment : str or dict
        A TOML file's path, TOML text, or the same as a dict.
    store : str or path
        The SQLite results store (created if missing).
    workers : int, optional
        Local threads; all cores by default.
    scheduler : str, optional
        A Dask scheduler (``tcp://host:port``) to run on instead; its workers need
        twotimescale installed (runs travel as params and seeds, results come back here).
    progress : bool
        Show a tqdm bar (if tqdm is installed).

    Returns
    -------
    dict
        ``{"runs", "ran", "skipped"}``.
    """
    raw = load(experiment)
    runs = expand(raw)
    workers = _checks.workers(workers)
    with Store(store) as db:
        db.require_current()
        finished = db.finished()
        todo = [run for run in runs if run.key not in finished]
        bar = progress_bar(len(runs), len(runs) - len(todo), progress, "sweep", "run")
        results = (_dask(todo, scheduler, db.linger) if scheduler is not None
                   else _local(todo, workers, db.linger))
        diverged = 0
        try:
            for item in results:
                if item is None:                   # nothing finished for a while: commit
                    db.flush()
                    continue
                run, result = item
                db.save(run, result)
                if bar is not None:
                    diverged += result["status"] != "ok"
                    bar.update()
                    if diverged:
                        bar.set_postfix(diverged=diverged, refresh=False)
        finally:
            if bar is not None:
                bar.close()
    return {"runs": len(runs), "ran": len(todo), "skipped": len(runs) - len(todo)}


def target_variance(target):
    """Var f*(x) for x ~ U[0, 1]: int f*^2 - (int f*)^2, exactly."""
    zero = Network([0.0], [], eta=1.0)
    return population_loss(zero, target) - features_target(zero, target)[0] ** 2


def summarise(store, threshold=None):
    """One row per grid point: what varies, runs, final-loss median and quartiles, success
    rate (final loss < ``threshold``, default 1e-3 x the target's variance), median wall time,
    how many runs diverged (whose final loss may be NaN: they count as failures), and
    ``ends``, the verdicts of certified runs ([analysis] certify = true), counted. Rows
    are ordered by grid point (numerically), whatever order the runs finished in."""
    with Store(store, readonly=True) as db:
        rows = list(db.scalars())                  # no trajectory is read
    groups = by_point(rows, lambda row: row["params"])
    varying = _varying([group[0]["params"] for group in groups])
    table = []
    for group in groups:
        params = group[0]["params"]
        limit = threshold
        if limit is None:
            limit = 1e-3 * params["network"]["d"] * target_variance(make_target(params["target"]))
        losses = np.array([r["final_loss"] for r in group], dtype=float)
        finite = losses[np.isfinite(losses)]
        q1, med, q3 = np.quantile(finite, [0.25, 0.5, 0.75]) if finite.size else (np.nan,) * 3
        table.append({"point": {k: _get(params, k) for k in varying}, "runs": len(group),
                      "median": med, "q1": q1, "q3": q3, "success": float(np.mean(losses < limit)),
                      "threshold": limit, "wall_s": float(np.median([r["wall_s"] for r in group])),
                      "diverged": sum(r["status"] != "ok" for r in group),
                      "ends": verdicts(group)})
    return sorted(table, key=lambda row: tuple((v is None, str(type(v)), v)
                                               for v in row["point"].values()))


def verdicts(group) -> str:
    """The verdicts of a grid point's certified runs, counted: "17 not stationary, 3 ..."
    (most frequent first; "" when none was certified)."""
    counts = Counter(row["verdict"] for row in group if "verdict" in row)
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.most_common())


def _get(params, dotted):
    """params["section"]["key"] for "section.key"; None where the method has no such key."""
    section, key = dotted.split(".")
    return params[section].get(key)


def _varying(points):
    """The keys ("section.key") whose values differ between grid points."""
    keys = sorted({f"{s}.{k}" for p in points for s in ("network", "dynamics") for k in p[s]})
    varying = [k for k in keys if len({canonical(_get(p, k)) for p in points}) > 1]
    if "dynamics.method" in varying:      # the other keys differ because the methods do
        varying = [k for k in varying if k == "dynamics.method" or k.startswith("network.")
                   or all(k.split(".")[1] in p["dynamics"] for p in points)]
    return varying


def report(store, threshold=None):
    """The summary as a text table."""
    table = summarise(store, threshold)
    if not table:
        return "no runs stored"
    head = f"{'grid point':<34} {'runs':>5} {'median':>10} {'q1':>10} {'q3':>10} {'success':>8} {'wall s':>8}"
    lines = [head, "-" * len(head)]
    for row in table:
        name = " ".join(f"{k.split('.')[1]}={v}" for k, v in row["point"].items()) or "(one point)"
        lines.append(f"{name:<34} {row['runs']:>5} {row['median']:>10.3g} {row['q1']:>10.3g} "
                     f"{row['q3']:>10.3g} {row['success']:>8.0%} {row['wall_s']:>8.3g}"
                     + (f"  ({row['diverged']} diverged)" if row["diverged"] else "")
                     + (f"  ends: {row['ends']}" if row["ends"] else ""))
    lines.append(f"success: final loss below {table[0]['threshold']:.3g}"
                 + (" (1e-3 x the target's variance)" if threshold is None else ""))
    return "\n".join(lines)
