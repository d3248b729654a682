"""The paper's experiments, one command each: ``twotimescale reproduce NAME [--quick]``.

Each preset is a list of experiments (docs/maths.rst §6) run by :func:`sweep` into
``OUT/NAME/store.sqlite`` (``OUT/NAME-quick/`` with ``quick``, so that quick and full runs
never share a store), then drawn and summarised there. ``quick`` keeps every setting but takes
a ten times larger SGD step h (or fewer seeds), so it finishes in seconds. No preset picks a
seed: each runs seeds 0, 1, ... and draws the first. The presets on the paper's target train
the paper's network (the smoothstep forward) and report, over their seeds, how many runs end
with a neuron on every jump and their final loss against :func:`~twotimescale.jump_floor`.
``as_published`` runs the paper's own loop instead (:mod:`twotimescale.published`).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from . import plots
from .experiment import by_point, make_network, make_target
from .flows import covers_jumps, jump_floor
from .store import Store
from .sweep import report, sweep, verdicts

PAPER_TARGET = {"breaks": list(np.linspace(0.2, 0.8, 5)), "values": [1, 5, 1, 3, 1, 5]}
# The paper's code evaluates the cubic step (our smoothstep) in its forward pass; it
# differentiates the ramp in u, which only --as-published does (docs/maths.rst §6).
PAPER_NET = {"m": 20, "eta": 4e-3, "activation": "smoothstep"}
NAMES = ("fig3", "fig5", "fig7", "relu", "phase", "additive2d", "additive10d")
ON_PAPER_TARGET = ("fig3", "fig5", "fig7", "phase")


def _sgd(quick, **dynamics):
    return {"method": "sgd", "h": 1e-4 if quick else 1e-5, "noise": 1.0, **dynamics}


def presets(name, quick):
    """The experiments of a preset (docs/maths.rst §6)."""
    if name in ("fig3", "fig5"):
        eps, t_end = (2e-5, 0.035) if name == "fig3" else (1.0, 10.0)
        base = {"target": PAPER_TARGET, "network": PAPER_NET,
                "dynamics": _sgd(quick, eps=eps, t_end=t_end, n_records=200),
                "sweep": {"seeds": 8 if quick else 20}}
        limit = {**base, "dynamics": {"method": "limit", "t_end": t_end, "n_records": 200}}
        flow = {**base, "dynamics": {"method": "flow", "eps": eps, "t_end": t_end, "n_records": 200}}
        return [base, flow, limit]
    if name == "fig7":
        return [{"target": PAPER_TARGET, "network": PAPER_NET,
                 "dynamics": _sgd(quick, eps=1.0, t_end=3.0, n_records=50),
                 "sweep": {"seeds": 20, "grid": {"eps": [0.01, 0.1, 1.0]}},
                 "analysis": {"certify": True}}]
    if name == "relu":
        teacher = {"activation": "relu", "a": [0.0, 1.0, -2.0, 3.0], "u": [0.3, 0.5, 0.7], "eta": 1.0}
        base = {"target": teacher, "network": {"m": 10, "eta": 1.0, "activation": "relu", "a_scale": 3.0},
                "sweep": {"seeds": 5 if quick else 20}}
        # h = 0.1, not the paper's lr 1: that was for the norm ||f(X) - Y|| / n, and on the
        # mean square we minimise, GD needs h < 1 / lambda_max(G) (about 0.25 here)
        return [{**base, "dynamics": {"method": "gd", "h": 0.1, "eps": eps, "epochs": epochs,
                                      "n_points": 1000, "n_records": 50}}
                for eps, epochs in ((1.0, 300), (0.01, 5000))]
    if name in ("additive2d", "additive10d"):
        d, points = (2, 1000) if name == "additive2d" else (10, 10_000)
        base = {"target": {"breaks": [0.3, 0.5, 0.7], "values": [0, 1, 2, 3]},
                "network": {"m": 10, "eta": 0.01, "activation": "smoothstep", "a_scale": 3.0, "d": d},
                "sweep": {"seeds": 4 if quick and d == 10 else 20}}
        # h = 0.03 for the mean square (see relu): at h >= 0.1, eps = 1 runs collapse to the mean
        return [{**base, "dynamics": {"method": "gd", "h": 0.03, "eps": eps, "epochs": epochs,
                                      "n_points": points, "n_records": 30}}
                for eps, epochs in ((1.0, 300), (0.01, 5000))]
    if name == "phase":
        return [{"target": PAPER_TARGET, "network": PAPER_NET,
                 "dynamics": _sgd(quick, eps=1.0, t_end=3.0, n_records=20),
                 "sweep": {"seeds": 5 if quick else 10,
                           "grid": {"eps": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0] if not quick
                                    else [0.01, 0.1, 1.0], "m": [10, 20, 40]}}}]
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(NAMES)}")


def paper_floor():
    """The loss of the paper's network with one neuron on each jump of its target."""
    return jump_floor(make_target(PAPER_TARGET), eta=PAPER_NET["eta"],
                      activation=PAPER_NET["activation"])


