"""Run a sweep on local cores (worker processes) or on a Dask cluster, writing results as
they finish.

The pending tasks are grouped into batches, each holding replications of one
(fitted configuration, n), which :func:`~moestats.simulation.task.run_batch` fits
together by batched EM. A batch is the unit of work sent to a worker and of
writing: its rows are committed as soon as it returns. Batches run largest ``n``
first, so the long ones do not trail at the end of the sweep.

Faults (see :mod:`moestats.simulation.faults` for the exit codes of the CLI):

- *one writer per store*: a sweep takes the store's lock
  (:mod:`~moestats.simulation.locking`) before it opens or creates the store; a second
  sweep on the same store is refused with :class:`StoreLockedError` (``wait`` > 0:
  waits for it that long);
- *interrupts*: SIGINT, SIGTERM (in the CLI) or any error stop the workers before
  :func:`run_sweep` returns or raises; a :class:`KeyboardInterrupt` carries
  ``n_stored``, the fits in the store. Every committed row stays; rerunning resumes;
- *local workers* (:mod:`~moestats.simulation.workers`) end when the driver ends, even
  by SIGKILL; a worker that dies (e.g. killed by the OOM killer) is replaced and its
  batch rerun, up to :data:`MAX_POOL_RESTARTS` times in a row without progress;
- *Dask*: the spec and the density sample travel by value inside each task (nothing
  is scattered, so a lost worker takes nothing with it and the scheduler reruns its
  tasks elsewhere); connecting to a scheduler address times out after
  ``connect_timeout`` seconds with :class:`SchedulerError`, before any store is
  created or locked; a scheduler without any worker for ``no_worker_timeout``
  seconds, or a lost connection, ends the sweep with :class:`SchedulerError`.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from itertools import groupby
from pathlib import Path

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .faults import SchedulerError
from .spec import SweepSpec
from .store import ResultStore
from .task import density_sample, run_batch

__all__ = ["run_sweep", "execute_batch", "make_batches", "default_batch_size", "DEFAULT_BATCH_SIZE",
           "connect_scheduler", "kernel_cache_is_cold"]

#: replications per batch by default (the papers' 40 replications of one n in one batch)
DEFAULT_BATCH_SIZE = 40
#: local worker deaths tolerated in a row without a finished batch
MAX_POOL_RESTARTS = 3
#: seconds to wait for a Dask scheduler to answer, by default
DEFAULT_CONNECT_TIMEOUT = 10.0
#: seconds a Dask scheduler may go without any worker before the sweep gives up
DEFAULT_NO_WORKER_TIMEOUT = 300.0


def default_batch_size(spec: SweepSpec) -> int:
    """Tasks per batch when none is given: :data:`DEFAULT_BATCH_SIZE` replications of one
    n fitted together by batched EM, or 1 where the tasks are fitted one by one anyway
    (the agnostic protocol's multi-start fits, ``solver = "mle"``): each fit is then
    stored as soon as it finishes and the workers share the sizes evenly.

    Examples
    --------
    >>> from moestats.simulation import spec_from_setup
    >>> default_batch_size(spec_from_setup("softmax-exact"))
    40
    """
    one_by_one = spec.start == "agnostic" or spec.solver == "mle"
    return 1 if one_by_one else DEFAULT_BATCH_SIZE


def make_batches(tasks, batch_size=DEFAULT_BATCH_SIZE):
    """Group tasks by (fitted configuration, n) into batches of at most ``batch_size``.

    Batches come largest ``n`` first (longest-processing-time-first scheduling);
    within a batch, tasks keep their replication order.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    key = lambda t: (-t.n, t.fitted)  # noqa: E731
    batches = []
    for _, group in groupby(sorted(tasks, key=lambda t: (key(t), t.replication)), key=key):
        group = list(group)
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


def execute_batch(spec: SweepSpec, batch, X_density, threads=1):
    """:func:`run_batch` with BLAS pinned to one thread and ``threads`` Numba threads.

    One BLAS thread per worker makes every floating-point reduction happen in the
    same order whatever the number of workers; the Numba kernels reduce over fixed
    chunks of the samples, so their results do not depend on ``threads`` either.
    Results are therefore bit-identical across ``n_jobs``, schedulers, batch sizes
    and resumes.
    """
    if spec.backend == "numba" and spec.solver == "em":
        import numba
        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    with threadpool_limits(1):
        return run_batch(spec, batch, X_density)


def _local_results(spec, batches, X_density, n_jobs):
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    if n_jobs == 1:
        for batch in batches:
            yield execute_batch(spec, batch, X_density, threads)
        return
    from .workers import remove_dead_shm, worker_pool
    remove_dead_shm()
    with worker_pool(min(n_jobs, len(batches)), MAX_POOL_RESTARTS) as pool:
        for _, rows in pool.imap_unordered(
                execute_batch, [(spec, b, X_density, threads) for b in batches]):
            yield rows


def kernel_cache_is_cold():
    """Whether Numba's on-disk cache holds none of the kernels of :mod:`moestats.backends`.

    The kernels are compiled with ``cache=True``, on first use: a sweep after installing
    moestats (or after the kernels' sources change) compiles them, about a minute, and
    later processes load them from the cache (an index file ``<module>.<kernel>-<line>
    .pyXY.nbi`` per kernel, in ``__pycache__`` beside the sources or under
    ``NUMBA_CACHE_DIR``). ``True`` when no kernel has a valid index, looked up as Numba
    does (an index of another source stamp or Numba version does not count); a cache
    that holds some kernels (e.g. only the softmax ones) counts as warm. If Numba's
    internals change, any ``numba_*.nbi`` file counts. ``False`` without Numba.

    Examples
    --------
    >>> from moestats.simulation.run import kernel_cache_is_cold
    >>> isinstance(kernel_cache_is_cold(), bool)
    True
    """
    import importlib
    import pkgutil
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return False
    from .. import backends
    names = sorted(m.name for m in pkgutil.iter_modules(backends.__path__)
                   if m.name.startswith("numba_"))
    try:
        for name in names:
            module = importlib.import_module(f"{backends.__name__}.{name}")
            for obj in vars(module).values():
                if (isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__
                        and obj.targetoptions.get("inline") != "always"
                        and obj._cache._cache_file._load_index()):
                    return False
        return True
    except Exception:  # Numba's internals moved: any index file will do
        dirs = [Path(backends.__file__).parent / "__pycache__"]
        if os.environ.get("NUMBA_CACHE_DIR"):
            dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
        return not any(next(d.rglob("numba_*.nbi"), None) for d in dirs if d.is_dir())


def connect_scheduler(scheduler, timeout=DEFAULT_CONNECT_TIMEOUT):
    """``(client, owned)``: a Dask client of ``scheduler`` (an address, or a client as
    is); :class:`SchedulerError` naming the address if it does not answer within
    ``timeout`` seconds.

    Examples
    --------
    >>> import socket
    >>> from moestats.simulation.run import connect_scheduler
    >>> with socket.socket() as s:  # a port nobody listens on
    ...     s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    >>> try:
    ...     connect_scheduler(f"tcp://127.0.0.1:{port}", timeout=1)
    ... except Exception as exc:
    ...     print(type(exc).__name__, "tcp://127.0.0.1" in str(exc))
    SchedulerError True
    """
    if not isinstance(scheduler, str):
        return scheduler, False
    from distributed import Client
    try:
        with _quiet_dask():
            return Client(scheduler, timeout=timeout, set_as_default=False), True
    except Exception as exc:  # OSError/TimeoutError, or a malformed address
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
            f"({_one_line(exc)}); check the address and that the scheduler runs (dask "
            "scheduler), raise --connect-timeout, or run locally without --scheduler") from None


