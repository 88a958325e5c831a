"""Tests for moestats.plotting: rate figures and the 1-d fit figure."""

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import moestats
from moestats import MoEParams, SoftmaxGate
from moestats import plotting
from moestats.plotting import (CELL_BLOCKS, cell_rate_table, fit_counts, plot_cell_rates,
                               plot_fit_1d, plot_fit_counts, plot_local_slopes, plot_parameter_errors,
                               plot_rate, plot_rate_summary)
from moestats.rates import fit_rate, last_decade_slope, local_slopes

NS = np.geomspace(100, 10_000, 7).round().astype(int)
REPS = 12
N_BOOT = 100


def make_results(seed=0, configs=(("k2", -0.5, 3.0), ("k3", -0.25, 1.0)), n_failed=3):
    """Noisy power laws, one per configuration, with a few failed rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, slope, c in configs:
        for n in NS:
            for r in range(REPS):
                noise = rng.lognormal(0.0, 0.3)
                rows.append({
                    "fitted": name, "n": int(n), "replication": r, "status": "ok",
                    "loss": c * n**slope * noise,
                    "err_gate_coef": 2.0 * n**-0.125 * rng.lognormal(0.0, 0.2),
                    "err_expert_coef": 2.0 * n**-0.25 * rng.lognormal(0.0, 0.2),
                    "err_weight": n**-0.5 * rng.lognormal(0.0, 0.2),
                    "err_temperature": 0.0,  # not estimated: skipped
                })
    df = pd.DataFrame(rows)
    for name, _, _ in configs:
        idx = df.index[df["fitted"] == name][5: 5 + 7 * n_failed: 7]
        df.loc[idx, "status"] = "failed"
        df.loc[idx, ["loss", "err_gate_coef", "err_expert_coef", "err_weight"]] = np.nan
    return df


@pytest.fixture(scope="module")
def results():
    return make_results()


def by_gid(ax, gid):
    arts = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(arts) == 1, f"expected one artist with gid {gid!r}, got {len(arts)}"
    return arts[0]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def loglog_slope(line):
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    return np.diff(np.log(y))[0] / np.diff(np.log(x))[0]


def parse_slope(text):
    m = re.search(r"slope (\S+) \[95% CI (\S+), (\S+)\]", text.replace("\u2212", "-"))
    assert m, text
    return tuple(float(v) for v in m.groups())


def fit_of(df, name, column="loss", statistic="mean"):
    d = df[df["fitted"] == name]
    return fit_rate(d["n"], d[column], statistic=statistic, n_boot=N_BOOT, rng=0,
                    failed=(d["status"] != "ok").to_numpy())


# ------------------------------------------------------------------ plot_rate
def centre_value(line, n_c):
    """A straight log-log line's value at n_c."""
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    return y[0] * (n_c / x[0]) ** loglog_slope(line)


