"""Real data: moestats against R's flexmix and mixtools, softmax-gated and constant weights.

Run from the repository root::

    python benchmarks/bench_real_data.py              # both tables, ~6 min on 2 cores
    python benchmarks/bench_real_data.py --tables constant   # only the second table, ~1 min
    python benchmarks/bench_real_data.py --no-r       # moestats only, seconds
    python benchmarks/bench_real_data.py --out /tmp/real.json

``--tables`` (``softmax``, ``constant`` or ``softmax,constant``, the default) picks the
tables to fit; a table not picked is carried over unchanged (rows, command, date, machine
and load lines) from the existing ``--out`` JSON, and the markdown is rewritten with both.

The data are those of :mod:`moestats.datasets` (tonedata, faithful, mcycle), each with one
covariate, k = 2 (and k = 3 for mcycle).

**Table 1, softmax gate.** The mixture of k Gaussian linear experts with a softmax
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

**Table 2, constant weights** (the mixture of linear regressions),

    p(y | x) = sum_j pi_j N(y | a_j x + b_j, nu_j),

with free variances and with equal variances (nu_1 = ... = nu_k):

- **moestats**: ``GaussianMoE(k, gate="constant", shared_variance=False / True,
  random_state=seed)``, otherwise as in table 1 (defaults, seeds 0-4, warm-up, times).
- **flexmix**: ``stepFlexmix(y ~ x, k, nrep = 10)`` with ``FLXMRglm(family = "gaussian")``
  (free variances) and ``FLXMRglmfix(family = "gaussian", varFix = TRUE)`` (flexmix's
  equal-variance option), no concomitant model, ``minprior = 0``, default and tight control
  as in table 1 (``benchmarks/regmix_fit.R``).
- **mixtools**: ``regmixEM(y, x, k, arbvar = TRUE / FALSE, epsilon = 1e-8, maxit =
  2000)``, 10 runs from its own random starts (``set.seed(1)`` .. ``set.seed(10)``), the
  best kept; the total time.

Every R solution's parameters are read back and their log-likelihood re-evaluated with
:func:`moestats.likelihood.log_likelihood` (``moestats_ll_at_solution`` in the JSON), so
that the log-likelihoods are known to be the same function. In table 2, moestats is also
started from R's tight flexmix and best mixtools solutions (``moestats_from_solution``):
where R's maximum is higher, this says whether moestats certifies it, and the smallest
expert standard deviation says whether it is a degenerate (tiny-variance) one.

Results: ``benchmarks/results/bench_real_data.json`` and ``.md``, with the machine (CPU,
cores, load averages at start and end, versions) of each table.
"""

from __future__ import annotations

import argparse
import json
import shlex
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
from moestats.likelihood import e_step, log_likelihood  # noqa: E402

CASES = [  # (data set, loader, k)
    ("tonedata", load_tonedata, 2),
    ("faithful", load_faithful, 2),
    ("mcycle", load_mcycle, 2),
    ("mcycle", load_mcycle, 3),
]
SEEDS = (0, 1, 2, 3, 4)
TABLES = ("softmax", "constant")
VARIANCES = (("free", False), ("equal", True))   # (label, shared_variance)
REGMIX_SCRIPT = HERE / "regmix_fit.R"

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


