"""Sweeps: configs, seeds, the store, resume after SIGKILL, n_jobs and Dask invariance."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from moestats.simulation import (ConfigError, ResultStore, SpecMismatchError, SweepSpec, Task,
                                 load_spec, run_sweep, run_task, spec_from_config,
                                 spec_from_setup, task_seed)
from moestats.simulation.cli import main as cli_main

#: columns that must agree bit for bit between two runs (wall time excluded)
RESULT_COLUMNS = ["fitted", "n", "replication", "status", "loss", "losses", "errors",
                  "log_likelihood", "n_iter", "converged", "params", "init", "assignment",
                  "loss_gauge", "cells"]


def small_spec(**changes):
    base = dict(setup="softmax-over", fitted=("k3",), sample_sizes=(100, 300),
                replications=3, seed=7, density_sample=0, max_iter=300)
    base.update(changes)
    return SweepSpec(**base)


def frame(store):
    return store.to_frame(expand=False)[RESULT_COLUMNS].sort_values(
        ["fitted", "n", "replication"]).reset_index(drop=True)


def test_every_shipped_config_parses():
    for setup in ("softmax-exact", "softmax-over", "topk-exact", "topk-over", "temperature",
                  "activation"):
        for form in ("quick", "full"):
            spec = spec_from_setup(setup, form)
            assert spec.setup == setup and spec.form == form
            assert len(spec.tasks()) == len(spec.sample_sizes) * spec.replications * len(spec.fitted)
    full = spec_from_setup("softmax-exact", "full")
    assert len(full.sample_sizes) == 200 and full.replications == 40
    assert full.sample_sizes[0] == 100 and full.sample_sizes[-1] == 100000


@pytest.mark.parametrize("change, field", [
    ({"setup": "softmax-exactly"}, "setup"),
    ({"fitted": ["k7"]}, "fitted"),
    ({"design": "sobol"}, "design"),
    ({"start": "far"}, "start"),
    ({"seed": -1}, "seed"),
    ({"solver": {"name": "em", "tolerance": 1e-6}}, "solver.tolerance"),
    ({"solver": {"tol": -1.0}}, "solver.tol"),
    ({"quick": {"sample_sizes": {"min": 100, "max": 1000}, "replications": 3}},
     "quick.sample_sizes"),
    ({"quick": {"sample_sizes": [100, 200], "replications": 0}}, "replications"),
    ({"quick": {"sample_sizes": [100, 5], "replications": 2}}, "sample_sizes"),
    ({"quick": {"sample_sizes": [100], "reps": 2}}, "quick.reps"),
    ({"colour": "red"}, "colour"),
])
def test_bad_config_field_is_named(change, field):
    config = {"setup": "softmax-exact", "quick": {"sample_sizes": [100, 200], "replications": 2}}
    config.update(change)
    with pytest.raises(ConfigError, match=f"config field '{field}'"):
        spec_from_config(config, "quick")


def test_bad_config_file_names_the_file_and_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('setup = "softmax-exact"\n[quick]\nsample_sizes = [100]\n')
    with pytest.raises(ConfigError, match=r"bad.toml: config field 'quick.replications': missing"):
        load_spec(path, "quick")
    assert cli_main(["run", str(path), "--quick", "--results", str(tmp_path)]) == 2


def test_seeds_are_per_task_and_independent_of_order():
    spec = small_spec()
    a = task_seed(spec, 100, 0).generate_state(4)
    assert np.array_equal(a, task_seed(spec, 100, 0).generate_state(4))
    assert not np.array_equal(a, task_seed(spec, 100, 1).generate_state(4))
    assert not np.array_equal(a, task_seed(spec, 300, 0).generate_state(4))
    assert not np.array_equal(a, task_seed(spec, 100, 0, "k3").generate_state(4))
    t = Task("k3", 100, 1)
    r1 = run_task(spec, t)
    run_task(spec, Task("k3", 300, 2))
    r2 = run_task(spec, t)
    assert r1["status"] == "ok"
    assert {k: r1.get(k) for k in RESULT_COLUMNS} == {k: r2.get(k) for k in RESULT_COLUMNS}


def test_store_refuses_another_spec(tmp_path):
    path = tmp_path / "s.sqlite"
    run_sweep(small_spec(sample_sizes=(100,), replications=1), path, n_jobs=1, progress=False).close()
    with pytest.raises(SpecMismatchError, match=r"fields that differ: \['replications'\]"):
        ResultStore(path, small_spec(sample_sizes=(100,), replications=2))


def test_failed_batch_is_stored_and_does_not_stop_the_sweep(tmp_path, monkeypatch):
    import moestats.simulation.task as task_mod
    real = task_mod.fit_em_batched

    def exploding(gate, X, y, init, **kwargs):
        if X.shape[1] == 300:
            raise FloatingPointError("simulated numerical failure")
        return real(gate, X, y, init, **kwargs)

    monkeypatch.setattr(task_mod, "fit_em_batched", exploding)
    store = run_sweep(small_spec(), tmp_path / "f.sqlite", n_jobs=1, progress=False)
    df = store.to_frame()
    assert len(df) == 6
    failed = df[df.status == "failed"]
    assert sorted(failed.n.unique()) == [300] and len(failed) == 3
    assert failed.error.str.contains("FloatingPointError: simulated numerical failure").all()
    assert df[df.status == "ok"].loss.notna().all()


def test_failed_replication_fails_alone_in_its_batch(tmp_path, monkeypatch):
    import moestats.simulation.task as task_mod
    real = task_mod.fit_em_batched

    def one_fails(gate, X, y, init, **kwargs):
        traces = real(gate, X, y, init, **kwargs)
        traces[1].events["error"] = "LinAlgError: simulated singular system"
        return traces

    monkeypatch.setattr(task_mod, "fit_em_batched", one_fails)
    df = run_sweep(small_spec(), tmp_path / "f.sqlite", n_jobs=1, progress=False).to_frame()
    failed = df[df.status == "failed"]
    assert list(failed.replication) == [1, 1] and sorted(failed.n) == [100, 300]
    assert failed.error.str.contains("simulated singular system").all()
    assert (df[df.status == "ok"].replication != 1).all()


def test_batched_sweep_matches_task_by_task_fits():
    """The batched path fits the same problems as GaussianMoE task by task."""
    from moestats.simulation import run_batch
    spec = small_spec(backend="numpy")
    batch = [Task("k3", 300, r) for r in range(3)]
    batched = run_batch(spec, batch)
    for task, row in zip(batch, batched):
        single = run_task(spec, task)
        assert row["status"] == single["status"] == "ok"
        assert row["n_iter"] == single["n_iter"]
        assert row["log_likelihood"] == pytest.approx(single["log_likelihood"], rel=1e-10)
        assert row["init"] == single["init"]


def test_topk_replication_does_not_depend_on_its_batch():
    """The top-K finish runs its boundary rounds per replication: a replication that
    certifies in a few rounds gets none of the rounds another in its batch still needs
    (before 0.8.0 replication 5 here reached another point when batched)."""
    from moestats.simulation import run_batch
    spec = spec_from_setup("topk-over-k4", "quick")
    tasks = [Task("k4-top2", 400, r) for r in (4, 5, 6)]  # 287, 7469, 26629 passes alone
    rows = run_batch(spec, tasks)
    for task, row in zip(tasks, rows):
        alone = run_task(spec, task)
        for key in ("params", "log_likelihood", "passes", "converged", "loss"):
            assert row[key] == alone[key], (task, key)
    assert len({row["passes"] for row in rows}) == 3  # rounds differ within the batch


def test_batches_group_by_configuration_and_n_largest_first():
    from moestats.simulation import make_batches
    spec = small_spec(setup="topk-over", fitted=("k3-top2", "k3-top1"), replications=5)
    batches = make_batches(spec.tasks(), batch_size=2)
    assert [b[0].n for b in batches][:6] == [300] * 6
    for b in batches:
        assert len({(t.fitted, t.n) for t in b}) == 1 and len(b) <= 2
    assert sorted((t.fitted, t.n, t.replication) for b in batches for t in b) == sorted(
        (t.fitted, t.n, t.replication) for t in spec.tasks())
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        make_batches(spec.tasks(), batch_size=0)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_results_identical_across_n_jobs_and_batch_sizes(tmp_path, backend):
    spec = small_spec(backend=backend)
    one = frame(run_sweep(spec, tmp_path / "one.sqlite", n_jobs=1, progress=False))
    two = frame(run_sweep(spec, tmp_path / "two.sqlite", n_jobs=2, progress=False,
                          batch_size=2))
    single = frame(run_sweep(spec, tmp_path / "single.sqlite", n_jobs=1, progress=False,
                             batch_size=1))
    assert len(one) == 6 and (one.status == "ok").all()
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(one, single)


def test_results_identical_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = small_spec()
    local = frame(run_sweep(spec, tmp_path / "local.sqlite", n_jobs=1, progress=False))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = frame(run_sweep(spec, tmp_path / "dask.sqlite", scheduler=client,
                                 progress=False))
        by_address = frame(run_sweep(spec, tmp_path / "addr.sqlite",
                                     scheduler=cluster.scheduler_address, progress=False))
    pd.testing.assert_frame_equal(local, remote)
    pd.testing.assert_frame_equal(local, by_address)


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    spec = small_spec(sample_sizes=(200, 400, 800, 1600), replications=4)
    path = tmp_path / "killed.sqlite"
    fields = {k: v for k, v in spec.as_dict().items() if k != "moestats_version"}
    # one replication per batch, each followed by a pause (which changes no result), so
    # that the kill lands mid-sweep however fast the fits are
    script = textwrap.dedent(f"""
        import time
        import moestats.simulation.run as run_mod
        from moestats.simulation import SweepSpec, run_sweep
        real = run_mod.run_batch
        def slow(*args):
            rows = real(*args)
            time.sleep(0.3)
            return rows
        run_mod.run_batch = slow
        spec = SweepSpec(**{fields!r} | {{"fitted": tuple({list(spec.fitted)!r}),
                         "sample_sizes": tuple({list(spec.sample_sizes)!r})}})
        run_sweep(spec, {str(path)!r}, n_jobs=1, progress=False, batch_size=1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if path.exists():
            try:
                with ResultStore(path, readonly=True) as s:
                    rows = len(s)
            except Exception:
                rows = 0
            if rows >= 3:
                break
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ResultStore(path, readonly=True) as s:
        partial = len(s)
        killed_session, = s.sessions()
    assert 3 <= partial < len(spec.tasks())
    # the killed session keeps its time up to its last commit
    assert killed_session["fits"] == partial and killed_session["wall_s"] >= 0.3 * (partial - 1)
    assert killed_session["workers"] == "1 local processes"
    # the machine names the CPU the kernels were compiled for (their last bits depend on it)
    from moestats.simulation.machine import numba_target
    assert killed_session["cpu"].endswith(f"(Numba target {numba_target()})")
    store = run_sweep(spec, path, n_jobs=2, progress=False)
    resumed = frame(store)
    fresh = frame(run_sweep(spec, tmp_path / "fresh.sqlite", n_jobs=1, progress=False))
    assert len(resumed) == len(spec.tasks())
    pd.testing.assert_frame_equal(resumed, fresh)
    first, second = store.sessions()
    assert first == killed_session and second["workers"] == "2 local processes"
    assert second["pending"] == second["fits"] == len(spec.tasks()) - partial
    run_sweep(spec, path, n_jobs=1, progress=False)  # nothing pending: no session
    assert len(store.sessions()) == 2


def test_cli_run_and_report_write_the_figure_and_tables(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(textwrap.dedent("""
        setup = "softmax-exact"
        seed = 3
        density_sample = 0
        [solver]
        max_iter = 300
        [quick]
        sample_sizes = [100, 200, 400]
        replications = 3
    """))
    assert cli_main(["run", str(config), "--quick", "--n-jobs", "1", "--results",
                     str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "slope" in out and "mean" in out and "median" in out and "trimmed" in out
    for name in ("softmax-exact-quick.png", "softmax-exact-quick.svg",
                 "softmax-exact-quick-table.csv", "softmax-exact-quick-results.csv",
                 "softmax-exact-quick-slopes.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = pd.read_csv(tmp_path / "softmax-exact-quick-table.csv")
    assert list(table.n) == [100, 200, 400] and (table.replications == 3).all()
    import json
    slopes = json.loads((tmp_path / "softmax-exact-quick-slopes.json").read_text())
    assert {r["statistic"] for r in slopes["rates"]} == {"mean", "median", "trimmed"}
    assert slopes["spec"]["sample_sizes"] == [100, 200, 400]
    # resume: a second run has nothing left to do and gives the same table
    assert cli_main(["run", str(config), "--quick", "--results", str(tmp_path),
                     "--no-progress", "--no-report"]) == 0
    assert cli_main(["report", str(tmp_path), "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "softmax-exact-quick-table.csv")
    pd.testing.assert_frame_equal(table.drop(columns="mean_wall_time"),
                                  again.drop(columns="mean_wall_time"))


def test_cli_lists_setups(capsys):
    assert cli_main(["setups"]) == 0
    out = capsys.readouterr().out
    for setup in ("softmax-exact", "softmax-over", "topk-exact", "topk-over", "temperature",
                  "activation"):
        assert setup in out
    assert "theory slope -0.5" in out


def test_cli_reports_failures_and_fails_when_every_fit_failed(tmp_path, capsys, monkeypatch):
    import moestats.simulation.task as task_mod

    def broken(*args, **kwargs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(task_mod, "fit_em_batched", broken)
    config = tmp_path / "tiny.toml"
    config.write_text('setup = "softmax-exact"\ndensity_sample = 0\n'
                      '[quick]\nsample_sizes = [100, 200]\nreplications = 2\n')
    assert cli_main(["run", str(config), "--n-jobs", "1", "--results", str(tmp_path),
                     "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "4 of 4 fits failed" in err and "4 x RuntimeError: backend exploded" in err
    assert "every fit failed" in err


# --- custom truths ([truth] and [[fitted]] tables), CLI outputs and messages -------------

def custom_config(**changes):
    """A small config with a custom truth (softmax, k* = 2, d = 1)."""
    truth = {"gate": "softmax", "gate_coef": [[6.0], [0.0]], "gate_intercept": [-1.0, 0.0],
             "expert_coef": [[-3.0], [3.0]], "expert_intercept": [1.0, -1.0],
             "expert_var": [0.1, 0.2], "x_low": -1.0, "x_high": 1.0}
    config = {"setup": "my-truth", "truth": truth, "density_sample": 0,
              "fitted": [{"name": "k2", "n_experts": 2}],
              "quick": {"sample_sizes": [100, 200], "replications": 2}}
    for key, value in changes.items():
        if key.startswith("truth."):
            truth[key.removeprefix("truth.")] = value
        else:
            config[key] = value
    return config


def test_the_custom_truth_example_runs_on_two_workers_and_every_fit_is_ok(tmp_path):
    from moestats.simulation.spec import default_config_dir
    spec = load_spec(default_config_dir() / "custom-truth-example.toml", "quick")
    assert spec.truth is not None and spec.setup == "custom-truth-example"
    assert len(spec.tasks()) <= 300
    store = run_sweep(spec, tmp_path / "custom.sqlite", n_jobs=2, progress=False)
    df = store.to_frame()
    store.close()
    assert len(df) == len(spec.tasks())
    assert (df["status"] == "ok").all(), df.loc[df["status"] != "ok", "error"].head().tolist()


def test_a_custom_truth_is_part_of_the_spec_and_its_fingerprint(tmp_path):
    import pickle
    spec = spec_from_config(custom_config())
    assert spec.setup_obj.truth.params.n_experts == 2 and spec.fitted == ("k2",)
    assert spec.as_dict()["truth"]["fitted"][0]["loss"] == "D1"
    again = pickle.loads(pickle.dumps(spec))  # by value, as to a worker or a Dask task
    assert again == spec and again.fingerprint() == spec.fingerprint()
    assert again.setup_obj.truth.params.expert_var.tolist() == [0.1, 0.2]
    other = spec_from_config(custom_config(**{"truth.expert_var": [0.1, 0.3]}))
    assert other.fingerprint() != spec.fingerprint()
    with ResultStore(tmp_path / "s.sqlite", spec):
        pass
    with pytest.raises(SpecMismatchError):
        ResultStore(tmp_path / "s.sqlite", other)
    # the built-in setups keep the fingerprint they always had (no "truth" key)
    assert "truth" not in spec_from_setup("softmax-exact").as_dict()


def test_a_custom_truth_fills_in_the_fitted_gates_and_losses():
    config = custom_config(**{"truth.gate": "topk", "truth.k_active": 1,
                              "truth.gate_intercept": [0.0, 0.0]})
    config["fitted"] = [{"name": "k2", "n_experts": 2},
                        {"name": "k3-top2", "n_experts": 3, "k_active": 2},
                        {"name": "k3-tanh", "n_experts": 3, "gate": "activation",
                         "loss": "density"}]
    spec = spec_from_config(config)
    k2, top2, tanh = spec.setup_obj.fitted
    assert (k2.gate.k_active, k2.loss) == (1, "D1-topk")
    assert (top2.gate.k_active, top2.loss) == (2, "D2-topk")
    assert (tanh.gate.activation, tanh.gate.learn_temperature, tanh.loss) == ("tanh", True,
                                                                              "density")


@pytest.mark.parametrize("change, field", [
    ({"truth.gate": "sparse"}, "truth.gate"),
    ({"truth.k_active": 1}, "truth.k_active"),
    ({"truth.expert_var": [0.1, -0.2]}, "truth.expert_var"),
    ({"truth.expert_var": [0.1]}, "truth.expert_var"),
    ({"truth.gate_coef": [[6.0], [1.0]]}, "truth.gate_coef"),
    ({"truth.expert_coef": [[1.0, 2.0], [3.0, 4.0]]}, "truth.expert_coef"),
    ({"truth.expert_intercept": [1.0, "a"]}, "truth.expert_intercept"),
    ({"truth.x_high": -2.0}, "truth.x_high"),
    ({"truth.colour": "red"}, "truth.colour"),
    ({"fitted": [{"name": "k1", "n_experts": 1}]}, "fitted[0].n_experts"),
    ({"fitted": [{"name": "k2", "n_experts": 2, "loss": "D9"}]}, "fitted[0].loss"),
    ({"fitted": [{"name": "k2", "n_experts": 2, "gate": "topk", "k_active": 3}]},
     "fitted[0].k_active"),
    ({"fitted": [{"name": "k2", "n_experts": 2, "temperature": 2.0}]}, "fitted[0].temperature"),
    ({"fitted": [{"name": "a b", "n_experts": 2}]}, "fitted[0].name"),
    ({"fitted": ["k2"]}, "fitted"),
    ({"setup": "softmax-exact"}, "setup"),
])
def test_bad_custom_truth_field_is_named(change, field):
    with pytest.raises(ConfigError, match=f"config field '{re.escape(field)}'"):
        spec_from_config(custom_config(**change))


def test_cli_names_outputs_after_the_config_and_says_what_it_resumed(tmp_path, monkeypatch,
                                                                     capsys):
    import moestats.plotting
    import moestats.simulation.cli as cli_mod
    import moestats.simulation.run as run_mod
    titles = []
    plot = moestats.plotting.plot_rate_summary
    monkeypatch.setattr(moestats.plotting, "plot_rate_summary",
                        lambda *a, **k: titles.append(k["title"]) or plot(*a, **k))
    monkeypatch.setattr(run_mod, "kernel_cache_is_cold", lambda: True)
    monkeypatch.setattr(cli_mod, "_compile_said", False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "tiny.toml").write_text(textwrap.dedent("""
        description = "a tiny sweep of my own"
        setup = "softmax-exact"
        seed = 3
        density_sample = 0
        [solver]
        max_iter = 300
        [quick]
        sample_sizes = [100, 200]
        replications = 2
    """))
    args = ["run", "cfg/tiny.toml", "--n-jobs", "1", "--no-progress"]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "results" / "tiny" / "tiny-quick.sqlite").is_file()
    assert (tmp_path / "results" / "tiny" / "tiny-quick.png").stat().st_size > 0
    assert titles and titles[0].startswith("softmax-exact (quick): a tiny sweep of my own\n")
    assert err.count("moestats: compiling kernels, once, about a minute") == 1
    assert "resumed" not in err
    assert cli_main(args + ["--no-report"]) == 0
    err = capsys.readouterr().err
    assert "moestats: resumed 4 of 4 fits from the store" in err
    assert "compiling kernels" not in err  # once per process
    monkeypatch.setattr(cli_mod, "_compile_said", False)
    monkeypatch.setattr(run_mod, "kernel_cache_is_cold", lambda: False)
    assert cli_main(args + ["--no-report"]) == 0
    assert "compiling kernels" not in capsys.readouterr().err  # a warm cache: no message


def test_agnostic_and_mle_sweeps_store_each_fit_as_it_finishes(tmp_path):
    """Their tasks are fitted one by one, so by default each is its own batch: stored
    as it finishes (and spread over the workers), with the results of any batch size."""
    from moestats.simulation.run import DEFAULT_BATCH_SIZE, default_batch_size
    assert default_batch_size(small_spec()) == DEFAULT_BATCH_SIZE
    agnostic = small_spec(start="agnostic", n_init=2, sample_sizes=(200,), replications=3)
    assert default_batch_size(agnostic) == 1
    assert default_batch_size(small_spec(solver="mle")) == 1
    one = frame(run_sweep(agnostic, tmp_path / "a.sqlite", n_jobs=1, progress=False))
    many = frame(run_sweep(agnostic, tmp_path / "b.sqlite", n_jobs=1, progress=False,
                           batch_size=3))
    pd.testing.assert_frame_equal(one, many)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got True"):
        run_sweep(agnostic, tmp_path / "c.sqlite", n_jobs=1, progress=False, batch_size=True)
