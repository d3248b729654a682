"""Gradient flow on the paper's setting (m = 20, eta = 4e-3, t_end = 0.035): our compiled
integrators (method="auto": dopri5 or ARS, whichever it picks) against the NumPy twin
(twotimescale.reference.flow) and against scipy.integrate.solve_ivp (RK45, BDF, Radau) on the
same exact right-hand side, in one run.

The error of a run is the max distance of its final (a, u) to a reference solution (our flow
at rtol = 1e-11, which the tests check against Radau at rtol = 1e-11). SciPy runs at
rtol = 1e-6, atol = 1e-9. Ours runs at rtol = 1e-4, 3e-5, ... 1e-10 (atol = 1e-3 rtol); "same
accuracy" is the fastest of our runs whose error is at most that SciPy method's error. The
last lines give nfev at eps = 1e-6 over nfev at eps = 1e-2, for ARS alone at rtol = 1e-5 ...
1e-9 and for "auto" at rtol = 1e-6; then, for seeds 0, 1 and 2, the same ratio for one and the
same method, SciPy's RK45, between the limit ODE du/dt = -grad_u L(a*(u), u) (what the flow
at eps = 1e-6 follows, to O(eps)) and the flow at eps = 1e-2: how much harder the problem
itself becomes, whatever the integrator.

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


def scipy_problem(net, eps):
    """(right-hand side, initial state) of the flow at ``eps`` for solve_ivp, on the exact
    population gradient; for eps = 0 the limit ODE in u alone, a*(u) by tt.optimal_outer
    inside each evaluation."""
    m = net.m

    def flow_rhs(_, y):
        _, grad_a, grad_u = tt.loss_and_grad(net.replace(a=y[:m + 1], u=y[m + 1:]), TARGET)
        return np.concatenate([-grad_a / eps, -grad_u])

    def limit_rhs(_, u):
        at_u = net.replace(u=u)
        return -tt.loss_and_grad(at_u.replace(a=tt.optimal_outer(at_u, TARGET)), TARGET)[2]

    return (limit_rhs, net.u) if eps == 0 else (flow_rhs, np.concatenate([net.a, net.u]))


def scipy_flow(method, eps, net=NET):
    """(wall time, evaluations, final state) of solve_ivp at rtol = 1e-6, atol = 1e-9."""
    rhs, y0 = scipy_problem(net, eps)
    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return rhs(t, y)

    start = time.perf_counter()
    sol = solve_ivp(counted, (0, T_END), y0, method=method, rtol=1e-6, atol=1e-9)
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
    for seed in range(3):
        net = tt.init_network(20, seed, eta=4e-3)
        limit, flow = (scipy_flow("RK45", eps, net)[1] for eps in (0.0, 1e-2))
        print(f"RK45 on the problem itself, seed {seed}: nfev(limit ODE) / nfev(eps = 1e-2) = "
              f"{limit} / {flow} = {limit / flow:.2f}")


if __name__ == "__main__":
    main()
