"""The results store: one SQLite table ``runs``, one row per finished run, each committed
in its own transaction the moment the run ends, so a sweep killed at any point loses nothing
finished and, keyed by the hash of params and seed, never holds a run twice."""
import io
import json
import os
import sqlite3
from urllib.parse import quote

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,       -- hash of the resolved params and the seed
    seed INTEGER NOT NULL,
    params TEXT NOT NULL,       -- the resolved experiment: sections target, network, dynamics
    final_loss REAL,
    status TEXT NOT NULL,       -- ok | diverged
    steps INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    trajectory BLOB NOT NULL    -- .npz (no pickle) of t, loss, u, a at the records
)"""


def pack(t, loss, u, a):
    buf = io.BytesIO()
    np.savez(buf, t=t, loss=loss, u=u, a=a)
    return buf.getvalue()


def unpack(blob):
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {name: data[name] for name in ("t", "loss", "u", "a")}


#: the layout of a store's runs, as PRAGMA user_version: 2 since runs draw their network and
#: their samples from separate children of their seed (docs/maths.rst §4.3); 0 before
LAYOUT = 2
COLUMNS = ("key", "seed", "params", "final_loss", "status", "steps", "wall_s", "trajectory")


class Store:
    """``Store(path)`` opens (or creates) the SQLite file; ``Store(path, readonly=True)``
    opens an existing one without writing to it. Use as a context manager. Anything that is
    not a store of runs raises a ValueError naming the file."""

    def __init__(self, path, readonly=False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"store must be a file path, got {path!r}")
        self.path = os.fspath(path)
        if readonly and not os.path.isfile(self.path):
            raise ValueError(f"no store at {self.path}")
        try:
            self.db = (sqlite3.connect(f"file:{quote(os.path.abspath(self.path))}?mode=ro",
                                       uri=True, timeout=60) if readonly
                       else sqlite3.connect(self.path, timeout=60))
            self._open(readonly)
        except sqlite3.Error as exc:
            raise ValueError(f"store {self.path}: {self._why(exc)}") from None

    def _open(self, readonly):
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master "
                                                    "WHERE type = 'table'")}
        if "runs" not in tables:
            if readonly:
                raise ValueError(f"store {self.path} holds no runs (no table 'runs')")
            if tables:
                raise ValueError(f"store {self.path} is another program's database (tables "
                                 f"{', '.join(sorted(tables))}); give a new file")
            self.db.execute(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {LAYOUT}")
            self.db.commit()
        columns = tuple(row[1] for row in self.db.execute("PRAGMA table_info(runs)"))
        if columns != COLUMNS:
            raise ValueError(f"store {self.path}: its table 'runs' is not twotimescale's "
                             f"(columns {', '.join(columns)})")
        self.layout = self.db.execute("PRAGMA user_version").fetchone()[0]

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

    def require_current(self):
        """Refuse to add runs to a store whose runs were made another way."""
        if self.layout != LAYOUT:
            raise ValueError(f"store {self.path} holds runs of an earlier twotimescale (layout "
                             f"{self.layout}, now {LAYOUT}: the network and the samples of a "
                             "run now come from separate random streams), which new runs must "
                             "not join; give a new --store, or delete this one to rerun")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.db.close()

    def finished(self):
        """The keys of the runs already stored."""
        return {row[0] for row in self.db.execute("SELECT key FROM runs")}

    def save(self, run, result):
        """Store one finished run, in its own transaction (a repeat is ignored)."""
        try:
            with self.db:
                self.db.execute(
                    "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run.key, run.seed, json.dumps(run.params, sort_keys=True),
                     result["final_loss"], result["status"], result["steps"], result["wall_s"],
                     pack(result["t"], result["loss"], result["u"], result["a"])))
        except sqlite3.Error as exc:
            raise ValueError(f"store {self.path}: {self._why(exc)}") from None

    def rows(self):
        """Every stored run as a dict (the trajectory unpacked; a NaN final loss, which
        SQLite keeps as NULL, as NaN), ordered by grid point and seed."""
        cursor = self.db.execute("SELECT key, seed, params, final_loss, status, steps, wall_s, "
                                 "trajectory FROM runs ORDER BY params, seed")
        for key, seed, params, final_loss, status, steps, wall_s, blob in cursor:
            yield {"key": key, "seed": seed, "params": json.loads(params),
                   "final_loss": np.nan if final_loss is None else final_loss,
                   "status": status, "steps": steps, "wall_s": wall_s, **unpack(blob)}
