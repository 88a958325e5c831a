"""Coverage of the 95% Wald intervals of :meth:`moestats.GaussianMoE.summary` by simulation.

Run from the repository root::

    python benchmarks/bench_coverage.py --quick     # 60 replications per truth, ~4 min
    python benchmarks/bench_coverage.py             # 400 per truth, 24 min on 2 busy cores

For each exact-specified truth below and each replication r:

1. draw ``(X, y)`` of size n from the truth (``np.random.default_rng([SEED, case, r])``);
2. fit it from the truth-agnostic estimator, ``GaussianMoE(k, gate=<fitted gate>,
   n_init=4, random_state=r)`` (data-driven starts; no knowledge of the truth), and
   also from the truth (``init=truth``) to know whether the agnostic fit reached the
   same maximum (``gap`` = its log-likelihood minus the truth-started one);
3. align the fit's labels and gate gauge to the truth
   (:func:`moestats.inference.align_to_reference`);
4. compute the Wald inference at the aligned fit on the same data, ``cov_type``
   "observed" (inverse observed information) and "robust" (sandwich), and record for
   every reported parameter whether its 95% interval covers the true value (variances
   and the temperature: the interval of the logarithm, as in ``summary``).

Truths (papers.md sections 2, 6):

* ``softmax``: ``get_setup("softmax-exact").truth`` (k* = 2, d = 1, X ~ U[0, 1]),
  fitted with a softmax gate, k = 2, n = 2000;
* ``top2of3``: a top-2 truth with k* = 3, d = 1, X ~ U[-1, 1]: gate slopes
  (4, -4, 0), intercepts (0.5, -0.5, 0), experts 2x + 3, -2x - 3, 2x with variances
  (0.1, 0.15, 0.2) (expert 3 is selected everywhere, expert 1 for x > 0, expert 2
  for x < 0), fitted with ``TopKGate(2)``, k = 3, n = 3000. In d = 1 the selected
  sets change only at x = 0 whatever the slopes (as long as their order holds), so
  the likelihood is smooth at the truth and Wald theory applies; in d >= 2 the
  selection boundaries move with the slopes (a change-point problem) and do not;
* ``tanh``: ``get_setup("activation").truth`` (tanh gate, tau = 0.5), fitted with its
  k2 configuration ``ActivationGate("tanh", 1.0, learn_temperature=True)``, n = 2000.

Reported per truth: coverage per parameter and overall (target 93-97%; with R
replications the Monte Carlo standard error of a coverage near 0.95 is
``sqrt(0.95 * 0.05 / R)``, 1.1% at R = 400), the mean standard error against the
standard deviation of the estimates over replications, certified fits, relabelled
fits, and the fits that missed the truth-started maximum (``gap < -0.01`` nats).
Machine: CPU, cores, load averages before and after, the CPU time other processes
took meanwhile. Results: ``benchmarks/results/bench_coverage.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
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

from bench_em import cpu_snapshot, load_average, machine_info, other_cores  # noqa: E402

from moestats import GaussianMoE, MoEParams, TopKGate, TrueModel, UniformDesign  # noqa: E402
from moestats.inference import align_to_reference, wald_covariance  # noqa: E402
from moestats.inference.parameters import row_values  # noqa: E402
from moestats.inference.summary import WaldInference, wald_interval  # noqa: E402
from moestats.setups import get_setup  # noqa: E402

DEFAULT_OUT = HERE / "results" / "bench_coverage.json"
SEED = 20240917
ALPHA = 0.05
N_INIT = 4
GAP_TOL = 0.01

FULL = {"reps": 400, "n": {"softmax": 2000, "top2of3": 3000, "tanh": 2000}}
QUICK = {"reps": 60, "n": {"softmax": 2000, "top2of3": 3000, "tanh": 2000}}


def top2_truth():
    """The top-2-of-3 truth (module docstring)."""
    params = MoEParams(gate_coef=[[4.0], [-4.0], [0.0]], gate_intercept=[0.5, -0.5, 0.0],
                       expert_coef=[[2.0], [-2.0], [2.0]], expert_intercept=[3.0, -3.0, 0.0],
                       expert_var=[0.1, 0.15, 0.2])
    return TrueModel(params, TopKGate(2), UniformDesign(-1.0, 1.0, 1))


def cases():
    """name -> (truth, fitted gate, k)."""
    act = get_setup("activation")
    return {
        "softmax": (get_setup("softmax-exact").truth, get_setup("softmax-exact").fitted[0].gate, 2),
        "top2of3": (top2_truth(), TopKGate(2), 3),
        "tanh": (act.truth, act.fitted[0].gate, 2),
    }


def one_replication(case_id, name, truth, gate, k, n, r):
    rng = np.random.default_rng([SEED, case_id, r])
    X, y = truth.sample(n, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMoE(k, gate=gate, n_init=N_INIT, random_state=r).fit(X, y)
        ref = GaussianMoE(k, gate=gate, init=truth.params, random_state=r).fit(X, y)
    aligned, order = align_to_reference(est.params_, truth.params, est.gate_)
    floor = est._default_floor(y)
    rec = {"r": r, "certified": bool(est.converged_),
           "gap": float(est.log_likelihood_ - ref.log_likelihood_),
           "relabelled": bool(np.any(order != np.arange(k)))}
    for cov_type in ("observed", "robust"):
        wald = wald_covariance(est.gate_, aligned, X, y, cov_type=cov_type, var_floor=floor)
        inf = WaldInference(wald, est.gate_, aligned)
        shown = [i for i, row in enumerate(inf.rows) if row.shown]
        rows = [inf.rows[i] for i in shown]
        est_v, se = inf.estimates[shown], inf.std_errors[shown]
        lo, hi = wald_interval(est_v, se, [row.positive for row in rows], ALPHA)
        true_v = row_values(rows, truth.params)
        rec["names"] = [row.name for row in rows]
        rec["estimate"] = est_v.tolist()
        rec["truth"] = true_v.tolist()
        rec[f"se_{cov_type}"] = se.tolist()
        rec[f"covered_{cov_type}"] = ((lo <= true_v) & (true_v <= hi)).tolist()
    return rec


def summarise(name, recs, n, k):
    names = recs[0]["names"]
    est = np.array([r["estimate"] for r in recs])
    truth = np.array(recs[0]["truth"])
    gap = np.array([r["gap"] for r in recs])
    same = gap > -GAP_TOL
    out = {"name": name, "n": n, "k": k, "reps": len(recs), "parameters": names,
           "truth": truth.tolist(),
           "certified": int(sum(r["certified"] for r in recs)),
           "relabelled": int(sum(r["relabelled"] for r in recs)),
           "missed_maximum": int(np.sum(~same)),
           "empirical_sd": est.std(axis=0, ddof=1).tolist(),
           "bias": (est.mean(axis=0) - truth).tolist(), "coverage": {}, "mean_se": {},
           "coverage_same_maximum": {}}
    for cov_type in ("observed", "robust"):
        cov = np.array([r[f"covered_{cov_type}"] for r in recs], dtype=float)
        se = np.array([r[f"se_{cov_type}"] for r in recs])
        out["coverage"][cov_type] = {"per_parameter": dict(zip(names, cov.mean(axis=0).tolist())),
                                     "overall": float(cov.mean()),
                                     "min": float(cov.mean(axis=0).min()),
                                     "max": float(cov.mean(axis=0).max())}
        out["coverage_same_maximum"][cov_type] = float(cov[same].mean()) if same.any() else None
        out["mean_se"][cov_type] = np.nanmean(se, axis=0).tolist()
        out["nan_se"] = int(np.sum(np.isnan(se)))
    return out


def run(config, log=print, n_cases=None, on_case=None):
    """Run the benchmark with ``config`` (FULL or QUICK); returns the results dict.

    ``on_case(results)`` is called after every finished truth (partial results)."""
    results = {"benchmark": "bench_coverage", "config": config, "alpha": ALPHA,
               "n_init": N_INIT, "seed": SEED, "cases": {}}
    for case_id, (name, (truth, gate, k)) in enumerate(cases().items()):
        if n_cases is not None and name not in n_cases:
            continue
        n = config["n"][name]
        t0 = time.perf_counter()
        recs = [one_replication(case_id, name, truth, gate, k, n, r)
                for r in range(config["reps"])]
        results["cases"][name] = summarise(name, recs, n, k)
        results["cases"][name]["seconds"] = time.perf_counter() - t0
        c = results["cases"][name]["coverage"]
        log(f"{name}: n = {n}, R = {config['reps']}: coverage observed "
            f"{c['observed']['overall']:.3f}, robust {c['robust']['overall']:.3f} "
            f"({results['cases'][name]['seconds']:.0f} s)")
        if on_case is not None:
            on_case(results)
    return results


def write_markdown(res, path):
    R = res["config"]["reps"]
    mcse = np.sqrt(0.95 * 0.05 / R)
    lines = ["# Coverage of the 95% Wald intervals", "", f"Status: {res.get('status')}.", "",
             f"Command: `{res.get('command', '')}`. {R} replications per truth; truth-agnostic "
             f"fits (`GaussianMoE(k, gate, n_init={res['n_init']}, random_state=r)`), "
             "aligned to the truth's labels and gauge; intervals as in `summary()` "
             "(variances and temperature: interval of the logarithm). Monte Carlo standard "
             f"error of a coverage near 0.95: {mcse:.3f}. Target: 0.93-0.97.", ""]
    m = res.get("machine", {})
    lines += [f"Machine: {m.get('cpu_model')}, nproc {m.get('nproc')}; load average before "
              f"{res.get('load_before')}, after {res.get('load_after')}; other processes kept "
              f"{res.get('other_cores_busy')} cores busy on average; wall time "
              f"{res.get('wall_seconds', 0):.0f} s; commit {res.get('commit')}.", ""]
    lines += ["| truth | n | overall (observed) | overall (robust) | range per parameter "
              "(observed) | certified | relabelled | missed maximum |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in res["cases"].values():
        o, rb = c["coverage"]["observed"], c["coverage"]["robust"]
        lines.append(f"| {c['name']} | {c['n']} | {o['overall']:.3f} | {rb['overall']:.3f} | "
                     f"{o['min']:.3f}-{o['max']:.3f} | {c['certified']}/{c['reps']} | "
                     f"{c['relabelled']} | {c['missed_maximum']} |")
    for c in res["cases"].values():
        lines += ["", f"## {c['name']} (k = {c['k']}, n = {c['n']})", "",
                  "| parameter | truth | coverage (observed) | coverage (robust) | mean SE "
                  "(observed) | SD of estimates |", "| --- | --- | --- | --- | --- | --- |"]
        for i, p in enumerate(c["parameters"]):
            lines.append(
                f"| {p} | {c['truth'][i]:.4g} | "
                f"{c['coverage']['observed']['per_parameter'][p]:.3f} | "
                f"{c['coverage']['robust']['per_parameter'][p]:.3f} | "
                f"{c['mean_se']['observed'][i]:.4g} | {c['empirical_sd'][i]:.4g} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 replications per truth")
    ap.add_argument("--reps", type=int, default=None, help="replications per truth")
    ap.add_argument("--cases", nargs="*", default=None, help="subset of the truths")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    if args.reps is not None:
        config["reps"] = args.reps
    t0 = time.perf_counter()
    snap = cpu_snapshot()
    load_before = load_average()

    def log(msg):
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=HERE).stdout.strip()
    except OSError:
        commit = None
    command = ("python benchmarks/bench_coverage.py" + (" --quick" if args.quick else "")
               + (f" --reps {args.reps}" if args.reps else "")
               + (f" --cases {' '.join(args.cases)}" if args.cases else ""))

    def write(res, status):
        busy = other_cores(snap, cpu_snapshot())
        res.update({"status": status, "command": command, "machine": machine_info(),
                    "load_before": load_before, "load_after": load_average(),
                    "other_cores_busy": None if busy is None else round(busy, 2),
                    "wall_seconds": time.perf_counter() - t0, "commit": commit,
                    "note": "uncommitted working-tree changes may be present at this commit"})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
        write_markdown(res, args.out.with_suffix(".md"))

    res = run(config, log, args.cases, on_case=lambda r: write(r, "partial"))
    write(res, "complete")
    log(f"wrote {args.out} and {args.out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
