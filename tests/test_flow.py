"""The gradient flow and its limit: against SciPy's Radau, the O(eps) approach to the limit,
the closed form against the pair equations, and the paper's theory."""
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import twotimescale as tt
from twotimescale import reference
from twotimescale._compiled import _flow
from twotimescale.flows import METHODS, _pair_time
from conftest import PAPER_TARGET as TARGET
from rounding import solves_well_posed
from strategies import networks, targets

JUMPS = np.diff(TARGET.values)


def radau(net, target, eps, t_end):
    solve_ivp = pytest.importorskip("scipy.integrate").solve_ivp
    """The flow by SciPy's Radau at rtol 1e-11 on the exact population gradient."""
    m = net.m

    def rhs(_, y):
        _, grad_a, grad_u = tt.loss_and_grad(net.replace(a=y[:m + 1], u=y[m + 1:]), target)
        return np.concatenate([-grad_a / eps, -grad_u])

    sol = solve_ivp(rhs, (0, t_end), np.concatenate([net.a, net.u]), method="Radau",
                    rtol=1e-11, atol=1e-13)
    return sol.y[:m + 1, -1], sol.y[m + 1:, -1]


def kernel_step(net, target, eps, dt, method="ars"):
    """One kernel step, shaped as reference.ars_step's or dopri_step's answer."""
    work = _flow.FlowWork(net._kernel, target._kernel, eps)
    n = net.m + 1
    y, y_new, err = np.concatenate([net.a, net.u]), np.empty(n + net.m), np.empty(n + net.m)
    if not _flow.flow_step(work, METHODS[method], y, dt, y_new, err):
        return None
    return y_new[:n], y_new[n:], err[n:] if method == "ars" else err


STEPS = {"ars": reference.ars_step, "dopri5": reference.dopri_step}


class WildStage(Exception):
    """A stage position outside |u| < 1e3, where G and I + c G can overflow."""


def twin_step(net, target, eps, dt, method):
    """The twin's step, and the (u_i, G(u_i)) of each solve it makes on the way (ARS's
    stages; dopri5 makes none), recorded from its calls of normal_equations. Raises
    WildStage at a wild stage, before solving there."""
    solves, normal_equations = [], reference.normal_equations

    def recording(at, teacher):
        if not np.all(np.abs(at.u) < 1e3):
            raise WildStage
        G, b = normal_equations(at, teacher)
        solves.append((at.u, G))
        return G, b

    with mock.patch.object(reference, "normal_equations", recording):
        return STEPS[method](net, target, net.a, net.u, dt, eps), solves


def well_posed(net, target, eps, dt, method="ars"):
    """The step is well conditioned, so that two correct codes agree to 1e-9:

    * ARS's solves, at its stage positions: cond(I + c G) <= 1e6 for eps > 0; for
      eps = 0, every eigenvalue of either code's G either far above the rank cut-offs
      (> 1e-6 |G|) or far below both (numpy's lstsq cuts at n eps |G|, the kernel a little
      higher);
    * the step itself: it amplifies a perturbation of (a, u) at most 1e3 times. Explicit
      stages are unstable when dt |d grad_u / du| is large (a ReLU of width eta gives
      ~ a^2 / eta^2), and dopri5's a-stages when dt 2 |G| / eps is; there the stages
      multiply each code's rounding differently. The perturbation has a generic direction:
      shifting every neuron alike keeps the gaps between them, and a step can be stable
      under that and still amplify 1e5 times a change in the gap of two nearly coinciding
      neurons, through the a*(u) of their nearly dependent features."""
    a, u = net.a, net.u
    try:
        base, solves = twin_step(net, target, eps, dt, method)
    except WildStage:
        return False
    if not solves_well_posed(net, solves, eps, dt):
        return False
    delta, rng = 1e-7, np.random.default_rng(0)
    moved = STEPS[method](net, target, a + delta * rng.standard_normal(a.size),
                          u + delta * rng.standard_normal(u.size), dt, eps)
    if base is None or moved is None:
        return base is None and moved is None
    return max(np.abs(x - y).max(initial=0) for x, y in zip(moved[:2], base[:2])) <= 1e3 * delta


