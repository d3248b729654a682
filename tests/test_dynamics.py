"""SGD and GD kernels: equal to the per-step NumPy loops, reproducible from a seed, the same
in a batch of replicas as alone, and loud about bad input and divergence."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import twotimescale as tt
from twotimescale import reference as ref

from conftest import PAPER_TARGET as TARGET
from rounding import contracting_step, residual_scale
from strategies import networks, targets



def start(activation, eta, seed=1):
    """A network with a neuron just left of 0 and one just right of 1 (within eta/4)."""
    net = tt.init_network(20, seed, eta=eta, activation=activation, a_scale=1.0)
    return net.replace(u=np.concatenate([net.u[:-2], [-eta / 4, 1 + eta / 4]]))


# The SGD map multiplies a perturbation of u_j by up to 1 + 2 h eps |r a_j| s''/eta^2 when x
# falls on neuron j (s'' <= 12 for smoothstep), so rounding differences grow exponentially
# where that gain is large. These settings keep it small; there the loops must agree.
@pytest.mark.parametrize("activation, eta", [("ramp", 0.02), ("ramp", 0.1), ("smoothstep", 0.1),
                                             ("smoothstep", 0.3), ("relu", 1.0)])
def test_sgd_equals_reference_over_ten_thousand_steps(activation, eta):
    net = start(activation, eta)
    x, xi = ref.draw_samples(5, 10_000)
    traj = tt.sgd(net, TARGET, h=1e-4, eps=0.5, steps=10_000, samples=(x, xi))
    a, u = ref.sgd(net, TARGET, 1e-4, 0.5, x, xi)
    assert traj.status == "ok" and traj.steps == 10_000
    moved = traj.u[-1] != net.u          # the neurons outside [0, 1] took part (a ReLU right
    assert moved[-2] and (moved[-1] or activation == "relu")    # of 1 is never active)
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(traj.u[-1], u, rtol=0, atol=1e-12)


def forced(kernel, net):
    """``kernel`` where ``net`` can take it: the sorted kernel only for ramp and smoothstep."""
    return "sorted" if kernel == "sorted" and net.activation in ("ramp", "smoothstep") else "dense"


@pytest.mark.parametrize("kernel", ["dense", "sorted"])
@given(networks(), targets(), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_sgd_equals_reference_on_generated_networks(kernel, net, target, seed):
    """Each kernel (the sorted one forced on every ramp and smoothstep net) on generated
    networks: coinciding neurons, neurons outside [0, 1], inputs on the kinks, and some nets
    widened to several of the sorted kernel's blocks of 32 places. h = 1e-6, or less where
    2 h |phi(x)|^2 would pass 1, keeps the map's gain on rounding small (see above)."""
    steps = 60
    rng = np.random.default_rng(seed)
    if rng.random() < 0.3:
        net = net.replace(a=np.concatenate([net.a, rng.normal(0, 1, 60)]),
                          u=np.concatenate([net.u, rng.uniform(-0.2, 1.2, 60)]))
    x = rng.random(steps)
    x[: steps // 3] = rng.choice(np.concatenate([net.u, net.u - net.eta / 2, net.u + net.eta / 2]),
                                 steps // 3)                       # inputs on the kinks
    xi = rng.uniform(-1, 1, steps)
    h = contracting_step(net, x)                      # rounding.py says why
    traj = tt.sgd(net, target, h=h, eps=0.3, steps=steps, samples=(x, xi), n_records=3,
                  kernel=forced(kernel, net))
    a, u = ref.sgd(net, target, h, 0.3, x, xi)
    scale = residual_scale(net, target) + np.abs(a).max()
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(traj.u[-1], u, rtol=0, atol=1e-12 * scale)


def wide_start(activation, eta, m=300):
    """A wide network (trained with its neurons sorted by position) with neurons outside
    [0, 1] on both sides and a few coinciding ones."""
    u = tt.init_network(m, 2, eta=eta).u.copy()
    u[:6] = [-eta / 4, -0.3, 1 + eta / 4, 1.2, u[10], u[10]]
    return tt.Network(np.concatenate([[0.5], np.random.default_rng(0).normal(0, 0.3, m)]), u,
                      eta=eta, activation=activation)


# stable settings, as above (at eta = 4e-3 the dense kernel and the loop part ways as well)
@pytest.mark.parametrize("activation, eta", [("ramp", 0.02), ("ramp", 0.05), ("smoothstep", 0.1)])
def test_wide_sgd_equals_reference_over_ten_thousand_steps(activation, eta):
    net = wide_start(activation, eta)
    x, xi = ref.draw_samples(5, 10_000)
    traj = tt.sgd(net, TARGET, h=1e-4, eps=0.5, steps=10_000, samples=(x, xi), kernel="sorted")
    a, u = ref.sgd(net, TARGET, 1e-4, 0.5, x, xi)
    assert traj.status == "ok" and traj.steps == 10_000
    assert (traj.u[-1] != net.u)[[0, 2]].all()               # just outside [0, 1]: they moved
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(traj.u[-1], u, rtol=0, atol=1e-12)


def test_wide_replicas_equal_single_runs():
    """Sorted networks run replica by replica: nine of one shape, enough for a lockstep
    group, must still each give the sorted kernel's bits."""
    net = wide_start("ramp", 0.01, m=130)
    seeds = range(4, 13)
    many = tt.sgd_many(net, TARGET, seeds=seeds, h=1e-3, eps=0.1, steps=3000, n_records=4,
                       kernel="sorted")
    singles = [tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=3000, n_records=4, seed=seed,
                      kernel="sorted") for seed in seeds]
    for traj, alone in zip(many, singles):
        np.testing.assert_array_equal(traj.a, alone.a)
        np.testing.assert_array_equal(traj.u, alone.u)


