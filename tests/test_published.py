"""--as-published: the paper's own loop (its rule, its stream, its step count) against a
per-step NumPy transcription of it, sample for sample."""
import numpy as np
import pytest

import twotimescale as tt
from twotimescale import published, reference as ref


def paper_start(rng):
    return tt.Network(np.zeros(21), np.sort(rng.rand(20)), eta=4e-3, activation="smoothstep")


@pytest.mark.parametrize("eps", [2e-5, 1.0])
def test_the_paper_loop_equals_its_transcription(eps):
    """From the paper's start (the first 20 draws of RandomState(42)), 20 000 updates at the
    paper's h = 1e-5: the kernel and the twin draw the same x and noise in the same order
    (else they would part at once) and agree to rounding. At h = 1e-3 the rule, whose slope
    jumps at the window's edges, amplifies rounding until the two part (1e-1 after 5000
    steps), so the comparison keeps the paper's step."""
    rng = published.paper_stream()
    start = paper_start(rng)
    traj = published.published_sgd(start, published.bit_state(rng), h=1e-5, eps=eps,
                                   steps=20_000, n_records=3)
    a, u = ref.published_sgd(published.bit_state(rng), start.a, start.u, 4e-3,
                             published.TARGET, 1e-5, eps, 20_000)
    assert traj.steps == 20_000 and traj.status == "ok"
    np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.u[-1], u, rtol=0, atol=1e-12)
    assert np.any(traj.u[-1] != start.u) or eps < 1e-4     # the rule moved the neurons


def test_the_paper_cubic_is_our_smoothstep_to_rounding():
    z = np.linspace(-0.7, 0.7, 10_001)
    np.testing.assert_allclose(ref.published_cubic(z), ref.activation("smoothstep", z),
                               rtol=0, atol=4e-16)


def test_runs_follow_one_another_on_one_stream():
    """Each run starts where the one before stopped drawing: m positions, then 2 draws per
    update for int(t / (h eps)) + 1 updates, in the order the paper's code draws them."""
    settings = ((1.0, 0.5), 2e-3, 2)                  # h = 1e-5: 201 and 401 updates
    runs = published.paper_runs("fig7", settings=settings, workers=2)
    rng = published.paper_stream()
    for eps, start, traj in runs:
        np.testing.assert_array_equal(start.u, np.sort(rng.rand(20)))
        steps = int(2e-3 / (1e-5 * eps)) + 1
        a, u = ref.published_sgd(published.bit_state(rng), start.a, start.u, 4e-3,
                                 published.TARGET, 1e-5, eps, steps)
        assert traj.steps == steps
        np.testing.assert_allclose(traj.a[-1], a, rtol=0, atol=1e-12)
        rng.rand(2 * steps)


def test_as_published_names_what_it_reproduces(tmp_path):
    with pytest.raises(ValueError, match="--as-published reproduces fig3, fig5, fig7"):
        published.reproduce_published("relu", out=str(tmp_path))
    with pytest.raises(ValueError, match="smoothstep"):
        published.published_sgd(tt.init_network(20, 0, eta=4e-3), published.paper_stream(),
                                h=1e-5, eps=1.0, steps=10)