def _one_line(exc, limit=200):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _scheduler_lost(address, exc):
    return SchedulerError(f"lost the connection to the Dask scheduler at {address} "
                          f"({type(exc).__name__}: {_one_line(exc)}); check that it runs, "
                          "then rerun the same command to resume")


@contextmanager
def _quiet_dask():
    """The client's own logging of connection failures (tracebacks) off: a fault is
    reported once, by :class:`SchedulerError`."""
    import logging
    loggers = [logging.getLogger(n) for n in ("distributed", "distributed.client",
                                              "distributed.core", "distributed.comm",
                                              "distributed.utils")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dask_results(spec, batches, X_density, client, address, no_worker_timeout):
    from concurrent.futures import CancelledError

    from distributed import KilledWorker, as_completed
    futures = [client.submit(execute_batch, spec, b, X_density, pure=False) for b in batches]
    ready = as_completed(futures, loop=client.loop)  # our client, default or not
    idle_since = None
    last_check = time.monotonic()
    try:
        while not ready.is_empty():
            if not ready.has_ready():
                time.sleep(0.1)
                if time.monotonic() - last_check < 5:
                    continue
                last_check = time.monotonic()
                if client.status in ("closed", "closing"):
                    raise _scheduler_lost(address, RuntimeError(f"client {client.status}"))
                try:
                    n_workers = len(client.scheduler_info().get("workers", {}))
                except Exception as exc:
                    raise _scheduler_lost(address, exc) from None
                if n_workers:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > no_worker_timeout:
                    raise SchedulerError(
                        f"the Dask scheduler at {address} has had no worker for "
                        f"{no_worker_timeout:g} s; start workers (dask worker {address}), "
                        "then rerun the same command to resume")
                continue
            for future in ready.next_batch(block=False):
                try:
                    rows = future.result()
                except KilledWorker as exc:
                    raise SchedulerError(
                        f"a batch killed the Dask workers that ran it ({_one_line(exc)}); "
                        "out of memory? Use a smaller --batch-size, then rerun the same command "
                        "to resume") from None
                except (CancelledError, OSError) as exc:
                    raise _scheduler_lost(address, exc) from None
                yield rows
                future.release()
    finally:
        left = [f for f in futures if not f.done()]
        if left and client.status == "running":
            try:
                client.cancel(left)
            except Exception:
                pass


def run_sweep(spec: SweepSpec, store_path, *, n_jobs=None, scheduler=None, progress=True,
              batch_size=None, wait=0.0, on_wait=None,
              connect_timeout=DEFAULT_CONNECT_TIMEOUT,
              no_worker_timeout=DEFAULT_NO_WORKER_TIMEOUT, on_resume=None):
    """Run every task of ``spec`` not yet in the store at ``store_path``.

    Parameters
    ----------
    spec : SweepSpec
    store_path : str or Path
        SQLite file; created, or resumed (refused if written by another spec, or if
        it is not a moestats store).
    n_jobs : int, optional
        Local worker processes; default all cores (``os.cpu_count()``). Ignored with
        a scheduler. Checked (>= 1) before anything is created.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``"tcp://host:8786"``) or a client: run there.
    progress : bool
        Show a progress bar (in fits) with an ETA.
    batch_size : int, optional
        Replications of one (configuration, n) fitted together by batched EM. It
        changes no result (it is not part of the spec); smaller batches write more
        often and balance the load better, larger ones use the batched kernels better.
        Default :func:`default_batch_size` (40; 1 for the agnostic protocol and
        ``solver = "mle"``, whose tasks are fitted one by one).
    wait : float
        Seconds to wait for another process holding the store's lock (``inf``: as
        long as it takes); 0 (default): refuse at once with
        :class:`~moestats.simulation.faults.StoreLockedError`.
    on_wait : callable, optional
        ``on_wait(holder)`` is called once if the sweep has to wait for the lock.
    on_resume : callable, optional
        ``on_resume(n_done, n_total)`` is called once, before any fit, when the store
        already holds ``n_done`` of the sweep's ``n_total`` fits (they are reused, not
        rerun); the CLI prints ``moestats: resumed N of M fits from the store``.
    connect_timeout : float
        Seconds to wait for the Dask scheduler at a ``scheduler`` address.
    no_worker_timeout : float
        Seconds a Dask scheduler may have no worker before the sweep gives up.

    Returns
    -------
    ResultStore
        The (open) store, its lock released; ``store.to_frame()`` reads it with pandas.

    Raises
    ------
    StoreLockedError, StoreError, FileSystemError, SchedulerError, WorkerLostError
        The faults of :mod:`moestats.simulation.faults`; the committed rows stay.
    KeyboardInterrupt
        With ``n_stored`` (the fits in the store), after the workers were stopped.

    Notes
    -----
    Each batch's rows are committed to the store as soon as it returns, so an
    interrupted sweep (even by SIGKILL) loses at most the batches that were running.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation import SweepSpec, run_sweep
    >>> spec = SweepSpec(setup="softmax-exact", fitted=("k2",), sample_sizes=(100,),
    ...                  replications=2, density_sample=0, max_iter=50)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
    >>> store = run_sweep(spec, path, n_jobs=1, progress=False)
    >>> again = run_sweep(spec, path, n_jobs=1, progress=False,  # resumed: nothing left
    ...                   on_resume=lambda done, total: print(f"resumed {done} of {total}"))
    resumed 2 of 2
    >>> len(store), len(again)
    (2, 2)
    """
    if scheduler is None:
        n_jobs = (os.cpu_count() or 1) if n_jobs is None else n_jobs
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"n_jobs must be an integer >= 1, got {n_jobs!r}")
    batch_size = default_batch_size(spec) if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    client, owns = (None, False) if scheduler is None else \
        connect_scheduler(scheduler, connect_timeout)
    try:
        store = ResultStore(store_path, spec, lock=True, wait=wait, on_wait=on_wait)
        try:
            _run(store, spec, n_jobs, client, scheduler, progress, batch_size,
                 no_worker_timeout, on_resume)
        except KeyboardInterrupt as exc:
            exc.n_stored = store.count_safely()
            store.close()
            raise
        except BaseException:
            store.close()
            raise
        store.release_lock()
        return store
    finally:
        if owns:
            with _quiet_dask():
                try:
                    client.close(timeout=connect_timeout)
                except Exception:
                    pass  # a scheduler already gone


