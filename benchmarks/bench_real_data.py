"""Real data: moestats against R's flexmix and mixtools on the same softmax-gated model.

Run from the repository root::

    python benchmarks/bench_real_data.py              # about 5 min on 2 cores with R
    python benchmarks/bench_real_data.py --no-r       # moestats only, seconds
    python benchmarks/bench_real_data.py --out /tmp/real.json

The data are those of :mod:`moestats.datasets` (tonedata, faithful, mcycle), each with one
covariate; the model is the mixture of k Gaussian linear experts with a softmax
(multinomial-logit) gate on the same covariate,

    p(y | x) = sum_j softmax_j(beta_1 x + beta_0) N(y | a_j x + b_j, nu_j),

which is exactly flexmix's ``flexmix(y ~ x, k, model = FLXMRglm(family = "gaussian"),
concomitant = FLXPmultinom(~ x))`` and, for k = 2, mixtools' ``hmeEM(y, x, k = 2)``.

Fitted:

- **moestats**: ``GaussianMoE(k, random_state=seed)`` with its defaults (10 different
  starts, 50 short EM iterations each, the best 3 run to a certified maximum,
  ``certify_tol`` 1e-3 nats, ``backend="numpy"``), seeds 0-4; the wall time of each
  ``fit`` (after one untimed warm-up fit), the log-likelihood, the certificate.
- **flexmix** (when ``Rscript`` and the R package flexmix are present):
  ``stepFlexmix(..., nrep = 10)`` (10 random-partition starts, the best kept), with
  ``minprior = 0`` (no component is dropped, so the model class is the same) and
  (a) flexmix's default control (``tolerance = 1e-6``, ``iter.max = 200``) and
  (b) a tight control (``tolerance = 1e-10``, ``iter.max = 5000``); ``set.seed(1)``;
  time by ``system.time`` around the call (R start-up and loading excluded).
- **mixtools** (k = 2 only; when the R package mixtools is present): ``hmeEM(y, x,
  k = 2, epsilon = 1e-8, maxit = 2000)`` from 10 random starts (``set.seed(1)``; its own
  random start each time), the best log-likelihood kept; the total time.

Every R solution's parameters are read back and their log-likelihood re-evaluated with
:func:`moestats.likelihood.log_likelihood` (column ``moestats LL at R's solution``): it
equals R's own number, so the log-likelihoods are on the same scale and comparable.

Results: ``benchmarks/results/bench_real_data.json`` and ``.md``, with the machine (CPU,
cores, load averages at start and end, versions).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_em import load_average, machine_info  # noqa: E402

from moestats import GaussianMoE, MoEParams, SoftmaxGate  # noqa: E402
from moestats.datasets import load_faithful, load_mcycle, load_tonedata  # noqa: E402
from moestats.likelihood import log_likelihood  # noqa: E402

CASES = [  # (data set, loader, k)
    ("tonedata", load_tonedata, 2),
    ("faithful", load_faithful, 2),
    ("mcycle", load_mcycle, 2),
    ("mcycle", load_mcycle, 3),
]
SEEDS = (0, 1, 2, 3, 4)

R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
data_path <- args[1]; k <- as.integer(args[2]); out_path <- args[3]
use_mixtools <- args[4] == "1"
suppressPackageStartupMessages(library(flexmix))
d <- read.csv(data_path)            # columns x, y
num <- function(v) {
  v <- as.numeric(v)
  s <- ifelse(is.finite(v), formatC(v, digits = 17, format = "g"), "null")
  paste0("[", paste(gsub(" ", "", s), collapse = ", "), "]")
}
mat <- function(m) paste0("[", paste(apply(as.matrix(m), 2, num), collapse = ", "), "]")
fx <- function(label, control) {
  set.seed(1)
  tm <- system.time(m <- stepFlexmix(y ~ x, data = d, k = k, nrep = 10,
                                     model = FLXMRglm(family = "gaussian"),
                                     concomitant = FLXPmultinom(~ x),
                                     control = control, verbose = FALSE))
  paste0('"', label, '": {"elapsed_s": ', unname(tm["elapsed"]),
         ', "logLik": ', formatC(as.numeric(logLik(m)), digits = 17, format = "g"),
         ', "k_fitted": ', m@k, ', "iter": ', m@iter,
         ', "converged": ', tolower(as.character(m@converged)),
         ', "components_by_column": ', mat(parameters(m)),
         ', "gate_coef_by_column": ', mat(m@concomitant@coef), '}')
}
parts <- c(
  fx("flexmix_default", list(minprior = 0)),
  fx("flexmix_tight", list(minprior = 0, tolerance = 1e-10, iter.max = 5000)))
if (use_mixtools && k == 2 && requireNamespace("mixtools", quietly = TRUE)) {
  suppressPackageStartupMessages(library(mixtools))
  set.seed(1)
  best <- NULL; lls <- numeric(0)
  tm <- system.time(for (r in 1:10) {
    m <- tryCatch(suppressWarnings(hmeEM(d$y, d$x, k = 2, epsilon = 1e-8, maxit = 2000,
                                         verb = FALSE)), error = function(e) NULL)
    if (is.null(m)) { lls <- c(lls, NA); next }
    lls <- c(lls, m$loglik)
    if (is.null(best) || m$loglik > best$loglik) best <- m
  })
  parts <- c(parts, paste0('"mixtools_hmeEM": {"elapsed_s": ', unname(tm["elapsed"]),
    ', "logLik": ', formatC(best$loglik, digits = 17, format = "g"),
    ', "start_logLiks": ', num(lls),
    ', "beta": ', mat(best$beta), ', "sigma": ', num(best$sigma), ', "w": ', num(best$w),
    ', "mixtools_version": "', as.character(packageVersion("mixtools")), '"}'))
}
parts <- c(parts, paste0('"flexmix_version": "', as.character(packageVersion("flexmix")), '"'),
           paste0('"r_version": "', R.version.string, '"'))
writeLines(paste0("{", paste(parts, collapse = ",\n"), "}"), out_path)
"""


