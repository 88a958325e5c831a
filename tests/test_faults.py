"""Sweeps and the CLI under faults (issue 12): no hang, no orphan, no traceback, nothing lost.

Each test reproduces one fault: a store that is not a moestats store, a corrupt or
locked one, a full disk, a read-only directory, an unreachable scheduler, an
interrupt, a killed driver or worker. The tests that kill processes or start a Dask
cluster are marked slow (``pytest -m slow tests/test_faults.py``).
"""

import contextlib
import errno
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moestats.simulation import ResultStore, SweepSpec, run_sweep
from moestats.simulation.atomic import atomic_path, remove_stale_temporaries, write_text
from moestats.simulation.cli import main as cli_main
from moestats.simulation.faults import (EXIT_CODES, FileSystemError, Interrupted, StoreError,
                                        StoreLockedError, deferred_interrupts, interrupts_raise)
from moestats.simulation.locking import StoreLock, lock_path
from moestats.simulation.store import APPLICATION_ID
from moestats.simulation.workers import WORKER_MARK

#: columns that must agree bit for bit between two runs (wall time excluded)
RESULT_COLUMNS = ["fitted", "n", "replication", "status", "loss", "losses", "errors",
                  "log_likelihood", "n_iter", "converged", "params", "init", "assignment",
                  "loss_gauge", "cells"]

TINY = """
setup = "softmax-exact"
seed = 3
density_sample = 0
[solver]
max_iter = 200
[quick]
sample_sizes = {sizes}
replications = {reps}
"""


