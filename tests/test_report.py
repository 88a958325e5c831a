"""The results store's new columns (loss gauge, per-cell errors, certificate) and the report
built on them: round trips, old stores, uncertified fits counted, per-cell outputs."""

import json
import math
import sqlite3

import numpy as np
import pandas as pd
import pytest

from moestats.rates import fit_rate
from moestats.simulation import ResultStore, SweepSpec
from moestats.simulation.report import (export_report, per_cell_table, per_n_table,
                                        rate_table, results_markdown)
from moestats.simulation.store import COLUMNS, cells_json, parse_cells

NS = (1000, 3000, 10000, 30000)
REPS = 8
#: theory slopes of the synthetic per-cell errors: cell 0 doubled, cell 1 single
CELL_SLOPES = {2: {"gate_coef": -1 / 8, "expert_coef": -1 / 4, "expert_intercept": -1 / 8,
                   "expert_var": -1 / 4, "weight": -1 / 2},
               1: {"gate_coef": -1 / 2, "expert_coef": -1 / 2, "expert_intercept": -1 / 2,
                   "expert_var": -1 / 2, "weight": -1 / 2}}


def spec(**changes):
    base = dict(setup="softmax-over", fitted=("k3",), sample_sizes=NS, replications=REPS,
                seed=1, density_sample=0)
    base.update(changes)
    return SweepSpec(**base)


def row(n, r, rng, certified=True, status="ok"):
    """A result row as run_task returns it, with errors following the theory."""
    out = {"fitted": "k3", "n": n, "replication": r, "status": status, "error": None,
           "loss": None, "losses": None, "errors": None, "log_likelihood": -1.0 * n,
           "n_iter": 10, "converged": certified, "wall_time": 0.01, "params": None,
           "init": None, "assignment": None, "passes": 40 + r, "loss_gauge": "slope",
           "certificate": json.dumps({"certified": certified, "predicted_gain": 1e-4})}
    if status != "ok":
        out.update(converged=None, certificate=None, loss_gauge=None, passes=None,
                   error="FloatingPointError: simulated")
        return out
    loss = 5 * n ** -0.5 * rng.lognormal(0, 0.2)
    per_cell = {b: [] for b in CELL_SLOPES[1]}
    for j, size in enumerate((2, 1)):
        out[f"cell{j}_size"] = size
        for block, slope in CELL_SLOPES[size].items():
            value = 3 * n ** slope * rng.lognormal(0, 0.1)
            out[f"cell{j}_{block}"] = value
            per_cell[block].append(value)
    out.update(loss=loss, losses=json.dumps({"voronoi": loss}),
               errors=json.dumps({"weight": max(per_cell["weight"]), "cell_sizes": [2, 1],
                                  "per_cell": per_cell, "loss_gauge": "slope"}))
    return out


def fill(store, uncertified=(), failed=()):
    rng = np.random.default_rng(0)
    rows = [row(n, r, rng, certified=(n, r) not in uncertified,
                status="failed" if (n, r) in failed else "ok")
            for n in NS for r in range(REPS)]
    store.add_many(rows)
    return rows


# -------------------------------------------------------------------- the store
def test_cells_and_gauge_round_trip(tmp_path):
    with ResultStore(tmp_path / "s.sqlite", spec()) as store:
        rows = fill(store, uncertified={(1000, 0)}, failed={(3000, 1)})
        raw = store.to_frame(expand=False)
        df = store.to_frame()
    assert list(raw.columns)[:len(COLUMNS)] == list(COLUMNS)
    assert "cell0_size" not in raw and raw["cells"].notna().sum() == len(rows) - 1
    ok = df[df.status == "ok"]
    assert (ok.loss_gauge == "slope").all() and df.loc[df.status != "ok", "loss_gauge"].isna().all()
    by_key = {(r["n"], r["replication"]): r for r in rows}
    for _, got in ok.iterrows():
        want = by_key[(got.n, got.replication)]
        for key in [k for k in want if k.startswith("cell")]:
            assert got[key] == want[key], key  # bit for bit (JSON floats round-trip)
    assert str(df["cell0_size"].dtype) == "Int64" and df["cell1_expert_var"].dtype == float
    assert not df.loc[(df.n == 1000) & (df.replication == 0), "certified"].item()
    assert df["certified"].isna().sum() == 1  # the failed fit has no certificate
    assert df.loc[df.status == "failed", "cell0_size"].isna().all()


