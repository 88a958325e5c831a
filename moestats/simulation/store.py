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

Safety. A store is an SQLite database (WAL journal) marked as moestats's by
``PRAGMA application_id`` = :data:`APPLICATION_ID` (the bytes ``"MoES"``) and the meta
key ``format`` = :data:`STORE_FORMAT`; a store of an older version (application id 0,
with the ``meta`` and ``results`` tables) is recognised and marked at its first
write. Anything else at the path is refused with a
:class:`~moestats.simulation.faults.StoreError` naming it, and never written to:

- another application's SQLite database, a file that is not SQLite, a directory;
- a 0-byte file: moestats never leaves one, because a new store is built complete in
  a temporary file beside it (``.<name>.<pid>.<random>.tmp``) and then hard-linked
  into place, which fails if anything appeared there meanwhile (creation is
  race-free). The small file moestats does leave beside a store is its lock,
  ``<name>.lock`` (:mod:`~moestats.simulation.locking`), never at the store's path;
- a corrupt or truncated database (``PRAGMA quick_check`` when it is opened).

Writes take the writer lock (``<name>.lock``, ``flock``) first, then run in
``BEGIN IMMEDIATE`` transactions, so the spec's check-and-record is atomic and two
writers never meet inside SQLite. ``readonly=True`` opens the store through an
SQLite ``file:...?mode=ro`` URI: it never takes the lock, never creates, converts or
writes the store, works in a read-only directory (there, a store without a pending
write-ahead log is read as ``immutable``), and is what ``moestats report`` uses. (In
a writable directory SQLite may leave the empty ``-wal``/``-shm`` files that any
reader of a WAL database makes; the next writer removes them.) SQLite errors (disk
full, read-only file system, corruption) come out as the one-line errors of
:mod:`~moestats.simulation.faults` that name the store.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .faults import EmptyStoreError, StoreError, StoreLockedError
from .locking import StoreLock
from .machine import cpu_description, load_1min
from .spec import SweepSpec
from .store_file import APPLICATION_ID, STORE_FORMAT, StoreFile
from .store_rows import COLUMNS, _certified, _gauge_of, cells_json, parse_cells

__all__ = ["ResultStore", "SpecMismatchError", "COLUMNS", "cells_json", "parse_cells",
           "APPLICATION_ID", "STORE_FORMAT", "StoreError", "StoreLockedError",
           "EmptyStoreError"]

def _iso(unix):
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")


class SpecMismatchError(RuntimeError):
    """The store was written by a different sweep spec."""


