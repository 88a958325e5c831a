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
    ``err_temperature``, ``err_gate_slope_over_temperature``; papers.md
    section 4).

A row is a *failed fit* for a column when its status is not ``"ok"`` or the
column's value is not finite. Failed fits are excluded from every statistic,
band and rate fit, and counted in the legend (papers.md section 5: occasional EM
failures must be reported, never silently averaged). Rate fits are those of
:func:`moestats.rates.fit_rate` (OLS of the log statistic on ``log n`` with a
stratified-bootstrap CI); local slopes are those of
:func:`moestats.rates.local_slopes`.

All functions use Matplotlib's object API (:class:`matplotlib.figure.Figure`,
never ``pyplot``), so they work in any backend, threads and batch jobs; save
with ``fig.savefig(path)``. Every function returns the Figure; the single-axes
ones accept ``ax=`` to draw into an existing Axes (and then return
``ax.figure``).
"""

from __future__ import annotations

from .fit import plot_fit_1d
from .rates import (PARAMETER_ERROR_COLUMNS, plot_local_slopes, plot_parameter_errors,
                    plot_rate, plot_rate_summary)

__all__ = [
    "plot_rate",
    "plot_parameter_errors",
    "plot_local_slopes",
    "plot_rate_summary",
    "plot_fit_1d",
    "PARAMETER_ERROR_COLUMNS",
]
