"""Benchmark of the certified EM engine: cost per iteration of every gate family, and
passes to a stationarity certificate with and without the second-order finish.

Run from the repository root::

    python benchmarks/bench_engine.py --quick   # smoke form, under a minute
    python benchmarks/bench_engine.py           # full form, about 22 min on 2 cores
    python benchmarks/bench_engine.py --plain-r-1e4 40   # R = 40 at n = 1e4: about 30 min
    python benchmarks/bench_engine.py --part certificate --no-plain   # accelerated only, ~1.5 min
    python benchmarks/bench_engine.py --part families --out /tmp/engine.json

Parts:

a. **families** -- nanoseconds per sample-iteration of EM (``fit_em_batched(...,
   tol=-1, max_iter=iters, certify=False)``: a negative tol is never met, so exactly
   ``iters`` iterations run; timed from the point reached by ``warmup`` iterations (on
   numba) from a start near the truth; wall time divided by n x R x the EM
   iterations, nothing subtracted; the median of 2 runs on numba, 1 on numpy)
   at n = 1e4, R = 40, for k = 2, 3 and d = 1, 5, for the gate families softmax,
   top-1, top-2 (k = 3), temperature with a fixed and with a learned tau, and tanh
   activation with a learned tau, on the "numba" and "numpy" backends; with the
   passes over the data per EM iteration (``FitTrace.passes``, less the start's
   E-step) and the ratio to softmax in the same (k, d, backend). Target (issue):
   every family within 2x of softmax per sample-iteration.
b. **certificate** -- the softmax-over setup (truth k* = 2, d = 1), fitted k = 3 and 4,
   n = 1e4 and 5e4 (R = 10 each; ``--plain-r-1e4 40`` for 40 at 1e4), the papers'
   near-truth starts
   (``near_truth_init``), parameter space ``THEORY_SPACE``, backend "numba":

   - *accelerated*: the engine's default (EM to relative tol 1e-6, then the
     trust-region Newton finish and the certificate): passes, wall time, certified
     fraction, log-likelihood;
   - *plain EM*: EM only (``certify=False``, ``tol=0``), continued in chunks; after each
     chunk the certificate is computed at the current point (``observed_derivatives`` +
     ``certify``, same box and tolerance); stop when certified or at ``--max-plain-iter``
     (30,000) iterations. A replication whose EM iteration leaves the log-likelihood
     bit-for-bit unchanged stops inside its chunk ("stalled": EM at a fixed point of its
     own map, e.g. with the gate step no longer moving) and is checked with the others.
     Reported: EM iterations and passes to the certificate, stalls, wall time, and the
     log-likelihood gap to the accelerated fit.

   Target (issue): the median accelerated fit certified in <= 200 passes.
c. **machine** -- CPU model, cores (``nproc``), load averages before and after,
   Numba version and thread count, versions, the git commit and the hashes of the
   engine's modules at start and end (the checkout may be edited while this runs).

Results: ``benchmarks/results/bench_engine.json`` and ``.md`` (rewritten after every
finished table, ``"status": "partial"`` until the end).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# contention measurement and machine description: shared with bench_em
from bench_em import cpu_snapshot, load_average, machine_info, other_cores  # noqa: E402

import moestats  # noqa: E402
from moestats import MoEParams, TrueModel, UniformDesign  # noqa: E402
from moestats.gates import ActivationGate, SoftmaxGate, TemperatureGate, TopKGate  # noqa: E402
from moestats.sampling import near_truth_init  # noqa: E402
from moestats.setups import get_setup  # noqa: E402
from moestats.solvers import THEORY_SPACE, ParamLayout, fit_em_batched  # noqa: E402
from moestats.solvers.batched_params import BatchedParams  # noqa: E402
from moestats.solvers.certify import certify  # noqa: E402
from moestats.solvers.derivatives import observed_derivatives  # noqa: E402

DEFAULT_OUT = HERE / "results" / "bench_engine.json"
SEED_A = 20240701
SEED_B = 20240702
TARGET_RATIO = 2.0
TARGET_PASSES = 200
CERTIFY_TOL = 1e-3
ACC_TOL = 1e-6
ACC_MAX_ITER = 2000
#: cumulative EM iterations after which plain EM's certificate is checked
CHECKPOINTS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500,
               10000, 15000, 20000, 25000, 30000)

FULL = {
    "a": {"n": 10_000, "R": 40, "ks": (2, 3), "ds": (1, 5), "warmup": 5, "iters": 20,
          "reps": {"numba": 2, "numpy": 1}},
    "b": {"ns": (10_000, 50_000), "R": {10_000: 10, 50_000: 10}, "ks": (3, 4),
          "max_plain_iter": 30_000},
}
QUICK = {
    "a": {"n": 2_000, "R": 8, "ks": (2, 3), "ds": (1,), "warmup": 2, "iters": 5,
          "reps": {"numba": 1, "numpy": 1}},
    "b": {"ns": (2_000,), "R": {2_000: 4}, "ks": (3,), "max_plain_iter": 3_000},
}

FAMILIES = ("softmax", "top-1", "top-2", "temperature (fixed tau)",
            "temperature (learned tau)", "tanh (learned tau)")


# --------------------------------------------------------------------------- truths
def _directions(d):
    u = np.ones(d) / np.sqrt(d)
    v = np.array([(-1.0) ** j for j in range(d)]) / np.sqrt(d)
    return u, v, np.zeros(d)


def base_params(k, d):
    """The softmax truth of ``bench_em.true_model`` (k = 2, 3), X ~ U[-1, 1]^d.

    k = 2: gate logits (4 u.x + 0.3, 0); experts 2 u.x + 2, -2 u.x - 2 (variances 0.1,
    0.2). k = 3: gate logits (4 u.x, -4 u.x, 0); experts 2 u.x + 3, -2 u.x - 3, 2 v.x
    (variances 0.1, 0.15, 0.2); u = (1, ..., 1)/sqrt(d), v = (1, -1, 1, ...)/sqrt(d).
    """
    u, v, z = _directions(d)
    if k == 2:
        return MoEParams(gate_coef=[4 * u, z], gate_intercept=[0.3, 0.0],
                         expert_coef=[2 * u, -2 * u], expert_intercept=[2.0, -2.0],
                         expert_var=[0.1, 0.2])
    if k == 3:
        return MoEParams(gate_coef=[4 * u, -4 * u, z], gate_intercept=[0.0, 0.0, 0.0],
                         expert_coef=[2 * u, -2 * u, 2 * v], expert_intercept=[3.0, -3.0, 0.0],
                         expert_var=[0.1, 0.15, 0.2])
    raise ValueError(f"no truth for k = {k}")


def family_case(family, k, d):
    """(gate fitted, TrueModel, note) of a family; ``None`` where the family does not apply.

    - softmax: :func:`base_params`;
    - top-1: the base experts, beta_0 = 0 (it does not enter a top-1 density), gate
      slopes (4u, 0) for k = 2; for k = 3 (4u, 4v, 0) when d > 1, and (4u, -4u, 0) when
      d = 1, where a top-1 gate with three slopes never selects the middle one (the
      third expert is then idle in the truth and in the fit);
    - top-2 (k = 3 only): the base softmax parameters under a top-2 gate;
    - temperature (fixed or learned tau) and tanh activation (learned tau): the base
      parameters with the gate slopes halved and tau = 0.5 (for the identity
      activation, the same density as softmax); the fitted gate starts at tau = 0.5.
    """
    base = base_params(k, d)
    design = UniformDesign(-1.0, 1.0, d)
    note = ""
    if family == "softmax":
        return SoftmaxGate(), TrueModel(base, SoftmaxGate(), design), note
    if family == "top-1":
        u, v, z = _directions(d)
        if k == 2:
            slopes = [4 * u, z]
        elif d > 1:
            slopes = [4 * u, 4 * v, z]
        else:
            slopes = [4 * u, -4 * u, z]
            note = "d = 1: the middle slope (expert 3) is never selected"
        params = base.replace(gate_coef=slopes, gate_intercept=np.zeros(k))
        return TopKGate(1), TrueModel(params, TopKGate(1), design), note
    if family == "top-2":
        if k < 3:
            return None
        return TopKGate(2), TrueModel(base, TopKGate(2), design), note
    half = base.replace(gate_coef=0.5 * base.gate_coef, temperature=0.5)
    if family == "temperature (fixed tau)":
        return TemperatureGate(0.5), TrueModel(half, TemperatureGate(0.5), design), note
    if family == "temperature (learned tau)":
        return (TemperatureGate(0.5, learn_temperature=True),
                TrueModel(half, TemperatureGate(0.5), design),
                "(beta_1, tau) not separately identifiable (identity activation)")
    if family == "tanh (learned tau)":
        return (ActivationGate("tanh", 0.5, learn_temperature=True),
                TrueModel(half, ActivationGate("tanh", 0.5), design), note)
    raise ValueError(family)


def family_batch(family_index, gate, truth, k, n, R):
    """R replications of ``truth`` and near-truth starts; var floors 1e-6 var(y)."""
    d = truth.params.n_features
    X = np.empty((R, n, d))
    y = np.empty((R, n))
    inits = []
    for r in range(R):
        rng = np.random.default_rng([SEED_A, family_index, k, d, n, r])
        X[r], y[r] = truth.sample(n, rng)
        inits.append(near_truth_init(truth.params, k, n, rng,
                                     fit_intercept=gate.fits_intercept,
                                     perturb_temperature=gate.learns_temperature)[0])
    return X, y, inits, 1e-6 * y.var(axis=1)


# --------------------------------------------------------------------------- part a
#: EM's stopping rule |l_t - l_{t-1}| <= tol |l_{t-1}| is never met with tol < 0, so every
#: replication runs exactly max_iter iterations, also where an iteration leaves the
#: likelihood exactly unchanged (a top-1 gate's likelihood is piecewise constant)
FIXED_ITER_TOL = -1.0


def _em(gate, X, y, init, floors, backend, m):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_em_batched(gate, X, y, init, tol=FIXED_ITER_TOL, max_iter=m,
                              var_floor=floors, certify=False, backend=backend,
                              on_error="record")


def warm_up(gate, X, y, inits, floors, backend, cfg):
    """``warmup`` EM iterations from the starts (compiles any Numba kernel): their endpoint."""
    t0 = time.perf_counter()
    warm = _em(gate, X, y, inits, floors, backend, cfg["warmup"])
    return [t.params for t in warm], {"warmup_s": time.perf_counter() - t0,
                                      "warmup_backend": backend,
                                      "warmup_errors": sum("error" in t.events for t in warm)}


def time_family(gate, X, y, start, floors, backend, cfg):
    """``reps`` timed runs of ``iters`` EM iterations from ``start``."""
    R, n = y.shape
    out = {"backend": backend}
    try:
        times, snap = [], cpu_snapshot()
        for _ in range(cfg["reps"][backend]):
            t0 = time.perf_counter()
            traces = _em(gate, X, y, start, floors, backend, cfg["iters"])
            times.append(time.perf_counter() - t0)
        busy = other_cores(snap, cpu_snapshot())
    except Exception as exc:   # a family that fails must not stop the benchmark
        out["error"] = f"{type(exc).__name__}: {exc}"[:400]
        return out
    iters = np.array([t.n_iter for t in traces])
    passes = np.array([t.passes for t in traces])
    sample_iters = float(n * iters.sum())
    errors = [t.events["error"] for t in traces if "error" in t.events]
    out.update({
        "times_s": times,
        "median_s": float(np.median(times)),
        "min_s": float(np.min(times)),
        "em_iterations": int(iters.sum()),
        "em_iterations_asked": int(cfg["iters"] * R),
        "min_n_iter": int(iters.min()),
        "ns_per_sample_iter": 1e9 * float(np.median(times)) / max(sample_iters, 1.0),
        "ns_per_sample_iter_min": 1e9 * float(np.min(times)) / max(sample_iters, 1.0),
        # passes of the EM loop per iteration (the start's E-step taken out)
        "passes_per_iter": float((passes - 1).sum() / max(iters.sum(), 1)),
        "passes_per_iter_raw": float(passes.sum() / max(iters.sum(), 1)),
        "errors": len(errors),
        "first_error": errors[0][:300] if errors else None,
        "mean_final_loglik_per_sample": float(np.mean(
            [t.log_likelihood for t in traces if "error" not in t.events] or [np.nan]) / n),
        "other_processes_cores": busy,
    })
    return out


def bench_families(cfg, backends, log, on_row=None):
    rows = []
    for k in cfg["ks"]:
        for d in cfg["ds"]:
            softmax_ns = {}
            for fi, family in enumerate(FAMILIES):
                case = family_case(family, k, d)
                if case is None:
                    continue
                gate, truth, note = case
                X, y, inits, floors = family_batch(fi, gate, truth, k, cfg["n"], cfg["R"])
                row = {"family": family, "k": k, "d": d, "n": cfg["n"], "R": cfg["R"],
                       "gate": repr(gate), "note": note, "backends": {}}
                # one warm-up (on the first backend), every backend timed from its endpoint
                try:
                    start, row["warmup"] = warm_up(gate, X, y, inits, floors, backends[0], cfg)
                except Exception as exc:   # noqa: BLE001 -- recorded, the run goes on
                    start = None
                    row["warmup"] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
                for backend in backends:
                    res = (time_family(gate, X, y, start, floors, backend, cfg)
                           if start is not None else
                           {"backend": backend, "error": "warm-up failed: "
                            + row["warmup"]["error"]})
                    if family == "softmax" and "error" not in res:
                        softmax_ns[backend] = res["ns_per_sample_iter"]
                    if "error" not in res and backend in softmax_ns:
                        res["ratio_to_softmax"] = res["ns_per_sample_iter"] / softmax_ns[backend]
                        res["meets_2x"] = bool(res["ratio_to_softmax"] <= TARGET_RATIO)
                    row["backends"][backend] = res
                    if "error" in res:
                        log(f"families k={k} d={d} {family:26s} {backend:5s}: ERROR {res['error']}")
                    else:
                        log(f"families k={k} d={d} {family:26s} {backend:5s}: "
                            f"{res['ns_per_sample_iter']:8.1f} ns/sample-iter "
                            f"({res.get('ratio_to_softmax', float('nan')):5.2f}x softmax), "
                            f"{res['passes_per_iter']:.2f} passes/iter, "
                            f"{res['em_iterations']}/{res['em_iterations_asked']} iterations, "
                            f"{res['errors']} failed replications"
                            + ("" if res["other_processes_cores"] is None else
                               f" [other processes {res['other_processes_cores']:.2f} cores]"))
                rows.append(row)
                if on_row:
                    on_row(rows)
    return rows


# --------------------------------------------------------------------------- part b
def over_batch(truth, k, n, R):
    """softmax-over data and the papers' near-truth starts, per replication."""
    X = np.empty((R, n, truth.params.n_features))
    y = np.empty((R, n))
    inits = []
    for r in range(R):
        rng = np.random.default_rng([SEED_B, n, k, r])
        X[r], y[r] = truth.sample(n, rng)
        inits.append(near_truth_init(truth.params, k, n, rng)[0])
    return X, y, inits, 1e-6 * y.var(axis=1)


