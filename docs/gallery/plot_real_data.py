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
import pandas as pd

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
# Constant weights: the mixture of linear regressions
# ---------------------------------------------------
# De Veaux's model for the tone data has weights that do not depend on
# ``stretchratio``: ``gate="constant"`` fits that mixture of linear regressions (mixtools'
# ``regmixEM``, flexmix's ``FLXMRglm`` without a concomitant model), and
# ``shared_variance=True`` makes the two expert variances equal (``regmixEM(...,
# arbvar = FALSE)``). The three models are nested: equal variances within constant
# weights within the softmax gate. BIC (:meth:`~moestats.GaussianMoE.bic`, lower is
# better) counts 6, 7 and 8 free parameters.
data, est = fits["tonedata"]

#: mixtools 2.0.0: best of 10 regmixEM(y, x, k = 2, epsilon = 1e-8, maxit = 2000) runs,
#: arbvar = TRUE / FALSE (``benchmarks/bench_real_data.py --tables constant``); for the
#: softmax gate, hmeEM(y, x, k = 2) from 9 of 10 runs (the tenth: the tiny-variance
#: maximum above; ``benchmarks/bench_real_data.py``)
MIXTOOLS = {"constant weights": 141.198, "constant weights, equal variances": 107.257,
            "softmax gate": 142.848}
models = {
    "constant weights": GaussianMoE(2, gate="constant", random_state=0, backend="numpy"),
    "constant weights, equal variances": GaussianMoE(
        2, gate="constant", shared_variance=True, random_state=0, backend="numpy"),
}
for model in models.values():
    model.fit(data.data, data.target)
models["softmax gate"] = est
table = pd.DataFrame({
    "log-likelihood": [m.log_likelihood_ for m in models.values()],
    "parameters": [m.n_free_parameters(1) for m in models.values()],
    "BIC": [m.bic(data.data, data.target) for m in models.values()],
    "certified": [m.converged_ for m in models.values()],
    "mixtools": [MIXTOOLS[name] for name in models],
}, index=list(models))
print(table.round(3).to_string())

# %%
# The gate's slope adds 1.65 nats for one parameter, less than BIC's price of
# :math:`\log(150)/2 = 2.5` nats, so BIC prefers constant weights, narrowly. Equal
# variances cost 34 nats: the trials in which the musician followed the fundamental
# (slope near 0) scatter about three times less than those in which the musician followed
# the stretched overtones (slope near 1).
print("expert standard deviations, constant weights:",
      np.sqrt(models["constant weights"].expert_var_).round(3),
      " slopes:", models["constant weights"].expert_coef_.ravel().round(3))

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
