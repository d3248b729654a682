"""The command line: ``twotimescale COMMAND`` (or ``python -m twotimescale COMMAND``).

    reproduce NAME [--quick] [--out DIR]     the paper's figures: fig3 fig5 fig7 relu phase
              [--as-published]               (fig3, fig5, fig7: the paper's own loop)
    sweep FILE --store PATH [--workers N] [--scheduler ADDRESS]
    report PATH [--threshold X]
    plot PATH --out DIR
    export PATH OUT.parquet|OUT.csv          the runs' scalar columns, one row per run
    demo                                     exact loss and gradient of a random network
"""
import argparse
import sys

import numpy as np


def demo(args):
    import twotimescale as tt
    from .experiment import make_target
    from .reproduce import PAPER_TARGET

    target = make_target(PAPER_TARGET)
    net = tt.init_network(args.m, seed=args.seed, eta=args.eta, a_scale=1.0)
    loss, grad_a, grad_u = tt.loss_and_grad(net, target)
    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    print(f"target: {target}")
    print(f"network: m = {net.m}, eta = {net.eta}, ramp, seed {args.seed}, a ~ U[0, 1)")
    print(f"population loss L(a, u) = {loss:.12g}")
    print(f"grad_a L = {grad_a}")
    print(f"grad_u L = {grad_u}")
    best = net.replace(a=tt.optimal_outer(net, target))
    print(f"L(a*(u), u) = {tt.population_loss(best, target):.12g}  (optimal outer weights)")


def run_sweep(args):
    from .sweep import sweep
    done = sweep(args.file, store=args.store, workers=args.workers, scheduler=args.scheduler,
                 progress=not args.quiet)
    print(f"{done['runs']} runs: {done['ran']} ran, {done['skipped']} already in {args.store}")


def run_report(args):
    from .sweep import report
    print(report(args.store, args.threshold))


def run_plot(args):
    from .plots import from_store
    for path in from_store(args.store, args.out, args.threshold):
        print(path)


def run_export(args):
    from .store import Store, export
    with Store(args.store, readonly=True) as db:
        count = export(db, args.out)
    print(f"{count} runs -> {args.out}")


def run_reproduce(args):
    import time
    from .reproduce import reproduce
    start = time.perf_counter()
    made = reproduce(args.name, quick=args.quick, out=args.out, workers=args.workers,
                     progress=not args.quiet, as_published=args.as_published)
    for path in made:
        print(path)
    print(f"reproduce {args.name}{' --quick' if args.quick else ''}"
          f"{' --as-published' if args.as_published else ''}: "
          f"{time.perf_counter() - start:.1f} s")
    with open(made[-1]) as f:
        print(f.read().split("\nexperiments:")[0])


def _one_line(exc):
    """An expected failure as one line: what failed, and on which file."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
        return f"timed out: {exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def parser():
    from .reproduce import NAMES
    top = argparse.ArgumentParser(prog="twotimescale", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("reproduce", help="run one of the paper's experiments and draw it")
    p.add_argument("name", choices=NAMES)
    p.add_argument("--quick", action="store_true", help="a 10x larger SGD step: seconds, not minutes")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--as-published", action="store_true",
                   help="fig3, fig5, fig7: the paper's own loop (its rule, its random stream "
                        "seeded with 42, its step count); see twotimescale.published")
    p.set_defaults(run=run_reproduce)

    p = commands.add_parser("sweep", help="run an experiment file into a results store")
    p.add_argument("file", help="experiment (TOML)")
    p.add_argument("--store", required=True, help="SQLite results store (created if missing)")
    p.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, tcp://host:port")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_sweep)

    p = commands.add_parser("report", help="a table per grid point of a store")
    p.add_argument("store")
    p.add_argument("--threshold", type=float, default=None,
                   help="success: final loss below this (default 1e-3 x the target's variance)")
    p.set_defaults(run=run_report)

    p = commands.add_parser("plot", help="draw every figure a store supports")
    p.add_argument("store")
    p.add_argument("--out", required=True, help="folder for the figures")
    p.add_argument("--threshold", type=float, default=None, help="success threshold (heat map)")
    p.set_defaults(run=run_plot)

    p = commands.add_parser("export", help="the runs' scalar columns as Parquet or CSV")
    p.add_argument("store")
    p.add_argument("out", help="OUT.parquet (needs pyarrow) or OUT.csv")
    p.set_defaults(run=run_export)

    p = commands.add_parser("demo", help="exact loss and gradient of a random network")
    p.add_argument("--m", type=int, default=20, help="number of neurons (default 20)")
    p.add_argument("--eta", type=float, default=4e-3, help="activation width (default 4e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    return top


def main(argv=None):
    top = parser()
    args = top.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, ImportError, OSError) as exc:   # expected failures
        top.exit(2, f"twotimescale {args.command}: error: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        kept = (" the runs that finished are stored; run the same command again to resume"
                if args.command in ("sweep", "reproduce") else "")
        top.exit(130, f"twotimescale {args.command}: interrupted;{kept or ' nothing written'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