def test_plot_rate_fits_bands_theory_and_markers(results):
    fig = plot_rate(results, theory_slope={"k2": -0.5, "k3": -0.25}, n_boot=N_BOOT)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "sample size n"
    assert ax.get_ylabel() == "loss (gauge: not recorded)"
    texts = legend_texts(ax)
    for name, theory in (("k2", -0.5), ("k3", -0.25)):
        d = results[(results["fitted"] == name) & (results["status"] == "ok")]
        fits = {}
        for stat in ("median", "mean"):
            rf = fit_of(results, name, statistic=stat)
            fits[stat] = rf
            line = by_gid(ax, f"fit:{stat}:{name}")
            assert line.get_label() in texts
            slope, lo, hi = parse_slope(line.get_label())
            assert slope == float(f"{rf.slope:.2f}")
            assert (lo, hi) == (float(f"{rf.ci_low:.2f}"), float(f"{rf.ci_high:.2f}"))
            assert loglog_slope(line) == pytest.approx(rf.slope)
            assert line.get_xdata()[0] == NS.min() and line.get_xdata()[-1] == NS.max()
            # the 95% band of the fitted line, around it, equal to RateFit.band
            verts = by_gid(ax, f"fitband:{stat}:{name}").get_paths()[0].vertices
            grid = np.asarray(line.get_xdata())
            b_lo, b_hi = rf.band(grid)
            assert verts[:, 1].min() == pytest.approx(b_lo.min())
            assert verts[:, 1].max() == pytest.approx(b_hi.max())
            assert np.all(b_lo <= line.get_ydata()) and np.all(line.get_ydata() <= b_hi)
        # theory: its slope, over the median fit's n-range, through the median fit's centre
        th = by_gid(ax, f"theory:{name}")
        assert th.get_linestyle() == "--"
        assert loglog_slope(th) == pytest.approx(theory)
        n_c, l_c = fits["median"].centre
        assert n_c == pytest.approx(np.sqrt(NS.min() * NS.max()))
        assert centre_value(th, n_c) == pytest.approx(l_c)
        assert list(th.get_xdata()) == [NS.min(), NS.max()]
        frac = "-1/2" if theory == -0.5 else "-1/4"
        assert f"{name}: theory $n^{{{frac}}}$ through the median fit at n = 1e3" in texts
        # markers: mean filled, median open, per-n values of the fits used
        mean = by_gid(ax, f"mean:{name}")
        np.testing.assert_allclose(mean.get_ydata(), d.groupby("n")["loss"].mean())
        assert mean.get_markerfacecolor() != "none"
        median = by_gid(ax, f"median:{name}")
        np.testing.assert_allclose(median.get_ydata(), d.groupby("n")["loss"].median())
        assert median.get_markerfacecolor() == "none"
        # whiskers span the 10%-90% quantiles at every n
        segs = by_gid(ax, f"band:{name}").get_segments()
        q = d.groupby("n")["loss"].quantile([0.1, 0.9]).unstack()
        np.testing.assert_allclose([s[0][1] for s in segs], q[0.1])
        np.testing.assert_allclose([s[1][1] for s in segs], q[0.9])
        assert f"{name}: mean (3 of {len(NS) * REPS} fits failed)" in texts


def test_plot_rate_readable_ticks_and_gauge_label(results):
    df = results.assign(loss_gauge="slope")
    fig = plot_rate(df, fitted="k2", loss_name="D2", n_boot=0)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "D2 (gauge: slope)"
    lo, hi = ax.get_xlim()
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(t) for t in ax.get_xticks() if lo <= t <= hi] == ["1e2", "1e3", "1e4"]
    assert fmt(1e5) == "1e5" and fmt(10.0) == "10" and fmt(0.01) == "1e\u22122"
    # density errors are gauge-free, and say so; one loss per axis
    assert plot_rate(df, column="loss", loss_name="density",
                     n_boot=0).axes[0].get_ylabel().endswith("gauge-free)")
    with pytest.raises(ValueError, match="one loss per axis"):
        plot_rate(df, loss_name={"k2": "D1", "k3": "D2"}, n_boot=0)
    assert plot_rate(df, loss_name={"k2": "D2", "k3": "D2"},
                     n_boot=0).axes[0].get_ylabel() == "D2 (gauge: slope)"


