"""Run a sweep on local cores (joblib) or on a Dask cluster, writing results as they finish.

The pending tasks are grouped into batches, each holding replications of one
(fitted configuration, n), which :func:`~moestats.simulation.task.run_batch` fits
together by batched EM. A batch is the unit of work sent to a worker and of
writing: its rows are committed as soon as it returns. Batches run largest ``n``
first, so the long ones do not trail at the end of the sweep.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from itertools import groupby

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .spec import SweepSpec
from .store import ResultStore
from .task import density_sample, run_batch

__all__ = ["run_sweep", "execute_batch", "make_batches", "DEFAULT_BATCH_SIZE"]

#: replications per batch by default (the papers' 40 replications of one n in one batch)
DEFAULT_BATCH_SIZE = 40


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
    from joblib import Parallel, delayed
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1,
                        pre_dispatch="n_jobs")
    yield from parallel(delayed(execute_batch)(spec, b, X_density, threads) for b in batches)


def _dask_results(spec, batches, X_density, scheduler):
    from distributed import Client, as_completed
    owns = not isinstance(scheduler, Client)
    client = Client(scheduler) if owns else scheduler
    try:
        [spec_f, x_f] = client.scatter([spec, X_density], broadcast=True)
        futures = [client.submit(execute_batch, spec_f, b, x_f, pure=False) for b in batches]
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        if owns:
            client.close()


def run_sweep(spec: SweepSpec, store_path, *, n_jobs=None, scheduler=None, progress=True,
              batch_size=DEFAULT_BATCH_SIZE):
    """Run every task of ``spec`` not yet in the store at ``store_path``.

    Parameters
    ----------
    spec : SweepSpec
    store_path : str or Path
        SQLite file; created, or resumed (refused if written by another spec).
    n_jobs : int, optional
        Local worker processes; default all cores (``os.cpu_count()``). Ignored with
        a scheduler.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``"tcp://host:8786"``) or a client: run there.
    progress : bool
        Show a progress bar (in fits) with an ETA.
    batch_size : int
        Replications of one (configuration, n) fitted together by batched EM. It
        changes no result (it is not part of the spec); smaller batches write more
        often and balance the load better, larger ones use the batched kernels better.

    Returns
    -------
    ResultStore
        The (open) store; ``store.to_frame()`` reads it with pandas.

    Notes
    -----
    Each batch's rows are committed to the store as soon as it returns, so an
    interrupted sweep (even by SIGKILL) loses at most the batches that were running.
    """
    store = ResultStore(store_path, spec)
    pending = store.pending(spec.tasks())
    if not pending:
        return store
    batches = make_batches(pending, batch_size)
    X_density = density_sample(spec) if spec.density_sample > 0 else None
    if scheduler is not None:
        results = _dask_results(spec, batches, X_density, scheduler)
    else:
        n_jobs = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
        if n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
        results = _local_results(spec, batches, X_density, n_jobs)
    bar = tqdm(total=len(pending), desc=f"{spec.setup} ({spec.form})", unit="fit",
               disable=not progress, smoothing=0.05) if progress else nullcontext()
    with bar:
        for rows in results:
            store.add_many(rows)
            if progress:
                bar.update(len(rows))
    return store
