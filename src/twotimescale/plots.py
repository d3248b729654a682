"""Figures (matplotlib, Agg): the paper's Figures 3-5 and 7, and new views of a sweep.

Every function writes one file and returns its path. Needs the ``plot`` extra
(matplotlib, Pillow for the GIF).
"""
import os

import numpy as np

from .experiment import by_point, canonical, make_target
from .network import Network

COLOURS = {"sgd": "#1f77b4", "gd": "#1f77b4", "flow": "#d62728", "limit": "#2ca02c"}
STYLES = {"sgd": dict(lw=3.0, alpha=0.45), "gd": dict(lw=3.0, alpha=0.45),
          "flow": dict(lw=1.4, ls="--"), "limit": dict(lw=1.4, ls=":")}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'twotimescale[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _draw_fit(ax, net, target, title):
    x = np.linspace(0, 1, 2001)
    ax.plot(x, target(x), color="black", lw=2, label="target $f^*$")
    ax.plot(x, net(x), color="#d62728", lw=1.5, label="network $f$")
    for u in net.u:
        ax.axvline(u, color="grey", ls="--", lw=0.7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("$x$")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)


def fit(path, net, target, title="network and target (dashed: neuron positions)"):
    """The network against the target, neurons as dashed lines (the paper's Figures 3, 5)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    _draw_fit(ax, net, target, title)
    return _save(fig, path)


def losses(path, curves, title="population loss against slow time"):
    """Loss against slow time on a log axis, one curve per label (the paper's Figure 4).
    ``curves``: label -> (t, loss), or label -> list of (t, loss) for replicas."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (label, curve) in enumerate(curves.items()):
        kind = label.split()[0].lower()
        colour = COLOURS.get(kind, cycle[n % len(cycle)])
        replicas = curve if isinstance(curve, list) else [curve]
        style = STYLES.get(kind, dict(lw=1.2)) if len(replicas) == 1 else dict(lw=0.6, alpha=0.5)
        for i, (t, loss) in enumerate(replicas):
            ax.plot(t, np.maximum(loss, 1e-300), color=colour, label=label if i == 0 else None,
                    **style)
    ax.set_yscale("log")
    ax.set_xlabel("slow time $t$ (steps $\\times h \\varepsilon$)")
    ax.set_ylabel("$L(a, u)$")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _draw_boxes(ax, groups, floor=None, ylabel="final population loss"):
    """Box plots of final losses, one per label, each run a dot; the floor dashed."""
    labels = list(groups)
    groups = {k: np.asarray(groups[k], dtype=float) for k in labels}
    groups = {k: v[np.isfinite(v)] for k, v in groups.items()}   # diverged runs: no dot
    ax.boxplot([np.maximum(groups[k], 1e-300) for k in labels], tick_labels=labels,
               showfliers=False)                       # every run is a dot already
    for i, k in enumerate(labels, 1):
        ax.scatter(np.full(len(groups[k]), i) + np.linspace(-0.12, 0.12, len(groups[k])),
                   np.maximum(groups[k], 1e-300), s=8, color="#1f77b4", alpha=0.6, zorder=3)
    if floor is not None:
        ax.axhline(floor, color="black", ls="--", lw=0.8, label="one neuron on each jump")
        ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)


def boxes(path, groups, xlabel="", title="final loss", floor=None):
    """Box plots of final losses, one per label (the paper's Figure 7); ``floor`` dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(groups) + 2.5, 3.5))
    _draw_boxes(ax, groups, floor)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)


def losses_and_ends(path, curves, ends, floor, title):
    """The paper's Figure 4 beside the spread it hides: left, the loss against slow time of
    one run per method (``curves``: label -> (t, loss)); right, the final loss of every seed
    per method (``ends``: label -> array), with the floor dashed."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6),
                                      gridspec_kw={"width_ratios": [3, 2]})
    for label, (t, loss) in curves.items():
        kind = label.split()[0].lower().rstrip(",")
        left.plot(t, np.maximum(loss, 1e-300), color=COLOURS.get(kind), label=label,
                  **STYLES.get(kind, dict(lw=1.2)))
    left.axhline(floor, color="black", ls="--", lw=0.8)
    left.set_yscale("log")
    left.set_xlabel("slow time $t$ (steps $\\times h \\varepsilon$)")
    left.set_ylabel("$L(a, u)$")
    left.set_title(title)
    left.legend(fontsize=8)
    _draw_boxes(right, ends, floor, ylabel="final loss, every seed")
    right.set_title(f"{len(next(iter(ends.values())))} seeds")
    return _save(fig, path)


