"""Local worker processes that end when the driver ends, and nothing left in /dev/shm.

:class:`WorkerPool` runs tasks on ``n`` worker processes, one task at a time each,
over one private socket pair per worker (no shared queue, no semaphore, no
memory-mapped folder, hence no resource tracker and nothing in ``/dev/shm``):

- a worker is a fresh interpreter (``python -c ...``, the driver's ``sys.path``) that
  runs :func:`worker_init` first: a daemon *parent watchdog* thread polls
  ``os.getppid()`` every 0.25 s and ends the worker (``os._exit``) as soon as its
  parent is no longer the driver, i.e. when the driver died, however (SIGKILL
  included). An idle worker also ends at once: its socket reaches end-of-file;
- SIGINT is ignored in the workers: Ctrl-C reaches the whole foreground process
  group, and the driver, not each worker, stops the sweep (one message, no
  traceback per worker). Workers start with SIGINT blocked (:func:`sigint_blocked`),
  so a Ctrl-C during their start-up stays pending until it is ignored;
- a worker that dies (killed, out of memory) is replaced and its task sent again, up
  to ``max_restarts`` deaths in a row without a finished task
  (:class:`~moestats.simulation.faults.WorkerLostError`);
- leaving :func:`worker_pool` (normal end, error, SIGINT/SIGTERM in the driver) kills
  and reaps the workers.

:func:`remove_dead_shm` removes the ``sem.loky-<pid>-*`` and
``joblib_memmapping_folder_<pid>_*`` entries of ``/dev/shm`` that belong to this user
and to processes that no longer exist (left by joblib/loky pools of killed processes,
e.g. by older versions of this runner), unless ``MOESTATS_KEEP_SHM=1``.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path

from .atomic import pid_alive
from .faults import WorkerLostError

__all__ = ["WorkerPool", "worker_pool", "worker_init", "sigint_blocked", "remove_dead_shm",
           "SHM_DIR", "WORKER_MARK"]

#: where POSIX semaphores and joblib's memmapping folders live on Linux
SHM_DIR = Path("/dev/shm")
_SHM_ENTRY = re.compile(r"^(?:sem\.loky-(?P<sem>\d+)-|joblib_memmapping_folder_(?P<mm>\d+)_)")
#: seconds between two checks of the parent watchdog
WATCHDOG_INTERVAL = 0.25
#: on the command line of every worker process (to find them)
WORKER_MARK = "moestats.simulation.workers"
_WORKER_CODE = f"import {WORKER_MARK} as w; w._worker_main(int(__import__('sys').argv[1]), " \
               "int(__import__('sys').argv[2]))"


def _watch_parent(parent_pid, interval):
    while True:
        if os.getppid() != parent_pid:
            os._exit(75)  # the driver is gone: nobody will read our result
        time.sleep(interval)


def worker_init(parent_pid, interval=WATCHDOG_INTERVAL):
    """Start-up of a worker process: ignore SIGINT, and start the parent watchdog that
    ends this process as soon as ``parent_pid`` is no longer its parent.

    Parameters
    ----------
    parent_pid : int
        The driver's pid (``os.getpid()`` in the driver).
    interval : float
        Seconds between two checks of ``os.getppid()``.

    Examples
    --------
    The watchdog of a process whose parent is alive does nothing:

    >>> import os, subprocess, sys
    >>> code = ("import os, time; from moestats.simulation.workers import worker_init; "
    ...         "worker_init(os.getppid()); time.sleep(0.6); print('alive')")
    >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    'alive\\n'
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending one is dropped
    if os.getppid() != parent_pid:
        os._exit(75)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), daemon=True,
                     name="moestats-parent-watchdog").start()


def _worker_main(fd, parent_pid):
    """The loop of a worker process: receive ``(fn, args)``, send ``("ok", fn(*args))``
    or ``("error", exception or its text)``; end at end-of-file or ``None``."""
    worker_init(parent_pid)
    conn = Connection(fd)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args = task
        try:
            reply = ("ok", fn(*args))
        except BaseException as exc:  # sent to the driver, which raises it
            text = "".join(traceback.format_exception(exc)).strip()
            try:
                pickle.dumps(exc)
                reply = ("error", (exc, text))
            except Exception:
                reply = ("error", (None, text))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


