"""Small real data sets for mixtures of experts and mixtures of regressions.

Each loader reads a CSV file shipped inside the package (``moestats/datasets/data``;
nothing is downloaded) and returns a :class:`~sklearn.utils.Bunch`, or ``(X, y)``
with ``return_X_y=True``: ``X`` a :class:`pandas.DataFrame` of the covariates and
``y`` a :class:`pandas.Series` of the response.

=========================  ====  ===========================================  ==================
loader                      n    regression                                   classic model
=========================  ====  ===========================================  ==================
:func:`load_tonedata`       150  ``tuned`` on ``stretchratio``                two lines (k = 2)
:func:`load_faithful`       272  ``waiting`` on ``eruptions``                 two regimes (k = 2)
:func:`load_mcycle`         133  ``accel`` on ``times``                       k = 2 or 3 regimes
=========================  ====  ===========================================  ==================

The numbers are published measurements, copied from R packages (tonedata from
``mixtools``, faithful from R's ``datasets``, mcycle from ``MASS``) with
``write.csv``; each loader's docstring gives the original source, the R package and
its licence. The file ``data/README.md`` (installed with the CSV files) says how they
were produced and states the licence decision: the code of moestats is BSD-3-Clause,
while these data files are redistributed, separately, on the terms they were received
under (GPL-2.0-or-later).

Examples
--------
>>> from moestats.datasets import load_tonedata
>>> X, y = load_tonedata(return_X_y=True)
>>> X.shape, y.name
((150, 1), 'tuned')
"""

from __future__ import annotations

from importlib import resources

import pandas as pd
from sklearn.utils import Bunch

__all__ = ["load_tonedata", "load_faithful", "load_mcycle", "DATASETS"]


_INFO = {
    "tonedata": dict(
        features=["stretchratio"], target="tuned",
        title="Tone perception data (Cohen, 1980)",
        description=(
            "150 trials with one trained musician. A pure fundamental tone was played, "
            "with electronically generated overtones determined by a stretching ratio "
            "(stretchratio; 2.0 is the harmonic pattern of traditional instruments). The "
            "musician tuned an adjustable tone to the octave above the fundamental; "
            "tuned is the ratio of the adjusted tone to the fundamental (2.0 would be "
            "correct tuning). Some trials follow the overtones (tuned close to "
            "stretchratio), others the fundamental (tuned close to 2): the classic "
            "two-line mixture of regressions."),
        source=(
            "Cohen, E. A. (1980), Inharmonic tone perception, PhD dissertation, "
            "Stanford University; analysed by de Veaux (1989), Mixtures of linear "
            "regressions, Computational Statistics & Data Analysis 8, 227-245, and "
            "Viele and Tong (2002), Modeling with mixtures of linear regressions, "
            "Statistics and Computing 12, 315-330. Copied from the R package mixtools "
            "2.0.0 (data set tonedata, itself from the R package fpc by C. Hennig)."),
        licence="mixtools is distributed under GPL (>= 2).",
    ),
    "faithful": dict(
        features=["eruptions"], target="waiting",
        title="Old Faithful geyser data",
        description=(
            "272 eruptions of the Old Faithful geyser (Yellowstone National Park, "
            "Wyoming, USA): eruption time (eruptions, minutes) and waiting time to the "
            "next eruption (waiting, minutes). Short and long eruptions form two "
            "regimes, each with its own linear relation between eruption time and "
            "waiting time. The eruption times are heavily rounded."),
        source=(
            "Härdle, W. (1991), Smoothing Techniques with Implementation in S, "
            "Springer; see also Azzalini, A. and Bowman, A. W. (1990), A look at some "
            "data on the Old Faithful geyser, Applied Statistics 39, 357-365. Copied "
            "from R's base package datasets (R 4.2.2, data set faithful)."),
        licence="R and its datasets package are distributed under GPL-2 | GPL-3.",
    ),
    "mcycle": dict(
        features=["times"], target="accel",
        title="Simulated motorcycle accident data",
        description=(
            "133 measurements of head acceleration (accel, in g) against time after "
            "impact (times, in milliseconds) in a simulated motorcycle accident, used "
            "to test crash helmets. Flat before about 14 ms, then a strong "
            "deceleration and rebound with a noise level that changes with time: a "
            "standard test case for mixtures of experts and heteroscedastic "
            "regression."),
        source=(
            "Silverman, B. W. (1985), Some aspects of the spline smoothing approach to "
            "non-parametric curve fitting, Journal of the Royal Statistical Society, "
            "Series B 47, 1-52; Venables, W. N. and Ripley, B. D. (2002), Modern "
            "Applied Statistics with S, 4th edition, Springer. Copied from the R "
            "package MASS 7.3-58.2 (data set mcycle)."),
        licence="MASS is distributed under GPL-2 | GPL-3.",
    ),
}

#: names of the shipped data sets, in the order of the table above
DATASETS = tuple(_INFO)


def _load(name, return_X_y):
    info = _INFO[name]
    with resources.files(__name__).joinpath("data", f"{name}.csv").open("r") as fh:
        frame = pd.read_csv(fh)
    X = frame[info["features"]].copy()
    y = frame[info["target"]].copy()
    if return_X_y:
        return X, y
    descr = "\n\n".join([info["title"], info["description"], "Source: " + info["source"],
                         "Licence: " + info["licence"]])
    return Bunch(data=X, target=y, frame=frame, feature_names=list(info["features"]),
                 target_name=info["target"], DESCR=descr, source=info["source"],
                 licence=info["licence"], name=name)


