"""The results store: two sweeps writing one store, a reader during a write, the views of
the runs as tables, exports, and kills at random moments."""
import csv
import multiprocessing
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import twotimescale as tt
from twotimescale.store import export
from twotimescale.sweep import execute, sweep

EXP = """
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
steps = 3000
n_records = 4
[sweep]
seeds = 6
[sweep.grid]
eps = [0.1, 1.0]
m = [4, 5]
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def stored(store):
    with tt.Store(store, readonly=True) as db:
        return {row["key"]: (row["final_loss"], row["loss"].tobytes(), row["u"].tobytes())
                for row in db.rows()}


def test_two_sweeps_on_one_store_and_a_reader_meanwhile(tmp_path):
    """Two processes sweep into one store at once (one experiment twice, and another): both
    finish, no run is stored twice, and a reader reads while they write."""
    slow = EXP.replace("steps = 3000", "steps = 400000").replace("seeds = 6", "seeds = 12")
    first, other = write(tmp_path, slow), write(tmp_path, slow.replace("m = [4, 5]", "m = [6]"), "b.toml")
    store = str(tmp_path / "shared.sqlite")
    procs = [subprocess.Popen([sys.executable, "-m", "twotimescale", "sweep", exp, "--store", store,
                               "--quiet", "--workers", "1"], stderr=subprocess.PIPE, text=True)
             for exp in (first, first, other)]
    seen = 0
    while any(p.poll() is None for p in procs):
        try:
            with tt.Store(store, readonly=True) as db:
                seen = max(seen, len(db.finished()))
        except ValueError:                       # not created yet
            pass
        time.sleep(0.05)
    errors = [p.stderr.read() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with tt.Store(store, readonly=True) as db:
        keys = [row["key"] for row in db.scalars()]
    assert len(keys) == len(set(keys)) == 2 * 2 * 12 + 2 * 12 and seen > 0
    alone = str(tmp_path / "alone.sqlite")
    sweep(slow, store=alone, progress=False)
    assert {k: v for k, v in stored(store).items() if k in stored(alone)} == stored(alone)


@pytest.mark.parametrize("trial", range(3))
def test_killed_at_a_random_moment_resumes_exactly(tmp_path, trial):
    slow = EXP.replace("steps = 3000", "steps = 2000000")
    exp, store = write(tmp_path, slow), str(tmp_path / "killed.sqlite")
    command = [sys.executable, "-m", "twotimescale", "sweep", exp, "--store", store, "--quiet",
               "--workers", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(trial).uniform(0.5, 3.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    whole = str(tmp_path / "whole.sqlite")
    sweep(slow, store=whole, progress=False)
    assert stored(store) == stored(whole) and len(stored(store)) == 24


def test_table_views_hold_what_the_runs_returned(tmp_path):
    store = str(tmp_path / "s.sqlite")
    sweep(EXP, store=store, progress=False)
    pd = pytest.importorskip("pandas")
    with tt.Store(store, readonly=True) as db:
        frame = db.table()
        array = db.table(as_frame=False)
        few = db.table(eps=0.1, m=5)
        runs = {row["key"]: row for row in db.scalars()}
        with pytest.raises(ValueError, match="no grid key 'h' varies"):
            db.table(h=1e-3)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 24 == len(array)
    assert list(frame.columns) == list(array.dtype.names) == [
        "key", "eps", "m", "seed", "final_loss", "status", "steps", "wall_s"]
    assert array.dtype["final_loss"] == np.float64 and array.dtype["seed"] == np.int64
    assert len(few) == 6 and set(few["eps"]) == {0.1} and set(few["m"]) == {5}
    for row in array:
        run = runs[row["key"]]
        assert row["final_loss"] == run["final_loss"] and row["seed"] == run["seed"]
        assert row["eps"] == run["params"]["dynamics"]["eps"]
    key = array["key"][3]
    with tt.Store(store, readonly=True) as db:
        params = runs[key]["params"]
        traj = db.trajectories([key])[key]
    again = execute(params, int(array["seed"][3]))
    for name in ("t", "loss", "a", "u"):
        np.testing.assert_array_equal(traj[name], again[name])


def test_exports_round_trip(tmp_path):
    store = str(tmp_path / "s.sqlite")
    sweep(EXP, store=store, progress=False)
    with tt.Store(store, readonly=True) as db:
        array = db.table(as_frame=False)
        assert export(db, tmp_path / "runs.csv") == 24
        with open(tmp_path / "runs.csv") as f:
            rows = list(csv.DictReader(f))
        assert [float(r["final_loss"]) for r in rows] == list(array["final_loss"])
        assert [r["key"] for r in rows] == list(array["key"])
        pq = pytest.importorskip("pyarrow.parquet")
        assert export(db, tmp_path / "runs.parquet") == 24
    back = pq.read_table(tmp_path / "runs.parquet")
    assert back.column_names == list(array.dtype.names)
    np.testing.assert_array_equal(back.column("final_loss").to_numpy(), array["final_loss"])
    assert back.column("key").to_pylist() == list(array["key"])


def test_the_store_keeps_little_beside_the_records(tmp_path):
    """Bytes on disk per run against the bytes of its records (t, loss, a, u as float64):
    within 1.3x plus 200 bytes a run."""
    store = tmp_path / "s.sqlite"
    sweep(EXP.replace("n_records = 4", "n_records = 100").replace("seeds = 6", "seeds = 100"),
          store=str(store), progress=False)
    with tt.Store(str(store), readonly=True) as db:
        runs = len(db.finished())
        records = sum(len(r["t"]) * 8 * (2 + r["a"].shape[1] + r["u"].shape[1]) for r in db.rows())
    size = sum(p.stat().st_size for p in tmp_path.glob("s.sqlite*"))
    assert size <= 1.3 * records + 200 * runs, (size, records, runs)


def _open_store(path, barrier, results):
    barrier.wait()
    try:
        with tt.Store(path) as db:
            db.finished()
        results.put("")
    except ValueError as exc:
        results.put(str(exc))


def test_processes_creating_one_store_at_once_all_open_it(tmp_path):
    """Three processes open one new store together, 20 times. SQLite refused a concurrent
    change to WAL at once ('database is locked', about 1 open in 8) and a second creator
    met the first one's tables; both are waited out now."""
    context = multiprocessing.get_context("fork")
    errors = []
    for trial in range(20):
        path = str(tmp_path / f"new{trial}.sqlite")
        barrier, results = context.Barrier(3), context.Queue()
        procs = [context.Process(target=_open_store, args=(path, barrier, results))
                 for _ in range(3)]
        for p in procs:
            p.start()
        errors += [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
    assert not any(errors), [e for e in errors if e][:3]
