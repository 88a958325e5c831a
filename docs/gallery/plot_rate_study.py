"""
A small convergence-rate study
==============================

The papers measure how fast the maximum likelihood estimator approaches the true
mixing measure: for the exact-specified softmax model of [D]_ the Voronoi loss
:math:`D_1` decreases like :math:`n^{-1/2}`. :mod:`moestats.simulation` runs such
studies reproducibly; here a tiny sweep (five sample sizes, 20 replications each,
seconds on one core) with a custom :class:`~moestats.simulation.SweepSpec`, its rate
table, and the figure of :func:`moestats.plotting.plot_rate`.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from moestats.plotting import plot_local_slopes, plot_rate
from moestats.simulation import SweepSpec, rate_table, run_sweep

# %%
# The sweep
# ---------
# The ``softmax-exact`` setup (truth: :math:`k^* = 2` experts on :math:`x \sim U[0, 1]`),
# fitted with ``k = 2`` from the papers' near-truth start. Every task's randomness
# comes from ``(seed, setup, n, replication)`` only, so the results do not depend on
# ``n_jobs``, batching or resuming.
spec = SweepSpec(setup="softmax-exact", fitted=("k2",),
                 sample_sizes=(200, 400, 800, 1600, 3200), replications=20, seed=1,
                 start="near-truth", backend="numpy", density_sample=0)

with tempfile.TemporaryDirectory() as tmp:
    store = run_sweep(spec, Path(tmp) / "sweep.sqlite", n_jobs=1, progress=False)
    results = store.to_frame()
    store.close()

print(results[["n", "replication", "status", "certified", "loss", "log_likelihood"]].head())
print("certified fits:", int(results["certified"].sum()), "of", len(results))

# %%
# Per-n statistics and fitted slopes
# ----------------------------------
# :func:`~moestats.simulation.rate_table` fits the slope of log(loss) on log(n) for the
# mean, the median and the trimmed mean, with stratified-bootstrap intervals.
table = rate_table(results, "softmax-exact", n_boot=200)
print(table[["fitted", "statistic", "slope", "ci_low", "ci_high", "theory_slope"]])

# %%
# The rate figure
# ---------------
# Median (open squares) and mean (dots) per n with their fitted lines and bands, and the
# theory slope :math:`-1/2` (dashed).
fig, ax = plt.subplots(figsize=(7, 5))
plot_rate(results, theory_slope=-0.5, loss_name="D1", n_boot=200, ax=ax,
          title="softmax-exact, k = 2 (20 replications per n)")

# %%
# Local slopes over sliding windows of sample sizes: constant for a power law, drifting
# towards 0 for a rate slower than any polynomial.
fig, ax = plt.subplots(figsize=(7, 4))
plot_local_slopes(results, theory_slope=-0.5, ax=ax, n_boot=100)