def with_certificates(results, uncertified_rows):
    df = results.copy()
    df["certified"] = pd.array([True] * len(df), dtype="boolean")
    df.loc[uncertified_rows, "certified"] = False
    df.loc[df["status"] != "ok", "certified"] = pd.NA
    df["passes"] = 50 + (df["n"] // 100)
    return df


def test_uncertified_fits_are_counted_shown_and_not_averaged(results):
    ok_k2 = results.index[(results["fitted"] == "k2") & (results["status"] == "ok")]
    bad = ok_k2[[0, 1, 30, 70]]
    df = with_certificates(results, bad)
    df.loc[bad, "loss"] *= 1e4  # uncertified fits far from the others
    ax = plot_rate(df, fitted="k2", n_boot=N_BOOT).axes[0]
    texts = legend_texts(ax)
    assert f"k2: uncertified fits: 4 of {len(NS) * REPS} (excluded from the statistics)" in texts
    unc = by_gid(ax, "uncertified:k2")
    assert unc.get_marker() == "x"
    np.testing.assert_allclose(sorted(unc.get_ydata()), sorted(df.loc[bad, "loss"]))
    used = df[(df["fitted"] == "k2") & (df["status"] == "ok") & df["certified"].fillna(True)]
    np.testing.assert_allclose(by_gid(ax, "mean:k2").get_ydata(),
                               used.groupby("n")["loss"].mean())
    d = df[df["fitted"] == "k2"]
    excluded = ((d["status"] != "ok") | ~d["certified"].fillna(True)).to_numpy(bool)
    rf = fit_rate(d["n"], d["loss"], statistic="mean", n_boot=N_BOOT, rng=0, failed=excluded)
    assert loglog_slope(by_gid(ax, "fit:mean:k2")) == pytest.approx(rf.slope)
    # certified_only=False averages them in, and says so
    ax2 = plot_rate(df, fitted="k2", n_boot=0, certified_only=False).axes[0]
    assert any(t.endswith("(included)") for t in legend_texts(ax2))
    assert by_gid(ax2, "mean:k2").get_ydata()[0] > 100 * by_gid(ax, "mean:k2").get_ydata()[0]
    # the counts per n
    counts = fit_counts(df, fitted="k2")
    assert counts["uncertified"].sum() == 4 and counts["failed"].sum() == 3
    assert (counts["certified"] + counts["uncertified"] + counts["failed"] == REPS).all()
    axc = plot_fit_counts(df, fitted="k2").axes[0]
    np.testing.assert_array_equal(by_gid(axc, "uncertified:k2").get_ydata(),
                                  counts["uncertified"])
    assert f"k2: certified {int(counts['certified'].sum())}/{len(NS) * REPS}" in legend_texts(axc)
    labels = [t.get_text() for t in axc.texts if t.get_gid() == "count:k2"]
    assert labels == [f"{c}/{REPS}" for c in counts["certified"]]


def test_plot_rate_options(results):
    rf = fit_of(results, "k2", statistic="median")
    fig = plot_rate(results, fitted="k2", statistic="median", rate_fits={"k2": rf},
                    band=None, title="T", ylabel="D1", theory_slope=None)
    ax = fig.axes[0]
    assert ax.get_title() == "T" and ax.get_ylabel() == "D1"
    assert not [a for a in ax.collections if str(a.get_gid()).startswith("band")]
    assert len(ax.get_lines()) == 3  # mean, median, fit; no theory line
    assert parse_slope(by_gid(ax, "fit:median:k2").get_label())[0] == float(f"{rf.slope:.2f}")
    assert by_gid(ax, "fit:median:k2").get_label().startswith("k2: median fit")
    assert not any("theory" in t for t in legend_texts(ax))
    # a configuration without failures, without a bootstrap: no band, no CI
    clean = make_results(n_failed=0)
    ax2 = plot_rate(clean, fitted=["k3"], n_boot=0).axes[0]
    assert "k3: mean" in legend_texts(ax2)
    assert "CI" not in by_gid(ax2, "fit:median:k3").get_label()
    assert not [a for a in ax2.collections if str(a.get_gid()).startswith("fitband")]


def test_plot_rate_into_given_axes_and_errors(results):
    fig = Figure()
    ax = fig.subplots()
    assert plot_rate(results, ax=ax, n_boot=0) is fig
    with pytest.raises(ValueError, match="not in results"):
        plot_rate(results, fitted="k9")
    with pytest.raises(ValueError, match="no column"):
        plot_rate(results, column="nope")
    with pytest.raises(ValueError, match="statistic"):
        plot_rate(results, statistic="mode")


# ----------------------------------------------------- plot_parameter_errors
def test_plot_parameter_errors(results):
    theory = {"err_gate_coef": -1 / 8, "err_expert_coef": -1 / 4}
    fig = plot_parameter_errors(results, fitted="k3", theory=theory, n_boot=N_BOOT)
    assert isinstance(fig, Figure)
    assert "maximum over the cells" in fig.get_suptitle()
    # err_temperature (all zero) is skipped: 3 panels
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 3
    assert titles[0] == plotting.PARAMETER_ERROR_COLUMNS["err_gate_coef"]
    for ax, col in zip(fig.axes, ["err_gate_coef", "err_expert_coef", "err_weight"]):
        rf = fit_of(results, "k3", column=col, statistic="median")
        line = by_gid(ax, "fit:median:k3")
        assert parse_slope(line.get_label())[0] == float(f"{rf.slope:.2f}")
        by_gid(ax, "band:k3")
        if col in theory:
            th = by_gid(ax, "theory:k3")
            assert loglog_slope(th) == pytest.approx(theory[col])
            assert centre_value(th, rf.centre[0]) == pytest.approx(rf.centre[1])
        else:
            assert not [a for a in ax.get_lines() if a.get_gid() == "theory:k3"]
    assert len(plot_parameter_errors(results, columns=["err_weight", "loss"],
                                     n_boot=0).axes) == 2
    with pytest.raises(ValueError, match="no err_"):
        plot_parameter_errors(results[["fitted", "n", "status", "loss"]])


def test_plot_parameter_errors_rounding_level_block_is_not_fitted(results):
    # a top-1 truth's weight error is rounding only: named in the legend, not fitted
    df = results[results.fitted == "k3"].copy()
    df["err_weight"] = np.random.default_rng(0).choice([1.1e-16, 2.2e-16], size=len(df))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 'no median rate fit ... log(0)' warning
        fig = plot_parameter_errors(df, columns=["err_gate_coef", "err_weight"], n_boot=0)
        fig.savefig(io.BytesIO(), format="png")  # a panel with nothing drawn still draws
    ax = fig.axes[1]
    assert any("identically 0 up to rounding" in t for t in legend_texts(ax))
    assert not any(np.any(np.asarray(line.get_ydata(), float) > 0) for line in ax.get_lines())
    by_gid(fig.axes[0], "fit:median:k3")  # the other block is fitted as before


# ---------------------------------------------------------- plot_local_slopes
def test_plot_local_slopes_with_intervals_and_last_decade(results):
    fig = plot_local_slopes(results, window=4, theory_slope=-0.5, n_boot=N_BOOT)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_xscale() == "log"
    d = results[results["fitted"] == "k2"]
    failed = (d["status"] != "ok").to_numpy()
    ls = local_slopes(d["n"], d["loss"], window=4, statistic="median", failed=failed,
                      n_boot=N_BOOT, rng=0)
    line = by_gid(ax, "local:k2")
    np.testing.assert_allclose(line.get_xdata(), ls["n_center"])
    np.testing.assert_allclose(line.get_ydata(), ls["slope"])
    [bars] = [c for c in ax.collections if c.get_gid() == "localci:k2"]
    segs = bars.get_segments()
    np.testing.assert_allclose([s[0][1] for s in segs], ls["ci_low"])
    np.testing.assert_allclose([s[1][1] for s in segs], ls["ci_high"])
    dec = last_decade_slope(d["n"], d["loss"], statistic="median", failed=failed,
                            n_boot=N_BOOT, rng=0)
    seg = by_gid(ax, "decade:k2")
    assert list(seg.get_ydata()) == [dec.slope, dec.slope]
    assert list(seg.get_xdata()) == [1000.0, NS.max()]  # NS[3:] is the last decade
    assert parse_slope(seg.get_label())[0] == float(f"{dec.slope:.2f}")
    verts = by_gid(ax, "decadeci:k2").get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(dec.ci_low)
    assert verts[:, 1].max() == pytest.approx(dec.ci_high)
    whole = fit_rate(d["n"], d["loss"], statistic="median", failed=failed, n_boot=0)
    assert by_gid(ax, "global:k2").get_ydata()[0] == pytest.approx(whole.slope)
    by_gid(ax, "local:k3")
    assert list(by_gid(ax, "theory:k2").get_ydata()) == [-0.5, -0.5]
    assert list(by_gid(ax, "zero").get_ydata()) == [0, 0]
    assert "theory slope \u22121/2" in legend_texts(ax)
    # per-config theory, and a window larger than the grid is lowered with a warning
    with pytest.warns(UserWarning, match="window lowered"):
        ax2 = plot_local_slopes(results, window=20, theory_slope={"k2": -0.5, "k3": -0.25},
                                fitted="k3", n_boot=0).axes[0]
    assert len(by_gid(ax2, "local:k3").get_xdata()) == 1
    assert list(by_gid(ax2, "theory:k3").get_ydata()) == [-0.25, -0.25]


def test_local_slopes_panel_shows_a_plateau():
    rng = np.random.default_rng(2)
    n = np.repeat(np.geomspace(1e2, 1e6, 9).round(), 15)
    df = pd.DataFrame({"fitted": "k2", "n": n, "status": "ok",
                       "loss": (n ** -0.5 + 1e-2) * rng.lognormal(0, 0.1, n.size)})
    ax = plot_local_slopes(df, window=2, n_boot=200).axes[0]
    y = by_gid(ax, "local:k2").get_ydata()
    assert y[0] < -0.35 and y[-1] > -0.15
    assert by_gid(ax, "decade:k2").get_ydata()[0] > by_gid(ax, "global:k2").get_ydata()[0] + 0.15


# ---------------------------------------------------------- plot_rate_summary
def test_plot_rate_summary_and_savefig(results, tmp_path):
    df = with_certificates(results, results.index[[0, 50]])
    fig = plot_rate_summary(df, theory_slope=-0.5, title="softmax-over", n_boot=N_BOOT,
                            loss_name="D2")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.get_suptitle() == "softmax-over"
    rate, local, counts, passes = fig.axes
    assert [a.get_title() for a in fig.axes] == [
        "D2 vs n", "curvature check: local slopes", "fits per n", "passes per fit"]
    by_gid(rate, "fit:median:k2"), by_gid(rate, "fit:mean:k2"), by_gid(local, "local:k3")
    by_gid(local, "decade:k2"), by_gid(counts, "certified:k2")
    med = by_gid(passes, "passes:k2").get_ydata()
    np.testing.assert_allclose(med, 50 + NS // 100)
    path = tmp_path / "summary.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # results without certificates or passes: says so
    fig2 = plot_rate_summary(results, n_boot=0)
    assert "unknown:k2" in {l.get_gid() for l in fig2.axes[2].get_lines()}
    assert "passes not recorded" in [t.get_text() for t in fig2.axes[3].texts]


# ------------------------------------------------------------ per-cell rates
CELL_NS = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
THEORY = {1: {"gate_coef": -1 / 2, "expert_coef": -1 / 2, "expert_intercept": -1 / 2,
              "expert_var": -1 / 2, "weight": -1 / 2},
          2: {"gate_coef": -1 / 8, "expert_coef": -1 / 4, "expert_intercept": -1 / 8,
              "expert_var": -1 / 4, "weight": -1 / 2},
          3: {"gate_coef": -1 / 12, "expert_coef": -1 / 6, "expert_intercept": -1 / 12,
              "expert_var": -1 / 6, "weight": -1 / 2}}


def cell_results(sizes=(1, 2, 3), reps=10, seed=0, mixed=False):
    """Fits of a k* = 3 truth whose cells have ``sizes``; errors follow the theory. With
    ``mixed``, cell 0 has size 2 and cell 1 size 1 in the odd replications."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in CELL_NS:
        for r in range(reps):
            row = {"fitted": "k6", "n": int(n), "replication": r, "status": "ok",
                   "loss": 1.0, "loss_gauge": "slope"}
            sz = list(sizes)
            if mixed and r % 2:
                sz[0], sz[1] = sz[1], sz[0]
            for j, m in enumerate(sz):
                row[f"cell{j}_size"] = m
                for block, slope in THEORY[m].items():
                    row[f"cell{j}_{block}"] = 2.0 * n ** slope * rng.lognormal(0, 0.1)
            rows.append(row)
    return pd.DataFrame(rows)


def test_cell_figure_draws_the_theory_slopes_of_sizes_1_2_3():
    df = cell_results()
    fig = plot_cell_rates(df, n_boot=N_BOOT)
    blocks = ["gate_coef", "expert_coef", "expert_intercept", "expert_var", "weight"]
    axes = np.array(fig.axes).reshape(len(blocks) + 1, 3)
    table = cell_rate_table(df, n_boot=N_BOOT)
    for j, m in enumerate((1, 2, 3)):
        for r, block in enumerate(blocks):
            ax = axes[r, j]
            assert ax.get_title() == f"cell {j}: {CELL_BLOCKS[block]}"
            th = by_gid(ax, f"theory:{m}")
            assert loglog_slope(th) == pytest.approx(THEORY[m][block])
            line = by_gid(ax, f"fit:median:{m}")
            d = df[f"cell{j}_{block}"]
            rf = fit_rate(df["n"], d, statistic="median", n_boot=N_BOOT, rng=0)
            assert loglog_slope(line) == pytest.approx(rf.slope)
            assert centre_value(th, rf.centre[0]) == pytest.approx(rf.centre[1])
            assert rf.ci_low - 0.05 < THEORY[m][block] < rf.ci_high + 0.05
            assert f"theory {_frac(THEORY[m][block])}" in line.get_label()
            row = table[(table.cell == j) & (table.block == block)].iloc[0]
            assert row["size"] == m and row["theory_slope"] == pytest.approx(THEORY[m][block])
            assert row["slope"] == pytest.approx(rf.slope) and row["fits"] == len(df)
        counts = by_gid(axes[-1, j], f"count:{m}")
        assert list(counts.get_ydata()) == [10] * len(CELL_NS)
    assert "gauge: slope" in fig.get_suptitle()


def _frac(slope):
    from fractions import Fraction
    return str(Fraction(slope).limit_denominator(64))


def test_cell_sizes_varying_across_replications():
    df = cell_results(sizes=(2, 1, 1), mixed=True)  # cell 0: sizes 2 and 1, half each
    table = cell_rate_table(df, n_boot=0)
    c0 = table[(table.cell == 0) & (table.block == "expert_coef")].set_index("size")
    assert list(c0.index) == [1, 2] and list(c0["fits"]) == [25, 25]
    assert c0.loc[1, "theory_slope"] == -0.5 and c0.loc[2, "theory_slope"] == -0.25
    assert c0.loc[2, "slope"] == pytest.approx(-0.25, abs=0.05)
    assert c0.loc[1, "slope"] == pytest.approx(-0.5, abs=0.05)
    fig = plot_cell_rates(df, n_boot=0, blocks=["expert_coef"])
    ax, count_ax = fig.axes[0], fig.axes[3]
    assert loglog_slope(by_gid(ax, "theory:1")) == pytest.approx(-0.5)
    assert loglog_slope(by_gid(ax, "theory:2")) == pytest.approx(-0.25)
    assert list(by_gid(count_ax, "count:2").get_ydata()) == [5] * len(CELL_NS)
    assert any("modal at" in t for t in legend_texts(count_ax))
    # by="modal": the fits with the modal size at each n (a tie: the smaller size)
    modal = cell_rate_table(df, n_boot=0, by="modal")
    row = modal[(modal.cell == 0) & (modal.block == "expert_coef")].iloc[0]
    assert row["size"] == 1 and row["fits"] == 25 and row["modal_n"] == len(CELL_NS)
    # uncertified fits are left out of the per-cell statistics
    df2 = df.assign(certified=pd.array([r % 5 != 0 for r in df["replication"]],
                                       dtype="boolean"))
    t2 = cell_rate_table(df2, n_boot=0)
    assert t2[(t2.cell == 2) & (t2.block == "weight")]["fits"].iloc[0] == 40
    with pytest.raises(ValueError, match="by must be"):
        cell_rate_table(df, by="mode")
    with pytest.raises(ValueError, match="no per-cell columns"):
        cell_rate_table(df[["fitted", "n", "loss"]])


def test_reference_cell_gauge_fixed_error_is_reported_not_fitted():
    df = cell_results()
    df["cell0_gate_coef"] = 0.0  # the slope gauge gives the reference's cell its slope
    t = cell_rate_table(df, n_boot=0)
    row = t[(t.cell == 0) & (t.block == "gate_coef")].iloc[0]
    assert np.isnan(row["slope"]) and row["error"].startswith("identically 0")
    ax = plot_cell_rates(df, n_boot=0, blocks=["gate_coef"]).axes[0]
    assert any("identically 0" in t for t in legend_texts(ax))


def test_gauge_fixed_fits_are_left_out_of_a_cell_fit_and_counted():
    # the reference atom's gate slope is 0 by the gauge in some fits: those estimate
    # nothing; the others carry the rate
    df = cell_results()
    fixed = (df["replication"] % 3 == 0) | ((df["n"] == CELL_NS[2]) & (df["replication"] < 6))
    ref = cell_rate_table(df, n_boot=0)
    df.loc[fixed, "cell0_gate_coef"] = 0.0
    for by in ("size", "modal"):
        t = cell_rate_table(df, by=by, n_boot=0)
        row = t[(t.cell == 0) & (t.block == "gate_coef")].iloc[0]
        assert row["gauge_fixed"] == int(fixed.sum()) and row["error"] == ""
        assert row["fits"] == len(df) - int(fixed.sum())
    # without them the median is that of the rest: the slope stays near the theory's
    t = cell_rate_table(df, n_boot=0)
    row = t[(t.cell == 0) & (t.block == "gate_coef")].iloc[0]
    before = ref[(ref.cell == 0) & (ref.block == "gate_coef")].iloc[0]
    assert row["slope"] == pytest.approx(before["slope"], abs=0.05)
    ax = plot_cell_rates(df, n_boot=0, blocks=["gate_coef"]).axes[0]
    assert any(f"{int(fixed.sum())} fixed by the gauge left out" in t for t in legend_texts(ax))


def test_rounding_level_errors_are_reported_as_nothing_to_estimate():
    # a top-1 truth: within-cell weight shares sum to 1, the error is rounding only
    df = cell_results()
    rng = np.random.default_rng(3)
    df["cell0_weight"] = rng.choice([0.0, 1.1e-16, 2.2e-16], size=len(df))
    t = cell_rate_table(df, n_boot=0)
    row = t[(t.cell == 0) & (t.block == "weight")].iloc[0]
    assert np.isnan(row["slope"]) and row["error"].startswith("identically 0 up to rounding")
    assert row["gauge_fixed"] == 0 and row["fits"] == len(df)  # the exact zeros stay in
    ax = plot_cell_rates(df, n_boot=0, blocks=["weight"]).axes[0]
    assert any("up to rounding" in t for t in legend_texts(ax))
    # nothing drawn at the rounding level
    assert not any(np.any(np.asarray(line.get_ydata(), float) > 0) for line in ax.get_lines())
    # an error just above rounding is fitted as usual
    df["cell0_weight"] = 1e-6 * df["n"] ** -0.5
    row = cell_rate_table(df, n_boot=0).query("cell == 0 and block == 'weight'").iloc[0]
    assert row["slope"] == pytest.approx(-0.5)


# --------------------------------------------------------------- plot_fit_1d
def _params_1d():
    return MoEParams([[25.0], [0.0]], [-8.0, 0.0], [[-20.0], [20.0]], [15.0, -5.0],
                     [0.09, 0.16])


def test_plot_fit_1d(tmp_path):
    truth = _params_1d()
    fitted = truth.replace(gate_coef=[[24.0], [0.0]], expert_intercept=[14.8, -5.1])
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(300, 1))
    y = rng.normal(size=300)
    gate = SoftmaxGate()
    fig = plot_fit_1d(gate, fitted, X, y, true_params=truth)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    top, bottom = fig.axes
    assert top.get_shared_x_axes().joined(top, bottom)
    # 2 fitted experts + 2 true experts + fitted and true conditional means
    assert len(top.get_lines()) == 6 and len(bottom.get_lines()) == 4
    by_gid(top, "data")
    xg = by_gid(top, "expert:0").get_xdata()
    np.testing.assert_allclose(by_gid(top, "expert:0").get_ydata(), -20 * xg + 14.8)
    assert by_gid(top, "true_expert:1").get_linestyle() == "--"
    w = gate.weights(fitted, xg[:, None])
    np.testing.assert_allclose(by_gid(bottom, "weight:1").get_ydata(), w[:, 1])
    means = np.column_stack([-20 * xg + 14.8, 20 * xg - 5.1])
    np.testing.assert_allclose(by_gid(top, "mean").get_ydata(), (w * means).sum(1))
    fig.savefig(tmp_path / "fit.png")
    # without truth or y, into given axes, 1-d X
    fig2 = Figure()
    axs = fig2.subplots(2, 1)
    assert plot_fit_1d(gate, fitted, X[:, 0], ax=axs) is fig2
    assert len(axs[0].get_lines()) == 3 and len(axs[1].get_lines()) == 2


def test_plot_fit_1d_rejects_d2():
    rng = np.random.default_rng(1)
    p2 = MoEParams([[1.0, 2.0], [0.0, 0.0]], [0.3, 0.0], rng.normal(size=(2, 2)),
                   [0.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="d = 1"):
        plot_fit_1d(SoftmaxGate(), p2, rng.normal(size=(50, 2)))
    with pytest.raises(ValueError, match="d = 1"):
        plot_fit_1d(SoftmaxGate(), p2, rng.normal(size=(50, 1)))
    with pytest.raises(ValueError, match="d = 1"):
        plot_fit_1d(SoftmaxGate(), _params_1d(), rng.normal(size=(50, 1)), true_params=p2)


# ------------------------------------------------------------------ house rule
def test_no_pyplot_in_library():
    src = Path(plotting.__file__).read_text()
    assert "import matplotlib.pyplot" not in src
    assert "pyplot" not in src.replace("never ``pyplot``", "")
    root = Path(moestats.__file__).parent
    offenders = [p for p in root.rglob("*.py") if "import matplotlib.pyplot" in p.read_text()
                 or "from matplotlib import pyplot" in p.read_text()]
    assert offenders == []


def test_auto_window_scales_with_the_grid():
    rng = np.random.default_rng(1)
    n = np.repeat(np.unique(np.geomspace(100, 1e5, 200).round().astype(int)), 3)
    results = pd.DataFrame({"fitted": "k2", "n": n, "replication": 0,
                            "loss": n ** -0.5 * np.exp(rng.normal(0, 0.1, n.size)),
                            "status": "ok"})
    ax = plot_local_slopes(results, n_boot=0).axes[0]
    [line] = [l for l in ax.get_lines() if l.get_gid() == "local:k2"]
    usable = np.unique(n).size
    w = round(0.5 * (usable - 1) / 3.0) + 1  # the sizes within half a decade
    assert w == 34 and f"windows of {w} n" in line.get_label()
    assert len(line.get_xdata()) == usable - w + 1
    # the same half decade on a grid twice as dense over half the span: windows twice as long
    dense = np.repeat(np.unique(np.geomspace(3162, 1e5, 200).round().astype(int)), 3)
    results_dense = results.assign(n=dense, loss=dense ** -0.5)
    ax = plot_local_slopes(results_dense, n_boot=0).axes[0]
    [line] = [l for l in ax.get_lines() if l.get_gid() == "local:k2"]
    assert "windows of 67 n" in line.get_label()
    assert np.median(line.get_ydata()) == pytest.approx(-0.5, abs=0.05)
    with pytest.raises(ValueError, match="window must be 'auto' or an integer >= 2"):
        plot_local_slopes(results, window="wide")