def _network_at(row, k=-1):
    """The network of a stored run at its record k (the last by default)."""
    return make_network(row["params"]["network"], 0).from_flat(row["a"][k], row["u"][k])


def end_points(rows, target, floor):
    """Per grid point: runs, how many end with a neuron on every jump, and the final loss
    over the floor (median and quartiles), as lines of text."""
    lines = [f"end points against the floor, one neuron on each jump: L = {floor:.5g}",
             f"{'grid point':<34} {'runs':>5} {'on every jump':>14} {'final / floor: median':>22} "
             f"{'[q1, q3]':>14}"]
    def order(group):
        params = group[0]["params"]
        return (params["dynamics"]["method"], params["dynamics"].get("eps") or 0.0,
                params["network"]["m"])

    for group in sorted(by_point(rows, lambda row: row["params"]), key=order):
        params = group[0]["params"]
        name = " ".join(f"{k}={v}" for k, v in (("method", params["dynamics"]["method"]),
                                                 ("eps", params["dynamics"].get("eps")),
                                                 ("m", params["network"]["m"])) if v is not None)
        ratio = np.array([r["final_loss"] for r in group]) / floor
        covered = sum(covers_jumps(_network_at(r), target) for r in group)
        q1, med, q3 = np.nanquantile(ratio, [0.25, 0.5, 0.75])
        lines.append(f"{name:<34} {len(group):>5} {covered:>10} of {len(group):<3} {med:>18.3g} "
                     f"    [{q1:.3g}, {q3:.3g}]")
    return "\n".join(lines)


def end_kinds(rows, floor):
    """Where each eps's certified runs ended ([analysis] certify = true): the gradient norm
    at their last state, and after polishing (Newton, the loss never rises) the loss over
    the floor and certify's verdicts, counted."""
    lines = ["where the runs ended: |grad| at the end of SGD; each end polished by Newton "
             "(polish, at most 100 Hessians) and certified (certify)",
             f"{'eps':>6} {'runs':>5} {'|grad| at end':>14} {'polished/floor':>15}  "
             "verdicts after polishing"]
    for group in by_point(rows, lambda row: row["params"]):
        eps = group[0]["params"]["dynamics"]["eps"]
        lines.append(f"{eps:>6g} {len(group):>5} "
                     f"{np.median([r['end_grad_norm'] for r in group]):>14.3g} "
                     f"{np.median([r['polished_loss'] for r in group]) / floor:>15.3g}  "
                     f"{verdicts(group)}")
    return "\n".join(lines)


