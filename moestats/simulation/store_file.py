"""The file side of a results store: identity checks, creation, read-only and
locked opening, and the one-line errors of storage faults (see
:class:`moestats.simulation.store.ResultStore`).

Examples
--------
>>> from moestats.simulation.store_file import APPLICATION_ID
>>> APPLICATION_ID.to_bytes(4, "big")
b'MoES'
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .atomic import remove_stale_temporaries
from .faults import FileSystemError, StoreError, deferred_interrupts, os_error, sqlite_error
from .store_rows import COLUMNS

#: ``PRAGMA application_id`` of a moestats store: the bytes "MoES"
APPLICATION_ID = 0x4D6F4553
#: the ``format`` meta key of a moestats store
STORE_FORMAT = "moestats-results/1"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _ro_uri(path: Path, immutable=False) -> str:
    uri = "file:" + quote(str(path.resolve()), safe="/") + "?mode=ro"
    return uri + ("&immutable=1" if immutable else "")


class StoreFile:
    """Opening, creating, checking, locking and writing the SQLite file of a store
    (the base of :class:`~moestats.simulation.store.ResultStore`)."""

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
