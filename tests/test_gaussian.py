"""Networks on Gaussian inputs (docs/maths.rst §8): the closed forms against Monte Carlo and
against their NumPy twins, gradients against finite differences, near-parallel and
near-antiparallel rows, and every trainer against its twin."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import twotimescale as tt
from twotimescale import reference as ref

PAIRS = [("relu", "relu"), ("relu", "linear"), ("erf", "erf"), ("erf", "linear"),
         ("linear", "linear")]


def teacher_of(rng, act, d, k=2):
    if act == "hermite":
        v = rng.standard_normal(d)
        return tt.HermiteTarget(v / np.linalg.norm(v), [0.3, -0.5, 0.7, 0.2, -0.4, 0.1])
    return tt.GaussianNetwork(rng.standard_normal(k + 1), rng.standard_normal((k, d)), act)


ALL_PAIRS = PAIRS + [("relu", "hermite"), ("linear", "hermite")]


@pytest.mark.parametrize("act, tact", ALL_PAIRS)
def test_loss_and_features_equal_monte_carlo(act, tact):
    """4e5 samples: the test allows 5 standard errors of the sample mean (each estimate's
    own SE, printed in the message), so a wrong closed form off by a few percent fails."""
    rng = np.random.default_rng(7)
    d = 4
    net = tt.GaussianNetwork(rng.standard_normal(4), rng.standard_normal((3, d)), act)
    target = teacher_of(rng, tact, d)
    X = rng.standard_normal((400_000, d))
    r2 = (net(X) - target(X)) ** 2
    se = r2.std() / np.sqrt(len(X))
    loss = tt.population_loss(net, target)
    assert abs(loss - r2.mean()) <= 5 * se, (loss, r2.mean(), se)
    phi = np.hstack([np.ones((len(X), 1)), ref.gaussian_activation(act, X @ net.W.T)])
    sample = phi * target(X)[:, None]
    b = tt.features_target(net, target)
    se_b = sample.std(axis=0) / np.sqrt(len(X))
    assert np.all(np.abs(b - sample.mean(axis=0)) <= 5 * se_b + 1e-12), (b, sample.mean(axis=0))
    G = tt.gram(net)
    prod = phi[:, :, None] * phi[:, None, :]
    se_G = prod.std(axis=0) / np.sqrt(len(X))
    assert np.all(np.abs(G - prod.mean(axis=0)) <= 5 * se_G + 1e-12)


@st.composite
def gaussian_pairs(draw, near=False):
    d = draw(st.integers(1, 5))
    m = draw(st.integers(1, 4))
    act, tact = draw(st.sampled_from(ALL_PAIRS))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, d)) * draw(st.floats(0.1, 3.0))
    if near and m >= 2:      # a near-parallel or near-antiparallel pair of rows
        sign = draw(st.sampled_from([1.0, -1.0]))
        W[1] = sign * W[0] * draw(st.floats(0.5, 2.0)) + draw(st.floats(0, 1e-6)) * rng.standard_normal(d)
        if act == "relu" and not W[1].any():
            W[1] = W[0]
    a = rng.standard_normal(m + 1)
    target = teacher_of(rng, tact, d, draw(st.integers(0, 3)))
    return tt.GaussianNetwork(a, W, act), target


def scale(net, target):
    """The size of the loss's terms: rounding in L is relative to it."""
    G, b, square = ref.gaussian_normal_equations(net, target)
    return 1.0 + np.abs(net.a) @ np.abs(G) @ np.abs(net.a) + square


@given(gaussian_pairs(near=True))
@settings(max_examples=150, deadline=None)
def test_kernel_equals_twin(pair):
    net, target = pair
    loss, ga, gw = tt.loss_and_grad(net, target)
    s = scale(net, target)
    assert abs(loss - max(ref.gaussian_loss(net, target), 0.0)) <= 1e-12 * s
    ra, rw = ref.gaussian_grad(net, target)
    np.testing.assert_allclose(ga, ra, rtol=0, atol=1e-12 * s)
    np.testing.assert_allclose(gw, rw, rtol=0, atol=1e-12 * s * (1 + np.abs(net.W).max()))