def tiny_config(tmp_path, sizes=(100, 200), reps=2, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(TINY.format(sizes=list(sizes), reps=reps))
    return path


def tiny_spec(**changes):
    base = dict(setup="softmax-exact", fitted=("k2",), sample_sizes=(100, 200),
                replications=2, seed=3, density_sample=0, max_iter=200)
    base.update(changes)
    return SweepSpec(**base)


def frame(path):
    with ResultStore(path, readonly=True) as store:
        return store.to_frame(expand=False)[RESULT_COLUMNS].sort_values(
            ["fitted", "n", "replication"]).reset_index(drop=True)


def digest(path):
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def error_lines(err):
    """The ``moestats: error:`` lines of stderr; fails on any traceback."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("moestats: error:")]


def one_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def synthetic_store(path, spec=None, *, rows=40, status="ok"):
    """A store with ``rows`` synthetic result rows (no fitting)."""
    spec = spec or tiny_spec(sample_sizes=(100, 1000), replications=rows // 2)
    rng = np.random.default_rng(0)
    with ResultStore(path, spec) as store:
        store.add_many([{"fitted": "k2", "n": n, "replication": r, "status": status,
                         "error": None if status == "ok" else "RuntimeError: boom",
                         "loss": n ** -0.5 * rng.lognormal(0, 0.2) if status == "ok" else None,
                         "converged": status == "ok", "n_iter": 5, "wall_time": 0.1,
                         "loss_gauge": "slope", "params": "x" * 500}
                        for n in (100, 1000) for r in range(rows // 2)])
    return spec


def test_exit_codes_are_documented():
    from moestats.simulation import cli, faults
    for parser in (cli.build_parser(), cli.build_parser()._subparsers._group_actions[0]
                   .choices["run"]):
        help_text = parser.format_help()
        for code in EXIT_CODES:
            assert f"  {code:>3}  " in help_text
    for doc in (cli.__doc__, faults.__doc__):
        for code in (2, 3, 4, 5, 6, 7, 130, 143):
            assert f"\n{code} " in doc or f" {code}:" in doc or f"; {code}:" in doc, code


# --------------------------------------------------------------------------- usage
def test_n_jobs_zero_is_refused_before_any_store_exists(tmp_path, capsys):
    config = tiny_config(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli_main(["run", str(config), "--n-jobs", "0", "--results", str(tmp_path / "r")])
    assert info.value.code == 2
    one_error(capsys, "--n-jobs", "got 0")
    with pytest.raises(ValueError, match="n_jobs must be an integer >= 1, got 0"):
        run_sweep(tiny_spec(), tmp_path / "r" / "s.sqlite", n_jobs=0)
    assert not (tmp_path / "r").exists()


def test_missing_config_file_is_one_line(tmp_path, capsys):
    assert cli_main(["run", str(tmp_path / "nope.toml"), "--results", str(tmp_path)]) == 2
    one_error(capsys, "nope.toml", "not found")


def test_unreachable_scheduler_is_one_line_and_creates_nothing(tmp_path, capsys):
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    code = cli_main(["run", str(tiny_config(tmp_path)), "--scheduler", address,
                     "--connect-timeout", "1", "--results", str(tmp_path / "r")])
    assert code == 6 and time.monotonic() - t0 < 30
    one_error(capsys, address, "--connect-timeout")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- stores
def _zero_bytes(path):
    path.write_bytes(b"")


def _foreign(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.execute("INSERT INTO customers VALUES ('ada')")
    con.commit()
    con.close()


def _foreign_app_id(path):
    con = sqlite3.connect(path)  # the same tables, another application's id
    con.execute("PRAGMA application_id = 1234")
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("CREATE TABLE results (fitted TEXT, n INTEGER, replication INTEGER)")
    con.commit()
    con.close()


def _not_sqlite(path):
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def _truncated(path):
    synthetic_store(path, rows=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_pages(path):
    synthetic_store(path, rows=200)
    data = bytearray(path.read_bytes())
    data[4096 * 2: 4096 * 4] = b"\xff" * 8192  # wreck two b-tree pages
    path.write_bytes(bytes(data))


BAD_STORES = {"0-byte file": (_zero_bytes, "empty (0-byte)"),
              "foreign database": (_foreign, "another application"),
              "foreign application id": (_foreign_app_id, "another application"),
              "not SQLite": (_not_sqlite, "not an SQLite database"),
              "truncated store": (_truncated, "corrupt"),
              "corrupt store": (_corrupt_pages, "corrupt")}


@pytest.mark.parametrize("kind", list(BAD_STORES))
def test_what_is_not_a_sound_store_is_refused_and_left_alone(tmp_path, capsys, kind):
    make, words = BAD_STORES[kind]
    results = tmp_path / "r"
    results.mkdir()
    path = results / "softmax-exact-quick.sqlite"
    make(path)
    before = digest(path)
    code = cli_main(["run", str(tiny_config(tmp_path)), "--n-jobs", "1", "--results",
                     str(results), "--no-progress"])
    assert code == 3
    one_error(capsys, path, words)
    assert cli_main(["report", str(path), "--out", str(tmp_path / "out")]) == 3
    one_error(capsys, path, words)
    with pytest.raises(StoreError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ResultStore(path, tiny_spec())
    assert digest(path) == before  # never written, not even converted
    assert not any(p.name.endswith(".tmp") for p in results.iterdir())


def test_a_directory_at_the_store_path_is_refused(tmp_path, capsys):
    results = tmp_path / "r"
    (results / "softmax-exact-quick.sqlite").mkdir(parents=True)
    assert cli_main(["run", str(tiny_config(tmp_path)), "--n-jobs", "1", "--results",
                     str(results), "--no-progress"]) == 3
    one_error(capsys, results / "softmax-exact-quick.sqlite", "is a directory")


def test_a_new_store_is_marked_and_an_old_one_is_marked_at_its_first_write(tmp_path):
    path = tmp_path / "s.sqlite"
    with ResultStore(path, tiny_spec()):
        pass
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] \
        .startswith("moestats-results")
    # an older store: application id 0; opened (even for writing) it is not changed ...
    con.execute("PRAGMA application_id = 0")
    con.execute("DELETE FROM meta WHERE key = 'format'")
    con.commit()
    con.close()
    before = digest(path)
    with ResultStore(path, tiny_spec()) as store:
        assert len(store) == 0
    assert digest(path) == before
    with ResultStore(path, tiny_spec()) as store:  # ... until it is written to
        store.add({"fitted": "k2", "n": 100, "replication": 0, "status": "ok"})
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()


def test_store_creation_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
    import moestats.simulation.store_file as store_mod
    path = tmp_path / "s.sqlite"
    real = store_mod.os.link

    def crash(src, dst):
        raise KeyboardInterrupt  # an interrupt between building and linking

    monkeypatch.setattr(store_mod.os, "link", crash)
    with pytest.raises(KeyboardInterrupt):
        ResultStore(path, tiny_spec())
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(store_mod.os, "link", real)
    # a temporary left by a killed process is removed by the next creation
    stale = tmp_path / ".s.sqlite.999999999.0123abcd.tmp"
    stale.write_bytes(b"half")
    with ResultStore(path, tiny_spec()) as store:
        assert store.fingerprint == tiny_spec().fingerprint()
    assert not stale.exists()


# --------------------------------------------------------------------------- report
def test_report_goes_on_past_bad_stores(tmp_path, capsys):
    results = tmp_path / "r"
    results.mkdir()
    synthetic_store(results / "a-good.sqlite")
    _truncated(results / "b-truncated.sqlite")
    _zero_bytes(results / "c-empty.sqlite")
    code = cli_main(["report", str(results), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert code == 3 and len(lines) == 2
    assert "b-truncated.sqlite" in lines[0] and "c-empty.sqlite" in lines[1]
    assert (tmp_path / "out" / "a-good-table.csv").exists()
    assert "== " + str(results / "c-empty.sqlite") in captured.out


def test_report_never_changes_a_store(tmp_path, capsys):
    path = tmp_path / "r" / "s.sqlite"
    path.parent.mkdir()
    synthetic_store(path)
    os.unlink(lock_path(path))
    before = digest(path)
    assert cli_main(["report", str(path), "--out", str(tmp_path / "out")]) == 0
    assert digest(path) == before
    assert not lock_path(path).exists()  # a report takes no lock
    with ResultStore(path, readonly=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.add({"fitted": "k2", "n": 100, "replication": 0, "status": "ok"})
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "nothing.sqlite", readonly=True)
    assert not (tmp_path / "nothing.sqlite").exists()


@contextlib.contextmanager
def mounted(target, *options, fstype=None, source=None):
    """Mount (root only; else skip) and unmount at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    target.mkdir(parents=True, exist_ok=True)
    cmd = ["mount"] + (["-t", fstype] if fstype else []) + list(options) + \
        [source or fstype or "none", str(target)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(cmd)})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_report_works_on_a_read_only_directory(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    synthetic_store(src / "s.sqlite")
    before = digest(src / "s.sqlite")
    ro = tmp_path / "ro"
    with mounted(ro, "--bind", source=str(src)):
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only")
        assert cli_main(["report", str(ro), "--out", str(tmp_path / "out")]) == 0
        assert (tmp_path / "out" / "s-table.csv").exists()
        # without --out the outputs would go beside the store: one line, exit code 5
        assert cli_main(["report", str(ro)]) == 5
        one_error(capsys, "read-only file system", "--out")
    assert digest(src / "s.sqlite") == before
    assert sorted(p.name for p in src.iterdir()) == ["s.sqlite", "s.sqlite.lock"]


def test_report_of_a_store_whose_fits_all_failed(tmp_path, capsys):
    path = tmp_path / "f.sqlite"
    synthetic_store(path, status="failed")
    assert cli_main(["report", str(path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert not error_lines(err)
    notes = [line for line in err.splitlines() if line.startswith("moestats: note:")]
    assert len(notes) == 1 and "figures skipped" in notes[0] and "40 of 40 failed" in notes[0]
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "f-table.csv" in out and "f-results.csv" in out
    assert not [name for name in out if name.endswith((".png", ".svg"))]


def test_a_failed_figure_write_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import matplotlib.figure
    path = tmp_path / "s.sqlite"
    synthetic_store(path)
    out = tmp_path / "out"
    real = matplotlib.figure.Figure.savefig

    def full_disk(self, fname, *args, **kwargs):
        if kwargs.get("format") == "svg":
            Path(fname).write_text("<svg><g>half a figure")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    assert cli_main(["report", str(path), "--out", str(out)]) == 5
    one_error(capsys, out / "s.svg", "no space left")
    names = sorted(p.name for p in out.iterdir())
    assert "s.png" in names and "s.svg" not in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_atomic_writes_keep_the_old_file_or_write_the_whole_new_one(tmp_path):
    target = tmp_path / "t.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_text(target, "{}")
    with pytest.raises(FileSystemError, match="no space left"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": ')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "{}" and list(tmp_path.iterdir()) == [target]
    stale = tmp_path / ".t.json.999999999.00ff00ff.tmp"
    live = tmp_path / f".t.json.{os.getpid()}.00ff00ff.tmp"
    stale.write_text("x")
    live.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale] and live.exists()


# --------------------------------------------------------------------------- full disk
class _FullDisk:
    """A connection whose ``executemany`` fails with SQLITE_FULL after ``after`` calls."""

    def __init__(self, con, after):
        self._con, self._after = con, after

    def executemany(self, *args):
        if self._after <= 0:
            raise sqlite3.OperationalError("database or disk is full")
        self._after -= 1
        return self._con.executemany(*args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_full_disk_while_storing_is_one_line_and_keeps_the_stored_fits(tmp_path, capsys,
                                                                       monkeypatch):
    import moestats.simulation.store as store_mod
    real = store_mod.ResultStore._connect

    def connect(self, uri):
        real(self, uri)
        if not self.readonly:
            self._con = _FullDisk(self._con, after=1)

    monkeypatch.setattr(store_mod.ResultStore, "_connect", connect)
    config = tiny_config(tmp_path)
    code = cli_main(["run", str(config), "--n-jobs", "1", "--batch-size", "1", "--results",
                     str(tmp_path / "r"), "--no-progress"])
    assert code == 5
    one_error(capsys, tmp_path / "r" / "softmax-exact-quick.sqlite", "no space left",
              "rerun the same command to resume")
    with ResultStore(tmp_path / "r" / "softmax-exact-quick.sqlite", readonly=True) as store:
        assert len(store) == 1
    monkeypatch.setattr(store_mod.ResultStore, "_connect", real)
    assert cli_main(["run", str(config), "--n-jobs", "1", "--results", str(tmp_path / "r"),
                     "--no-progress", "--no-report"]) == 0
    with ResultStore(tmp_path / "r" / "softmax-exact-quick.sqlite", readonly=True) as store:
        assert len(store) == 4


def test_a_really_full_disk_then_resume(tmp_path, capsys):
    """On a tmpfs that fills up once 2 fits are stored: the run stops with one line
    (exit code 5) and keeps them; with room again, the same command resumes to the
    same results as a fresh run."""
    config = tiny_config(tmp_path, sizes=(100, 150, 200), reps=3)
    fresh = tmp_path / "fresh"
    assert cli_main(["run", str(config), "--n-jobs", "1", "--batch-size", "1", "--results",
                     str(fresh), "--no-progress", "--no-report"]) == 0
    capsys.readouterr()
    with mounted(tmp_path / "disk", "-o", "size=4m", fstype="tmpfs") as disk:
        store, filler = disk / "r" / "softmax-exact-quick.sqlite", disk / "filler"

        def fill_when_two_rows():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    with ResultStore(store, readonly=True) as s:
                        if len(s) >= 2:
                            break
                time.sleep(0.02)
            with open(filler, "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()

        t = threading.Thread(target=fill_when_two_rows, daemon=True)
        t.start()
        code = cli_main(["run", str(config), "--n-jobs", "1", "--batch-size", "1",
                         "--results", str(disk / "r"), "--no-progress"])
        t.join(60)
        assert code == 5
        one_error(capsys, store, "no space left", "rerun the same command to resume")
        with ResultStore(store, readonly=True) as s:
            assert 2 <= len(s) < 9
        filler.unlink()
        assert cli_main(["run", str(config), "--n-jobs", "1", "--batch-size", "1",
                         "--results", str(disk / "r"), "--no-progress", "--no-report"]) == 0
        pd.testing.assert_frame_equal(frame(store), frame(fresh / "softmax-exact-quick.sqlite"))


# --------------------------------------------------------------------------- one writer
def test_a_second_run_on_a_store_in_use_is_refused_or_waits(tmp_path, capsys):
    config = tiny_config(tmp_path, sizes=(100,), reps=2)
    results = tmp_path / "r"
    results.mkdir()
    store_path = results / "softmax-exact-quick.sqlite"
    holder = StoreLock(store_path)
    holder.acquire()
    try:
        assert cli_main(["run", str(config), "--n-jobs", "1", "--results", str(results),
                         "--no-progress"]) == 4
        one_error(capsys, store_path, "in use by another moestats run", f"pid {os.getpid()}",
                  "--wait")
        assert not store_path.exists()  # refused before creating anything
        threading.Timer(1.0, holder.release).start()
        t0 = time.monotonic()
        assert cli_main(["run", str(config), "--n-jobs", "1", "--results", str(results),
                         "--no-progress", "--no-report", "--wait"]) == 0
        assert time.monotonic() - t0 >= 0.9
        assert "waiting (--wait)" in capsys.readouterr().err
    finally:
        holder.release()
    with pytest.raises(StoreLockedError):
        with ResultStore(store_path, lock=True):
            ResultStore(store_path, lock=True)


def _together(n, work):
    """Run ``work(i)`` in ``n`` threads released at the same instant; return
    ``(n_refused, errors)``: refusals (:class:`StoreLockedError`) and anything else."""
    barrier = threading.Barrier(n)
    refused, errors = [], []

    def run(i):
        barrier.wait()
        try:
            work(i)
        except StoreLockedError:
            refused.append(i)
        except BaseException as exc:  # e.g. "database is locked", IntegrityError
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return len(refused), errors


def test_concurrent_writers_never_crash_inside_sqlite(tmp_path):
    """8 writers on one store at the same instant: creation and the spec's
    check-and-record are race-free; a writer is either served or refused cleanly."""
    path = tmp_path / "s.sqlite"
    spec = tiny_spec(replications=8)

    def row(n, r):
        return {"fitted": "k2", "n": n, "replication": r, "status": "ok"}

    def opener(i):  # 8 creations of one new store
        ResultStore(path, spec).close()

    assert _together(8, opener) == (0, [])

    def waiter(i):  # lock=True, wait: all served, one after the other
        with ResultStore(path, spec, lock=True, wait=60) as store:
            store.add(row(100, i))

    assert _together(8, waiter) == (0, [])

    def impatient(i):  # the lock taken at the first write, no wait: served or refused
        with ResultStore(path, spec) as store:
            store.add(row(200, i))

    refused, errors = _together(8, impatient)
    assert errors == []
    with ResultStore(path, readonly=True) as store:
        df = store.to_frame()
        assert (df.n == 100).sum() == 8 and (df.n == 200).sum() == 8 - refused
        assert store.fingerprint == spec.fingerprint()
    bare = tmp_path / "bare.sqlite"  # a store without spec: 8 binds at once
    ResultStore(bare).close()

    def binder(i):
        ResultStore(bare, spec).close()

    refused, errors = _together(8, binder)
    assert errors == [] and refused < 8
    with ResultStore(bare, readonly=True) as store:
        assert store.fingerprint == spec.fingerprint()


# --------------------------------------------------------------------------- interrupts
def test_an_interrupt_waits_for_the_commit(tmp_path):
    path = tmp_path / "s.sqlite"
    with ResultStore(path, tiny_spec()) as store:
        with pytest.raises(Interrupted) as info:
            with interrupts_raise():
                with store._write("test") as con:
                    con.execute("INSERT INTO results (fitted, n, replication, status) "
                                "VALUES ('k2', 100, 0, 'ok')")
                    os.kill(os.getpid(), signal.SIGTERM)
                    for _ in range(10 ** 5):  # the handler runs here, and waits
                        pass
                    con.execute("INSERT INTO results (fitted, n, replication, status) "
                                "VALUES ('k2', 100, 1, 'ok')")
        assert info.value.exit_code == 143
        assert len(store) == 2
    with deferred_interrupts():  # without interrupts_raise: a no-op
        pass


def _children(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry.name))
    return out


def _alive(pid):
    """Running (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _shm_entries(pid):
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return []
    return [p.name for p in shm.iterdir()
            if p.name.startswith((f"sem.loky-{pid}-", f"joblib_memmapping_folder_{pid}_"))]


def _start_cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1])] + sys.path))
    return subprocess.Popen([sys.executable, "-m", "moestats.simulation"] + args, cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_rows(path, proc, at_least, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if path.exists():
            with contextlib.suppress(Exception):
                with ResultStore(path, readonly=True) as store:
                    if len(store) >= at_least:
                        return len(store)
    raise AssertionError(f"the sweep ended (rc {proc.poll()}) or stalled before {at_least} "
                         f"rows: {proc.stderr.read() if proc.poll() is not None else ''}")


def _assert_gone(pids, owner, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)] + _shm_entries(owner)
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"still there {timeout} s after the driver ended: processes "
                         f"{[p for p in pids if _alive(p)]}, /dev/shm {_shm_entries(owner)}")


SWEEP = TINY.format(sizes=[100, 150, 200, 250, 300], reps=4)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_stopped_driver_leaves_no_worker_and_resumes_identically(tmp_path, how):
    """The driver (n_jobs = 2) is stopped mid-sweep: SIGTERM/SIGINT print one line and
    exit 143/130; after any of them (SIGKILL included) all its child processes end,
    /dev/shm holds nothing of it, and the rerun equals a fresh run."""
    (tmp_path / "s.toml").write_text(SWEEP)
    args = ["run", "s.toml", "--n-jobs", "2", "--batch-size", "1", "--results", "r",
            "--no-progress", "--no-report"]
    store = tmp_path / "r" / "softmax-exact-quick.sqlite"
    proc = _start_cli(args, tmp_path)
    _wait_rows(store, proc, 2)
    kids = _children(proc.pid)
    assert len(kids) >= 2
    os.kill(proc.pid, getattr(signal, how))
    _, err = proc.communicate(timeout=120)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == {"SIGTERM": 143, "SIGINT": 130}[how], err
        assert "Traceback" not in err
        last = [line for line in err.splitlines() if line.strip()][-1]
        assert last.startswith("moestats: interrupted; ") and last.endswith(
            "fits stored, rerun the same command to resume"), err
    _assert_gone(kids, proc.pid)
    with ResultStore(store, readonly=True) as s:
        assert 2 <= len(s) < 20
    rerun = _start_cli(args, tmp_path)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    spec = SweepSpec(setup="softmax-exact", fitted=("k2",), sample_sizes=(100, 150, 200, 250, 300),
                     replications=4, seed=3, density_sample=0, max_iter=200)
    fresh = run_sweep(spec, tmp_path / "fresh.sqlite", n_jobs=1, progress=False)
    fresh.close()
    pd.testing.assert_frame_equal(frame(store), frame(tmp_path / "fresh.sqlite"))


@pytest.mark.slow
def test_a_killed_local_worker_is_replaced(tmp_path):
    """SIGKILL of a worker process mid-sweep: it is replaced, its batch rerun,
    the results equal a one-process run."""
    spec = tiny_spec(sample_sizes=(100, 150, 200, 250, 300), replications=4)
    path = tmp_path / "s.sqlite"
    killed = []

    def killer():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            time.sleep(0.2)
            with contextlib.suppress(Exception):
                with ResultStore(path, readonly=True) as store:
                    if len(store) < 2:
                        continue
                for pid in _children(os.getpid()):
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if WORKER_MARK.encode() in cmd:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        break

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run_sweep(spec, path, n_jobs=2, batch_size=1, progress=False).close()
    t.join(5)
    assert killed, "the sweep ended before a worker could be killed"
    run_sweep(spec, tmp_path / "one.sqlite", n_jobs=1, progress=False).close()
    pd.testing.assert_frame_equal(frame(path), frame(tmp_path / "one.sqlite"))


# --------------------------------------------------------------------------- Dask
@pytest.mark.slow
def test_dask_survives_workers_killed_at_start_and_mid_run(tmp_path, monkeypatch):
    """A LocalCluster of 2 worker processes: one worker is SIGKILLed as the sweep starts,
    the other once rows are stored (their nannies restart them). Nothing is scattered,
    so the sweep completes, identical to a local run."""
    distributed = pytest.importorskip("distributed")

    def no_scatter(*args, **kwargs):
        raise AssertionError("the spec must travel by value, not be scattered")

    monkeypatch.setattr(distributed.Client, "scatter", no_scatter)
    spec = tiny_spec(sample_sizes=(100, 150, 200, 250, 300), replications=4)
    path = tmp_path / "dask.sqlite"
    killed = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def killer():
            time.sleep(0.3)
            os.kill(pids[0], signal.SIGKILL)  # at the start
            killed.append(pids[0])
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                time.sleep(0.2)
                with contextlib.suppress(Exception):
                    with ResultStore(path, readonly=True) as store:
                        if len(store) >= 2:
                            os.kill(pids[1], signal.SIGKILL)  # mid-run
                            killed.append(pids[1])
                            return

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        run_sweep(spec, path, scheduler=client, batch_size=1, progress=False).close()
        t.join(5)
    assert len(killed) == 2, "the sweep ended before both workers could be killed"
    run_sweep(spec, tmp_path / "local.sqlite", n_jobs=1, progress=False).close()
    pd.testing.assert_frame_equal(frame(path), frame(tmp_path / "local.sqlite"))


@contextlib.contextmanager
def _dask_process(*args):
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli." + args[0]] + list(args[1:]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_dask_scheduler_without_workers_or_lost_is_one_line(tmp_path, capsys):
    """A scheduler that never gets a worker, then one killed mid-run: one line each
    (exit code 6), the fits stored so far are kept, and a rerun resumes."""
    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    spec = tiny_spec(sample_sizes=(1000, 1500, 2000, 2500, 3000), replications=4)
    with _dask_process("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--no-dashboard") as scheduler:
        deadline = time.monotonic() + 60
        while True:  # wait until it listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.5)
        with pytest.raises(Exception, match="has had no worker for 1 s") as info:
            run_sweep(spec, tmp_path / "none.sqlite", scheduler=address, progress=False,
                      no_worker_timeout=1)
        assert info.value.exit_code == 6
        path = tmp_path / "r" / "softmax-exact-quick.sqlite"
        config = tmp_path / "d.toml"
        config.write_text(TINY.format(sizes=list(spec.sample_sizes), reps=4))
        with _dask_process("dask_worker", address, "--nworkers", "1", "--nthreads", "1",
                           "--no-dashboard"):
            def kill_scheduler_at_two_rows():
                end = time.monotonic() + 240
                while time.monotonic() < end:
                    with contextlib.suppress(Exception):
                        with ResultStore(path, readonly=True) as store:
                            if len(store) >= 2:
                                break
                    time.sleep(0.05)
                scheduler.kill()

            t = threading.Thread(target=kill_scheduler_at_two_rows, daemon=True)
            t.start()
            code = cli_main(["run", str(config), "--scheduler", address, "--batch-size", "1",
                             "--results", str(tmp_path / "r"), "--no-progress"])
            t.join(30)
    assert code == 6
    one_error(capsys, address, "lost the connection", "rerun the same command to resume")
    with ResultStore(path, readonly=True) as store:
        assert 2 <= len(store) < 20
    assert cli_main(["run", str(config), "--n-jobs", "1", "--results", str(tmp_path / "r"),
                     "--no-progress", "--no-report"]) == 0
    pd.testing.assert_frame_equal(
        frame(path), frame(run_sweep(spec, tmp_path / "fresh.sqlite", n_jobs=1,
                                     progress=False).path))
