"""Information criteria of a fitted mixture of experts: df, AIC, BIC and ICL.

With :math:`\\hat\\ell = \\sum_i \\log p_{\\hat G}(y_i \\mid x_i)` the maximised
log-likelihood of ``n`` samples and ``df`` the number of *identifiable* free
parameters (:func:`n_identifiable_params`),

.. math::

    \\mathrm{AIC} = -2\\hat\\ell + 2\\,\\mathrm{df}, \\qquad
    \\mathrm{BIC} = -2\\hat\\ell + \\mathrm{df}\\,\\log n, \\qquad
    \\mathrm{ICL} = \\mathrm{BIC} + 2\\,\\mathrm{EN}, \\qquad
    \\mathrm{EN} = -\\sum_{i=1}^n\\sum_{j=1}^k r_{ij}\\log r_{ij},

with :math:`r_{ij}` the posterior responsibilities of the fitted model
(:func:`moestats.likelihood.e_step`) and :math:`0\\log 0 = 0`. **Sign convention:
all three are on the deviance scale (:math:`-2\\hat\\ell` plus a penalty), so lower
is better**, and :math:`\\mathrm{ICL} \\ge \\mathrm{BIC}` always (EN ≥ 0). This is
flexmix's and mclust-with-the-sign-flipped convention (Biernacki, Celeux and
Govaert 2000 write ICL as BIC plus twice the entropy on this scale).
"""

from __future__ import annotations

import numpy as np

from ..gates import Gate, TemperatureGate, TopKGate
from ..likelihood import e_step

__all__ = ["n_identifiable_params", "posterior_entropy", "information_criteria"]


def n_identifiable_params(gate: Gate, n_experts: int, n_features: int, space=None) -> int:
    """Number of identifiable free parameters of a ``k``-expert model (its df).

    .. math::

        \\mathrm{df} = \\underbrace{k\\,(d + 2)}_{a_j,\\ b_j,\\ \\nu_j}
            + \\mathrm{df}_{\\text{gate}},

    where :math:`\\mathrm{df}_{\\text{gate}}` is ``gate.n_free_params(k, d)`` (the
    reference expert's gate parameters fixed at 0; no intercepts for top-1; one
    :math:`\\log\\tau` when the temperature is learned) less the directions the
    density cannot see:

    * **learned temperature with the identity activation** (``TemperatureGate``):
      :math:`(\\beta_1, \\tau) \\to (c\\beta_1, c\\tau)` leaves the density unchanged,
      so τ adds nothing (−1; the user guide's *The model and its gates*);
    * **top-1** (``TopKGate(1)``), ``k ≥ 2``: the density depends on the gate only
      through the partition :math:`x \\mapsto \\arg\\max_j \\beta_{1j}^\\top x`, which is
      invariant to multiplying every slope by :math:`c > 0`, so the common scale of
      the slopes is not identifiable (−1; the user guide's *The model and its gates*, "Top-1 identifiability");
    * ``k = 1``: the gate is the constant 1, so it has no parameter at all
      (a learned τ included).

    A user-supplied activation callable is taken as non-linear (its τ counted). A
    structured ``space`` (:mod:`moestats.structure`: gate or expert covariates, equal
    variances) removes its pinned slopes and tied variances.

    Parameters
    ----------
    gate : Gate
    n_experts : int
        ``k >= 1``.
    n_features : int
        ``d >= 1``.
    space : ParameterSpace, optional
        The fit's parameter space (its structure only matters).

    Returns
    -------
    int

    Examples
    --------
    >>> from moestats import SoftmaxGate, TemperatureGate, TopKGate
    >>> n_identifiable_params(SoftmaxGate(), 3, 2)   # gate 2*2 + 2, experts 3*(2+2)
    18
    >>> n_identifiable_params(TopKGate(1), 3, 2)     # no intercepts, no slope scale
    15
    >>> n_identifiable_params(TemperatureGate(learn_temperature=True), 3, 2)
    18
    """
    k, d = int(n_experts), int(n_features)
    if k < 1 or d < 0:
        raise ValueError(f"n_experts must be >= 1 and n_features >= 0, got {k} and {d}")
    from ..structure import n_pinned
    pinned = n_pinned(space, k, d)
    experts = k * (d + 2)
    if k == 1:
        return experts - pinned
    gate_df = gate.n_free_params(k, d)
    if gate.learns_temperature and isinstance(gate, TemperatureGate):
        gate_df -= 1
    if isinstance(gate, TopKGate) and gate.k_active == 1 and (k - 1) * d >= 1:
        gate_df -= 1
    return experts + gate_df - pinned


def posterior_entropy(gate: Gate, params, X, y) -> float:
    """Entropy of the posterior memberships, :math:`-\\sum_{ij} r_{ij}\\log r_{ij}` (nats).

    Parameters
    ----------
    gate : Gate
    params : MoEParams
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)

    Returns
    -------
    float
        ``>= 0``; 0 when every sample belongs to one expert with certainty.
    """
    return _entropy(e_step(gate, params, X, y)[0])


def _entropy(resp):
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(resp > 0, resp * np.log(resp), 0.0)
    return float(max(0.0, -np.sum(terms)))


def information_criteria(gate: Gate, params, X, y, space=None) -> dict:
    """Log-likelihood, df, AIC, BIC, posterior entropy and ICL of one model on data.

    Parameters
    ----------
    gate : Gate
    params : MoEParams
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    space : ParameterSpace, optional
        The fit's space: its structure lowers the df (:func:`n_identifiable_params`).

    Returns
    -------
    dict
        ``log_likelihood``, ``df``, ``AIC``, ``BIC``, ``entropy``, ``ICL`` (the
        criteria on the deviance scale: lower is better).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(500, np.random.default_rng(0))
    >>> ic = information_criteria(truth.gate, truth.params, X, y)
    >>> ic["df"], bool(ic["ICL"] >= ic["BIC"] > ic["AIC"])   # df = 2*(1+2) + (1+1)
    (8, True)
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n = X.shape[0]
    resp, log_p = e_step(gate, params, X, y)
    ll = float(np.sum(log_p))
    entropy = _entropy(resp)
    df = n_identifiable_params(gate, params.n_experts, params.n_features, space)
    bic = -2.0 * ll + df * np.log(n)
    return {"log_likelihood": ll, "df": df, "AIC": -2.0 * ll + 2.0 * df, "BIC": bic,
            "entropy": entropy, "ICL": bic + 2.0 * entropy}

