"""Figures for convergence-rate studies and fitted one-dimensional models.

Input of the rate plots is a simulation-results :class:`pandas.DataFrame` with
one row per (fitted configuration, sample size, replication):

``fitted`` (str)
    Name of the fitted configuration (e.g. ``"k3"``). Optional: without it the
    whole frame is one configuration.
``n`` (int)
    Sample size.
``replication`` (int)
    Replication index (not used by the plots).
``status`` (``"ok"`` or ``"failed"``)
    Optional; rows whose status is not ``"ok"`` are failed fits.
``loss`` (float, NaN if failed)
    And any other loss column (``loss_ratio``, ``density_error``, ...) or
    per-parameter error column (``err_gate_coef``, ``err_expert_coef``,
    ``err_expert_intercept``, ``err_expert_var``, ``err_weight``,
    ``err_temperature``, ``err_gate_slope_over_temperature``; the user guide's *Simulations*, losses and gauges).
``cell{j}_size``, ``cell{j}_<block>`` (optional)
    Per-cell errors of true atom ``j`` (:func:`plot_cell_rates`).
``loss_gauge`` (str, optional)
    The gauge of the losses and errors, shown on every axis label.
``certified`` (bool) or ``certificate`` (JSON), ``passes`` (int), optional
    The fit's stationarity certificate and its passes over the data.

A row is a *failed fit* for a column when its status is not ``"ok"`` or the
column's value is not finite. Failed fits are excluded from every statistic,
band and rate fit, and counted in the legend (the user guide's *Simulations*, rates: occasional EM
failures must be reported, never silently averaged). An *uncertified* fit (its
stored certificate does not hold) is likewise left out of the statistics by
default (``certified_only=True``), drawn as a cross and counted. Rate fits are those of
:func:`moestats.rates.fit_rate` (OLS of the log statistic on ``log n`` with a
stratified-bootstrap CI); local slopes are those of
:func:`moestats.rates.local_slopes`.

All functions use Matplotlib's object API (:class:`matplotlib.figure.Figure`,
never ``pyplot``), so they work in any backend, threads and batch jobs; save
with ``fig.savefig(path)``. Every function returns the Figure; the single-axes
ones accept ``ax=`` to draw into an existing Axes (and then return
``ax.figure``).

A fitted :class:`~moestats.GaussianMoE` on one covariate is drawn over its data by
:func:`plot_fit` (posterior memberships, experts, predictive mean and exact predictive
band); :func:`plot_fit_1d` draws a parameter set (and the truth) given its gate.
"""

from __future__ import annotations

from ._common import loss_axis_label
from .cell_tables import CELL_BLOCKS, cell_errors, cell_rate_table
from .cells import plot_cell_rates
from .counts import fit_counts, plot_fit_counts, plot_passes
from .dendrogram import plot_dendrogram
from .estimator_fit import plot_fit
from .fit import plot_fit_1d
from .rates import PARAMETER_ERROR_COLUMNS, plot_parameter_errors, plot_rate, plot_rate_summary
from .slopes import plot_local_slopes

__all__ = [
    "plot_rate",
    "plot_parameter_errors",
    "plot_local_slopes",
    "plot_rate_summary",
    "plot_fit_counts",
    "plot_passes",
    "plot_cell_rates",
    "plot_fit",
    "plot_fit_1d",
    "plot_dendrogram",
    "fit_counts",
    "cell_errors",
    "cell_rate_table",
    "loss_axis_label",
    "PARAMETER_ERROR_COLUMNS",
    "CELL_BLOCKS",
]
