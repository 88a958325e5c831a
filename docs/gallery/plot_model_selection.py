"""
Choosing the number of experts
==============================

:func:`moestats.select_n_experts` chooses ``k`` by an information criterion (AIC, BIC,
ICL; every ``k`` fitted) or by the dendrogram selection criterion (DSC) of Do, Nguyen et
al. [DSC]_ (arXiv:2510.12744): one over-specified fit whose atoms are merged pairwise. Data:
1,000 draws from the two-expert softmax model of [D]_.
"""

import matplotlib.pyplot as plt
import numpy as np

from moestats import get_setup, select_n_experts
from moestats.plotting import plot_dendrogram
from moestats.solvers import THEORY_SPACE

X, y = get_setup("softmax-exact").truth.sample(1000, np.random.default_rng(0))

# %%
# Over-specified fits can push a gate intercept far out (an expert that the gate never
# selects): the fits here are constrained to the parameter space of the theory,
# :data:`moestats.solvers.THEORY_SPACE` (variances in [0.01, 100], every coordinate in
# [-100, 100]), passed through to every :class:`~moestats.GaussianMoE`.
options = dict(n_init=5, random_state=0, space=THEORY_SPACE, backend="numpy")

# %%
# Information criteria
# --------------------
# Each ``k`` from 1 to 4 is fitted with 5 starts and certified; the criteria count
# identifiable parameters only and are on the deviance scale (lower is better).
bic = select_n_experts(X, y, n_experts=range(1, 5), criterion="bic", **options)
print(bic.table[["k", "log_likelihood", "df", "AIC", "BIC", "ICL", "converged"]].round(2))
print("BIC chooses k =", bic.best_n_experts)

# %%
# Dendrogram selection criterion
# ------------------------------
# One fit with K = 4 experts; at each level the two closest atoms (weighted by their
# masses) are merged, and the level minimising
# :math:`\mathrm{DIC}_k = -(h_k + \log(n)\,\ell_k/n)` is chosen.
dsc = select_n_experts(X, y, n_experts=range(1, 5), criterion="dsc", **options)
print(dsc.table.round(3))
print("DSC chooses k =", dsc.best_n_experts)

fig, ax = plt.subplots(figsize=(7, 4))
plot_dendrogram(dsc, ax=ax, log=True)
ax.set_title("merge tree of the k = 4 fit")