@settings(max_examples=150, deadline=None)
@given(networks(max_m=8), targets(), st.sampled_from([0.0, 1e-6, 1e-2, 1.0]),
       st.floats(1e-7, 1e-3))
def test_step_matches_reference(net, target, eps, dt):
    """One ARS step of the kernel (pivoted Cholesky, minimum norm at eps = 0) against the
    NumPy twin (numpy.linalg.solve, lstsq), on neurons outside [0, 1], coinciding, on kinks."""
    assume(well_posed(net, target, eps, dt))
    assert_same_step(kernel_step(net, target, eps, dt), reference.ars_step(net, target, net.a,
                                                                          net.u, dt, eps))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
@settings(max_examples=100, deadline=None)
@given(networks(max_m=8), targets(), st.sampled_from([1e-2, 1.0]), st.floats(1e-7, 1e-3))
def test_dopri_step_matches_reference(net, target, eps, dt):
    """One dopri5 step of the kernel against the NumPy twin, on the same generated networks
    (an unstable step overflows in both: None from each)."""
    assume(well_posed(net, target, eps, dt, "dopri5"))
    theirs = reference.dopri_step(net, target, net.a, net.u, dt, eps)
    assert_same_step(kernel_step(net, target, eps, dt, "dopri5"), theirs and theirs[:3])


def assert_same_step(ours, theirs):
    assert (ours is None) == (theirs is None)
    if ours is None:
        return
    for x, y in zip(ours, theirs):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9 * (1 + np.abs(y).max()))


@pytest.mark.parametrize("eps, method", [(1.0, "ars"), (1e-2, "ars"), (0.0, "ars"),
                                         (1.0, "dopri5"), (1e-2, "dopri5")])
def test_flow_matches_reference(eps, method):
    """The compiled integration, step control included, against reference.flow. Seed 1: its
    G has condition 3e4 (seed 0 has two neurons 1.6e-4 apart and 3e6, and its a*(u) is only
    defined to cond(G) times rounding)."""
    net = tt.init_network(20, 1, eta=4e-3)
    times = np.linspace(0, 0.01, 3)
    a, u, steps = reference.flow(net, TARGET, eps, times, 1e-6, 1e-9, method)
    traj = (tt.flow(net, TARGET, eps=eps, t_end=0.01, n_records=3, method=method) if eps else
            tt.limit_flow(net, TARGET, t_end=0.01, n_records=3))
    assert traj.nsteps == steps and traj.method == method
    tol = 1e-11 if method == "dopri5" else 1e-9   # no solves: only the sums' order differs
    np.testing.assert_allclose(traj.u, u, rtol=0, atol=tol)
    if eps == 0:     # a*(u) moves 100x faster than u here; compare it at the kernel's own u
        a = [reference.optimal_outer(net.replace(u=x), TARGET) for x in traj.u]
    np.testing.assert_allclose(traj.a, a, rtol=0, atol=tol)


def test_dopri5_dense_output_is_consistent():
    """Shampine's interpolant (the twin's table; the kernel's equals the twin's records):
    at theta = 1 it is the step's solution (row sums b, the last stage 0), and its slope is
    the first stage at theta = 0 and the last (the slope at the new state) at theta = 1."""
    P = reference.DOPRI_DENSE
    np.testing.assert_allclose(P.sum(axis=1), np.append(reference.DOPRI_B, 0.0), rtol=0,
                               atol=1e-15)
    np.testing.assert_array_equal(P[:, 0], np.eye(7)[0])
    np.testing.assert_allclose(P @ np.arange(1, 5), np.eye(7)[6], rtol=0, atol=1e-14)


