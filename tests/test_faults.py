"""Faults, interrupts and bad input (one test per class of what used to crash, hang or lie):
every one ends in a clear error or a kept result, never a traceback, a hang or silence."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import twotimescale as tt
from twotimescale.__main__ import main
from twotimescale.experiment import ExperimentError, expand, load
from twotimescale.store import Store
from twotimescale.sweep import report, sweep

from conftest import PAPER_TARGET

STEP = tt.PiecewiseConstant([0.5], [0.0, 1.0])
SMALL = """
[target]
breaks = [0.5]
values = [0, 1]
[network]
m = 4
eta = 0.05
[dynamics]
method = "sgd"
h = 1e-3
eps = 0.1
steps = 2000
n_records = 3
[sweep]
seeds = 4
[sweep.grid]
eps = [0.1, 1.0]
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# class 2: runs that never ended

def test_flows_that_cannot_advance_stop_with_a_status():
    wild = tt.Network(np.full(21, 1e100), np.linspace(0, 1, 20), eta=4e-3)
    start = time.perf_counter()
    run = tt.flow(wild, PAPER_TARGET, eps=1.0, t_end=1e-9, max_steps=20_000)
    assert run.status in ("diverged", "stalled") and time.perf_counter() - start < 30
    with pytest.raises(ValueError, match="rtol must be at least"):
        tt.flow(tt.init_network(20, 0, eta=4e-3), PAPER_TARGET, eps=0.1, t_end=0.01,
                rtol=1e-30, atol=1e-30)
    budget = tt.flow(tt.init_network(20, 0, eta=4e-3), PAPER_TARGET, eps=1e-4, t_end=0.035,
                     max_steps=5)
    assert budget.status == "stalled" and budget.nsteps <= 5


def test_step_counts_that_overflow_are_refused():
    net = tt.init_network(5, 0, eta=0.05)
    with pytest.raises(ValueError, match="steps must be at most 2\\^53"):
        tt.sgd(net, STEP, h=1e-3, eps=0.1, steps=2 ** 63)
    with pytest.raises(ValueError, match="epochs must be at most 2\\^53"):
        tt.gd(net, STEP, np.linspace(0, 1, 10), h=1e-3, eps=0.1, epochs=2 ** 63)
    for h, eps in ((1e-300, 1e-300), (1e-200, 1e-200)):       # h eps underflows, or too many
        with pytest.raises(ValueError, match="more than a run can take"):
            tt.sgd(net, STEP, h=h, eps=eps, t_end=1.0)
    with pytest.raises(ExperimentError, match="at most 2\\^53"):
        load(SMALL.replace("steps = 2000", "steps = 9223372036854775807"))


# class 3: interrupts

INTERRUPTIBLE = {
    "sgd": "tt.sgd(net, T, h=1e-5, eps=1e-3, steps=3_000_000_000, n_records=2)",
    "sgd_many": "tt.sgd_many(net, T, seeds=range(64), h=1e-5, eps=1e-3, steps=300_000_000, n_records=2)",
    "limit_flow": "tt.limit_flow(net, T, t_end=1e6, rtol=1e-12, atol=1e-14, max_steps=10**9)",
}


