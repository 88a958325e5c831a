"""Over-specified softmax beyond n = 1e5: do the doubled cells' a and ν reach -1/4?

The full form of ``softmax-over`` (199 sizes from 2e3 to 1e5, 40 replications) measures the
doubled Voronoi cells' expert slopes ``a`` at -0.09 to -0.13 and variances ``ν`` at -0.13
to -0.15 per decade of log n, where the theory's bound is -1/4 (β₁ and b agree with their
-1/8). ``check_large_n.py`` showed that the activation gates' slow slopes were
pre-asymptotic; this script asks the same of the per-cell rates. It reads

* the committed full-form store ``<results>/softmax-over-full/`` (2e3 to 1e5), and
* sweeps of the same config at n = 1e5 to 1e6 (6 log-spaced sizes, 40 replications; same
  seed, truth, near-truth start, certificate and Θ, so its n = 1e5 tasks are the full
  form's: the reproduction check below), made by::

      python -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; \\
          import check_large_n as c; c.large_config('softmax-over', Path('results'), 40)"
      moestats run results/large-n/softmax-over-r40.toml --full --n-jobs 1 --batch-size 8 \\
          --results <large store directory>

  (run with the 0.7.0 code of the committed full store into ``results/large-n-softmax/run``;
  0.8.0 computes these fits bit for bit as 0.7.0 does, ``check_reproduction_080.md``), and
  the same with ``fitted = ["k3"]`` and 200 replications
  (``results/large-n/softmax-over-k3-r200.toml``, 0.8.0), so that the one-decade slopes of
  the doubled cell, whose fits are split between two cells, have narrower intervals
  (about +-0.15 at 200 replications against +-0.3 to 0.5 at 40),

and reports, per fitted model, Voronoi cell, cell size, parameter block and error form
(the stored max over the cell's atoms, and the theory's weighted form of
:mod:`moestats.simulation.cell_forms`), the slope of
the median error with its stratified bootstrap 95% interval over 2e3–1e5, over 1e5–1e6 and
over 2e3–1e6 (:func:`moestats.plotting.cell_rate_table`, certified fits only), the D2 slopes
per decade (:func:`check_large_n.decade_slopes`), and draws the per-cell figure over
2e3–1e6 for each fitted model.

Usage::

    python benchmarks/check_large_n_cells.py [--results results]
        [--large DIR [DIR ...]] [--render-only]

Writes ``benchmarks/results/check_large_n_cells.{json,md}`` and
``check_large_n_cells-<fitted>-<form>.png``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402
from check_large_n import decade_slopes, fmt_ci, overlap_check, write_outputs  # noqa: E402
from check_reproduction import store_frame  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "check_large_n_cells"
CONFIG = "softmax-over"
#: the large-n stores: both fitted models with 40 replications (moestats 0.7.0, as the full
#: store), and k = 3 alone with 200 (0.8.0; its first 40 replications are the other's)
LARGE_DEFAULT = ("large-n-softmax/run", "large-n/softmax-over-k3-r200")
RANGES = {"2e3–1e5": "full", "1e5–1e6": "large", "2e3–1e6": "both"}


def _slopes(frame, fitted, form):
    from moestats.plotting import cell_rate_table
    t = cell_rate_table(frame, fitted=fitted, by="size", statistic="median", n_boot=1000, rng=0)
    t = t[t["error"] == ""]
    return {(int(r.cell), int(r.size), r.block, form): dict(
        theory=r.theory_slope, slope=r.slope, ci_low=r.ci_low, ci_high=r.ci_high,
        n_sizes=int(r.n_sizes), fits=int(r.fits)) for r in t.itertuples()}


def read_large(dirs) -> tuple:
    """The large-n stores' results, each task once, and the agreement of shared tasks."""
    import pandas as pd
    frames = [store_frame(d) for d in dirs]
    shared = []
    for i, a in enumerate(frames):
        for b in frames[i + 1:]:
            for fitted in sorted(set(a["fitted"]) & set(b["fitted"])):
                shared.append(dict(fitted=fitted, **overlap_check(
                    a, b, fitted, ("loss", "log_likelihood"))))
    large = pd.concat(frames, ignore_index=True).drop_duplicates(
        subset=["fitted", "n", "replication"])
    return large, shared


