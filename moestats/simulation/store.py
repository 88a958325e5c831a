"""The results store: SQLite, one row per finished task, committed as it finishes.

Resume is a skip of the keys already stored. A store remembers the fingerprint and
the JSON of the spec that wrote it and refuses to take results of another spec.

Per-cell errors. A result row of :func:`~moestats.simulation.task.run_task` holds,
per true atom (Voronoi cell) ``j``, the flat keys ``cell{j}_size``,
``cell{j}_<block>`` and ``cell{j}_weight``; their number depends on the setup
(``k*`` cells). The store keeps them in one JSON column ``cells``::

    {"size": [1, 2], "gate_coef": [0.12, 3.4], ..., "weight": [1e-4, 2e-4]}

(one list per block, indexed by ``j``; NaN as ``null``), and
:meth:`ResultStore.to_frame` expands it back into the flat columns. The gauge of the
losses and errors is the column ``loss_gauge``. A store written before these columns
existed still opens: reading fills them from the ``errors`` JSON where it holds
them (else leaves them missing), and the first write adds the columns.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import pandas as pd

from .spec import SweepSpec

__all__ = ["ResultStore", "SpecMismatchError", "COLUMNS", "cells_json", "parse_cells"]

#: result columns, in order, with their SQLite types
COLUMNS = {
    "fitted": "TEXT", "n": "INTEGER", "replication": "INTEGER", "status": "TEXT",
    "error": "TEXT", "loss": "REAL", "losses": "TEXT", "errors": "TEXT",
    "log_likelihood": "REAL", "n_iter": "INTEGER", "converged": "INTEGER",
    "wall_time": "REAL", "params": "TEXT", "init": "TEXT", "assignment": "TEXT",
    "passes": "INTEGER", "certificate": "TEXT", "loss_gauge": "TEXT", "cells": "TEXT",
}

_CELL_KEY = re.compile(r"^cell(\d+)_(.+)$")


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def cells_json(row: dict):
    """The ``cells`` JSON of a result row (None when it has no per-cell errors).

    From the row's flat ``cell{j}_<block>`` keys, else from the ``per_cell`` and
    ``cell_sizes`` of its ``errors`` JSON.

    Examples
    --------
    >>> from moestats.simulation.store import cells_json, parse_cells
    >>> row = {"cell0_size": 1, "cell0_gate_coef": 0.5, "cell0_weight": 0.01,
    ...        "cell1_size": 2, "cell1_gate_coef": float("nan"), "cell1_weight": 0.02}
    >>> text = cells_json(row)
    >>> text
    '{"size": [1, 2], "gate_coef": [0.5, null], "weight": [0.01, 0.02]}'
    >>> back = parse_cells(text)
    >>> back["cell1_size"], back["cell1_gate_coef"], back["cell1_weight"]
    (2, nan, 0.02)
    """
    cells = {}
    for key, value in row.items():
        m = _CELL_KEY.match(str(key))
        if m:
            cells.setdefault(m.group(2), {})[int(m.group(1))] = value
    if cells:
        k = 1 + max(j for block in cells.values() for j in block)
        blocks = ["size"] + [b for b in cells if b != "size"]
        out = {}
        for b in blocks:
            values = [cells.get(b, {}).get(j) for j in range(k)]
            out[b] = ([None if v is None else int(v) for v in values] if b == "size"
                      else [_num(v) for v in values])
        return json.dumps(out)
    errors = row.get("errors")
    if isinstance(errors, str):
        errors = json.loads(errors)
    if isinstance(errors, dict) and "per_cell" in errors and "cell_sizes" in errors:
        out = {"size": [int(v) for v in errors["cell_sizes"]]}
        out.update({b: [_num(v) for v in vals] for b, vals in errors["per_cell"].items()})
        return json.dumps(out)
    return None


def parse_cells(text) -> dict:
    """The flat ``cell{j}_<block>`` values of a ``cells`` JSON ({} for None/NULL);
    sizes as int, errors as float (NaN for ``null``). Inverse of :func:`cells_json`."""
    if not isinstance(text, str):
        return {}
    data = json.loads(text)
    sizes = data.get("size", [])
    k = max([len(sizes)] + [len(v) for v in data.values()])
    out = {}
    for j in range(k):
        for b, values in data.items():
            v = values[j] if j < len(values) else None
            if b == "size":
                out[f"cell{j}_size"] = None if v is None else int(v)
            else:
                out[f"cell{j}_{b}"] = float("nan") if v is None else float(v)
    return out


def _gauge_of(row: dict):
    """The row's ``loss_gauge``, else the one recorded in its ``errors`` JSON."""
    if isinstance(row.get("loss_gauge"), str):
        return row["loss_gauge"]
    errors = row.get("errors")
    if isinstance(errors, str):
        try:
            errors = json.loads(errors)
        except ValueError:
            return None
    return errors.get("loss_gauge") if isinstance(errors, dict) else None