def test_cells_json_keeps_nan_and_a_variable_number_of_cells():
    row3 = {"cell0_size": 0, "cell0_gate_coef": math.nan, "cell0_weight": 0.3,
            "cell1_size": 2, "cell1_gate_coef": 0.1, "cell1_weight": 0.01,
            "cell2_size": 2, "cell2_gate_coef": 0.2, "cell2_weight": 0.02}
    back = parse_cells(cells_json(row3))
    assert set(back) == set(row3)
    assert math.isnan(back["cell0_gate_coef"]) and back["cell2_gate_coef"] == 0.2
    # from the errors JSON when the flat keys are absent
    errors = {"cell_sizes": [1, 2], "per_cell": {"gate_coef": [0.5, None], "weight": [1, 2]}}
    assert parse_cells(cells_json({"errors": json.dumps(errors)}))["cell1_size"] == 2
    assert cells_json({"errors": json.dumps({"weight": 0.1})}) is None
    assert parse_cells(None) == {}


OLD_COLUMNS = {c: t for c, t in COLUMNS.items() if c not in ("loss_gauge", "cells")}


def make_old_store(path, sp):
    """A store as written before the gauge and cell columns existed."""
    con = sqlite3.connect(str(path))
    cols = ", ".join(f"{c} {t}" for c, t in OLD_COLUMNS.items())
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute(f"CREATE TABLE results ({cols}, PRIMARY KEY (fitted, n, replication))")
    con.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (sp.fingerprint(),))
    con.execute("INSERT INTO meta VALUES ('spec', ?)", (json.dumps(sp.as_dict()),))
    rng = np.random.default_rng(1)
    r0 = row(1000, 0, rng)
    r1 = row(1000, 1, rng)
    r1["errors"] = json.dumps({"weight": 0.1, "gate_coef": 0.2})  # before per-cell errors
    for r in (r0, r1):
        con.execute(f"INSERT INTO results ({', '.join(OLD_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(OLD_COLUMNS))})", [r.get(c) for c in OLD_COLUMNS])
    con.commit()
    con.close()
    return r0, r1


def test_an_old_store_loads_and_is_migrated_on_write(tmp_path):
    path, sp = tmp_path / "old.sqlite", spec()
    r0, r1 = make_old_store(path, sp)
    with ResultStore(path) as store:  # reading does not change the file
        df = store.to_frame()
        assert "cells" not in [c[1] for c in store._con.execute("PRAGMA table_info(results)")]
    assert df.loss_gauge.iloc[0] == "slope"  # from the errors JSON where recorded
    assert df.loss_gauge.isna().iloc[1]
    assert df.loc[0, "cell0_size"] == 2 and df.loc[0, "cell1_weight"] == r0["cell1_weight"]
    assert pd.isna(df.loc[1, "cell0_size"]) and math.isnan(df.loc[1, "cell1_weight"])
    assert df.loc[1, "err_gate_coef"] == 0.2
    # resume into it: the new columns are added, old rows are kept
    with ResultStore(path, sp) as store:
        assert len(store.pending(sp.tasks())) == len(sp.tasks()) - 2
        store.add(row(3000, 0, np.random.default_rng(2)))
        cols = [c[1] for c in store._con.execute("PRAGMA table_info(results)")]
        df = store.to_frame()
    assert cols[-2:] == ["loss_gauge", "cells"]
    assert len(df) == 3 and (df.loss_gauge.iloc[[0, 2]] == "slope").all()
    assert df.loc[df.n == 3000, "cell0_size"].item() == 2
    # a store without any per-cell data expands to no cell columns
    with ResultStore(tmp_path / "bare.sqlite") as store:
        store.add({"fitted": "k3", "n": 100, "replication": 0, "status": "ok", "loss": 1.0})
        bare = store.to_frame()
    assert not bare.filter(regex=r"^cell\d+_").columns.size and bare.certified.isna().all()


def test_a_real_task_row_round_trips(tmp_path):
    from moestats.simulation import Task, run_task
    sp = spec(sample_sizes=(200,), replications=1, max_iter=50)
    r = run_task(sp, Task("k3", 200, 0))
    assert r["status"] == "ok"
    with ResultStore(tmp_path / "t.sqlite", sp) as store:
        store.add(r)
        df = store.to_frame()
    keys = [k for k in r if k.startswith("cell")]
    assert keys and {"cell0_size", "cell1_size"} <= set(keys)
    for k in keys:
        want, got = r[k], df.loc[0, k]
        assert (math.isnan(want) and math.isnan(got)) if isinstance(want, float) and \
            math.isnan(want) else got == want
    assert df.loc[0, "loss_gauge"] == r["loss_gauge"]
    assert df.loc[0, "certified"] == json.loads(r["certificate"])["certified"]