@pytest.mark.parametrize("activation", ["ramp", "smoothstep", "relu"])
def test_derivative_convention_at_the_kinks(activation):
    """x exactly on each kink (z = -1/2, 0, 1/2): one step moves u by s'(z) as specified."""
    net = tt.Network([0.0, 1.0], [0.5], eta=0.25, activation=activation)
    for x in (0.375, 0.5, 0.625):
        a, u = ref.sgd(net, TARGET, 0.5, 1.0, [x], [0.0])
        for kernel in ("dense", forced("sorted", net)):       # dense, then sorted (not relu)
            traj = tt.sgd(net, TARGET, h=0.5, eps=1.0, steps=1, samples=([x], [0.0]),
                          kernel=kernel)
            np.testing.assert_allclose(traj.u[-1], u, rtol=1e-15, atol=0)
            np.testing.assert_array_equal(traj.a[-1], a)


@pytest.mark.parametrize("noise_dist", ["uniform", "gaussian"])
def test_a_seed_is_its_samples(noise_dist):
    net = start("ramp", 0.05)
    traj = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=3000, seed=11, noise=0.5,
                  noise_dist=noise_dist, n_records=7)
    again = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=3000, seed=11, noise=0.5,
                   noise_dist=noise_dist, n_records=7)
    drawn = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=3000, n_records=7,
                   samples=ref.draw_samples(11, 3000, noise=0.5, noise_dist=noise_dist))
    np.testing.assert_array_equal(traj.a, again.a)
    np.testing.assert_array_equal(traj.a, drawn.a)
    np.testing.assert_array_equal(traj.u, drawn.u)
    other = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=3000, seed=12, noise=0.5,
                   noise_dist=noise_dist, n_records=7)
    assert not np.array_equal(traj.a, other.a)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_replicas_equal_single_runs_to_the_bit(workers):
    nets = [tt.init_network(20, s, eta=4e-3) for s in range(6)]
    seeds = [3, 1, 4, 1, 5, 9]
    many = tt.sgd_many(nets, TARGET, seeds=seeds, h=1e-3, eps=0.05, steps=5000, n_records=5,
                       workers=workers)
    for net, seed, traj in zip(nets, seeds, many):
        alone = tt.sgd(net, TARGET, h=1e-3, eps=0.05, steps=5000, n_records=5, seed=seed)
        np.testing.assert_array_equal(traj.a, alone.a)
        np.testing.assert_array_equal(traj.u, alone.u)
        np.testing.assert_array_equal(traj.loss, alone.loss)


