"""Faults of sweeps and of the ``moestats`` command: errors with exit codes, interrupts.

Every storage, network and interrupt fault of ``moestats run`` and ``moestats report``
ends with one line ``moestats: error: ...`` (or ``moestats: interrupted; ...``) that
names the file or address and says what to do, and with one of these exit codes
(:data:`EXIT_CODES`):

====  =========================================================================
code  meaning
====  =========================================================================
0     done
1     ``run``: every fit failed (the fits are stored with their errors; no report)
2     usage or config error: a bad option (``--n-jobs 0``), a missing or invalid
      TOML file, an unknown setup, a store written by another spec
3     store error: the path is not a moestats store (another application's SQLite
      database, a 0-byte or non-database file, a directory), the store is corrupt
      or truncated, missing, or holds no results (``report`` goes on with the
      other stores of a directory and exits with the code of the first failure)
4     store in use: another ``moestats run`` holds the store's lock (``--wait``
      waits for it instead)
5     file system error: disk full, read-only file system, permission denied,
      I/O error (the fits committed so far are kept)
6     Dask: the ``--scheduler`` did not answer within ``--connect-timeout``, the
      connection to it was lost, or it had no worker for too long
7     local worker processes died again and again (out of memory?)
130   interrupted by SIGINT (Ctrl-C); rerun the same command to resume
143   interrupted by SIGTERM; rerun the same command to resume
====  =========================================================================

Interrupts. :func:`interrupts_raise` turns SIGINT and SIGTERM into
:class:`Interrupted` (a :class:`KeyboardInterrupt`) in the main thread; inside
:func:`deferred_interrupts` (a store's commit) the signal waits until the block ends,
so an interrupt never lands between the rows of a transaction. Further signals while
the first one unwinds are ignored (the workers are being stopped).
"""

from __future__ import annotations

import errno
import signal
import sqlite3
import threading
from contextlib import contextmanager

__all__ = ["MoestatsError", "StoreError", "EmptyStoreError", "StoreLockedError",
           "FileSystemError", "SchedulerError", "WorkerLostError", "Interrupted",
           "EXIT_CODES", "exit_code_table", "sqlite_error", "os_error",
           "interrupts_raise", "deferred_interrupts"]

#: exit codes of ``moestats`` and their meaning (see the module docstring)
EXIT_CODES = {
    0: "done",
    1: "run: every fit failed (stored with their errors; no report)",
    2: "usage or config error (bad option such as --n-jobs 0, missing or invalid TOML, "
       "unknown setup, store of another spec)",
    3: "store error (not a moestats store: foreign SQLite database, 0-byte or "
       "non-database file, directory; corrupt, truncated, missing, or no results)",
    4: "store in use by another moestats run (--wait waits for it)",
    5: "file system error (disk full, read-only, permission denied, I/O error)",
    6: "Dask scheduler unreachable within --connect-timeout, lost, or without workers",
    7: "local worker processes died repeatedly (out of memory?)",
    130: "interrupted by SIGINT (Ctrl-C); rerun the same command to resume",
    143: "interrupted by SIGTERM; rerun the same command to resume",
}


def exit_code_table(width=88) -> str:
    """The exit codes as plain text, wrapped at ``width`` (the CLI's ``--help`` epilog).

    Examples
    --------
    >>> from moestats.simulation.faults import exit_code_table
    >>> print(exit_code_table().splitlines()[:2])
    ['exit codes:', '    0  done']
    """
    import textwrap
    lines = ["exit codes:"]
    for code, text in EXIT_CODES.items():
        lines += textwrap.wrap(text, width, initial_indent=f"  {code:>3}  ",
                               subsequent_indent=" " * 7, break_on_hyphens=False)
    return "\n".join(lines)


class MoestatsError(Exception):
    """A fault the CLI reports in one line; ``exit_code`` is its exit code."""

    exit_code = 1


class StoreError(MoestatsError):
    """The path is not a usable moestats results store (the message names it)."""

    exit_code = 3


class EmptyStoreError(StoreError, ValueError):
    """The store holds no results yet."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""

    exit_code = 4


class FileSystemError(MoestatsError):
    """Disk full, read-only file system, permission denied, I/O error."""

    exit_code = 5


class SchedulerError(MoestatsError):
    """The Dask scheduler is unreachable, was lost, or has had no worker for too long."""

    exit_code = 6


class WorkerLostError(MoestatsError):
    """Local worker processes died again and again."""

    exit_code = 7


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received; ``exit_code`` is 128 + the signal number.

    Examples
    --------
    >>> import signal
    >>> from moestats.simulation.faults import Interrupted
    >>> Interrupted(signal.SIGTERM).exit_code
    143
    """

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self):
        return 128 + self.signum

    @property
    def signal_name(self):
        return signal.Signals(self.signum).name


