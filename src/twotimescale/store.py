"""The results store: one SQLite file that a sweep writes and anyone may read meanwhile.

Layout (PRAGMA user_version = LAYOUT, write-ahead logging):

    points        id, params         each grid point's resolved params, once
    runs          key, point, seed, final_loss, status, steps, wall_s     scalars only
    trajectories  key, records, width_a, width_u, data     t, loss, a, u as raw float64
    analyses      key, verdict, polished_loss, min_eigenvalue, end_grad_norm
                  (runs of experiments with [analysis] certify = true; docs/maths.rst §7)

A run is keyed by the hash of its params and seed, stored whole (its row and trajectory in
one transaction) or not at all, and never twice (INSERT OR IGNORE, so two sweeps on one store
may overlap). Finished runs are committed in groups, by count (``batch``) and by time (at most
``linger`` seconds after the first of a group ends): a sweep killed at any moment loses at most
that last second of runs, which the next sweep recomputes to the same bits. Readers open the
file read-only and read the scalar columns without touching the trajectories.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from urllib.parse import quote

import numpy as np

#: PRAGMA user_version of this layout: 2 since runs draw their network and their samples
#: from separate children of their seed (docs/maths.rst §4.3) and scalars, params and
#: trajectories are kept apart; 0 before (one table of npz blobs)
LAYOUT = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY,
    params TEXT NOT NULL UNIQUE    -- the resolved experiment: sections target, network, dynamics
);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,          -- hash of the resolved params and the seed
    point INTEGER NOT NULL REFERENCES points (id),
    seed INTEGER NOT NULL,
    final_loss REAL,               -- NULL when NaN
    status TEXT NOT NULL,          -- ok | diverged | stalled
    steps INTEGER NOT NULL,
    wall_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trajectories (
    key TEXT PRIMARY KEY REFERENCES runs (key),
    records INTEGER NOT NULL,      -- n: t and loss (n,), a (n, width_a), u (n, width_u)
    width_a INTEGER NOT NULL,
    width_u INTEGER NOT NULL,
    data BLOB NOT NULL             -- t, loss, a, u: float64, native byte order, in that order
);
"""
ANALYSES = """
CREATE TABLE IF NOT EXISTS analyses (
    key TEXT PRIMARY KEY REFERENCES runs (key),
    verdict TEXT NOT NULL,         -- certify's, at the polished end point; or 'no Hessian'
    polished_loss REAL,
    min_eigenvalue REAL,           -- NULL when there is no Hessian
    end_grad_norm REAL             -- |grad| at the run's last state, before polishing
);
"""
SCALARS = ("key", "seed", "final_loss", "status", "steps", "wall_s")
ANALYSIS = ("verdict", "polished_loss", "min_eigenvalue", "end_grad_norm")