def _summary(values):
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return None
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()),
            "mean": float(a.mean())}


def run_accelerated(gate, X, y, inits, floors):
    R = len(inits)
    snap = cpu_snapshot()
    t0 = time.perf_counter()
    traces = fit_em_batched(gate, X, y, inits, tol=ACC_TOL, max_iter=ACC_MAX_ITER,
                            var_floor=floors, space=THEORY_SPACE, backend="numba",
                            certify=True, certify_tol=CERTIFY_TOL, on_error="record")
    wall = time.perf_counter() - t0
    per = [{"passes": int(t.passes), "n_iter": int(t.n_iter), "certified": bool(t.converged),
            "log_likelihood": float(t.log_likelihood),
            "predicted_gain": None if t.certificate is None else t.certificate.predicted_gain,
            "min_eigenvalue": None if t.certificate is None else t.certificate.min_eigenvalue,
            "n_active_bounds": None if t.certificate is None else t.certificate.n_active_bounds,
            "reason": None if t.certificate is None else t.certificate.reason,
            "error": t.events.get("error")} for t in traces]
    return {
        "wall_s": wall, "wall_s_per_fit": wall / R,
        "other_processes_cores": other_cores(snap, cpu_snapshot()),
        "passes": _summary([p["passes"] for p in per]),
        "em_iterations": _summary([p["n_iter"] for p in per]),
        "certified": int(sum(p["certified"] for p in per)),
        "fraction_certified": sum(p["certified"] for p in per) / R,
        "meets_passes_target": bool(np.median([p["passes"] for p in per]) <= TARGET_PASSES),
        "per_replication": per,
    }, traces