def positions(path, t, u, breaks=(), title="neuron positions"):
    """Every neuron's position against slow time; target jumps dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(t, u, color="#1f77b4", lw=0.9)
    for v in breaks:
        ax.axhline(v, color="black", ls="--", lw=0.8)
    ax.set_xlabel("slow time $t$")
    ax.set_ylabel("$u_j$")
    ax.set_ylim(min(0.0, np.min(u)) - 0.02, max(1.0, np.max(u)) + 0.02)
    ax.set_title(title)
    return _save(fig, path)


def animation(path, net, target, t, a, u, frames=40):
    """An animated GIF of the training: the network against the target at the records."""
    plt = _pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter
    fig, ax = plt.subplots(figsize=(5, 3))
    picks = np.unique(np.linspace(0, len(t) - 1, min(frames, len(t))).round().astype(int))

    def draw(k):
        ax.clear()
        i = picks[k]
        _draw_fit(ax, net.replace(a=a[i], u=u[i]), target, f"t = {t[i]:.4g}")
        ax.set_ylim(*lims)

    x = np.linspace(0, 1, 401)
    top = [target(x)] + [net.replace(a=a[i], u=u[i])(x) for i in picks]
    lims = (min(map(np.min, top)) - 0.5, max(map(np.max, top)) + 0.5)
    anim = FuncAnimation(fig, draw, frames=len(picks))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    anim.save(path, writer=PillowWriter(fps=8))
    plt.close(fig)
    return path


def heatmap(path, eps, widths, success, title="success rate"):
    """Success rate over eps x m (rows: m, columns: eps)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(eps) + 2.5, 0.7 * len(widths) + 2))
    image = ax.imshow(success, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(eps)), [f"{e:g}" for e in eps])
    ax.set_yticks(range(len(widths)), [str(m) for m in widths])
    for i in range(len(widths)):
        for j in range(len(eps)):
            ax.text(j, i, f"{success[i, j]:.0%}", ha="center", va="center",
                    color="white" if success[i, j] < 0.6 else "black", fontsize=9)
    ax.set_xlabel("$\\varepsilon$")
    ax.set_ylabel("$m$")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def network_of(row):
    """The last recorded state of a stored univariate run, as a Network."""
    nw = row["params"]["network"]
    return Network(row["a"][-1], row["u"][-1], eta=nw["eta"], activation=nw["activation"])


CURVES = 20          # loss curves drawn per grid point (their trajectories are read)


def from_store(store, out, threshold=None):
    """Every figure a store supports, written into ``out``; returns their paths."""
    from .store import Store
    from .sweep import _get, summarise
    with Store(store, readonly=True) as db:
        rows = list(db.scalars())
        if not rows:
            raise ValueError(f"store {store} holds no runs")
        groups = by_point(rows, lambda row: row["params"])
        drawn = [row for group in groups for row in group[:CURVES]]   # a few per grid point
        records = db.trajectories([row["key"] for row in drawn])
    rows = [{**row, **records.get(row["key"], {})} for row in rows]
    made = []
    first = rows[0]
    target = make_target(first["params"]["target"])
    if first["params"]["network"]["d"] == 1:       # pictures of one univariate run
        breaks = getattr(target, "breaks", ())
        made.append(fit(os.path.join(out, "fit.png"), network_of(first), target,
                        f"seed {first['seed']}: network and target"))
        made.append(positions(os.path.join(out, "positions.png"), first["t"], first["u"], breaks))
        made.append(animation(os.path.join(out, "training.gif"), network_of(first), target,
                              first["t"], first["a"], first["u"]))
    table = summarise(store, threshold)            # one row per grid point, in its order
    at = {canonical({k: _get(g[0]["params"], k) for k in table[0]["point"]}): g
          for g in by_point(rows, lambda row: row["params"])}
    groups = [at[canonical(p["point"])] for p in table]
    names = [" ".join(f"{k.split('.')[1]}={v}" for k, v in p["point"].items()) or "all"
             for p in table]
    curves = {name: [(r["t"], r["loss"]) for r in group if "t" in r]
              for name, group in zip(names, groups)}
    made.append(losses(os.path.join(out, "losses.png"), curves))
    made.append(boxes(os.path.join(out, "final_loss.png"),
                      {name: np.array([r["final_loss"] for r in group])
                       for name, group in zip(names, groups)}))
    keys = set(table[0]["point"])
    if {"dynamics.eps", "network.m"} <= keys:
        eps = sorted({p["point"]["dynamics.eps"] for p in table})
        widths = sorted({p["point"]["network.m"] for p in table})
        success = np.full((len(widths), len(eps)), np.nan)
        for p in table:
            success[widths.index(p["point"]["network.m"]), eps.index(p["point"]["dynamics.eps"])] = p["success"]
        made.append(heatmap(os.path.join(out, "success.png"), eps, widths, success))
    return made


def pieces_2d(path, target, nets, title="target pieces and learned neuron positions"):
    """The paper's Figure 6: the 2-D additive target as an image, and for each network (label
    -> AdditiveNetwork with d = 2) its neurons: u[0] as vertical lines, u[1] as horizontal."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(nets), figsize=(4.2 * len(nets), 4), squeeze=False)
    grid = np.linspace(0, 1, 301)
    X1, X2 = np.meshgrid(grid, grid)
    image = target(np.column_stack([X1.ravel(), X2.ravel()])).reshape(X1.shape)
    for ax, (label, net) in zip(axes[0], nets.items()):
        ax.imshow(image, extent=(0, 1, 0, 1), origin="lower", cmap="Greys", alpha=0.6)
        for u in net.u[0]:
            ax.axvline(u, color="#d62728", lw=1)
        for u in net.u[1]:
            ax.axhline(u, color="#1f77b4", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(label)
    fig.suptitle(title)
    return _save(fig, path)
