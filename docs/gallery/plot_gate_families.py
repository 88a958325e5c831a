"""
Fitting the four gate families
==============================

Each gate family of :mod:`moestats.gates` has a true model in :mod:`moestats.setups`
(the setups of the papers' convergence-rate studies). Here we sample 1,000 points from
each, fit :class:`~moestats.GaussianMoE` with the matching gate, and draw the fitted
experts and gate weights (solid) over the truth (dashed) with
:func:`moestats.plotting.plot_fit_1d`.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from moestats import (ActivationGate, GaussianMoE, TemperatureGate,
                      TemperatureIdentifiabilityWarning, TopKGate)
from moestats import get_setup
from moestats.plotting import plot_fit_1d

rng = np.random.default_rng(0)

# %%
# The four families
# -----------------
# The softmax gate of [D]_ (logits :math:`\beta_{1j} x + \beta_{0j}`), the top-1 gate of
# [T]_ (only the expert with the largest :math:`\beta_{1j} x` is active), the
# temperature gate of [S]_ (logits :math:`\beta_{1j} x / \tau + \beta_{0j}`, here with a
# learned :math:`\tau`) and the tanh activation gate of [S]_ (logits
# :math:`\tanh(\beta_{1j} x) / \tau + \beta_{0j}`).
families = {
    "softmax": ("softmax-exact", "softmax"),
    "top-1": ("topk-exact", TopKGate(1)),
    "temperature (learned tau)": ("temperature", TemperatureGate(1.0, learn_temperature=True)),
    "tanh activation (learned tau)": ("activation",
                                      ActivationGate("tanh", learn_temperature=True)),
}

fits = {}
for name, (setup_id, gate) in families.items():
    truth = get_setup(setup_id).truth
    X, y = truth.sample(1000, rng)
    with warnings.catch_warnings():
        # learning tau with the identity activation: only beta_1 / tau is identifiable
        warnings.simplefilter("ignore", TemperatureIdentifiabilityWarning)
        est = GaussianMoE(2, gate=gate, n_init=5, random_state=0, backend="numpy").fit(X, y)
    fits[name] = (truth, X, y, est)
    print(f"{name:30s} certified: {est.converged_}, "
          f"log-likelihood {est.log_likelihood_:9.2f}, passes {est.n_passes_}")

# %%
# Fitted and true models
# ----------------------
# Top row: the data, each expert's line and the conditional mean; bottom row: the gate
# weights :math:`w_j(x)`. Labels are arbitrary, so colours may be swapped against the
# truth.
fig = plt.figure(figsize=(15, 10), layout="constrained")
for subfig, (name, (truth, X, y, est)) in zip(fig.subfigures(2, 2).ravel(), fits.items()):
    top, bottom = subfig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    plot_fit_1d(est.gate_, est.params_, X, y, true_gate=truth.gate,
                true_params=truth.params, ax=(top, bottom))
    top.set_title(name)

# %%
# Identifiable summaries
# ----------------------
# The temperature gate's :math:`\beta_1` and :math:`\tau` are not identifiable
# separately (:math:`(\beta_1, \tau) \to (c\beta_1, c\tau)` leaves the density
# unchanged); their ratio is.
truth, X, y, est = fits["temperature (learned tau)"]
print("fitted beta_1 / tau:", est.gate_slope_over_temperature_.ravel().round(2))
print("true   beta_1 / tau:",
      (truth.params.gate_coef / truth.params.temperature).ravel().round(2))

# %%
# The top-1 gate fixes :math:`\beta_0 = 0`, and only the sign pattern of the slopes
# matters (a common positive scale leaves the partition unchanged): the fitted
# boundary is where the selected expert switches.
truth, X, y, est = fits["top-1"]
print("fitted top-1 gate slopes:", est.gate_coef_.ravel().round(2),
      "  intercepts:", est.gate_intercept_)
