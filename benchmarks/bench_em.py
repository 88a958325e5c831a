"""Benchmark of EM for the softmax-gated Gaussian mixture of experts (and flexmix beside it).

Run from the repository root::

    python benchmarks/bench_em.py            # full grid, a few minutes on 2 cores
    python benchmarks/bench_em.py --quick    # n = 1e3 only, well under a minute
    python benchmarks/bench_em.py --out /tmp/em.json --no-flexmix

For every n in {1e3, 1e4, 1e5}, k in {2, 3} and d in {1, 5} it

1. draws (X, y) from a known, well-separated softmax-gated true model
   (:class:`moestats.TrueModel`, X ~ U[-1, 1]^d, seeded ``np.random.default_rng``);
2. builds the k-means start exactly as ``GaussianMoE(init="kmeans")`` does
   (k-means on standardised (x, y), labels smoothed by 0.2, one M-step), checks that
   it equals :func:`moestats.solvers.kmeans_init`, and keeps the smoothed labels;
3. times one EM iteration of the engine (NumPy backend) from ``params``: the median of
   ``fit_em(gate, X, y, params, tol=0, max_iter=1, certify=False)`` minus the median
   of the same call with ``max_iter=0`` (which does only the E-step at ``params`` and
   the set-up), i.e. expert step + gate step + E-step, the work of one pass of the
   engine's loop, at the start and at the fitted solution, with a breakdown into
   E-step / expert step / gate step (the engine's own ``NumpyOps.e_step``,
   ``expert_step`` and ``gate_step_batched``);
4. times the full fit ``GaussianMoE(k, gate="softmax", solver="em", tol=1e-6,
   max_iter=2000, init=<that start>).fit(X, y)`` (median over repetitions) and records
   ``n_iter_``, ``log_likelihood_`` and ``converged_`` (since the certified engine, a
   fit is EM to ``tol`` plus the second-order finish and the stationarity
   certificate, and ``converged_`` is the certificate's verdict);
5. if ``Rscript`` and the R package flexmix are available, fits the same data with
   ``flexmix(y ~ x1 + ..., k, cluster = <the same smoothed labels>,
   model = FLXMRglm("gaussian"), concomitant = FLXPmultinom(~ x1 + ...),
   control = list(minprior = 0, tolerance = 1e-6, iter.max = 2000))``
   (``benchmarks/flexmix_fit.R``; only the flexmix() call is timed, inside R) and
   records its time, iterations and log-likelihood, the moestats log-likelihood at
   flexmix's parameters, and the moestats fit continued from flexmix's solution.

Results: JSON (default ``benchmarks/results/bench_em.json``) plus a CSV and a markdown
table with the same stem beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import datetime as _dt
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy
import sklearn
from sklearn.cluster import KMeans

import moestats
from moestats import GaussianMoE, MoEParams, SoftmaxGate, TrueModel, UniformDesign
from moestats.backends.ops import make_ops
from moestats.likelihood import log_likelihood
from moestats.solvers import (ParameterSpace, ParamLayout, fit_em, init_from_responsibilities,
                              kmeans_init)
from moestats.solvers.batched_params import as_batched
from moestats.solvers.expert_step import expert_step
from moestats.solvers.gate_steps import gate_step_batched
from moestats.solvers.init import LABEL_SMOOTHING

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_em.json"
R_SCRIPT = HERE / "flexmix_fit.R"

TOL = 1e-6
MAX_ITER = 2000
DATA_SEED = 20240611
INIT_SEED = 7
NS_FULL = (1_000, 10_000, 100_000)
NS_QUICK = (1_000,)
KS = (2, 3)
DS = (1, 5)


# --------------------------------------------------------------------------- truth
def true_model(k: int, d: int) -> TrueModel:
    """A well-separated softmax-gated truth with k experts on d features, X ~ U[-1, 1]^d.

    With u = 1/sqrt(d) (1, ..., 1) and v = 1/sqrt(d) (1, -1, 1, ...) (v = u when d = 1):

    - k = 2: gate logits (4 u.x + 0.3, 0); experts 2 u.x + 2 and -2 u.x - 2 with
      variances 0.1, 0.2 (means 4 apart where the gate is 50/50, sd <= 0.45);
    - k = 3: gate logits (4 u.x, -4 u.x, 0); experts 2 u.x + 3, -2 u.x - 3 and
      2 v.x with variances 0.1, 0.15, 0.2.
    """
    u = np.ones(d) / np.sqrt(d)
    v = np.array([(-1.0) ** j for j in range(d)]) / np.sqrt(d)
    z = np.zeros(d)
    if k == 2:
        params = MoEParams(gate_coef=[4 * u, z], gate_intercept=[0.3, 0.0],
                           expert_coef=[2 * u, -2 * u], expert_intercept=[2.0, -2.0],
                           expert_var=[0.1, 0.2])
    elif k == 3:
        params = MoEParams(gate_coef=[4 * u, -4 * u, z], gate_intercept=[0.0, 0.0, 0.0],
                           expert_coef=[2 * u, -2 * u, 2 * v], expert_intercept=[3.0, -3.0, 0.0],
                           expert_var=[0.1, 0.15, 0.2])
    else:
        raise ValueError(f"no true model for k = {k}")
    return TrueModel(params, SoftmaxGate(), UniformDesign(-1.0, 1.0, d))


# --------------------------------------------------------------------------- start
def kmeans_labels(X, y, k, rng):
    """The labels of :func:`moestats.solvers.kmeans_init` (same steps, same seed draw)."""
    Z = np.column_stack([X, y])
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (Z - Z.mean(axis=0)) / scale
    seed = int(rng.integers(np.iinfo(np.int32).max))
    return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(Z)


def smoothed_one_hot(labels, k):
    resp = np.full((labels.size, k), LABEL_SMOOTHING / k)
    resp[np.arange(labels.size), labels] += 1.0 - LABEL_SMOOTHING
    return resp


# --------------------------------------------------------------------------- timing
def time_call(fn, *, min_time, min_reps=5, max_reps=200, warmup=1):
    """Median (and spread) of the wall time of ``fn()`` over repetitions."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    arr = np.asarray(times)
    return {"median_s": float(np.median(arr)), "min_s": float(arr.min()),
            "q25_s": float(np.quantile(arr, 0.25)), "q75_s": float(np.quantile(arr, 0.75)),
            "reps": int(arr.size)}