def run_moestats(X, y, k, **options):
    """Seeds 0-4 of ``GaussianMoE(k, random_state=seed, backend="numpy", **options)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # recorded below, for the timed fits
        GaussianMoE(k, random_state=0, backend="numpy", **options).fit(X, y)  # warm-up
    fits = []
    for seed in SEEDS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            est = GaussianMoE(k, random_state=seed, backend="numpy", **options).fit(X, y)
            elapsed = time.perf_counter() - t0
        cert = est.certificate_
        short = est.short_run_log_likelihoods_
        fits.append({
            "seed": seed, "time_s": elapsed, "logLik": float(est.log_likelihood_),
            "converged": bool(est.converged_),
            "predicted_gain": float(getattr(cert, "predicted_gain", np.nan)),
            "passes": int(est.n_passes_),
            "start_logLiks": [float(v) for v in est.start_log_likelihoods_],
            "short_run_logLiks": None if short is None else [float(v) for v in short],
            "warnings": sorted({type(w.message).__name__ for w in caught}),
            "params": {name: np.asarray(getattr(est.params_, name)).tolist() for name in (
                "gate_coef", "gate_intercept", "expert_coef", "expert_intercept",
                "expert_var")},
        })
    lls = [f["logLik"] for f in fits]
    return {"options": {key: v for key, v in options.items()},
            "fits": fits, "best_logLik": max(lls), "worst_logLik": min(lls),
            "median_time_s": statistics.median(f["time_s"] for f in fits),
            "certified": sum(f["converged"] for f in fits)}


# ------------------------------------------------------- table 2: constant weights
def constant_params(prior, intercept, slope, sigma):
    """A constant-weight mixture of regressions (one covariate) as MoEParams."""
    prior = np.asarray(prior, dtype=float)
    k = len(prior)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (k,))
    return MoEParams(gate_coef=np.zeros((k, 1)),
                     gate_intercept=np.log(prior) - np.log(prior[-1]),
                     expert_coef=np.asarray(slope, dtype=float).reshape(k, 1),
                     expert_intercept=np.asarray(intercept, dtype=float),
                     expert_var=sigma ** 2)


def regmix_flexmix_params(fx):
    comp = np.asarray(fx["components_by_column"], dtype=float)   # (k, 3): b, a, sigma
    return constant_params(fx["prior"], comp[:, 0], comp[:, 1], comp[:, 2])


def regmix_mixtools_params(mx):
    beta = np.asarray(mx["beta"], dtype=float)                   # (k, 2): b, a
    return constant_params(mx["lambda"], beta[:, 0], beta[:, 1], mx["sigma"])


def variance_ratio(params, X, y, shared):
    """The variances at a solution over the weighted mean squared residuals there (1 at
    an exact maximum-likelihood M-step): per expert, or pooled with ``shared``."""
    resp, _ = e_step(SoftmaxGate(), params, X, y)
    res2 = (y[:, None] - X @ params.expert_coef.T - params.expert_intercept) ** 2
    if shared:
        return [float(params.expert_var[0] / (np.sum(resp * res2) / len(y)))]
    return (params.expert_var / (np.sum(resp * res2, axis=0) / resp.sum(axis=0))).tolist()


def restart_from(params, X, y, shared):
    """moestats started from a given solution: its certified log-likelihood."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMoE(len(params.expert_var), gate="constant", shared_variance=shared,
                          init=params, backend="numpy").fit(X, y)
    return {"logLik": float(est.log_likelihood_), "converged": bool(est.converged_),
            "expert_sd": np.sqrt(est.expert_var_).tolist()}


def run_regmix_r(X, y, k, *, has_mixtools, timeout, workdir):
    """``regmix_fit.R`` on (x, y): flexmix and mixtools, free and equal variances."""
    data_path = Path(workdir) / "data.csv"
    out_path = Path(workdir) / "regmix.json"
    np.savetxt(data_path, np.column_stack([X[:, 0], y]), delimiter=",", header="x,y",
               comments="", fmt="%.17g")
    if out_path.exists():
        out_path.unlink()
    try:
        res = subprocess.run(["Rscript", str(REGMIX_SCRIPT), str(data_path), str(k),
                              str(out_path), "1" if has_mixtools else "0"],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"Rscript did not finish in {timeout} s"}
    if res.returncode != 0 or not out_path.exists():
        return {"status": "failed", "reason": (res.stderr or res.stdout).strip()[-500:]}
    out = json.loads(out_path.read_text())
    out["status"] = "ok"
    return out