# --------------------------------------------------------------------------- translation
def _first_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def sqlite_error(exc: sqlite3.Error, path, action: str) -> MoestatsError:
    """The :class:`MoestatsError` of an SQLite error on the store ``path``.

    Examples
    --------
    >>> import sqlite3
    >>> from moestats.simulation.faults import sqlite_error
    >>> err = sqlite_error(sqlite3.OperationalError("database or disk is full"), "s.sqlite",
    ...                    "storing results")
    >>> type(err).__name__, err.exit_code
    ('FileSystemError', 5)
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    msg = _first_line(exc)
    low = msg.lower()
    if primary == 13 or "disk is full" in low:
        return FileSystemError(
            f"{path}: no space left on the device while {action}; free some space, then "
            "rerun the same command to resume (the fits stored so far are kept)")
    if primary == 8 or "readonly" in low or "read-only" in low:
        return FileSystemError(
            f"{path}: cannot write while {action} (read-only file or file system: {msg}); "
            "use a writable results directory")
    if primary in (5, 6) or "database is locked" in low:
        return StoreLockedError(
            f"{path}: locked by another process while {action} ({msg}); wait for the other "
            "process to finish, then rerun the same command")
    if primary in (11, 26) or "malformed" in low or "not a database" in low:
        return StoreError(
            f"{path} is corrupt or not a moestats results store ({msg}, while {action}); "
            "move it away and rerun to start a new sweep, or restore it from a backup")
    if primary == 14 or "unable to open" in low:
        return FileSystemError(
            f"{path}: cannot open while {action} ({msg}); check that its directory exists "
            "and is writable (or readable, for a report)")
    if primary == 10 or "i/o error" in low:
        return FileSystemError(f"{path}: I/O error while {action} ({msg}); check the device")
    return StoreError(f"{path}: SQLite error while {action}: {msg}")


def os_error(exc: OSError, path=None, action: str = "writing") -> FileSystemError:
    """The :class:`FileSystemError` of an OS error, naming the file and what to do.

    Examples
    --------
    >>> import errno, os
    >>> from moestats.simulation.faults import os_error
    >>> err = os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/a.svg"))
    >>> print(str(err).replace("; ", ";\\n"))
    out/a.svg: no space left on the device while writing;
    free some space and rerun the same command
    >>> err.exit_code
    5
    """
    name = exc.filename if exc.filename is not None else path
    name = "?" if name is None else name
    no = exc.errno
    if no in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        text = (f"{name}: no space left on the device while {action}; free some space and "
                "rerun the same command")
    elif no == errno.EROFS:
        text = (f"{name}: read-only file system while {action}; use a writable directory "
                "(--results for run, --out for report)")
    elif no in (errno.EACCES, errno.EPERM):
        text = (f"{name}: permission denied while {action}; use a writable directory "
                "(--results for run, --out for report)")
    elif no == errno.EISDIR:
        text = f"{name}: is a directory, expected a file ({action})"
    elif no == errno.ENOENT:
        text = f"{name}: no such file or directory ({action})"
    else:
        text = f"{name}: {exc.strerror or _first_line(exc)} while {action}"
    err = FileSystemError(text)
    err.errno = no
    return err


# --------------------------------------------------------------------------- interrupts
_main = {"installed": False, "pending": None, "raised": False, "depth": 0}


def _handler(signum, frame):
    if _main["raised"]:
        return  # already unwinding: stopping the workers, closing the store
    if _main["depth"] > 0:
        _main["pending"] = signum
        return
    _main["raised"] = True
    raise Interrupted(signum)


@contextmanager
def deferred_interrupts():
    """A block that an interrupt of :func:`interrupts_raise` does not cut short: the
    signal is raised as :class:`Interrupted` when the (outermost) block ends.

    Examples
    --------
    >>> from moestats.simulation.faults import deferred_interrupts
    >>> with deferred_interrupts():
    ...     pass
    """
    main = threading.current_thread() is threading.main_thread()
    if main:
        _main["depth"] += 1
    try:
        yield
    finally:
        if main:
            _main["depth"] -= 1
            if _main["depth"] == 0 and _main["pending"] is not None and _main["installed"] \
                    and not _main["raised"]:
                signum, _main["pending"] = _main["pending"], None
                _main["raised"] = True
                raise Interrupted(signum)


@contextmanager
def interrupts_raise(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only;
    elsewhere the block does nothing). The previous handlers come back at the end.

    Examples
    --------
    >>> import os, signal
    >>> from moestats.simulation.faults import Interrupted, interrupts_raise
    >>> try:
    ...     with interrupts_raise():
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ...         for _ in range(10 ** 6):
    ...             pass
    ... except Interrupted as exc:
    ...     print(exc.signal_name, exc.exit_code)
    SIGTERM 143
    """
    if threading.current_thread() is not threading.main_thread() or _main["installed"]:
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    _main.update(installed=True, pending=None, raised=False, depth=0)
    try:
        for s in signals:
            signal.signal(s, _handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _main.update(installed=False, pending=None, raised=False, depth=0)
