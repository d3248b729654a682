"""Gradient flow on the paper's setting (m = 20, eta = 4e-3, t_end = 0.035): our compiled
integrators (method="auto": dopri5 or ARS, whichever it picks) against the NumPy twin
(twotimescale.reference.flow) and against scipy.integrate.solve_ivp (RK45, BDF, Radau) on the
same exact right-hand side, in one run.

The error of a run is the max distance of its final (a, u) to a reference solution (our flow
at rtol = 1e-11, which the tests check against Radau at rtol = 1e-11). SciPy runs at
rtol = 1e-6, atol = 1e-9. Ours runs at rtol = 1e-4, 3e-5, ... 1e-10 (atol = 1e-3 rtol); "same
accuracy" is the fastest of our runs whose error is at most that SciPy method's error. The
last lines give nfev at eps = 1e-6 over nfev at eps = 1e-2, for ARS alone at rtol = 1e-5 ...
1e-9 and for "auto" at rtol = 1e-6.

    python bench/bench_flow.py

Goals (issue 4): nfev at eps = 1e-6 at most 1.5x that at eps = 1e-2; at least 10x faster than
the best SciPy method at every eps, for the same accuracy.
"""
from machine import best_of, describe  # first: it pins OpenBLAS to one thread

import time

import numpy as np
from scipy.integrate import solve_ivp

import twotimescale as tt
from twotimescale import reference

TARGET = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))
NET = tt.init_network(20, 0, eta=4e-3)
T_END = 0.035
OUR_RTOLS = (1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8, 3e-9, 1e-9, 3e-10, 1e-10)


def timed(run, repeat=3):
    """(least wall time of ``repeat`` calls, the result of one more)."""
    return best_of(run, number=1, repeat=repeat), run()


def scipy_flow(method, eps):
    m = NET.m
    calls = [0]

    def rhs(_, y):
        calls[0] += 1
        _, grad_a, grad_u = tt.loss_and_grad(NET.replace(a=y[:m + 1], u=y[m + 1:]), TARGET)
        return np.concatenate([-grad_a / eps, -grad_u])

    start = time.perf_counter()
    sol = solve_ivp(rhs, (0, T_END), np.concatenate([NET.a, NET.u]), method=method, rtol=1e-6,
                    atol=1e-9)
    return time.perf_counter() - start, calls[0], sol.y[:, -1]


def main():
    print(describe())
    print(f"paper setting, m = 20, eta = 4e-3, t_end = {T_END}")
    print(f"{'eps':>7} {'method':>8} {'rtol':>6} {'wall ms':>9} {'nfev':>8} {'error':>8} "
          f"{'ours faster':>12} {'same accuracy':>14}")
    row = "{:>7g} {:>8} {:>6.0e} {:>9.3f} {:>8} {:>8.1e} {:>12} {:>14}"
    for eps in (1.0, 1e-2, 1e-4, 1e-6):
        exact = tt.flow(NET, TARGET, eps=eps, t_end=T_END, rtol=1e-11, atol=1e-13, n_records=2)
        y_exact = np.concatenate([exact.a[-1], exact.u[-1]])
        ours = {}
        for rtol in OUR_RTOLS:
            wall, traj = timed(lambda: tt.flow(NET, TARGET, eps=eps, t_end=T_END, rtol=rtol,
                                                 atol=rtol * 1e-3, n_records=2))
            err = np.abs(np.concatenate([traj.a[-1], traj.u[-1]]) - y_exact).max()
            ours[rtol] = (wall, err)
            print(row.format(eps, traj.method, rtol, 1e3 * wall, traj.nfev, err, "", ""))
        chosen = traj.method
        wall, (a, u, _) = timed(lambda: reference.flow(NET, TARGET, eps, np.array([0, T_END]),
                                                         1e-6, 1e-9, chosen), repeat=1)
        err = np.abs(np.concatenate([a[-1], u[-1]]) - y_exact).max()
        print(row.format(eps, "NumPy", 1e-6, 1e3 * wall, "", err, f"{wall / ours[1e-6][0]:.1f}x", ""))
        for method in ("RK45", "BDF", "Radau"):
            wall, nfev, y = scipy_flow(method, eps)
            err = np.abs(y - y_exact).max()
            fast = min((w for w, e in ours.values() if e <= err), default=None)
            same = f"{wall / fast:.1f}x" if fast else "-"
            print(row.format(eps, method, 1e-6, 1e3 * wall, nfev, err, f"{wall / ours[1e-6][0]:.1f}x",
                             same))
    for method, rtol in [("ars", 10.0 ** -k) for k in range(5, 10)] + [("auto", 1e-6)]:
        nfev = [tt.flow(NET, TARGET, eps=eps, t_end=T_END, n_records=2, rtol=rtol,
                        atol=rtol * 1e-3, method=method).nfev for eps in (1e-2, 1e-6)]
        print(f"nfev(1e-6) / nfev(1e-2), {method}, rtol {rtol:.0e}: {nfev[1]} / {nfev[0]} "
              f"= {nfev[1] / nfev[0]:.2f}")


if __name__ == "__main__":
    main()