@pytest.mark.parametrize("call", INTERRUPTIBLE)
def test_ctrl_c_stops_a_kernel_at_once(call):
    code = ("import sys, numpy as np, twotimescale as tt\n"
            "T = tt.PiecewiseConstant([0.5], [0.0, 1.0]); net = tt.init_network(20, 0, eta=4e-3)\n"
            "print('go', flush=True)\n"
            f"try:\n    {INTERRUPTIBLE[call]}\nexcept KeyboardInterrupt:\n    sys.exit(3)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    start = time.perf_counter()
    assert proc.wait(timeout=20) == 3
    assert time.perf_counter() - start < 5


def test_ctrl_c_on_a_sweep_keeps_what_finished_and_says_so_in_one_line(tmp_path):
    # 800 runs in lockstep groups of 16, 1-2 s a group here and 30 s in all: some groups
    # finish before the signal, most do not
    exp = write(tmp_path, SMALL.replace("steps = 2000", "steps = 10_000_000").replace(
        "seeds = 4", "seeds = 400"))
    store = str(tmp_path / "s.sqlite")
    proc = subprocess.Popen([sys.executable, "-m", "twotimescale", "sweep", exp, "--store", store,
                             "--quiet", "--workers", "2"], stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    start = time.perf_counter()
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130 and time.perf_counter() - start < 5
    assert err.strip().count("\n") == 0 and "interrupted" in err and "resume" in err
    with Store(store, readonly=True) as db:
        kept = len(db.finished())
    assert 0 < kept < 800


# class 4: diverged runs are data

def test_reports_count_diverged_runs_whose_loss_is_nan(tmp_path, capsys):
    store = str(tmp_path / "s.sqlite")
    sweep(SMALL, store=store, progress=False)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET final_loss = NULL, status = 'diverged' WHERE seed = 1")
    assert main(["report", store]) == 0
    out = capsys.readouterr().out
    assert "(1 diverged)" in out
    pytest.importorskip("matplotlib")
    assert main(["plot", store, "--out", str(tmp_path / "figs")]) == 0


# class 5: one-line errors from the command line

def bad_stores(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE runs (id INTEGER, name TEXT)")
    truncated = tmp_path / "truncated.sqlite"
    sweep(SMALL, store=str(truncated), progress=False)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    folder = tmp_path / "folder.sqlite"
    folder.mkdir()
    return {"garbage": garbage, "other program's runs": other, "truncated": truncated,
            "a folder": folder, "missing folder": tmp_path / "no" / "where.sqlite"}


@pytest.mark.parametrize("command", ["report", "sweep"])
def test_stores_that_are_not_ours_give_one_line(tmp_path, capsys, command):
    exp = write(tmp_path, SMALL)
    for what, path in bad_stores(tmp_path).items():
        args = ["report", str(path)] if command == "report" else ["sweep", exp, "--store", str(path), "--quiet"]
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1, (what, err)
        assert "Traceback" not in err and str(path.name) in err, (what, err)


def test_plot_into_a_file_and_odd_toml_give_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    store = str(tmp_path / "s.sqlite")
    sweep(SMALL, store=store, progress=False)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cases = [["plot", store, "--out", str(blocker)]]
    for change in ('n_records = 3\nn_records = 1e10', "m = 4\nm = 1000000000000",
                   'eta = 0.05\nnoise_dist = ["uniform"]'):
        old, new = change.split("\n")
        cases.append(["sweep", write(tmp_path, SMALL.replace(old, new), f"{len(cases)}.toml"),
                      "--store", str(tmp_path / f"{len(cases)}.sqlite")])
    cases[-1][1] = write(tmp_path, SMALL.replace('steps = 2000', 'steps = 2000\nnoise_dist = ["uniform"]'), "nd.toml")
    for args in cases:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, (args, err)


# class 6: readers do not write

def test_report_writes_nothing(tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    before = {p: p.read_bytes() for p in (other, empty)}
    for path in (other, empty):
        with pytest.raises(SystemExit):
            main(["report", str(path)])
    capsys.readouterr()
    assert {p: p.read_bytes() for p in (other, empty)} == before


# class 7: keys the method does not use

def test_grid_points_that_collapse_are_counted_aloud():
    text = SMALL.replace("[sweep.grid]\neps = [0.1, 1.0]",
                         '[sweep.grid]\nmethod = ["sgd", "flow"]\nh = [1e-3, 2e-3]').replace(
        "steps = 2000", "t_end = 0.2")
    with pytest.warns(UserWarning, match="4 grid points resolve to 3 distinct ones"):
        runs = expand(load(text))
    assert len(runs) == 3 * 4 == len({run.key for run in runs})
    with pytest.raises(ExperimentError, match="dynamics.epochs is not used by method 'sgd'"):
        load(SMALL.replace("steps = 2000", "steps = 2000\nepochs = 5"))


# class 8: output that does not depend on thread timing

def test_report_rows_are_the_same_whatever_the_worker_count(tmp_path):
    texts = []
    for workers in (1, 2):
        store = str(tmp_path / f"w{workers}.sqlite")
        sweep(SMALL.replace("seeds = 4", "seeds = 6"), store=store, workers=workers,
              progress=False)
        texts.append([line.split()[:5] for line in report(store).splitlines()])
    assert texts[0] == texts[1]
    with Store(str(tmp_path / "w2.sqlite"), readonly=True) as db:
        seeds = [(row["params"]["dynamics"]["eps"], row["seed"]) for row in db.rows()]
    assert seeds == sorted(seeds)


# class 10: arguments accepted and then misused

def test_arguments_that_were_misused_are_refused_or_honoured(tmp_path):
    with pytest.raises(TypeError, match="store must be a file path"):
        sweep(SMALL, store=None, progress=False)
    assert not os.path.exists("None")
    with pytest.raises(ExperimentError, match="not int"):
        load(3)
    as_dict = load({"target": {"breaks": np.array([0.5]), "values": np.array([0.0, 1.0])},
                    "network": {"m": np.int64(4), "eta": 0.05},
                    "dynamics": {"method": "sgd", "h": 1e-3, "eps": 0.1, "steps": 10}})
    assert as_dict["target"]["breaks"] == [0.5]
    with pytest.raises(ValueError, match="eta must be at least"):
        tt.Network([0.0, 1.0], [0.5], eta=1e-320)
    net = tt.init_network(5, 0, eta=0.05)
    assert len(tt.sgd(net, STEP, h=1e-3, eps=0.1, steps=10, n_records=10 ** 10).t) == 11


# class 11: messages that name the argument

@pytest.mark.parametrize("call, words", [
    (lambda: tt.init_network(5, 0, eta=0.1, activation=["ramp"]), "activation must be one of"),
    (lambda: tt.init_network(5, -1, eta=0.1), "seed must be a whole number >= 0"),
    (lambda: tt.init_network(5, 0, eta=0.1, a_scale="x"), "a_scale must be a number"),
    (lambda: tt.init_network(5, 0, eta=0.1, a_scale=float("nan")), "a_scale must be finite"),
    (lambda: tt.sgd_many(tt.init_network(5, 0, eta=0.1), STEP, seeds=5, h=1e-3, eps=0.1,
                         steps=10), "seeds must be a sequence"),
    (lambda: tt.gd(tt.init_network(5, 0, eta=0.1), STEP, [0.1, 0.2], ["a", "b"], h=1e-3,
                   eps=0.1, epochs=1), "Y must be an array of numbers"),
])
def test_messages_name_the_argument(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_a_toml_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(SMALL.replace("sgd", "sgd\u00e9").encode("latin-1"))
    with pytest.raises(ExperimentError, match="is not UTF-8 text"):
        load(str(path))


ODD = [None, "x", [], [1.0, 2.0], float("nan"), float("inf"), -1, 0, 1e-320, 2 ** 63, True,
       np.array([1.0]), np.zeros((2, 2)), object(), {"a": 1}]
NET = tt.init_network(4, 0, eta=0.05)
CALLS = {
    "sgd": (lambda **kw: tt.sgd(**{"net": NET, "target": STEP, "h": 1e-3, "eps": 0.1,
                                    "steps": 10, "n_records": 3, **kw}),
            ["net", "target", "h", "eps", "steps", "noise", "noise_dist", "seed", "n_records",
             "samples", "kernel"]),
    "sgd_many": (lambda **kw: tt.sgd_many(**{"nets": NET, "target": STEP, "seeds": [0, 1],
                                             "h": 1e-3, "eps": 0.1, "steps": 10, **kw}),
                 ["nets", "seeds", "workers", "samples", "n_records"]),
    "gd": (lambda **kw: tt.gd(**{"net": NET, "target": STEP, "X": np.linspace(0, 1, 8),
                                  "h": 1e-3, "eps": 0.1, "epochs": 3, **kw}),
           ["X", "Y", "h", "eps", "epochs", "batch_size", "seed", "n_records"]),
    "flow": (lambda **kw: tt.flow(**{"net": NET, "target": STEP, "eps": 0.1, "t_end": 0.01,
                                      **kw}),
             ["net", "eps", "t_end", "rtol", "atol", "n_records", "method", "max_steps"]),
    "Network": (lambda **kw: tt.Network(**{"a": [0.0, 1.0], "u": [0.5], "eta": 0.1, **kw}),
                ["a", "u", "eta", "activation"]),
    "init_network": (lambda **kw: tt.init_network(**{"m": 3, "seed": 0, "eta": 0.1, **kw}),
                     ["m", "seed", "eta", "activation", "a_scale"]),
}


@pytest.mark.parametrize("name, argument", [(n, a) for n, (_, args) in CALLS.items() for a in args])
def test_odd_values_give_a_result_or_a_named_error(name, argument):
    """Each odd value in each argument, the others sound: a result, or a ValueError or
    TypeError whose message names the argument (never another exception)."""
    call = CALLS[name][0]
    for value in ODD:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                call(**{argument: value})
        except (ValueError, TypeError) as exc:
            named = {"nets": "nets", "X": "X", "Y": "Y"}.get(argument, argument)
            assert named in str(exc) or argument in ("net", "target"), (argument, value, exc)