def _draw_runs(name, rows, folder, target, floor):
    """fig3 and fig5: the first seed's SGD run (network, positions, training), its loss beside
    the flow's and the limit's, and beside them the final losses of every seed."""
    first = min(row["seed"] for row in rows)
    by_method = {row["params"]["dynamics"]["method"]: row for row in rows if row["seed"] == first}
    sgd = by_method["sgd"]
    eps = sgd["params"]["dynamics"]["eps"]
    ends = {method.upper() if method == "sgd" else method:
            np.array([r["final_loss"] for r in rows if r["params"]["dynamics"]["method"] == method])
            for method in ("sgd", "flow", "limit")}
    curves = {f"{m.upper() if m == 'sgd' else m}, seed {first}": (r["t"], r["loss"])
              for m, r in by_method.items()}
    return [plots.fit(os.path.join(folder, f"{name}.png"), _network_at(sgd), target,
                      f"SGD, eps = {eps:g}, t = {sgd['t'][-1]:g}, seed {first}: network and target"),
            plots.losses_and_ends(os.path.join(folder, "fig4.png" if name == "fig3" else "losses.png"),
                                  curves, ends, floor, f"eps = {eps:g}: loss against slow time"),
            plots.positions(os.path.join(folder, "positions.png"), sgd["t"], sgd["u"],
                            target.breaks, f"SGD, seed {first}: neuron positions"),
            plots.animation(os.path.join(folder, "training.gif"), _network_at(sgd, 0), target,
                            sgd["t"], sgd["a"], sgd["u"])]


def _draw_sweep(name, rows, folder, target, floor):
    """The other presets: every figure the store supports, and final losses per eps."""
    made = plots.from_store(os.path.join(folder, "store.sqlite"), folder,
                            None if floor is None else 2 * floor)
    if name == "additive2d":
        first = {}                                     # per eps, the run of the lowest seed
        for r in sorted(rows, key=lambda r: r["seed"]):
            first.setdefault(r["params"]["dynamics"]["eps"], r)
        nets = {f"eps = {e:g}, seed {r['seed']}": _network_at(r)
                for e, r in sorted(first.items(), reverse=True)}
        made.append(plots.pieces_2d(os.path.join(folder, "fig6.png"),
                                    make_target(rows[0]["params"]["target"], 2), nets))
    if name in ("fig7", "relu", "additive2d", "additive10d"):
        groups = {}
        for r in rows:
            groups.setdefault(r["params"]["dynamics"]["eps"], []).append(r["final_loss"])
        made.append(plots.boxes(os.path.join(folder, f"{name}.png"),
                                {f"{e:g}": np.array(v) for e, v in sorted(groups.items())},
                                xlabel="$\\varepsilon$", title=f"{name}: final loss per eps",
                                floor=floor))
    return made


def reproduce(name, *, quick=False, out="out", workers=None, progress=True,
              as_published=False):
    """Run preset ``name`` and write its figures, store and summary.txt into ``out/name``
    (``out/name-quick``, ``out/name-published``). Returns the paths written."""
    if as_published:
        from .published import reproduce_published
        return reproduce_published(name, quick=quick, out=out, workers=workers)
    experiments = presets(name, quick)
    folder = os.path.join(out, name + ("-quick" if quick else ""))
    os.makedirs(folder, exist_ok=True)
    store = os.path.join(folder, "store.sqlite")
    start = time.perf_counter()
    for experiment in experiments:
        sweep(experiment, store=store, workers=workers, progress=progress)
    wall = time.perf_counter() - start
    with Store(store, readonly=True) as db:
        rows = sorted(db.rows(), key=lambda row: row["seed"])
    target = make_target(rows[0]["params"]["target"])
    floor = paper_floor() if name in ON_PAPER_TARGET else None
    draw = _draw_runs if name in ("fig3", "fig5") else _draw_sweep
    made = [store] + draw(name, rows, folder, target, floor)
    summary = os.path.join(folder, "summary.txt")
    with open(summary, "w") as f:
        f.write(f"twotimescale reproduce {name}{' --quick' if quick else ''}: {len(rows)} runs, "
                f"{wall:.1f} s\n\n")
        if floor is not None:
            f.write(f"{end_points(rows, target, floor)}\n\n")
        if name == "fig7":
            f.write(f"{end_kinds(rows, floor)}\n\n")
        f.write(f"{report(store, None if floor is None else 2 * floor)}\n")
        if floor is not None:
            f.write("(success: final loss below twice the floor)\n")
        f.write("\nexperiments:\n" + "\n".join(json.dumps(e) for e in experiments) + "\n")
    made.append(summary)
    return made
