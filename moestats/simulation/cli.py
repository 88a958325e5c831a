"""The ``moestats`` command: list setups, run sweeps, report results.

::

    moestats --version
    moestats setups
    moestats run SETUP_OR_CONFIG [--quick | --full] [--n-jobs N] [--scheduler ADDRESS]
                 [--connect-timeout S] [--wait] [--results DIR] [--no-report]
    moestats report RESULTS [--out DIR] [--markdown FILE]

``moestats run`` takes a setup id, whose config ships inside the package
(:mod:`moestats.configs`, the repository's ``simulations/``), or the path of a TOML
config (which may define a truth of its own: a ``[truth]`` table,
:mod:`~moestats.simulation.truth_config`). Where its outputs go:

- ``moestats run SETUP_ID``: ``results/<setup>-<form>.sqlite`` and the report beside it
  (``results/<setup>-<form>.png``, ...);
- ``moestats run path/to/foo.toml``: ``results/foo/foo-<form>.sqlite`` and the report in
  ``results/foo/``, named after the config file;
- with ``--results DIR``: ``DIR/<setup>-<form>.sqlite`` and the report in ``DIR``.

The figure's title is the config's ``description`` (the setup's own when the config has
none). On stderr, before the sweep: ``moestats: compiling kernels, once, about a
minute`` when the Numba kernels have never been compiled by this installation (their
on-disk cache is cold; once per process), and ``moestats: resumed N of M fits from the
store`` when the store already holds some of the sweep's fits (they are reused).

Faults end with one line on stderr, ``moestats: error: ...`` (naming the file or
address and what to do) or ``moestats: interrupted; N fits stored, rerun the same
command to resume``, and these exit codes (:data:`~moestats.simulation.faults.EXIT_CODES`):

====  =========================================================================
code  meaning
====  =========================================================================
0     done
1     ``run``: every fit failed (the fits are stored with their errors; no report)
2     usage or config error (``--n-jobs 0``, a missing or invalid TOML file, an
      unknown setup, a store written by another spec); nothing is created
3     store error: not a moestats store (another application's SQLite database,
      a 0-byte or non-database file, a directory), corrupt or truncated, missing,
      or without results; ``report`` reports the other stores of a directory and
      exits with the code of the first failure
4     the store is in use by another ``moestats run`` (``--wait`` waits instead)
5     file system error: disk full, read-only, permission denied, I/O error
6     Dask: ``--scheduler`` unreachable within ``--connect-timeout`` (nothing is
      created), connection lost, or no worker for too long
7     local worker processes died again and again (out of memory?)
130   interrupted by SIGINT (Ctrl-C); 143: by SIGTERM. Rerun to resume
====  =========================================================================

One writer per store: ``moestats run`` takes an exclusive lock (``<store>.lock``)
before it creates or opens the store; a second run on the same store refuses at
once (exit code 4), or with ``--wait`` waits for the first to finish and then
resumes. ``moestats report`` opens stores read-only and never changes them (it works
on a read-only directory with a writable ``--out``); its files are written
atomically (temporary file, then rename). After SIGINT, SIGTERM or SIGKILL of
``moestats run`` no worker process outlives it (:mod:`~moestats.simulation.workers`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .faults import (Interrupted, MoestatsError, StoreError, exit_code_table,
                     interrupts_raise, os_error)
from .run import DEFAULT_BATCH_SIZE, DEFAULT_CONNECT_TIMEOUT

__all__ = ["main", "build_parser", "version_text"]

#: printed once per process before a sweep that will compile the Numba kernels
COMPILE_MESSAGE = "compiling kernels, once, about a minute"
_compile_said = False


def _say(text):
    print(f"moestats: {text}", file=sys.stderr, flush=True)


def version_text():
    """``moestats <version>``: the installed distribution's version (``moestats --version``).

    Examples
    --------
    >>> import moestats
    >>> from moestats.simulation.cli import version_text
    >>> version_text() == f"moestats {moestats.__version__}"
    True
    """
    from importlib import metadata
    try:
        version = metadata.version("moestats")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        from .. import __version__ as version
    return f"moestats {version}"


def _say_if_compiling(spec):
    global _compile_said
    if _compile_said or spec.backend != "numba":
        return
    from .run import kernel_cache_is_cold
    try:
        cold = kernel_cache_is_cold()
    except Exception:
        return
    if cold:
        _compile_said = True
        _say(COMPILE_MESSAGE)


def _cmd_setups(args):
    from ..setups import SETUPS
    for s in SETUPS.values():
        print(f"{s.id:15s} [{s.paper}] {s.description}")
        law = s.truth.x_law
        print(f"{'':15s}     truth: k* = {s.truth.params.n_experts}, d = {s.truth.params.n_features}, "
              f"gate {s.truth.gate!r}, X ~ U[{law.low}, {law.high}]")
        for c in s.fitted:
            slope = (c.theory_text or "none") if c.theory_slope is None else f"{c.theory_slope:+.3g}"
            note = f" ({c.note})" if c.note else ""
            print(f"{'':15s}     fitted {c.name}: k = {c.n_experts}, {c.gate!r}, loss {c.loss}, "
                  f"theory slope {slope}{note}")
    return 0


def _config_path(target):
    """The config file ``target`` names, or ``None`` for a setup id."""
    path = Path(target)
    return path if path.suffix == ".toml" or path.exists() else None


def _spec(target, form):
    from .spec import ConfigError, load_spec, spec_from_setup
    path = Path(target)
    if _config_path(target) is not None:
        if path.is_dir():
            raise ConfigError(f"{path} is a directory; give a TOML config file or a setup id")
        if not path.exists():
            raise ConfigError(f"config file {path} not found; give an existing TOML file or a "
                              "setup id (moestats setups lists them)")
        try:
            return load_spec(path, form)
        except OSError as exc:
            raise os_error(exc, path, "reading the config") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text (TOML) file") from None
    return spec_from_setup(target, form)


def _print_rates(rates):
    if rates.empty:
        return
    cols = ["fitted", "column", "statistic", "slope", "ci_low", "ci_high", "theory_slope",
            "n_failed", "n_not_converged"]
    cols = [c for c in cols if c in rates]
    with __import__("pandas").option_context("display.width", 140, "display.max_rows", 200):
        print(rates[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _print_notes(rates):
    for note in getattr(rates, "attrs", {}).get("notes", []):
        _say(f"note: {note}")


def _stored(store_path):
    from .store import ResultStore
    try:
        with ResultStore(store_path, readonly=True) as store:
            return len(store)
    except Exception:
        return 0


def _cmd_run(args):
    from .report import export_report
    from .run import run_sweep
    form = "full" if args.full else "quick"
    spec = _spec(args.target, form)
    config = _config_path(args.target)
    if args.results is None and config is not None:  # named after the config file
        results = Path("results") / config.stem
        store_path = results / f"{config.stem}-{form}.sqlite"
    else:
        results = Path(args.results if args.results is not None else "results")
        store_path = results / f"{spec.setup}-{form}.sqlite"
    _say(f"{spec.setup} ({form}): {len(spec.sample_sizes)} sample sizes x "
         f"{spec.replications} replications x {len(spec.fitted)} fitted configuration(s) "
         f"-> {store_path}")
    _say_if_compiling(spec)
    t0 = time.perf_counter()
    try:
        store = run_sweep(
            spec, store_path, n_jobs=args.n_jobs, scheduler=args.scheduler,
            progress=not args.no_progress, batch_size=args.batch_size,
            wait=float("inf") if args.wait else 0.0,
            on_wait=lambda holder: _say(f"{store_path} is in use by another run"
                                        f"{f' ({holder})' if holder else ''}; waiting (--wait)"),
            connect_timeout=args.connect_timeout,
            on_resume=lambda done, total: _say(f"resumed {done} of {total} fits from the store"))
    except KeyboardInterrupt as exc:
        n = getattr(exc, "n_stored", None)
        exc.n_stored = _stored(store_path) if n is None else n
        raise
    try:
        n_failed, n_rows, errors = store.failures()
    finally:
        store.close()
    _say(f"sweep done in {time.perf_counter() - t0:.1f} s")
    if n_failed:
        _say(f"{n_failed} of {n_rows} fits failed (stored with their errors); most frequent:")
        for line, count in list(errors.items())[:3]:
            print(f"  {count} x {line}", file=sys.stderr)
    if n_failed == n_rows:
        _say("every fit failed; no report")
        return 1
    if not args.no_report:
        try:
            rates = export_report(store_path, results,
                                  description=spec.extra.get("description"))
        except KeyboardInterrupt as exc:
            exc.n_stored = n_rows
            raise
        _print_rates(rates)
        _print_notes(rates)
        _say(f"figure, tables and slopes written to {results}/{store_path.stem}*")
    return 0


def _cmd_report(args):
    from .report import export_report
    target = Path(args.results)
    if not target.exists():
        raise StoreError(f"{target} does not exist; give a .sqlite store or a directory of them")
    stores = sorted(target.glob("*.sqlite")) if target.is_dir() else [target]
    if not stores:
        raise StoreError(f"no *.sqlite results in {target}")
    code = 0
    for path in stores:
        print(f"== {path}", flush=True)
        try:
            rates = export_report(path, args.out)
        except MoestatsError as exc:
            _say(f"error: {exc}")
            code = code or exc.exit_code
            continue
        _print_rates(rates)
        _print_notes(rates)
    if args.markdown:
        from .atomic import write_text
        from .report import results_markdown, timing_markdown
        out = Path(args.out) if args.out else (target if target.is_dir() else target.parent)
        files = sorted(out.glob("*-slopes.json"))
        table = (results_markdown(files) + "\nSweep costs (per store: its fits, the time "
                 "spent in them, and the wall time of the recorded run sessions):\n\n"
                 + timing_markdown(files))
        write_text(args.markdown, table)
        print(table)
    return code


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line: ``moestats: error: ...`` (exit code 2)."""

    def error(self, message):
        self.exit(2, f"moestats: error: {message} (see {self.prog} --help)\n")


