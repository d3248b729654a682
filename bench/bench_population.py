"""Loss + gradient, exact population: the kernel against the NumPy reference, in one run.

    python bench/bench_population.py

Goals (issue 2): m = 20 in <= 10 us, m = 1000 in <= 1 ms, >= 20x the reference.
"""
from machine import best_of, describe  # first: it pins OpenBLAS to one thread

import numpy as np

import twotimescale as tt
from twotimescale import reference as ref

TARGET = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))


def main():
    print(describe())
    print("paper target, ramp network, eta = 4e-3, a ~ U[0, 1)")
    print(f"{'m':>6} {'kernel us':>10} {'reference us':>13} {'ratio':>7}")
    for m in (20, 200, 1000):
        net = tt.init_network(m, seed=0, eta=4e-3, a_scale=1.0)
        kernel = best_of(lambda: tt.loss_and_grad(net, TARGET), number=max(20, 20000 // m))
        reference = best_of(lambda: (ref.population_loss(net, TARGET),
                                     ref.population_grad(net, TARGET)), number=3, repeat=3)
        print(f"{m:>6} {kernel * 1e6:>10.2f} {reference * 1e6:>13.0f} {reference / kernel:>7.0f}")


if __name__ == "__main__":
    main()
