"""Networks on Gaussian inputs, in one run (issue: Gaussian inputs in d dimensions):

* exact loss + gradient for (m, d) = (10, 10) and (100, 100), ReLU student against a ReLU
  teacher of 3 neurons: the kernel against its NumPy twin (reference.gaussian_loss and
  gaussian_grad) and against a Monte Carlo estimate of the loss and gradient from 1e5
  samples (what a user without closed forms does; its error is still about 1e-2 relative);
* SGD ns per step for (m, d) = (20, 50): tt.sgd on given samples (checks included), against
  the per-step NumPy loop (reference.gaussian_sgd) and a numba loop (fastmath off) on the
  same samples, and tt.sgd with its own draws against the cost of numpy drawing the step's
  d + 1 numbers alone.

    python bench/bench_gaussian.py

Goals: loss + gradient (10, 10) <= 5 us, (100, 100) <= 300 us; SGD on given samples >= 1.5x
faster than numba; with its own draws within 1.2x of (given samples + the draws alone).
"""
from machine import best_of, describe  # first: it pins OpenBLAS to one thread

import numpy as np

import twotimescale as tt
from twotimescale import reference as ref


def pair(m, d):
    rng = np.random.default_rng(m + d)
    V = np.linalg.qr(rng.standard_normal((d, 3)))[0].T
    return (tt.GaussianNetwork(rng.standard_normal(m + 1), rng.standard_normal((m, d)) / np.sqrt(d)),
            tt.GaussianNetwork([0.0, 1.0, 1.0, 1.0], V))


def monte_carlo(net, target, X):
    """Loss and gradient estimated on the samples X."""
    z = X @ net.W.T
    phi = np.maximum(z, 0.0)
    r = net.a[0] + phi @ net.a[1:] - target(X)
    grad_w = 2 * ((r[:, None] * (z > 0)) * net.a[1:]).T @ X / len(X)
    return np.mean(r ** 2), 2 * np.concatenate([[r.mean()], phi.T @ r / len(X)]), grad_w


def numba_sgd():
    """A strict per-step SGD loop compiled by numba (fastmath off), on given samples."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(fastmath=False)
    def run(a, W, c, V, h, eps, X, xi):
        m, d = W.shape
        for i in range(X.shape[0]):
            x = X[i]
            y = c[0] + xi[i]
            for k in range(V.shape[0]):
                t = 0.0
                for q in range(d):
                    t += V[k, q] * x[q]
                y += c[k + 1] * max(t, 0.0)
            f = a[0]
            z = np.empty(m)
            for j in range(m):
                t = 0.0
                for q in range(d):
                    t += W[j, q] * x[q]
                z[j] = t
                f += a[j + 1] * max(t, 0.0)
            r = f - y
            a[0] -= 2 * h * r
            for j in range(m):
                g = 2 * h * eps * r * a[j + 1] * (1.0 if z[j] > 0 else 0.0)
                a[j + 1] -= 2 * h * r * max(z[j], 0.0)
                for q in range(d):
                    W[j, q] -= g * x[q]
        return a, W

    return run


def main():
    print(describe())
    print("loss + gradient (us): kernel | twin | Monte Carlo 1e5 samples")
    rng = np.random.default_rng(0)
    for m, d in [(10, 10), (100, 100)]:
        net, target = pair(m, d)
        X = rng.standard_normal((100_000, d))
        kernel = best_of(lambda: tt.loss_and_grad(net, target), 2000 if m == 10 else 50)
        twin = best_of(lambda: (ref.gaussian_loss(net, target), ref.gaussian_grad(net, target)),
                       3 if m == 10 else 1, repeat=3)
        mc = best_of(lambda: monte_carlo(net, target, X), 2, repeat=3)
        print(f"  (m, d) = ({m}, {d}): {kernel * 1e6:8.1f} | {twin * 1e6:10.0f} "
              f"({twin / kernel:.0f}x) | {mc * 1e6:8.0f} ({mc / kernel:.0f}x)")
    m, d, steps = 20, 50, 200_000
    net, target = pair(m, d)
    net = net.replace(a=0.1 * net.a)
    X, xi = ref.draw_gaussian_samples(0, steps, d)
    run = dict(h=0.01, eps=0.1, steps=steps, n_records=2)
    given = best_of(lambda: tt.sgd(net, target, samples=(X, xi), **run), 1, repeat=5) / steps
    loop = best_of(lambda: ref.gaussian_sgd(net, target, 0.01, 0.1, X[:2000], xi[:2000]), 1,
                   repeat=3) / 2000
    print(f"SGD (m, d) = ({m}, {d}), ns per step: tt.sgd on given samples {given * 1e9:.0f}; "
          f"NumPy loop {loop * 1e9:.0f} ({loop / given:.0f}x)")
    jit = numba_sgd()
    if jit is not None:
        args = (target.a, target.W, 0.01, 0.1, X, xi)
        jit(net.a.copy(), net.W.copy(), *args)
        t = best_of(lambda: jit(net.a.copy(), net.W.copy(), *args), 1, repeat=5) / steps
        print(f"  numba loop (fastmath off) {t * 1e9:.0f} ns: tt.sgd is {t / given:.2f}x faster")
    drawn = best_of(lambda: tt.sgd(net, target, seed=1, **run), 1, repeat=5) / steps
    gen = np.random.Generator(np.random.PCG64(1))
    draws = best_of(lambda: [gen.standard_normal((steps, d)), gen.random(steps)], 1) / steps
    print(f"  own draws {drawn * 1e9:.0f} ns; given + draws alone {(given + draws) * 1e9:.0f} "
          f"(draws {draws * 1e9:.0f}): ratio {drawn / (given + draws):.2f}")


if __name__ == "__main__":
    main()
