"""Numba's OpenMP threads on a machine with other work: spinning against passive waiting.

Numba's ``omp`` threading layer runs the parallel kernels on GNU libgomp, whose idle
workers spin (about 3e5 iterations) before they sleep. When other processes hold the
cores, a parallel region then waits for descheduled spinners. ``moestats.backends``
therefore sets ``OMP_WAIT_POLICY=PASSIVE`` before the first kernel runs, unless the user
set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. This script measures why, in fresh
processes (the policy is read once, when the OpenMP runtime starts):

- the time per call of the compiled observed-derivatives kernel (value, gradient and
  Hessian; top-2-of-4 gate, d = 1, n = 1e4), and of one ``GaussianMoE`` fit (softmax,
  k = 2, n = 2e4, Numba backend);
- with 1 and with all Numba threads, under ``OMP_WAIT_POLICY`` ACTIVE (libgomp's
  spinning) and PASSIVE;
- on the machine as it is, and with ``--load`` busy processes at nice 10 beside it.

Usage::

    python benchmarks/bench_threads_under_load.py [--load 2] [--calls 200]

Writes ``benchmarks/results/bench_threads_under_load.{json,md}``. The machine's own load
is recorded: numbers from a machine busy with other work say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_threads_under_load"

CHILD = r"""
import json, sys, time
import numpy as np
import numba
from moestats import GaussianMoE, get_setup
from moestats.backends import numba_derivatives as nd
from moestats.simulation.config_file import spec_from_setup
from moestats.simulation.spec import Task
from moestats.simulation.task import prepare_task
from moestats.solvers.batched_params import BatchedParams
threads, calls = int(sys.argv[1]), int(sys.argv[2])
numba.set_num_threads(threads)
spec = spec_from_setup("topk-over-k4", "quick")
_, gate, X, y, start, _, _ = prepare_task(spec, Task("k4-top2", 10_000, 0))
P = BatchedParams.stack([start])
X3, y2, rows = np.ascontiguousarray(X[None]), np.ascontiguousarray(y[None]), np.array([0])
nd.observed_derivatives(gate, X3, y2, rows, P, 2)
t = time.perf_counter()
for _ in range(calls):
    nd.observed_derivatives(gate, X3, y2, rows, P, 2)
kernel_ms = (time.perf_counter() - t) / calls * 1e3
Xs, ys = get_setup("softmax-exact").truth.sample(20_000, np.random.default_rng(1))
GaussianMoE(n_experts=2, backend="numba", random_state=0).fit(Xs[:500], ys[:500])
t = time.perf_counter()
est = GaussianMoE(n_experts=2, backend="numba", random_state=0).fit(Xs, ys)
fit_s = time.perf_counter() - t
print(json.dumps(dict(kernel_ms=kernel_ms, fit_s=fit_s, converged=bool(est.converged_),
                      layer=numba.threading_layer())))
"""


def _child(threads, policy, calls):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(calls)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _busy(n):
    code = "import os\nos.nice(10)\nwhile True:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load", type=int, default=2, help="busy processes for the loaded case")
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    rows = []
    before = load_average()
    for load in (0, args.load):
        busy = _busy(load)
        try:
            time.sleep(1.0 if load else 0.0)
            for threads in sorted({1, cores}):
                for policy in ("ACTIVE", "PASSIVE"):
                    r = _child(threads, policy, args.calls)
                    rows.append(dict(extra_busy=load, threads=threads, policy=policy, **r))
                    print(rows[-1], flush=True)
        finally:
            for p in busy:
                p.kill()
                p.wait()
    payload = dict(command="python benchmarks/bench_threads_under_load.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
                   machine=machine_info(), load_before=before, load_after=load_average(),
                   rows=rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    m = payload["machine"]
    lines = ["# Numba threads under load: libgomp spinning against passive waiting", "",
             f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, "
             f"nproc {m.get('nproc')}, moestats {m.get('moestats')}; load average before "
             f"{before}, after {payload['load_after']} (the machine's own work besides the "
             "busy processes this script adds).", "",
             "| busy processes added (nice 10) | Numba threads | OMP_WAIT_POLICY | "
             "kernel ms/call (top-2-of-4, n = 1e4) | fit s (softmax k = 2, n = 2e4) | layer |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['extra_busy']} | {r['threads']} | {r['policy']} | "
                     f"{r['kernel_ms']:.2f} | {r['fit_s']:.2f} | {r['layer']} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
