"""
Real data: tone perception, Old Faithful, motorcycle
====================================================

Three classic data sets of :mod:`moestats.datasets`, fitted with a softmax-gated
mixture of linear experts. With one covariate feeding the gate and the experts this is
exactly the model of R's flexmix with a multinomial concomitant model,
``flexmix(y ~ x, k, concomitant = FLXPmultinom(~ x))``, and, for two experts, of
mixtools' ``hmeEM``. The log-likelihoods R reached on the same data
(``benchmarks/bench_real_data.py``: flexmix's best of 10 starts, ``stepFlexmix(nrep =
10)``) are printed beside moestats'.
"""

import matplotlib.pyplot as plt
import numpy as np

from moestats import GaussianMoE, MoEParams
from moestats.datasets import load_faithful, load_mcycle, load_tonedata
from moestats.plotting import plot_fit, plot_fit_1d

#: flexmix 2.3-18, stepFlexmix(nrep = 10), minprior = 0, tolerance 1e-10
FLEXMIX = {("tonedata", 2): 142.838, ("faithful", 2): -851.319,
           ("mcycle", 2): -614.566, ("mcycle", 3): -580.526}

# %%
# Fits
# ----
# Default settings: 10 different starts, the best 3 run to a certified maximum.
cases = [("tonedata", load_tonedata, 2), ("faithful", load_faithful, 2),
         ("mcycle", load_mcycle, 3)]
fits = {}
for name, loader, k in cases:
    data = loader()
    est = GaussianMoE(k, random_state=0, backend="numpy").fit(data.data, data.target)
    fits[name] = (data, est)
    print(f"{name:9s} k={k}: log-likelihood {est.log_likelihood_:9.3f} "
          f"(flexmix {FLEXMIX[name, k]:9.3f}), certified {est.converged_}")

# %%
# The fitted experts and gates
# ----------------------------
fig = plt.figure(figsize=(15, 10), layout="constrained")
subfigs = fig.subfigures(2, 2).ravel()
for subfig, (name, (data, est)) in zip(subfigs, fits.items()):
    top, bottom = subfig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    plot_fit_1d(est.gate_, est.params_, data.data.to_numpy(), data.target.to_numpy(),
                ax=(top, bottom))
    top.set_title(f"{name}: {data.target_name} on {data.feature_names[0]}, "
                  f"k = {est.n_experts}")
    bottom.set_xlabel(data.feature_names[0])
subfigs[-1].set_visible(False)

# %%
# The tone data: two lines
# ------------------------
# A musician tuned a tone to the octave above a fundamental whose overtones were
# stretched by ``stretchratio``. In some trials the musician followed the fundamental
# (``tuned`` near 2, slope near 0), in others the stretched overtones (``tuned`` near
# ``stretchratio``, slope near 1): de Veaux's (1989) classic two-line mixture.
data, est = fits["tonedata"]
print(est.summary())

# %%
# A second maximum
# ----------------
# The likelihood of a mixture of regressions has several maxima. One of ten random
# starts of mixtools' ``hmeEM`` reached a higher one (145.650 nats against 142.848): an
# expert with a standard deviation of 0.0045 through the 58 trials where ``tuned``
# equals ``stretchratio`` to within 0.01, and a broad expert for the rest. moestats
# certifies it when started there; its own starts all reach the classic solution.
start = MoEParams(gate_coef=[[0.2559], [0.0]], gate_intercept=[-0.0319, 0.0],
                  expert_coef=[[0.2176], [0.9989]], expert_intercept=[1.5609, 0.0032],
                  expert_var=[0.2172 ** 2, 0.00454 ** 2])
other = GaussianMoE(2, init=start, backend="numpy").fit(data.data, data.target)
print(f"log-likelihood {other.log_likelihood_:.3f}, certified {other.converged_}, "
      f"expert standard deviations {np.sqrt(other.expert_var_).round(4)}")

fig = plt.figure(figsize=(15, 5), layout="constrained")
for subfig, (title, model) in zip(fig.subfigures(1, 2), [("classic maximum", est),
                                                        ("tiny-variance maximum", other)]):
    top, bottom = subfig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    plot_fit_1d(model.gate_, model.params_, data.data.to_numpy(),
                data.target.to_numpy(), ax=(top, bottom))
    top.set_title(f"{title}: log-likelihood {model.log_likelihood_:.2f}")

# %%
# Prediction on the geyser data
# -----------------------------
# The waiting time after an eruption of 3 minutes, between the two regimes: the
# predictive distribution is a mixture, and its 90% interval comes from its exact CDF.
data, est = fits["faithful"]
new = data.data.iloc[:0].copy()
new.loc[0] = [3.0]
print("gate weights:", est.predict_proba(new).round(3),
      " 90% interval:", est.predict_interval(new, level=0.9).round(1))

# %%
# :func:`~moestats.plotting.plot_fit` draws the fitted estimator over its data: each
# eruption in the colour of its most probable expert (faint where the two share it), each
# expert's line solid where its gate weight is at least 0.05, the predictive mean and the
# exact 90% band; the gate weights below. Between 3 and 3.7 minutes both experts carry
# weight and the band covers both lines.
fig = plt.figure(figsize=(9.5, 6.4), layout="constrained")
plot_fit(est, data.data, data.target, level=0.9, show_gate=True,
         ax=fig.subplots(2, 1, sharex=True, height_ratios=[2, 1]))
