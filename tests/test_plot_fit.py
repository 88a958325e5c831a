"""Tests for moestats.plotting.plot_fit: a fitted GaussianMoE drawn over its data."""

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from sklearn.exceptions import NotFittedError

from moestats import GaussianMoE, get_setup
from moestats.plotting import plot_fit


@pytest.fixture(scope="module")
def data():
    return get_setup("softmax-exact").truth.sample(300, np.random.default_rng(0))


@pytest.fixture(scope="module")
def est(data):
    X, y = data
    return GaussianMoE(2, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def frame_fit(data):
    X, y = data
    Xf = pd.DataFrame({"dose": X[:, 0]})
    ys = pd.Series(y, name="response")
    return Xf, ys, GaussianMoE(2, random_state=0).fit(Xf, ys)


def by_gid(ax, gid):
    arts = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(arts) == 1, f"expected one artist with gid {gid!r}, got {len(arts)}"
    return arts[0]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def render(fig):
    fig.savefig(io.BytesIO(), format="png", dpi=40)


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("show_gate, n_axes", [(False, 1), (True, 2)])
def test_returns_a_figure_with_its_axes(est, data, show_gate, n_axes):
    X, y = data
    fig = plot_fit(est, X, y, show_gate=show_gate)
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    ax = fig.axes[0]
    # experts (solid and faint), band edges and the mean
    assert len(ax.get_lines()) == 2 * 2 + 2 + 1
    if show_gate:
        gate_ax = fig.axes[1]
        assert gate_ax.get_shared_x_axes().joined(ax, gate_ax)
        w = est.predict_proba(by_gid(gate_ax, "weight:0").get_xdata()[:, None])
        np.testing.assert_allclose(by_gid(gate_ax, "weight:0").get_ydata(), w[:, 0])
        np.testing.assert_allclose(by_gid(gate_ax, "threshold").get_ydata(), [0.05, 0.05])
    render(fig)


def test_the_band_is_predict_interval_on_the_grid(est, data):
    X, y = data
    ax = plot_fit(est, X, y, level=0.8, grid_size=150).axes[0]
    low, high = by_gid(ax, "band_low"), by_gid(ax, "band_high")
    xg = low.get_xdata()
    assert xg.size == 150 and xg[0] == X.min() and xg[-1] == X.max()
    expected = est.predict_interval(xg[:, None], level=0.8)
    np.testing.assert_allclose(low.get_ydata(), expected[:, 0])
    np.testing.assert_allclose(high.get_ydata(), expected[:, 1])
    # the shaded polygon runs along the lower quantiles and back along the upper ones
    band = by_gid(ax, "band")
    assert isinstance(band, PolyCollection)
    verts = band.get_paths()[0].vertices
    for i in (0, 40, 75, 149):
        ys = verts[np.isclose(verts[:, 0], xg[i], rtol=0, atol=1e-12), 1]
        assert ys.min() == pytest.approx(expected[i, 0])
        assert ys.max() == pytest.approx(expected[i, 1])
    assert "80% predictive interval (exact mixture quantiles)" in legend_texts(ax)
    np.testing.assert_allclose(by_gid(ax, "mean").get_ydata(), est.predict(xg[:, None]))


def test_experts_are_solid_only_where_the_gate_weighs(est, data):
    X, y = data
    ax = plot_fit(est, X, y, threshold=0.1).axes[0]
    for j in range(2):
        solid, faint = by_gid(ax, f"expert:{j}"), by_gid(ax, f"expert_faint:{j}")
        xg = faint.get_xdata()
        line = est.expert_coef_[j, 0] * xg + est.expert_intercept_[j]
        np.testing.assert_allclose(faint.get_ydata(), line)
        assert faint.get_linestyle() == ":" and solid.get_linestyle() == "-"
        on = est.predict_proba(xg[:, None])[:, j] >= 0.1
        assert 0 < on.sum() < xg.size  # the experts hand over inside [0, 1]
        ys = np.asarray(solid.get_ydata(), dtype=float)
        np.testing.assert_allclose(ys[on], line[on])
        assert np.isnan(ys[~on]).all()


def test_point_colours_follow_the_posterior(est, data):
    X, y = data
    ax = plot_fit(est, X, y).axes[0]
    labels = est.predict_labels(X, y)
    strength = est.predict_responsibilities(X, y).max(axis=1)
    for j in range(2):
        pts = by_gid(ax, f"points:{j}")
        assert isinstance(pts, PathCollection)
        mine = labels == j
        np.testing.assert_allclose(pts.get_offsets(), np.column_stack([X[mine, 0], y[mine]]))
        colours = pts.get_facecolors()
        np.testing.assert_allclose(colours[:, :3], np.tile(to_rgb(f"C{j}"), (mine.sum(), 1)))
        # opacity grows with the membership of the point's own expert
        order = np.argsort(strength[mine])
        assert np.all(np.diff(colours[order, 3]) >= -1e-12)
        assert colours[:, 3].min() >= 0.15 and colours[:, 3].max() <= 1.0
        assert legend_texts(ax)[j] == f"{mine.sum()} points, most probably expert {j + 1}"


# ------------------------------------------------------------------ labels
def test_labels_from_a_dataframe_and_a_series(frame_fit):
    Xf, ys, est = frame_fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        fig = plot_fit(est, Xf, ys, show_gate=True)
    ax, gate_ax = fig.axes
    assert ax.get_ylabel() == "response" and gate_ax.get_xlabel() == "dose"
    texts = legend_texts(ax)
    assert "predictive mean E[response | dose]" in texts
    assert any(t.startswith("expert 1: ") and " dose " in t for t in texts)
    assert legend_texts(gate_ax)[0] == "$w_{1}$(dose)"
    # without the gate panel the x label is on the fit panel
    ax = plot_fit(est, Xf, ys).axes[0]
    assert ax.get_xlabel() == "dose"
    # an unnamed response, with a DataFrame X
    assert plot_fit(est, Xf, ys.to_numpy()).axes[0].get_ylabel() == "y"


def test_default_labels_for_arrays(est, data):
    X, y = data
    ax = plot_fit(est, X[:, 0], y).axes[0]  # a 1-d X is one covariate
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    assert "predictive mean E[y | x]" in legend_texts(ax)


def test_draws_into_given_axes(est, data):
    X, y = data
    fig = Figure()
    ax = fig.subplots()
    assert plot_fit(est, X, y, ax=ax) is fig
    fig2 = Figure()
    axs = fig2.subplots(2, 1)
    assert plot_fit(est, X, y, ax=axs, show_gate=True) is fig2
    assert len(axs[1].get_lines()) == 3  # two weights and the threshold
    fig3 = Figure()
    sub = fig3.subfigures(1, 2)[0]
    assert plot_fit(est, X, y, ax=sub.subplots()) is fig3
    render(fig3)


# ------------------------------------------------------------------ errors
def test_not_fitted(data):
    X, y = data
    with pytest.raises(NotFittedError):
        plot_fit(GaussianMoE(2), X, y)


def test_rejects_more_than_one_covariate(est, data):
    X, y = data
    rng = np.random.default_rng(1)
    X2 = np.column_stack([X[:, 0], rng.uniform(size=X.shape[0])])
    est2 = GaussianMoE(2, random_state=0, n_init=2).fit(X2, y)
    with pytest.raises(ValueError, match=r"d = 1.*d = 2 features \(X has shape \(300, 2\)\)"):
        plot_fit(est2, X2, y)
    with pytest.raises(ValueError, match=r"d = 1.*got shape \(300, 2\)"):
        plot_fit(est, X2, y)


def test_rejects_a_mismatched_y(est, data):
    X, y = data
    with pytest.raises(ValueError, match="y has 299 values but X has 300 rows"):
        plot_fit(est, X, y[:-1])
    with pytest.raises(ValueError, match=r"one-dimensional.*\(300, 1\)"):
        plot_fit(est, X, y[:, None])


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, "0.9", True])
def test_rejects_a_level_outside_0_1(est, data, level):
    X, y = data
    with pytest.raises(ValueError, match="level must be a number strictly between 0 and 1"):
        plot_fit(est, X, y, level=level)


def test_rejects_bad_options(est, data):
    X, y = data
    with pytest.raises(ValueError, match="threshold"):
        plot_fit(est, X, y, threshold=1.0)
    with pytest.raises(ValueError, match="grid_size"):
        plot_fit(est, X, y, grid_size=1)
    with pytest.raises(ValueError, match="one matplotlib Axes"):
        plot_fit(est, X, y, ax=Figure().subplots(2, 1))
    with pytest.raises(ValueError, match=r"pair \(fit, gate\) of Axes"):
        plot_fit(est, X, y, ax=Figure().subplots(), show_gate=True)
