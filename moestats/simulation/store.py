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
import math
import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .atomic import remove_stale_temporaries
from .faults import (EmptyStoreError, FileSystemError, StoreError, StoreLockedError,
                     deferred_interrupts, os_error, sqlite_error)
from .locking import StoreLock
from .spec import SweepSpec

__all__ = ["ResultStore", "SpecMismatchError", "COLUMNS", "cells_json", "parse_cells",
           "APPLICATION_ID", "STORE_FORMAT", "StoreError", "StoreLockedError",
           "EmptyStoreError"]

#: ``PRAGMA application_id`` of a moestats store: the bytes "MoES"
APPLICATION_ID = 0x4D6F4553
#: the ``format`` meta key of a moestats store
STORE_FORMAT = "moestats-results/1"
_SQLITE_MAGIC = b"SQLite format 3\x00"

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


def _ro_uri(path: Path, immutable=False) -> str:
    uri = "file:" + quote(str(path.resolve()), safe="/") + "?mode=ro"
    return uri + ("&immutable=1" if immutable else "")


class ResultStore:
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

    # ------------------------------------------------------------- opening
    def _refuse_directory(self):
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a results store; give the path "
                             "of a .sqlite file (or another --results directory)")

    def _open_writable(self, spec, lock, wait, on_wait):
        self._refuse_directory()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, self.path.parent, "creating the results directory") from None
        if lock:
            self.acquire_lock(wait, on_wait)
        if not os.path.lexists(self.path):
            self._create(spec)
        self._refuse_directory()
        self._connect("file:" + quote(str(self.path.resolve()), safe="/") + "?mode=rw")
        self._check()

    def _open_readonly(self):
        if not self.path.exists():
            raise StoreError(f"{self.path} does not exist; run the sweep first (moestats run)")
        self._refuse_directory()
        self._connect(_ro_uri(self.path))
        try:
            self._check()
        except FileSystemError:
            # a WAL store in a directory we cannot write (no -shm can be made): read
            # the file as immutable, which is exact when no write-ahead log is left
            if os.path.exists(str(self.path) + "-wal") or os.access(self.path.parent, os.W_OK):
                raise
            self._con.close()
            self._connect(_ro_uri(self.path, immutable=True))
            self._check()

    def _connect(self, uri):
        try:
            self._con = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path, "opening") from None

    def _create(self, spec):
        """Build a complete new store in a temporary file, then link it into place."""
        remove_stale_temporaries(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        cols = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
        try:
            con = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("BEGIN IMMEDIATE")
                con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                con.execute(f"CREATE TABLE results ({cols}, PRIMARY KEY (fitted, n, replication))")
                con.execute("INSERT INTO meta VALUES ('format', ?)", (STORE_FORMAT,))
                if spec is not None:
                    con.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (spec.fingerprint(),))
                    con.execute("INSERT INTO meta VALUES ('spec', ?)",
                                (json.dumps(spec.as_dict(), sort_keys=True),))
                con.execute("COMMIT")
            finally:
                con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it meanwhile: open theirs
            except OSError:  # a file system without hard links
                if not os.path.lexists(self.path):
                    os.replace(tmp, self.path)
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path, "creating the store") from None
        except OSError as exc:
            raise os_error(exc, self.path, "creating the store") from None
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(f"{tmp}{suffix}")
                except OSError:
                    pass

    def _check(self):
        """Refuse anything that is not a sound moestats store (nothing is written)."""
        path = self.path
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise os_error(exc, path, "opening the store") from None
        if size == 0:
            raise StoreError(
                f"{path} is an empty (0-byte) file, not a moestats results store (moestats "
                "never leaves one: it creates a store complete); delete it to start a new "
                "sweep there, or use another --results directory")
        if head != _SQLITE_MAGIC:
            raise StoreError(
                f"{path} is not a moestats results store (not an SQLite database); move it "
                "away or use another --results directory")
        with self._errors("opening"):
            app_id = self._con.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self._con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if app_id == APPLICATION_ID:
                if not {"meta", "results"} <= tables:
                    raise StoreError(f"{path} is a damaged moestats store (tables missing: "
                                     f"{sorted({'meta', 'results'} - tables)}); move it away "
                                     "and rerun to start a new sweep")
            elif app_id == 0 and {"meta", "results"} <= tables and \
                    {"fitted", "n", "replication"} <= set(self._stored_columns()):
                self._legacy = True  # written by an older moestats: marked at the first write
            else:
                what = (f"application_id {app_id:#x}" if app_id else
                        f"tables {sorted(tables)}" if tables else "no tables")
                raise StoreError(
                    f"{path} is an SQLite database of another application ({what}), not a "
                    "moestats results store; moestats does not write into it: move it away or "
                    "use another --results directory")
            check = [r[0] for r in self._con.execute("PRAGMA quick_check(5)")]
        if check != ["ok"]:
            raise StoreError(
                f"{path} is corrupt (SQLite quick_check: {'; '.join(check)[:200]}); move it "
                "away and rerun to start a new sweep, or restore it from a backup")

    @contextmanager
    def _errors(self, action):
        """Turn SQLite and OS errors into the one-line faults naming the store."""
        try:
            yield
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path, action) from None
        except OSError as exc:
            raise os_error(exc, self.path, action) from None
        except pd.errors.DatabaseError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.Error):
                raise sqlite_error(cause, self.path, action) from None
            raise StoreError(f"{self.path}: cannot read ({exc}) while {action}") from None

    # ---------------------------------------------------------------- lock
    def acquire_lock(self, wait=0.0, on_wait=None):
        """Take the store's writer lock (see :mod:`~moestats.simulation.locking`)."""
        if self._lock is None:
            raise StoreError(f"{self.path} is open read-only")
        self._lock.acquire(wait, on_wait=on_wait)

    def release_lock(self):
        """Release the writer lock (a later write takes it again)."""
        if self._lock is not None:
            self._lock.release()

    def _prepare_write(self):
        """Before the first write: the lock, WAL, the application id of an older store,
        the columns it lacks."""
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only; it cannot be written")
        if self._lock is not None and not self._lock.held:
            self.acquire_lock()
        if self._prepared:
            return
        with self._errors("preparing the store for writing"):
            if self._con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            with deferred_interrupts():
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    if self._legacy:
                        self._con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                        self._con.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)",
                                          (STORE_FORMAT,))
                    self._migrate()
                    self._con.execute("COMMIT")
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
        self._legacy = False
        self._prepared = True

    @contextmanager
    def _write(self, action):
        """A ``BEGIN IMMEDIATE`` transaction under the writer lock, committed at the end
        (rolled back on any exception); interrupts wait until it is over."""
        self._prepare_write()
        with self._errors(action), deferred_interrupts():
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
            try:
                self._con.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise

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
        not in :data:`COLUMNS` are not stored.
        """
        records = []
        for row in rows:
            extra = {"cells": row.get("cells") or cells_json(row), "loss_gauge": _gauge_of(row)}
            records.append([extra[c] if c in extra else row.get(c) for c in COLUMNS])
        with self._write("storing results") as con:
            con.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})", records)

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