def run_plain(gate, X, y, inits, floors, max_iter, log=None):
    """EM in chunks; the certificate after each chunk; stop when certified or at max_iter."""
    R, n, d = X.shape
    k = inits[0].n_experts
    L = ParamLayout(gate, k, d)
    lo, hi = THEORY_SPACE.box(L, floors)
    params = list(inits)
    active = np.arange(R)
    iters = np.zeros(R, dtype=int)
    passes = np.ones(R, dtype=int)       # the start's E-step, counted once
    checks = np.zeros(R, dtype=int)
    certified_at = [None] * R
    ll_at_stop = [None] * R
    gain_at_stop = [None] * R
    reason_at_stop = [""] * R
    errors = [None] * R
    stalled_at = [None] * R
    em_s = check_s = 0.0
    snap = cpu_snapshot()
    done = 0
    for cp in [c for c in CHECKPOINTS if c < max_iter] + [max_iter]:
        if active.size == 0:
            break
        t0 = time.perf_counter()
        traces = fit_em_batched(gate, X[active], y[active], [params[r] for r in active],
                                tol=0.0, max_iter=cp - done, var_floor=floors[active],
                                space=THEORY_SPACE, backend="numba", certify=False,
                                on_error="record")
        em_s += time.perf_counter() - t0
        for a, r in enumerate(active):
            params[r] = traces[a].params
            if traces[a].n_iter < cp - done and stalled_at[r] is None:
                # tol = 0 stopped it: an iteration left the log-likelihood bit-for-bit
                # unchanged (EM at its floating-point fixed point)
                stalled_at[r] = int(iters[r] + traces[a].n_iter)
            iters[r] += traces[a].n_iter
            passes[r] += traces[a].passes - 1   # the chunk's first E-step repeats the last one
            if "error" in traces[a].events:
                errors[r] = traces[a].events["error"]
        done = cp
        t0 = time.perf_counter()
        BP = BatchedParams.stack([params[r] for r in active])
        value, grad, hess = observed_derivatives(gate, X[active], y[active], BP)
        certs = certify(grad, hess, L.pack(BP), lo[active], hi[active], CERTIFY_TOL)
        check_s += time.perf_counter() - t0
        ok = np.zeros(active.size, dtype=bool)
        for a, r in enumerate(active):
            checks[r] += 1
            ll_at_stop[r] = float(value[a])
            gain_at_stop[r] = float(certs[a].predicted_gain)
            reason_at_stop[r] = certs[a].reason
            ok[a] = certs[a].certified or errors[r] is not None
            if certs[a].certified:
                certified_at[r] = int(iters[r])
        if log:
            log(f"  plain EM: {done} iterations, {int(ok.sum())} more of {R} certified, "
                f"{int((~ok).sum())} left (EM {em_s:.1f} s, checks {check_s:.1f} s)")
        active = active[~ok]
    other = other_cores(snap, cpu_snapshot())
    per = [{"certified": certified_at[r] is not None, "em_iterations": int(iters[r]),
            "em_passes": int(passes[r]), "checks": int(checks[r]),
            "log_likelihood": ll_at_stop[r], "predicted_gain": gain_at_stop[r],
            "reason": reason_at_stop[r], "error": errors[r],
            "stalled_at": stalled_at[r]} for r in range(R)]
    return {
        "max_iter": max_iter, "checkpoints": [c for c in CHECKPOINTS if c < max_iter] + [max_iter],
        "em_wall_s": em_s, "check_wall_s": check_s,
        "wall_s_per_fit": (em_s + check_s) / R,
        "other_processes_cores": other,
        "certified": int(sum(p["certified"] for p in per)),
        "fraction_certified": sum(p["certified"] for p in per) / R,
        "stalled": int(sum(p["stalled_at"] is not None for p in per)),
        "stalled_uncertified": int(sum(p["stalled_at"] is not None and not p["certified"]
                                       for p in per)),
        # iterations / passes to the certificate; a fit not certified counts with where it
        # stopped: the cap, or (stalled) one iteration per checkpoint after its stall
        "em_iterations": _summary([p["em_iterations"] for p in per]),
        "em_passes": _summary([p["em_passes"] for p in per]),
        "em_iterations_certified": _summary([p["em_iterations"] for p in per if p["certified"]]),
        "per_replication": per,
    }