# ------------------------------------------------------------------- the report
UNCERTIFIED = {(1000, 0), (1000, 3), (10000, 5)}
FAILED = {(3000, 2)}


@pytest.fixture(scope="module")
def report_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "softmax-over-quick.sqlite"
    with ResultStore(path, spec()) as store:
        fill(store, uncertified=UNCERTIFIED, failed=FAILED)
        df = store.to_frame()
    return path, df


def test_report_counts_uncertified_fits_and_leaves_them_out(report_store):
    _, df = report_store
    table = per_n_table(df)
    assert list(table.uncertified) == [2, 0, 1, 0] and list(table.failed) == [0, 1, 0, 0]
    assert list(table.certified) == [6, 7, 7, 8]
    used = df[(df.status == "ok") & df.certified]
    np.testing.assert_allclose(table.loss_median, used.groupby("n").loss.median())
    rates = rate_table(df, "softmax-over", n_boot=100)
    med = rates[rates.statistic == "median"].iloc[0]
    assert (med.n_uncertified, med.n_failed, med.n_certified, med.n_fits) == (3, 1, 28, 32)
    assert med.loss == "D2" and med.loss_gauge == "slope"
    excluded = ((df.status != "ok") | ~df.certified.fillna(True)).to_numpy(bool)
    want = fit_rate(df.n, df.loss, statistic="median", n_boot=100, rng=0, failed=excluded)
    assert med.slope == want.slope and med.ci_low == want.ci_low
    assert med.theory_slope == -0.5 and np.isfinite(med.decade_slope)
    everything = rate_table(df, "softmax-over", n_boot=0, certified_only=False)
    assert everything.iloc[0].slope != rates.iloc[0].slope