@pytest.mark.parametrize("activation, h, noise_dist", [
    ("ramp", 0.3, "uniform"), ("smoothstep", 0.3, "gaussian"), ("relu", 0.01, "uniform")])
def test_lockstep_replicas_equal_single_runs_even_when_some_diverge(activation, h, noise_dist):
    """sgd_many runs replicas of one shape sixteen at a time, one per vector lane; 27
    replicas make a full group and a partial one (11 lanes used), and at h = 0.3 some
    diverge mid-run."""
    nets = [tt.init_network(7, s, eta=0.05, activation=activation,
                            a_scale=3.0 if s % 4 == 0 else 0.3) for s in range(27)]
    kwargs = dict(h=h, eps=0.5, steps=3000, n_records=9, noise_dist=noise_dist)
    many = tt.sgd_many(nets, TARGET, seeds=range(27), **kwargs)
    alone = [tt.sgd(net, TARGET, seed=s, **kwargs) for s, net in enumerate(nets)]
    for x, y in zip(many, alone):
        assert (x.status, x.steps) == (y.status, y.steps)
        np.testing.assert_array_equal(x.a, y.a)
        np.testing.assert_array_equal(x.u, y.u)
    if activation != "relu":
        assert {y.status for y in alone} == {"ok", "diverged"}


def test_sgd_many_progress_bar_changes_nothing(capsys):
    pytest.importorskip("tqdm")
    nets = [tt.init_network(5, s, eta=0.05) for s in range(20)]
    kwargs = dict(seeds=range(20), h=1e-3, eps=0.1, steps=500, n_records=3)
    quiet = tt.sgd_many(nets, TARGET, **kwargs)
    shown = tt.sgd_many(nets, TARGET, progress=True, **kwargs)
    err = capsys.readouterr().err
    assert "sgd_many" in err and "20/20" in err
    for x, y in zip(quiet, shown):
        np.testing.assert_array_equal(x.a, y.a)


def test_replicas_of_different_shapes_equal_single_runs():
    nets = [tt.init_network(m, m, eta=0.05) for m in (3, 4, 3)]
    many = tt.sgd_many(nets, TARGET, seeds=[0, 1, 2], h=1e-3, eps=0.1, steps=500, n_records=3)
    for seed, (net, traj) in enumerate(zip(nets, many)):
        alone = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=500, n_records=3, seed=seed)
        np.testing.assert_array_equal(traj.a, alone.a)


@pytest.mark.parametrize("kernel", ["dense", "sorted", "lockstep"])
def test_records_do_not_change_the_run(kernel):
    """Taking more records leaves every bit of the run as it is (records read the state; the
    sorted kernel's pending block offsets are not folded for them). Nine replicas: fewer than
    eight would run one by one, not in lockstep."""
    net = wide_start("smoothstep", 4e-3, m=130) if kernel == "sorted" else start("ramp", 4e-3)
    run = (lambda n: tt.sgd_many([net] * 9, TARGET, seeds=range(7, 16), h=1e-3, eps=0.1,
                                 steps=4000, n_records=n, kernel="dense")[0]) if kernel == "lockstep" else (
        lambda n: tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=4000, n_records=n, seed=7,
                         kernel=kernel))
    few, many = run(2), run(41)
    np.testing.assert_array_equal(few.a[-1], many.a[-1])
    np.testing.assert_array_equal(few.u[-1], many.u[-1])
    np.testing.assert_array_equal(few.a[0], many.a[0])


