"""The ``moestats`` command: list setups, run sweeps, report results.

::

    moestats setups
    moestats run SETUP_OR_CONFIG [--quick | --full] [--n-jobs N] [--scheduler ADDRESS]
                 [--results DIR] [--no-report]
    moestats report RESULTS [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .run import DEFAULT_BATCH_SIZE

__all__ = ["main"]


def _cmd_setups(args):
    from ..setups import SETUPS
    for s in SETUPS.values():
        print(f"{s.id:15s} [{s.paper}] {s.description}")
        law = s.truth.x_law
        print(f"{'':15s}     truth: k* = {s.truth.params.n_experts}, d = {s.truth.params.n_features}, "
              f"gate {s.truth.gate!r}, X ~ U[{law.low}, {law.high}]")
        for c in s.fitted:
            slope = "no polynomial rate" if c.theory_slope is None else f"{c.theory_slope:+.3g}"
            note = f" ({c.note})" if c.note else ""
            print(f"{'':15s}     fitted {c.name}: k = {c.n_experts}, {c.gate!r}, loss {c.loss}, "
                  f"theory slope {slope}{note}")
    return 0


def _spec(target, form):
    from .spec import load_spec, spec_from_setup
    path = Path(target)
    if path.suffix == ".toml" or path.exists():
        return load_spec(path, form)
    return spec_from_setup(target, form)


def _print_rates(rates):
    if rates.empty:
        return
    cols = ["fitted", "column", "statistic", "slope", "ci_low", "ci_high", "theory_slope",
            "n_failed", "n_not_converged"]
    cols = [c for c in cols if c in rates]
    with __import__("pandas").option_context("display.width", 140, "display.max_rows", 200):
        print(rates[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _cmd_run(args):
    from .report import export_report
    from .run import run_sweep
    form = "full" if args.full else "quick"
    spec = _spec(args.target, form)
    results = Path(args.results)
    store_path = results / f"{spec.setup}-{form}.sqlite"
    print(f"moestats: {spec.setup} ({form}): {len(spec.sample_sizes)} sample sizes x "
          f"{spec.replications} replications x {len(spec.fitted)} fitted configuration(s) "
          f"-> {store_path}", file=sys.stderr)
    t0 = time.perf_counter()
    store = run_sweep(spec, store_path, n_jobs=args.n_jobs, scheduler=args.scheduler,
                      progress=not args.no_progress, batch_size=args.batch_size)
    n_failed, n_rows, errors = store.failures()
    store.close()
    print(f"moestats: sweep done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if n_failed:
        print(f"moestats: {n_failed} of {n_rows} fits failed (stored with their errors); "
              "most frequent:", file=sys.stderr)
        for line, count in list(errors.items())[:3]:
            print(f"  {count} x {line}", file=sys.stderr)
    if n_failed == n_rows:
        print("moestats: every fit failed; no report", file=sys.stderr)
        return 1
    if not args.no_report:
        rates = export_report(store_path, results)
        _print_rates(rates)
        print(f"moestats: figure, tables and slopes written to {results}/{store_path.stem}*",
              file=sys.stderr)
    return 0


def _cmd_report(args):
    from .report import export_report
    target = Path(args.results)
    stores = sorted(target.glob("*.sqlite")) if target.is_dir() else [target]
    if not stores:
        print(f"moestats: no *.sqlite results in {target}", file=sys.stderr)
        return 1
    for path in stores:
        print(f"== {path}")
        _print_rates(export_report(path, args.out))
    if args.markdown:
        from .report import results_markdown
        out = Path(args.out) if args.out else (target if target.is_dir() else target.parent)
        table = results_markdown(sorted(out.glob("*-slopes.json")))
        Path(args.markdown).write_text(table)
        print(table)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="moestats", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("setups", help="list the papers' setups with their theory")
    r = sub.add_parser("run", help="run (or resume) a sweep and report it")
    r.add_argument("target", help="a setup id (its config in simulations/) or a TOML config")
    form = r.add_mutually_exclusive_group()
    form.add_argument("--quick", action="store_true", help="the quick form (default)")
    form.add_argument("--full", action="store_true", help="the full form (the paper's grid)")
    r.add_argument("--n-jobs", type=int, default=None, help="local processes (default: all cores)")
    r.add_argument("--scheduler", default=None, help="a Dask scheduler address")
    r.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="replications of one n fitted together by batched EM "
                        f"(default {DEFAULT_BATCH_SIZE}; changes no result)")
    r.add_argument("--results", default="results", help="directory for the store and the report")
    r.add_argument("--no-report", action="store_true", help="only run, do not write the report")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep = sub.add_parser("report", help="rate table and figures of stored results")
    rep.add_argument("results", help="a .sqlite store or a directory of them")
    rep.add_argument("--out", default=None, help="output directory (default: beside the store)")
    rep.add_argument("--markdown", default=None,
                     help="also write a markdown table of all slopes in the output directory")
    return p


def main(argv=None):
    from .spec import ConfigError
    from .store import SpecMismatchError
    args = build_parser().parse_args(argv)
    handler = {"setups": _cmd_setups, "run": _cmd_run, "report": _cmd_report}[args.command]
    try:
        return handler(args)
    except (ConfigError, SpecMismatchError, ValueError) as exc:
        print(f"moestats: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
