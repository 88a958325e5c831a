"""Local slopes over windows of n, and the slope over the last decade."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ._common import (_boot_stats, _check_options, _group, _log_boot, _log_statistic, _ols,
                      _statistic)
from .fit import RateFit, fit_rate


def local_slopes(n, losses, *, window=5, statistic="median", trim=0.1, failed=None,
                 n_boot=0, ci=0.95, rng=None):
    """Local power-law slopes over sliding windows of consecutive sample sizes.

    With :math:`S_i` the statistic of the valid losses at the usable sizes
    :math:`n_1 < \\dots < n_m`, window :math:`w` and :math:`u_i = \\log n_i`, the
    local slope of the window starting at :math:`s` is the OLS slope

    .. math::

        \\hat s_s = \\frac{\\sum_{i=s}^{s+w-1} (u_i - \\bar u)(\\log S_i - \\overline{\\log S})}
                         {\\sum_{i=s}^{s+w-1} (u_i - \\bar u)^2},

    i.e. with ``window=2`` the slope between consecutive sample sizes,
    :math:`(\\log S_{i+1} - \\log S_i) / (u_{i+1} - u_i)`.

    Parameters
    ----------
    n, losses, failed, statistic, trim
        As in :func:`fit_rate` (failed rows are dropped; an ``n`` whose rows all
        failed is skipped).
    window : int, 2 <= window <= number of usable unique n
        Number of consecutive unique ``n`` per window (step 1).
    n_boot : int >= 0, default=0
        Bootstrap resamples of the intervals (0: no interval, ``ci_low`` and
        ``ci_high`` are NaN).
    ci : float in (0, 1), default=0.95
        Level of the percentile intervals.
    rng : None, int or numpy.random.Generator
        Seed of the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per window with columns ``n_center`` (geometric mean of the
        window's ``n``), ``slope``, ``ci_low`` and ``ci_high`` (the percentile
        interval), ``n_low`` and ``n_high`` (window ends).

    Notes
    -----
    For ``L = C n^s`` every local slope equals ``s``. For a rate slower than any
    polynomial, e.g. ``L = 1/log n``, ``d log L / d log n = -1/log n``, so the
    local slope increases towards 0 as ``n`` grows; a loss that stops decreasing
    (a plateau) has local slopes that go to 0 while a global fit still reports a
    negative slope.

    The intervals use the stratified bootstrap of :func:`fit_rate`: one set of
    ``n_boot`` resamples of the replications within each ``n``, shared by all
    windows (so neighbouring intervals are correlated, as the windows overlap).
    Each interval is marginal (pointwise in ``n``), not simultaneous over the
    windows.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import local_slopes
    >>> n = np.repeat([1e2, 1e3, 1e4, 1e5], 3)
    >>> loss = np.maximum(n ** -0.5, 0.01)       # a plateau from n = 1e4 on
    >>> local_slopes(n, loss, window=2)["slope"].round(3).tolist()
    [-0.5, -0.5, 0.0]
    """
    _check_options(statistic, trim)
    if not (0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    n_boot = int(n_boot)
    n_values, groups, _ = _group(n, losses, failed)
    keep = [i for i, g in enumerate(groups) if g.size]
    if isinstance(window, bool) or int(window) != window or not (2 <= window <= len(keep)):
        raise ValueError(
            f"window must be an integer with 2 <= window <= {len(keep)} "
            f"(the number of unique n with valid losses), got {window!r}"
        )
    window = int(window)
    nk = n_values[keep]
    x = np.log(nk)
    y = _log_statistic([_statistic(groups[i], statistic, trim) for i in keep], nk, statistic)
    yb = None
    if n_boot > 0:
        yb, _ = _log_boot(_boot_stats(groups, keep, statistic, trim, n_boot,
                                      np.random.default_rng(rng)))
    alpha = 1.0 - float(ci)
    rows = []
    for s in range(len(keep) - window + 1):
        xs, ys = x[s : s + window], y[s : s + window]
        lo = hi = float("nan")
        if yb is not None:
            xc = xs - xs.mean()
            seg = yb[:, s : s + window]
            boot = (seg - seg.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
            if boot.size:
                lo, hi = (float(q) for q in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
        rows.append(
            {
                "n_center": float(np.exp(xs.mean())),
                "slope": _ols(xs, ys)[0],
                "ci_low": lo,
                "ci_high": hi,
                "n_low": float(nk[s]),
                "n_high": float(nk[s + window - 1]),
            }
        )
    return pd.DataFrame(rows, columns=["n_center", "slope", "ci_low", "ci_high", "n_low",
                                       "n_high"])


def last_decade_slope(n, losses, *, decades=1.0, failed=None, **kwargs) -> RateFit:
    """The rate fitted over the last ``decades`` decades of ``n`` only.

    With :math:`n_{\\max}` the largest ``n`` with a valid loss, :func:`fit_rate`
    on the rows with :math:`n \\ge n_{\\max} / 10^{\\text{decades}}`. Beside the
    slope over the whole grid it shows where the curve is going: for a power
    law both agree; for a loss that flattens (a plateau, or a rate slower than
    any polynomial) the last-decade slope is closer to 0.

    Parameters
    ----------
    n, losses, failed
        As in :func:`fit_rate`.
    decades : float > 0, default=1.0
        Width of the range, in decades of ``n``.
    **kwargs
        Passed to :func:`fit_rate` (``statistic``, ``n_boot``, ``ci``, ``rng``,
        ``trim``).

    Returns
    -------
    RateFit
        Its :attr:`~RateFit.n_values` are those of the last decade only.

    Raises
    ------
    ValueError
        If fewer than 2 distinct ``n`` with valid losses lie in the range (and
        for the inputs :func:`fit_rate` refuses).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import fit_rate, last_decade_slope
    >>> n = np.repeat(np.geomspace(1e2, 1e5, 10), 2)
    >>> loss = n ** -0.5 + 1e-2                # converges to a plateau at 0.01
    >>> round(fit_rate(n, loss, n_boot=0).slope, 2)
    -0.31
    >>> round(last_decade_slope(n, loss, n_boot=0).slope, 2)
    -0.18
    """
    if not (isinstance(decades, (int, float)) and not isinstance(decades, bool)
            and decades > 0 and math.isfinite(decades)):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    n_arr = np.asarray(n, dtype=float)
    loss_arr = np.asarray(losses, dtype=float)
    n_values, groups, _ = _group(n_arr, loss_arr, failed)
    valid = [v for v, g in zip(n_values, groups) if g.size]
    if not valid:
        raise ValueError("no valid losses: no last decade to fit")
    lower = max(valid) / 10.0 ** decades
    sel = n_arr >= lower * (1 - 1e-12)
    fail = None if failed is None else np.asarray(failed)[sel]
    if np.unique(n_arr[sel][np.isfinite(loss_arr[sel]) & (
            True if fail is None else ~fail)]).size < 2:
        raise ValueError(
            f"need at least 2 distinct n with valid losses in the last {decades:g} "
            f"decade(s), n >= {lower:g}; got {sorted(set(n_arr[sel].tolist()))}")
    return fit_rate(n_arr[sel], loss_arr[sel], failed=fail, **kwargs)