@contextmanager
def sigint_blocked():
    """SIGINT blocked in this thread within the block (processes started meanwhile
    inherit the mask); a SIGINT received meanwhile is delivered when it ends.

    Examples
    --------
    >>> from moestats.simulation.workers import sigint_blocked
    >>> with sigint_blocked():
    ...     pass
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _child_env():
    import moestats
    root = os.path.dirname(os.path.dirname(os.path.abspath(moestats.__file__)))
    paths = [root] + [p for p in sys.path if p and p != root]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


class _Worker:
    def __init__(self, env):
        ours, theirs = Pipe(duplex=True)
        try:
            with sigint_blocked():  # it starts with SIGINT blocked, then ignores it
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _WORKER_CODE, str(theirs.fileno()), str(os.getpid())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = ours

    def status(self):
        code = self.proc.poll()
        if code is None:
            return "still running"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def stop(self, grace=0.0):
        """End the process (politely within ``grace`` seconds, else SIGKILL) and reap it."""
        if self.proc.poll() is None and grace > 0:
            try:
                self.conn.send(None)
                self.proc.wait(grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            pass
        self.conn.close()


class WorkerPool:
    """``n_workers`` worker processes tied to this process (see the module docstring).

    Parameters
    ----------
    n_workers : int
        Processes, started on demand (at most one per task).
    max_restarts : int
        Worker deaths tolerated in a row without a finished task.

    Examples
    --------
    >>> import os
    >>> from moestats.simulation.workers import WorkerPool
    >>> with WorkerPool(2) as pool:
    ...     sorted(pool.imap_unordered(pow, [(2, 3), (3, 2), (10, 0)]))
    ...     sorted(pool.imap_unordered(os.getppid, [(), ()])) == [(0, os.getpid()),
    ...                                                           (1, os.getpid())]
    [(0, 8), (1, 9), (2, 1)]
    True
    """

    def __init__(self, n_workers: int, max_restarts: int = 3):
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = int(n_workers)
        self.max_restarts = int(max_restarts)
        self._workers = []
        self._idle = []
        self._env = _child_env()

    def imap_unordered(self, fn, args_list):
        """Yield ``(i, fn(*args_list[i]))`` as they finish. An exception in a task is
        raised here; a worker that dies is replaced and its task sent again. Workers
        still busy when the iteration is abandoned are stopped."""
        pending = deque(enumerate(args_list))
        busy = {}
        deaths = 0
        try:
            while pending or busy:
                while pending and (self._idle or len(self._workers) < self.n_workers):
                    worker = self._idle.pop() if self._idle else self._start()
                    i, args = pending.popleft()
                    try:
                        worker.conn.send((fn, args))
                    except (OSError, EOFError):  # died while idle
                        pending.appendleft((i, args))
                        deaths = self._replace(worker, deaths, i)
                        continue
                    busy[worker.conn] = (worker, i, args)
                for conn in wait(list(busy)):
                    worker, i, args = busy.pop(conn)
                    try:
                        status, payload = conn.recv()
                    except (EOFError, OSError):  # died with the task
                        pending.appendleft((i, args))
                        deaths = self._replace(worker, deaths, i)
                        continue
                    deaths = 0
                    self._idle.append(worker)
                    if status == "error":
                        exc, text = payload
                        if exc is None:
                            raise RuntimeError(f"a worker process failed:\n{text}")
                        raise exc
                    yield i, payload
        finally:
            for worker, _, _ in busy.values():  # their results would never be read
                self._forget(worker)

    def _start(self):
        worker = _Worker(self._env)
        self._workers.append(worker)
        return worker

    def _forget(self, worker):
        worker.stop()
        if worker in self._workers:
            self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)

    def _replace(self, worker, deaths, i):
        try:
            worker.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        status = worker.status()
        self._forget(worker)
        deaths += 1
        if deaths > self.max_restarts:
            raise WorkerLostError(
                f"local worker processes died {deaths} times in a row without finishing a "
                f"task (the last {status}; task #{i}); out of memory? Rerun the same command "
                "with fewer --n-jobs or a smaller --batch-size to resume")
        return deaths

    def close(self, grace=0.0):
        """Stop every worker (SIGKILL after ``grace`` seconds) and reap it."""
        workers, self._workers, self._idle = self._workers, [], []
        for worker in workers:
            if worker.proc.poll() is None and grace > 0:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.stop(max(0.0, deadline - time.monotonic()) if grace > 0 else 0.0)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        self.close(grace=1.0 if exc_type is None else 0.0)


@contextmanager
def worker_pool(n_jobs: int, max_restarts: int = 3):
    """A :class:`WorkerPool` whose workers are stopped when the block ends (killed at
    once if it ends by an exception or an interrupt)."""
    pool = WorkerPool(n_jobs, max_restarts)
    try:
        yield pool
    except BaseException:
        pool.close(grace=0.0)
        raise
    else:
        pool.close(grace=1.0)


def remove_dead_shm(directory=SHM_DIR) -> list:
    """Remove ``sem.loky-<pid>-*`` and ``joblib_memmapping_folder_<pid>_*`` entries of
    ``directory`` owned by this user whose ``<pid>`` no longer exists; return them.

    Nothing is removed when ``MOESTATS_KEEP_SHM=1`` (e.g. where /dev/shm is shared
    with processes of another PID namespace, which this check cannot see).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation.workers import remove_dead_shm
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "sem.loky-999999999-abc").write_bytes(b"")   # of a dead process
    >>> _ = (d / "sem.mp-xyz").write_bytes(b"")               # not ours to judge
    >>> [p.name for p in remove_dead_shm(d)], sorted(p.name for p in d.iterdir())
    (['sem.loky-999999999-abc'], ['sem.mp-xyz'])
    """
    if os.environ.get("MOESTATS_KEEP_SHM") == "1":
        return []
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        m = _SHM_ENTRY.match(entry.name)
        if m is None or pid_alive(int(m.group("sem") or m.group("mm"))):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
