"""The top-K boundary search: NumPy candidate evaluation against the compiled kernel.

A certified top-K fit (K >= 2) alternates Newton on the smooth coordinates with exact
line searches of the selection boundaries
(:func:`moestats.solvers.selection_search.selection_line_search`); each line evaluates
the log-likelihood at up to about 50 candidate steps. Stop 10's profile of a
top-2-of-4 fit (n = 1e4, one thread) had 55% of the time in that evaluation in NumPy.
This script measures, on one thread unless ``--threads`` says otherwise:

- the evaluation alone: :func:`moestats.backends.numpy_kernels.topk_line_gains` (the
  NumPy reference) against
  :func:`moestats.backends.numba_selection.topk_line_gains` on random inputs of n
  samples and 48 candidates, with the largest difference of the gains;
- whole certified fits: sweep tasks of the ``topk-over-k4`` setup (top-1 truth, k = 4,
  top-2, near-truth start) run with each kernel, their wall times, and whether the two
  reach the same certified maximum (log-likelihood difference, certificate, loss);
- a sweep batch: ``--batch`` tasks at ``--batch-n`` fitted together (as ``moestats run``
  does) against each alone, wall times and whether every result is bit-identical.
  Before 0.8.0 every fit of a batch ran as many boundary rounds as its hardest member
  (one batch of 8 tasks at n = 3e4 by `moestats run`: 115 s at commit df68a94, 45 s
  after the fix).

Usage::

    python benchmarks/bench_topk_selection.py [--sizes 10000 30000] [--replications 4]

Writes ``benchmarks/results/bench_topk_selection.{json,md}``; the machine's load is
recorded (numbers from a busy machine say so).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_topk_selection"


def _inputs(rng, n):
    f, c, m = rng.normal(size=(3, n))
    lower = rng.uniform(size=n) < 0.5
    num_top, den_top, s_ej, s, value_out = rng.normal(size=(5, n)) - 2.0
    return f, c, m, lower, num_top, den_top, s_ej, s, value_out


def _time(func, *args, repeat):
    func(*args)
    t = time.perf_counter()
    for _ in range(repeat):
        out = func(*args)
    return (time.perf_counter() - t) / repeat, out


def kernel_rows(sizes):
    from moestats.backends.numba_selection import topk_line_gains
    from moestats.backends.numpy_kernels import topk_line_gains as _numpy_line_gains
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        args = _inputs(rng, n)
        ts = np.sort(rng.normal(scale=2.0, size=48))
        repeat = max(3, int(2e6 // n))
        t_ref, ref = _time(_numpy_line_gains, ts, *args, repeat=repeat)
        t_new, new = _time(topk_line_gains, ts, *args, repeat=repeat)
        rows.append(dict(n=n, numpy_ms=t_ref * 1e3, numba_ms=t_new * 1e3,
                         speedup=t_ref / t_new,
                         max_abs_diff=float(np.max(np.abs(new - ref))),
                         max_abs_gain=float(np.max(np.abs(ref)))))
        print(rows[-1], flush=True)
    return rows


def fit_rows(sizes, replications):
    from moestats.simulation.config_file import spec_from_setup
    from moestats.simulation.spec import Task
    from moestats.simulation.task import density_sample, run_task
    from moestats.solvers import batched_em

    spec = spec_from_setup("topk-over-k4", "quick")
    X_density = density_sample(spec)
    chosen = batched_em.kernel_for_backend
    rows = []
    try:
        for kernel in ("numpy", "numba"):  # warm-up: load the compiled kernels
            batched_em.kernel_for_backend = lambda name, kernel=kernel: kernel
            run_task(spec, Task("k4-top2", 500, 0), X_density)
        for n in sizes:
            for r in range(replications):
                out = {}
                for kernel in ("numpy", "numba"):
                    batched_em.kernel_for_backend = lambda name, kernel=kernel: kernel
                    t = time.perf_counter()
                    row = run_task(spec, Task("k4-top2", n, r), X_density)
                    out[kernel] = (time.perf_counter() - t, row)
                (t0, a), (t1, b) = out["numpy"], out["numba"]
                rows.append(dict(n=n, replication=r, numpy_s=t0, numba_s=t1,
                                 status=(a["status"], b["status"]),
                                 certified=(bool(a["converged"]), bool(b["converged"])),
                                 loglik_diff=float(b["log_likelihood"] - a["log_likelihood"]),
                                 loss=(a["loss"], b["loss"])))
                print(rows[-1], flush=True)
    finally:
        batched_em.kernel_for_backend = chosen
    return rows


def batch_row(n, size):
    from moestats.simulation.config_file import spec_from_setup
    from moestats.simulation.spec import Task
    from moestats.simulation.task import density_sample, run_batch, run_task

    spec = spec_from_setup("topk-over-k4", "quick")
    X_density = density_sample(spec)
    tasks = [Task("k4-top2", n, r) for r in range(size)]
    t = time.perf_counter()
    together = run_batch(spec, tasks, X_density)
    t_batch = time.perf_counter() - t
    t = time.perf_counter()
    alone = [run_task(spec, task, X_density) for task in tasks]
    t_alone = time.perf_counter() - t
    keys = ("params", "log_likelihood", "passes", "converged", "loss")
    same = sum(all(a[k] == b[k] for k in keys) for a, b in zip(together, alone))
    row = dict(n=n, tasks=size, batch_s=t_batch, alone_s=t_alone, identical=same,
               passes=[int(r["passes"]) for r in together])
    print(row, flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel-sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000])
    ap.add_argument("--replications", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="Numba threads")
    ap.add_argument("--batch", type=int, default=8, help="tasks in the sweep batch (0: skip)")
    ap.add_argument("--batch-n", type=int, default=30_000)
    args = ap.parse_args(argv)
    import numba
    numba.set_num_threads(args.threads)
    before = load_average()
    kernels = kernel_rows(args.kernel_sizes)
    fits = fit_rows(args.sizes, args.replications)
    batch = batch_row(args.batch_n, args.batch) if args.batch else None
    payload = dict(command="python benchmarks/bench_topk_selection.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
                   machine=machine_info(), threads=args.threads, load_before=before,
                   load_after=load_average(), kernels=kernels, fits=fits, batch=batch)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    m = payload["machine"]
    same = sum(f["certified"][0] == f["certified"][1] and abs(f["loglik_diff"]) < 1e-6
               for f in fits)
    lines = ["# Top-K boundary search: NumPy against the compiled candidate evaluation", "",
             f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, "
             f"nproc {m.get('nproc')}, moestats {m.get('moestats')}, {args.threads} Numba "
             f"thread(s); load average before {before}, after {payload['load_after']}.", "",
             "## Candidate evaluation (48 candidates)", "",
             "| n | NumPy ms | compiled ms | speed-up | max abs gain difference (of max abs gain) |",
             "| --- | --- | --- | --- | --- |"]
    for r in kernels:
        lines.append(f"| {r['n']} | {r['numpy_ms']:.2f} | {r['numba_ms']:.2f} | "
                     f"{r['speedup']:.1f}x | {r['max_abs_diff']:.1e} ({r['max_abs_gain']:.3g}) |")
    lines += ["", "## Certified top-2-of-4 fits (topk-over-k4 tasks, near-truth start)", "",
              f"Same certified maximum (certificate equal, |Δℓ| < 1e-6) in {same} of "
              f"{len(fits)} fits.", "",
              "| n | replication | NumPy s | compiled s | speed-up | certified (NumPy, compiled) "
              "| Δℓ (compiled − NumPy) | loss (NumPy, compiled) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in fits:
        lines.append(f"| {f['n']} | {f['replication']} | {f['numpy_s']:.2f} | {f['numba_s']:.2f} "
                     f"| {f['numpy_s'] / f['numba_s']:.2f}x | {f['certified']} | "
                     f"{f['loglik_diff']:.2e} | {f['loss'][0]:.4g}, {f['loss'][1]:.4g} |")
    if batch:
        lines += ["", "## A sweep batch (topk-over-k4 tasks fitted together, as `moestats run` does)",
                  "", f"{batch['tasks']} tasks at n = {batch['n']}: {batch['batch_s']:.1f} s "
                  f"together, {batch['alone_s']:.1f} s one by one; {batch['identical']} of "
                  f"{batch['tasks']} results bit-identical (parameters, log-likelihood, passes, "
                  f"certificate, loss); passes per fit {batch['passes']}."]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