def bench_certificate(cfg, log, on_row=None, plain=True):
    setup = get_setup("softmax-over")
    truth = setup.truth
    gate = SoftmaxGate()
    rows = []
    # compile (or load) every kernel of the accelerated path before anything is timed
    Xw, yw, iw, fw = over_batch(truth, 3, 500, 2)
    with warnings.catch_warnings(), np.errstate(over="ignore", under="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        run_accelerated(gate, Xw, yw, iw, fw)
        log(f"certificate: warm-up fit (n=500, R=2) {time.perf_counter() - t0:.2f} s")
    for n in cfg["ns"]:
        R = cfg["R"][n]
        for k in cfg["ks"]:
            X, y, inits, floors = over_batch(truth, k, n, R)
            with warnings.catch_warnings(), np.errstate(over="ignore", under="ignore",
                                                        divide="ignore"):
                warnings.simplefilter("ignore")
                acc, acc_traces = run_accelerated(gate, X, y, inits, floors)
                log(f"certificate k={k} n={n} R={R}: accelerated median passes "
                    f"{acc['passes']['median']:.0f} (max {acc['passes']['max']:.0f}), "
                    f"{acc['certified']}/{R} certified, {acc['wall_s_per_fit']:.3f} s per fit")
                if not plain:
                    rows.append({"setup": "softmax-over", "k": k,
                                 "k_true": truth.params.n_experts,
                                 "d": truth.params.n_features, "n": n, "R": R,
                                 "space": THEORY_SPACE.as_dict(), "certify_tol": CERTIFY_TOL,
                                 "accelerated": acc, "plain_em": None})
                    if on_row:
                        on_row(rows)
                    continue
                pl = run_plain(gate, X, y, inits, floors, cfg["max_plain_iter"], log)
            gaps = [p["log_likelihood"] - a.log_likelihood
                    for p, a in zip(pl["per_replication"], acc_traces)
                    if p["log_likelihood"] is not None]
            pl["loglik_gap_to_accelerated"] = _summary(gaps)
            pl["loglik_gap_to_accelerated_certified_only"] = _summary(
                [g for g, p in zip(gaps, pl["per_replication"]) if p["certified"]])
            row = {"setup": "softmax-over", "k": k, "k_true": truth.params.n_experts,
                   "d": truth.params.n_features, "n": n, "R": R,
                   "space": THEORY_SPACE.as_dict(), "certify_tol": CERTIFY_TOL,
                   "accelerated": acc, "plain_em": pl}
            log(f"certificate k={k} n={n} R={R}: plain EM {pl['certified']}/{R} certified, "
                f"median {pl['em_iterations']['median']:.0f} iterations "
                f"({pl['em_passes']['median']:.0f} passes), LL gap plain - accelerated "
                f"median {pl['loglik_gap_to_accelerated']['median']:.2e}")
            rows.append(row)
            if on_row:
                on_row(rows)
    return rows


# --------------------------------------------------------------------------- machine, code
ENGINE_FILES = ("moestats/solvers/batched_em.py", "moestats/solvers/gate_steps.py",
                "moestats/solvers/finish.py", "moestats/solvers/certify.py",
                "moestats/solvers/derivatives.py", "moestats/solvers/newton.py",
                "moestats/solvers/expert_step.py", "moestats/solvers/selection_search.py",
                "moestats/backends/host_ops.py", "moestats/backends/numba_kernels.py",
                "moestats/backends/numba_gates.py")


def code_state():
    """Git commit, uncommitted files and hashes of the engine's modules as imported."""
    pkg_root = Path(moestats.__file__).resolve().parent.parent
    out = {"moestats_path": str(Path(moestats.__file__).resolve().parent)}

    def git(*a):
        try:
            res = subprocess.run(["git", "-C", str(pkg_root), *a], capture_output=True,
                                 text=True, timeout=30)
            return res.stdout.rstrip() if res.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    out["git_head"] = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=all", "--", "moestats")
    out["uncommitted_moestats_files"] = status.splitlines() if status else []
    diff = git("diff", "HEAD", "--", "moestats")
    out["moestats_diff_sha256"] = (hashlib.sha256(diff.encode()).hexdigest()[:16]
                                   if diff else None)
    out["sha256"] = {}
    for rel in ENGINE_FILES:
        with contextlib.suppress(OSError):
            out["sha256"][rel] = hashlib.sha256((pkg_root / rel).read_bytes()).hexdigest()[:16]
    if out["git_head"] is None:
        # moestats imported from outside a checkout (e.g. an exported snapshot on
        # PYTHONPATH): compare its engine files with this repository's HEAD
        repo = HERE.parent
        try:
            head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                  capture_output=True, text=True, timeout=30).stdout.strip()
            same = []
            for rel, h in out["sha256"].items():
                blob = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{rel}"],
                                      capture_output=True, timeout=30)
                same.append(blob.returncode == 0
                            and hashlib.sha256(blob.stdout).hexdigest()[:16] == h)
            out["benchmark_repo_head"] = head
            out["engine_files_match_benchmark_repo_head"] = bool(same) and all(same)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return out


