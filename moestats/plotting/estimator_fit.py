"""A fitted :class:`~moestats.GaussianMoE` on one covariate: the data coloured by
posterior membership, the experts where the gate uses them, the predictive mean and
the exact predictive band."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from sklearn.utils.validation import check_is_fitted

from ..inference.prediction import check_level
from ._common import _expert_label, _x_grid

__all__ = ["plot_fit"]


def plot_fit(estimator, X, y, *, ax=None, level=0.9, show_gate=False, threshold=0.05,
             grid_size=400):
    r"""A fitted mixture of experts on one covariate, over its data.

    At an input :math:`x` the fitted model is the Gaussian mixture
    :math:`p(y \mid x) = \sum_j w_j(x)\,\mathcal N(y \mid \mu_j(x), \nu_j)`,
    :math:`\mu_j(x) = a_j x + b_j`. The figure shows

    * the data, point :math:`i` in the colour of its most probable expert
      :math:`\hat\jmath_i = \arg\max_j \pi_{ij}`
      (:meth:`~moestats.GaussianMoE.predict_labels`), where :math:`\pi_{ij} =
      w_j(x_i)\,\mathcal N(y_i \mid \mu_j(x_i), \nu_j) / p(y_i \mid x_i)` is the
      posterior membership
      (:meth:`~moestats.GaussianMoE.predict_responsibilities`), with opacity
      :math:`0.15 + 0.85\,(\pi_{i\hat\jmath_i} - 1/k)/(1 - 1/k)`: faint for a point
      the experts share, opaque for a point one expert owns;
    * each expert's mean line :math:`\mu_j(x)`, solid where its gate weight
      :math:`w_j(x) \ge` ``threshold`` (:meth:`~moestats.GaussianMoE.predict_proba`,
      the gate prior) and faint dotted elsewhere, where it hardly enters the model;
    * the predictive mean :math:`m(x) = \sum_j w_j(x)\mu_j(x)`
      (:meth:`~moestats.GaussianMoE.predict`, black);
    * the equal-tailed predictive band :math:`[F^{-1}(\tfrac{1-\text{level}}{2} \mid x),
      F^{-1}(\tfrac{1+\text{level}}{2} \mid x)]` of the exact mixture CDF
      :math:`F(y \mid x) = \sum_j w_j(x)\,\Phi\bigl((y - \mu_j(x))/\sqrt{\nu_j}\bigr)`
      (:meth:`~moestats.GaussianMoE.predict_interval`). Where the gate switches between
      experts the predictive distribution is bimodal and the band is not
      :math:`m(x) \pm z\,s(x)`.

    The curves are evaluated on ``grid_size`` points spanning the range of ``X``. With
    ``show_gate=True`` a second panel, sharing x, shows the gate weights
    :math:`w_j(x)` and the threshold.

    Parameters
    ----------
    estimator : moestats.GaussianMoE
        Fitted on one covariate (``n_features_in_ == 1``).
    X : array-like or DataFrame of shape (n, 1), or (n,)
        Covariates of the points drawn (usually the training data); they also set the
        x range of the curves.
    y : array-like or Series of shape (n,)
        Responses.
    ax : matplotlib.axes.Axes, or a pair of them with ``show_gate=True``, optional
        Axes to draw into (``(fit, gate)`` with the gate panel); a new Figure
        otherwise.
    level : float in (0, 1), default=0.9
        Probability of the predictive band.
    show_gate : bool, default=False
        Add the panel of gate weights below.
    threshold : float in [0, 1), default=0.05
        Gate weight from which an expert line is drawn solid.
    grid_size : int, default=400
        Number of grid points of the curves.

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure (one Axes, or two with ``show_gate``), or the Figure of ``ax``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    ValueError
        If the model or ``X`` is not on one covariate (``d != 1``), ``X`` is empty,
        ``y`` is not one value per row of ``X``, ``level`` is not strictly between 0
        and 1, ``threshold`` or ``grid_size`` is invalid, or ``ax`` is not one Axes
        (two with ``show_gate``).

    Notes
    -----
    Axis labels: the feature name when the estimator was fitted on a DataFrame
    (``feature_names_in_``), else ``"x"``; the name of ``y`` when it is a named
    :class:`pandas.Series`, else ``"y"``. Matplotlib's object API only: save with
    ``fig.savefig(path)``.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import GaussianMoE, get_setup
    >>> from moestats.plotting import plot_fit
    >>> X, y = get_setup("softmax-exact").truth.sample(300, np.random.default_rng(0))
    >>> est = GaussianMoE(2, random_state=0).fit(X, y)
    >>> fig = plot_fit(est, X, y, level=0.9, show_gate=True)
    >>> fit_ax, gate_ax = fig.axes
    >>> fit_ax.get_ylabel(), gate_ax.get_xlabel()
    ('y', 'x')
    >>> texts = [t.get_text() for t in fit_ax.get_legend().get_texts()]
    >>> texts[2], texts[-1]
    ('90% predictive interval (exact mixture quantiles)', 'predictive mean E[y | x]')
    """
    check_is_fitted(estimator)
    level = check_level(level)
    if (not isinstance(threshold, numbers.Real) or isinstance(threshold, bool)
            or not 0.0 <= threshold < 1.0):
        raise ValueError(f"threshold must be a gate weight in [0, 1), got {threshold!r}")
    if (not isinstance(grid_size, numbers.Integral) or isinstance(grid_size, bool)
            or grid_size < 2):
        raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}")
    X, x, yv = _check_data(estimator, X, y)
    ax_fit, ax_gate, fig = _axes(ax, show_gate)

    names = getattr(estimator, "feature_names_in_", None)
    xname = str(names[0]) if names is not None else "x"
    yname = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"

    # the data, by posterior membership
    resp = estimator.predict_responsibilities(X, y)
    k = resp.shape[1]
    labels = resp.argmax(axis=1)  # = estimator.predict_labels(X, y)
    strength = resp[np.arange(x.size), labels]
    alpha = (np.clip(0.15 + 0.85 * (strength - 1 / k) / (1 - 1 / k), 0.15, 1.0) if k > 1
             else np.ones(x.size))
    for j in range(k):
        mine = labels == j
        if mine.any():
            colors = np.column_stack([np.tile(to_rgb(f"C{j}"), (mine.sum(), 1)), alpha[mine]])
            ax_fit.scatter(x[mine], yv[mine], s=10, c=colors, linewidths=0, zorder=2,
                           gid=f"points:{j}", rasterized=x.size > 5000,
                           label=f"{int(mine.sum())} points, most probably expert {j + 1}")

    # the curves on a grid
    xg = _x_grid(x, grid_size)
    Xg = pd.DataFrame(xg[:, None], columns=list(names)) if names is not None else xg[:, None]
    w = estimator.predict_proba(Xg)
    mean = estimator.predict(Xg)
    band = estimator.predict_interval(Xg, level=level)
    mu = xg[:, None] * estimator.expert_coef_[:, 0] + estimator.expert_intercept_
    solid = np.where(w >= threshold, mu, np.nan)

    band_label = f"{100 * level:g}% predictive interval (exact mixture quantiles)"
    ax_fit.fill_between(xg, band[:, 0], band[:, 1], color="0.5", alpha=0.22, linewidth=0,
                        zorder=1, gid="band", label=band_label)
    for edge, gid in ((band[:, 0], "band_low"), (band[:, 1], "band_high")):
        ax_fit.plot(xg, edge, color="0.35", linewidth=0.8, zorder=3, gid=gid,
                    label="_nolegend_")
    for j in range(k):
        a, b = float(estimator.expert_coef_[j, 0]), float(estimator.expert_intercept_[j])
        ax_fit.plot(xg, mu[:, j], color=f"C{j}", linewidth=1.0, linestyle=":", alpha=0.5,
                    zorder=3, gid=f"expert_faint:{j}", label="_nolegend_")
        ax_fit.plot(xg, solid[:, j], color=f"C{j}", linewidth=1.8, zorder=4,
                    gid=f"expert:{j}", label=_expert_label(j, a, b, xname))
    ax_fit.plot(xg, mean, color="k", linewidth=2.0, zorder=5, gid="mean",
                label=f"predictive mean E[{yname} | {xname}]")

    # y range: data, band, mean and the solid experts (not the faint extrapolations)
    span = np.concatenate([yv, band.ravel(), mean, solid.ravel()])
    span = span[np.isfinite(span)]
    ymin, ymax = float(span.min()), float(span.max())
    pad = 0.06 * (ymax - ymin) if ymax > ymin else 1.0
    ax_fit.set_ylim(ymin - pad, ymax + pad)
    ax_fit.set_xlim(xg[0], xg[-1])
    ax_fit.set_ylabel(yname)
    ax_fit.grid(True, alpha=0.4)
    legend = ax_fit.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for handle in legend.legend_handles:
        if isinstance(handle, PathCollection):  # the points' key: opaque
            handle.set_alpha(1.0)
    if ax_gate is None:
        ax_fit.set_xlabel(xname)
        return fig

    for j in range(k):
        ax_gate.plot(xg, w[:, j], color=f"C{j}", linewidth=1.5, gid=f"weight:{j}",
                     label=f"$w_{{{j + 1}}}$({xname})")
    ax_gate.axhline(threshold, color="0.4", linestyle=":", linewidth=1.0, gid="threshold",
                    label=f"threshold {threshold:g} (expert solid above)")
    ax_gate.set_ylim(-0.04, 1.04)
    ax_gate.set_xlim(xg[0], xg[-1])
    ax_gate.set_xlabel(xname)
    ax_gate.set_ylabel("gate weight $w_j$")
    ax_gate.grid(True, alpha=0.4)
    ax_gate.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _check_data(estimator, X, y):
    """``(X for the estimator, x values (n,), y values (n,))``; ValueError if not d = 1."""
    d = estimator.n_features_in_
    if isinstance(X, pd.Series):
        X = X.to_frame()
    shape = np.shape(X)
    if d != 1:
        raise ValueError(
            f"plot_fit needs a model on one covariate (d = 1), but the estimator was "
            f"fitted on d = {d} features (X has shape {shape})")
    if len(shape) == 1:
        X = np.asarray(X, dtype=float)[:, None]
    elif len(shape) != 2 or shape[1] != 1:
        raise ValueError(
            f"plot_fit needs one covariate (d = 1): X must have shape (n, 1) or (n,), "
            f"got shape {shape}")
    n = np.shape(X)[0]
    if n == 0:
        raise ValueError("plot_fit needs at least one observation, X is empty")
    if np.ndim(y) != 1:
        raise ValueError(f"y must be one-dimensional, shape (n,), got shape {np.shape(y)}")
    if len(y) != n:
        raise ValueError(f"y has {len(y)} values but X has {n} rows")
    return X, np.asarray(X, dtype=float)[:, 0], np.asarray(y, dtype=float)


def _axes(ax, show_gate):
    """``(fit axes, gate axes or None, Figure)``, new or from ``ax``."""
    if ax is None:
        fig = Figure(figsize=(9.5, 6.4 if show_gate else 4.6), layout="constrained")
        if show_gate:
            ax_fit, ax_gate = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
            return ax_fit, ax_gate, fig
        return fig.subplots(), None, fig
    if show_gate:
        try:
            ax_fit, ax_gate = ax
        except (TypeError, ValueError):
            ax_fit = ax_gate = None
        if not (isinstance(ax_fit, Axes) and isinstance(ax_gate, Axes)):
            raise ValueError("with show_gate=True plot_fit draws two panels: ax must be a "
                             f"pair (fit, gate) of Axes, got {ax!r}")
    elif isinstance(ax, Axes):
        ax_fit, ax_gate = ax, None
    else:
        raise ValueError(f"ax must be one matplotlib Axes (two with show_gate=True), "
                         f"got {ax!r}")
    fig = ax_fit.figure
    while not isinstance(fig, Figure):  # an Axes of a SubFigure: its root Figure
        fig = fig.figure
    return ax_fit, ax_gate, fig