def analyse(results: Path, large) -> list:
    import pandas as pd
    full = store_frame(results / f"{CONFIG}-full")
    from moestats.setups import get_setup
    from moestats.simulation.cell_forms import weighted_cell_frame
    both = pd.concat([full, large], ignore_index=True).drop_duplicates(
        subset=["fitted", "n", "replication"])
    forms = {"max": both, "weighted": weighted_cell_frame(both, get_setup(CONFIG))}
    split = {"full": lambda f: f[f["n"] <= 1e5], "large": lambda f: f[f["n"] >= 1e5],
             "both": lambda f: f}
    entries = []
    for fitted in sorted(large["fitted"].unique()):
        part = large[large.fitted == fitted]
        uncertified = ((part["status"] != "ok")
                       | (part["certified"] == False).fillna(False)).sum()  # noqa: E712
        per_range = {label: {k: v for form, frame in forms.items()
                             for k, v in _slopes(split[key](frame), fitted, form).items()}
                     for label, key in RANGES.items()}
        keys = sorted(set().union(*per_range.values()), key=lambda k: (k[1], k[0], k[2], k[3]))
        cells = []
        for key in keys:
            row = dict(cell=key[0], size=key[1], block=key[2], form=key[3])
            for label, table in per_range.items():
                if key in table:
                    row["theory"] = table[key]["theory"]
                    row[label] = {k: v for k, v in table[key].items() if k != "theory"}
            cells.append(row)
        entries.append(dict(
            fitted=fitted, large_n_fits=int(len(part)), large_n_uncertified=int(uncertified),
            large_n_cpu_s=float(part["wall_time"].sum()),
            overlap=overlap_check(full, large, fitted, ("loss", "log_likelihood")),
            d2=decade_slopes(both, fitted, "loss"), cells=cells))
        for form, frame in forms.items():
            fig = _figure(frame, fitted, form)
            fig.savefig(OUT.parent / f"{OUT.name}-{fitted}-{form}.png", dpi=110)
    return entries


def _figure(frame, fitted, form):
    from moestats.plotting import plot_cell_rates
    return plot_cell_rates(frame, fitted=fitted, n_boot=200, rng=0,
                           title=f"{CONFIG} {fitted}, near-truth start, n = 2e3 to 1e6; "
                           f"per-cell errors: {form} over the cell's atoms")


def render(payload) -> str:
    m = payload["machine"]
    lines = [
        "# Over-specified softmax: per-cell rates beyond n = 1e5",
        "",
        f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, "
        f"nproc {m.get('nproc')}, moestats {m.get('moestats')} (analysis); load average "
        f"{payload['load']}.",
        "",
        "Stores: the committed full form (199 sizes, 2e3 to 1e5, 40 replications) and sweeps "
        "of the same config at 6 sizes from 1e5 to 1e6 (k = 3: 200 replications, k = 4: 40; "
        "same seed, truth, near-truth start, certificate and Θ). Slopes: OLS of log(median error) on log n, "
        "certified fits only, per cell size (the fits whose cell had that size), stratified "
        "bootstrap 95% intervals (1000 resamples). Two forms of a cell's error: `max` over its "
        "atoms (the stored one) and `weighted` (the theory's form, "
        "moestats.simulation.cell_forms). Cell size 1: theory −1/2; size 2: −1/8 "
        "(gate_coef β₁, intercept b), −1/4 (expert_coef a, variance ν); size 3: −1/12 and −1/6; "
        "weight sums −1/2.",
        "",
    ]
    lines += ["Large-n stores: " + ", ".join(f"`{d}`" for d in payload["stores"]) + ". "
              + " ".join(f"Tasks of {s['fitted']} in two of them: {s['tasks']}, largest "
                         f"relative difference of loss and log-likelihood {s['max_rel_diff']:.1e}."
                         for s in payload["shared"]), ""]
    for e in payload["entries"]:
        o = e["overlap"]
        lines += [f"## {e['fitted']}", "",
                  f"Large-n sweep: {e['large_n_fits']} fits, {e['large_n_uncertified']} "
                  f"uncertified or failed, {e['large_n_cpu_s']:.0f} CPU s. Tasks at n = 1e5 in "
                  f"both stores: {o['tasks']}, largest relative difference of loss and "
                  f"log-likelihood {o['max_rel_diff']:.1e}.", "",
                  "D2 (" + str(e["d2"]["gauge"]) + "), slope of the median: " + "; ".join(
                      f"{w['n_low']:.0e}–{w['n_high']:.0e} {fmt_ci(w)}" for w in e["d2"]["windows"])
                  + ".", "",
                  "| cell | size | block | form | theory | " + " | ".join(RANGES) + " |",
                  "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in RANGES) + " |"]
        for c in e["cells"]:
            th = c.get("theory")
            lines.append(f"| {c['cell']} | {c['size']} | {c['block']} | {c['form']} | "
                         f"{'—' if th is None else f'{th:+.3f}'} | "
                         + " | ".join(fmt_ci(c.get(label)) for label in RANGES) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--large", type=Path, nargs="+", default=None,
                    help="directories of the 1e5-1e6 stores, read together (default "
                         + ", ".join(f"<results>/{d}" for d in LARGE_DEFAULT) + ")")
    ap.add_argument("--render-only", action="store_true",
                    help="rebuild the report from the JSON without reading stores")
    args = ap.parse_args(argv)
    payload = None
    if not args.render_only:
        dirs = args.large or [args.results / d for d in LARGE_DEFAULT]
        large, shared = read_large(dirs)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        payload = dict(command="python benchmarks/check_large_n_cells.py " + shlex.join(
            sys.argv[1:] if argv is None else argv), machine=machine_info(),
            load=load_average(), stores=[str(d) for d in dirs], shared=shared,
            entries=analyse(args.results, large))
    write_outputs(OUT, payload, render)


if __name__ == "__main__":
    main()
