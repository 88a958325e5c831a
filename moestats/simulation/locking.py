"""One writer per store: an exclusive ``flock`` on ``<store>.lock`` beside the store.

The lock is advisory and held by an open file description: the kernel releases it
when its holder exits, however it exits (SIGKILL included), so a killed run never
leaves a stale lock behind, and the next run takes it at once. The file is opened
close-on-exec, so worker processes never inherit it. It holds one line about its
holder (``pid host start-time``), read back to name the holder in an error; the
file itself is left in place (removing a lock file is racy), 0 or a few bytes, next
to the store (``moestats report`` only reads ``*.sqlite`` files).

Policy of ``moestats run``: a second run on a store in use refuses at once (exit
code 4) and names the holder's pid; with ``--wait`` it waits until the holder is
done and then resumes (usually finding nothing left to do).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from .faults import StoreLockedError, os_error

__all__ = ["StoreLock", "lock_path"]


def lock_path(store_path) -> Path:
    """The lock file of a store: ``<store>.lock`` in the same directory.

    Examples
    --------
    >>> from moestats.simulation.locking import lock_path
    >>> lock_path("results/softmax-exact-quick.sqlite").name
    'softmax-exact-quick.sqlite.lock'
    """
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".lock")


class StoreLock:
    """The exclusive writer lock of the store at ``store_path``.

    Parameters
    ----------
    store_path : str or Path
        The store; the lock file is :func:`lock_path` of it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation.locking import StoreLock
    >>> from moestats.simulation.faults import StoreLockedError
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
    >>> first, second = StoreLock(path), StoreLock(path)
    >>> first.acquire()
    >>> try:
    ...     second.acquire()
    ... except StoreLockedError as exc:
    ...     print("refused:", "in use by another moestats run" in str(exc))
    refused: True
    >>> first.release(); second.acquire(); second.release()
    """

    def __init__(self, store_path):
        self.store_path = Path(store_path)
        self.path = lock_path(store_path)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """The line its current holder wrote (``"pid 123 on host since ..."``), or ``""``."""
        try:
            return self.path.read_text(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            return ""

    def acquire(self, wait: float = 0.0, poll: float = 0.2, on_wait=None):
        """Take the lock; if another process holds it, wait up to ``wait`` seconds
        (``float("inf")``: until it is free), then raise :class:`StoreLockedError`.

        ``on_wait(holder)`` is called once when the wait begins. Taking a lock this
        object already holds does nothing.
        """
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise os_error(exc, self.path, "creating the store's lock file") from None
        deadline = time.monotonic() + max(0.0, float(wait))
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self.holder()
                    if time.monotonic() >= deadline:
                        who = f" ({holder})" if holder else ""
                        raise StoreLockedError(
                            f"{self.store_path} is in use by another moestats run{who}; "
                            "wait for it to finish (or pass --wait to wait for it), or use "
                            "another --results directory") from None
                    if on_wait is not None and not told:
                        on_wait(holder)
                        told = True
                    time.sleep(min(poll, max(0.0, deadline - time.monotonic())) or poll)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            info = (f"pid {os.getpid()} on {socket.gethostname()} since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:
            pass  # the holder line is informative only (e.g. a full disk)

    def release(self):
        """Release the lock (closing the file); does nothing if not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):  # a store dropped without close() must not keep the lock
        try:
            self.release()
        except Exception:
            pass
