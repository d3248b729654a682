"""Online SGD: steps per second of the kernel, of the per-step NumPy loop (the reference) and
of sgd_many, in one run, on the paper's setting (m = 20, eta = 4e-3, h = 1e-5, eps = 2e-5).

    python bench/bench_sgd.py

Goals (issue 3): one replica at m = 20 <= 25 ns/step; sgd_many, 256 replicas on all cores,
<= 8 ns per replica-step; m = 1000 <= 300 ns/step. Issue 6: additive d = 10, m = 10.
At m = 20 the kernel is also set against this machine's floor (floor.cpp, built here with the
C++ compiler): the step's dependency chain alone, without draws, teacher or checks.
Also dense against sorted kernel (ramp and smoothstep), the figures behind
twotimescale.dynamics.sorted_pays (kernel="auto"), and mini-batch GD per epoch.
"""
from machine import best_of, describe  # first: it pins OpenBLAS to one thread

import os
import pathlib
import subprocess
import tempfile

import numpy as np

import twotimescale as tt
from twotimescale import reference as ref

TARGET = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))
PAPER = dict(h=1e-5, eps=2e-5, noise=1.0)


def floor_program(folder):
    """floor.cpp built in ``folder`` (the path), or None when there is no C++ compiler."""
    exe = pathlib.Path(folder) / "floor"
    cxx = os.environ.get("CXX", "c++")
    try:
        subprocess.run([cxx, "-O3", "-march=native", "-ffp-contract=off",
                        str(pathlib.Path(__file__).with_name("floor.cpp")), "-o", str(exe)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"floor.cpp not built ({cxx}: {exc}); no floor column")
        return None
    return exe


def floor_ns(exe, activation, steps=4_000_000, repeat=5):
    """Least ns per step of the bare dependency chain over ``repeat`` runs."""
    return min(float(subprocess.run([str(exe), activation, str(steps)], check=True,
                                    capture_output=True, text=True).stdout)
               for _ in range(repeat))


def numba_sgd():
    """A strict per-step SGD loop compiled by numba (fastmath off), on given samples: what a
    user would write instead of this library. None when numba is not installed."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(fastmath=False)
    def s(kind, z):
        if kind == 0:
            return min(max(z + 0.5, 0.0), 1.0)
        if kind == 1:
            w = max(0.5 - abs(z), 0.0)
            c = 4.0 * w * w * w
            return c if z <= 0.0 else 1.0 - c
        return max(z, 0.0)

    @numba.njit(fastmath=False)
    def ds(kind, z):
        if kind == 0:
            return 1.0 if -0.5 <= z <= 0.5 else 0.0
        if kind == 1:
            w = max(0.5 - abs(z), 0.0)
            return 12.0 * w * w
        return 1.0 if z > 0.0 else 0.0

    @numba.njit(fastmath=False)
    def run(kind, a, u, eta, ta, tu, h, eps, x, xi):
        a, u = a.copy(), u.copy()
        phi = np.empty(u.size)
        for k in range(x.size):
            f = a[0]
            for j in range(u.size):
                phi[j] = s(kind, (x[k] - u[j]) / eta)
                f += a[j + 1] * phi[j]
            y = ta[0] + xi[k]
            for j in range(tu.size):
                y += ta[j + 1] * (1.0 if x[k] >= tu[j] else 0.0)
            r = f - y
            a[0] -= 2 * h * r
            for j in range(u.size):
                g = 2 * h * eps * r * a[j + 1] / eta * ds(kind, (x[k] - u[j]) / eta)
                a[j + 1] -= 2 * h * r * phi[j]
                u[j] += g
        return a, u

    return run


def main():
    print(describe())
    print("paper setting: eta = 4e-3, h = 1e-5, eps = 2e-5, uniform noise 1; ns per step")
    print(f"{'activation':>10} {'m':>5} {'kernel':>8} {'floor':>7} {'reference':>10} {'ratio':>7} "
          f"{'numba':>7} {'ratio':>7}")
    numba_loop = numba_sgd()
    with tempfile.TemporaryDirectory() as folder:
        exe = floor_program(folder)
        for activation in ("ramp", "smoothstep", "relu"):
            for m in (20, 1000):
                net = tt.init_network(m, 0, eta=4e-3, activation=activation)
                steps = 4_000_000 if m == 20 else 200_000
                kernel = best_of(lambda: tt.sgd(net, TARGET, steps=steps, n_records=2, **PAPER), 1, 5) / steps
                floor = f"{floor_ns(exe, activation):.1f}" if exe and m == 20 else ""
                x, xi = ref.draw_samples(0, 2000)
                loop = best_of(lambda: ref.sgd(net, TARGET, PAPER["h"], PAPER["eps"], x, xi), 1, 1) / 2000
                numba_ns = ""
                if numba_loop is not None:
                    code = ("ramp", "smoothstep", "relu").index(activation)
                    x, xi = ref.draw_samples(0, 200_000)
                    args = (code, net.a, net.u, net.eta, TARGET.a, TARGET.u, PAPER["h"],
                            PAPER["eps"], x, xi)
                    numba_loop(*args)                                     # compile
                    jit = best_of(lambda: numba_loop(*args), 1, 5) / 200_000
                    numba_ns = f"{jit * 1e9:>7.1f} {jit / kernel:>7.1f}"
                print(f"{activation:>10} {m:>5} {kernel * 1e9:>8.1f} {floor:>7} {loop * 1e9:>10.0f} "
                      f"{loop / kernel:>7.0f} {numba_ns}")
    print("dense against sorted kernel (h = 1e-4, eps = 0.1), ns per step:")
    chosen = tt.dynamics.sorted_pays
    for activation in ("ramp", "smoothstep"):
        for m in (128, 256, 1000):
            for eta in (0.004, 0.05, 0.2):
                net = tt.init_network(m, 0, eta=eta, activation=activation)
                times = []
                for kernel in ("dense", "sorted"):
                    times.append(best_of(lambda: tt.sgd(net, TARGET, h=1e-4, eps=0.1,
                                                        steps=200_000, n_records=2, kernel=kernel),
                                         1, 3) / 200_000)
                print(f"  {activation:>10}, m = {m:>4}, eta = {eta:<5}: dense {times[0] * 1e9:6.1f}, "
                      f"sorted {times[1] * 1e9:6.1f}; chosen: {'sorted' if chosen(net) else 'dense'}")
    d, m = 10, 10
    target = tt.AdditiveNetwork(0.0, np.ones((d, 3)), np.tile([0.3, 0.5, 0.7], (d, 1)), eta=1.0,
                                activation="heaviside")
    net = tt.init_additive(d, m, 0, eta=0.01, activation="smoothstep", a_scale=3.0)
    steps = 1_000_000
    kernel = best_of(lambda: tt.sgd(net, target, h=1e-4, eps=0.01, steps=steps, n_records=2), 1, 5) / steps
    rng = np.random.default_rng(0)
    X, xi = rng.random((1000, d)), rng.uniform(-1, 1, 1000)
    loop = best_of(lambda: ref.additive_sgd(net, target, 1e-4, 0.01, X, xi), 1, 1) / 1000
    print(f"additive, d = {d}, m = {m} per coordinate, smoothstep: kernel {kernel * 1e9:.0f} ns/step "
          f"({1 / kernel / 1e6:.1f} M steps/s), per-step NumPy loop {loop * 1e9:.0f} ns/step, "
          f"ratio {loop / kernel:.0f}")
    teacher = tt.Network([0.0, 1.0, -2.0, 3.0], [0.3, 0.5, 0.7], eta=1.0, activation="relu")
    X = np.random.default_rng(0).random(1000)
    net = tt.init_network(10, 0, eta=1.0, activation="relu", a_scale=3.0)
    for batch in (None, 32):
        epochs = 5000
        kernel = best_of(lambda: tt.gd(net, teacher, X, h=0.1, eps=0.01, epochs=epochs,
                                       batch_size=batch, n_records=2), 1, 3) / epochs
        order = [np.arange(1000)] if batch is None else [np.arange(i, min(i + 32, 1000))
                                                          for i in range(0, 1000, 32)]
        loop = best_of(lambda: ref.gd(net, X, teacher(X), 0.1, 0.01, order * 20), 1, 1) / 20
        print(f"gd, 1000 points, relu m = 10, batch {batch or 'all'}: kernel {kernel * 1e6:.1f} us "
              f"per epoch, NumPy loop {loop * 1e6:.0f} us, ratio {loop / kernel:.0f}")
    replicas, steps = 256, 400_000
    for activation in ("ramp", "smoothstep", "relu"):
        nets = [tt.init_network(20, s, eta=4e-3, activation=activation) for s in range(replicas)]
        for workers in (1, os.cpu_count()):
            wall = best_of(lambda: tt.sgd_many(nets, TARGET, seeds=range(replicas), steps=steps,
                                               n_records=2, workers=workers, **PAPER), 1, 3)
            print(f"sgd_many, {replicas} replicas, {activation}, m = 20, {workers} thread(s): "
                  f"{wall / (replicas * steps) * 1e9:.1f} ns per replica-step")


if __name__ == "__main__":
    main()