def test_limit_starts_on_the_minimum_norm_optimum():
    """Coinciding neurons and neurons past either end make G singular; the kernel's a*(u)
    (pivoted Cholesky, rank found by Higham's rule) is numpy's lstsq solution."""
    net = tt.Network(np.zeros(9), [0.3, 0.3, 0.3, -0.5, -0.2, 1.2, 1.5, 0.6], eta=0.05,
                     activation="smoothstep")
    G, b = reference.normal_equations(net, TARGET)
    assert np.linalg.matrix_rank(G) == 3          # 1, the neurons at 0.3, the one at 0.6
    start = tt.limit_flow(net, TARGET, t_end=1e-9, n_records=2).a[0]
    np.testing.assert_allclose(start, np.linalg.lstsq(G, b, rcond=None)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps, method", [(1.0, "ars"), (1e-2, "ars"), (1e-4, "ars"),
                                         (1.0, "dopri5"), (1e-2, "dopri5"), (1e-4, "dopri5")])
def test_flow_agrees_with_radau(eps, method):
    net = tt.init_network(20, 0, eta=4e-3)
    traj = tt.flow(net, TARGET, eps=eps, t_end=0.035, rtol=1e-9, atol=1e-12, n_records=2,
                   method=method)
    a, u = radau(net, TARGET, eps, 0.035)
    assert traj.status == "ok"
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(traj.u[-1], u, rtol=0, atol=1e-6)


def test_flow_approaches_the_limit_like_eps():
    net = tt.init_network(20, 1, eta=4e-3)
    limit = tt.limit_flow(net, TARGET, t_end=0.02, rtol=1e-11, atol=1e-13, n_records=2)
    epss = np.array([1e-5, 1e-6, 1e-7, 1e-8])
    gaps = [np.abs(tt.flow(net, TARGET, eps=e, t_end=0.02, rtol=1e-11, atol=1e-13,
                           n_records=2).u[-1] - limit.u[-1]).max() for e in epss]
    slope = np.polyfit(np.log10(epss), np.log10(gaps), 1)[0]
    assert 0.9 < slope < 1.1, gaps


def test_cost_does_not_grow_as_eps_shrinks():
    """Below some eps the flow costs what its limit costs, however small eps gets."""
    net = tt.init_network(20, 0, eta=4e-3)
    limit = tt.limit_flow(net, TARGET, t_end=0.035, n_records=2).nfev
    nfev = [tt.flow(net, TARGET, eps=e, t_end=0.035, n_records=2).nfev for e in (1e-4, 1e-6, 1e-8, 1e-10)]
    assert max(nfev) <= 1.2 * limit, (nfev, limit)


def test_dopri5_records_interpolate_between_free_steps():
    """dopri5's steps do not stop at the record times (Shampine's dense output fills them
    in), so 41 records change no bit of the run that 2 records give, and each interpolated
    record is as close to the flow as the steps are (about 1e-7 at rtol 1e-9)."""
    net = tt.init_network(20, 0, eta=4e-3)
    run = lambda t_end, n, rtol: tt.flow(net, TARGET, eps=1e-2, t_end=t_end, n_records=n,
                                         rtol=rtol, atol=rtol * 1e-3, method="dopri5")
    few, many = run(0.035, 2, 1e-9), run(0.035, 41, 1e-9)
    assert many.nsteps == few.nsteps
    assert np.array_equal(many.a[-1], few.a[-1]) and np.array_equal(many.u[-1], few.u[-1])
    for k in (7, 20, 33):
        exact = run(many.t[k], 2, 1e-12)
        np.testing.assert_allclose(many.a[k], exact.a[-1], rtol=0, atol=3e-7)
        np.testing.assert_allclose(many.u[k], exact.u[-1], rtol=0, atol=3e-7)


def test_auto_takes_the_explicit_method_unless_a_is_stiff():
    """On the paper's setting lambda_max(G) is about 9 (bounded by 11): over t_end = 0.035,
    dopri5's stability asks about 190 steps at eps = 1e-3 (bound 230) and 1900 at 1e-4."""
    net = tt.init_network(20, 0, eta=4e-3)
    chosen = {eps: tt.flow(net, TARGET, eps=eps, t_end=0.035, n_records=2).method
              for eps in (1.0, 1e-2, 1e-3, 1e-4, 1e-6)}
    assert chosen == {1.0: "dopri5", 1e-2: "dopri5", 1e-3: "dopri5", 1e-4: "ars", 1e-6: "ars"}
    with pytest.raises(ValueError, match="method must be one of 'auto', 'ars', 'dopri5'"):
        tt.flow(net, TARGET, eps=1.0, t_end=0.035, method="rk45")
    with pytest.raises(RuntimeWarning, match="stability alone asks about 2.3e\\+05 steps"):
        with warnings.catch_warnings():        # raised, so that the run does not happen
            warnings.simplefilter("error", RuntimeWarning)
            tt.flow(net, TARGET, eps=1e-6, t_end=0.035, method="dopri5")