@given(gaussian_pairs(), st.data())
@settings(max_examples=80, deadline=None)
def test_gradient_equals_finite_differences(pair, data):
    net, target = pair
    _, ga, gw = tt.loss_and_grad(net, target)
    j = data.draw(st.integers(0, net.m - 1))
    k = data.draw(st.integers(0, net.d - 1))
    h = 1e-5 * (1 + abs(net.W[j, k]))
    plus, minus = net.W.copy(), net.W.copy()
    plus[j, k] += h
    minus[j, k] -= h
    if net.activation == "relu" and not (plus[j].any() and minus[j].any()):
        return
    fd = (tt.population_loss(net.replace(W=plus), target)
          - tt.population_loss(net.replace(W=minus), target)) / (2 * h)
    # truncation O(h^2 L''') plus rounding eps * scale / h
    assert abs(fd - gw[j, k]) <= 1e-8 * (1 + abs(gw[j, k])) + 1e-12 * scale(net, target) / h
    e = np.zeros(net.m + 1)
    e[j] = h
    fa = (tt.population_loss(net.replace(a=net.a + e), target)
          - tt.population_loss(net.replace(a=net.a - e), target)) / (2 * h)
    assert abs(fa - ga[j]) <= 1e-12 * scale(net, target) / h    # L is quadratic in a