def test_report_writes_per_cell_outputs_and_markdown(report_store, tmp_path):
    path, df = report_store
    rates = export_report(path, tmp_path, n_boot=50)
    stem = "softmax-over-quick"
    for name in (f"{stem}.png", f"{stem}-table.csv", f"{stem}-local-slopes.csv",
                 f"{stem}-per-cell-slopes.csv", f"{stem}-per-cell-rates-k3.png",
                 f"{stem}-per-cell-rates-k3.svg", f"{stem}-parameters.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    cells = pd.read_csv(tmp_path / f"{stem}-per-cell-slopes.csv")
    for _, c in cells.iterrows():
        assert c.theory_slope == pytest.approx(CELL_SLOPES[c["size"]][c.block])
        assert c.ci_low - 0.05 < c.theory_slope < c.ci_high + 0.05
        assert c.fits == 28 and c.loss_gauge == "slope"
    assert len(cells) == 10  # 2 cells x 5 blocks
    assert set(per_cell_table(df, "softmax-exact".replace("exact", "over"),
                              n_boot=0).columns) >= {"cell", "size", "block", "slope"}
    local = pd.read_csv(tmp_path / f"{stem}-local-slopes.csv")
    assert {"ci_low", "ci_high", "n_center"} <= set(local.columns) and len(local) >= 1
    payload = json.loads((tmp_path / f"{stem}-slopes.json").read_text())
    assert payload["certified_only"] and len(payload["per_cell"]) == 10
    md = results_markdown([tmp_path / f"{stem}-slopes.json"])
    line = [l for l in md.splitlines() if "| k3 |" in l][0]
    assert "D2 (slope)" in line and "| 3 / 1 / 32 |" in line
    assert "median, last decade" in md.splitlines()[0]
    assert line.endswith(f"| {spec().as_dict()['moestats_version']} |")
    assert len(rates) == 3


def test_exact_setups_get_no_per_cell_figure(tmp_path):
    sp = SweepSpec(setup="softmax-exact", fitted=("k2",), sample_sizes=NS, replications=4,
                   seed=1, density_sample=0)
    rng = np.random.default_rng(4)
    with ResultStore(tmp_path / "e.sqlite", sp) as store:
        store.add_many([dict(row(n, r, rng), fitted="k2") for n in NS for r in range(4)])
    export_report(tmp_path / "e.sqlite", tmp_path, n_boot=0)
    assert not list(tmp_path.glob("*per-cell*"))
    assert (tmp_path / "e.png").exists()


def test_report_states_the_sweep_cost_from_the_fits_and_the_run_sessions(tmp_path):
    from moestats.simulation import run_sweep
    from moestats.simulation.report import timing_markdown
    spec = SweepSpec(setup="softmax-exact", fitted=("k2",), sample_sizes=(100, 200),
                     replications=2, density_sample=0, max_iter=100)
    path = tmp_path / "cost.sqlite"
    run_sweep(spec, path, n_jobs=1, progress=False).close()
    export_report(path, tmp_path, n_boot=0, figures=False)
    payload = json.loads((tmp_path / "cost-slopes.json").read_text())
    t = payload["timing"]
    df = pd.read_csv(tmp_path / "cost-results.csv")
    assert t["fits"] == t["session_fits"] == 4 and t["sessions"] == 1
    assert t["fit_s"] == pytest.approx(df["wall_time"].sum(), abs=1e-3)
    assert 0 < t["wall_s"] and t["workers"] == ["1 local processes"]
    line = timing_markdown([tmp_path / "cost-slopes.json"]).splitlines()[2]
    assert line.startswith("| softmax-exact | custom | near-truth | 4 | ")
    assert "1 local processes" in line
    # a store written without run sessions says so, and still counts its fits' time
    old = tmp_path / "old.sqlite"
    with ResultStore(old, spec) as store:
        store.add_many([{"fitted": "k2", "n": n, "replication": r, "status": "ok",
                         "loss": 0.1, "wall_time": 0.5, "loss_gauge": "slope"}
                        for n in (100, 200) for r in range(2)])
    export_report(old, tmp_path, n_boot=0, figures=False)
    line = timing_markdown([tmp_path / "old-slopes.json"]).splitlines()[2]
    assert "| 4 | 2 | not recorded |" in line


def test_report_adds_the_weighted_per_cell_form_recomputed_from_the_fits(tmp_path):
    from moestats.setups import get_setup
    from moestats.simulation import run_sweep
    from moestats.simulation.cell_forms import weighted_cell_frame
    spec = SweepSpec(setup="softmax-over", fitted=("k3",), sample_sizes=(300, 1000, 3000),
                     replications=6, density_sample=0, max_iter=300, seed=4)
    path = tmp_path / "over.sqlite"
    store = run_sweep(spec, path, n_jobs=1, progress=False)
    df = store.to_frame()
    store.close()
    w = weighted_cell_frame(df, get_setup("softmax-over"))
    assert w.index.equals(df.index)
    for j in (0, 1):
        # the same cells as the stored errors; a cell of one atom has one error form
        assert (w[f"cell{j}_size"] == df[f"cell{j}_size"]).all()
        one = (df[f"cell{j}_size"] == 1).to_numpy()
        for block in ("gate_coef", "expert_coef", "expert_intercept", "expert_var"):
            got, stored = w[f"cell{j}_{block}"].to_numpy(float), df[f"cell{j}_{block}"].to_numpy(float)
            np.testing.assert_allclose(got[one], stored[one], rtol=1e-9, atol=1e-12)
            assert np.all(got[~one] <= stored[~one] * (1 + 1e-12) + 1e-15)
        np.testing.assert_allclose(w[f"cell{j}_weight"], df[f"cell{j}_weight"], rtol=1e-12)
    export_report(path, tmp_path, n_boot=20)
    cells = pd.read_csv(tmp_path / "over-per-cell-slopes.csv")
    assert set(cells["form"]) == {"max", "weighted"}
    assert len(cells[cells.form == "max"]) == len(cells[cells.form == "weighted"])
    assert (tmp_path / "over-per-cell-rates-k3-weighted.png").stat().st_size > 0
    assert (tmp_path / "over-per-cell-rates-k3.png").stat().st_size > 0


def test_sweep_cost_leaves_out_run_sessions_stopped_before_their_first_fit(tmp_path):
    from moestats.simulation.report import sweep_timing, timing_markdown
    record = dict(workers="2 local processes", cpu="AMD EPYC", nproc=2, moestats="0.8.0")
    fits = pd.DataFrame({"wall_time": [3.0, 4.0]})
    t = sweep_timing(fits, [dict(record, wall_s=5.0, fits=2, load=0.5),
                            dict(record, wall_s=0.0, fits=0, load=3.0)])
    assert (t["sessions"], t["empty_sessions"], t["wall_s"], t["max_load"]) == (1, 1, 5.0, 0.5)
    only_empty = sweep_timing(fits, [dict(record, wall_s=0.0, fits=0, load=0.2)])
    assert only_empty["sessions"] == 0 and only_empty["wall_s"] is None
    path = tmp_path / "s-slopes.json"
    path.write_text(json.dumps({"spec": {"setup": "s", "form": "full"}, "timing": only_empty}))
    line = timing_markdown([path]).splitlines()[2]
    assert "not recorded | every run session stopped before its first fit |" in line