def hypothesis_seeds(count, first=0):
    """The first ``count`` seeds from ``first`` on whose start meets the theorem's hypothesis
    (two neurons in every piece of the target): about one start in four does."""
    seeds = (s for s in range(first, first + 1000)
             if tt.check_assumptions(tt.init_network(20, s, eta=4e-3), TARGET).ok)
    return [next(seeds) for _ in range(count)]


def heaviside_start(first):
    """A heaviside network on the first start from seed ``first`` on that meets the
    hypothesis."""
    net = tt.init_network(20, hypothesis_seeds(1, first)[0], eta=4e-3)
    return tt.Network(np.zeros(21), net.u, eta=1.0, activation="heaviside")


def test_closed_form_matches_the_pair_equations():
    solve_ivp = pytest.importorskip("scipy.integrate").solve_ivp
    net = heaviside_start(1)
    limit = tt.limit_flow(net, TARGET, t_end=0.05, n_records=51)
    for v, d in zip(TARGET.breaks, JUMPS):
        jl, jr = np.flatnonzero(net.u <= v)[-1], np.flatnonzero(net.u >= v)[0]

        def rhs(_, y):
            dl, dr = v - y[0], y[1] - v
            return [d * d * dr * dr / (dl + dr) ** 2, -d * d * dl * dl / (dl + dr) ** 2]

        def hits_left(_, y):
            return v - y[0]

        def hits_right(_, y):
            return y[1] - v

        hits_left.terminal = hits_right.terminal = True
        sol = solve_ivp(rhs, (0, 0.05), [net.u[jl], net.u[jr]], events=[hits_left, hits_right],
                        rtol=1e-13, atol=1e-15, dense_output=True)
        for k, t in enumerate(limit.t):
            expected = sol.sol(min(t, sol.t[-1]))
            assert abs(limit.u[k, jl] - expected[0]) < 1e-8
            assert abs(limit.u[k, jr] - expected[1]) < 1e-8
        if sol.status == 1:                              # a neuron reached the jump
            gl, gr = v - net.u[jl], net.u[jr] - v
            small, large = min(gl, gr), max(gl, gr)
            hit = _pair_time(0.0, small, large ** 3 - small ** 3, d * d)
            assert abs(hit - sol.t[-1]) < 1e-8
    # the exact population loss at a*(u) is the closed-form sum over jumps
    for u, loss in zip(limit.u, limit.loss):
        closed = 0.0
        for v, d in zip(TARGET.breaks, JUMPS):
            dl, dr = v - u[u <= v].max(), u[u >= v].min() - v
            closed += d * d * dl * dr / (dl + dr) if dl + dr > 0 else 0.0
        assert abs(loss - closed) < 1e-12


def test_the_limit_reaches_zero_loss_in_finite_time():
    limit = tt.limit_flow(heaviside_start(2), TARGET, t_end=1.0, n_records=11)
    assert limit.loss[0] > 0.1
    assert limit.loss[-1] < 1e-24                        # every pair has stopped on its jump
    assert np.all(np.diff(limit.loss) <= 1e-15)


def test_limit_names_the_piece_without_two_neurons():
    u = [0.05, 0.1, 0.25, 0.3, 0.4, 0.55, 0.6, 0.7, 0.75, 0.85, 0.9]   # one in [0.35, 0.5)
    net = tt.Network(np.zeros(len(u) + 1), u, eta=1.0, activation="heaviside")
    report = tt.check_assumptions(net, TARGET)
    assert not report.ok and "[0.35, 0.5): 1 neurons" in repr(report)
    with pytest.raises(ValueError, match=r"\[0.35, 0.5\) holds 1 neuron"):
        tt.limit_flow(net, TARGET, t_end=0.1)