def test_near_parallel_and_antiparallel_rows_keep_their_digits():
    """K of two ReLU rows at angle 1e-9 and pi - 1e-9, against mpmath at 50 digits."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for angle in [1e-9, 1e-4, np.pi - 1e-4, np.pi - 1e-9]:
        p = np.array([1.0, 0.0])
        q = np.array([np.cos(angle), np.sin(angle)]) * 2.0
        net = tt.GaussianNetwork([0.0, 1.0, 0.0], np.vstack([p, q]), "relu")
        G = tt.gram(net)
        th = mpmath.atan2(mpmath.mpf(q[1]), mpmath.mpf(q[0]))     # the angle q really has
        exact = 2 * (mpmath.sin(th) + (mpmath.pi - th) * mpmath.cos(th)) / (2 * mpmath.pi)
        assert abs(G[1, 2] - float(exact)) <= 4e-16 * max(abs(float(exact)), 1e-300) + 1e-300, angle


def test_optimal_outer_solves_the_normal_equations():
    rng = np.random.default_rng(3)
    net = tt.init_gaussian(5, 6, 1)
    target = teacher_of(rng, "relu", 6, 3)
    a = tt.optimal_outer(net, target)
    _, ga, _ = tt.loss_and_grad(net.replace(a=a), target)
    assert np.abs(ga).max() < 1e-10


@pytest.mark.parametrize("act, tact", ALL_PAIRS)
def test_sgd_equals_twin_and_replicas_equal_runs(act, tact):
    rng = np.random.default_rng(5)
    d, steps = 5, 300
    net = tt.init_gaussian(3, d, 1, activation=act, a_scale=0.3)
    target = teacher_of(rng, tact, d)
    traj = tt.sgd(net, target, h=0.02, eps=0.5, steps=steps, seed=3, n_records=4)
    X, xi = ref.draw_gaussian_samples(3, steps, d)
    a, W = ref.gaussian_sgd(net, target, 0.02, 0.5, X, xi)
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(traj.final.W, W, rtol=0, atol=1e-12 * (1 + np.abs(W).max()))
    given_ = tt.sgd(net, target, h=0.02, eps=0.5, steps=steps, samples=(X, xi), n_records=9)
    assert np.array_equal(given_.a[-1], traj.a[-1]) and np.array_equal(given_.u[-1], traj.u[-1])
    many = tt.sgd_many(net, target, seeds=[3, 4], h=0.02, eps=0.5, steps=steps, n_records=4,
                       workers=2)
    assert np.array_equal(many[0].u, traj.u) and np.array_equal(many[0].a, traj.a)
    np.testing.assert_allclose(traj.loss, [tt.population_loss(net.from_flat(a_, u_), target)
                                           for a_, u_ in zip(traj.a, traj.u)], rtol=0, atol=0)


@pytest.mark.parametrize("act", ["relu", "erf", "linear"])
def test_gd_equals_twin(act):
    rng = np.random.default_rng(2)
    d = 4
    net = tt.init_gaussian(3, d, 1, activation=act, a_scale=0.3)
    target = teacher_of(rng, act, d)
    X = rng.standard_normal((50, d))
    traj = tt.gd(net, target, X, h=0.05, eps=0.5, epochs=5, batch_size=16, seed=2)
    brng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(2, spawn_key=(2,))))
    batches = [order[i:i + 16] for order in (brng.permutation(50) for _ in range(5))
               for i in range(0, 50, 16)]
    a, W = ref.gaussian_gd(net, X, target(X), 0.05, 0.5, batches)
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.final.W, W, rtol=0, atol=1e-12)


def test_diverging_sgd_keeps_its_record():
    net = tt.init_gaussian(3, 4, 0, a_scale=1.0)
    target = teacher_of(np.random.default_rng(0), "relu", 4)
    traj = tt.sgd(net, target, h=50.0, eps=1.0, steps=2000, n_records=50)
    assert traj.status == "diverged" and np.all(np.isfinite(traj.a))


def test_flow_equals_scipy_and_costs_the_same_as_eps_shrinks():
    integrate = pytest.importorskip("scipy.integrate")
    rng = np.random.default_rng(0)
    d = 5
    target = tt.GaussianNetwork([0, 1, 1, 1], np.linalg.qr(rng.standard_normal((d, 3)))[0].T)
    net = tt.init_gaussian(4, d, 0, a_scale=0.1)
    m = net.m

    def rhs(t, y):
        _, ga, gw = tt.loss_and_grad(net.from_flat(y[:m + 1], y[m + 1:]), target)
        return -np.concatenate([ga, gw.ravel()])

    sol = integrate.solve_ivp(rhs, (0, 5), np.concatenate(net.flat()), rtol=1e-11, atol=1e-12,
                              method="DOP853")
    traj = tt.flow(net, target, eps=1.0, t_end=5, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([traj.a[-1], traj.u[-1]]), sol.y[:, -1],
                               rtol=0, atol=1e-7)
    costs = [tt.flow(net, target, eps=eps, t_end=5).nfev for eps in (1e-3, 1e-6)]
    limit = tt.limit_flow(net, target, t_end=5)
    assert max(costs) <= 2 * limit.nfev
    assert abs(tt.flow(net, target, eps=1e-8, t_end=5).loss[-1] - limit.loss[-1]) < 1e-5


@pytest.mark.parametrize("make, words", [
    (lambda: tt.GaussianNetwork([0, 1], [[0.0, 0.0]]), "W[0] is zero"),
    (lambda: tt.GaussianNetwork([0, 1, 2], [[1.0, 0.0]]), "a must have shape"),
    (lambda: tt.GaussianNetwork([0, 1], [1.0, 0.0]), "of shape (m, d)"),
    (lambda: tt.GaussianNetwork([0, 1], [[np.nan, 0.0]]), "must be finite"),
    (lambda: tt.GaussianNetwork([0, 1], [[1.0, 0.0]], "ramp"), "activation must be one of"),
    (lambda: tt.HermiteTarget([1.0, 1.0], [0, 1]), "norm 1"),
    (lambda: tt.population_loss(tt.init_gaussian(2, 3, 0, "erf"),
                                tt.HermiteTarget([1.0, 0, 0], [0, 1])), "pairs that exist"),
    (lambda: tt.population_loss(tt.init_gaussian(2, 3, 0, "erf"),
                                tt.init_gaussian(2, 3, 0, "relu")), "pairs that exist"),
    (lambda: tt.population_loss(tt.init_gaussian(2, 3, 0), tt.init_gaussian(2, 4, 0)),
     "same dimension"),
    (lambda: tt.population_loss(tt.init_gaussian(2, 3, 0), tt.Network([0, 1], [0.5], 0.1)),
     "one kind"),
    (lambda: tt.hessian(tt.init_gaussian(2, 3, 0), tt.init_gaussian(2, 3, 1)), "not yet"),
    (lambda: tt.sgd(tt.init_gaussian(2, 3, 0), tt.init_gaussian(2, 3, 1), h=0.1, eps=0.1,
                    steps=5, samples=(np.zeros((5, 2)), np.zeros(5))), "shape (5, 3)"),
])
def test_refusals(make, words):
    with pytest.raises((ValueError, TypeError)) as err:
        make()
    assert words in str(err.value)


def test_a_hermite_target_is_no_student():
    h = tt.HermiteTarget([1.0, 0.0], [0, 1])
    with pytest.raises(TypeError, match="teacher only"):
        tt.sgd(h, h, h=0.1, eps=0.1, steps=5)
