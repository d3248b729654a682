"""The paper's experiments, one command each: ``twotimescale reproduce NAME [--quick]``.

Each preset is a list of experiments (docs/maths.rst §6) run by :func:`sweep` into
``OUT/NAME/store.sqlite``, then drawn and summarised there. ``quick`` keeps every setting but
takes a ten times larger SGD step h (or fewer seeds for GD), so it finishes in seconds.
"""
import json
import os
import time

import numpy as np

from . import plots
from .experiment import make_network, make_target
from .store import Store
from .sweep import report, sweep

PAPER_TARGET = {"breaks": list(np.linspace(0.2, 0.8, 5)), "values": [1, 5, 1, 3, 1, 5]}
PAPER_NET = {"m": 20, "eta": 4e-3, "activation": "ramp"}
FIG3_SEED = 1          # a start that meets the theorem's hypotheses (check_assumptions)


def ramp_floor(target, eta):
    """The least loss of a ramp network with a neuron on each jump: sum_k D_k^2 eta / 12."""
    return float(np.sum(np.diff(target["values"]) ** 2) * eta / 12)


def _sgd(quick, **dynamics):
    return {"method": "sgd", "h": 1e-4 if quick else 1e-5, "noise": 1.0, **dynamics}


def presets(name, quick):
    """(experiments, success threshold) of a preset."""
    floor = 2 * ramp_floor(PAPER_TARGET, PAPER_NET["eta"])
    if name in ("fig3", "fig5"):
        eps, t_end = (2e-5, 0.035) if name == "fig3" else (1.0, 10.0)
        base = {"target": PAPER_TARGET, "network": PAPER_NET,
                "dynamics": _sgd(quick, eps=eps, t_end=t_end, n_records=200),
                "sweep": {"seeds": [FIG3_SEED]}}
        limit = {**base, "dynamics": {"method": "limit", "t_end": t_end, "n_records": 200}}
        flow = {**base, "dynamics": {"method": "flow", "eps": eps, "t_end": t_end, "n_records": 200}}
        return [base, flow, limit], floor
    if name == "fig7":
        return [{"target": PAPER_TARGET, "network": PAPER_NET,
                 "dynamics": _sgd(quick, eps=1.0, t_end=3.0, n_records=50),
                 "sweep": {"seeds": 20, "grid": {"eps": [0.01, 0.1, 1.0]}}}], floor
    if name == "relu":
        teacher = {"activation": "relu", "a": [0.0, 1.0, -2.0, 3.0], "u": [0.3, 0.5, 0.7], "eta": 1.0}
        base = {"target": teacher, "network": {"m": 10, "eta": 1.0, "activation": "relu", "a_scale": 3.0},
                "sweep": {"seeds": 5 if quick else 20}}
        # h = 0.1, not the paper's lr 1: that was for the norm ||f(X) - Y|| / n, and on the
        # mean square we minimise, GD needs h < 1 / lambda_max(G) (about 0.25 here)
        return [{**base, "dynamics": {"method": "gd", "h": 0.1, "eps": eps, "epochs": epochs,
                                      "n_points": 1000, "n_records": 50}}
                for eps, epochs in ((1.0, 300), (0.01, 5000))], None
    if name in ("additive2d", "additive10d"):
        d, points = (2, 1000) if name == "additive2d" else (10, 10_000)
        base = {"target": {"breaks": [0.3, 0.5, 0.7], "values": [0, 1, 2, 3]},
                "network": {"m": 10, "eta": 0.01, "activation": "smoothstep", "a_scale": 3.0, "d": d},
                "sweep": {"seeds": 4 if quick and d == 10 else 20}}
        # h = 0.03 for the mean square (see relu): at h >= 0.1, eps = 1 runs collapse to the mean
        return [{**base, "dynamics": {"method": "gd", "h": 0.03, "eps": eps, "epochs": epochs,
                                      "n_points": points, "n_records": 30}}
                for eps, epochs in ((1.0, 300), (0.01, 5000))], None
    if name == "phase":
        return [{"target": PAPER_TARGET, "network": PAPER_NET,
                 "dynamics": _sgd(quick, eps=1.0, t_end=3.0, n_records=20),
                 "sweep": {"seeds": 5 if quick else 10,
                           "grid": {"eps": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0] if not quick
                                    else [0.01, 0.1, 1.0], "m": [10, 20, 40]}}}], floor
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(NAMES)}")