def test_two_timescales_succeed_where_one_fails():
    """The paper's claim, on its setting, from the first 20 starts that meet the theorem's
    hypothesis: at eps = 1e-4 every flow ends at (or, with two neurons sharing a jump, below)
    the loss of a neuron on each jump, sum D^2 eta / 12 for the ramp; at eps = 1 the flows
    are still far above it at a later time."""
    floor = np.sum(JUMPS ** 2) * 4e-3 / 12
    seeds = hypothesis_seeds(20)
    slow = np.array([tt.flow(tt.init_network(20, s, eta=4e-3), TARGET, eps=1e-4, t_end=1.0,
                             n_records=2).loss[-1] for s in seeds])
    fast = np.array([tt.flow(tt.init_network(20, s, eta=4e-3), TARGET, eps=1.0, t_end=3.0,
                             n_records=2).loss[-1] for s in seeds])
    assert np.all(slow <= 1.01 * floor)
    assert np.sum(fast > 5 * floor) >= 18


def test_sgd_tracks_the_flow():
    net = tt.init_network(20, 1, eta=0.05, a_scale=1.0)
    flow = tt.flow(net, TARGET, eps=0.05, t_end=0.2, n_records=11, rtol=1e-9)
    gaps = []
    for h in (1e-2, 1e-3):
        runs = tt.sgd_many(net, TARGET, seeds=range(64), h=h, eps=0.05, t_end=0.2, n_records=11)
        gaps.append(np.abs(np.mean([r.loss for r in runs], axis=0) - flow.loss).max())
    assert gaps[1] < gaps[0] / 4 and gaps[1] < 0.1


@pytest.mark.parametrize("kwargs, words", [
    (dict(eps=0.0, t_end=1.0), "eps must be finite and > 0"),
    (dict(eps=1.0, t_end=-1.0), "t_end must be finite and > 0"),
    (dict(eps=1.0, t_end=1.0, rtol=0.0), "rtol must be finite and > 0"),
    (dict(eps=1.0, t_end=1.0, n_records=1), "n_records must be a whole number >= 2"),
])
def test_flow_rejects(kwargs, words):
    with pytest.raises(ValueError) as err:
        tt.flow(tt.init_network(5, 0, eta=0.1), TARGET, **kwargs)
    assert words in str(err.value)


@pytest.mark.parametrize("integrate", [
    lambda net: tt.flow(net, TARGET, eps=0.1, t_end=1.0), lambda net: tt.limit_flow(net, TARGET, t_end=1.0)])
def test_flow_of_a_network_without_neurons_is_refused(integrate):
    with pytest.raises(ValueError, match="no neurons"):
        integrate(tt.Network([0.5], [], eta=0.1))


def test_flow_of_heaviside_network_is_refused():
    with pytest.raises(ValueError, match="limit_flow"):
        tt.flow(heaviside_start(1), TARGET, eps=0.1, t_end=1.0)


@pytest.mark.parametrize("activation, c", [("ramp", 12), ("smoothstep", 28)])
@pytest.mark.parametrize("eta", [1e-3, 1e-2, 0.05])
def test_jump_floor_is_the_closed_form_of_one_neuron_per_jump(activation, c, eta):
    """A neuron on the jump with weight D leaves D^2 eta int (s - 1{z >= 0})^2 dz = D^2 eta / c
    (1/12 for the ramp, 1/28 for the smoothstep); the best weights do a little better, by a
    relative O(eta) (the bias and weight trade the window's error against [0, 1])."""
    target = tt.PiecewiseConstant([0.5], [1.0, 4.0])
    closed = 9 * eta / c
    floor = tt.jump_floor(target, eta=eta, activation=activation)
    assert closed * (1 - eta / 4) <= floor <= closed
    net = tt.Network([1.0, 3.0], [0.5], eta=eta, activation=activation)
    assert tt.covers_jumps(net, target)
    assert not tt.covers_jumps(net.replace(u=[0.5 + 0.6 * eta]), target)
