"""polish and certify (docs/maths.rst §7): the loss never rises, Newton converges at a strict
minimum, and every verdict is checked against the exact loss around the point."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import twotimescale as tt
from twotimescale import endpoints

from conftest import PAPER_TARGET
from strategies import networks, targets


def teacher_and_nearby(activation, extra=False):
    """A teacher of two neurons and a student near it (a third neuron with a = 0 if extra)."""
    teacher = tt.Network([0.2, 1.0, -0.5], [0.3, 0.7], eta=0.1, activation=activation)
    student = tt.Network([0.25, 0.9, -0.45], [0.31, 0.69], eta=0.1, activation=activation)
    if extra:
        teacher = tt.Network([0.2, 1.0, -0.5, 0.0], [0.3, 0.7, 0.5], eta=0.1,
                             activation=activation)
        student = tt.Network([0.25, 0.9, -0.45, 0.0], [0.31, 0.69, 0.5], eta=0.1,
                             activation=activation)
    return teacher, student


@pytest.mark.parametrize("activation", ["ramp", "smoothstep", "relu"])
def test_newton_converges_to_the_teacher_a_strict_minimum(activation):
    teacher, student = teacher_and_nearby(activation)
    polished, info = tt.polish(student, teacher)
    assert info.converged and info.grad_norm <= 1e-12 and info.iterations <= 20
    np.testing.assert_allclose(polished.u, teacher.u, atol=1e-10)
    cert = tt.certify(polished, teacher)
    assert cert.verdict == "strict local minimum" and cert.n_flat == 0
    assert cert.eigenvalues[0] > 0 and cert.floor is None


def test_a_neuron_with_no_weight_is_a_flat_direction():
    teacher, student = teacher_and_nearby("smoothstep", extra=True)
    polished, _ = tt.polish(student, teacher)
    cert = tt.certify(polished, teacher)
    assert cert.verdict == "degenerate minimum"
    assert cert.n_flat >= 1 and cert.structural >= 1 and cert.flat_reasons
    assert "degenerate minimum" in repr(cert)


def perturbed_losses(net, target, direction, steps):
    theta = endpoints._flat(net)
    return np.array([tt.population_loss(endpoints._at(net, theta + t * direction), target)
                     for t in steps])


@given(networks(max_m=3), targets(), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=40, deadline=None)
def test_polish_never_raises_the_loss_and_verdicts_hold(net, target, seed):
    """From any start the polished loss is at most the start's. At a stationary point a
    saddle's descent direction lowers the exact loss (to second order: L(t d) - L = t^2 lambda / 2 < 0 for small t);
    at a strict minimum no random direction lowers it."""
    try:
        tt.hessian(net, target)
    except ValueError:
        assume(False)                         # a kink on a jump: no Hessian at the start
    polished, info = tt.polish(net, target, max_iter=30)
    assert info.loss <= info.start_loss
    assert tt.population_loss(polished, target) == info.loss
    try:
        cert = tt.certify(polished, target)
    except ValueError:
        return                                # polishing stopped on a kink at a jump
    assert cert.verdict in endpoints.VERDICTS
    assert np.all(np.diff(cert.eigenvalues) >= 0)
    if cert.verdict == "saddle" and info.converged:
        # at a stationary point (|grad| <= 1e-12; within gtol of a degenerate minimum the
        # eigenvalues move by about gtol) some step along it goes below; no one length suits
        steps = np.logspace(-1, -7, 13) / (1 + np.abs(endpoints._flat(polished)).max())
        assert perturbed_losses(polished, target, cert.descent, steps).min() < cert.loss
    if cert.verdict == "strict local minimum":
        rng = np.random.default_rng(seed)
        for direction in rng.normal(size=(5, endpoints._flat(polished).size)):
            direction *= 1e-5 * min(polished.eta, 1) / np.linalg.norm(direction)
            assert np.all(perturbed_losses(polished, target, direction, [1, -1])
                          >= cert.loss - 1e-13 * (1 + cert.loss))


@pytest.mark.parametrize("activation", ["ramp", "smoothstep"])
def test_a_constructed_saddle(activation):
    """One step neuron in the middle of a bump, outer weights optimal: the bump's mirror
    symmetry makes it stationary, and the reduced loss L(a*(u), u) peaks there (its minima
    sit on the bump's edges), so it is a saddle whose descent direction lowers the loss."""
    target = tt.PiecewiseConstant([0.3, 0.7], [0.0, 1.0, 0.0])
    net = tt.Network([0.0, 0.0], [0.5], eta=0.05, activation=activation)
    net = net.replace(a=tt.optimal_outer(net, target))
    cert = tt.certify(net, target)
    assert cert.verdict == "saddle" and cert.negative == 1 and cert.floor is None
    assert perturbed_losses(net, target, cert.descent, [1e-3])[0] < cert.loss
    nudged = endpoints._at(net, endpoints._flat(net) + 1e-6 * cert.descent)
    assert tt.polish(nudged, target)[1].loss < cert.loss - 1e-3   # polish leaves it downhill


def test_paper_floor_is_reported_for_piecewise_constant_targets():
    net = tt.init_network(20, 0, 4e-3, "smoothstep")
    cert = tt.certify(net, PAPER_TARGET)
    assert cert.verdict == "not stationary"
    assert cert.floor == tt.jump_floor(PAPER_TARGET, eta=4e-3)
    assert cert.above_floor == pytest.approx(cert.loss / cert.floor)


def test_additive_networks_polish_and_certify():
    rng = np.random.default_rng(0)
    target = tt.AdditiveNetwork(0.1, [[1.0], [-1.0]], [[0.4], [0.6]], eta=0.2,
                                activation="smoothstep")
    start = target.replace(a=target.a + 0.05 * rng.normal(size=(2, 1)),
                           u=target.u + 0.01 * rng.normal(size=(2, 1)))
    polished, info = tt.polish(start, target)
    assert info.converged
    assert tt.certify(polished, target).verdict == "strict local minimum"


def test_bad_arguments():
    teacher, student = teacher_and_nearby("ramp")
    with pytest.raises(ValueError, match="tol"):
        tt.polish(student, teacher, tol=-1)
    with pytest.raises(ValueError, match="max_iter"):
        tt.polish(student, teacher, max_iter=-1)
    with pytest.raises(ValueError, match="gtol"):
        tt.certify(student, teacher, gtol=0)
    with pytest.raises(ValueError, match="heaviside"):
        tt.certify(PAPER_TARGET, PAPER_TARGET)


def test_certified_sweeps_store_and_report_where_runs_ended(tmp_path):
    """[analysis] certify = true: each run's verdict, polished loss, least eigenvalue and end
    gradient are stored, counted per grid point by report and by fig7's summary."""
    from twotimescale import reproduce
    from twotimescale.sweep import report
    experiment = {"target": reproduce.PAPER_TARGET, "network": reproduce.PAPER_NET,
                  "dynamics": {"method": "sgd", "h": 1e-3, "eps": 1.0, "t_end": 0.05,
                               "n_records": 2},
                  "sweep": {"seeds": 2, "grid": {"eps": [0.1, 1.0]}},
                  "analysis": {"certify": True}}
    store = str(tmp_path / "s.sqlite")
    tt.sweep(experiment, store=store, workers=1, progress=False)
    with tt.Store(store, readonly=True) as db:
        rows = list(db.rows())
        table = db.table(as_frame=False)
    assert len(rows) == 4 and set(table["verdict"]) <= set(endpoints.VERDICTS)
    for row in rows:
        polished, info = tt.polish(reproduce._network_at(row), PAPER_TARGET)
        assert row["polished_loss"] == info.loss <= row["final_loss"]
        assert row["verdict"] == tt.certify(polished, PAPER_TARGET).verdict
        assert row["end_grad_norm"] == info.start_grad_norm
    kinds = "|".join(endpoints.VERDICTS)
    for text in (reproduce.end_kinds(rows, reproduce.paper_floor()),
                 report(store)):
        counted = [sum(int(n) for n, _ in re.findall(rf"(\d+) ({kinds})", line))
                   for line in text.splitlines() if re.search(kinds, line)]
        assert counted == [2, 2], text


def test_analysis_section_is_checked():
    from twotimescale.experiment import ExperimentError, check
    base = {"target": {"breaks": [0.5], "values": [0, 1]}, "network": {"m": 2, "eta": 0.1},
            "dynamics": {"method": "sgd", "h": 1e-3, "eps": 1.0, "steps": 10}}
    check({**base, "analysis": {"certify": False}})
    with pytest.raises(ExperimentError, match="analysis.certify must be true or false"):
        check({**base, "analysis": {"certify": "yes"}})
    with pytest.raises(ExperimentError, match="unknown key analysis.polish"):
        check({**base, "analysis": {"polish": True}})
