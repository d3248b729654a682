"""Experiments, the results store, sweeps (resumed after SIGKILL, local = Dask), the
command line and the figures."""
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import twotimescale as tt
from twotimescale.__main__ import main
from twotimescale.experiment import ExperimentError, expand, load
from twotimescale.store import Store
from twotimescale.sweep import execute, execute_group, sweep, target_variance

TINY = """
[target]
breaks = [0.3, 0.6]
values = [0, 2, 1]
[network]
m = 6
eta = 0.05
activation = "ramp"
a_scale = 0.5
[dynamics]
method = "sgd"
h = 1e-3
eps = 0.1
steps = 3000
n_records = 5
[sweep]
seeds = 3
[sweep.grid]
eps = [0.1, 1.0]
m = [4, 6]
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("old, new, words", [
    ("m = 6", "width = 6", "unknown key network.width"),
    ('method = "sgd"', 'method = "sgd"\nlr = 1.0', "unknown key dynamics.lr"),
    ("m = [4, 6]", "depth = [4, 6]", "unknown key sweep.grid.depth"),
    ("seeds = 3", "seeds = 3\nrepeat = 2", "unknown key sweep.repeat"),
    ("h = 1e-3", "", "dynamics.h is required by method 'sgd'"),
    ("eta = 0.05", "eta = -0.05", "network.eta must be finite and > 0"),
    ("steps = 3000", "steps = 3000\nt_end = 1.0", "exactly one of dynamics.t_end"),
    ('method = "sgd"', 'method = "adam"', "dynamics.method must be one of"),
    ("seeds = 3", "seeds = 0", "sweep.seeds must be >= 1"),
    ("breaks = [0.3, 0.6]", "breaks = [0.6, 0.3]", "target: breaks must be strictly increasing"),
    ('activation = "ramp"', 'activation = "heaviside"', "network.activation must be"),
    ("eps = [0.1, 1.0]", "eps = []", "sweep.grid.eps must be a non-empty list"),
])
def test_experiment_errors_name_the_key(old, new, words):
    assert old in TINY
    with pytest.raises(ExperimentError) as err:
        load(TINY.replace(old, new, 1))
    assert words in str(err.value)


def test_unreadable_experiment(tmp_path):
    with pytest.raises(ExperimentError, match="cannot read"):
        load(str(tmp_path / "missing.toml"))
    with pytest.raises(ExperimentError, match="not valid TOML"):
        load("[network\nm = 3\n")


def test_expansion():
    runs = expand(load(TINY))
    assert len(runs) == 2 * 2 * 3 and len({r.key for r in runs}) == 12
    assert [r.key for r in expand(load(TINY))] == [r.key for r in runs]        # deterministic
    as_flow = TINY.replace('method = "sgd"', 'method = "flow"').replace("steps = 3000", "t_end = 0.1")
    with pytest.raises(ExperimentError, match=r"dynamics.h is not used by method 'flow' \(it uses"):
        load(as_flow)                                   # a key the method ignores: an error
    flow = expand(load(as_flow.replace("h = 1e-3\n", "")))
    assert "h" not in flow[0].params["dynamics"] and flow[0].params["dynamics"]["t_end"] == 0.1


def test_store_round_trip_and_rerun_skips(tmp_path):
    store = str(tmp_path / "runs.sqlite")
    assert sweep(TINY, store=store, progress=False) == {"runs": 12, "ran": 12, "skipped": 0}
    assert sweep(TINY, store=store, progress=False) == {"runs": 12, "ran": 0, "skipped": 12}
    with Store(store) as db:
        rows = {row["key"]: row for row in db.rows()}
    assert len(rows) == 12
    run = expand(load(TINY))[4]
    again = execute(run.params, run.seed)
    row = rows[run.key]
    assert row["final_loss"] == again["final_loss"] and row["status"] == "ok"
    for name in ("t", "loss", "u", "a"):
        np.testing.assert_array_equal(row[name], again[name])
    assert row["params"] == run.params and row["seed"] == run.seed


def test_a_group_of_seeds_gives_each_run_alone():
    """Seeds of one grid point run together (SGD replicas in lockstep, 17 = 16 + 1)."""
    params = expand(load(TINY))[0].params
    group = execute_group(params, list(range(17)))
    for seed, result in enumerate(group):
        alone = execute(params, seed)
        assert (result["final_loss"], result["status"], result["steps"]) == (
            alone["final_loss"], alone["status"], alone["steps"])
        for name in ("t", "loss", "u", "a"):
            np.testing.assert_array_equal(result[name], alone[name])


def count(store):
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def contents(store):
    with Store(store) as db:
        return {r["key"]: (r["final_loss"], r["loss"].tobytes(), r["u"].tobytes()) for r in db.rows()}


def test_sweep_killed_with_sigkill_resumes_exactly(tmp_path):
    slow = TINY.replace("steps = 3000", "steps = 8000000").replace("seeds = 3", "seeds = 6")
    exp = write(tmp_path, slow)
    store = str(tmp_path / "killed.sqlite")
    command = [sys.executable, "-m", "twotimescale", "sweep", exp, "--store", store,
               "--workers", "1", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while count(store) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = count(store)
    assert 3 <= done < 24, done                     # killed part-way
    subprocess.run(command, check=True)
    reference = str(tmp_path / "whole.sqlite")
    sweep(slow, store=reference, progress=False)
    assert count(store) == 24
    assert contents(store) == contents(reference)


def test_dask_cluster_gives_the_local_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    local = str(tmp_path / "local.sqlite")
    remote = str(tmp_path / "dask.sqlite")
    sweep(TINY, store=local, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert sweep(TINY, store=remote, scheduler=cluster.scheduler_address,
                     progress=False)["ran"] == 12
    assert contents(local) == contents(remote)


def test_report_and_variance(tmp_path, capsys):
    store = str(tmp_path / "runs.sqlite")
    sweep(TINY, store=store, progress=False)
    target = tt.PiecewiseConstant([0.3, 0.6], [0, 2, 1])
    # E f* = 0.3 * 2 + 0.4 * 1 = 1, E f*^2 = 0.3 * 4 + 0.4 * 1 = 1.6: Var f* = 0.6
    assert abs(target_variance(target) - 0.6) < 1e-15
    assert main(["report", store]) == 0
    out = capsys.readouterr().out
    assert "eps=0.1 m=4" in out and "eps=1.0 m=6" in out and "success" in out
    assert f"{1e-3 * target_variance(target):.3g}" in out


def test_cli_sweep_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    exp = write(tmp_path, TINY)
    store = str(tmp_path / "cli.sqlite")
    assert main(["sweep", exp, "--store", store, "--quiet"]) == 0
    assert "12 runs: 12 ran" in capsys.readouterr().out
    out = tmp_path / "figures"
    assert main(["plot", store, "--out", str(out), "--threshold", "0.5"]) == 0
    for name in ("fit.png", "positions.png", "training.gif", "losses.png", "final_loss.png",
                 "success.png"):
        assert (out / name).stat().st_size > 1000, name


def test_cli_errors_are_one_line(tmp_path, capsys):
    exp = write(tmp_path, TINY.replace("m = 6", "width = 6"))
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", exp, "--store", str(tmp_path / "x.sqlite")])
    assert exit_.value.code == 2
    assert "unknown key network.width" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "none.sqlite")])
    assert "no store at" in capsys.readouterr().err


def test_reproduce_fig3_quick_from_the_module(tmp_path):
    """The README's main command, as a user runs it."""
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, "-m", "twotimescale", "reproduce", "fig3", "--quick",
                           "--out", str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("fig3.png", "fig4.png", "positions.png", "training.gif", "summary.txt",
                 "store.sqlite"):
        assert (tmp_path / "fig3-quick" / name).stat().st_size > 1000, name
    assert "method=sgd" in proc.stdout and "method=limit" in proc.stdout
    assert "on every jump" in proc.stdout and "of 8" in proc.stdout


def test_a_store_of_the_old_streams_is_refused_for_new_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:                # a store as version 0.1 wrote it
        db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, seed INTEGER NOT NULL, params TEXT "
                   "NOT NULL, final_loss REAL, status TEXT NOT NULL, steps INTEGER NOT NULL, "
                   "wall_s REAL NOT NULL, trajectory BLOB NOT NULL)")
    for attempt in (lambda: sweep(TINY, store=str(path), progress=False),
                    lambda: Store(str(path), readonly=True)):
        with pytest.raises(ValueError, match="written by twotimescale 0.1 .* rerun into a new store"):
            attempt()