def em_iterations(gate, params, X, y, floor, m):
    """``m`` iterations of the engine (NumPy backend, no finish) from ``params``."""
    return fit_em(gate, X, y, params, tol=0.0, max_iter=m, var_floor=floor, certify=False,
                  backend="numpy")


def time_em_iteration(gate, params, X, y, floor, min_time):
    """One EM iteration from ``params`` (E-step included), and its three parts.

    The engine has no single-iteration function: the time of one iteration is the median
    time of ``fit_em(..., tol=0, max_iter=1, certify=False)`` minus that of ``max_iter=0``
    (set-up and the E-step at ``params`` only), so what is left is the expert step, the
    gate step and the E-step at the new parameters: one pass of the engine's loop. The
    parts are timed with the engine's own pieces (``NumpyOps.e_step``, ``expert_step``,
    ``gate_step_batched``) on a copy of the parameters.
    """
    one = time_call(lambda: em_iterations(gate, params, X, y, floor, 1), min_time=min_time)
    zero = time_call(lambda: em_iterations(gate, params, X, y, floor, 0), min_time=min_time / 2)
    total = {key: one[key] - zero[key] for key in ("median_s", "min_s", "q25_s", "q75_s")}
    total["reps"] = one["reps"]
    total["with_setup_median_s"] = one["median_s"]
    total["setup_and_first_e_step_median_s"] = zero["median_s"]

    k, d = params.n_experts, params.n_features
    ops = make_ops("numpy", X[None], y[None])
    rows = np.arange(1, dtype=np.int64)
    P0 = as_batched(params, 1)
    floors = np.array([floor])
    lo, hi = ParameterSpace().box(ParamLayout(gate, k, d), floors)
    resp, _, _ = ops.e_step(gate, P0, rows)
    after_experts = P0.copy()
    expert_step(ops, resp, after_experts, rows, floors, np.inf, np.inf)

    def do_expert_step():
        P = P0.copy()
        expert_step(ops, resp, P, rows, floors, np.inf, np.inf)

    def do_gate_step():
        P = after_experts.copy()
        gate_step_batched(gate, ops, P, rows, resp, lo, hi)

    parts = {
        "e_step": time_call(lambda: ops.e_step(gate, P0, rows), min_time=min_time / 3),
        "expert_m_step": time_call(do_expert_step, min_time=min_time / 3),
        "gate_step": time_call(do_gate_step, min_time=min_time / 3),
    }
    return total, {name: t["median_s"] for name, t in parts.items()}