def numba_info(threads):
    try:
        import numba
        from moestats.backends import numba_kernels as nk
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "reason": repr(exc)}
    nk.set_num_threads(threads)
    return {"available": True, "version": numba.__version__,
            "threads_used": nk.get_num_threads(),
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
            "threading_layer": _threading_layer()}


def _threading_layer():
    import numba
    try:
        return numba.threading_layer()
    except ValueError:   # no parallel kernel has run yet
        return None


# --------------------------------------------------------------------------- output
def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def write_markdown(result, path: Path):
    m, c = result["machine"], result["config"]
    lines = [f"# Engine benchmark ({'quick' if c['quick'] else 'full'} run, "
             f"{m['timestamp_utc']}, {result['status']})", ""]
    nb = result["numba"]
    lines.append(
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, nproc {m.get('nproc')}; load "
        f"average (1, 5, 15 min) at start {_load(result['load_average_start'])}, at end "
        f"{_load(result.get('load_average_end'))}; other processes used on average "
        f"{_fmt(result.get('other_processes_cores_whole_run'), '.2f')} cores during the run. "
        f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, moestats "
        f"{m['moestats']}, numba {nb.get('version')} on {nb.get('threads_used')} thread(s) "
        f"(layer {nb.get('threading_layer')}); BLAS threads {c['blas_threads']}. Code: "
        + _code_line(result["code"]["at_start"])
        + ("" if result["code"].get("changed_during_run") is None else
           "; engine files changed on disk during the run (the run kept the versions it "
           f"imported at start): {result['code']['changed_during_run']}")
        + ".")
    lines.append("")
    fam = result.get("families")
    if fam is not None:
        a = c["a"]
        lines += [f"## a. EM cost per family (n = {a['n']}, R = {a['R']}; ns per sample-iteration)",
                  "",
                  f"`fit_em_batched(gate, X, y, start, tol=-1, max_iter={a['iters']}, "
                  f"certify=False)` (tol < 0: exactly {a['iters']} EM iterations) from the point "
                  f"reached after {a['warmup']} warm-up iterations (numba) from a near-truth "
                  "start; wall time (median of "
                  f"{a['reps']['numba']} runs on numba, {a['reps']['numpy']} on numpy) divided by "
                  "n x the EM iterations run, nothing subtracted. passes/it: "
                  "`FitTrace.passes` less the start's E-step, per EM iteration. ratio: to softmax "
                  f"in the same (k, d, backend); target <= {TARGET_RATIO:g}x.", "",
                  "| k | d | family | numba ns | numba ratio | numba passes/it | meets 2x | "
                  "numpy ns | numpy ratio | numpy passes/it | iterations run (numba) | "
                  "other procs (numba / numpy) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in fam:
            cells = [str(row["k"]), str(row["d"]), row["family"]]
            busy = []
            for backend in ("numba", "numpy"):
                r = row["backends"].get(backend)
                if r is None:
                    cells += ["-", "-", "-"] + (["-"] if backend == "numba" else [])
                    busy.append("")
                    continue
                if "error" in r:
                    cells += [f"error: {r['error'][:80]}", "", ""] + (
                        ["no"] if backend == "numba" else [])
                    busy.append("")
                    continue
                err = f" ({r['errors']} failed)" if r["errors"] else ""
                cells += [f"{r['ns_per_sample_iter']:.1f}{err}",
                          f"{r['ratio_to_softmax']:.2f}x" if "ratio_to_softmax" in r else "",
                          f"{r['passes_per_iter']:.2f}"]
                if backend == "numba":
                    cells.append("yes" if r.get("meets_2x") else "no")
                busy.append(_fmt(r["other_processes_cores"], ".2f"))
            nbr = row["backends"].get("numba", {})
            cells.append(f"{nbr.get('em_iterations', '')}/{nbr.get('em_iterations_asked', '')}"
                         if "em_iterations" in nbr else "")
            cells.append(" / ".join(busy))
            lines.append("| " + " | ".join(cells) + " |")
        notes = sorted({(row["family"], row["note"]) for row in fam if row["note"]})
        if notes:
            lines += [""] + [f"- {f}: {note}." for f, note in notes]
        meets = [row for row in fam if row["family"] != "softmax"]
        ok = [f"{r['family']} (k={r['k']}, d={r['d']})" for r in meets
              if r["backends"].get("numba", {}).get("meets_2x")]
        lines += ["", f"Within {TARGET_RATIO:g}x of softmax on numba: "
                  + (", ".join(ok) if ok else "none") + f" ({len(ok)} of {len(meets)} cases)."]
        lines.append("")
    cert = result.get("certificate")
    if cert is not None:
        b = c["b"]
        lines += ["## b. Passes to a certificate (softmax-over: k* = 2, d = 1; backend numba, "
                  "THEORY_SPACE, certify_tol 1e-3)", "",
                  "Accelerated: `fit_em_batched(..., tol=1e-6, max_iter=2000)` (EM, then the "
                  "trust-region Newton finish and the certificate). Plain EM: EM alone "
                  "(`certify=False`), the certificate computed after "
                  f"{', '.join(str(x) for x in b['checkpoints'])} iterations (`tol=0`: a "
                  "replication whose EM iteration leaves the log-likelihood bit-for-bit "
                  "unchanged stops, 'stalled', and is checked with the others; after a stall "
                  "each later chunk runs one iteration); iterations and passes are those at "
                  "the first certified check (a fit not certified counts where it stopped: the "
                  "cap, or its stall). Passes: `FitTrace.passes` (accelerated: EM and finish; "
                  "plain: "
                  "EM only, the checks' derivative passes not counted). Wall: the batch's time "
                  "/ R (plain: EM + checks). LL gap: plain EM's log-likelihood where it stopped "
                  "minus the accelerated fit's.", "",
                  "| k | n | R | acc. passes median | acc. passes max | acc. EM iters median | "
                  "acc. s/fit | acc. certified | plain certified | plain stalled, uncertified | "
                  "plain iters median (max) | "
                  "plain passes median | plain s/fit | LL gap plain - acc. median [min, max] | "
                  "other procs (acc. / plain) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in cert:
            a, p = row["accelerated"], row["plain_em"]
            if p is None:
                lines.append(
                    f"| {row['k']} | {row['n']} | {row['R']} | {a['passes']['median']:.0f} | "
                    f"{a['passes']['max']:.0f} | {a['em_iterations']['median']:.0f} | "
                    f"{a['wall_s_per_fit']:.3f} | {a['certified']}/{row['R']} | not run | | | "
                    f"| | | {_fmt(a['other_processes_cores'], '.2f')} / |")
                continue
            gap = p["loglik_gap_to_accelerated"] or {}
            stalled = p.get("stalled_uncertified")
            if stalled is None:   # results of a run before this field: where EM stopped short
                stalled = sum((not q["certified"]) and q["em_iterations"] < p["max_iter"]
                              for q in p["per_replication"])
            lines.append(
                f"| {row['k']} | {row['n']} | {row['R']} | {a['passes']['median']:.0f} | "
                f"{a['passes']['max']:.0f} | {a['em_iterations']['median']:.0f} | "
                f"{a['wall_s_per_fit']:.3f} | {a['certified']}/{row['R']} | "
                f"{p['certified']}/{row['R']} | {stalled} | "
                f"{p['em_iterations']['median']:.0f} "
                f"({p['em_iterations']['max']:.0f}) | {p['em_passes']['median']:.0f} | "
                f"{p['wall_s_per_fit']:.2f} | {_fmt(gap.get('median'), '.2e')} "
                f"[{_fmt(gap.get('min'), '.2e')}, {_fmt(gap.get('max'), '.2e')}] | "
                f"{_fmt(a['other_processes_cores'], '.2f')} / "
                f"{_fmt(p['other_processes_cores'], '.2f')} |")
        lines += ["", f"Target: median accelerated fit certified in <= {TARGET_PASSES} passes: "
                  + ", ".join(f"k={r['k']}, n={r['n']}: "
                              f"{'met' if r['accelerated']['meets_passes_target'] else 'NOT met'}"
                              f" ({r['accelerated']['passes']['median']:.0f})" for r in cert)
                  + "."]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def _code_line(st):
    if st.get("git_head"):
        return (f"{st['git_head'][:10]} with {len(st['uncommitted_moestats_files'])} "
                "uncommitted moestats file(s) at start")
    match = st.get("engine_files_match_benchmark_repo_head")
    return (f"moestats from {st.get('moestats_path')} (not a git checkout); its engine files "
            + ("match" if match else "do NOT match")
            + f" commit {str(st.get('benchmark_repo_head'))[:10]}")


def _load(v):
    return "?" if v is None else "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke form, under a minute")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path "
                    "(the markdown goes beside it)")
    ap.add_argument("--part", choices=("all", "families", "certificate"), default="all")
    ap.add_argument("--backends", default="numba,numpy",
                    help="backends of part a, comma-separated (default numba,numpy)")
    ap.add_argument("--numba-threads", type=int, default=1,
                    help="Numba threads (default 1: one core; the other may be busy)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (threadpoolctl; 0 keeps the library default)")
    ap.add_argument("--max-plain-iter", type=int, default=None,
                    help="part b: cap of plain EM's iterations (default 30000, 3000 quick)")
    ap.add_argument("--no-plain", action="store_true",
                    help="part b: the accelerated fits only (plain EM is most of the time)")
    ap.add_argument("--ns", default=None,
                    help="part b: sample sizes, comma-separated (default 10000,50000; quick 2000)")
    ap.add_argument("--markdown-from", type=Path, default=None, metavar="JSON",
                    help="only rewrite the markdown of an existing results JSON (beside it)")
    ap.add_argument("--plain-r-1e4", type=int, default=None,
                    help="part b: replications at n = 1e4 in the full form (default 10)")
    args = ap.parse_args(argv)
    if args.markdown_from is not None:
        write_markdown(json.loads(args.markdown_from.read_text()),
                       args.markdown_from.with_suffix(".md"))
        print(args.markdown_from.with_suffix(".md").read_text())
        return None
    cfg = {key: dict(v) for key, v in (QUICK if args.quick else FULL).items()}
    cfg["b"]["R"] = dict(cfg["b"]["R"])
    if args.max_plain_iter is not None:
        cfg["b"]["max_plain_iter"] = args.max_plain_iter
    if args.ns is not None:
        cfg["b"]["ns"] = tuple(int(float(v)) for v in args.ns.split(",") if v.strip())
        for n in cfg["b"]["ns"]:
            cfg["b"]["R"].setdefault(n, 10)
    if args.plain_r_1e4 is not None:
        cfg["b"]["R"][10_000] = args.plain_r_1e4
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    limiter = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
        if args.blas_threads > 0:
            limiter = threadpool_limits(args.blas_threads, user_api="blas")
    except ImportError:
        pass
    with limiter, np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        return _run(args, cfg, backends)


