"""Rate fitting for convergence-rate studies: ``loss(n) ~ C n^slope``.

A simulation study produces one loss per (sample size ``n``, replication). The
rate is read off the power-law model

.. math::

    \\log L(n) = \\log C + \\text{slope} \\cdot \\log n ,

fitted by ordinary least squares of ``log(stat_n)`` on ``log n``, where
``stat_n`` is a location statistic (mean, median or trimmed mean) of the losses
observed at ``n``. Occasional optimiser failures (EM stuck in a bad fixed point,
NaN/inf losses) can dominate the mean and swing the slope (the user guide's *Simulations*, rates),
so the median and trimmed mean are offered beside the mean, and failed fits are
excluded from the statistic and *counted*, never silently averaged.

Uncertainty is a stratified percentile bootstrap: the replications are
resampled with replacement within each ``n`` independently, the statistic per
``n`` and the OLS slope are recomputed, and the percentiles of the bootstrap
slopes form the confidence interval. All randomness comes from a
:class:`numpy.random.Generator`; the global NumPy random state is never used.

:func:`local_slopes` fits the same model on sliding windows of consecutive
sample sizes: for a rate slower than any polynomial (e.g. ``1/log n``) the local
slope drifts towards 0 as ``n`` grows, while for a power law it is constant.
With ``n_boot > 0`` every local slope gets a stratified-bootstrap interval (the
same resampling as :func:`fit_rate`), and :func:`last_decade_slope` fits the rate
over the last decade of ``n`` only, so that a plateau is not summarised by one
straight line. :func:`cell_theory_slope` gives the theory slope of a parameter
block of a Voronoi cell of a given size (the user guide's *Simulations*, rates).
"""

from ._common import STATISTICS
from .fit import RateFit, fit_rate, fit_rates
from .local import last_decade_slope, local_slopes
from .theory import cell_theory_slope

__all__ = ["RateFit", "fit_rate", "fit_rates", "local_slopes", "last_decade_slope",
           "cell_theory_slope", "STATISTICS"]
