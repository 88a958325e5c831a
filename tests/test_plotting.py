"""Tests for moestats.plotting: rate figures and the 1-d fit figure."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import moestats
from moestats import MoEParams, SoftmaxGate
from moestats import plotting
from moestats.plotting import (plot_fit_1d, plot_local_slopes, plot_parameter_errors,
                               plot_rate, plot_rate_summary)
from moestats.rates import fit_rate, local_slopes

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
def test_plot_rate_lines_band_legend(results):
    fig = plot_rate(results, theory_slope={"k2": -0.5, "k3": -0.25}, n_boot=N_BOOT)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "sample size n" and ax.get_ylabel() == "loss"
    # per config: mean and median markers, fit line, theory line (4 lines), a band
    assert len(ax.get_lines()) == 8
    texts = legend_texts(ax)
    assert len(texts) == 10
    for name, theory in (("k2", -0.5), ("k3", -0.25)):
        rf = fit_of(results, name)
        fit_line = by_gid(ax, f"fit:{name}")
        label = fit_line.get_label()
        assert label in texts
        slope, lo, hi = parse_slope(label)
        assert slope == float(f"{rf.slope:.2f}")
        assert (lo, hi) == (float(f"{rf.ci_low:.2f}"), float(f"{rf.ci_high:.2f}"))
        assert loglog_slope(fit_line) == pytest.approx(rf.slope)
        th = by_gid(ax, f"theory:{name}")
        assert th.get_linestyle() == "--"
        assert loglog_slope(th) == pytest.approx(theory)
        # anchored on the fitted line at the smallest n
        assert th.get_xdata()[0] == NS.min()
        assert th.get_ydata()[0] == pytest.approx(rf.predict(NS.min()))
        assert f"{name}: theory $n^{{{'-1/2' if theory == -0.5 else '-1/4'}}}$" in texts
        # markers: mean filled, median open, per-n values
        d = results[(results["fitted"] == name) & (results["status"] == "ok")]
        mean = by_gid(ax, f"mean:{name}")
        np.testing.assert_allclose(mean.get_ydata(), d.groupby("n")["loss"].mean())
        assert mean.get_markerfacecolor() != "none"
        median = by_gid(ax, f"median:{name}")
        np.testing.assert_allclose(median.get_ydata(), d.groupby("n")["loss"].median())
        assert median.get_markerfacecolor() == "none"
        # the band spans the 10%-90% quantiles
        band = by_gid(ax, f"band:{name}")
        verts = band.get_paths()[0].vertices
        q = d.groupby("n")["loss"].quantile([0.1, 0.9]).unstack()
        assert verts[:, 1].min() == pytest.approx(q[0.1].min())
        assert verts[:, 1].max() == pytest.approx(q[0.9].max())
        # failed count in the legend
        assert f"{name}: mean (3 of {len(NS) * REPS} fits failed)" in texts


def test_plot_rate_options(results):
    rf = fit_of(results, "k2", statistic="median")
    fig = plot_rate(results, fitted="k2", statistic="median", rate_fits={"k2": rf},
                    band=None, title="T", ylabel="D1", theory_slope=None)
    ax = fig.axes[0]
    assert ax.get_title() == "T" and ax.get_ylabel() == "D1"
    assert not ax.collections  # no band
    assert len(ax.get_lines()) == 3  # mean, median, fit; no theory line
    assert parse_slope(by_gid(ax, "fit:k2").get_label())[0] == float(f"{rf.slope:.2f}")
    assert by_gid(ax, "fit:k2").get_label().startswith("k2: median fit")
    assert not any("theory" in t for t in legend_texts(ax))
    # a list of configurations, and a configuration without failures
    clean = make_results(n_failed=0)
    ax2 = plot_rate(clean, fitted=["k3"], n_boot=0).axes[0]
    assert legend_texts(ax2)[1] == "k3: mean"
    assert "CI" not in by_gid(ax2, "fit:k3").get_label()


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
    # err_temperature (all zero) is skipped: 3 panels
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 3
    assert titles[0] == plotting.PARAMETER_ERROR_COLUMNS["err_gate_coef"]
    for ax, col in zip(fig.axes, ["err_gate_coef", "err_expert_coef", "err_weight"]):
        rf = fit_of(results, "k3", column=col, statistic="median")
        assert parse_slope(by_gid(ax, "fit:k3").get_label())[0] == float(f"{rf.slope:.2f}")
        by_gid(ax, "band:k3")
        if col in theory:
            assert loglog_slope(by_gid(ax, "theory:k3")) == pytest.approx(theory[col])
        else:
            assert not [a for a in ax.get_lines() if a.get_gid() == "theory:k3"]
    assert len(plot_parameter_errors(results, columns=["err_weight", "loss"],
                                     n_boot=0).axes) == 2
    with pytest.raises(ValueError, match="no err_"):
        plot_parameter_errors(results[["fitted", "n", "status", "loss"]])


# ---------------------------------------------------------- plot_local_slopes
def test_plot_local_slopes(results):
    fig = plot_local_slopes(results, window=4, theory_slope=-0.5)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_xscale() == "log"
    d = results[results["fitted"] == "k2"]
    ls = local_slopes(d["n"], d["loss"], window=4, statistic="median",
                      failed=(d["status"] != "ok").to_numpy())
    line = by_gid(ax, "local:k2")
    np.testing.assert_allclose(line.get_xdata(), ls["n_center"])
    np.testing.assert_allclose(line.get_ydata(), ls["slope"])
    by_gid(ax, "local:k3")
    assert list(by_gid(ax, "theory:k2").get_ydata()) == [-0.5, -0.5]
    assert list(by_gid(ax, "zero").get_ydata()) == [0, 0]
    assert "theory slope \u22121/2" in legend_texts(ax)
    # per-config theory, and a window larger than the grid is lowered with a warning
    with pytest.warns(UserWarning, match="window lowered"):
        ax2 = plot_local_slopes(results, window=20, theory_slope={"k2": -0.5, "k3": -0.25},
                                fitted="k3").axes[0]
    assert len(by_gid(ax2, "local:k3").get_xdata()) == 1
    assert list(by_gid(ax2, "theory:k3").get_ydata()) == [-0.25, -0.25]


# ---------------------------------------------------------- plot_rate_summary
def test_plot_rate_summary_and_savefig(results, tmp_path):
    fig = plot_rate_summary(results, theory_slope=-0.5, title="softmax-over", n_boot=N_BOOT)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.get_suptitle() == "softmax-over"
    left, right = fig.axes
    by_gid(left, "fit:k2"), by_gid(left, "band:k2"), by_gid(right, "local:k3")
    path = tmp_path / "summary.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    ax = plot_local_slopes(results).axes[0]
    [line] = [l for l in ax.get_lines() if l.get_gid() == "local:k2"]
    usable = np.unique(n).size
    assert f"window of {-(-usable // 8)} n" in line.get_label()
    assert len(line.get_xdata()) == usable - (-(-usable // 8)) + 1
    assert np.median(line.get_ydata()) == pytest.approx(-0.5, abs=0.05)
    with pytest.raises(ValueError, match="window must be 'auto' or an integer >= 2"):
        plot_local_slopes(results, window="wide")
