"""Benchmark of the EM backends: NumPy reference, batched NumPy, Numba (R = 1 and batched).

Run from the repository root::

    python benchmarks/bench_backends.py            # full form, about 10-15 min on 2 cores
    python benchmarks/bench_backends.py --quick    # smoke form, about 1 min
    python benchmarks/bench_backends.py --out /tmp/backends.json

Parts (issue 5, "Benchmark"):

1. **Grid.** Time per EM iteration per sample (seconds per sample-iteration) of

   - ``numpy_ref``: the NumPy reference, i.e. the engine on one data set,
     ``fit_em(..., backend="numpy", tol=0, max_iter=m, certify=False)`` on
     replication 0, divided by ``m`` (the sequential ``em_iteration`` of earlier
     versions is gone: ``fit_em`` is now ``fit_em_batched`` with R = 1);
   - ``numba_r1``: ``fit_em_batched(..., backend="numba")`` on replication 0 alone,
     ``tol=0, max_iter=m, certify=False`` (a fixed number of EM iterations, no
     second-order finish), divided by ``m``;
   - ``numpy_r40`` / ``numba_r40``: ``fit_em_batched`` on R = 40 replications, divided
     by ``m * R``;

   for n in {1e3, 1e4, 1e5}, k in {2, 3, 4}, d in {1, 5}, with the speed-up of each
   over the reference. The data come from well-separated softmax-gated true models
   (``true_model`` of ``bench_em.py`` for k = 2, 3, and one built the same way for
   k = 4; X ~ U[-1, 1]^d) and every fit starts at ``near_truth_init`` (the sweeps'
   start).
2. **40 fits.** The softmax-exact setup at n = 1e4: 40 replications (near-truth
   starts, tol 1e-6, max_iter 2000, the certifying finish on, as every fit now ends)
   fitted by one ``fit_em_batched`` call (Numba, and NumPy) and by 40 sequential
   ``fit_em`` calls (NumPy): wall times, iteration counts, passes, certificates and the
   largest parameter difference.
3. **Peak memory** of the batched Numba fit at R = 40, n = 1e5, k = 4, d = 1 (the
   softmax-over setup, k = 4 fitted to the k* = 2 truth), in a spawned child process,
   run first while this process is still small: the child's peak resident set (VmHWM
   of /proc/self/status) at each stage, the ``tracemalloc`` peak during the fit, and
   ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in the parent, beside the size of (X, y).
   The batched NumPy path is measured the same way (one iteration) for comparison.
4. **Numba threads**: batched Numba at n = 1e4, k = 3, d = 1 and at the case of part 3,
   with 1 and 2 threads (each measurement first waits up to ``--threads-max-wait``
   seconds for quiet CPUs).
5. **Crossover for backend="auto"**: for single fits (R = 1), softmax k = 2, 3, d = 1,
   the smallest n of a scan from which on Numba beats the NumPy reference per
   iteration; written to the JSON as ``auto_threshold``. Whole fits (tol 1e-6 from
   the near-truth start, per-fit overheads included) are timed beside it.
6. **Machine and contention**: CPU, versions, thread settings, the Numba compile /
   cache-load time, and for every measurement the average number of cores that
   *other* processes used meanwhile (the helpers of ``bench_em.py``); before each
   case the script waits (within a total budget) for quiet CPUs.

Also: a cProfile of the batched Numba path at n = 1e4, k = 3, d = 1 (where the time
goes), and, only with ``--sweep``, the wall time of the full softmax-exact sweep run
through the ``moestats run`` command line.

BLAS is pinned to one thread (threadpoolctl); Numba runs on ``--numba-threads``
threads (default 1, so that every backend uses one core) except in part 4.

Results: JSON (default ``benchmarks/results/bench_backends.json``) and a markdown
summary with the same stem beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# contention measurement, machine description and the k = 2, 3 truths: shared with bench_em
from bench_em import (cpu_snapshot, load_average, machine_info, other_cores,  # noqa: E402
                      profile_rows,
                      true_model, wait_for_quiet)

from moestats import MoEParams, SoftmaxGate, TrueModel, UniformDesign  # noqa: E402
from moestats.sampling import near_truth_init  # noqa: E402
from moestats.setups import get_setup  # noqa: E402
from moestats.solvers import fit_em  # noqa: E402
from moestats.solvers.batched_em import fit_em_batched  # noqa: E402

DEFAULT_OUT = HERE / "results" / "bench_backends.json"
DATA_SEED = 20240612
TOL = 1e-6
MAX_ITER = 2000
R_BATCH = 40
PARAM_FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")

# form-dependent settings
FULL = {
    "ns": (1_000, 10_000, 100_000), "ks": (2, 3, 4), "ds": (1, 5),
    "iters": {1_000: 20, 10_000: 10, 100_000: 5},   # EM iterations per timed call
    "min_time": 1.0, "min_reps": 3, "long_rep": 4.0,
    "fit40_n": 10_000, "fit40_R": 40,
    "mem": {"R": 40, "n": 100_000, "k": 4, "d": 1, "iters": 10, "numpy_iters": 1},
    "threads_cases": ((10_000, 3, 1, "grid"), (100_000, 4, 1, "softmax-over")),
    "threads_iters": {10_000: 10, 100_000: 5},
    "cross_ns": (50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000), "cross_ks": (2, 3),
    "cross_iters": 20, "cross_min_time": 0.5,
    "profile": (10_000, 3, 1, 10),
    "max_wait": 10.0, "wait_budget": 120.0, "threads_max_wait": 60.0,
}
QUICK = {
    "ns": (1_000,), "ks": (2, 3), "ds": (1, 5),
    "iters": {1_000: 10},
    "min_time": 0.2, "min_reps": 2, "long_rep": 1.0,
    "fit40_n": 2_000, "fit40_R": 10,
    "mem": {"R": 40, "n": 10_000, "k": 4, "d": 1, "iters": 3, "numpy_iters": 0},
    "threads_cases": ((10_000, 3, 1, "grid"),),
    "threads_iters": {10_000: 3},
    "cross_ns": (200, 1_000, 5_000), "cross_ks": (2, 3),
    "cross_iters": 10, "cross_min_time": 0.1,
    "profile": (10_000, 3, 1, 3),
    "max_wait": 2.0, "wait_budget": 10.0, "threads_max_wait": 2.0,
}


# --------------------------------------------------------------------------- truths and data
def true_model_k(k: int, d: int) -> TrueModel:
    """A well-separated softmax-gated truth with k experts on d features, X ~ U[-1, 1]^d.

    k = 2, 3: ``bench_em.true_model``. k = 4 (same u, v as there): gate logits
    (4 u.x, -4 u.x, 2 v.x + 0.5, 0); experts 2 u.x + 3, -2 u.x - 3, 2 v.x and
    -2 v.x + 7 with variances 0.1, 0.15, 0.2, 0.25.
    """
    if k in (2, 3):
        return true_model(k, d)
    if k != 4:
        raise ValueError(f"no true model for k = {k}")
    u = np.ones(d) / np.sqrt(d)
    v = np.array([(-1.0) ** j for j in range(d)]) / np.sqrt(d)
    z = np.zeros(d)
    params = MoEParams(gate_coef=[4 * u, -4 * u, 2 * v, z], gate_intercept=[0.0, 0.0, 0.5, 0.0],
                       expert_coef=[2 * u, -2 * u, 2 * v, -2 * v],
                       expert_intercept=[3.0, -3.0, 0.0, 7.0],
                       expert_var=[0.1, 0.15, 0.2, 0.25])
    return TrueModel(params, SoftmaxGate(), UniformDesign(-1.0, 1.0, d))


def make_batch(truth: TrueModel, k: int, n: int, R: int, tag):
    """R replications: X (R, n, d), y (R, n), near-truth starts, var floors (R,).

    The floor is GaussianMoE's ``var_floor="auto"``, 1e-6 var(y), per replication.
    """
    d = truth.params.n_features
    X = np.empty((R, n, d))
    y = np.empty((R, n))
    inits = []
    for r in range(R):
        rng = np.random.default_rng([DATA_SEED, *(zlib.crc32(t.encode()) for t in tag),
                                     n, k, d, r])
        X[r], y[r] = truth.sample(n, rng)
        inits.append(near_truth_init(truth.params, k, n, rng)[0])
    floors = 1e-6 * y.var(axis=1)
    return X, y, inits, floors


# --------------------------------------------------------------------------- timing
class Clock:
    """Times a call repeatedly and records the contention while it ran."""

    def __init__(self, min_time, min_reps, long_rep, max_reps=100):
        self.min_time, self.min_reps, self.long_rep, self.max_reps = (
            min_time, min_reps, long_rep, max_reps)

    def __call__(self, fn, units):
        """Median time of ``fn()`` divided by ``units`` (no warm-up call: nothing to warm;
        Numba is compiled up front). Stops after one repetition longer than ``long_rep``."""
        snap = cpu_snapshot()
        times, result = [], None
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= self.max_reps or times[0] > self.long_rep:
                break
            if len(times) >= self.min_reps and time.perf_counter() - start >= self.min_time:
                break
        arr = np.asarray(times)
        return {"per_unit_s": float(np.median(arr)) / units, "median_s": float(np.median(arr)),
                "min_s": float(arr.min()), "max_s": float(arr.max()), "reps": int(arr.size),
                "other_processes_cores": other_cores(snap, cpu_snapshot())}, result


def ref_chain(gate, params, X, y, floor, m):
    """m EM iterations of the NumPy reference: the engine on one data set (``fit_em``,
    NumPy backend, no finish); returns the final parameters."""
    return fit_em(gate, X, y, params, tol=0.0, max_iter=m, var_floor=floor,
                  certify=False, backend="numpy").params


def max_param_diff(a: MoEParams, b: MoEParams) -> float:
    return max(float(np.max(np.abs(getattr(a, f) - getattr(b, f)))) for f in PARAM_FIELDS)


class Waiter:
    """``bench_em.wait_for_quiet`` before each case, within a total waiting budget."""

    def __init__(self, max_wait, threshold, budget, log):
        self.max_wait, self.threshold, self.budget, self.log = max_wait, threshold, budget, log
        self.total = 0.0

    def __call__(self):
        left = min(self.max_wait, self.budget - self.total)
        if left <= 0:
            return None, 0.0
        busy, waited = wait_for_quiet(left, self.threshold, self.log)
        self.total += waited
        return busy, waited


# --------------------------------------------------------------------------- numba set-up
def numba_setup(threads, log):
    """Import the kernels and run one tiny fit: the compile or cache-load time."""
    import numba

    t0 = time.perf_counter()
    from moestats.backends import numba_kernels as nk
    t_import = time.perf_counter() - t0
    nk.set_num_threads(threads)
    truth = true_model_k(2, 1)
    X, y, inits, floors = make_batch(truth, 2, 300, 2, ("warmup",))
    t0 = time.perf_counter()
    fit_em_batched(SoftmaxGate(), X, y, inits, tol=0.0, max_iter=2, var_floor=floors,
                   backend="numba", certify=False)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_em_batched(SoftmaxGate(), X, y, inits, tol=0.0, max_iter=2, var_floor=floors,
                   backend="numba", certify=False)
    t_second = time.perf_counter() - t0
    stats = {}
    for name in dir(nk):
        obj = getattr(nk, name)
        if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.signatures:
            st = obj.stats
            stats[name] = {"cache_hits": int(sum(st.cache_hits.values())),
                           "cache_misses": int(sum(st.cache_misses.values()))}
    misses = sum(s["cache_misses"] for s in stats.values())
    info = {"import_s": t_import, "first_fit_s": t_first, "second_fit_s": t_second,
            "compiled": misses > 0, "kernels": stats,
            "threading_layer": numba.threading_layer(),
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS}
    log(f"numba: import {t_import:.2f} s, first fit {t_first:.2f} s "
        f"({'compiled ' + str(misses) + ' kernel(s)' if misses else 'loaded from cache'}), "
        f"second fit {t_second * 1e3:.1f} ms; threading layer {info['threading_layer']}")
    return nk, info


# --------------------------------------------------------------------------- 1: grid
def bench_grid(cfg, clock, waiter, log):
    gate = SoftmaxGate()
    cases = []
    for n in cfg["ns"]:
        m = cfg["iters"][n]
        for k in cfg["ks"]:
            for d in cfg["ds"]:
                busy, waited = waiter()
                truth = true_model_k(k, d)
                X, y, inits, floors = make_batch(truth, k, n, R_BATCH, ("grid",))
                X1, y1 = X[:1], y[:1]
                res = {}
                res["numpy_ref"], p_ref = clock(
                    lambda: ref_chain(gate, inits[0], X[0], y[0], floors[0], m), m * n)
                res["numba_r1"], tr1 = clock(
                    lambda: fit_em_batched(gate, X1, y1, inits[:1], tol=0.0, max_iter=m,
                                           var_floor=floors[:1], backend="numba",
                                           certify=False), m * n)
                res["numpy_r40"], trn = clock(
                    lambda: fit_em_batched(gate, X, y, inits, tol=0.0, max_iter=m,
                                           var_floor=floors, backend="numpy", certify=False),
                    m * n * R_BATCH)
                res["numba_r40"], trb = clock(
                    lambda: fit_em_batched(gate, X, y, inits, tol=0.0, max_iter=m,
                                           var_floor=floors, backend="numba", certify=False),
                    m * n * R_BATCH)
                ref = res["numpy_ref"]["per_unit_s"]
                case = {
                    "n": n, "k": k, "d": d, "iters": m, "R": R_BATCH,
                    "other_processes_cores_before": busy, "waited_for_quiet_s": waited,
                    "s_per_sample_iter": {key: v["per_unit_s"] for key, v in res.items()},
                    "speedup_vs_numpy_ref": {key: ref / v["per_unit_s"] for key, v in res.items()
                                             if key != "numpy_ref"},
                    "timings": res,
                    "other_processes_cores_max": max(
                        (v["other_processes_cores"] for v in res.values()
                         if v["other_processes_cores"] is not None), default=None),
                    # sanity: the backends follow the same path
                    "max_param_diff_numba_r1_vs_ref": max_param_diff(tr1[0].params, p_ref),
                    "max_param_diff_numba_r40_vs_numpy_r40": max(
                        max_param_diff(a.params, b.params) for a, b in zip(trb, trn)),
                    "max_param_diff_numpy_r40_vs_ref_r0": max_param_diff(trn[0].params, p_ref),
                }
                cases.append(case)
                sp = case["speedup_vs_numpy_ref"]
                busy_s = case["other_processes_cores_max"]
                log(f"grid n={n:>6} k={k} d={d}: ns/(sample*iter) ref "
                    f"{1e9 * ref:7.1f} | numba R=1 {1e9 * res['numba_r1']['per_unit_s']:7.1f} "
                    f"({sp['numba_r1']:4.1f}x) | numpy R=40 "
                    f"{1e9 * res['numpy_r40']['per_unit_s']:7.1f} ({sp['numpy_r40']:4.1f}x) | "
                    f"numba R=40 {1e9 * res['numba_r40']['per_unit_s']:7.1f} "
                    f"({sp['numba_r40']:4.1f}x)"
                    + ("" if busy_s is None else f" [other processes: {busy_s:.2f} cores]"))
    return cases


# --------------------------------------------------------------------------- 2: 40 fits
def bench_fit40(cfg, waiter, log):
    n, R = cfg["fit40_n"], cfg["fit40_R"]
    setup = get_setup("softmax-exact")
    truth = setup.truth
    k = truth.params.n_experts
    gate = SoftmaxGate()
    X, y, inits, floors = make_batch(truth, k, n, R, ("fit40",))
    busy, waited = waiter()
    out = {"setup": "softmax-exact", "n": n, "R": R, "k": k, "tol": TOL, "max_iter": MAX_ITER,
           "other_processes_cores_before": busy, "waited_for_quiet_s": waited}

    snap = cpu_snapshot()
    t0 = time.perf_counter()
    seq = [fit_em(gate, X[r], y[r], inits[r], tol=TOL, max_iter=MAX_ITER, var_floor=floors[r])
           for r in range(R)]
    out["sequential_fit_em_s"] = time.perf_counter() - t0
    out["sequential_other_processes_cores"] = other_cores(snap, cpu_snapshot())

    for backend in ("numba", "numpy"):
        snap = cpu_snapshot()
        t0 = time.perf_counter()
        bat = fit_em_batched(gate, X, y, inits, tol=TOL, max_iter=MAX_ITER, var_floor=floors,
                             backend=backend)
        wall = time.perf_counter() - t0
        diffs = {f: max(float(np.max(np.abs(getattr(b.params, f) - getattr(s.params, f))))
                        for b, s in zip(bat, seq)) for f in PARAM_FIELDS}
        out[f"batched_{backend}"] = {
            "wall_s": wall,
            "other_processes_cores": other_cores(snap, cpu_snapshot()),
            "speedup_vs_sequential": out["sequential_fit_em_s"] / wall,
            "max_abs_param_diff": max(diffs.values()),
            "max_abs_param_diff_by_field": diffs,
            "max_abs_loglik_diff": max(abs(b.log_likelihood - s.log_likelihood)
                                       for b, s in zip(bat, seq)),
            "n_iter_equal": int(sum(b.n_iter == s.n_iter for b, s in zip(bat, seq))),
            "converged_equal": int(sum(b.converged == s.converged for b, s in zip(bat, seq))),
            "certified": int(sum(bool(b.converged) for b in bat)),
            "passes": {"median": float(np.median([b.passes for b in bat])),
                       "max": int(max(b.passes for b in bat))},
        }
    its = np.array([s.n_iter for s in seq])
    out["sequential_n_iter"] = {"min": int(its.min()), "median": float(np.median(its)),
                                "max": int(its.max()), "total": int(its.sum())}
    out["sequential_converged"] = int(sum(s.converged for s in seq))   # certified
    out["sequential_passes"] = {"median": float(np.median([s.passes for s in seq])),
                                "max": int(max(s.passes for s in seq))}
    nb, npb = out["batched_numba"], out["batched_numpy"]
    log(f"40 fits (softmax-exact, n={n}, R={R}): sequential fit_em {out['sequential_fit_em_s']:.2f} s "
        f"({out['sequential_n_iter']['total']} iterations in all, max {its.max()}); batched numba "
        f"{nb['wall_s']:.2f} s ({nb['speedup_vs_sequential']:.1f}x, max |dparam| "
        f"{nb['max_abs_param_diff']:.1e}); batched numpy {npb['wall_s']:.2f} s "
        f"({npb['speedup_vs_sequential']:.1f}x, max |dparam| {npb['max_abs_param_diff']:.1e})")
    return out


# --------------------------------------------------------------------------- 3: memory
def _kib_to_mib(v):
    return v / 1024.0   # Linux reports ru_maxrss in KiB


def proc_memory():
    """VmRSS and VmHWM (peak RSS of this process image) in MiB, from /proc/self/status.

    Unlike ``ru_maxrss``, VmHWM starts afresh at exec: a spawned child does not inherit
    the parent's resident set size as its own starting peak.
    """
    out = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024.0
    return out


def _memory_child(conf, queue):
    """Runs in a spawned process: one batched fit, memory at each stage."""
    def stage(name):
        mem = proc_memory()
        out[f"vmhwm_mib_{name}"] = mem.get("VmHWM")
        out[f"vmrss_mib_{name}"] = mem.get("VmRSS")
        out[f"ru_maxrss_self_mib_{name}"] = _kib_to_mib(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    out = {}
    stage("after_imports")
    from threadpoolctl import threadpool_limits
    with threadpool_limits(conf["blas_threads"], user_api="blas") if conf["blas_threads"] > 0 \
            else contextlib.nullcontext():
        if conf["backend"] == "numba":
            from moestats.backends import numba_kernels as nk
            nk.set_num_threads(conf["numba_threads"])
            t = true_model_k(2, 1)
            Xw, yw, iw, fw = make_batch(t, 2, 300, 2, ("warmup",))
            fit_em_batched(SoftmaxGate(), Xw, yw, iw, tol=0.0, max_iter=1, var_floor=fw,
                           backend="numba", certify=False)
            stage("after_numba_warmup")
        setup = get_setup("softmax-over")
        truth = setup.truth
        k, n, R = conf["k"], conf["n"], conf["R"]
        tracemalloc.start()
        X = np.empty((R, n, truth.params.n_features))
        y = np.empty((R, n))
        inits = []
        for r in range(R):
            rng = np.random.default_rng([DATA_SEED, 3, n, k, r])
            X[r], y[r] = truth.sample(n, rng)
            inits.append(near_truth_init(truth.params, k, n, rng)[0])
        floors = 1e-6 * y.var(axis=1)
        out["data_bytes"] = int(X.nbytes + y.nbytes)
        out["tracemalloc_after_data_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
        stage("after_data")
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        # EM iterations only (certify=False): the finish's derivatives are NumPy
        # code in bounded chunks and would dominate the time of this part
        traces = fit_em_batched(SoftmaxGate(), X, y, inits, tol=TOL, max_iter=conf["iters"],
                                var_floor=floors, backend=conf["backend"], certify=False)
        out["fit_s_under_tracemalloc"] = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["tracemalloc_peak_during_fit_mib"] = peak / 2**20
        out["tracemalloc_peak_above_data_mib"] = (peak - base) / 2**20
        stage("after_fit")
        out["n_iter"] = int(max(t.n_iter for t in traces))
    queue.put(out)


def bench_memory(cfg, backend, iters, blas_threads, numba_threads, waiter, log):
    conf = {**cfg["mem"], "iters": iters, "backend": backend, "blas_threads": blas_threads,
            "numba_threads": numba_threads}
    busy, waited = waiter()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    before = _kib_to_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    parent = proc_memory()
    snap = cpu_snapshot()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_memory_child, args=(conf, queue))
    proc.start()
    try:
        res = queue.get(timeout=1800)
    except Exception as exc:   # the child died: report, keep the rest of the benchmark
        res = {"error": repr(exc)}
    proc.join()
    res["child_wall_s"] = time.perf_counter() - t0
    res["exitcode"] = proc.exitcode
    res["other_processes_cores"] = other_cores(snap, cpu_snapshot())
    after = _kib_to_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    res["ru_maxrss_children_mib"] = after
    res["ru_maxrss_children_mib_before"] = before
    res["parent_vmrss_mib_at_spawn"] = parent.get("VmRSS")
    res["ru_maxrss_note"] = (
        "ru_maxrss (RUSAGE_CHILDREN in the parent, RUSAGE_SELF in the child) is at least the "
        "parent's resident set at the fork that precedes the exec (Linux carries it over), and "
        "RUSAGE_CHILDREN is the largest of all children so far; vmhwm_mib_* (VmHWM) is the peak "
        "of the child's own process image and is the number to read")
    res.update({key: conf[key] for key in ("R", "n", "k", "d", "iters", "backend")})
    res["setup"] = "softmax-over (k = 4 fitted to the k* = 2 truth)"
    res["other_processes_cores_before"] = busy
    if "error" not in res:
        log(f"memory ({backend}, R={conf['R']}, n={conf['n']}, k={conf['k']}, "
            f"{res['n_iter']} it): child peak RSS (VmHWM) {res['vmhwm_mib_after_fit']:.0f} MiB "
            f"(after imports {res['vmhwm_mib_after_imports']:.0f}, after data "
            f"{res['vmhwm_mib_after_data']:.0f}); ru_maxrss children {after:.0f} MiB (parent "
            f"RSS at spawn {res['parent_vmrss_mib_at_spawn']:.0f}); tracemalloc peak above data "
            f"{res['tracemalloc_peak_above_data_mib']:.0f} MiB; data (X, y) "
            f"{res['data_bytes'] / 2**20:.0f} MiB")
    else:
        log(f"memory ({backend}): child failed: {res['error']}")
    return res


# --------------------------------------------------------------------------- 4: threads
def bench_threads(cfg, nk, clock, waiter, default_threads, log):
    """Batched Numba with 1 and 2 threads. Two threads need both cores, so each
    measurement waits for quiet CPUs with its own (longer) limit, ``waiter``."""
    gate = SoftmaxGate()
    out = []
    for n, k, d, source in cfg["threads_cases"]:
        m = cfg["threads_iters"][n]
        if source == "grid":
            truth = true_model_k(k, d)
        else:
            truth = get_setup(source).truth
        X, y, inits, floors = make_batch(truth, k, n, R_BATCH, ("threads", source))
        case = {"n": n, "k": k, "d": d, "R": R_BATCH, "iters": m,
                "truth": source if source != "grid" else "true_model_k", "threads": {}}
        for threads in (1, 2):
            busy, waited = waiter()
            nk.set_num_threads(threads)
            t, _ = clock(lambda: fit_em_batched(gate, X, y, inits, tol=0.0, max_iter=m,
                                                var_floor=floors, backend="numba",
                                                certify=False),
                         m * n * R_BATCH)
            t["other_processes_cores_before"] = busy
            t["waited_for_quiet_s"] = waited
            case["threads"][str(threads)] = t
        nk.set_num_threads(default_threads)
        t1, t2 = case["threads"]["1"]["per_unit_s"], case["threads"]["2"]["per_unit_s"]
        case["speedup_2_vs_1"] = t1 / t2
        out.append(case)
        log(f"threads n={n} k={k} d={d} ({case['truth']}): 1 thread {1e9 * t1:.1f}, 2 threads "
            f"{1e9 * t2:.1f} ns/(sample*iter): {t1 / t2:.2f}x [other processes: "
            + ", ".join("?" if v is None else f"{v:.2f}" for v in (
                case["threads"]["1"]["other_processes_cores"],
                case["threads"]["2"]["other_processes_cores"])) + " cores]")
    return out


# --------------------------------------------------------------------------- 5: crossover
def bench_crossover(cfg, waiter, numba_threads, log):
    gate = SoftmaxGate()
    clock = Clock(cfg["cross_min_time"], 3, 2.0)
    m = cfg["cross_iters"]
    rows, thresholds = [], {}
    for k in cfg["cross_ks"]:
        truth = true_model_k(k, 1)
        for n in cfg["cross_ns"]:
            busy, _ = waiter()
            X, y, inits, floors = make_batch(truth, k, n, 1, ("crossover",))
            ref, _ = clock(lambda: ref_chain(gate, inits[0], X[0], y[0], floors[0], m), m * n)
            nb, _ = clock(lambda: fit_em_batched(gate, X, y, inits, tol=0.0, max_iter=m,
                                                 var_floor=floors, backend="numba",
                                                 certify=False), m * n)
            # whole fits from the near-truth start (tol 1e-6): per-fit overheads included
            ref_fit, tr_ref = clock(lambda: fit_em(gate, X[0], y[0], inits[0], tol=TOL,
                                                   max_iter=MAX_ITER, var_floor=floors[0]), 1)
            nb_fit, tr_nb = clock(lambda: fit_em_batched(gate, X, y, inits, tol=TOL,
                                                         max_iter=MAX_ITER, var_floor=floors,
                                                         backend="numba"), 1)
            rows.append({"k": k, "d": 1, "n": n, "iters": m,
                         "fit_numpy_ref_s": ref_fit["per_unit_s"],
                         "fit_numba_r1_s": nb_fit["per_unit_s"],
                         "fit_n_iter": [int(tr_ref.n_iter), int(tr_nb[0].n_iter)],
                         "numpy_ref_s_per_iter": ref["per_unit_s"] * n,
                         "numba_r1_s_per_iter": nb["per_unit_s"] * n,
                         "numba_faster": nb["per_unit_s"] < ref["per_unit_s"],
                         "ratio_ref_over_numba": ref["per_unit_s"] / nb["per_unit_s"],
                         "other_processes_cores": [ref["other_processes_cores"],
                                                   nb["other_processes_cores"]],
                         "other_processes_cores_before": busy})
            r = rows[-1]
            log(f"crossover k={k} n={n:>6}: ref {1e3 * r['numpy_ref_s_per_iter']:.3f} ms/iter, "
                f"numba R=1 {1e3 * r['numba_r1_s_per_iter']:.3f} ms/iter "
                f"({r['ratio_ref_over_numba']:.2f}x); whole fit ({r['fit_n_iter'][0]} it) ref "
                f"{1e3 * r['fit_numpy_ref_s']:.2f} ms, numba {1e3 * r['fit_numba_r1_s']:.2f} ms")
        # the smallest scanned n from which on numba is faster at every larger scanned n
        mine = [r for r in rows if r["k"] == k]
        thr = None
        for r in reversed(mine):
            if not r["numba_faster"]:
                break
            thr = r["n"]
        thresholds[f"k{k}"] = thr
    values = [v for v in thresholds.values()]
    overall = None if any(v is None for v in values) else max(values)
    return rows, thresholds, overall


# --------------------------------------------------------------------------- profile
def profile_numba(cfg, nk, waiter, top=15):
    """cProfile of the batched Numba path.

    cProfile lists the compiled kernels (``*_k``) as functions of their own, so their own
    time is the time spent in compiled code. The gate-objective wrapper is counted as
    well: each call passes over the data of the replications still in the Newton line
    search, so ``sample_passes`` counts replications x n per call.
    """
    n, k, d, m = cfg["profile"]
    gate = SoftmaxGate()
    X, y, inits, floors = make_batch(true_model_k(k, d), k, n, R_BATCH, ("grid",))
    waiter()
    q_rows = []
    original = nk._softmax_q

    def counted(X_, rows, *a, **kw):
        q_rows.append(int(rows.shape[0]))
        return original(X_, rows, *a, **kw)

    prof = cProfile.Profile()
    snap = cpu_snapshot()
    nk._softmax_q = counted
    try:
        t0 = time.perf_counter()
        prof.enable()
        fit_em_batched(gate, X, y, inits, tol=0.0, max_iter=m, var_floor=floors,
                       backend="numba", certify=False)
        prof.disable()
        wall = time.perf_counter() - t0
    finally:
        nk._softmax_q = original
    rows, total = profile_rows(prof)

    def pick(name):
        hit = [r for r in rows if r["function"].endswith(f"({name})")
               and "numba_kernels" in r["function"]]
        return hit[0] if hit else {"ncalls": 0, "tottime_s": 0.0, "cumtime_s": 0.0}

    kernels = {name: pick(name) for name in
               ("_softmax_fused_k", "_softmax_q_k", "_rss_k", "_statistics_k")}
    kernel_s = sum(v["tottime_s"] for v in kernels.values())
    # with tol = 0 every replication stays active: the E-step and rss kernels see all R
    passes = {"_softmax_fused_k": kernels["_softmax_fused_k"]["ncalls"] * R_BATCH,
              "_rss_k": kernels["_rss_k"]["ncalls"] * R_BATCH,
              "_softmax_q_k": sum(q_rows)}
    ns_per_sample_pass = {name: 1e9 * kernels[name]["tottime_s"] / (p * n)
                          for name, p in passes.items() if p}
    return {
        "n": n, "k": k, "d": d, "R": R_BATCH, "iters": m, "wall_s": wall,
        "other_processes_cores": other_cores(snap, cpu_snapshot()),
        "profiled_total_s": total,
        "kernels": kernels,
        "kernel_share": kernel_s / total if total else None,
        "kernel_share_by_name": {name: v["tottime_s"] / total for name, v in kernels.items()}
        if total else None,
        "gate_q_calls_per_em_iteration": len(q_rows) / m,
        "gate_q_passes_per_replication_per_em_iteration": sum(q_rows) / (m * R_BATCH),
        "fused_e_step_passes_per_replication_per_em_iteration":
            passes["_softmax_fused_k"] / (m * R_BATCH),
        "ns_per_sample_per_pass": ns_per_sample_pass,
        "top_by_own_time": rows[:top],
    }


# --------------------------------------------------------------------------- sweep (opt-in)
def run_sweep_cli(n_jobs, timeout, log):
    """The full softmax-exact sweep through the command line, in a child process."""
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        cmd = [sys.executable, "-m", "moestats.simulation", "run", "softmax-exact", "--full",
               "--n-jobs", str(n_jobs), "--results", tmp, "--no-report", "--no-progress"]
        snap = cpu_snapshot()
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            status, rc, err = "ok" if res.returncode == 0 else "failed", res.returncode, res.stderr
        except subprocess.TimeoutExpired as exc:
            status, rc, err = "timeout", None, str(exc)
        wall = time.perf_counter() - t0
    out = {"command": " ".join(cmd[1:]).replace(tmp, "TMPDIR"), "status": status,
           "returncode": rc, "wall_s": wall, "stderr_tail": (err or "")[-1500:],
           "other_processes_cores": other_cores(snap, cpu_snapshot())}
    log(f"sweep: {status} in {wall:.1f} s")
    return out


# --------------------------------------------------------------------------- code state
def code_state():
    """Git commit, modified files and hashes of the benchmarked modules (the checkout is shared
    and may hold uncommitted changes: this ties the numbers to the code they measured)."""
    import hashlib

    root = HERE.parent
    out = {}

    def git(*a):
        try:
            res = subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,
                                 timeout=30)
            return res.stdout.rstrip() if res.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    out["git_head"] = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=all", "--", "moestats")
    out["uncommitted_moestats_files"] = status.splitlines() if status else []
    out["sha256"] = {}
    for rel in ("moestats/solvers/batched_em.py", "moestats/backends/numba_kernels.py",
                "moestats/backends/host_ops.py", "moestats/solvers/em.py",
                "moestats/solvers/gate_steps.py", "moestats/solvers/expert_step.py",
                "moestats/solvers/finish.py", "moestats/backends/__init__.py"):
        with contextlib.suppress(OSError):
            out["sha256"][rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()[:16]
    return out


# --------------------------------------------------------------------------- output
def fmt_ns(s):
    return f"{1e9 * s:.1f}"


def write_markdown(result, path: Path):
    md = io.StringIO()
    m = result["machine"]
    c = result["config"]
    md.write(f"# Backend benchmark ({'quick' if c['quick'] else 'full'} run, "
             f"{m['timestamp_utc']})\n\n")
    nb = result["numba"]
    md.write(f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs (nproc {m.get('nproc')}); Python {m['python']}, numpy "
             f"{m['numpy']}, scipy {m['scipy']}, numba {m['numba']}, moestats {m['moestats']}; "
             f"BLAS threads {c['blas_threads']}; Numba threads {c['numba_threads']} (threading "
             f"layer {nb['threading_layer']}); load average at start/end "
             f"{result['load_average_start']} / {result['load_average_end']}; total "
             f"{result['total_wall_s']:.0f} s. Numba: first fit {nb['first_fit_s']:.2f} s "
             f"({'compiled' if nb['compiled'] else 'loaded from the cache'}), import "
             f"{nb['import_s']:.2f} s.\n\n")

    md.write("## Time per EM iteration per sample (ns per sample-iteration)\n\n"
             "| n | k | d | iters | numpy ref | numba R=1 | numpy R=40 | numba R=40 | "
             "numba R=1 speed-up | numpy R=40 speed-up | numba R=40 speed-up | "
             "other procs (cores, max) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for case in result["grid"]:
        s, sp = case["s_per_sample_iter"], case["speedup_vs_numpy_ref"]
        busy = case["other_processes_cores_max"]
        md.write(f"| {case['n']} | {case['k']} | {case['d']} | {case['iters']} | "
                 f"{fmt_ns(s['numpy_ref'])} | {fmt_ns(s['numba_r1'])} | {fmt_ns(s['numpy_r40'])} | "
                 f"{fmt_ns(s['numba_r40'])} | {sp['numba_r1']:.1f}x | {sp['numpy_r40']:.1f}x | "
                 f"{sp['numba_r40']:.1f}x | {'' if busy is None else round(busy, 2)} |\n")
    md.write("\nSpeed-up = numpy ref time / backend time, per sample-iteration. numpy ref: "
             "the engine on one data set, `fit_em(..., backend='numpy', tol=0, max_iter=iters, "
             "certify=False)`; the others: `fit_em_batched(..., tol=0, max_iter=iters, "
             "certify=False)`; each divided by iters (and by R), so one extra E-step (at the "
             "start) is spread over the iterations; all from near-truth starts. "
             "'other procs' is the largest, over the four measurements of the row, average "
             "number of cores other processes used meanwhile: well above 0 means the row is "
             "inflated.\n")
    key = result.get("key_case")
    if key:
        md.write("\n**Target (numba R=40 >= 10x the reference at n = 1e4, k = 3)**: "
                 + "; ".join(f"d = {r['d']}: {r['speedup']:.1f}x" for r in key["rows"])
                 + f" with {c['numba_threads']} Numba thread(s)"
                 + (f"; with 2 threads (part 4) {key['two_thread_speedup']:.1f}x at d = 1"
                    if key.get("two_thread_speedup") else "") + ".\n")

    f40 = result["fit40"]
    md.write(f"\n## {f40['R']} fits of softmax-exact at n = {f40['n']} (tol {f40['tol']}, "
             f"max_iter {f40['max_iter']}, near-truth starts)\n\n"
             "| method | wall s | speed-up | max abs param diff vs sequential | max abs LL diff | "
             "same n_iter | other procs (cores) |\n|---|---|---|---|---|---|---|\n")
    seq_busy = f40["sequential_other_processes_cores"]
    md.write(f"| {f40['R']} x `fit_em` (sequential) | {f40['sequential_fit_em_s']:.2f} | 1.0x | | | | "
             f"{'' if seq_busy is None else round(seq_busy, 2)} |\n")
    for backend in ("numba", "numpy"):
        b = f40[f"batched_{backend}"]
        busy = b["other_processes_cores"]
        md.write(f"| `fit_em_batched` {backend} | {b['wall_s']:.2f} | "
                 f"{b['speedup_vs_sequential']:.1f}x | {b['max_abs_param_diff']:.2e} | "
                 f"{b['max_abs_loglik_diff']:.2e} | {b['n_iter_equal']}/{f40['R']} | "
                 f"{'' if busy is None else round(busy, 2)} |\n")
    it = f40["sequential_n_iter"]
    md.write(f"\nEM iterations per fit: min {it['min']}, median {it['median']:.0f}, max {it['max']}; "
             f"{f40['sequential_converged']}/{f40['R']} certified (sequential), "
             + ", ".join(f"{f40['batched_' + b]['certified']}/{f40['R']} ({b})"
                         for b in ("numba", "numpy"))
             + f"; passes per fit (sequential) median {f40['sequential_passes']['median']:.0f}, "
             f"max {f40['sequential_passes']['max']}. Every fit ends with the certifying "
             "second-order finish (NumPy code on every backend).\n")

    md.write("\n## Peak memory (spawned child, softmax-over setup, k = 4)\n\n"
             "| backend | R | n | iters | data (X, y) MiB | child peak RSS (VmHWM) MiB | "
             "VmHWM after imports / warm-up / data MiB | tracemalloc peak above data MiB | "
             "ru_maxrss children MiB (parent RSS at spawn) |\n"
             "|---|---|---|---|---|---|---|---|---|\n")
    for mem in result["memory"]:
        if "error" in mem:
            md.write(f"| {mem['backend']} | {mem['R']} | {mem['n']} | | | failed: "
                     f"{mem['error']} | | | |\n")
            continue
        warm = mem.get("vmhwm_mib_after_numba_warmup")
        md.write(f"| {mem['backend']} | {mem['R']} | {mem['n']} | {mem['n_iter']} | "
                 f"{mem['data_bytes'] / 2**20:.0f} | {mem['vmhwm_mib_after_fit']:.0f} | "
                 f"{mem['vmhwm_mib_after_imports']:.0f} / "
                 f"{'-' if warm is None else f'{warm:.0f}'} / "
                 f"{mem['vmhwm_mib_after_data']:.0f} | "
                 f"{mem['tracemalloc_peak_above_data_mib']:.0f} | "
                 f"{mem['ru_maxrss_children_mib']:.0f} ({mem['parent_vmrss_mib_at_spawn']:.0f}) |\n")
    md.write("\nVmHWM: peak resident set of the child's own process image (/proc/self/status). "
             "`ru_maxrss` of the children, as asked by the issue, is also listed, but on Linux it "
             "is never below the parent's resident set at the fork that precedes the exec, and "
             "it is the largest over all children so far.\n")
    md.write("\n## Numba threads (batched, R = 40; ns per sample-iteration)\n\n"
             "| n | k | d | truth | 1 thread | 2 threads | speed-up | other procs (1 / 2) |\n"
             "|---|---|---|---|---|---|---|---|\n")
    for t in result["threads"]:
        a, b = t["threads"]["1"], t["threads"]["2"]
        busy = " / ".join("" if v is None else f"{v:.2f}" for v in
                          (a["other_processes_cores"], b["other_processes_cores"]))
        md.write(f"| {t['n']} | {t['k']} | {t['d']} | {t['truth']} | {fmt_ns(a['per_unit_s'])} | "
                 f"{fmt_ns(b['per_unit_s'])} | {t['speedup_2_vs_1']:.2f}x | {busy} |\n")

    md.write("\n## Crossover for `backend=\"auto\"` (single fits, d = 1; ms per iteration)\n\n"
             "| k | n | numpy ref | numba R=1 | ref / numba | whole fit: iters | "
             "`fit_em` ms | numba R=1 ms | other procs |\n|---|---|---|---|---|---|---|---|---|\n")
    for r in result["crossover"]:
        busy = " / ".join("" if v is None else f"{v:.2f}" for v in r["other_processes_cores"])
        md.write(f"| {r['k']} | {r['n']} | {1e3 * r['numpy_ref_s_per_iter']:.3f} | "
                 f"{1e3 * r['numba_r1_s_per_iter']:.3f} | {r['ratio_ref_over_numba']:.2f}x | "
                 f"{r['fit_n_iter'][0]} | {1e3 * r['fit_numpy_ref_s']:.2f} | "
                 f"{1e3 * r['fit_numba_r1_s']:.2f} | {busy} |\n")
    md.write(f"\n`auto_threshold` = {result['auto_threshold']} (per k: "
             f"{result['auto_threshold_detail']['per_k']}): the smallest scanned n from which on "
             "Numba is faster at every larger scanned n; `null` if it never is.\n")

    prof = result.get("profile")
    if prof:
        md.write(f"\n## cProfile of the batched Numba path (n = {prof['n']}, k = {prof['k']}, "
                 f"d = {prof['d']}, R = {prof['R']}, {prof['iters']} iterations, "
                 f"{prof['wall_s']:.2f} s)\n\n"
                 f"Compiled kernels (`*_k`): {100 * prof['kernel_share']:.0f}% of the profiled "
                 "time. Per replication and EM iteration: "
                 f"{prof['fused_e_step_passes_per_replication_per_em_iteration']:.1f} fused "
                 "E-step passes (`_softmax_fused_k`: responsibilities, log-likelihood, expert "
                 "statistics, gate objective/gradient/Hessian) and "
                 f"{prof['gate_q_passes_per_replication_per_em_iteration']:.1f} gate-objective "
                 "passes (`_softmax_q_k`: one per Newton step or step-halving trial). Cost per "
                 "sample and pass: "
                 + ", ".join(f"`{k_}` {v:.0f} ns" for k_, v in
                             prof["ns_per_sample_per_pass"].items()) + ".\n\n"
                 "| function | calls | own s | cumulative s |\n|---|---|---|---|\n")
        for r in prof["top_by_own_time"]:
            md.write(f"| `{r['function']}` | {r['ncalls']} | {r['tottime_s']:.3f} | "
                     f"{r['cumtime_s']:.3f} |\n")
    sweep = result.get("sweep")
    if sweep:
        md.write(f"\n## Full softmax-exact sweep\n\n`{sweep['command']}`: {sweep['status']}, "
                 f"{sweep['wall_s']:.1f} s (other processes {sweep['other_processes_cores']} "
                 "cores).\n")
    path.write_text(md.getvalue())


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke form: small cases, about 1 min")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (threadpoolctl; default 1; 0 keeps the library default)")
    ap.add_argument("--numba-threads", type=int, default=1,
                    help="Numba threads outside part 4 (default 1)")
    ap.add_argument("--max-wait", type=float, default=None,
                    help="before each case, wait up to this many seconds for other processes "
                         "to leave the CPUs (default 10, 2 with --quick; 0 disables)")
    ap.add_argument("--wait-budget", type=float, default=None,
                    help="total seconds of such waiting (default 120, 10 with --quick)")
    ap.add_argument("--threads-max-wait", type=float, default=None,
                    help="part 4 (threads): wait up to this many seconds for quiet CPUs before "
                         "each measurement, outside --wait-budget (default 60, 2 with --quick)")
    ap.add_argument("--quiet-threshold", type=float, default=0.3,
                    help="cores other processes may use for the machine to count as quiet")
    ap.add_argument("--no-memory", action="store_true", help="skip part 3 (peak memory)")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile")
    ap.add_argument("--sweep", action="store_true",
                    help="also time the full softmax-exact sweep via `moestats run` (long)")
    ap.add_argument("--sweep-jobs", type=int, default=2, help="--n-jobs of that sweep")
    ap.add_argument("--sweep-timeout", type=float, default=3600.0, help="its time limit (s)")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.max_wait is None:
        args.max_wait = cfg["max_wait"]
    if args.wait_budget is None:
        args.wait_budget = cfg["wait_budget"]
    if args.threads_max_wait is None:
        args.threads_max_wait = cfg["threads_max_wait"]
    from threadpoolctl import threadpool_info, threadpool_limits
    before = threadpool_info()
    limiter = (threadpool_limits(args.blas_threads, user_api="blas") if args.blas_threads > 0
               else contextlib.nullcontext())
    with limiter, np.errstate(over="ignore", under="ignore", divide="ignore"):
        return _run(args, cfg, before, threadpool_info())


def _run(args, cfg, pools_before, pools_after):
    import numba

    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)  # noqa: E731
    load_start = load_average()
    waiter = Waiter(args.max_wait if args.max_wait > 0 else 0.0, args.quiet_threshold,
                    args.wait_budget if args.max_wait > 0 else 0.0, log)
    snap_all = cpu_snapshot()
    state = code_state()
    nk, numba_info = numba_setup(args.numba_threads, log)
    clock = Clock(cfg["min_time"], cfg["min_reps"], cfg["long_rep"])

    # memory first, while this process is small (see proc_memory and ru_maxrss_note)
    memory = []
    if not args.no_memory:
        memory.append(bench_memory(cfg, "numba", cfg["mem"]["iters"], args.blas_threads,
                                   args.numba_threads, waiter, log))
        if cfg["mem"]["numpy_iters"]:
            memory.append(bench_memory(cfg, "numpy", cfg["mem"]["numpy_iters"], args.blas_threads,
                                       args.numba_threads, waiter, log))
    grid = bench_grid(cfg, clock, waiter, log)
    fit40 = bench_fit40(cfg, waiter, log)
    thread_waiter = Waiter(args.threads_max_wait, args.quiet_threshold, float("inf"), log)
    threads = bench_threads(cfg, nk, clock, thread_waiter, args.numba_threads, log)
    crossover, per_k, overall = bench_crossover(cfg, waiter, args.numba_threads, log)
    profile = None if args.no_profile else profile_numba(cfg, nk, waiter)
    if profile:
        log(f"profile: compiled kernels {100 * profile['kernel_share']:.0f}% of "
            f"{profile['profiled_total_s']:.2f} s; per replication and EM iteration "
            f"{profile['gate_q_passes_per_replication_per_em_iteration']:.1f} gate-objective "
            f"passes + {profile['fused_e_step_passes_per_replication_per_em_iteration']:.1f} "
            f"fused E-step passes; ns per sample-pass "
            + ", ".join(f"{k_} {v:.0f}" for k_, v in profile["ns_per_sample_per_pass"].items()))
    sweep = run_sweep_cli(args.sweep_jobs, args.sweep_timeout, log) if args.sweep else None

    key_rows = [{"d": c["d"], "speedup": c["speedup_vs_numpy_ref"]["numba_r40"],
                 "numpy_ref_s": c["s_per_sample_iter"]["numpy_ref"],
                 "numba_r40_s": c["s_per_sample_iter"]["numba_r40"]}
                for c in grid if c["n"] == 10_000 and c["k"] == 3]
    key = None
    if key_rows:
        key = {"n": 10_000, "k": 3, "target": 10.0, "rows": key_rows,
               "met": all(r["speedup"] >= 10.0 for r in key_rows)}
        two = [t for t in threads if t["n"] == 10_000 and t["k"] == 3 and t["d"] == 1]
        ref_d1 = [r for r in key_rows if r["d"] == 1]
        if two and ref_d1:
            key["two_thread_speedup"] = (ref_d1[0]["numpy_ref_s"]
                                         / two[0]["threads"]["2"]["per_unit_s"])

    machine = machine_info()
    machine.update({"numba": numba.__version__, "threadpools_before_limit": pools_before,
                    "threadpools_after_limit": pools_after})
    result = {
        "benchmark": "bench_backends",
        "description": ("Seconds per EM iteration per sample of the NumPy reference, batched "
                        "NumPy and Numba (R = 1 and R = 40), 40 batched vs sequential fits, peak "
                        "memory, Numba thread scaling and the auto-backend crossover."),
        "config": {"quick": args.quick, "blas_threads": args.blas_threads,
                   "numba_threads": args.numba_threads, "max_wait": args.max_wait,
                   "wait_budget": args.wait_budget, "threads_max_wait": args.threads_max_wait,
                   "quiet_threshold": args.quiet_threshold,
                   "R": R_BATCH, "data_seed": DATA_SEED, "start": "near_truth_init",
                   "var_floor": "1e-6 * var(y) per replication",
                   "design": "X ~ U[-1, 1]^d (grid, threads, crossover); setups' own elsewhere",
                   **{key: (list(v) if isinstance(v, tuple) else v) for key, v in cfg.items()
                      if key not in ("iters", "threads_iters")},
                   "iters": {str(key): v for key, v in cfg["iters"].items()},
                   "threads_iters": {str(key): v for key, v in cfg["threads_iters"].items()}},
        "machine": machine,
        "code": {"at_start": state, "at_end": code_state()},
        "numba": numba_info,
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "other_processes_cores_whole_run": other_cores(snap_all, cpu_snapshot()),
        "waited_for_quiet_total_s": waiter.total,
        "total_wall_s": time.perf_counter() - t_start,
        "key_case": key,
        "grid": grid,
        "fit40": fit40,
        "memory": memory,
        "threads": threads,
        "crossover": crossover,
        "auto_threshold": overall,
        "auto_threshold_detail": {
            "per_k": per_k, "R": 1, "d": 1, "numba_threads": args.numba_threads,
            "rule": "smallest scanned n from which on numba (fit_em_batched, R = 1) is faster "
                    "per iteration than the NumPy reference at every larger scanned n; the "
                    "overall value is the largest over k (null if numba never wins)"},
        "profile": profile,
        "sweep": sweep,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    md_path = args.out.with_suffix(".md")
    write_markdown(result, md_path)
    log(f"wrote {args.out} and {md_path.name}")
    print(md_path.read_text())


if __name__ == "__main__":
    main()
