"""
Inference: standard errors, bootstrap and prediction
====================================================

After a certified fit, :class:`~moestats.GaussianMoE` gives Wald standard errors from the
exact observed information, an aligned bootstrap (:func:`moestats.bootstrap`), posterior
memberships and the exact predictive distribution. Data: 1,000 draws from the
two-expert softmax model of [D]_.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from moestats import GaussianMoE, bootstrap, get_setup

truth = get_setup("softmax-exact").truth
X, y = truth.sample(1000, np.random.default_rng(0))
est = GaussianMoE(2, random_state=0, backend="numpy").fit(X, y)
print("certified:", est.converged_, " predicted remaining gain:",
      f"{est.certificate_.predicted_gain:.1e} nats")

# %%
# Wald summary
# ------------
# Estimates, standard errors from the inverse observed information, z statistics,
# p-values and 95% intervals (variances: the interval of their logarithm, mapped
# back). The reference expert (the last) has its gate fixed at 0 and gets no row.
summary = est.summary()
print(summary)

# %%
# The sandwich (robust) standard errors, valid under misspecification, are close here
# since the model is correct.
robust = est.summary(cov_type="robust")
print(pd.DataFrame({"observed": summary["std. error"],
                    "robust": robust["std. error"]}).round(4))

# %%
# Bootstrap
# ---------
# 40 nonparametric replicates (use a few hundred in practice), each refitted from the
# fit and relabelled to its labels and gauge before the standard deviations are taken.
# The replicates are reproducible by seed for any ``n_jobs``.
boot = bootstrap(est, X, y, n_boot=40, kind="nonparametric", random_state=0)
boot_summary = boot.summary()
print(boot_summary)

# %%
# Wald and bootstrap standard errors side by side.
compare = pd.DataFrame({"estimate": summary["estimate"],
                        "Wald s.e.": summary["std. error"],
                        "bootstrap s.e.": boot_summary["std. error"]})
print(compare.round(4))

# %%
# Prediction
# ----------
# At each x the fitted model is a two-component Gaussian mixture. Its exact 90%
# predictive interval (from the mixture CDF) is not the mean plus or minus 1.645
# standard deviations: where the gate switches between the experts the predictive
# distribution is bimodal, and the quantiles follow the two regimes.
grid = np.linspace(0, 1, 400)[:, None]
mean, std = est.predict(grid, return_std=True)
interval = est.predict_interval(grid, level=0.9)

fig, ax = plt.subplots(figsize=(8, 5))
ax.scatter(X[:, 0], y, s=4, alpha=0.3, color="grey", label="data")
ax.plot(grid[:, 0], mean, color="black", label="E[y | x]")
ax.fill_between(grid[:, 0], interval[:, 0], interval[:, 1], alpha=0.3,
                label="90% predictive interval (exact)")
ax.plot(grid[:, 0], mean - 1.645 * std, "r--", lw=1, label="mean +/- 1.645 sd")
ax.plot(grid[:, 0], mean + 1.645 * std, "r--", lw=1)
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(loc="upper left")

# %%
# Posterior memberships :math:`\pi_j(x, y)` say which expert produced each point.
resp = est.predict_responsibilities(X, y)
labels = est.predict_labels(X, y)
print("points per expert:", np.bincount(labels),
      " mean max membership:", resp.max(axis=1).mean().round(3))
