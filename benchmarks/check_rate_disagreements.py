"""Why three full-form slopes disagree with theory: refits under a tighter certificate and
truth-agnostic multi-starts, and the stored local slopes (issue 9, "the experiment that
tells why").

``figures/RESULTS.md`` reports three full-form median slopes away from the theory's -1/2:
activation-gelu ``k2-gelu`` D1-temperature (mass) -0.43 [-0.45, -0.41], activation-sigmoid
``k2-sigmoid`` D1-temperature (beta_1/tau) -0.44 [-0.47, -0.42], and activation (tanh)
``k3-tanh`` (k = 3 > k* = 2) D2-temperature (beta_1/tau) -0.93 [-0.99, -0.87] and
D2-temperature (mass) -0.59 [-0.65, -0.57]. For each (config, fitted) pair this script

1. reads the full-form store ``<results>/<config>-full/*.sqlite`` (made by
   ``moestats run simulations/<config>.toml --full``) and checks it was written by
   ``load_spec("simulations/<config>.toml", "full")``;
2. takes the 3 smallest and the 2 largest sample sizes of the grid, replications 0..7;
3. rebuilds each task's data from its seed (``run_batch`` -> ``prepare_task`` ->
   ``simulate_data``) and refits it (a) with the stored spec (the reproduction check: the
   loss and log-likelihood must match the stored ones), (b) with ``certify_tol = 1e-6``
   instead of 1e-3 (a tighter certificate: the Newton finish runs until its predicted
   gain is below 1e-7 nats), and (c) with ``start = "agnostic"``, ``n_init = 10``
   (:class:`~moestats.GaussianMoE`'s data-driven starts, the best certified likelihood
   kept; no information from the truth). The agnostic fits cost ~20 CPU-s each at
   n = 1e5, so they run within ``--max-minutes`` of CPU time: all small-n tasks first,
   then the large-n tasks replication by replication, each only when its predicted cost
   (the last measured fit of that setup and n) still fits;
4. reports per (setup, loss, n) the medians, the largest relative change of the loss, how
   many fits reached a higher (lower) log-likelihood by more than 1e-3 nats, and the slope
   of the median between the smallest and the largest n per variant; and, from the stored
   full results (all replications, certified fits), the local slopes over consecutive
   half-decade windows of n (:func:`moestats.rates.local_slopes`, windows tiling the
   grid) and decades, with stratified-bootstrap 95% intervals;
5. checks, without fitting, whether the truth's mirror image (k* = 2: labels swapped, the
   gate's beta_1 and beta_0 negated) is the same model (equal log-likelihood: tanh and
   sigmoid are odd-symmetric up to a constant) and what loss it gets.

Usage::

    nice -n 5 python benchmarks/check_rate_disagreements.py [--results results]
        [--out benchmarks/results/check_rate_disagreements.json] [--max-minutes 10]

Writes ``benchmarks/results/check_rate_disagreements.{json,md}``; ``--render-only`` rebuilds
the summaries and the report from that JSON without refitting.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: (config, fitted, {loss column: RESULTS.md's full-form median slope [95% CI], last decade})
#: -- the disagreements this script looks into; the other loss of each pair rides along as
#: a control (same fits, agreeing slope).
CASES = [
    ("activation-gelu", "k2-gelu",
     {"loss": "-0.43 [-0.45, -0.41]; last decade -0.56 [-0.66, -0.46]"}),
    ("activation-sigmoid", "k2-sigmoid",
     {"loss_voronoi_ratio": "-0.44 [-0.47, -0.42]; last decade -0.49 [-0.61, -0.38]"}),
    ("activation", "k3-tanh",
     {"loss_voronoi_ratio": "-0.93 [-0.99, -0.87]; last decade -0.58 [-0.79, -0.42]",
      "loss": "-0.59 [-0.65, -0.57]; last decade -0.54 [-0.69, -0.40]"}),
]
COLUMNS = ("loss", "loss_voronoi_ratio")
VARIANTS = ("default", "tight", "agnostic")
LL_TOL = 1e-3          # nats: "reached a higher log-likelihood"
THEORY = -0.5


# --------------------------------------------------------------------------- helpers
def _row_losses(row):
    """``{column: value}`` of a run_batch row (NaN when the fit failed)."""
    if row.get("status") != "ok":
        return {c: float("nan") for c in COLUMNS}
    losses = json.loads(row["losses"])
    return {"loss": float(row["loss"]),
            "loss_voronoi_ratio": float(losses.get("voronoi_ratio", float("nan")))}


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def _median(values):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return float(np.median(v)) if v.size else float("nan")


def _slope(n_lo, m_lo, n_hi, m_hi):
    if not (m_lo > 0 and m_hi > 0):
        return float("nan")
    return float(math.log(m_hi / m_lo) / math.log(n_hi / n_lo))


def _ols_slope(ns, meds):
    pts = [(math.log(n), math.log(m)) for n, m in zip(ns, meds) if m > 0 and np.isfinite(m)]
    if len(pts) < 2:
        return float("nan")
    x, y = np.array(pts).T
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}"


def _fs(v):
    return "-" if v is None or not np.isfinite(v) else f"{v:+.2f}"


def find_store(results_dir, config):
    """The full-form store of ``config``, or ``(None, reason)``."""
    folder = Path(results_dir) / f"{config}-full"
    stores = sorted(folder.glob("*.sqlite")) if folder.is_dir() else []
    if not stores:
        return None, (f"no store {folder}/*.sqlite "
                      f"(run: moestats run simulations/{config}.toml --full)")
    if len(stores) > 1:
        return None, f"{folder} holds {len(stores)} stores; expected one"
    return stores[0], None


def check_spec(store, spec):
    """None when the store was written by ``spec``; a note when only the moestats version
    differs (the data and fits are then checked by the reproduction); else the reason."""
    if store.fingerprint == spec.fingerprint():
        return None, None
    old, new = store.spec_dict or {}, spec.as_dict()
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff == ["moestats_version"]:
        return (f"store written by moestats {old.get('moestats_version')}, running "
                f"{new.get('moestats_version')}: reproduction checked below"), None
    return None, f"store written by another spec (fields that differ: {diff})"


# --------------------------------------------------------------------------- stored slopes
def stored_slopes(df, setup, fitted, n_boot=1000, seed=0):
    """Whole-range and last-decade slopes of the median, and its local slopes over
    consecutive decades and half decades, from the stored certified fits, per loss column."""
    from moestats.rates import fit_rate, last_decade_slope, local_slopes
    part = df[df.fitted == fitted]
    excluded = ((part["status"] != "ok").to_numpy()
                | (part["certified"] == False).fillna(False).to_numpy(bool))  # noqa: E712
    n = part["n"].to_numpy(float)
    sizes = np.unique(n[~excluded])
    decades = math.log10(sizes.max() / sizes.min())
    out = {}
    for col in COLUMNS:
        losses = part[col].astype(float).to_numpy()
        bad = excluded | ~np.isfinite(losses)
        whole = fit_rate(n, losses, statistic="median", n_boot=n_boot, rng=seed, failed=bad)
        dec = last_decade_slope(n, losses, statistic="median", n_boot=n_boot, rng=seed,
                                failed=bad)
        out[col] = dict(gauge="/".join(sorted({g for g in part["loss_gauge"]
                                               if isinstance(g, str)})) or None,
                        slope=whole.slope, ci_low=whole.ci_low, ci_high=whole.ci_high,
                        decade_slope=dec.slope, decade_ci_low=dec.ci_low,
                        decade_ci_high=dec.ci_high,
                        n_fits=int((~bad).sum()), n_excluded=int(bad.sum()))
        for key, per_decade in (("half_decade", 2), ("decade", 1)):
            # k windows of `window` consecutive sizes, spread from the smallest to the
            # largest n (they tile the grid; neighbours share at most a size or two when
            # k does not divide the number of sizes)
            k = max(1, int(round(per_decade * decades)))
            window = max(2, int(math.ceil(sizes.size / k)))
            starts = sorted({int(round(s)) for s in np.linspace(0, sizes.size - window, k)})
            ls = local_slopes(n, losses, window=window, statistic="median", failed=bad,
                              n_boot=n_boot, rng=seed)
            out[col][f"{key}_window"] = window
            out[col][f"{key}_windows"] = [
                dict(n_low=float(ls.n_low[s]), n_high=float(ls.n_high[s]),
                     n_center=float(ls.n_center[s]), slope=float(ls.slope[s]),
                     ci_low=float(ls.ci_low[s]), ci_high=float(ls.ci_high[s]))
                for s in starts]
    return out


# --------------------------------------------------------------------------- symmetry
def mirror_check(setup_id, fitted, n=20000, seed=0):
    """The truth's mirror image for k* = 2: labels swapped, the gate's slope and intercept
    negated (beta_1 -> -beta_1, beta_0 -> -beta_0, relative to the new reference). For an
    odd-symmetric activation (tanh: sigma(-z) = -sigma(z); sigmoid: sigma(-z) = 1 - sigma(z))
    it has the truth's conditional density. Returns the log-likelihoods of the truth and of
    the mirror on ``n`` samples and the losses of the mirror (fitted configuration
    ``fitted``), or None when k* != 2."""
    from moestats import GaussianMoE
    from moestats.likelihood import log_likelihood
    from moestats.params import MoEParams
    from moestats.setups import get_setup
    from moestats.simulation.task import _losses
    setup = get_setup(setup_id)
    truth, cfg = setup.truth, {c.name: c for c in setup.fitted}[fitted]
    p = truth.params
    if p.n_experts != 2:
        return None
    d = p.as_dict()
    m = {}
    for key, value in d.items():
        v = np.asarray(value)
        m[key] = v[::-1].tolist() if v.ndim >= 1 and v.shape[0] == 2 else value
    gc, gi = np.asarray(d["gate_coef"], float), np.asarray(d["gate_intercept"], float)
    m["gate_coef"] = [(-(gc[0] - gc[1])).tolist(), np.zeros_like(gc[1]).tolist()]
    m["gate_intercept"] = [float(-(gi[0] - gi[1])), 0.0]
    mirror = MoEParams.from_dict(m)
    X, y = truth.sample(n, np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate = GaussianMoE(cfg.n_experts, gate=cfg.gate)._check_hyperparameters()
        _, losses, _ = _losses(cfg, truth, mirror, gate, None)
    return dict(n=n, loglik_truth=log_likelihood(truth.gate, p, X, y),
                loglik_mirror=log_likelihood(truth.gate, mirror, X, y),
                mirror_params=mirror.as_dict(),
                **{("loss" if k == "voronoi" else f"loss_{k}"): float(v)
                   for k, v in losses.items()})


# --------------------------------------------------------------------------- refits
class Budget:
    def __init__(self, minutes):
        self.limit = 60.0 * minutes
        self.t0 = time.process_time()

    @property
    def used(self):
        return time.process_time() - self.t0

    def fits(self, estimate):
        return self.used + estimate <= self.limit


def refit(spec, fitted, n, reps):
    """run_batch on the given replications; returns (rows, CPU seconds)."""
    from moestats.simulation import Task, run_batch
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.start == "agnostic":
            rows = [run_batch(spec, [Task(fitted, n, r)])[0] for r in reps]
        else:
            rows = run_batch(spec, [Task(fitted, n, r) for r in reps])
    return rows, time.process_time() - t0


def record(fits, case, variant, n, rows, cpu, stored):
    for row in rows:
        r = int(row["replication"])
        s = stored.get((n, r))
        losses = _row_losses(row)
        fits.append(dict(
            config=case["config"], fitted=case["fitted"], n=int(n), replication=r,
            variant=variant, status=row["status"],
            error=None if not row.get("error") else row["error"].splitlines()[0],
            certified=None if row.get("converged") is None else bool(row["converged"]),
            log_likelihood=row.get("log_likelihood"), passes=row.get("passes"),
            cpu_s=cpu / max(len(rows), 1), **losses,
            stored_log_likelihood=None if s is None else s["log_likelihood"],
            stored_passes=None if s is None else s.get("passes"),
            **{f"stored_{c}": (None if s is None else s[c]) for c in COLUMNS}))


# --------------------------------------------------------------------------- summaries
def summarize(fits, case, sizes):
    """Per (loss column, n): medians and changes per variant; per column: slopes."""
    rows, slopes = [], []
    mine = [f for f in fits if f["config"] == case["config"] and f["fitted"] == case["fitted"]]
    for col in COLUMNS:
        meds = {v: {} for v in ("stored", "tight", "agnostic", "best", "stored_agn")}
        for n in sizes:
            at = {v: [f for f in mine if f["n"] == n and f["variant"] == v] for v in VARIANTS}
            stored = [f[f"stored_{col}"] for f in at["default"]]
            row = dict(config=case["config"], fitted=case["fitted"], column=col, n=n,
                       reps=len(at["default"]), stored_median=_median(stored))
            d = [f for f in at["default"] if f["status"] == "ok"]
            row["default_max_rel_diff_loss"] = max(
                (_rel(f[col], f[f"stored_{col}"]) for f in d), default=float("nan"))
            row["default_max_abs_diff_loglik"] = max(
                (abs(f["log_likelihood"] - f["stored_log_likelihood"]) for f in d),
                default=float("nan"))
            for v in ("tight", "agnostic"):
                ok = [f for f in at[v] if f["status"] == "ok"]
                gains = [f["log_likelihood"] - f["stored_log_likelihood"] for f in ok]
                rel = [_rel(f[col], f[f"stored_{col}"]) for f in ok]
                row.update({
                    f"{v}_reps": len(at[v]), f"{v}_failed": len(at[v]) - len(ok),
                    f"{v}_uncertified": sum(1 for f in ok if not f["certified"]),
                    f"{v}_median": _median(f[col] for f in ok),
                    f"{v}_stored_median_same_reps": _median(f[f"stored_{col}"] for f in ok),
                    f"{v}_max_rel_change": max(rel, default=float("nan")),
                    f"{v}_median_rel_change": _median(rel),
                    f"{v}_higher_loglik": sum(g > LL_TOL for g in gains),
                    f"{v}_lower_loglik": sum(g < -LL_TOL for g in gains),
                    f"{v}_max_loglik_gain": max(gains, default=float("nan")),
                    # same likelihood (within LL_TOL) but a loss more than 10% away
                    f"{v}_same_loglik_loss_differs": sum(
                        abs(g) <= LL_TOL and r > 0.1 for g, r in zip(gains, rel)),
                })
            # the better of the stored (near-truth) fit and the agnostic one, by likelihood
            # (the agnostic one only when higher by more than LL_TOL)
            best = [f[col] if f["log_likelihood"] > f["stored_log_likelihood"] + LL_TOL
                    else f[f"stored_{col}"] for f in at["agnostic"] if f["status"] == "ok"]
            row["best_of_both_median"] = _median(best)
            rows.append(row)
            meds["stored"][n] = row["stored_median"]
            meds["tight"][n] = row["tight_median"]
            meds["agnostic"][n] = row["agnostic_median"]
            meds["best"][n] = row["best_of_both_median"]
            meds["stored_agn"][n] = row["agnostic_stored_median_same_reps"]
        lo, hi = sizes[0], sizes[-1]
        for key, label in (("stored", "stored (near-truth, certify 1e-3)"),
                           ("tight", "tight certificate (1e-6)"),
                           ("stored_agn", "stored, on the agnostic variant's replications"),
                           ("agnostic", "agnostic, 10 starts"),
                           ("best", "best likelihood of stored and agnostic")):
            m = meds[key]
            slopes.append(dict(config=case["config"], fitted=case["fitted"], column=col,
                               variant=key, label=label,
                               two_point=_slope(lo, m[lo], hi, m[hi]),
                               ols_5_sizes=_ols_slope(sizes, [m[n] for n in sizes])))
    return rows, slopes


# --------------------------------------------------------------------------- report
def markdown(out):
    from moestats.setups import get_setup
    m = out["machine"]
    lines = [
        "# Why three full-form slopes disagree with -1/2: tighter certificate, more starts, "
        "local slopes", "",
        f"Command: `{out['command']}`  ",
        f"Date: {out['date_utc']} UTC; moestats {m.get('moestats')}  ",
        f"Machine: nproc {m.get('nproc')}, {m.get('cpu_model')}; Numba threads "
        f"{out['numba_threads']}; load average at start {_load(out['load_start'])}, at end "
        f"{_load(out['load_end'])}  ",
        f"Run time: {out['wall_s']:.0f} s wall, {out['cpu_s']:.0f} s CPU "
        f"(budget {out['max_minutes']:g} CPU-min); {len(out['fits'])} refits; "
        f"{len(out.get('agnostic_not_run', []))} agnostic refits left out for the budget.  ",
        "Code: " + (f"git {out['git']['head']}" + (" with moestats/ modified"
                                                   if out["git"]["moestats_modified"] else "")
                    if out.get("git") else "commit not recorded by this run") + "."
        + (f"  \nReport rendered again from the JSON on {out['rendered_again']['date_utc']} "
           f"UTC (`{out['rendered_again']['command']}`)." if out.get("rendered_again") else ""),
        "",
        "Refits rebuild each task's data from its seed (`run_batch` -> `simulate_data`), the "
        "same data as the stored fit. Variants: **default** = the stored spec (reproduction "
        "check); **tight** = `certify_tol = 1e-6` (stored: 1e-3), same near-truth start; "
        "**agnostic** = `start = \"agnostic\"`, `n_init = 10`: `GaussianMoE`'s data-driven "
        "starts, best certified likelihood kept. \"ll up/down\" counts fits whose "
        f"log-likelihood is higher/lower than the stored fit's by more than {LL_TOL:g} nats. "
        "\"best of both\": per replication, the loss of whichever of the stored and the "
        "agnostic fit has the higher likelihood, the agnostic one only when higher by more "
        f"than {LL_TOL:g} nats (the better approximation of the MLE). \"same ll, loss > 10% "
        "away\": agnostic fits within that tolerance of the stored likelihood whose loss "
        "differs by more than 10%. "
        "Medians over the replications refitted (0..7; the agnostic variant may have fewer "
        "at the large n, its count is given).", ""]
    for note in out["skipped"]:
        lines += [f"**Skipped:** {note}", ""]
    for case in out["cases"]:
        if case.get("skipped"):
            continue
        setup = get_setup(case["setup"])
        cfg = {c.name: c for c in setup.fitted}[case["fitted"]]
        lines += [f"## {case['config']}, fitted `{case['fitted']}`", ""]
        lines += [f"Store: `{case['store']}`" + (
            f", last modified {case['store_modified_utc']} UTC" if case.get(
                "store_modified_utc") else "") + "."]
        if case.get("note"):
            lines += [case["note"]]
        lines.append("")
        rep = case["reproduction"]
        lines += [f"Reproduction (stored spec, {rep['fits']} fits): largest relative difference "
                  f"of the loss {_fmt(rep['max_rel_diff_loss'], 2)}, of the "
                  f"beta_1/tau loss {_fmt(rep['max_rel_diff_ratio'], 2)}, largest "
                  f"log-likelihood difference {_fmt(rep['max_abs_diff_loglik'], 2)} nats.", ""]
        mir = case.get("mirror")
        if mir:
            same = abs(mir["loglik_mirror"] - mir["loglik_truth"]) <= LL_TOL
            lines += [
                "Symmetry check (no fit): the truth's mirror image (labels swapped, "
                "beta_1 -> -beta_1, beta_0 -> -beta_0) has log-likelihood "
                f"{mir['loglik_mirror']:.6f} against the truth's {mir['loglik_truth']:.6f} "
                f"on {mir['n']} samples ("
                + ("the same model" if same else "a different model")
                + f"); its loss against the truth: {_fmt(mir.get('loss'))}"
                + (f", beta_1/tau loss {_fmt(mir['loss_voronoi_ratio'])}"
                   if mir.get("loss_voronoi_ratio") is not None else "") + ".", ""]
        for col in COLUMNS:
            st = case["stored_slopes"][col]
            name = _name(setup, cfg, col, st)
            flag = case["disagreement"].get(col)
            lines += [f"### {name}" + (f" — RESULTS.md: {flag}" if flag else
                                       " (control: agrees with -1/2 in RESULTS.md)"), ""]
            lines += [f"Stored full form, {st['n_fits']} certified fits: median slope "
                      f"{_fs(st['slope'])} [{_fs(st['ci_low'])}, {_fs(st['ci_high'])}], last "
                      f"decade {_fs(st['decade_slope'])} [{_fs(st['decade_ci_low'])}, "
                      f"{_fs(st['decade_ci_high'])}]. Local slopes of the median "
                      "(`local_slopes`, stratified bootstrap 95%) over consecutive decades "
                      f"({st['decade_window']} sizes each) and half decades "
                      f"({st['half_decade_window']} sizes each):", "",
                      "| window | n | local slope [95% CI] |", "| --- | --- | --- |"]
            for scale, key in (("decade", "decade_windows"),
                               ("half decade", "half_decade_windows")):
                for w in st[key]:
                    lines.append(f"| {scale} | {w['n_low']:.0f} - {w['n_high']:.0f} | "
                                 f"{_fs(w['slope'])} [{_fs(w['ci_low'])}, "
                                 f"{_fs(w['ci_high'])}] |")
            lines += ["", "| n | reps | stored median | tight median | tight max rel change "
                      "| tight ll up/down | agnostic reps | stored median (same reps) | "
                      "agnostic median | agnostic ll up/down | agnostic same ll, loss > 10% away | "
                      "best of both median |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for r in case["per_n"]:
                if r["column"] != col:
                    continue
                lines.append(
                    f"| {r['n']} | {r['reps']} | {_fmt(r['stored_median'])} | "
                    f"{_fmt(r['tight_median'])} | {_fmt(r['tight_max_rel_change'], 2)} | "
                    f"{r['tight_higher_loglik']}/{r['tight_lower_loglik']} | "
                    f"{r['agnostic_reps']} | {_fmt(r['agnostic_stored_median_same_reps'])} | "
                    f"{_fmt(r['agnostic_median'])} | {r['agnostic_higher_loglik']}/"
                    f"{r['agnostic_lower_loglik']} | {r['agnostic_same_loglik_loss_differs']} | "
                    f"{_fmt(r['best_of_both_median'])} |")
            lines += ["", f"Slope of the median between n = {case['sizes'][0]} and "
                      f"n = {case['sizes'][-1]} (two points; OLS over the 5 refitted sizes):",
                      "", "| variant | two-point slope | OLS, 5 sizes |", "| --- | --- | --- |"]
            for s in case["slopes"]:
                if s["column"] == col:
                    lines.append(f"| {s['label']} | {_fs(s['two_point'])} | "
                                 f"{_fs(s['ols_5_sizes'])} |")
            lines.append("")
    lines += ["## Conclusion", ""]
    if out.get("summary"):
        lines += ["Summary, per disagreement:", ""] + [f"- {c}" for c in out["summary"]]
        lines += ["", "Details:", ""]
    lines += [f"  - {c.strip()}" if c.startswith("  ") else f"- {c}"
              for c in out["conclusions"]]
    return "\n".join(lines) + "\n"


def _name(setup, cfg, col, stored_slopes):
    from moestats.simulation.report_tables import loss_name
    gauge = stored_slopes.get("gauge")
    return loss_name(setup, cfg, col) + (f" ({gauge})" if gauge else "")


def _ci(x, lo="ci_low", hi="ci_high", key="slope"):
    inside = x[lo] <= THEORY <= x[hi]
    return (f"{_fs(x[key])} [{_fs(x[lo])}, {_fs(x[hi])}], "
            + ("contains" if inside else "excludes") + " -0.5")


def _load(v):
    return "n/a" if v is None else ", ".join(f"{x:.2f}" for x in v)


def conclusions(out):
    """Plain statements read off the numbers (no interpretation beyond them)."""
    from moestats.setups import get_setup
    text, summary = [], []
    out["summary"] = summary
    cases = [c for c in out["cases"] if not c.get("skipped")]
    if not cases:
        return ["no store was found: nothing was refitted"]
    d = [f for f in out["fits"] if f["variant"] == "default" and f["status"] == "ok"]
    good = sum(_rel(f["loss"], f["stored_loss"]) < 1e-8 for f in d)
    worst = max(d, key=lambda f: _rel(f["loss"], f["stored_loss"]))
    text.append(
        f"Reproduction: {good} of {len(d)} refits with the stored spec give the stored loss "
        f"to < 1e-8 relative; the largest difference is "
        f"{_rel(worst['loss'], worst['stored_loss']):.2g} relative ({worst['config']} "
        f"{worst['fitted']}, n = {worst['n']}, replication "
        f"{worst['replication']}), with a log-likelihood "
        f"{worst['log_likelihood'] - worst['stored_log_likelihood']:+.2g} nats from the "
        f"stored one.")
    for c in cases:
        setup = get_setup(c["setup"])
        cfg = {x.name: x for x in setup.fitted}[c["fitted"]]
        mir = c.get("mirror")
        if mir:
            same = abs(mir["loglik_mirror"] - mir["loglik_truth"]) <= LL_TOL
            text.append(
                f"{c['config']} {c['fitted']}: the truth's mirror image (labels swapped, gate "
                f"slope and intercept negated) has "
                + (f"the truth's log-likelihood (difference "
                   f"{mir['loglik_mirror'] - mir['loglik_truth']:+.1g} nats on {mir['n']} "
                   f"samples), i.e. it is the same model, yet its loss is "
                   f"{_fmt(mir.get('loss'))}"
                   + (f" (beta_1/tau: {_fmt(mir['loss_voronoi_ratio'])})"
                      if mir.get("loss_voronoi_ratio") is not None else "")
                   + ": the loss is not invariant to this symmetry." if same else
                   f"a different log-likelihood ({mir['loglik_mirror'] - mir['loglik_truth']:+.1f}"
                   f" nats on {mir['n']} samples): no such symmetry."))
        for col in c["disagreement"]:
            st = c["stored_slopes"][col]
            name = _name(setup, cfg, col, st)
            per = [r for r in c["per_n"] if r["column"] == col]
            sl = {s["variant"]: s for s in c["slopes"] if s["column"] == col}
            small = [r for r in per if r["n"] in c["sizes"][:3]]
            large = [r for r in per if r["n"] in c["sizes"][-2:]]
            tmax = max(r["tight_max_rel_change"] for r in per)
            tll = max((abs(f["log_likelihood"] - f["stored_log_likelihood"])
                       for f in out["fits"] if f["config"] == c["config"]
                       and f["variant"] == "tight" and f["status"] == "ok"), default=0.0)
            tup = sum(r["tight_higher_loglik"] for r in per)
            dt = sl["tight"]["two_point"] - sl["stored"]["two_point"]
            text.append(
                f"{c['config']} {c['fitted']}, {name}: the 1e-6 certificate changes a loss by "
                f"at most {tmax:.2g} relative ({tup} of {sum(r['reps'] for r in per)} fits "
                f"gain > {LL_TOL:g} nats) and the two-point slope by {dt:+.3f} "
                f"({_fs(sl['stored']['two_point'])} -> {_fs(sl['tight']['two_point'])})"
                + (": the certificate's tolerance does not move these losses or this slope."
                   if abs(dt) < 0.02 and tmax < 0.1 else
                   f": the slope does not move, while single losses move by up to {tmax:.2g} "
                   f"relative with the log-likelihood moving by at most {tll:.1g} nats."
                   if abs(dt) < 0.02 else "."))
            a_up_s = sum(r["agnostic_higher_loglik"] for r in small)
            a_n_s = sum(r["agnostic_reps"] - r["agnostic_failed"] for r in small)
            a_up_l = sum(r["agnostic_higher_loglik"] for r in large)
            a_dn_l = sum(r["agnostic_lower_loglik"] for r in large)
            a_n_l = sum(r["agnostic_reps"] - r["agnostic_failed"] for r in large)
            text.append(
                f"  More starts: the agnostic 10-start fit has a higher likelihood than the "
                f"stored near-truth fit in {a_up_s} of {a_n_s} fits at the 3 smallest n and "
                f"{a_up_l} of {a_n_l} at the 2 largest n (lower in {a_dn_l}); the slope of "
                f"the best-of-both median is {_fs(sl['best']['two_point'])} against "
                f"{_fs(sl['stored_agn']['two_point'])} for the stored fits on the same "
                f"replications.")
            ups = [f for f in out["fits"] if f["config"] == c["config"]
                   and f["variant"] == "agnostic" and f["status"] == "ok"
                   and f["n"] in c["sizes"][-2:]
                   and f["log_likelihood"] > f["stored_log_likelihood"] + LL_TOL]
            if ups:
                text.append(
                    "  At the large n the higher agnostic maxima: " + "; ".join(
                        f"n {f['n']} rep {f['replication']}: +"
                        f"{f['log_likelihood'] - f['stored_log_likelihood']:.2f} nats, loss "
                        f"{f[f'stored_{col}']:.3g} -> {f[col]:.3g}" for f in ups) + ".")
            same = sum(r["agnostic_same_loglik_loss_differs"] for r in per)
            if same:
                text.append(
                    f"  {same} agnostic fits have the stored likelihood (within {LL_TOL:g} "
                    f"nats) but a loss more than 10% away: " + "; ".join(
                        f"n {f['n']} rep {f['replication']}: {f[f'stored_{col}']:.3g} -> "
                        f"{f[col]:.3g} (delta ll "
                        f"{f['log_likelihood'] - f['stored_log_likelihood']:+.1g})"
                        for f in out["fits"] if f["config"] == c["config"]
                        and f["variant"] == "agnostic" and f["status"] == "ok"
                        and abs(f["log_likelihood"] - f["stored_log_likelihood"]) <= LL_TOL
                        and _rel(f[col], f[f"stored_{col}"]) > 0.1) + ".")
            dw = st["decade_windows"]
            summary.append(
                f"{c['config']} {c['fitted']}, {name} (RESULTS.md {c['disagreement'][col]}): "
                f"the 1e-6 certificate moves the subsample slope by {dt:+.3f}; 10 agnostic "
                f"starts found a higher maximum than the stored fit in {a_up_l} of {a_n_l} "
                f"large-n fits (and {a_up_s} of {a_n_s} small-n fits); local slope of the "
                "stored median by decade "
                + " -> ".join(f"{_fs(x['slope'])} [{_fs(x['ci_low'])}, {_fs(x['ci_high'])}]"
                              for x in dw)
                + f" (n {dw[0]['n_low']:.0f} to {dw[-1]['n_high']:.0f}); -0.5 is "
                + ", ".join("inside" if x["ci_low"] <= THEORY <= x["ci_high"] else "outside"
                            for x in dw) + " these intervals.")
            w = st["half_decade_windows"]
            inside = [x for x in w if x["ci_low"] <= THEORY <= x["ci_high"]]
            text.append(
                "  Stored local slopes of the median (half-decade windows, all "
                "replications): "
                + ", ".join(f"{_fs(x['slope'])} (n {x['n_low']:.0f}-{x['n_high']:.0f})"
                            for x in w)
                + f"; {len(inside)} of {len(w)} intervals contain -0.5. First window "
                f"{_ci(w[0])}; last window {_ci(w[-1])}. By decade: "
                + "; ".join(f"n {x['n_low']:.0f}-{x['n_high']:.0f} {_ci(x)}"
                            for x in st["decade_windows"]) + ".")
    return text


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"),
                    help="folder holding <config>-full/*.sqlite (default: results)")
    ap.add_argument("--configs", type=Path, default=ROOT / "simulations",
                    help="folder of the TOML configs (default: simulations/)")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks/results/check_rate_disagreements.json",
                    help="JSON file; the .md report goes beside it")
    ap.add_argument("--max-minutes", type=float, default=10.0,
                    help="CPU minutes for the refits (the agnostic large-n fits are cut to fit)")
    ap.add_argument("--reps", type=int, default=8, help="replications 0..reps-1")
    ap.add_argument("--numba-threads", type=int, default=1,
                    help="Numba threads (default 1: one core; 0 keeps Numba's default)")
    ap.add_argument("--render-only", action="store_true",
                    help="no refits: rebuild the summaries and the .md from the JSON at --out")
    args = ap.parse_args(argv)
    if args.render_only:
        out = json.loads(args.out.read_text())
        for case in out["cases"]:
            store = Path(case.get("store") or "")
            if not case.get("skipped") and "store_modified_utc" not in case and store.is_file():
                case["store_modified_utc"] = _dt.datetime.fromtimestamp(
                    store.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
        out["rendered_again"] = dict(
            command=" ".join(["python"] + [shlex.quote(a) for a in sys.argv]),
            date_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        return finish(out, [c for c in out["cases"] if not c.get("skipped")], args.out)

    from moestats.simulation import ResultStore, load_spec
    if args.numba_threads > 0:
        import numba
        numba.set_num_threads(min(args.numba_threads, numba.config.NUMBA_NUM_THREADS))
    wall0 = time.perf_counter()
    budget = Budget(args.max_minutes)
    out = {"benchmark": "check_rate_disagreements",
           "command": " ".join(["python"] + [shlex.quote(a) for a in sys.argv]),
           "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "load_start": load_average(),
           "numba_threads": args.numba_threads, "max_minutes": args.max_minutes,
           "ll_tol": LL_TOL, "git": _git(), "skipped": [], "cases": [], "fits": []}
    log = lambda s: print(f"[{budget.used:6.0f} s cpu] {s}", flush=True)  # noqa: E731

    cases = []
    for config, fitted, disagreement in CASES:
        case = dict(config=config, fitted=fitted, disagreement=disagreement)
        out["cases"].append(case)
        path, reason = find_store(args.results, config)
        spec = None
        if path is None:
            pass
        else:
            spec = load_spec(args.configs / f"{config}.toml", "full")
            with ResultStore(path, readonly=True) as store:
                note, reason = check_spec(store, spec)
                df = store.to_frame() if reason is None else None
        if reason is not None:
            msg = f"{config} ({fitted}): {reason}; skipped"
            print(msg, flush=True)
            out["skipped"].append(msg)
            case["skipped"] = reason
            continue
        sizes = sorted(spec.sample_sizes)
        sub = sizes[:3] + sizes[-2:]
        reps = list(range(min(args.reps, spec.replications)))
        part = df[(df.fitted == fitted) & df.n.isin(sub) & df.replication.isin(reps)]
        stored = {(int(r.n), int(r.replication)): dict(
            log_likelihood=float(r.log_likelihood), loss=float(r.loss),
            loss_voronoi_ratio=float(r.loss_voronoi_ratio),
            passes=None if r.passes is None or r.passes != r.passes else int(r.passes))
            for r in part.itertuples()
            if r.status == "ok"}
        mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
        case.update(setup=spec.setup, store=str(path), note=note, sizes=sub, reps=reps,
                    store_modified_utc=mtime.isoformat(timespec="seconds"),
                    stored_slopes=stored_slopes(df, spec.setup, fitted))
        cases.append((case, spec, stored))
        log(f"{config} {fitted}: store {path}, sizes {sub}, replications 0..{reps[-1]}")

    # (a) reproduction and (b) tight certificate: cheap, all sampled tasks
    for case, spec, stored in cases:
        tight = dataclasses.replace(spec, certify_tol=1e-6)
        for n in case["sizes"]:
            for variant, sp in (("default", spec), ("tight", tight)):
                rows, cpu = refit(sp, case["fitted"], n, case["reps"])
                record(out["fits"], case, variant, n, rows, cpu, stored)
            log(f"{case['config']} n={n}: default + tight done")

    # (c) truth-agnostic multi-start: small n first, then large n replication by replication
    cost = {}
    agn = {id(case): dataclasses.replace(spec, start="agnostic", n_init=10)
           for case, spec, _ in cases}
    skipped_agn = []
    for case, spec, stored in cases:
        for n in case["sizes"][:3]:
            for r in case["reps"]:
                est = cost.get((case["config"], n), 0.0)
                if not budget.fits(est):
                    skipped_agn.append((case["config"], n, r))
                    continue
                rows, cpu = refit(agn[id(case)], case["fitted"], n, [r])
                cost[(case["config"], n)] = cpu
                record(out["fits"], case, "agnostic", n, rows, cpu, stored)
        log(f"{case['config']}: agnostic at the small n done")
    max_reps = max((len(c["reps"]) for c, _, _ in cases), default=0)
    for r in range(max_reps):
        for case, spec, stored in cases:
            if r >= len(case["reps"]):
                continue
            for n in case["sizes"][-2:]:
                est = cost.get((case["config"], n))
                if est is None:   # the largest n first measured, then scaled by n
                    other = [(m, c) for (cfg, m), c in cost.items()
                             if cfg == case["config"] and m >= case["sizes"][-2]]
                    est = other[0][1] * n / other[0][0] if other else 0.0
                if not budget.fits(est):
                    skipped_agn.append((case["config"], n, r))
                    continue
                rows, cpu = refit(agn[id(case)], case["fitted"], n, [r])
                cost[(case["config"], n)] = cpu
                record(out["fits"], case, "agnostic", n, rows, cpu, stored)
                log(f"{case['config']} n={n} rep {r}: agnostic {cpu:.1f} s cpu")
    out["agnostic_not_run"] = [dict(config=c, n=n, replication=r) for c, n, r in skipped_agn]

    out["load_end"] = load_average()
    out["cpu_s"] = budget.used
    out["wall_s"] = time.perf_counter() - wall0
    finish(out, [case for case, _, _ in cases], args.out)


def finish(out, cases, path):
    """Summaries, conclusions, the JSON and the markdown report."""
    for case in cases:
        per_n, slopes = summarize(out["fits"], case, case["sizes"])
        case["per_n"], case["slopes"] = per_n, slopes
        d = [f for f in out["fits"] if f["config"] == case["config"]
             and f["variant"] == "default" and f["status"] == "ok"]
        case["reproduction"] = dict(
            fits=len(d),
            max_rel_diff_loss=max((_rel(f["loss"], f["stored_loss"]) for f in d),
                                  default=float("nan")),
            max_rel_diff_ratio=max((_rel(f["loss_voronoi_ratio"],
                                         f["stored_loss_voronoi_ratio"]) for f in d),
                                   default=float("nan")),
            max_abs_diff_loglik=max((abs(f["log_likelihood"] - f["stored_log_likelihood"])
                                     for f in d), default=float("nan")))
        if "mirror" not in case:
            case["mirror"] = _clean(mirror_check(case["setup"], case["fitted"]))
    out["conclusions"] = conclusions(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(out), indent=1, default=_json_default) + "\n")
    path.with_suffix(".md").write_text(markdown(out))
    print("\n".join(out["conclusions"]))
    print(f"written {path} and {path.with_suffix('.md')}")


def _git():
    """HEAD and whether the working tree differs from it (None outside a checkout)."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "moestats"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"head": head or None, "moestats_modified": bool(dirty)}


def _clean(o):
    """NaN and inf as null (strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    return o


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)


if __name__ == "__main__":
    main()