def _run(args, cfg, backends):
    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)  # noqa: E731
    load_start = load_average()
    snap_all = cpu_snapshot()
    result = {
        "benchmark": "bench_engine",
        "status": "partial",
        "description": ("EM cost per sample-iteration of every gate family relative to "
                        "softmax, and passes to a stationarity certificate with (accelerated) "
                        "and without (plain EM) the second-order finish."),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"quick": args.quick, "part": args.part, "backends": list(backends),
                   "no_plain": args.no_plain,
                   "blas_threads": args.blas_threads, "numba_threads": args.numba_threads,
                   "a": {**cfg["a"], "ks": list(cfg["a"]["ks"]), "ds": list(cfg["a"]["ds"]),
                         "families": list(FAMILIES), "seed": SEED_A,
                         "var_floor": "1e-6 var(y) per replication", "space": "none (default)",
                         "start": "near_truth_init (fit_intercept and perturb_temperature "
                                  "by the gate)"},
                   "b": {**cfg["b"], "ns": list(cfg["b"]["ns"]), "ks": list(cfg["b"]["ks"]),
                         "R": {str(n): r for n, r in cfg["b"]["R"].items()},
                         "checkpoints": [c for c in CHECKPOINTS if c < cfg["b"]["max_plain_iter"]]
                         + [cfg["b"]["max_plain_iter"]],
                         "seed": SEED_B, "acc_tol": ACC_TOL, "acc_max_iter": ACC_MAX_ITER,
                         "certify_tol": CERTIFY_TOL, "space": THEORY_SPACE.as_dict(),
                         "start": "near_truth_init(truth.params, k, n, rng)"},
                   "targets": {"family_ratio_to_softmax": TARGET_RATIO,
                               "median_accelerated_passes": TARGET_PASSES}},
        "machine": machine_info(),
        "numba": numba_info(args.numba_threads),
        "code": {"at_start": code_state()},
        "load_average_start": load_start,
        "families": None,
        "certificate": None,
    }
    log(f"moestats from {result['code']['at_start']['moestats_path']} "
        f"(HEAD {result['code']['at_start']['git_head']}, "
        f"{len(result['code']['at_start']['uncommitted_moestats_files'])} uncommitted files); "
        f"load {load_start}; numba {result['numba']}")

    def save():
        result["load_average_end"] = load_average()
        result["other_processes_cores_whole_run"] = other_cores(snap_all, cpu_snapshot())
        result["total_wall_s"] = time.perf_counter() - t_start
        result["numba"]["threading_layer"] = (_threading_layer()
                                              if result["numba"].get("available") else None)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
        write_markdown(result, args.out.with_suffix(".md"))

    if args.part in ("all", "families"):
        def on_fam(rows):
            result["families"] = rows
            save()
        result["families"] = bench_families(cfg["a"], backends, log, on_fam)
        save()
    if args.part in ("all", "certificate"):
        if not result["numba"].get("available"):
            log("part b needs Numba: skipped")
        else:
            def on_cert(rows):
                result["certificate"] = rows
                save()
            result["certificate"] = bench_certificate(cfg["b"], log, on_cert,
                                                      plain=not args.no_plain)
    end = code_state()
    result["code"]["at_end"] = end
    changed = sorted(f for f in set(end["sha256"]) | set(result["code"]["at_start"]["sha256"])
                     if end["sha256"].get(f) != result["code"]["at_start"]["sha256"].get(f))
    result["code"]["changed_during_run"] = changed or None
    result["status"] = "complete"
    save()
    log(f"wrote {args.out} and {args.out.with_suffix('.md').name}")
    print(args.out.with_suffix(".md").read_text())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, set):
        return sorted(o)
    return str(o)


if __name__ == "__main__":
    main()
