"""The results store: one SQLite table ``runs``, one row per finished run, each committed
in its own transaction the moment the run ends, so a sweep killed at any point loses nothing
finished and, keyed by the hash of params and seed, never holds a run twice."""
import io
import json
import sqlite3

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


class Store:
    """``Store(path)`` opens (or creates) the SQLite file; use as a context manager."""

    def __init__(self, path):
        self.path = str(path)
        self.db = sqlite3.connect(self.path, timeout=60)
        exists = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                 "AND name = 'runs'").fetchone()[0]
        if not exists:
            self.db.execute(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {LAYOUT}")
            self.db.commit()
        self.layout = self.db.execute("PRAGMA user_version").fetchone()[0]

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
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.key, run.seed, json.dumps(run.params, sort_keys=True),
                 result["final_loss"], result["status"], result["steps"], result["wall_s"],
                 pack(result["t"], result["loss"], result["u"], result["a"])))

    def rows(self):
        """Every stored run as a dict (the trajectory unpacked), in insertion order."""
        cursor = self.db.execute("SELECT key, seed, params, final_loss, status, steps, wall_s, "
                                 "trajectory FROM runs ORDER BY rowid")
        for key, seed, params, final_loss, status, steps, wall_s, blob in cursor:
            yield {"key": key, "seed": seed, "params": json.loads(params),
                   "final_loss": final_loss, "status": status, "steps": steps,
                   "wall_s": wall_s, **unpack(blob)}
