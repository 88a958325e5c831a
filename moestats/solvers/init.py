"""Initialisations for the solvers.

- :func:`kmeans_init`: k-means on the standardised pairs :math:`(x, y)`, then
  per-cluster least squares for the experts and a gate fitted to softened
  cluster labels.
- :func:`random_init`: random (Dirichlet) responsibilities, then the same M-step.
- The theory simulations' "near the truth" start lives in
  :func:`moestats.sampling.near_truth_init`.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from ..experts import expert_m_step
from ..gates import SoftmaxGate
from ..likelihood import log_expert_density
from ..params import MoEParams
from .gate_step import gate_step

__all__ = ["kmeans_init", "random_init", "init_from_responsibilities"]

#: label smoothing of hard cluster labels, so that the gate fit stays finite
LABEL_SMOOTHING = 0.2


def init_from_responsibilities(gate, X, y, resp, var_floor, temperature=1.0):
    """Parameters from one M-step on given responsibilities.

    The experts get weighted least squares; the gate starts at 0 (all experts equal)
    and takes one gate step. A top-K gate starts instead from a softmax gate fitted
    to the same responsibilities, since at zero slopes its selection is all ties.
    """
    n, d = X.shape
    k = resp.shape[1]
    var0 = np.full(k, max(float(np.var(y)), var_floor))
    coef, intercept, var, _ = expert_m_step(
        X, y, resp, np.zeros((k, d)), np.full(k, float(np.mean(y))), var0, var_floor)
    params = MoEParams(np.zeros((k, d)), np.zeros(k), coef, intercept, var, temperature)
    if gate.ecm_gate_step:
        params = gate_step(SoftmaxGate(), params, X, resp, max_iter=10)
        if not gate.fits_intercept:
            params = params.replace(gate_intercept=np.zeros(k))
    log_expert = log_expert_density(params, X, y) if gate.ecm_gate_step else None
    return gate_step(gate, params, X, resp, log_expert, max_iter=10)


def _smoothed_one_hot(labels, k):
    resp = np.full((labels.size, k), LABEL_SMOOTHING / k)
    resp[np.arange(labels.size), labels] += 1.0 - LABEL_SMOOTHING
    return resp


def kmeans_init(gate, X, y, n_experts, rng, var_floor, temperature=1.0):
    """k-means on standardised :math:`(x, y)`, then :func:`init_from_responsibilities`.

    Parameters
    ----------
    rng : numpy.random.Generator
        Seeds k-means.
    """
    Z = np.column_stack([X, y])
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (Z - Z.mean(axis=0)) / scale
    seed = int(rng.integers(np.iinfo(np.int32).max))
    labels = KMeans(n_clusters=n_experts, n_init=1, random_state=seed).fit_predict(Z)
    return init_from_responsibilities(gate, X, y, _smoothed_one_hot(labels, n_experts),
                                      var_floor, temperature)


def random_init(gate, X, y, n_experts, rng, var_floor, temperature=1.0):
    """Random responsibilities :math:`r_{i\\cdot} \\sim \\mathrm{Dirichlet}(1,\\dots,1)`,
    then :func:`init_from_responsibilities`."""
    resp = rng.dirichlet(np.ones(n_experts), size=X.shape[0])
    return init_from_responsibilities(gate, X, y, resp, var_floor, temperature)
