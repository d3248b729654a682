"""The exact Hessian and certify, in one run: the kernel against its NumPy twin
(twotimescale.reference.hessian) and against central differences of the kernel's exact
gradient (2 (2m + 1) gradients, what a user without a Hessian would do; it is also only
accurate to about 1e-6), for m = 20 and m = 200 smoothstep networks on the paper's target
(eta = 4e-3, u sorted U[0, 1), a ~ N(0, 1)); then certify (Hessian and a symmetric
eigensolve) and one polish at m = 20.

    python bench/bench_hessian.py

Goals (issue 15): Hessian m = 20 <= 20 us, m = 200 <= 1 ms; certify m = 20 <= 100 us.
"""
from machine import best_of, describe  # first: it pins OpenBLAS to one thread

import numpy as np

import twotimescale as tt
from twotimescale import reference as ref

TARGET = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))


def network(m, activation="smoothstep"):
    rng = np.random.default_rng(m)
    return tt.Network(rng.normal(size=m + 1), np.sort(rng.random(m)), eta=4e-3,
                      activation=activation)


def differences(net, h=1e-7):
    """The Hessian by central differences of the exact gradient, column by column."""
    m = net.m
    theta = np.concatenate([net.a, net.u])
    H = np.empty((2 * m + 1, 2 * m + 1))
    for k in range(2 * m + 1):
        cols = []
        for sign in (1, -1):
            t = theta.copy()
            t[k] += sign * h
            ga, gu = tt.population_grad(net.replace(a=t[:m + 1], u=t[m + 1:]), TARGET)
            cols.append(np.concatenate([ga, gu]))
        H[:, k] = (cols[0] - cols[1]) / (2 * h)
    return H


def main():
    print(describe())
    print("Hessian of the population loss, paper's target, eta = 4e-3; us per call")
    print(f"{'activation':>10} {'m':>5} {'kernel':>9} {'twin':>9} {'ratio':>7} "
          f"{'differences':>12} {'ratio':>7}")
    for activation in ("smoothstep", "ramp", "relu"):
        for m in (20, 200):
            net = network(m, activation)
            kernel = best_of(lambda: tt.hessian(net, TARGET), 2000 if m == 20 else 50)
            twin = best_of(lambda: ref.hessian(net, TARGET), 20 if m == 20 else 2, 3)
            diff = best_of(lambda: differences(net), 5 if m == 20 else 1, 3)
            print(f"{activation:>10} {m:>5} {kernel * 1e6:9.1f} {twin * 1e6:9.0f} "
                  f"{twin / kernel:6.0f}x {diff * 1e6:12.0f} {diff / kernel:6.0f}x")
    net = network(20)
    cert = best_of(lambda: tt.certify(net, TARGET), 1000)
    eig = best_of(lambda: np.linalg.eigh(tt.hessian(net, TARGET)), 2000)
    print(f"certify, m = 20: {cert * 1e6:.1f} us (Hessian + eigh alone: {eig * 1e6:.1f} us)")
    start = tt.sgd(net.replace(a=np.zeros(21)), TARGET, h=1e-4, eps=0.01, t_end=0.5,
                   n_records=2).final
    polish = best_of(lambda: tt.polish(start, TARGET), 1, 3)
    _, info = tt.polish(start, TARGET)
    print(f"polish, m = 20, from SGD at eps = 0.01, t = 0.5: {polish * 1e3:.1f} ms; {info}")


if __name__ == "__main__":
    main()