def test_records_and_slow_time():
    net = start("ramp", 0.05)
    traj = tt.sgd(net, TARGET, h=1e-3, eps=0.2, t_end=0.5, n_records=11, seed=0)
    assert traj.steps == round(0.5 / (1e-3 * 0.2)) == 2500
    np.testing.assert_allclose(traj.t, np.linspace(0, 0.5, 11), rtol=1e-12)
    np.testing.assert_array_equal(traj.a[0], net.a)
    np.testing.assert_array_equal(traj.u[0], net.u)
    for a, u, loss in zip(traj.a, traj.u, traj.loss):
        assert loss == tt.population_loss(net.replace(a=a, u=u), TARGET)
    assert traj.final == net.replace(a=traj.a[-1], u=traj.u[-1])
    assert traj.loss[-1] < traj.loss[0]                     # it learns


def test_divergence_stops_and_keeps_the_records():
    net = tt.init_network(20, 0, eta=0.05, a_scale=1.0)
    traj = tt.sgd(net, TARGET, h=10.0, eps=1.0, steps=10_000, n_records=101, seed=0)
    assert traj.status == "diverged"
    assert 0 < traj.steps < 10_000
    assert 1 <= len(traj.t) < 101
    assert np.all(np.isfinite(traj.a)) and np.all(np.isfinite(traj.u))
    assert np.all(traj.t * 1 / (10.0 * 1.0) <= traj.steps)


@pytest.mark.parametrize("kwargs, words", [
    (dict(h=0.0, eps=0.1, steps=10), "h must be finite and > 0"),
    (dict(h=-1e-3, eps=0.1, steps=10), "h must be finite and > 0"),
    (dict(h=np.nan, eps=0.1, steps=10), "h must be finite and > 0"),
    (dict(h=1e-3, eps=0.0, steps=10), "eps must be finite and > 0"),
    (dict(h=1e-3, eps=-2.0, steps=10), "eps must be finite and > 0"),
    (dict(h=1e-3, eps=0.1), "exactly one of t_end"),
    (dict(h=1e-3, eps=0.1, steps=10, t_end=1.0), "exactly one of t_end"),
    (dict(h=1e-3, eps=0.1, t_end=1e-9), "less than one step"),
    (dict(h=1e-3, eps=0.1, steps=0), "steps must be a whole number >= 1"),
    (dict(h=1e-3, eps=0.1, steps=10, noise=-1.0), "noise must be finite and >= 0"),
    (dict(h=1e-3, eps=0.1, steps=10, noise_dist="cauchy"), "noise_dist must be one of"),
    (dict(h=1e-3, eps=0.1, steps=10, n_records=1), "n_records must be a whole number >= 2"),
    (dict(h=1e-3, eps=0.1, steps=10, samples=(np.zeros(9), np.zeros(10))), "x must have shape (10,)"),
    (dict(h=1e-3, eps=0.1, steps=10, samples=(np.zeros(10), np.full(10, np.nan))), "xi must be finite"),
    (dict(h=1e-3, eps=0.1, steps=10, samples=np.zeros(10)), "samples must be a pair"),
])
def test_sgd_rejects(kwargs, words):
    with pytest.raises(ValueError) as err:
        tt.sgd(tt.init_network(3, 0, eta=0.1), TARGET, **kwargs)
    assert words in str(err.value)


def test_sgd_refuses_heaviside_networks():
    net = tt.Network([0, 1], [0.5], eta=0.1, activation="heaviside")
    with pytest.raises(ValueError, match="heaviside"):
        tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=10)
    with pytest.raises(ValueError, match=r"nets\[1\].*heaviside"):
        tt.sgd_many([tt.init_network(1, 0, eta=0.1), net], TARGET, seeds=[0, 1], h=1e-3,
                    eps=0.1, steps=10)


def test_sgd_many_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one per seed"):
        tt.sgd_many([tt.init_network(2, 0, eta=0.1)] * 2, TARGET, seeds=[0, 1, 2], h=1e-3,
                    eps=0.1, steps=10)
    with pytest.raises(ValueError, match="at least one seed"):
        tt.sgd_many(tt.init_network(2, 0, eta=0.1), TARGET, seeds=[], h=1e-3, eps=0.1, steps=10)


