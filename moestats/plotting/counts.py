"""What the rate statistics stand on: certified, uncertified and failed fits per n, and
the passes over the data each fit used (matplotlib object API)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import _configs, _grid, _log_axis, _new_axes, _prefix

__all__ = ["fit_counts", "plot_fit_counts", "plot_passes"]


def fit_counts(results, *, fitted=None, column="loss"):
    """Fits per (fitted configuration, n): certified, uncertified, failed.

    A fit is *failed* when its status is not ``"ok"`` or its ``column`` is not
    finite; *uncertified* when it is not failed and its stored certificate does
    not hold; *certified* otherwise — or *unknown* where no certificate is stored
    (results of an older store).

    Returns
    -------
    pandas.DataFrame
        Columns ``fitted``, ``n``, ``fits``, ``certified``, ``uncertified``,
        ``failed``, ``unknown`` (certificate not recorded), ``median_passes``.

    Examples
    --------
    >>> import json, pandas as pd
    >>> from moestats.plotting import fit_counts
    >>> cert = lambda ok: json.dumps({"certified": ok})
    >>> df = pd.DataFrame({"fitted": "k3", "n": [100, 100, 100, 200],
    ...                    "status": ["ok", "ok", "failed", "ok"], "loss": [.1, .2, None, .1],
    ...                    "certificate": [cert(True), cert(False), None, cert(True)]})
    >>> fit_counts(df)[["n", "fits", "certified", "uncertified", "failed"]]
         n  fits  certified  uncertified  failed
    0  100     3          1            1       1
    1  200     1          1            0       0
    """
    rows = []
    for cfg in _configs(results, column, fitted):
        bad = cfg.failed | ~np.isfinite(cfg.values)
        for m in np.unique(cfg.n):
            at = cfg.n == m
            ok = at & ~bad
            rows.append(dict(
                fitted=cfg.name, n=int(m) if float(m).is_integer() else m, fits=int(at.sum()),
                certified=int((ok & cfg.cert_known & ~cfg.uncertified).sum()),
                uncertified=int((ok & cfg.uncertified).sum()), failed=int((at & bad).sum()),
                unknown=int((ok & ~cfg.cert_known).sum()),
                median_passes=(float(np.nanmedian(cfg.passes[at]))
                               if np.isfinite(cfg.passes[at]).any() else np.nan)))
    return pd.DataFrame(rows, columns=["fitted", "n", "fits", "certified", "uncertified",
                                       "failed", "unknown", "median_passes"])


def plot_fit_counts(results, *, fitted=None, column="loss", ax=None, annotate="auto"):
    """Certified, uncertified and failed fits per n, per configuration.

    Lines with markers: certified fits (filled circles), uncertified (crosses),
    failed (triangles), each against n (log axis); where no certificate is stored,
    the fits that did not fail (open circles, "certificate not recorded"). The
    legend gives the totals (e.g. ``"k3: certified 312/320"``); with
    ``annotate`` each n is labelled with its ``certified/fits`` count.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results (see :mod:`moestats.plotting`); the certificate is read
        from a ``certified`` column or the ``certificate`` JSON.
    fitted : str or list of str, optional
        Configuration(s) to plot (all by default), one colour each.
    column : str, default="loss"
        A non-finite value in it counts as a failed fit.
    ax : matplotlib.axes.Axes, optional
    annotate : bool or "auto", default="auto"
        Label every n with ``certified/fits``; ``"auto"``: when there are at most
        12 sample sizes.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Artist gids: ``"certified:<fitted>"``, ``"uncertified:<fitted>"``,
    ``"failed:<fitted>"``, ``"unknown:<fitted>"``; the count labels are Text
    artists with gid ``"count:<fitted>"``.

    Examples
    --------
    >>> import pandas as pd
    >>> from moestats.plotting import plot_fit_counts
    >>> df = pd.DataFrame({"fitted": "k3", "n": [100, 100, 200, 200], "status": "ok",
    ...                    "loss": 1.0, "certified": [True, False, True, True]})
    >>> ax = plot_fit_counts(df).axes[0]
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['k3: certified 3/4', 'k3: uncertified 1/4', 'k3: failed 0/4']
    >>> [t.get_text() for t in ax.texts]
    ['1/2', '2/2']
    """
    fig, ax = _new_axes(ax, (6.4, 2.8))
    counts = fit_counts(results, fitted=fitted, column=column)
    names = list(pd.unique(counts["fitted"])) if len(counts) else []
    n_sizes = counts["n"].nunique() if len(counts) else 0
    annotate = n_sizes <= 12 if annotate == "auto" else bool(annotate)
    for i, name in enumerate(names):
        c = counts[counts["fitted"].isna()] if name is None else counts[counts["fitted"] == name]
        color, pre = f"C{i}", _prefix(name)
        key = name if name is not None else ""
        n, total = c["n"].to_numpy(float), int(c["fits"].sum())
        known = int(c["certified"].sum() + c["uncertified"].sum()) > 0
        if known or not c["unknown"].any():
            ax.plot(n, c["certified"], marker="o", markersize=4, color=color, linewidth=1.2,
                    gid=f"certified:{key}",
                    label=f"{pre}certified {int(c['certified'].sum())}/{total}")
            ax.plot(n, c["uncertified"], marker="x", markersize=5, color=color, linestyle=":",
                    linewidth=0.9, gid=f"uncertified:{key}",
                    label=f"{pre}uncertified {int(c['uncertified'].sum())}/{total}")
        if c["unknown"].any():
            ax.plot(n, c["unknown"], marker="o", markersize=4, color=color,
                    markerfacecolor="none", linewidth=1.0, gid=f"unknown:{key}",
                    label=f"{pre}certificate not recorded {int(c['unknown'].sum())}/{total}")
        ax.plot(n, c["failed"], marker="v", markersize=4, color=color, linestyle="none",
                gid=f"failed:{key}", label=f"{pre}failed {int(c['failed'].sum())}/{total}")
        if annotate:
            good = c["certified"] + c["unknown"]
            for m, g, f in zip(n, good, c["fits"]):
                ax.annotate(f"{g}/{f}", (m, g), textcoords="offset points",
                            xytext=(0, 4 + 8 * i), ha="center", fontsize="x-small",
                            color=color, gid=f"count:{key}")
    _log_axis(ax, "x")
    ax.set_ylim(bottom=-0.5, top=max(1.0, float(counts["fits"].max()) if len(counts) else 1)
                * (1.25 + 0.1 * len(names)))
    ax.set_xlabel("sample size n")
    ax.set_ylabel("fits per n")
    _grid(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5),
                  frameon=False)
    return fig


def plot_passes(results, *, fitted=None, column="loss", ax=None, band=(0.1, 0.9)):
    """Passes over the data per fit against n: the median (markers) and the ``band``
    quantiles (whiskers) of the fits that did not fail, per configuration.

    Returns
    -------
    matplotlib.figure.Figure
        With gids ``"passes:<fitted>"`` (medians) and ``"passesband:<fitted>"``; an
        Axes text "passes not recorded" where the results have none.

    Examples
    --------
    >>> import pandas as pd
    >>> from moestats.plotting import plot_passes
    >>> df = pd.DataFrame({"n": [100, 100, 1000, 1000], "loss": 1.0,
    ...                    "passes": [40, 60, 200, 300]})
    >>> ax = plot_passes(df).axes[0]
    >>> ax.get_lines()[0].get_ydata().tolist()
    [50.0, 250.0]
    """
    fig, ax = _new_axes(ax, (6.4, 2.8))
    drawn = False
    for i, cfg in enumerate(_configs(results, column, fitted)):
        ok = ~(cfg.failed | ~np.isfinite(cfg.values)) & np.isfinite(cfg.passes)
        if not ok.any():
            continue
        n_values = np.unique(cfg.n[ok])
        med = np.array([np.median(cfg.passes[ok & (cfg.n == m)]) for m in n_values])
        lo, hi = np.array([np.quantile(cfg.passes[ok & (cfg.n == m)], band)
                           for m in n_values]).T
        color = f"C{i}"
        ax.plot(n_values, med, marker="o", markersize=4, color=color, linewidth=1.2,
                gid=f"passes:{cfg.key}", label=f"{_prefix(cfg.name)}median passes")
        ax.vlines(n_values, lo, hi, color=color, alpha=0.5, linewidth=1.0,
                  gid=f"passesband:{cfg.key}")
        drawn = True
    if drawn:
        _log_axis(ax, "both")
        ax.legend(fontsize="x-small")
    else:
        ax.set_xscale("log")
        ax.text(0.5, 0.5, "passes not recorded", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
    ax.set_xlabel("sample size n")
    ax.set_ylabel(f"passes over the data\n(median, {100 * band[0]:g}\u2013{100 * band[1]:g}%)")
    _grid(ax)
    return fig
