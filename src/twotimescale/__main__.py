"""Command line: ``twotimescale COMMAND`` or ``python -m twotimescale COMMAND``."""
import argparse
import sys

import numpy as np


def demo(args):
    """The paper's target and a random network: exact loss, gradient and optimal outer weights."""
    import twotimescale as tt

    target = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="twotimescale", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help=demo.__doc__)
    p.add_argument("--m", type=int, default=20, help="number of neurons (default 20)")
    p.add_argument("--eta", type=float, default=4e-3, help="activation width (default 4e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ValueError as exc:
        parser.exit(2, f"twotimescale {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