def r_status(disabled):
    """(available, reason, has_mixtools)."""
    if disabled:
        return False, "disabled with --no-r", False
    if shutil.which("Rscript") is None:
        return False, "Rscript not found on PATH", False
    probe = ('f <- requireNamespace("flexmix", quietly = TRUE); '
             'm <- requireNamespace("mixtools", quietly = TRUE); cat(f, m)')
    try:
        res = subprocess.run(["Rscript", "-e", probe], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Rscript could not be run: {exc}", False
    words = res.stdout.split()
    if res.returncode != 0 or len(words) != 2:
        return False, f"Rscript failed: {res.stderr.strip()[-300:]}", False
    if words[0] != "TRUE":
        return False, "the R package flexmix is not installed", False
    return True, "", words[1] == "TRUE"


def flexmix_params(fx):
    """flexmix's solution (one covariate) as MoEParams, gate moved to the last expert."""
    comp = np.asarray(fx["components_by_column"], dtype=float)   # (k, 3): b, a, sigma
    gate = np.asarray(fx["gate_coef_by_column"], dtype=float)    # (k, 2): beta_0, beta_1
    return MoEParams.with_reference_gate(
        gate_coef=gate[:, 1:], gate_intercept=gate[:, 0], expert_coef=comp[:, 1:2],
        expert_intercept=comp[:, 0], expert_var=comp[:, 2] ** 2)


def mixtools_params(mx):
    """hmeEM's solution (k = 2): gate logit of expert 1 against expert 2 is w0 + w1 x."""
    beta = np.asarray(mx["beta"], dtype=float)                   # (2, 2): b, a per column
    w = np.asarray(mx["w"], dtype=float)
    sigma = np.asarray(mx["sigma"], dtype=float)
    return MoEParams(gate_coef=[[w[1]], [0.0]], gate_intercept=[w[0], 0.0],
                     expert_coef=beta[:, 1:2], expert_intercept=beta[:, 0],
                     expert_var=sigma ** 2)


def run_r(X, y, k, *, has_mixtools, timeout, workdir):
    data_path = Path(workdir) / "data.csv"
    out_path = Path(workdir) / "out.json"
    script = Path(workdir) / "fit.R"
    script.write_text(R_SCRIPT)
    np.savetxt(data_path, np.column_stack([X[:, 0], y]), delimiter=",", header="x,y",
               comments="", fmt="%.17g")
    if out_path.exists():
        out_path.unlink()
    try:
        res = subprocess.run(["Rscript", str(script), str(data_path), str(k), str(out_path),
                              "1" if has_mixtools else "0"],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"Rscript did not finish in {timeout} s"}
    if res.returncode != 0 or not out_path.exists():
        return {"status": "failed", "reason": (res.stderr or res.stdout).strip()[-500:]}
    out = json.loads(out_path.read_text())
    out["status"] = "ok"
    gate = SoftmaxGate()
    for key in ("flexmix_default", "flexmix_tight"):
        if key in out and out[key]["k_fitted"] == k:
            out[key]["moestats_ll_at_solution"] = log_likelihood(
                gate, flexmix_params(out[key]), X, y)
    if "mixtools_hmeEM" in out:
        out["mixtools_hmeEM"]["moestats_ll_at_solution"] = log_likelihood(
            gate, mixtools_params(out["mixtools_hmeEM"]), X, y)
    return out


def run_moestats(X, y, k):
    GaussianMoE(k, random_state=0, backend="numpy").fit(X, y)     # warm-up, untimed
    fits = []
    for seed in SEEDS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            est = GaussianMoE(k, random_state=seed, backend="numpy").fit(X, y)
            elapsed = time.perf_counter() - t0
        cert = est.certificate_
        fits.append({
            "seed": seed, "time_s": elapsed, "logLik": float(est.log_likelihood_),
            "converged": bool(est.converged_),
            "predicted_gain": float(getattr(cert, "predicted_gain", np.nan)),
            "passes": int(est.n_passes_),
            "start_logLiks": [float(v) for v in est.start_log_likelihoods_],
            "warnings": sorted({type(w.message).__name__ for w in caught}),
            "params": {name: np.asarray(getattr(est.params_, name)).tolist() for name in (
                "gate_coef", "gate_intercept", "expert_coef", "expert_intercept",
                "expert_var")},
        })
    lls = [f["logLik"] for f in fits]
    return {"fits": fits, "best_logLik": max(lls), "worst_logLik": min(lls),
            "median_time_s": statistics.median(f["time_s"] for f in fits),
            "certified": sum(f["converged"] for f in fits)}


def _fmt(v, digits=3):
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def write_markdown(result, path):
    m = result["machine"]
    lines = [
        "# Real data: moestats against flexmix and mixtools",
        "",
        f"Command: `python benchmarks/bench_real_data.py`. "
        f"{result['timestamp_utc']}, status {result['status']}. Machine: {m.get('cpu_model')}, "
        f"nproc {m.get('nproc')}; load average (1, 5, 15 min) at start "
        f"{tuple(round(v, 2) for v in result['load_start'] or ())}, at end "
        f"{tuple(round(v, 2) for v in result['load_end'] or ())}. Python {m.get('python')}, "
        f"numpy {m.get('numpy')}, scipy {m.get('scipy')}, moestats {m.get('moestats')}; "
        f"{result.get('r_version') or 'R: ' + result['r_reason']}"
        + (f", flexmix {result['flexmix_version']}" if result.get("flexmix_version") else "")
        + (f", mixtools {result['mixtools_version']}" if result.get("mixtools_version") else "")
        + ".",
        "",
        "Model: k Gaussian linear experts with a softmax gate on the same covariate "
        "(flexmix: `FLXMRglm(family = \"gaussian\")` with `concomitant = FLXPmultinom(~ x)`; "
        "mixtools: `hmeEM`, k = 2). moestats: `GaussianMoE(k, random_state=seed)` defaults "
        f"(10 starts, emEM, certified at 1e-3 nats), seeds {SEEDS[0]}-{SEEDS[-1]}: best and "
        "worst log-likelihood, certified fits, median time per fit. flexmix: "
        "`stepFlexmix(nrep = 10)`, `minprior = 0`, default control (tolerance 1e-6, "
        "iter.max 200) and tight control (1e-10, 5000). mixtools: best of 10 `hmeEM` runs "
        "(epsilon 1e-8, maxit 2000). R times by `system.time` around the call. Log-likelihoods "
        "in nats; R's solutions re-evaluated by moestats agree with R's numbers (JSON: "
        "`moestats_ll_at_solution`).",
        "",
        "| data | n | k | moestats LL (best / worst of 5) | certified | moestats s/fit "
        "| flexmix LL (default) | flexmix s | flexmix LL (tight) | flexmix s (tight) "
        "| mixtools hmeEM LL | mixtools s | moestats − best R |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        ms = c["moestats"]
        r = c.get("r") or {}
        fd, ft, mx = (r.get(key) or {} for key in ("flexmix_default", "flexmix_tight",
                                                     "mixtools_hmeEM"))
        r_lls = [v.get("logLik") for v in (fd, ft, mx) if v.get("logLik") is not None]
        gap = ms["best_logLik"] - max(r_lls) if r_lls else None
        lines.append(
            f"| {c['data']} | {c['n']} | {c['k']} | {_fmt(ms['best_logLik'])} / "
            f"{_fmt(ms['worst_logLik'])} | {ms['certified']}/{len(ms['fits'])} | "
            f"{_fmt(ms['median_time_s'], 2)} | {_fmt(fd.get('logLik'))} | "
            f"{_fmt(fd.get('elapsed_s'), 2)} | {_fmt(ft.get('logLik'))} | "
            f"{_fmt(ft.get('elapsed_s'), 2)} | {_fmt(mx.get('logLik'))} | "
            f"{_fmt(mx.get('elapsed_s'), 2)} | {_fmt(gap, 4)} |")
    if result.get("r_reason"):
        lines += ["", f"R not run: {result['r_reason']}."]
    notes = []
    gaps = {}
    for c in result["cases"]:
        for key, v in (c.get("r") or {}).items():
            if isinstance(v, dict) and "moestats_ll_at_solution" in v:
                gaps.setdefault(key, []).append(
                    (abs(v["logLik"] - v["moestats_ll_at_solution"]), f"{c['data']} k={c['k']}"))
    if gaps:
        notes.append(
            "R's solutions re-evaluated by moestats (`moestats.likelihood.log_likelihood`), "
            "largest difference to R's own log-likelihood: " + "; ".join(
                f"{key} {max(g)[0]:.1e} nats ({max(g)[1]})" for key, g in gaps.items())
            + ". The likelihoods are the same function; flexmix's reported value is computed "
            "inside its EM loop and can differ from the value at the parameters it returns "
            "by the order of its last iteration's change.")
    for c in result["cases"]:
        mx = (c.get("r") or {}).get("mixtools_hmeEM")
        if not mx:
            continue
        lls = [v for v in mx["start_logLiks"] if v is not None]
        best_ms = c["moestats"]["best_logLik"]
        above = sum(v > best_ms + 1e-3 for v in lls)
        at = sum(abs(v - best_ms) <= 1e-3 for v in lls)
        notes.append(f"{c['data']} (k = {c['k']}): of {len(mx['start_logLiks'])} hmeEM runs, "
                     f"{at} reached moestats' maximum ({best_ms:.3f}) to 1e-3 nats and {above} "
                     f"a higher one (best {max(lls):.3f}, expert standard deviations "
                     f"{', '.join(f'{v:.4g}' for v in mx['sigma'])}).")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-r", action="store_true", help="skip flexmix and mixtools")
    ap.add_argument("--r-timeout", type=float, default=900.0, help="seconds per Rscript call")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_real_data.json")
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite the .md from an existing --out JSON, fit nothing")
    args = ap.parse_args(argv)
    if args.markdown_only:
        write_markdown(json.loads(args.out.read_text()), args.out.with_suffix(".md"))
        print(args.out.with_suffix(".md").read_text())
        return

    r_ok, r_reason, has_mixtools = r_status(args.no_r)
    result = {"status": "partial",
              "timestamp_utc": machine_info()["timestamp_utc"], "machine": machine_info(),
              "load_start": load_average(), "load_end": None, "r_available": r_ok,
              "r_reason": r_reason, "cases": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md_path = args.out.with_suffix(".md")
    with tempfile.TemporaryDirectory() as workdir:
        for name, loader, k in CASES:
            X_df, y_s = loader(return_X_y=True)
            X, y = X_df.to_numpy(dtype=float), y_s.to_numpy(dtype=float)
            case = {"data": name, "n": len(y), "k": k, "x": list(X_df.columns),
                    "y": y_s.name, "moestats": run_moestats(X, y, k)}
            print(f"{name} k={k}: moestats best LL {case['moestats']['best_logLik']:.4f}, "
                  f"median {case['moestats']['median_time_s']:.2f} s", flush=True)
            if r_ok:
                case["r"] = run_r(X, y, k, has_mixtools=has_mixtools,
                                  timeout=args.r_timeout, workdir=workdir)
                r = case["r"]
                for key in ("r_version", "flexmix_version"):
                    if key in r:
                        result[key] = r.pop(key)
                if "mixtools_hmeEM" in r:
                    result["mixtools_version"] = r["mixtools_hmeEM"].get("mixtools_version")
                print("  R: " + ", ".join(
                    f"{key} {r[key]['logLik']:.4f} ({r[key]['elapsed_s']:.2f} s)"
                    for key in ("flexmix_default", "flexmix_tight", "mixtools_hmeEM")
                    if key in r) if r["status"] == "ok" else f"  R: {r}", flush=True)
            result["cases"].append(case)
            args.out.write_text(json.dumps(result, indent=2))
            write_markdown(result, md_path)
    result["status"] = "complete"
    result["load_end"] = load_average()
    args.out.write_text(json.dumps(result, indent=2))
    write_markdown(result, md_path)
    print(md_path.read_text())


if __name__ == "__main__":
    main()