def _run(store, spec, n_jobs, client, scheduler, progress, batch_size, no_worker_timeout,
         on_resume=None):
    tasks = spec.tasks()
    pending = store.pending(tasks)
    if on_resume is not None and len(pending) < len(tasks):
        on_resume(len(tasks) - len(pending), len(tasks))
    if not pending:
        return
    store.begin_session(f"{n_jobs} local processes" if client is None else "Dask scheduler "
                        + str(scheduler if isinstance(scheduler, str) else "client"),
                        len(pending))
    batches = make_batches(pending, batch_size)
    X_density = density_sample(spec) if spec.density_sample > 0 else None
    quiet = nullcontext()
    if client is not None:
        address = scheduler if isinstance(scheduler, str) else getattr(
            client, "scheduler", None) and client.scheduler.address
        results = _dask_results(spec, batches, X_density, client, address, no_worker_timeout)
        quiet = _quiet_dask() if isinstance(scheduler, str) else nullcontext()
    else:
        results = _local_results(spec, batches, X_density, n_jobs)
    bar = tqdm(total=len(pending), desc=f"{spec.setup} ({spec.form})", unit="fit",
               disable=not progress, smoothing=0.05) if progress else nullcontext()
    try:
        with bar, quiet:
            for rows in results:
                store.add_many(rows)
                if progress:
                    bar.update(len(rows))
    finally:
        store.end_session()
        results.close()  # stops the workers now, whatever ended the loop