def load_tonedata(*, return_X_y=False):
    """Load the tone perception data (Cohen, 1980): 150 rows, ``tuned`` on ``stretchratio``.

    A trained musician heard a pure fundamental tone with electronically generated
    overtones whose spacing is set by ``stretchratio`` (2.0 is the harmonic pattern
    of traditional instruments) and tuned an adjustable tone to the octave above the
    fundamental; ``tuned`` is the ratio of the adjusted tone to the fundamental (2.0
    would be correct). In some trials the musician follows the overtones
    (``tuned`` close to ``stretchratio``), in others the fundamental (``tuned`` close
    to 2): the classic data set of mixtures of linear regressions (de Veaux, 1989),
    here with two experts.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (DataFrame, 150 x 1: ``stretchratio``), ``target`` (Series
        ``tuned``), ``frame`` (both columns), ``feature_names``, ``target_name``,
        ``DESCR``, ``source``, ``licence`` and ``name``.
    (X, y) : tuple of DataFrame and Series
        With ``return_X_y=True``.

    Notes
    -----
    Source: Cohen, E. A. (1980), *Inharmonic tone perception*, PhD dissertation,
    Stanford University. Analysed by de Veaux, R. D. (1989), Mixtures of linear
    regressions, *Computational Statistics & Data Analysis* 8, 227-245, and Viele, K.
    and Tong, B. (2002), Modeling with mixtures of linear regressions, *Statistics and
    Computing* 12, 315-330. The CSV file was written from the R package mixtools
    2.0.0 (``data(tonedata)``; the data set comes from the R package fpc by C.
    Hennig). Licence: mixtools is distributed under the GPL (>= 2).

    Examples
    --------
    >>> from moestats import GaussianMoE
    >>> from moestats.datasets import load_tonedata
    >>> data = load_tonedata()
    >>> data.frame.shape, data.feature_names, data.target_name
    ((150, 2), ['stretchratio'], 'tuned')
    >>> est = GaussianMoE(2, random_state=0).fit(data.data, data.target)
    >>> est.converged_, round(est.log_likelihood_, 2)
    (True, 142.85)
    """
    return _load("tonedata", return_X_y)


def load_faithful(*, return_X_y=False):
    """Load the Old Faithful geyser data: 272 rows, ``waiting`` on ``eruptions``.

    Eruption time (``eruptions``, minutes) and waiting time to the next eruption
    (``waiting``, minutes) of the Old Faithful geyser in Yellowstone National Park.
    Short and long eruptions form two regimes, each with its own line: a two-expert
    mixture of experts whose gate splits the eruption times.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (DataFrame, 272 x 1: ``eruptions``), ``target`` (Series
        ``waiting``), ``frame``, ``feature_names``, ``target_name``, ``DESCR``,
        ``source``, ``licence`` and ``name``.
    (X, y) : tuple of DataFrame and Series
        With ``return_X_y=True``.

    Notes
    -----
    Source: Härdle, W. (1991), *Smoothing Techniques with Implementation in S*,
    Springer; see also Azzalini, A. and Bowman, A. W. (1990), A look at some data on
    the Old Faithful geyser, *Applied Statistics* 39, 357-365. The CSV file was
    written from R's base package datasets (R 4.2.2, ``faithful``). Licence: R and its
    datasets package are distributed under the GPL-2 | GPL-3. The eruption times are
    heavily rounded (many multiples of 5 seconds).

    Examples
    --------
    >>> from moestats.datasets import load_faithful
    >>> X, y = load_faithful(return_X_y=True)
    >>> X.shape, float(y.min()), float(y.max())
    ((272, 1), 43.0, 96.0)
    """
    return _load("faithful", return_X_y)


def load_mcycle(*, return_X_y=False):
    """Load the simulated motorcycle accident data: 133 rows, ``accel`` on ``times``.

    Head acceleration (``accel``, in g) against time after impact (``times``, in
    milliseconds) in a simulated motorcycle accident used to test crash helmets: flat
    and quiet before about 14 ms, then a strong deceleration and a rebound with a
    noise level that changes over time. Linear experts with a softmax gate on time
    fit it piecewise (k = 2 or 3).

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (DataFrame, 133 x 1: ``times``), ``target`` (Series ``accel``),
        ``frame``, ``feature_names``, ``target_name``, ``DESCR``, ``source``,
        ``licence`` and ``name``.
    (X, y) : tuple of DataFrame and Series
        With ``return_X_y=True``.

    Notes
    -----
    Source: Silverman, B. W. (1985), Some aspects of the spline smoothing approach to
    non-parametric curve fitting, *Journal of the Royal Statistical Society, Series
    B* 47, 1-52; Venables, W. N. and Ripley, B. D. (2002), *Modern Applied Statistics
    with S*, 4th edition, Springer. The CSV file was written from the R package MASS
    7.3-58.2 (``mcycle``). Licence: MASS is distributed under the GPL-2 | GPL-3.

    Examples
    --------
    >>> from moestats.datasets import load_mcycle
    >>> data = load_mcycle()
    >>> data.data.shape, data.target_name
    ((133, 1), 'accel')
    >>> print(data.DESCR.splitlines()[0])
    Simulated motorcycle accident data
    """
    return _load("mcycle", return_X_y)