def _certified(text):
    """The certificate's verdict (True/False), or None where none is stored."""
    if not isinstance(text, str):
        return None
    try:
        cert = json.loads(text)
    except ValueError:
        return None
    if not isinstance(cert, dict) or cert.get("certified") is None:
        return None
    return bool(cert["certified"])


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

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation import ResultStore, SweepSpec
    >>> spec = SweepSpec(setup="softmax-over", fitted=("k3",), sample_sizes=(100, 200),
    ...                  replications=2)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
    >>> with ResultStore(path, spec) as store:
    ...     store.add({"fitted": "k3", "n": 100, "replication": 0, "status": "ok"})
    ...     [(t.n, t.replication) for t in store.pending(spec.tasks())]
    [(100, 1), (200, 0), (200, 1)]
    """

    def __init__(self, path, spec: SweepSpec | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(self.path), timeout=60)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._migrated = False
        cols = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
        with self._con:
            self._con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS results ({cols}, "
                "PRIMARY KEY (fitted, n, replication))")
        if spec is not None:
            self.bind(spec)

    def _stored_columns(self):
        return [r[1] for r in self._con.execute("PRAGMA table_info(results)")]

    def _migrate(self):
        """Add the columns of :data:`COLUMNS` that an older store lacks (empty)."""
        have = set(self._stored_columns())
        for c, t in COLUMNS.items():
            if c not in have:
                self._con.execute(f"ALTER TABLE results ADD COLUMN {c} {t}")

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
        """Store result rows and commit them in one transaction.

        The row's ``cell{j}_*`` keys go into the ``cells`` JSON column
        (:func:`cells_json`) and its gauge into ``loss_gauge``; other keys that are
        not in :data:`COLUMNS` are not stored.
        """
        if not self._migrated:
            with self._con:
                self._migrate()
            self._migrated = True
        records = []
        for row in rows:
            extra = {"cells": row.get("cells") or cells_json(row), "loss_gauge": _gauge_of(row)}
            records.append([extra[c] if c in extra else row.get(c) for c in COLUMNS])
        with self._con:
            self._con.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})", records)

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

        Every column of :data:`COLUMNS` is present (None where an older store has
        no such column; ``loss_gauge`` then taken from the ``errors`` JSON). With
        ``expand``, the JSON losses become ``loss_<name>`` columns, the
        per-parameter errors (maximum over the cells) ``err_<block>`` columns, the
        per-cell errors ``cell{j}_size`` (Int64) and ``cell{j}_<block>`` columns
        (from ``cells``, else from the ``errors`` JSON of an older store), and the
        certificate's verdict a ``certified`` column (boolean; NA where no
        certificate is stored).

        Examples
        --------
        >>> import json, tempfile, pathlib
        >>> from moestats.simulation.store import ResultStore
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
        >>> with ResultStore(path) as store:
        ...     store.add({"fitted": "k3", "n": 100, "replication": 0, "status": "ok",
        ...                "loss": 0.5, "loss_gauge": "slope",
        ...                "certificate": json.dumps({"certified": True}),
        ...                "cell0_size": 1, "cell0_gate_coef": 0.1, "cell0_weight": 0.01,
        ...                "cell1_size": 2, "cell1_gate_coef": 0.7, "cell1_weight": 0.02})
        ...     df = store.to_frame()
        >>> df[["loss_gauge", "certified", "cell0_size", "cell1_size", "cell1_gate_coef"]]
          loss_gauge  certified  cell0_size  cell1_size  cell1_gate_coef
        0      slope       True           1           2              0.7
        """
        df = pd.read_sql_query("SELECT * FROM results ORDER BY fitted, n, replication", self._con)
        for c in COLUMNS:
            if c not in df:
                df[c] = None
        df["converged"] = df["converged"].astype("boolean")
        if len(df) and df["loss_gauge"].isna().any():
            records = df[["loss_gauge", "errors"]].to_dict("records")
            df["loss_gauge"] = [_gauge_of(r) for r in records]
        if expand and len(df):
            losses = df["losses"].map(lambda s: json.loads(s) if isinstance(s, str) else {})
            for key in sorted({k for d in losses for k in d}):
                df[f"loss_{key}"] = losses.map(lambda d, k=key: d.get(k)).astype(float)
            errors = df["errors"].map(lambda s: json.loads(s) if isinstance(s, str) else {})
            keys = sorted({k for d in errors for k, v in d.items()
                           if isinstance(v, (int, float)) or v is None})
            for key in keys:
                df[f"err_{key}"] = errors.map(lambda d, k=key: d.get(k)).astype(float)
            cells = [parse_cells(c if isinstance(c, str) else cells_json({"errors": e}))
                     for c, e in zip(df["cells"], errors)]
            if any(cells):
                flat = pd.DataFrame(cells, index=df.index)
                for col in flat.columns:
                    flat[col] = (flat[col].astype("Int64") if col.endswith("_size")
                                 else flat[col].astype(float))
                df = pd.concat([df, flat], axis=1)
            df["certified"] = pd.array(
                [_certified(c) for c in df["certificate"]], dtype="boolean")
        return df

    def close(self):
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
