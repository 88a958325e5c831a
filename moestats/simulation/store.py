"""The results store: SQLite, one row per finished task, committed as it finishes.

Resume is a skip of the keys already stored. A store remembers the fingerprint and
the JSON of the spec that wrote it and refuses to take results of another spec.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from .spec import SweepSpec

__all__ = ["ResultStore", "SpecMismatchError", "COLUMNS"]

#: result columns, in order, with their SQLite types
COLUMNS = {
    "fitted": "TEXT", "n": "INTEGER", "replication": "INTEGER", "status": "TEXT",
    "error": "TEXT", "loss": "REAL", "losses": "TEXT", "errors": "TEXT",
    "log_likelihood": "REAL", "n_iter": "INTEGER", "converged": "INTEGER",
    "wall_time": "REAL", "params": "TEXT", "init": "TEXT", "assignment": "TEXT",
    "passes": "INTEGER", "certificate": "TEXT",
}


class SpecMismatchError(RuntimeError):
    """The store was written by a different sweep spec."""


class ResultStore:
    """SQLite store of sweep results at ``path`` (created if absent).

    Parameters
    ----------
    path : str or Path
    spec : SweepSpec, optional
        When given, the store is bound to it: a new store records it, an existing
        store must have been written by a spec with the same fingerprint.
    """

    def __init__(self, path, spec: SweepSpec | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(self.path), timeout=60)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
        with self._con:
            self._con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS results ({cols}, "
                "PRIMARY KEY (fitted, n, replication))")
        if spec is not None:
            self.bind(spec)

    # ---------------------------------------------------------------- spec
    def meta(self, key):
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def fingerprint(self):
        return self.meta("fingerprint")

    @property
    def spec_dict(self):
        raw = self.meta("spec")
        return None if raw is None else json.loads(raw)

    def bind(self, spec: SweepSpec):
        """Record ``spec`` in a new store, or check it against the stored one."""
        stored = self.fingerprint
        if stored is None:
            with self._con:
                self._con.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (spec.fingerprint(),))
                self._con.execute("INSERT INTO meta VALUES ('spec', ?)",
                                  (json.dumps(spec.as_dict(), sort_keys=True),))
        elif stored != spec.fingerprint():
            old = self.spec_dict or {}
            new = spec.as_dict()
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise SpecMismatchError(
                f"{self.path} holds results of another spec (fingerprint {stored}, this spec "
                f"{spec.fingerprint()}; fields that differ: {diff}); use another results "
                "directory or delete the store")

    # ------------------------------------------------------------- results
    def done_keys(self):
        """The set of ``(fitted, n, replication)`` already stored."""
        return {tuple(r) for r in self._con.execute(
            "SELECT fitted, n, replication FROM results")}

    def pending(self, tasks):
        """The tasks whose key is not stored yet, in their order."""
        done = self.done_keys()
        return [t for t in tasks if (t.fitted, t.n, t.replication) not in done]

    def add(self, row: dict):
        """Store one result row and commit it."""
        self.add_many([row])

    def add_many(self, rows):
        """Store result rows and commit them in one transaction."""
        with self._con:
            self._con.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                [[row.get(c) for c in COLUMNS] for row in rows])

    def failures(self):
        """Failed rows: ``(n_failed, n_rows, {first line of the error: count})``."""
        n_rows = len(self)
        errors = {}
        for (text,) in self._con.execute("SELECT error FROM results WHERE status = 'failed'"):
            line = (text or "unknown error").splitlines()[0]
            errors[line] = errors.get(line, 0) + 1
        return sum(errors.values()), n_rows, dict(sorted(errors.items(), key=lambda kv: -kv[1]))

    def __len__(self):
        return self._con.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def to_frame(self, expand=True) -> pd.DataFrame:
        """All rows as a DataFrame sorted by (fitted, n, replication).

        With ``expand``, the JSON losses become ``loss_<name>`` columns and the
        per-parameter errors ``err_<block>`` columns.
        """
        df = pd.read_sql_query("SELECT * FROM results ORDER BY fitted, n, replication", self._con)
        df["converged"] = df["converged"].astype("boolean")
        if expand and len(df):
            losses = df["losses"].map(lambda s: json.loads(s) if isinstance(s, str) else {})
            for key in sorted({k for d in losses for k in d}):
                df[f"loss_{key}"] = losses.map(lambda d, k=key: d.get(k)).astype(float)
            errors = df["errors"].map(lambda s: json.loads(s) if isinstance(s, str) else {})
            keys = sorted({k for d in errors for k, v in d.items()
                           if isinstance(v, (int, float)) or v is None})
            for key in keys:
                df[f"err_{key}"] = errors.map(lambda d, k=key: d.get(k)).astype(float)
        return df

    def close(self):
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