def fit_ours(k, init, X, y, backend="numpy"):
    est = GaussianMoE(k, gate="softmax", solver="em", tol=TOL, max_iter=MAX_ITER, init=init,
                      backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    return est, sorted({f"{w.category.__name__}: {w.message}" for w in caught})


def profile_rows(prof):
    """A cProfile's functions as dicts (by own time, largest first) and the total own time."""
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in pstats.Stats(prof).stats.items():
        short = f"{Path(file).name}:{line}({func})" if file != "~" else func
        rows.append({"function": short, "ncalls": nc, "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows, sum(r["tottime_s"] for r in rows)


def profile_fit(gate, X, y, init, floor, top=12):
    """cProfile of ``fit_em`` from ``init`` (NumPy backend, EM to ``TOL`` then the
    certifying finish): the top functions by own time, and call counts."""
    prof = cProfile.Profile()
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        prof.enable()
        trace = fit_em(gate, X, y, init, tol=TOL, max_iter=MAX_ITER, var_floor=floor,
                       backend="numpy")
        prof.disable()
    rows, total = profile_rows(prof)

    def calls(name):
        return sum(r["ncalls"] for r in rows if r["function"].endswith(f"({name})"))

    cum = {name: max((r["cumtime_s"] for r in rows if r["function"].endswith(f"({name})")),
                     default=0.0)
           for name in ("fit_em_batched", "e_step", "expert_step", "gate_step_batched",
                        "softmax_newton", "neg_hessian", "q_eval", "weighted_statistics",
                        "newton_finish", "observed_derivatives", "row_logsumexp", "einsum")}
    cert = trace.certificate
    return {
        "n_iter": trace.n_iter,
        "passes": trace.passes,
        "certified": None if cert is None else bool(cert.certified),
        "total_profiled_s": total,
        "cumulative_s": cum,
        # one -Hessian per Newton step of the softmax gate step (NumpyOps.neg_hessian)
        "newton_steps_per_iteration": calls("neg_hessian") / max(trace.n_iter, 1),
        # gate objective evaluations: the first of a step plus every step-halving trial
        "gate_objective_evals_per_iteration": calls("q_eval") / max(trace.n_iter, 1),
        "top_by_own_time": rows[:top],
    }


# --------------------------------------------------------------------------- flexmix
def flexmix_status(disabled: bool):
    """(available, reason, info) for the flexmix comparison."""
    if disabled:
        return False, "disabled with --no-flexmix", {}
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False, "Rscript not found on PATH", {}
    probe = ('ok <- suppressWarnings(suppressPackageStartupMessages(requireNamespace("flexmix", '
             'quietly = TRUE))); if (!ok) quit(status = 3); cat(R.version.string, "|", '
             'as.character(packageVersion("flexmix")), "|", extSoftVersion()[["BLAS"]], "\\n")')
    try:
        res = subprocess.run([rscript, "-e", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Rscript could not be run: {exc}", {}
    if res.returncode == 3:
        return False, "the R package flexmix is not installed (library(flexmix) fails)", {}
    if res.returncode != 0:
        return False, f"Rscript failed: {res.stderr.strip()[-300:]}", {}
    parts = [p.strip() for p in res.stdout.strip().split("|")]
    return True, "", {"rscript": rscript, "r_version": parts[0],
                      "flexmix_version": parts[1] if len(parts) > 1 else None,
                      "r_blas": parts[2] if len(parts) > 2 else None}


def run_flexmix(X, y, resp0, k, *, reps, timeout, workdir):
    n, d = X.shape
    data_path = Path(workdir) / f"data_n{n}_k{k}_d{d}.csv"
    out_path = Path(workdir) / f"flexmix_n{n}_k{k}_d{d}.json"
    cols = np.column_stack([y, X, resp0])
    header = ",".join(["y"] + [f"x{j + 1}" for j in range(d)] + [f"c{j + 1}" for j in range(k)])
    np.savetxt(data_path, cols, delimiter=",", header=header, comments="", fmt="%.17g")
    cmd = [shutil.which("Rscript"), str(R_SCRIPT), str(data_path), str(k), repr(TOL),
           str(MAX_ITER), str(reps), str(out_path)]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"Rscript did not finish in {timeout} s"}
    wall = time.perf_counter() - t0
    if res.returncode != 0 or not out_path.exists():
        return {"status": "failed", "reason": (res.stderr or res.stdout).strip()[-500:]}
    out = json.loads(out_path.read_text())
    out["status"] = "ok"
    out["time_s"] = float(statistics.median(out["elapsed_s"]))
    out["rscript_wall_s"] = wall  # includes R start-up, loading flexmix, reading the CSV
    return out


def flexmix_params(fx, d):
    """flexmix's solution as MoEParams (gate moved to moestats' last-expert reference)."""
    comp = np.asarray(fx["components_by_column"], dtype=float)   # (k, d + 2): b, a_1..a_d, sigma
    gate = np.asarray(fx["gate_coef_by_column"], dtype=float)    # (k, d + 1): beta_0, beta_1
    return MoEParams.with_reference_gate(
        gate_coef=gate[:, 1:], gate_intercept=gate[:, 0],
        expert_coef=comp[:, 1:d + 1], expert_intercept=comp[:, 0],
        expert_var=comp[:, d + 1] ** 2)


# --------------------------------------------------------------------------- machine
def _nproc():
    """What ``nproc`` prints (the CPUs this process may run on)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        return int(subprocess.run(["nproc"], capture_output=True, text=True,
                                  timeout=10).stdout.strip())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def machine_info():
    from moestats.simulation.machine import numba_target
    info = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "nproc": _nproc(),
        "cpu_model": None,
        "numba_target": numba_target(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit_learn": sklearn.__version__,
        "moestats": moestats.__version__,
        "threadpoolctl": None,
        "thread_env": {v: os.environ.get(v) for v in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(v)},
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    if info["numba_target"]:  # the compiled kernels' target: what the last bits depend on
        info["cpu_model"] = f"{info['cpu_model']} (Numba target {info['numba_target']})"
    try:
        import threadpoolctl
        info["threadpoolctl"] = {"version": threadpoolctl.__version__,
                                 "pools": threadpoolctl.threadpool_info()}
    except ImportError:
        info["threadpoolctl"] = "not installed"
    return info


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its
    children, wall time), to measure how much CPU *other* processes used meanwhile."""
    busy = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)       # idle + iowait
        busy = (sum(ticks[:8]) - idle) / _CLK_TCK                  # guest time is in user
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return busy, own, time.perf_counter()


def other_cores(before, after):
    """Average number of cores other processes kept busy between two snapshots."""
    if before[0] is None or after[0] is None or after[2] <= before[2]:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / (after[2] - before[2]))


def wait_for_quiet(max_wait, threshold, log):
    """Wait (at most ``max_wait`` s) until other processes use < ``threshold`` cores over 1 s."""
    start = time.perf_counter()
    while True:
        snap = cpu_snapshot()
        time.sleep(1.0)
        busy = other_cores(snap, cpu_snapshot())
        waited = time.perf_counter() - start
        if busy is None or busy < threshold or waited >= max_wait:
            if waited > 1.5:
                log(f"waited {waited:.0f} s for other processes to go quiet "
                    f"(now {busy if busy is None else round(busy, 2)} cores busy)")
            return busy, waited


# --------------------------------------------------------------------------- one case
def bench_case(n, k, d, *, quick, flexmix_ok, flexmix_timeout, flexmix_max_n, workdir, log):
    snap0 = cpu_snapshot()
    gate = SoftmaxGate()
    truth = true_model(k, d)
    X, y = truth.sample(n, np.random.default_rng([DATA_SEED, n, k, d]))
    var_y = float(np.var(y))
    floor = 1e-6 * var_y if var_y > 0 else 1e-12      # GaussianMoE's var_floor="auto"

    # the k-means start, exactly as GaussianMoE's kmeans_init builds it
    def make_start():
        labels = kmeans_labels(X, y, k, np.random.default_rng([INIT_SEED, n, k, d]))
        resp0 = smoothed_one_hot(labels, k)
        return resp0, init_from_responsibilities(gate, X, y, resp0, floor)

    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        t0 = time.perf_counter()
        resp0, init = make_start()
        init_s = time.perf_counter() - t0
        reference = kmeans_init(gate, X, y, k, np.random.default_rng([INIT_SEED, n, k, d]), floor)
    init_matches = bool(reference.allclose(init, rtol=1e-12, atol=1e-12))

    min_time = 0.3 if quick else 1.5
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        iter_start, parts_start = time_em_iteration(gate, init, X, y, floor, min_time)

    # full fit from the same start (deterministic: every repetition gives the same fit)
    fit_reps = 3 if quick else (5 if n <= 10_000 else 3)
    fit_times, est, fit_warnings = [], None, []
    for _ in range(fit_reps):
        t0 = time.perf_counter()
        est, fit_warnings = fit_ours(k, init, X, y)
        fit_times.append(time.perf_counter() - t0)
    fit_s = float(np.median(fit_times))
    # the same fit on the Numba backend (compiled kernels; warmed up in main())
    numba_times, est_numba = [], None
    for _ in range(fit_reps):
        t0 = time.perf_counter()
        est_numba, _ = fit_ours(k, init, X, y, backend="numba")
        numba_times.append(time.perf_counter() - t0)

    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        iter_end, parts_end = time_em_iteration(gate, est.params_, X, y, floor, min_time)
        ll_truth = log_likelihood(gate, truth.params, X, y)
        ll_init = log_likelihood(gate, init, X, y)

    ours = {
        "init_s": init_s,
        "init_matches_kmeans_init": init_matches,
        "iter_method": ("median of fit_em(tol=0, max_iter=1, certify=False) minus median of "
                        "max_iter=0 (NumPy backend)"),
        "iter_ms_start": 1e3 * iter_start["median_s"],
        "iter_ms_start_iqr": [1e3 * iter_start["q25_s"], 1e3 * iter_start["q75_s"]],
        "iter_reps_start": iter_start["reps"],
        "iter_parts_ms_start": {key: 1e3 * v for key, v in parts_start.items()},
        "iter_ms_converged": 1e3 * iter_end["median_s"],
        "iter_ms_converged_iqr": [1e3 * iter_end["q25_s"], 1e3 * iter_end["q75_s"]],
        "iter_reps_converged": iter_end["reps"],
        "iter_parts_ms_converged": {key: 1e3 * v for key, v in parts_end.items()},
        "fit_s": fit_s,
        "fit_s_all": fit_times,
        "fit_numba_s": float(np.median(numba_times)),
        "n_iter_numba": int(est_numba.n_iter_),
        "log_likelihood_numba": float(est_numba.log_likelihood_),
        "fit_ms_per_iter": 1e3 * fit_s / max(est.n_iter_, 1),
        "n_iter": int(est.n_iter_),
        "log_likelihood": float(est.log_likelihood_),
        "log_likelihood_init": ll_init,
        "log_likelihood_truth": ll_truth,
        "converged": bool(est.converged_),
        "n_passes": int(est.n_passes_),
        "certificate": None if est.certificate_ is None else est.certificate_.as_dict(),
        "warnings": fit_warnings,
        "params": est.params_.as_dict(),
    }

    other_ours = other_cores(snap0, cpu_snapshot())
    ours["other_processes_cores"] = other_ours

    fx = {"status": "skipped", "reason": flexmix_ok[1]} if not flexmix_ok[0] else None
    if fx is None and n > flexmix_max_n:
        fx = {"status": "skipped", "reason": f"n = {n} > --flexmix-max-n = {flexmix_max_n}"}
    if fx is None:
        fx_reps = 3 if n <= 10_000 else 1
        snap1 = cpu_snapshot()
        fx = run_flexmix(X, y, resp0, k, reps=fx_reps, timeout=flexmix_timeout, workdir=workdir)
        # the Rscript child is counted in our own CPU time once it has been waited for
        fx["other_processes_cores"] = other_cores(snap1, cpu_snapshot())
        if fx["status"] == "ok":
            fx["ms_per_iter"] = 1e3 * fx["time_s"] / max(fx["iter"], 1)
            fx["ll_diff_ours_minus_flexmix"] = ours["log_likelihood"] - fx["logLik"]
            try:
                p_fx = flexmix_params(fx, d)
                fx["ll_moestats_at_flexmix_params"] = log_likelihood(gate, p_fx, X, y)
                # flexmix's sigma^2 is sum(r e^2) / sum(r) * n / (n - rank): undo the factor
                rank = d + 1
                p_mle_var = p_fx.replace(expert_var=p_fx.expert_var * (n - rank) / n)
                fx["ll_moestats_at_flexmix_params_mle_var"] = log_likelihood(gate, p_mle_var, X, y)
                est_fx, _ = fit_ours(k, p_fx, X, y)
                fx["moestats_em_from_flexmix_solution"] = {
                    "log_likelihood": float(est_fx.log_likelihood_),
                    "n_iter": int(est_fx.n_iter_)}
                fx["max_abs_param_diff_vs_ours"] = {
                    name: float(np.max(np.abs(getattr(p_fx, name) - getattr(est.params_, name))))
                    for name in ("gate_coef", "gate_intercept", "expert_coef",
                                 "expert_intercept", "expert_var")}
            except Exception as exc:  # a diagnostic only; never lose the timing
                fx["diagnostics_error"] = repr(exc)
    ours_line = (f"ours {ours['iter_ms_start']:8.2f} ms/iter, fit {fit_s:7.3f} s, "
                 f"{ours['n_iter']:4d} it, LL {ours['log_likelihood']:.4f}")
    fx_line = (f"flexmix {fx['time_s']:7.3f} s, {fx['iter']:4d} it, LL {fx['logLik']:.4f}"
               if fx["status"] == "ok" else f"flexmix {fx['status']} ({fx.get('reason', '')[:60]})")
    busy = f" [other processes: {other_ours:.2f} cores]" if other_ours is not None else ""
    log(f"n={n:>6} k={k} d={d}: {ours_line} | {fx_line}{busy}")
    return {"n": n, "k": k, "d": d, "var_floor": floor, "truth": truth.params.as_dict(),
            "moestats": ours, "flexmix": fx}


# --------------------------------------------------------------------------- tables
TABLE_COLUMNS = [
    ("n", "n"), ("k", "k"), ("d", "d"),
    ("ours_iter_ms_start", "ours ms/iter (start)"),
    ("ours_iter_ms_converged", "ours ms/iter (at solution)"),
    ("ours_fit_s", "ours fit s"), ("ours_numba_fit_s", "ours fit s (numba)"),
    ("ours_fit_ms_per_iter", "ours fit ms/iter"),
    ("ours_n_iter", "ours iters"), ("ours_passes", "ours passes"), ("ours_ll", "ours LL"),
    ("ours_converged", "ours certified"),
    ("flexmix_s", "flexmix s"), ("flexmix_ms_per_iter", "flexmix ms/iter"),
    ("flexmix_iter", "flexmix iters"), ("flexmix_ll", "flexmix LL"),
    ("ll_diff", "LL ours - flexmix"), ("speedup", "flexmix s / ours s"),
    ("busy", "other procs (cores)"),
]


def table_rows(cases):
    rows = []
    for c in cases:
        o, f = c["moestats"], c["flexmix"]
        ok = f["status"] == "ok"
        rows.append({
            "n": c["n"], "k": c["k"], "d": c["d"],
            "ours_iter_ms_start": round(o["iter_ms_start"], 3),
            "ours_iter_ms_converged": round(o["iter_ms_converged"], 3),
            "ours_fit_s": round(o["fit_s"], 4),
            "ours_numba_fit_s": round(o["fit_numba_s"], 4),
            "ours_fit_ms_per_iter": round(o["fit_ms_per_iter"], 3),
            "ours_n_iter": o["n_iter"], "ours_passes": o.get("n_passes", ""),
            "ours_ll": round(o["log_likelihood"], 4),
            "ours_converged": o["converged"],
            "flexmix_s": round(f["time_s"], 3) if ok else f["status"],
            "flexmix_ms_per_iter": round(f["ms_per_iter"], 2) if ok else "",
            "flexmix_iter": f["iter"] if ok else "",
            "flexmix_ll": round(f["logLik"], 4) if ok else "",
            "ll_diff": round(f["ll_diff_ours_minus_flexmix"], 4) if ok else "",
            "speedup": round(f["time_s"] / o["fit_s"], 1) if ok else "",
            "busy": "" if o.get("other_processes_cores") is None else round(o["other_processes_cores"], 2),
        })
    return rows


def write_tables(result, out_json: Path):
    rows = table_rows(result["cases"])
    csv_path = out_json.with_suffix(".csv")
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[key for key, _ in TABLE_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    md = io.StringIO()
    m = result["machine"]
    md.write(f"# EM benchmark ({'quick' if result['config']['quick'] else 'full'} run, "
             f"{m['timestamp_utc']})\n\n")
    threads = result["config"]["blas_threads"]
    md.write(f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs (nproc {m.get('nproc')}); "
             f"Python {m['python']}, "
             f"numpy {m['numpy']}, scipy {m['scipy']}, moestats {m['moestats']}; BLAS threads "
             f"{threads if threads > 0 else 'library default'}; Numba threads "
             f"{result['config'].get('numba_threads')}; "
             f"load average at start/end {result['load_average_start']} / "
             f"{result['load_average_end']}.\n")
    fxi = result["flexmix"]
    md.write(f"flexmix: {'available (' + fxi['info'].get('r_version', '') + ', flexmix ' + str(fxi['info'].get('flexmix_version')) + ')' if fxi['available'] else 'skipped: ' + fxi['reason']}.\n\n")
    md.write("| " + " | ".join(label for _, label in TABLE_COLUMNS) + " |\n")
    md.write("|" + "---|" * len(TABLE_COLUMNS) + "\n")
    for r in rows:
        md.write("| " + " | ".join(str(r[key]) for key, _ in TABLE_COLUMNS) + " |\n")
    md.write("\nOurs: `GaussianMoE(k, gate='softmax', solver='em', tol=1e-6, max_iter=2000)` from "
             "the k-means start (EM to tol, then the second-order finish; 'certified' is the "
             "stationarity certificate, 'passes' the passes over the data of the whole fit); "
             "ms/iter is one iteration of the engine on the NumPy backend (median time of "
             "`fit_em(tol=0, max_iter=1, certify=False)` minus that of `max_iter=0`: expert step, "
             "gate step and E-step), at the start and at the fitted solution; fit s is the median "
             "wall time of `.fit` from that start (start-up excluded). flexmix: `system.time` "
             "around the "
             "`flexmix()` call only, started from the same smoothed k-means labels "
             "(`cluster =`); its iteration count includes the M-step from those labels, which "
             "moestats does in the start itself. LL = observed log-likelihood. 'other procs' is "
             "the average number of cores other processes used while our part of the case ran "
             "(a value well above 0 means the timings of that row are inflated).\n")
    md.write("\n## Where the time of one EM iteration goes (ms, at the start)\n\n")
    md.write("| n | k | d | E-step | expert step | gate step (Newton) | total |\n|---|---|---|---|---|---|---|\n")
    for c in result["cases"]:
        p = c["moestats"]["iter_parts_ms_start"]
        md.write(f"| {c['n']} | {c['k']} | {c['d']} | {p['e_step']:.2f} | "
                 f"{p['expert_m_step']:.2f} | {p['gate_step']:.2f} | "
                 f"{c['moestats']['iter_ms_start']:.2f} |\n")
    prof = result.get("profile")
    if prof:
        md.write(f"\n## cProfile of one fit (n={prof['n']}, k={prof['k']}, d={prof['d']}, "
                 f"NumPy backend, {prof['n_iter']} EM iterations, "
                 f"{prof['newton_steps_per_iteration']:.1f} Newton steps and "
                 f"{prof['gate_objective_evals_per_iteration']:.1f} gate objective evaluations "
                 f"per iteration, {prof.get('passes')} passes over the data in all, finish "
                 f"included; certified: {prof.get('certified')})\n\n"
                 "| function | calls | own s | cumulative s |\n"
                 "|---|---|---|---|\n")
        for r in prof["top_by_own_time"]:
            md.write(f"| `{r['function']}` | {r['ncalls']} | {r['tottime_s']:.3f} | "
                     f"{r['cumtime_s']:.3f} |\n")
    out_json.with_suffix(".md").write_text(md.getvalue())
    return csv_path, out_json.with_suffix(".md")


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 1e3 only (under a minute)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    ap.add_argument("--no-flexmix", action="store_true", help="skip the flexmix comparison")
    ap.add_argument("--flexmix-max-n", type=int, default=100_000,
                    help="skip flexmix above this n (default: run it everywhere)")
    ap.add_argument("--flexmix-timeout", type=float, default=600.0,
                    help="seconds allowed for one Rscript run")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile of the largest case")
    ap.add_argument("--max-wait", type=float, default=None,
                    help="before each case, wait up to this many seconds for other processes "
                         "to leave the CPUs (default 30, 5 with --quick; 0 disables)")
    ap.add_argument("--quiet-threshold", type=float, default=0.3,
                    help="cores other processes may use for the machine to count as quiet")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS/OpenMP threads of this process, set with threadpoolctl "
                         "(default 1, like R's single-threaded reference BLAS that flexmix "
                         "uses; 0 leaves the library default, e.g. one per core)")
    ap.add_argument("--numba-threads", type=int, default=1,
                    help="Numba threads of the numba fits (default 1: with another process "
                         "on one of two cores, 2 threads add milliseconds per kernel call; "
                         "0 keeps Numba's default)")
    args = ap.parse_args(argv)
    if args.max_wait is None:
        args.max_wait = 5.0 if args.quick else 30.0
    args.default_threadpools = None
    limiter = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
        args.default_threadpools = threadpool_info()
        if args.blas_threads > 0:
            limiter = threadpool_limits(args.blas_threads)
    except ImportError:
        if args.blas_threads > 0:
            print("threadpoolctl is not installed: --blas-threads ignored", file=sys.stderr)
    with limiter:
        return _run(args)


def _run(args):

    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)  # noqa: E731
    ns = NS_QUICK if args.quick else NS_FULL
    load_start = load_average()
    avail, reason, rinfo = flexmix_status(args.no_flexmix)
    log("flexmix: " + (f"available ({rinfo.get('r_version')}, flexmix {rinfo.get('flexmix_version')})"
                       if avail else f"skipped ({reason})"))

    numba_threads = None
    with contextlib.suppress(Exception):
        from moestats.backends import numba_kernels as nk
        if args.numba_threads > 0:
            nk.set_num_threads(args.numba_threads)
        numba_threads = nk.get_num_threads()
    t0 = time.perf_counter()
    X_w, y_w = true_model(2, 1).sample(500, np.random.default_rng(0))
    fit_ours(2, "kmeans", X_w, y_w, backend="numba")  # compile or load the Numba kernels
    log(f"numba kernels ready in {time.perf_counter() - t0:.1f} s")

    cases = []
    with tempfile.TemporaryDirectory(prefix="bench_em_") as workdir:
        for n in ns:
            for k in KS:
                for d in DS:
                    busy, waited = (wait_for_quiet(args.max_wait, args.quiet_threshold, log)
                                    if args.max_wait > 0 else (None, 0.0))
                    case = bench_case(n, k, d, quick=args.quick, flexmix_ok=(avail, reason),
                                      flexmix_timeout=args.flexmix_timeout,
                                      flexmix_max_n=args.flexmix_max_n, workdir=workdir, log=log)
                    case["waited_for_quiet_s"] = waited
                    case["other_processes_cores_before"] = busy
                    cases.append(case)

    profile = None
    if not args.no_profile:
        n, k, d = ns[-1], KS[-1], DS[-1]
        truth = true_model(k, d)
        X, y = truth.sample(n, np.random.default_rng([DATA_SEED, n, k, d]))
        floor = 1e-6 * float(np.var(y))
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            init = kmeans_init(SoftmaxGate(), X, y, k, np.random.default_rng([INIT_SEED, n, k, d]),
                               floor)
        profile = {"n": n, "k": k, "d": d, **profile_fit(SoftmaxGate(), X, y, init, floor)}
        log(f"profiled the fit at n={n}, k={k}, d={d}")

    result = {
        "benchmark": "bench_em",
        "description": ("Time per EM iteration and per full fit of GaussianMoE (softmax gate, "
                        "solver='em'), and flexmix on the same data from the same start."),
        "config": {
            "quick": args.quick, "blas_threads": args.blas_threads,
            "numba_threads": numba_threads,
            "max_wait": args.max_wait, "quiet_threshold": args.quiet_threshold, "ns": list(ns), "ks": list(KS), "ds": list(DS),
            "tol": TOL, "max_iter": MAX_ITER, "data_seed": DATA_SEED, "init_seed": INIT_SEED,
            "design": "X ~ U[-1, 1]^d", "label_smoothing": LABEL_SMOOTHING,
            "flexmix_call": ("flexmix(y ~ x1 + ..., k = k, cluster = <smoothed k-means labels>, "
                             "model = FLXMRglm(family = 'gaussian'), concomitant = "
                             "FLXPmultinom(~ x1 + ...), control = list(minprior = 0, "
                             "tolerance = 1e-6, iter.max = 2000))"),
            "stopping_rules": {
                "moestats": "|ll_t - ll_{t-1}| <= tol * |ll_{t-1}|",
                "flexmix": "|ll_t - ll_{t-1}| / (|ll_t| + 0.1) < tolerance",
            },
        },
        "machine": {**machine_info(), "threadpools_before_limit": args.default_threadpools},
        "flexmix": {"available": avail, "reason": reason, "info": rinfo},
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "total_wall_s": None,
        "cases": cases,
        "profile": profile,
    }
    result["total_wall_s"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    csv_path, md_path = write_tables(result, args.out)
    log(f"wrote {args.out}, {csv_path.name} and {md_path.name}")
    print(md_path.read_text())


if __name__ == "__main__":
    main()
