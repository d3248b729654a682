"""Additive networks on [0, 1]^d: exact population quantities through the univariate
kernels, their NumPy twins, d = 1 as the univariate case to the bit, and training."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import twotimescale as tt
from twotimescale import reference as ref

from rounding import residual_scale
from strategies import ETAS, TRAINABLE, positions, weight


@st.composite
def additive(draw, activations=TRAINABLE, d=None, eta=None):
    d = draw(st.integers(1, 4)) if d is None else d
    m = draw(st.integers(1, 6))
    eta = draw(ETAS) if eta is None else eta
    u = np.array([draw(positions(m, eta)) for _ in range(d)])
    a = np.array(draw(st.lists(weight, min_size=d * m, max_size=d * m))).reshape(d, m)
    return tt.AdditiveNetwork(draw(weight), a, u, eta=eta,
                              activation=draw(st.sampled_from(activations)))


@st.composite
def pairs(draw):
    net = draw(additive())
    return net, draw(additive(activations=list(tt.ACTIVATIONS), d=net.d))


@given(pairs())
@settings(max_examples=100, deadline=None)
def test_kernels_equal_reference(pair):
    net, target = pair
    scale = residual_scale(net, target)
    loss, ga0, ga, gu = tt.loss_and_grad(net, target)
    assert abs(loss - ref.additive_loss(net, target)) <= 1e-12 * scale ** 2
    ra0, ra, ru = ref.additive_grad(net, target)
    assert abs(ga0 - ra0) <= 1e-12 * scale
    np.testing.assert_allclose(ga, ra, rtol=0, atol=1e-12 * scale ** 2)
    np.testing.assert_allclose(gu, ru, rtol=0, atol=1e-12 * scale ** 2 / net.eta)


@given(pairs(), st.data())
@settings(max_examples=60, deadline=None)
def test_gradient_equals_finite_differences(pair, data):
    net, target = pair
    _, ga0, ga, _ = tt.loss_and_grad(net, target)
    k, j = data.draw(st.integers(0, net.d - 1)), data.draw(st.integers(0, net.m - 1))
    h = 1e-4
    plus, minus = net.a.copy(), net.a.copy()
    plus[k, j] += h
    minus[k, j] -= h
    fd = (tt.population_loss(net.replace(a=plus), target)
          - tt.population_loss(net.replace(a=minus), target)) / (2 * h)
    assert abs(fd - ga[k, j]) <= 1e-12 * residual_scale(net, target) ** 2 / h    # L is quadratic in a
    fd0 = (tt.population_loss(net.replace(a0=net.a0 + h), target)
           - tt.population_loss(net.replace(a0=net.a0 - h), target)) / (2 * h)
    assert abs(fd0 - ga0) <= 1e-12 * residual_scale(net, target) ** 2 / h


def test_loss_agrees_with_monte_carlo():
    target = tt.AdditiveNetwork(0.5, np.tile([1.0, -1.0, 1.0], (3, 1)),
                                np.tile([0.3, 0.5, 0.7], (3, 1)), eta=1.0, activation="heaviside")
    net = tt.init_additive(3, 6, 0, eta=0.05, activation="smoothstep", a_scale=3.0)
    X = np.random.default_rng(1).random((400_000, 3))
    sample = (net(X) - target(X)) ** 2
    assert abs(tt.population_loss(net, target) - sample.mean()) < 4 * sample.std() / np.sqrt(X.shape[0])


@given(pairs())
@settings(max_examples=60, deadline=None)
def test_optimal_outer(pair):
    net, target = pair
    a0, a = tt.optimal_outer(net, target)
    best = net.replace(a0=a0, a=a)
    _, ga0, ga, _ = tt.loss_and_grad(best, target)
    # the gradient 2 (G a* - b) is a sum of terms up to scale: it vanishes to their rounding
    # and lstsq's (1500 examples: at most 9e-12 scale)
    scale = residual_scale(best, target) ** 2
    assert abs(ga0) <= 1e-10 * scale and np.abs(ga).max() <= 1e-10 * scale
    assert tt.population_loss(best, target) <= tt.population_loss(net, target) + 1e-12 * scale
    r0, ra = ref.additive_optimal_outer(net, target)     # a* itself may be ill-posed: compare
    assert abs(tt.population_loss(net.replace(a0=r0, a=ra), target)       # the loss reached
               - tt.population_loss(best, target)) <= 1e-10 * scale


@given(additive(d=1), additive(activations=list(tt.ACTIVATIONS), d=1))
@settings(max_examples=100, deadline=None)
def test_one_coordinate_is_the_univariate_network_to_the_bit(net, target):
    uni, teacher = net.coordinate(0, net.a0), target.coordinate(0, target.a0)
    loss, ga0, ga, gu = tt.loss_and_grad(net, target)
    uloss, uga, ugu = tt.loss_and_grad(uni, teacher)
    assert loss == uloss and ga0 == uga[0]
    np.testing.assert_array_equal(ga[0], uga[1:])
    np.testing.assert_array_equal(gu[0], ugu)
    x = np.random.default_rng(0).random(300)
    traj = tt.sgd(net, target, h=1e-4, eps=0.5, steps=300, samples=(x[:, None], x * 0.1))
    utraj = tt.sgd(uni, teacher, h=1e-4, eps=0.5, steps=300, samples=(x, x * 0.1))
    np.testing.assert_array_equal(traj.a, utraj.a)
    np.testing.assert_array_equal(traj.u, utraj.u)
    np.testing.assert_array_equal(traj.loss, utraj.loss)
    a0, a = tt.optimal_outer(net, target)               # a* is ill-posed when G is nearly
    ua = tt.optimal_outer(uni, teacher)                   # singular: compare the loss reached
    assert abs(tt.population_loss(net.replace(a0=a0, a=a), target)
               - tt.population_loss(uni.replace(a=ua), teacher)) <= 1e-10 * residual_scale(net, target) ** 2


@pytest.mark.parametrize("activation, eta", [("ramp", 0.05), ("smoothstep", 0.1), ("relu", 1.0)])
def test_sgd_equals_reference(activation, eta):
    target = tt.AdditiveNetwork(0.0, np.tile([1.0, -1.0, 1.0], (4, 1)),
                                np.tile([0.3, 0.5, 0.7], (4, 1)), eta=1.0, activation="heaviside")
    net = tt.init_additive(4, 10, 2, eta=eta, activation=activation, a_scale=1.0)
    rng = np.random.default_rng(3)
    X, xi = rng.random((5000, 4)), rng.uniform(-1, 1, 5000)
    traj = tt.sgd(net, target, h=1e-4, eps=0.5, steps=5000, samples=(X, xi))
    a0, a, u = ref.additive_sgd(net, target, 1e-4, 0.5, X, xi)
    np.testing.assert_allclose(traj.a[-1], np.concatenate([[a0], a.ravel()]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.u[-1], u.ravel(), rtol=0, atol=1e-12)
    assert traj.final == net.replace(a0=traj.a[-1][0], a=traj.a[-1][1:].reshape(4, 10),
                                     u=traj.u[-1].reshape(4, 10))


def test_replicas_and_gd_train_additive_networks():
    target = tt.AdditiveNetwork(0.0, np.tile([1.0, -1.0, 1.0], (2, 1)),
                                np.tile([0.3, 0.5, 0.7], (2, 1)), eta=1.0, activation="heaviside")
    nets = [tt.init_additive(2, 10, s, eta=0.01, activation="smoothstep", a_scale=3.0) for s in range(3)]
    many = tt.sgd_many(nets, target, seeds=[0, 1, 2], h=1e-3, eps=0.1, steps=4000, n_records=3)
    for net, seed, traj in zip(nets, [0, 1, 2], many):
        alone = tt.sgd(net, target, h=1e-3, eps=0.1, steps=4000, n_records=3, seed=seed)
        np.testing.assert_array_equal(traj.u, alone.u)
    X = np.random.default_rng(0).random((500, 2))
    traj = tt.gd(nets[0], target, X, h=0.05, eps=0.5, epochs=300)
    assert traj.status == "ok" and traj.loss[-1] < traj.loss[0] / 10


@pytest.mark.parametrize("make, words", [
    (lambda: tt.AdditiveNetwork(0, np.zeros((2, 3)), np.zeros((2, 4)), eta=0.1), "same shape"),
    (lambda: tt.AdditiveNetwork(0, np.zeros(3), np.zeros(3), eta=0.1), "of shape (d, m)"),
    (lambda: tt.AdditiveNetwork(np.nan, np.zeros((1, 3)), np.zeros((1, 3)), eta=0.1), "a0 must be finite"),
    (lambda: tt.init_additive(0, 3, 0, eta=0.1), "d must be a whole number"),
    (lambda: tt.population_loss(tt.init_additive(2, 3, 0, eta=0.1), tt.init_additive(3, 3, 0, eta=0.1)),
     "same dimension"),
    (lambda: tt.sgd(tt.init_additive(2, 3, 0, eta=0.1), tt.init_additive(2, 3, 1, eta=0.1), h=1e-3,
                    eps=0.1, steps=5, samples=(np.zeros((5, 3)), np.zeros(5))), "must have shape (5, 2)"),
    (lambda: tt.gd(tt.init_additive(2, 3, 0, eta=0.1), tt.init_additive(2, 3, 1, eta=0.1), np.zeros(4),
                   h=0.1, eps=0.1, epochs=1), "X must have shape (n, 2)"),
])
def test_additive_rejects(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert words in str(err.value)


@pytest.mark.parametrize("activation, eta, batch, h", [("smoothstep", 0.05, None, 0.02),
                                                       ("ramp", 0.05, 16, 0.02),
                                                       ("relu", 1.0, None, 0.01)])
def test_gd_equals_reference(activation, eta, batch, h):
    from test_dynamics import batches_like_gd
    target = tt.AdditiveNetwork(0.0, np.tile([1.0, -1.0, 1.0], (3, 1)),
                                np.tile([0.3, 0.5, 0.7], (3, 1)), eta=1.0, activation="heaviside")
    net = tt.init_additive(3, 5, 1, eta=eta, activation=activation, a_scale=1.0)
    X = np.random.default_rng(2).random((64, 3))
    traj = tt.gd(net, target, X, h=h, eps=0.5, epochs=100, batch_size=batch, seed=7, n_records=3)
    a0, a, u = ref.additive_gd(net, X, target(X), h, 0.5, batches_like_gd(7, 64, batch or 64, 100))
    np.testing.assert_allclose(traj.a[-1], np.concatenate([[a0], a.ravel()]), rtol=0,
                               atol=1e-12 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(traj.u[-1], u.ravel(), rtol=0, atol=1e-12)


def test_replicas_from_one_shared_additive_start():
    target = tt.AdditiveNetwork(0.0, np.ones((2, 3)), np.tile([0.3, 0.5, 0.7], (2, 1)), eta=1.0,
                                activation="heaviside")
    net = tt.init_additive(2, 5, 0, eta=0.05, activation="ramp", a_scale=1.0)
    many = tt.sgd_many(net, target, seeds=[4, 5], h=1e-3, eps=0.1, steps=500, n_records=2)
    for seed, traj in zip([4, 5], many):
        alone = tt.sgd(net, target, h=1e-3, eps=0.1, steps=500, n_records=2, seed=seed)
        np.testing.assert_array_equal(traj.u, alone.u)