def _retry_while_locked(db, statement, timeout):
    """Execute statement, retrying for up to timeout seconds while the database is locked.
    SQLite answers a change of journal mode with SQLITE_BUSY at once, without waiting as the
    connection's busy timeout does for other statements: several sweeps opening one new store
    together (1 open in 7 here, three at once) would fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return db.execute(statement)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def pack(t, loss, a, u):
    """The trajectory row of records (t, loss, a, u)."""
    a, u = np.asarray(a, dtype=np.float64), np.asarray(u, dtype=np.float64)
    n = len(t)
    data = b"".join(np.ascontiguousarray(x, dtype=np.float64).tobytes() for x in (t, loss, a, u))
    return n, a.shape[1] if a.ndim == 2 else 0, u.shape[1] if u.ndim == 2 else 0, data


def unpack(records, width_a, width_u, data):
    """The arrays of a trajectory row."""
    flat = np.frombuffer(data, dtype=np.float64)
    n = records
    t, loss = flat[:n], flat[n:2 * n]
    a = flat[2 * n:2 * n + n * width_a].reshape(n, width_a)
    u = flat[2 * n + n * width_a:].reshape(n, width_u)
    return {"t": t, "loss": loss, "a": a, "u": u}


class Store:
    """A results store. ``Store(path)`` opens it for a sweep to write (creating it);
    ``Store(path, readonly=True)`` opens an existing one to read, as ``report``, ``plot`` and
    :meth:`table` do. Use as a context manager. Anything that is not a store of runs raises
    a ValueError naming the file.

    Parameters
    ----------
    path : str or path
    readonly : bool
    batch : int
        Runs committed together at most.
    linger : float
        Seconds a finished run may wait for its group's commit.
    """

    def __init__(self, path, readonly=False, batch=512, linger=1.0):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"store must be a file path, got {path!r}")
        self.path = os.fspath(path)
        self.readonly = readonly
        self.batch, self.linger = batch, linger
        self._pending, self._since, self._points = [], None, {}
        if readonly and not os.path.isfile(self.path):
            raise ValueError(f"no store at {self.path}")
        try:
            self.db = self._connect(readonly)
            self._open(readonly)
        except sqlite3.Error as exc:
            raise ValueError(f"store {self.path}: {self._why(exc)}") from None

    def _connect(self, readonly):
        if readonly:
            return sqlite3.connect(f"file:{quote(os.path.abspath(self.path))}?mode=ro", uri=True,
                                   timeout=60)
        db = sqlite3.connect(self.path, timeout=60)
        _retry_while_locked(db, "PRAGMA journal_mode = WAL", 60)  # readers, one writer
        db.execute("PRAGMA synchronous = NORMAL")    # durable at each checkpoint; WAL is atomic
        return db

    def _open(self, readonly):
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master "
                                                    "WHERE type = 'table'")}
        if not tables and not readonly:
            # in one write transaction, idempotent: several sweeps may create one store at
            # once, and none may see its tables without its layout
            self.db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} {ANALYSES} "
                                  f"PRAGMA user_version = {LAYOUT}; COMMIT;")
            tables = {"points", "runs", "trajectories", "analyses"}
        self.layout = self.db.execute("PRAGMA user_version").fetchone()[0]
        if "runs" not in tables:
            raise ValueError(f"store {self.path} " + (
                "holds no runs (no table 'runs')" if not tables else
                f"is another program's database (tables {', '.join(sorted(tables))}); "
                "give a new file"))
        if self.layout == LAYOUT and tables >= {"points", "trajectories"}:
            if "analyses" not in tables and not readonly:     # a store from before it
                with self.db:
                    self.db.executescript(ANALYSES)
                tables.add("analyses")
            self.analysed = "analyses" in tables
            return
        columns = [row[1] for row in self.db.execute("PRAGMA table_info(runs)")]
        if self.layout == 0 and columns[:3] == ["key", "seed", "params"]:
            raise ValueError(f"store {self.path} was written by twotimescale 0.1 (runs drew "
                             "their network and their samples from one random stream); read "
                             "it with that version, or rerun into a new store")
        raise ValueError(f"store {self.path}: its table 'runs' is not twotimescale's "
                         f"(columns {', '.join(columns)})")

    @staticmethod
    def _why(exc):
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return "not an SQLite database, or a damaged one"
        if "unable to open" in text:
            return "cannot be opened (a folder, a missing folder, or no permission)"
        if "readonly" in text:
            return "is read-only"
        return text

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Commit what is pending, and close."""
        try:
            self.flush()
        finally:
            self.db.close()

    # ---- writing -----------------------------------------------------------------------

    def finished(self):
        """The keys of the runs already stored."""
        return {row[0] for row in self.db.execute("SELECT key FROM runs")}

    def save(self, run, result):
        """Queue one finished run; the queue is committed when it holds ``batch`` runs or
        its first run has waited ``linger`` seconds (and at close)."""
        self._pending.append((run, result))
        if self._since is None:
            self._since = time.monotonic()
        if len(self._pending) >= self.batch or time.monotonic() - self._since >= self.linger:
            self.flush()

    def flush(self):
        """Commit the queued runs in one transaction."""
        if not self._pending:
            return
        try:
            with self.db:
                runs = [(run.key, self._point(run.params), run.seed,
                         None if np.isnan(result["final_loss"]) else result["final_loss"],
                         result["status"], result["steps"], result["wall_s"])
                        for run, result in self._pending]
                self.db.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
                self.db.executemany(    # a run already stored has its records already
                    "INSERT OR IGNORE INTO trajectories VALUES (?, ?, ?, ?, ?)",
                    [(run.key, *pack(result["t"], result["loss"], result["a"], result["u"]))
                     for run, result in self._pending])
                self.db.executemany(
                    "INSERT OR IGNORE INTO analyses VALUES (?, ?, ?, ?, ?)",
                    [(run.key, result["verdict"], *(None if np.isnan(result[k]) else result[k]
                                                    for k in ANALYSIS[1:]))
                     for run, result in self._pending if "verdict" in result])
        except sqlite3.Error as exc:
            raise ValueError(f"store {self.path}: {self._why(exc)}") from None
        self._pending, self._since = [], None

    def _point(self, params):
        """The id of a grid point's row, made if new; remembered per params object (the runs
        of one grid point share theirs), so each point is encoded and looked up once."""
        known = self._points.get(id(params))
        if known is not None and known[0] is params:
            return known[1]
        text = json.dumps(params, sort_keys=True)
        self.db.execute("INSERT OR IGNORE INTO points (params) VALUES (?)", (text,))
        point = self.db.execute("SELECT id FROM points WHERE params = ?", (text,)).fetchone()[0]
        self._points[id(params)] = (params, point)
        return point

    def require_current(self):
        """Refuse to add runs to a store laid out another way (see _open)."""
        if self.layout != LAYOUT:
            raise ValueError(f"store {self.path} has layout {self.layout}, not {LAYOUT}")

    # ---- reading -----------------------------------------------------------------------

    def points(self):
        """{point id: params} of every grid point stored."""
        return {pid: json.loads(params)
                for pid, params in self.db.execute("SELECT id, params FROM points")}

    def scalars(self):
        """Every run's scalar columns with its params, ordered by grid point and seed,
        without reading a trajectory: dicts with key, seed, params, final_loss (NaN for
        NULL), status, steps, wall_s; and, for the runs of an experiment with [analysis]
        certify = true, verdict, polished_loss, min_eigenvalue and end_grad_norm."""
        points = self.points()
        extra = "".join(f", x.{name}" for name in ANALYSIS) if self.analysed else ""
        join = " LEFT JOIN analyses x ON x.key = r.key" if self.analysed else ""
        cursor = self.db.execute("SELECT r.key, r.seed, r.point, r.final_loss, r.status, "
                                 f"r.steps, r.wall_s{extra} FROM runs r JOIN points p ON "
                                 f"p.id = r.point{join} ORDER BY p.params, r.seed")
        for key, seed, point, final, status, steps, wall, *analysis in cursor:
            row = {"key": key, "seed": seed, "params": points[point],
                   "final_loss": np.nan if final is None else final, "status": status,
                   "steps": steps, "wall_s": wall}
            if analysis and analysis[0] is not None:
                row["verdict"] = analysis[0]
                row.update({k: np.nan if v is None else v
                            for k, v in zip(ANALYSIS[1:], analysis[1:])})
            yield row

    def trajectories(self, keys):
        """{key: {t, loss, a, u}} for the runs ``keys``."""
        out = {}
        for key in keys:
            row = self.db.execute("SELECT records, width_a, width_u, data FROM trajectories "
                                  "WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"store {self.path} holds no run {key!r}")
            out[key] = unpack(*row)
        return out

    def rows(self):
        """Every run as a dict: scalars, params and its trajectory, by grid point and seed."""
        for row in self.scalars():
            yield {**row, **self.trajectories([row["key"]])[row["key"]]}

    def table(self, as_frame=None, **where):
        """The scalar columns of the runs (those whose grid values equal ``where``, e.g.
        ``eps=0.1``), one row per run: ``key``, a column per key that varies between the
        stored grid points (``eps``, ``m``, ...; ``dynamics.steps`` when a grid key would
        take a scalar column's name), ``seed``, ``final_loss``, ``status``, ``steps``,
        ``wall_s`` (and ``verdict``, ``polished_loss``, ``min_eigenvalue``,
        ``end_grad_norm`` where runs were certified). A pandas DataFrame when pandas is
        installed (or ``as_frame=True``), else a NumPy structured array."""
        points = self.points()
        varying = _varying_keys(points.values())
        names = {f"{s}.{k}": (f"{s}.{k}" if k in SCALARS else k) for s, k in varying}
        unknown = set(where) - set(names.values())
        if unknown:
            raise ValueError(f"table: no grid key {sorted(unknown)[0]!r} varies in this store "
                             f"(those that do: {', '.join(names.values()) or 'none'})")
        rows = list(self.scalars())
        extra = ANALYSIS if any("verdict" in row for row in rows) else ()
        columns = {name: [] for name in ("key", *names.values(), *SCALARS[1:], *extra)}
        for row in rows:
            values = {names[f"{s}.{k}"]: row["params"][s].get(k) for s, k in varying}
            if any(values[k] != v for k, v in where.items()):
                continue
            columns["key"].append(row["key"])
            for name, value in values.items():
                columns[name].append(value)
            for name in SCALARS[1:]:
                columns[name].append(row[name])
            for name in extra:
                columns[name].append(row.get(name, "" if name == "verdict" else np.nan))
        return _as_table(columns, as_frame)


def _varying_keys(points):
    """(section, key) of the network and dynamics keys whose values differ between points,
    in a fixed order."""
    points = list(points)
    keys = sorted({(s, k) for p in points for s in ("network", "dynamics") for k in p[s]})
    return [(s, k) for s, k in keys
            if len({json.dumps(p[s].get(k)) for p in points}) > 1]


def _as_table(columns, as_frame):
    if as_frame is not False:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError("table(as_frame=True) needs pandas: pip install "
                                  "'twotimescale[pandas]'") from None
        else:
            return pd.DataFrame(columns)
    fields = []
    for name, values in columns.items():
        if name in ("key", "status", "verdict") or any(isinstance(v, str) for v in values):
            fields.append((name, f"U{max([len(str(v)) for v in values] + [1])}"))
        elif name in ("seed", "steps") or all(isinstance(v, int) for v in values) and values:
            fields.append((name, np.int64))
        else:
            fields.append((name, np.float64))
    out = np.empty(len(columns["key"]), dtype=fields)
    for name, values in columns.items():
        out[name] = [np.nan if v is None and out.dtype[name].kind == "f" else v for v in values]
    return out


def export(store, out):
    """Write the scalar columns of ``store`` (an open Store) to ``out``: Parquet (pyarrow,
    from the ``pandas`` extra) for ``.parquet``, CSV (stdlib) for ``.csv``. Returns the number
    of runs written."""
    out = os.fspath(out)
    if out.endswith(".parquet"):
        try:
            import pyarrow
            import pyarrow.parquet
        except ImportError:
            raise ImportError("export to Parquet needs pyarrow: pip install "
                              "'twotimescale[pandas]' (or export to .csv)") from None
        table = store.table(as_frame=False)
        pyarrow.parquet.write_table(pyarrow.table({name: table[name] for name in
                                                   table.dtype.names}), out)
        return len(table)
    if out.endswith(".csv"):
        import csv
        table = store.table(as_frame=False)
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table.dtype.names)
            writer.writerows(row.tolist() for row in table)
        return len(table)
    raise ValueError(f"export writes .parquet or .csv files, not {out!r}")
