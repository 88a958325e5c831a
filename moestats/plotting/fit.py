"""A fitted (and true) model drawn over one-dimensional data."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ._common import _expert_label, _x_grid

__all__ = ["plot_fit_1d"]


def plot_fit_1d(gate, params, X, y=None, *, true_gate=None, true_params=None, ax=None):
    """Fitted (and true) experts and gate of a model on one covariate.

    Top panel: the data ``(x, y)`` (small translucent points, if ``y`` is
    given), each expert's mean line ``a_j x + b_j`` (solid: fitted; dashed
    grey: truth) and the conditional mean
    ``E[y | x] = sum_j w_j(x) (a_j x + b_j)`` (solid black: fitted; dotted:
    truth). Bottom panel, sharing x: the gate weights ``w_j(x)`` on a grid over
    the range of ``X`` (solid: fitted, in the experts' colours; dashed grey:
    truth).

    Parameters
    ----------
    gate : moestats.Gate
        Gate family of the fitted model (e.g. ``SoftmaxGate()``).
    params : moestats.MoEParams
        Fitted parameters, with ``d = 1``.
    X : array_like of shape (n, 1) or (n,)
        Covariates; defines the plotted x range.
    y : array_like of shape (n,), optional
        Responses, drawn as points.
    true_gate : moestats.Gate, optional
        Gate of the truth (``gate`` by default).
    true_params : moestats.MoEParams, optional
        True parameters (``d = 1``); drawn dashed if given.
    ax : sequence of two matplotlib.axes.Axes, optional
        ``(top, bottom)`` Axes to draw into; a new Figure is made otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure (two Axes), or the Figure of ``ax``.

    Raises
    ------
    ValueError
        If ``X`` or a parameter set is not one-dimensional (``d != 1``), ``X``
        is empty, ``y`` has the wrong length, or ``ax`` is not two Axes.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != 1:
        raise ValueError(
            f"plot_fit_1d needs one covariate (d = 1): X must have shape (n, 1) or "
            f"(n,), got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError("plot_fit_1d needs at least one observation, X is empty")
    for label, p in (("params", params), ("true_params", true_params)):
        if p is not None and p.n_features != 1:
            raise ValueError(
                f"plot_fit_1d needs one covariate (d = 1), but {label} has "
                f"d = {p.n_features} features"
            )
    if y is not None:
        y = np.asarray(y, dtype=float).ravel()
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} values but X has {X.shape[0]} rows")
    if true_gate is None:
        true_gate = gate

    if ax is None:
        fig = Figure(figsize=(9.5, 6.4), layout="constrained")
        ax_top, ax_bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    else:
        try:
            ax_top, ax_bottom = ax
        except (TypeError, ValueError):
            raise ValueError(
                "plot_fit_1d draws two panels: ax must be a pair (top, bottom) of "
                f"Axes, got {ax!r}"
            ) from None
        fig = ax_top.figure

    xg = _x_grid(X[:, 0])
    lo, hi = xg[0], xg[-1]
    Xg = xg[:, None]

    def curves(g, p):
        w = g.weights(p, Xg)
        means = Xg @ p.expert_coef.T + p.expert_intercept
        return w, means, (w * means).sum(axis=1)

    if y is not None:
        ax_top.scatter(X[:, 0], y, s=5, color="0.45", alpha=0.25, linewidths=0,
                       label="data", gid="data", rasterized=X.shape[0] > 5000)
    w, means, cmean = curves(gate, params)
    yspan = [cmean.min(), cmean.max()]
    if true_params is not None:
        tw, tmeans, tcmean = curves(true_gate, true_params)
        for j in range(true_params.n_experts):
            ax_top.plot(xg, tmeans[:, j], color="0.3", linestyle="--", linewidth=1.2,
                        gid=f"true_expert:{j}",
                        label="true experts" if j == 0 else "_nolegend_")
            ax_bottom.plot(xg, tw[:, j], color="0.3", linestyle="--", linewidth=1.2,
                           gid=f"true_weight:{j}",
                           label="truth" if j == 0 else "_nolegend_")
        ax_top.plot(xg, tcmean, color="k", linestyle=":", linewidth=2.0,
                    gid="true_mean", label=r"truth $E[y \mid x]$")
        yspan += [tcmean.min(), tcmean.max()]
    for j in range(params.n_experts):
        a, b = float(params.expert_coef[j, 0]), float(params.expert_intercept[j])
        ax_top.plot(xg, means[:, j], color=f"C{j}", linewidth=1.5, gid=f"expert:{j}",
                    label=_expert_label(j, a, b))
        ax_bottom.plot(xg, w[:, j], color=f"C{j}", linewidth=1.5, gid=f"weight:{j}",
                       label=f"$w_{{{j + 1}}}(x)$")
    ax_top.plot(xg, cmean, color="k", linewidth=2.2, gid="mean",
                label=r"fitted $E[y \mid x] = \sum_j w_j(x)(a_j x + b_j)$")
    if y is not None:
        finite = y[np.isfinite(y)]
        if finite.size:
            yspan += [finite.min(), finite.max()]
    ymin, ymax = min(yspan), max(yspan)
    pad = 0.08 * (ymax - ymin) if ymax > ymin else 1.0
    ax_top.set_ylim(ymin - pad, ymax + pad)
    ax_top.set_ylabel("y")
    ax_top.grid(True, alpha=0.4)
    ax_top.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_bottom.set_ylim(-0.04, 1.04)
    ax_bottom.set_xlim(lo, hi)
    ax_bottom.set_xlabel("x")
    ax_bottom.set_ylabel("gate weight $w_j(x)$")
    ax_bottom.grid(True, alpha=0.4)
    ax_bottom.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
