"""The exact Hessian (docs/maths.rst §7): equal to its NumPy twin, to central differences of
the exact gradient, symmetric, its a-block 2 G; refused where it does not exist."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import twotimescale as tt
from twotimescale import reference as ref

import exact
import rounding
from conftest import PAPER_TARGET
from strategies import networks, targets

DIRAC = {"ramp": (-0.5, 0.5), "relu": (0.0,), "smoothstep": ()}


def jumps(target):
    return target.u[target.a[1:] != 0] if target.activation == "heaviside" else np.array([])


def kink_on_jump(net, target):
    """The first neuron with a Dirac kink inside (0, 1) on a jump of the target, or None."""
    for z in DIRAC[net.activation]:
        x = net.u + z * net.eta
        on = np.flatnonzero((0 < x) & (x < 1) & np.isin(x, jumps(target)))
        if on.size:
            return int(on[0])
    return None


def hessian_scale(net, target):
    """The sum of |terms| behind each entry: 2 int |psi_p psi_q| and the residual part with
    |r| replaced by the scale of its terms, plus what rounding the kink positions can move
    (exact.py): a correct code rounds to eps times this."""
    x, w = ref.quadrature(net, target)
    z = (x[None, :] - net.u[:, None]) * (1.0 / net.eta)
    slope = ref.derivative(net.activation, z)
    psi = np.abs(np.vstack([ref.features(net, x), net.a[1:, None] / net.eta * slope]))
    r = rounding.residual_scale(net, target)
    m = net.m
    S = 2 * (psi * w) @ psi.T
    j = np.arange(m)
    S[1 + j, m + 1 + j] += 2 * r * (slope @ w) / net.eta
    S[m + 1 + j, 1 + j] += 2 * r * (slope @ w) / net.eta
    curve = np.abs(ref.second_derivative(net.activation, z)) @ w + 2 * net.eta
    S[m + 1 + j, m + 1 + j] += 2 * np.abs(net.a[1:]) / net.eta ** 2 * r * curve
    peak = psi.max(axis=1, initial=0)          # the residual part's integrands peak below:
    peak[m + 1:] = np.maximum(peak[m + 1:], 24 * r * (1 + np.abs(net.a[1:]) / net.eta))
    return S + 2 * float(exact._moved([net, target])) * np.outer(peak, peak)


@given(networks(), targets())
@settings(max_examples=200, deadline=None)
def test_kernel_equals_twin(net, target):
    j = kink_on_jump(net, target)
    if j is not None:
        with pytest.raises(ValueError, match=f"kink of neuron {j} "):
            tt.hessian(net, target)
        return
    H = tt.hessian(net, target)
    err = np.abs(H - ref.hessian(net, target))
    scale = hessian_scale(net, target)
    assert np.all(err <= 1e-12 * scale), f"{np.max(err / np.maximum(scale, 1e-300)):.3g} x scale"
    np.testing.assert_array_equal(H, H.T)
    np.testing.assert_array_equal(H[:net.m + 1, :net.m + 1], 2 * tt.gram(net))


def gradient(net, target, theta):
    m = net.m
    ga, gu = tt.population_grad(net.replace(a=theta[:m + 1], u=theta[m + 1:]), target)
    return np.concatenate([ga, gu])


def discontinuity_within(net, target, j, h):
    """Whether neuron j's Dirac kinks pass 0, 1 or a jump of the target over [u - h, u + h]:
    the Hessian jumps there, and a difference quotient across it measures nothing."""
    walls = np.concatenate([[0.0, 1.0], jumps(target)])
    for z in DIRAC[net.activation]:
        x = net.u[j] + z * net.eta
        if np.any(np.abs(x - walls) <= 2 * h):
            return True
    return False


@given(networks(max_m=6), targets(), st.data())
@settings(max_examples=150, deadline=None)
def test_hessian_equals_central_differences_of_the_gradient(net, target, data):
    """Column by column. The gradient is quadratic in a, so its a-columns are exact to
    rounding; its u-columns are Lipschitz in u_j (away from the walls above), so a central
    difference of step h is off by at most h L / 2, L a bound on the u_j-derivative of H
    (docs/maths.rst §7: every term is a product of at most three of a / eta, s', s'' and r,
    each integral over a transition of width eta)."""
    assume(kink_on_jump(net, target) is None)
    H = tt.hessian(net, target)
    m, eta = net.m, net.eta
    theta = np.concatenate([net.a, net.u])
    column = data.draw(st.integers(0, 2 * m))
    h = 1e-3 if column <= m else 1e-6 * eta
    if column > m:
        assume(not discontinuity_within(net, target, column - m - 1, h))
    step = np.zeros(2 * m + 1)
    step[column] = h
    fd = (gradient(net, target, theta + step) - gradient(net, target, theta - step)) / (2 * h)
    A = np.abs(net.a).max()
    r = rounding.residual_scale(net, target)           # sup |r| and the scale of its terms
    slope = 3 * (rounding.term_size(net) + rounding.term_size(target)) / min(eta, target.eta)
    top = rounding.term_size(net.replace(a=np.ones(m + 1)))
    rounding_error = 1e-14 * (1 + A / eta) * r * (1 + top) / h
    truncation = 0.0
    if column > m:
        truncation = h / 2 * 100 * ((A / eta) ** 2 * (1 + m) * top
                                    + A / eta ** 2 * (eta * slope + r) + slope + r / eta)
    assert np.all(np.abs(fd - H[:, column]) <= truncation + rounding_error)


@pytest.mark.parametrize("activation", ["ramp", "smoothstep", "relu"])
@pytest.mark.parametrize("m", [1, 20, 200])
def test_large_networks_equal_twin(activation, m):
    rng = np.random.default_rng(m)
    u = rng.uniform(-0.2, 1.2, m)
    u[: m // 10] = u[m // 10]                               # some neurons coincide
    net = tt.Network(rng.normal(size=m + 1), u, eta=4e-3, activation=activation)
    H = tt.hessian(net, PAPER_TARGET)
    err = np.abs(H - ref.hessian(net, PAPER_TARGET))
    assert np.all(err <= 1e-12 * hessian_scale(net, PAPER_TARGET))


@pytest.mark.parametrize("activation", ["ramp", "relu"])
def test_a_kink_on_a_jump_is_refused_naming_the_neuron(activation):
    """The target's middle jump is put where neuron 1's first kink falls, computed as the
    kernel computes it (u + z eta), so the two are equal to the bit."""
    eta = 4e-3
    u = np.array([0.1, 0.5003, 0.9])
    jump = u[1] + DIRAC[activation][0] * eta
    target = tt.PiecewiseConstant([0.3, jump, 0.7], [0.0, 1.0, -1.0, 0.5])
    net = tt.Network(np.ones(4), u, eta=eta, activation=activation)
    with pytest.raises(ValueError, match=r"kink of neuron 1 .*jump of the target"):
        tt.hessian(net, target)
    # a smoothstep has no Dirac kink there: its Hessian exists
    smooth = tt.Network(np.ones(4), u, eta=eta, activation="smoothstep")
    assert np.all(np.isfinite(tt.hessian(smooth, target)))
    # nor does a jump whose height is 0 make the residual jump
    flat = tt.PiecewiseConstant([0.3, jump, 0.7], [0.0, 1.0, 1.0, 0.5])
    assert np.all(np.isfinite(tt.hessian(net, flat)))


def test_heaviside_students_have_no_hessian():
    with pytest.raises(ValueError, match="heaviside"):
        tt.hessian(PAPER_TARGET, PAPER_TARGET)


@pytest.mark.parametrize("activation", ["ramp", "smoothstep", "relu"])
def test_additive_equals_twin_and_differences(activation):
    rng = np.random.default_rng(3)
    d, m = 3, 4
    net = tt.AdditiveNetwork(0.3, rng.normal(size=(d, m)), rng.uniform(0, 1, (d, m)), eta=0.2,
                             activation=activation)
    target = tt.AdditiveNetwork(-0.2, rng.normal(size=(d, 2)), rng.uniform(0, 1, (d, 2)),
                                eta=0.05, activation="smoothstep")
    H = tt.hessian(net, target)
    np.testing.assert_allclose(H, ref.additive_hessian(net, target), rtol=0,
                               atol=1e-12 * np.abs(H).max())
    np.testing.assert_array_equal(H, H.T)
    a, u = net.flat()
    theta = np.concatenate([a, u])

    def grad(theta):
        _, g0, ga, gu = tt.loss_and_grad(net.from_flat(theta[:1 + d * m], theta[1 + d * m:]),
                                         target)
        return np.concatenate([[g0], ga.ravel(), gu.ravel()])

    h = 1e-6
    fd = np.column_stack([(grad(theta + h * e) - grad(theta - h * e)) / (2 * h)
                          for e in np.eye(theta.size)])
    # the a-columns are exact to rounding (1e-15 |g| / h ~ 1e-8), the u-columns off by
    # h L / 2 with L ~ (|a| / eta)^3 ~ 1e3 here
    np.testing.assert_allclose(fd, H, rtol=0, atol=1e-6 * np.abs(H).max())