def batches_like_gd(seed, n, batch, epochs):
    """The batches gd() takes: a fresh permutation each epoch unless the batch is everything,
    drawn from the seed's "batches" child (docs/maths.rst §4.3)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(2,))))
    out = []
    for _ in range(epochs):
        order = rng.permutation(n) if batch < n else np.arange(n)
        out += [order[i:i + batch] for i in range(0, n, batch)]
    return out


# h kept where the GD map does not amplify rounding (see the SGD comparison above)
@pytest.mark.parametrize("activation, eta, batch, h", [
    ("ramp", 0.05, None, 0.05), ("ramp", 0.1, 32, 0.05), ("smoothstep", 0.1, 32, 0.005),
    ("relu", 1.0, None, 0.05), ("relu", 1.0, 7, 0.05)])
def test_gd_equals_reference(activation, eta, batch, h):
    net = start(activation, eta)
    X = np.random.default_rng(0).random(100)
    traj = tt.gd(net, TARGET, X, h=h, eps=0.5, epochs=200, batch_size=batch, seed=4,
                 n_records=5)
    a, u = ref.gd(net, X, TARGET(X), h, 0.5, batches_like_gd(4, 100, batch or 100, 200))
    assert traj.steps == 200 * -(-100 // (batch or 100))
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(traj.u[-1], u, rtol=0, atol=1e-12)
    assert traj.loss[-1] < traj.loss[0]


def test_gd_diverges_loudly():
    net = tt.init_network(10, 0, eta=1.0, activation="relu", a_scale=3.0)
    X = np.linspace(0, 1, 50)
    traj = tt.gd(net, TARGET, X, h=50.0, eps=1.0, epochs=1000)
    assert traj.status == "diverged" and np.all(np.isfinite(traj.a))


@pytest.mark.parametrize("kwargs, words", [
    (dict(X=np.zeros((3, 2)), h=0.1, eps=0.1, epochs=1), "X must have shape (n,)"),
    (dict(X=np.zeros(3), Y=np.zeros(4), h=0.1, eps=0.1, epochs=1), "Y must have one value per point of X"),
    (dict(X=np.array([0.1, np.nan]), h=0.1, eps=0.1, epochs=1), "X must be finite"),
    (dict(X=np.zeros(3), h=0.1, eps=0.1, epochs=0), "epochs must be a whole number >= 1"),
    (dict(X=np.zeros(3), h=0.1, eps=0.1, epochs=1, batch_size=4), "batch_size must be at most"),
    (dict(X=np.zeros(3), h=0.0, eps=0.1, epochs=1), "h must be finite and > 0"),
])
def test_gd_rejects(kwargs, words):
    with pytest.raises(ValueError) as err:
        tt.gd(tt.init_network(3, 0, eta=0.1), TARGET, **kwargs)
    assert words in str(err.value)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_start_and_the_samples_are_independent_streams(seed):
    """One seed feeds the initial draw and the SGD samples from distinct children of its
    SeedSequence: no first sample is an initial position (they coincided when both came
    from SeedSequence(seed) itself), and sgd(seed) draws exactly the "samples" child."""
    net = tt.init_network(20, seed, eta=4e-3, a_scale=1.0)
    x, xi = ref.draw_samples(seed, 40)
    assert not np.isin(x, net.u).any() and not np.isin(net.u, 2 * xi - 1).any()
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    np.testing.assert_array_equal(net.u, np.sort(rng.random(20)))
    run = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=40, n_records=2, seed=seed)
    given = tt.sgd(net, TARGET, h=1e-3, eps=0.1, steps=40, n_records=2, samples=(x, xi))
    np.testing.assert_array_equal(run.a, given.a)
    np.testing.assert_array_equal(run.u, given.u)