class ResultStore(StoreFile):
    """SQLite store of sweep results at ``path`` (created if absent, unless read-only).

    Parameters
    ----------
    path : str or Path
    spec : SweepSpec, optional
        When given, the store is bound to it: a new store records it, an existing
        store must have been written by a spec with the same fingerprint.
    readonly : bool
        Open through a read-only SQLite URI: never create, lock, convert or write
        (a missing path is a :class:`StoreError`). For reports.
    lock : bool
        Take the writer lock now (else at the first write). :func:`run_sweep` does,
        before it creates anything.
    wait : float
        Seconds to wait for the writer lock when another process holds it (0:
        refuse at once with :class:`StoreLockedError`; ``inf``: no limit).
    on_wait : callable, optional
        Called once with the holder's description if the lock has to be waited for.

    Raises
    ------
    StoreError
        The path is a directory, is empty (0 bytes), is not an SQLite database, is
        another application's database, or is corrupt; nothing is written to it.
    StoreLockedError
        Another process holds the writer lock.
    FileSystemError
        Disk full, read-only file system, permission denied, I/O error.
    SpecMismatchError
        ``spec`` differs from the spec the store was written by.

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
    >>> with ResultStore(path, readonly=True) as store:
    ...     len(store), store.fingerprint == spec.fingerprint()
    (1, True)

    Anything that is not a moestats store is refused, and left as it was:

    >>> import sqlite3
    >>> other = path.parent / "other.sqlite"
    >>> con = sqlite3.connect(other); con.execute("CREATE TABLE t (x)"); con.close()
    <sqlite3.Cursor object at ...>
    >>> try:
    ...     ResultStore(other, spec)
    ... except Exception as exc:
    ...     print(type(exc).__name__, exc.exit_code)
    StoreError 3
    """

    def __init__(self, path, spec: SweepSpec | None = None, *, readonly=False, lock=False,
                 wait=0.0, on_wait=None):
        self.path = Path(path)
        self.readonly = bool(readonly)
        self._con = None
        self._lock = None if self.readonly else StoreLock(self.path)
        self._prepared = False
        self._legacy = False
        self._session = None  # (meta key, record) of the run session being recorded
        try:
            if self.readonly:
                self._open_readonly()
            else:
                self._open_writable(spec, lock, wait, on_wait)
            if spec is not None:
                self.bind(spec)
        except BaseException:
            self.close()
            raise

    def meta(self, key):
        with self._errors("reading"):
            row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def fingerprint(self):
        return self.meta("fingerprint")

    @property
    def spec_dict(self):
        raw = self.meta("spec")
        return None if raw is None else json.loads(raw)

    def _mismatch(self, stored, spec):
        old = self.spec_dict or {}
        new = spec.as_dict()
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return SpecMismatchError(
            f"{self.path} holds results of another spec (fingerprint {stored}, this spec "
            f"{spec.fingerprint()}; fields that differ: {diff}); use another results "
            "directory or delete the store")

    def bind(self, spec: SweepSpec):
        """Record ``spec`` in a new store, or check it against the stored one (atomic:
        the check and the record are one write transaction)."""
        stored = self.fingerprint
        if stored is None and not self.readonly:
            with self._write("recording the spec") as con:
                row = con.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
                if row is None:
                    con.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (spec.fingerprint(),))
                    con.execute("INSERT INTO meta VALUES ('spec', ?)",
                                (json.dumps(spec.as_dict(), sort_keys=True),))
                stored = spec.fingerprint() if row is None else row[0]
        if stored is None:
            raise StoreError(f"{self.path} records no spec; it cannot be checked read-only")
        if stored != spec.fingerprint():
            raise self._mismatch(stored, spec)

    # ------------------------------------------------------------- results
    def done_keys(self):
        """The set of ``(fitted, n, replication)`` already stored."""
        with self._errors("reading"):
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
        not in :data:`COLUMNS` are not stored. In a run session
        (:meth:`begin_session`) the same transaction updates the session's record.
        """
        records = []
        for row in rows:
            extra = {"cells": row.get("cells") or cells_json(row), "loss_gauge": _gauge_of(row)}
            records.append([extra[c] if c in extra else row.get(c) for c in COLUMNS])
        with self._write("storing results") as con:
            con.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})", records)
            if self._session is not None:
                key, record = self._session
                now = time.time()
                record.update(fits=record["fits"] + len(records), last_write=_iso(now),
                              wall_s=round(now - record["started_unix"], 3))
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            (key, json.dumps(record)))

    # ------------------------------------------------------------ sessions
    def begin_session(self, workers: str, pending: int) -> str:
        """Record the start of a run session (one ``moestats run`` of this store).

        The record, the meta value of the returned key ``session:<start>:<pid>``,
        holds ``started`` and ``last_write`` (UTC), ``wall_s`` (seconds from the
        start to the last commit), ``fits`` (stored in this session), ``pending`` (at
        its start), ``workers`` (e.g. ``"2 local processes"``), the machine
        (``cpu``, ``nproc``, ``load``: the 1-minute load average at the start) and the
        ``moestats`` version. Every later :meth:`add_many` updates it in its own
        transaction, so a session ended by a kill keeps the time up to its last
        commit. :meth:`sessions` reads them back.
        """
        from .. import __version__
        now = time.time()
        key = f"session:{_iso(now)}:{os.getpid()}"
        record = dict(started=_iso(now), started_unix=now, last_write=_iso(now), wall_s=0.0,
                      fits=0, pending=int(pending), workers=str(workers), cpu=cpu_description(),
                      nproc=os.cpu_count(), load=load_1min(), moestats=__version__)
        with self._write("recording the run session") as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(record)))
        self._session = (key, record)
        return key

    def end_session(self):
        """Stop updating the current session's record (:meth:`begin_session`)."""
        self._session = None

    def sessions(self) -> list:
        """The run sessions recorded in the store (:meth:`begin_session`), oldest first;
        empty for a store written before moestats recorded them."""
        with self._errors("reading"):
            rows = self._con.execute(
                "SELECT value FROM meta WHERE key LIKE 'session:%'").fetchall()
        return sorted((json.loads(v) for (v,) in rows), key=lambda r: r["started_unix"])

    def failures(self):
        """Failed rows: ``(n_failed, n_rows, {first line of the error: count})``."""
        n_rows = len(self)
        errors = {}
        with self._errors("reading"):
            failed = self._con.execute(
                "SELECT error FROM results WHERE status = 'failed'").fetchall()
        for (text,) in failed:
            line = (text or "unknown error").splitlines()[0]
            errors[line] = errors.get(line, 0) + 1
        return sum(errors.values()), n_rows, dict(sorted(errors.items(), key=lambda kv: -kv[1]))

    def __len__(self):
        with self._errors("reading"):
            return self._con.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def count_safely(self):
        """``len(self)``, or None if the store cannot be read (for messages)."""
        try:
            return len(self)
        except Exception:
            return None

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
        with self._errors("reading"):
            df = pd.read_sql_query("SELECT * FROM results ORDER BY fitted, n, replication",
                                   self._con)
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
        """Close the connection and release the writer lock (idempotent)."""
        con, self._con = self._con, None
        try:
            if con is not None:
                con.close()
        finally:
            self.release_lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