_EPILOG = exit_code_table() + """

one writer per store: a second 'moestats run' on a store in use refuses at once (exit
code 4); with --wait it waits for the first and then resumes. 'moestats report' opens
stores read-only and writes its files atomically."""


def build_parser():
    p = _Parser(prog="moestats", description=__doc__.split("\n")[0], epilog=_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=version_text(),
                   help="print 'moestats <version>' and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("setups", help="list the papers' setups with their theory")
    r = sub.add_parser("run", help="run (or resume) a sweep and report it", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("target", help="a setup id (its config ships with moestats: the "
                                  "repository's simulations/) or a TOML config file")
    form = r.add_mutually_exclusive_group()
    form.add_argument("--quick", action="store_true", help="the quick form (default)")
    form.add_argument("--full", action="store_true", help="the full form (the paper's grid)")
    r.add_argument("--n-jobs", type=_positive_int, default=None,
                   help="local worker processes, >= 1 (default: all cores)")
    r.add_argument("--scheduler", default=None, help="a Dask scheduler address")
    r.add_argument("--connect-timeout", type=_positive_float, default=DEFAULT_CONNECT_TIMEOUT,
                   help="seconds to wait for the --scheduler to answer "
                        f"(default {DEFAULT_CONNECT_TIMEOUT:g})")
    r.add_argument("--batch-size", type=_positive_int, default=None,
                   help="replications of one n fitted together by batched EM "
                        f"(default {DEFAULT_BATCH_SIZE}, 1 for agnostic starts and the mle "
                        "solver, fitted one by one; changes no result)")
    r.add_argument("--results", default=None,
                   help="directory for the store and the report (default: results/, or "
                        "results/<stem>/ for a config file <stem>.toml)")
    r.add_argument("--wait", action="store_true",
                   help="if another run holds the store, wait for it to finish, then resume "
                        "(default: refuse at once, exit code 4)")
    r.add_argument("--no-report", action="store_true", help="only run, do not write the report")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep = sub.add_parser("report", help="rate table and figures of stored results (read-only)",
                         epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("results", help="a .sqlite store or a directory of them")
    rep.add_argument("--out", default=None, help="output directory (default: beside the store)")
    rep.add_argument("--markdown", default=None,
                     help="also write a markdown table of all slopes, and one of the sweeps' "
                          "costs, to this file")
    return p


def main(argv=None):
    """Run the ``moestats`` command; return its exit code (see the module docstring).

    Examples
    --------
    >>> from moestats.simulation.cli import main
    >>> main(["run", "softmax-exact", "--n-jobs", "0"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    from .spec import ConfigError
    from .store import SpecMismatchError
    args = build_parser().parse_args(argv)
    handler = {"setups": _cmd_setups, "run": _cmd_run, "report": _cmd_report}[args.command]
    with interrupts_raise():
        try:
            return handler(args)
        except KeyboardInterrupt as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            if args.command == "run":
                n = getattr(exc, "n_stored", None) or 0
                _say(f"interrupted; {n} fit{'s' if n != 1 else ''} stored, rerun the same "
                     "command to resume")
            else:
                _say("interrupted; no store was changed")
            return code
        except MoestatsError as exc:
            _say(f"error: {exc}")
            return exc.exit_code
        except (ConfigError, SpecMismatchError, ValueError) as exc:
            _say(f"error: {exc}")
            return 2
        except OSError as exc:
            err = os_error(exc)
            _say(f"error: {err}")
            return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