NAMES = ("fig3", "fig5", "fig7", "relu", "phase", "additive2d", "additive10d")


def _rows(store):
    with Store(store) as db:
        return list(db.rows())


def reproduce(name, *, quick=False, out="out", workers=None, progress=True):
    """Run preset ``name`` and write its figures, store and summary.txt into ``out/name``.
    Returns the paths written."""
    experiments, threshold = presets(name, quick)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    store = os.path.join(folder, "store.sqlite")
    start = time.perf_counter()
    for experiment in experiments:
        sweep(experiment, store=store, workers=workers, progress=progress)
    wall = time.perf_counter() - start
    rows = _rows(store)
    target = make_target(rows[0]["params"]["target"])
    made = [store]
    if name in ("fig3", "fig5"):
        by_method = {r["params"]["dynamics"]["method"]: r for r in rows}
        sgd = by_method["sgd"]
        made.append(plots.fit(os.path.join(folder, f"{name}.png"), plots.network_of(sgd), target,
                              f"SGD, eps = {sgd['params']['dynamics']['eps']:g}, "
                              f"t = {sgd['t'][-1]:g}: network and target"))
        made.append(plots.losses(os.path.join(folder, "fig4.png" if name == "fig3" else "losses.png"),
                                 {f"{m.upper() if m == 'sgd' else m}": (r["t"], r["loss"])
                                  for m, r in by_method.items()}))
        made.append(plots.positions(os.path.join(folder, "positions.png"), sgd["t"], sgd["u"],
                                    target.breaks, "SGD: neuron positions"))
        made.append(plots.animation(os.path.join(folder, "training.gif"), plots.network_of(sgd), target,
                                    sgd["t"], sgd["a"], sgd["u"]))
    else:
        made.extend(plots.from_store(store, folder, threshold))
        groups = {}
        for r in rows:
            groups.setdefault(r["params"]["dynamics"]["eps"], []).append(r["final_loss"])
        if name == "additive2d":
            first = {}                                 # per eps, the run of the lowest seed
            for r in rows:
                e = r["params"]["dynamics"]["eps"]
                if e not in first or r["seed"] < first[e]["seed"]:
                    first[e] = r
            nets = {f"eps = {e:g}, seed {r['seed']}":
                    make_network(r["params"]["network"], 0).from_flat(r["a"][-1], r["u"][-1])
                    for e, r in sorted(first.items(), reverse=True)}
            made.append(plots.pieces_2d(os.path.join(folder, "fig6.png"),
                                        make_target(rows[0]["params"]["target"], 2), nets))
        if name in ("fig7", "relu", "additive2d", "additive10d"):
            made.append(plots.boxes(os.path.join(folder, f"{name}.png"),
                                    {f"{e:g}": np.array(v) for e, v in sorted(groups.items())},
                                    xlabel="$\\varepsilon$", title=f"{name}: final loss per eps"))
    summary = os.path.join(folder, "summary.txt")
    with open(summary, "w") as f:
        f.write(f"twotimescale reproduce {name}{' --quick' if quick else ''}: {len(rows)} runs, "
                f"{wall:.1f} s\n\n{report(store, threshold)}\n")
        if threshold is not None:
            f.write("(threshold: twice the least loss of a ramp network with a neuron on "
                    "each jump, sum D^2 eta / 12)\n")
        f.write("\nexperiments:\n" + "\n".join(json.dumps(e) for e in experiments) + "\n")
    made.append(summary)
    return made