def regmix_row(raw, variances, X, y, k):
    """The R results of one variance setting, re-evaluated and restarted by moestats."""
    shared = variances == "equal"
    row = {"status": raw["status"]}
    if raw["status"] != "ok":
        row["reason"] = raw.get("reason")
        return row
    for key, src, to_params in (
            ("flexmix_default", f"flexmix_{variances}_default", regmix_flexmix_params),
            ("flexmix_tight", f"flexmix_{variances}_tight", regmix_flexmix_params),
            ("mixtools_regmixEM", f"mixtools_{variances}", regmix_mixtools_params)):
        if src not in raw:
            continue
        v = dict(raw[src])
        if v.get("k_fitted", k) == k:
            params = to_params(v)
            v["moestats_ll_at_solution"] = log_likelihood(SoftmaxGate(), params, X, y)
            v["variance_over_weighted_mse"] = variance_ratio(params, X, y, shared)
            resp, _ = e_step(SoftmaxGate(), params, X, y)
            v["expert_sd"] = np.sqrt(params.expert_var).tolist()
            v["points_per_expert"] = np.bincount(resp.argmax(axis=1), minlength=k).tolist()
            if key != "flexmix_default":
                v["moestats_from_solution"] = restart_from(params, X, y, shared)
        row[key] = v
    return row


