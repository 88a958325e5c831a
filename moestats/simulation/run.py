"""Run a sweep on local cores (joblib) or on a Dask cluster, writing results as they finish."""

from __future__ import annotations

import os
from contextlib import nullcontext

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .spec import SweepSpec
from .store import ResultStore
from .task import density_sample, run_task

__all__ = ["run_sweep", "execute_task"]


def execute_task(spec: SweepSpec, task, X_density):
    """:func:`run_task` with BLAS pinned to one thread.

    One thread per task makes every floating-point reduction happen in the same
    order whatever the number of workers, so results are bit-identical across
    ``n_jobs``, schedulers and resumes (and processes, not threads, use the cores).
    """
    with threadpool_limits(1):
        return run_task(spec, task, X_density)


def _local_results(spec, tasks, X_density, n_jobs):
    if n_jobs == 1:
        for task in tasks:
            yield execute_task(spec, task, X_density)
        return
    from joblib import Parallel, delayed
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1,
                        pre_dispatch="2*n_jobs")
    yield from parallel(delayed(execute_task)(spec, t, X_density) for t in tasks)


def _dask_results(spec, tasks, X_density, scheduler):
    from distributed import Client, as_completed
    owns = not isinstance(scheduler, Client)
    client = Client(scheduler) if owns else scheduler
    try:
        [spec_f, x_f] = client.scatter([spec, X_density], broadcast=True)
        futures = [client.submit(execute_task, spec_f, t, x_f, pure=False) for t in tasks]
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        if owns:
            client.close()


def run_sweep(spec: SweepSpec, store_path, *, n_jobs=None, scheduler=None, progress=True):
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
        Show a progress bar with an ETA.

    Returns
    -------
    ResultStore
        The (open) store; ``store.to_frame()`` reads it with pandas.

    Notes
    -----
    Each result is committed to the store as soon as it arrives, so an interrupted
    sweep (even by SIGKILL) loses at most the tasks that were running.
    """
    store = ResultStore(store_path, spec)
    pending = store.pending(spec.tasks())
    if not pending:
        return store
    X_density = density_sample(spec) if spec.density_sample > 0 else None
    if scheduler is not None:
        results = _dask_results(spec, pending, X_density, scheduler)
    else:
        n_jobs = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
        results = _local_results(spec, pending, X_density, n_jobs)
    bar = tqdm(total=len(pending), desc=f"{spec.setup} ({spec.form})", unit="fit",
               disable=not progress) if progress else nullcontext()
    with bar:
        for row in results:
            store.add(row)
            if progress:
                bar.update(1)
    return store
