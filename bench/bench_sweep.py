"""Monte Carlo at scale: the machinery around the kernels, in one run.

    python bench/bench_sweep.py [--quick]

1. the sweep (store included) against sgd_many on the same networks and seeds, no store:
   3000 runs of m = 20 (ramp), 10^4 SGD steps, 10 records each;
2. runs stored per second, 2 x 10^4 runs of 100 steps;
3. report on a store of 10^5 runs: its time and the process's peak memory;
4. bytes on disk per run against the bytes of its records;
5. 10^4 runs of 100 steps on a Dask LocalCluster of 2 workers against the local sweep.

Goals (issue 18): 1 within 1.25x; 2 at least 5000 runs/s; 3 a few seconds, bounded memory;
4 within 1.3x of the records plus 200 bytes a run.
"""
from machine import describe  # first: it pins OpenBLAS to one thread

import os
import subprocess
import sys
import tempfile
import time

import twotimescale as tt
from twotimescale.experiment import expand, load, make_network, make_target
from twotimescale.sweep import report, sweep


def experiment(runs, steps, records=10):
    return {"target": {"breaks": [0.2, 0.35, 0.5, 0.65, 0.8], "values": [1, 5, 1, 3, 1, 5]},
            "network": {"m": 20, "eta": 4e-3, "activation": "ramp"},
            "dynamics": {"method": "sgd", "h": 1e-3, "eps": 0.1, "steps": steps,
                         "n_records": records},
            "sweep": {"seeds": runs}}


def against_the_kernels(folder, runs, steps):
    exp = experiment(runs, steps)
    params = expand(load(exp))[0].params
    nets = [make_network(params["network"], seed) for seed in range(runs)]
    target = make_target(params["target"])
    start = time.perf_counter()
    tt.sgd_many(nets, target, seeds=range(runs), h=1e-3, eps=0.1, steps=steps, n_records=10)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    sweep(exp, store=os.path.join(folder, "a.sqlite"), progress=False)
    swept = time.perf_counter() - start
    print(f"1. {runs} runs of {steps} steps: sweep {swept:.2f} s, sgd_many alone {bare:.2f} s, "
          f"ratio {swept / bare:.2f} (goal <= 1.25)")


def stored_per_second(folder, runs):
    store = os.path.join(folder, "b.sqlite")
    start = time.perf_counter()
    sweep(experiment(runs, 100), store=store, progress=False)
    wall = time.perf_counter() - start
    print(f"2. {runs} runs of 100 steps: {wall:.2f} s, {runs / wall:.0f} runs stored per second "
          "(goal >= 5000)")
    return store


def report_at_scale(folder, runs):
    store = os.path.join(folder, "c.sqlite")
    start = time.perf_counter()
    sweep(experiment(runs, 100, records=10), store=store, progress=False)
    made = time.perf_counter() - start
    # the peak is VmHWM of a fresh process (ru_maxrss would count the forking parent's pages)
    peak = ("next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))")
    code = ("import sys, time\nfrom twotimescale.sweep import report\n"
            "start = time.perf_counter(); report(sys.argv[1]); wall = time.perf_counter() - start\n"
            f"print(wall, {peak})")
    wall, peak_kib = subprocess.run([sys.executable, "-c", code, store], capture_output=True,
                                    text=True, check=True).stdout.split()
    base = subprocess.run([sys.executable, "-c", f"import twotimescale.sweep\nprint({peak})"],
                          capture_output=True, text=True, check=True).stdout.strip()
    print(f"3. report on {runs} runs (made in {made:.1f} s): {float(wall):.2f} s, peak memory "
          f"{int(peak_kib) / 1024:.0f} MiB (the import alone: {int(base) / 1024:.0f} MiB)")
    return store


def bytes_per_run(store):
    with tt.Store(store, readonly=True) as db:
        runs = len(db.finished())
        one = next(db.rows())
    records = len(one["t"]) * 8 * (2 + one["a"].shape[1] + one["u"].shape[1])
    size = sum(os.path.getsize(store + suffix) for suffix in ("", "-wal")
               if os.path.exists(store + suffix))
    print(f"4. {size / runs:.0f} bytes on disk per run, its records {records} bytes: "
          f"{size / runs / records:.2f}x, or records + {size / runs - records:.0f} bytes "
          "(goal <= 1.3x + 200)")


def on_dask(folder, runs):
    """The same short runs on a distributed.LocalCluster of 2 single-threaded worker
    processes and locally."""
    try:
        from distributed import LocalCluster
    except ImportError:
        print("5. distributed not installed: no Dask figure")
        return
    exp = experiment(runs, 100)
    start = time.perf_counter()
    sweep(exp, store=os.path.join(folder, "local.sqlite"), progress=False)
    local = time.perf_counter() - start
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        start = time.perf_counter()
        sweep(exp, store=os.path.join(folder, "dask.sqlite"), scheduler=cluster.scheduler_address,
              progress=False)
        dask = time.perf_counter() - start
    print(f"5. {runs} runs of 100 steps: local {local:.2f} s, Dask LocalCluster (2 workers) "
          f"{dask:.2f} s, ratio {dask / local:.2f}")


def main():
    quick = "--quick" in sys.argv
    print(describe())
    with tempfile.TemporaryDirectory() as folder:
        against_the_kernels(folder, 300 if quick else 3000, 10_000)
        stored_per_second(folder, 2000 if quick else 20_000)
        store = report_at_scale(folder, 10_000 if quick else 100_000)
        bytes_per_run(store)
        on_dask(folder, 1000 if quick else 10_000)


if __name__ == "__main__":
    main()