def _fmt(v, digits=3):
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def softmax_lines(result):
    m = result["machine"]
    lines = [
        "## Softmax gate (mixture of experts)",
        "",
        f"Command: `{result.get('command', 'python benchmarks/bench_real_data.py')}`. "
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
    return lines


def _machine_line(t):
    m = t["machine"]
    return (
        f"Command: `{t['command']}`. {t['timestamp_utc']}, status {t['status']}. Machine: "
        f"{m.get('cpu_model')}, nproc {m.get('nproc')}; load average (1, 5, 15 min) at start "
        f"{tuple(round(v, 2) for v in t['load_start'] or ())}, at end "
        f"{tuple(round(v, 2) for v in t['load_end'] or ())}. Python {m.get('python')}, "
        f"numpy {m.get('numpy')}, scipy {m.get('scipy')}, moestats {m.get('moestats')}; "
        f"{t.get('r_version') or 'R: ' + t['r_reason']}"
        + (f", flexmix {t['flexmix_version']}" if t.get("flexmix_version") else "")
        + (f", mixtools {t['mixtools_version']}" if t.get("mixtools_version") else "") + ".")


R_KEYS = ("flexmix_default", "flexmix_tight", "mixtools_regmixEM")


def _same(a, b, digits=3):
    return f"{a:.{digits}f}" == f"{b:.{digits}f}"


def _gap(v):
    """A log-likelihood difference: 4 decimals, or 2 significant digits below 5e-5."""
    if v is None or not np.isfinite(v):
        return "—"
    return f"{v:+.4f}" if abs(v) >= 5e-5 else f"{v:+.1e}"


def constant_lines(t):
    lines = [
        "## Constant weights (mixtures of linear regressions)", "", _machine_line(t), "",
        "Model: k Gaussian linear regressions with constant weights, "
        "p(y | x) = Σ_j π_j N(y | a_j x + b_j, ν_j), with free variances and with equal "
        "variances (ν_1 = … = ν_k). moestats: `GaussianMoE(k, gate=\"constant\", "
        "shared_variance=False / True, random_state=seed)`, defaults otherwise (10 starts, "
        f"emEM, certified at 1e-3 nats), seeds {SEEDS[0]}-{SEEDS[-1]}. flexmix: "
        "`stepFlexmix(y ~ x, k, nrep = 10)` without a concomitant model, "
        "`FLXMRglm(family = \"gaussian\")` (free) and `FLXMRglmfix(family = \"gaussian\", "
        "varFix = TRUE)` (equal variances: flexmix's option for it), `minprior = 0`, default "
        "control (tolerance 1e-6, iter.max 200) and tight control (1e-10, 5000). mixtools: "
        "best of 10 `regmixEM` runs (`arbvar = TRUE` / `FALSE`, epsilon 1e-8, maxit 2000, "
        "`set.seed(1)` … `set.seed(10)`). R times by `system.time` around the calls "
        "(`benchmarks/regmix_fit.R`; mixtools: the 10 runs together). Log-likelihoods in "
        "nats.",
        "",
        "| data | n | k | variances | moestats LL (best / worst of 5) | certified "
        "| moestats s/fit | flexmix LL (default) | flexmix s | flexmix LL (tight) "
        "| flexmix s (tight) | mixtools regmixEM LL | mixtools s | moestats − best R |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in t["cases"]:
        ms = c["moestats"]
        r = c.get("r") or {}
        fd, ft, mx = (r.get(key) or {} for key in R_KEYS)
        r_lls = [v.get("logLik") for v in (fd, ft, mx) if v.get("logLik") is not None]
        gap = ms["best_logLik"] - max(r_lls) if r_lls else None
        lines.append(
            f"| {c['data']} | {c['n']} | {c['k']} | {c['variances']} | "
            f"{_fmt(ms['best_logLik'])} / {_fmt(ms['worst_logLik'])} | "
            f"{ms['certified']}/{len(ms['fits'])} | {_fmt(ms['median_time_s'], 2)} | "
            f"{_fmt(fd.get('logLik'))} | {_fmt(fd.get('elapsed_s'), 2)} | "
            f"{_fmt(ft.get('logLik'))} | {_fmt(ft.get('elapsed_s'), 2)} | "
            f"{_fmt(mx.get('logLik'))} | {_fmt(mx.get('elapsed_s'), 2)} | {_gap(gap)} |")
    if t.get("r_reason"):
        lines += ["", f"R not run: {t['r_reason']}."]

    notes = []
    label = {c_id: f"{c['data']} k={c['k']} {c['variances']}"
             for c_id, c in enumerate(t["cases"])}
    # the same likelihood function
    gaps = {}
    for i, c in enumerate(t["cases"]):
        for key in R_KEYS:
            v = (c.get("r") or {}).get(key) or {}
            if "moestats_ll_at_solution" in v:
                gaps.setdefault(key, []).append(
                    (abs(v["logLik"] - v["moestats_ll_at_solution"]), label[i]))
    if gaps:
        notes.append(
            "Same likelihood function: R's solutions re-evaluated by moestats "
            "(`moestats.likelihood.log_likelihood`, constant weights as a softmax gate "
            "without slopes) differ from R's own log-likelihood by at most " + "; ".join(
                f"{max(g)[0]:.1e} nats ({key}, {max(g)[1]})" for key, g in gaps.items())
            + " (flexmix reports the value of its last E-step, before its last M-step).")
    # agreement to the printed precision, row by row
    short_name = {"flexmix_default": "flexmix default", "flexmix_tight": "flexmix tight",
                  "mixtools_regmixEM": "mixtools"}
    rows = []
    for i, c in enumerate(t["cases"]):
        best = c["moestats"]["best_logLik"]
        r = c.get("r") or {}
        agree = [short_name[key] for key in R_KEYS
                 if (r.get(key) or {}).get("logLik") is not None
                 and _same(best, r[key]["logLik"])]
        differ = [f"{short_name[key]} {r[key]['logLik']:.3f} ({r[key]['logLik'] - best:+.4f})"
                  for key in R_KEYS if (r.get(key) or {}).get("logLik") is not None
                  and not _same(best, r[key]["logLik"])]
        if agree or differ:
            rows.append(f"{label[i]} (moestats {best:.3f}): "
                        + (f"agree: {', '.join(agree)}" if agree else "no R value agrees")
                        + (f"; differ (R − moestats): {'; '.join(differ)}" if differ else ""))
    same_mx, below = [], []
    for i, c in enumerate(t["cases"]):
        best = c["moestats"]["best_logLik"]
        r = c.get("r") or {}
        mx = (r.get("mixtools_regmixEM") or {}).get("logLik")
        if mx is not None and _same(best, mx):
            same_mx.append(label[i])
        r_lls = [(r.get(key) or {}).get("logLik") for key in R_KEYS]
        r_lls = [v for v in r_lls if v is not None]
        if r_lls and max(r_lls) > best + 1e-3:
            below.append(f"{label[i]} by {max(r_lls) - best:.3f}")
    if same_mx or below:
        notes.insert(0, f"In short: moestats' best of 5 equals mixtools' best of 10 to the "
                     f"printed precision in {len(same_mx)} of {len(t['cases'])} rows"
                     + (f" ({', '.join(same_mx)})" if same_mx else "")
                     + (f"; it is below R's best in {', '.join(below)} nats (the last "
                        "notes say why)"
                        if below else "; it is nowhere below R's best by more than 1e-3 nats")
                     + ". flexmix is a little lower everywhere it reaches the same maximum "
                     "(its variance estimate; below).")
    if rows:
        notes.append("Agreement of R's log-likelihoods with moestats' best to the printed "
                     "precision (3 decimals):\n" + "\n".join(f"  - {row}" for row in rows))
    # flexmix's variance M-step
    expected = {"free": lambda n, k: n / (n - 2), "equal": lambda n, k: k * n / (k * n - 2)}
    ratios = [(ratio, expected[c["variances"]](c["n"], c["k"]))
              for c in t["cases"]
              for ratio in ((c.get("r") or {}).get("flexmix_tight") or {}).get(
                  "variance_over_weighted_mse", [])]
    if ratios:
        dev = max(abs(ratio - want) for ratio, want in ratios)
        restarts = [(label[i], c["r"]["flexmix_tight"]["moestats_from_solution"],
                     c["moestats"]["best_logLik"], c["r"]["flexmix_tight"]["logLik"])
                    for i, c in enumerate(t["cases"])
                    if "moestats_from_solution" in ((c.get("r") or {}).get("flexmix_tight")
                                                    or {})]
        notes.append(
            "flexmix's variances are not maximum-likelihood estimates, so that flexmix stops "
            "a little below a maximum: its Gaussian M-step divides the weighted residual sum "
            "of squares by a residual count, not by the total weight. At its tight solutions each "
            "variance is n/(n − 2) times the weighted mean squared residual (the MLE) with "
            "free variances (`FLXMRglm`), and kn/(kn − 2) times the pooled one with "
            "`FLXMRglmfix(varFix = TRUE)` (largest deviation of the measured ratios from "
            f"these: {dev:.1e}). moestats started from flexmix's tight solution reaches: "
            + "; ".join(f"{lab} {rs['logLik']:.3f} ({rs['logLik'] - fx:+.4f})"
                        + ("" if rs["converged"] else " (not certified)")
                        + (" = moestats' best" if _same(rs["logLik"], best) else
                           f", moestats' best {best:.3f}")
                        for lab, rs, best, fx in restarts) + ".")
    stopped = [f"{label[i]} ({key}, {v['iter']} iterations)"
               for i, c in enumerate(t["cases"])
               for key in ("flexmix_default", "flexmix_tight")
               for v in [((c.get("r") or {}).get(key) or {})]
               if v and not v.get("converged", True)]
    if stopped:
        notes.append("flexmix stopped at iter.max without meeting its tolerance in: "
                     + "; ".join(stopped) + ".")
    # mixtools' starts, higher maxima
    for i, c in enumerate(t["cases"]):
        mx = (c.get("r") or {}).get("mixtools_regmixEM")
        if not mx:
            continue
        lls = [v for v in mx["start_logLiks"] if v is not None]
        best = c["moestats"]["best_logLik"]
        above = sum(v > best + 1e-3 for v in lls)
        at = sum(abs(v - best) <= 1e-3 for v in lls)
        text = (f"{label[i]}: of {len(mx['start_logLiks'])} regmixEM runs, {at} reached "
                f"moestats' maximum ({best:.3f}) to 1e-3 nats, {above} a higher one, "
                f"{len(lls) - at - above} a lower one"
                + (f", {len(mx['start_logLiks']) - len(lls)} failed"
                   if len(lls) < len(mx["start_logLiks"]) else "")
                + f" (regmixEM restarts: {mx.get('restarts', 0)})")
        if above:
            rs = mx.get("moestats_from_solution") or {}
            sd = mx["expert_sd"]
            pts = mx["points_per_expert"]
            text += (f". Its best, {mx['logLik']:.3f}, has expert standard deviations "
                     f"{', '.join(f'{v:.4g}' for v in sd)} (points per expert "
                     f"{', '.join(map(str, pts))}); moestats started there reaches "
                     f"{rs.get('logLik', float('nan')):.3f}, certified {rs.get('converged')}")
        notes.append(text + ".")
    # the single linear regression (k = 1) embedded in the k-expert model
    single = []
    for i, c in enumerate(t["cases"]):
        ols = c.get("single_regression_logLik")
        if ols is None:
            continue
        r = c.get("r") or {}
        hits = [f"moestats {which} of 5" for which, v in (
            ("best", c["moestats"]["best_logLik"]), ("worst", c["moestats"]["worst_logLik"]))
            if abs(v - ols) <= 1e-3]
        hits += [key for key in R_KEYS if (r.get(key) or {}).get("logLik") is not None
                 and abs(r[key]["logLik"] - ols) <= 1e-3]
        if hits:
            single.append(f"{label[i]}: {', '.join(hits)}")
    if single:
        ols_by_data = {c["data"]: c["single_regression_logLik"] for c in t["cases"]
                       if c.get("single_regression_logLik") is not None}
        notes.append(
            "The single linear regression (least squares, k = 1) has log-likelihood "
            + ", ".join(f"{v:.3f} ({name})" for name, v in ols_by_data.items())
            + ". Solutions at that value to 1e-3 nats are the one-line fit inside the "
            "k-expert model (an empty expert, or coinciding lines): " + "; ".join(single)
            + ".")
    # short runs above the final maximum; empty experts in moestats' best fit
    above, empty = [], []
    for i, c in enumerate(t["cases"]):
        fits = c["moestats"]["fits"]
        short = [max(f["short_run_logLiks"]) for f in fits if f.get("short_run_logLiks")]
        if short and max(short) > c["moestats"]["best_logLik"] + 1e-3:
            above.append(f"{label[i]} ({max(short):.3f} > {c['moestats']['best_logLik']:.3f})")
        best = max(fits, key=lambda f: f["logLik"])
        logits = np.asarray(best["params"]["gate_intercept"], dtype=float)
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        if weights.min() < 1e-6:
            empty.append(f"{label[i]} (weight {weights.min():.1e})")
    if above:
        notes.append(
            "moestats' short runs (emEM) ended above its final maximum in: "
            + "; ".join(above) + ". EM is monotone, so the short runs fitted another model: "
            "moestats' `emem` (called by `GaussianMoE.fit`) runs them without the fit's "
            "structure, with a free softmax gate slope (their values are the softmax "
            "table's maxima), and the starts ranked that way are then run with constant "
            "weights.")
    if empty:
        notes.append("moestats' best fit keeps an expert with a weight below 1e-6 (an empty "
                     "expert, a degenerate stationary point that its certificate accepts) "
                     "in: " + "; ".join(empty) + ".")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return lines


def write_markdown(result, path):
    lines = ["# Real data: moestats against flexmix and mixtools", ""]
    if result.get("cases") is not None:
        lines += softmax_lines(result)
    else:
        lines += ["## Softmax gate (mixture of experts)", "",
                  "Not run (`--tables softmax`)."]
    if result.get("constant"):
        lines += [""] + constant_lines(result["constant"])
    path.write_text("\n".join(lines) + "\n")


def _tables(text):
    tables = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [t for t in tables if t not in TABLES]
    if bad or not tables:
        raise argparse.ArgumentTypeError(
            f"--tables takes a comma-separated subset of {', '.join(TABLES)}, got {text!r}")
    return tables


def _load(case):
    name, loader, k = case
    X_df, y_s = loader(return_X_y=True)
    return X_df, y_s, X_df.to_numpy(dtype=float), y_s.to_numpy(dtype=float)


def _save(result, out, md_path):
    out.write_text(json.dumps(result, indent=2))
    write_markdown(result, md_path)


def run_softmax_table(result, args, r_ok, has_mixtools, workdir, save):
    for name, loader, k in CASES:
        X_df, y_s, X, y = _load((name, loader, k))
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
        save()
    result["status"] = "complete"
    result["load_end"] = load_average()
    save()


def run_constant_table(table, args, r_ok, has_mixtools, workdir, save):
    for name, loader, k in CASES:
        X_df, y_s, X, y = _load((name, loader, k))
        raw = None
        if r_ok:
            raw = run_regmix_r(X, y, k, has_mixtools=has_mixtools, timeout=args.r_timeout,
                               workdir=workdir)
            for key in ("r_version", "flexmix_version", "mixtools_version"):
                if key in raw:
                    table[key] = raw.pop(key)
        design = np.column_stack([np.ones_like(y), X])
        resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        single = -0.5 * len(y) * (np.log(2 * np.pi * np.mean(resid ** 2)) + 1)
        for variances, shared in VARIANCES:
            case = {"data": name, "n": len(y), "k": k, "variances": variances,
                    "x": list(X_df.columns), "y": y_s.name,
                    "single_regression_logLik": float(single),
                    "moestats": run_moestats(X, y, k, gate="constant",
                                             shared_variance=shared)}
            msg = (f"{name} k={k} {variances}: moestats best LL "
                   f"{case['moestats']['best_logLik']:.4f}, median "
                   f"{case['moestats']['median_time_s']:.2f} s")
            if raw is not None:
                case["r"] = r = regmix_row(raw, variances, X, y, k)
                msg += ("; R: " + ", ".join(
                    f"{key} {r[key]['logLik']:.4f} ({r[key]['elapsed_s']:.2f} s)"
                    for key in R_KEYS if key in r) if r["status"] == "ok" else f"; R: {r}")
            print(msg, flush=True)
            table["cases"].append(case)
            save()
    table["status"] = "complete"
    table["load_end"] = load_average()
    save()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-r", action="store_true", help="skip flexmix and mixtools")
    ap.add_argument("--r-timeout", type=float, default=900.0, help="seconds per Rscript call")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_real_data.json")
    ap.add_argument("--tables", type=_tables, default=TABLES,
                    help="comma-separated tables to fit: softmax (softmax gate), constant "
                         "(constant weights, free and equal variances); the others are "
                         "kept from the existing --out JSON (default: softmax,constant)")
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite the .md from an existing --out JSON, fit nothing")
    args = ap.parse_args(argv)
    md_path = args.out.with_suffix(".md")
    if args.markdown_only:
        write_markdown(json.loads(args.out.read_text()), md_path)
        print(md_path.read_text())
        return

    command = shlex.join(["python", "benchmarks/bench_real_data.py",
                          *(sys.argv[1:] if argv is None else argv)])
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    r_ok, r_reason, has_mixtools = r_status(args.no_r)

    def header():
        info = machine_info()
        return {"command": command, "status": "partial",
                "timestamp_utc": info["timestamp_utc"], "machine": info,
                "load_start": load_average(), "load_end": None, "r_available": r_ok,
                "r_reason": r_reason, "cases": []}

    if "softmax" in args.tables:
        result = header()
    else:   # the softmax table as it is (its own command, date, machine and load lines)
        result = {key: v for key, v in existing.items() if key != "constant"}
    if "constant" not in args.tables and existing.get("constant"):
        result["constant"] = existing["constant"]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        _save(result, args.out, md_path)

    with tempfile.TemporaryDirectory() as workdir:
        if "softmax" in args.tables:
            run_softmax_table(result, args, r_ok, has_mixtools, workdir, save)
        if "constant" in args.tables:
            result["constant"] = header()
            run_constant_table(result["constant"], args, r_ok, has_mixtools, workdir, save)
    save()
    print(md_path.read_text())


if __name__ == "__main__":
    main()
