"""True models, covariate laws and the near-truth initialisation of the theory papers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gates import Gate, make_gate
from .params import MoEParams

__all__ = ["UniformDesign", "GridDesign", "TrueModel", "sample_conditional",
           "near_truth_init"]


@dataclass(frozen=True)
class UniformDesign:
    """I.i.d. covariates :math:`X_i \\sim U[\\mathrm{low}, \\mathrm{high}]^d` (the theory's design)."""

    low: float = 0.0
    high: float = 1.0
    n_features: int = 1

    def sample(self, n, rng):
        return rng.uniform(self.low, self.high, size=(n, self.n_features))


@dataclass(frozen=True)
class GridDesign:
    """Fixed design :math:`X = \\mathrm{linspace}(\\mathrm{low}, \\mathrm{high}, n)` (the authors' code), d = 1."""

    low: float = 0.0
    high: float = 1.0
    n_features: int = 1

    def sample(self, n, rng=None):
        if self.n_features != 1:
            raise ValueError(f"GridDesign is one-dimensional, got n_features = {self.n_features}")
        return np.linspace(self.low, self.high, n)[:, None]


def sample_conditional(gate, params, X, rng):
    """Draw :math:`Y_i \\mid X_i \\sim p_G(\\cdot \\mid X_i)`.

    The expert label :math:`z_i` is drawn from the gate weights :math:`w(X_i)` by
    inverting the cumulative weights at a uniform variate, then
    :math:`Y_i = a_{z_i}^\\top X_i + b_{z_i} + \\sqrt{\\nu_{z_i}}\\,\\varepsilon_i`.

    Returns
    -------
    y : ndarray (n,)
    labels : ndarray of int (n,)
    """
    w = gate.weights(params, X)
    cum = np.cumsum(w, axis=1)
    u = rng.uniform(size=(X.shape[0], 1)) * cum[:, -1:]
    labels = np.minimum((u > cum).sum(axis=1), params.n_experts - 1)
    mean = np.einsum("id,id->i", X, params.expert_coef[labels]) + params.expert_intercept[labels]
    y = mean + np.sqrt(params.expert_var[labels]) * rng.standard_normal(X.shape[0])
    return y, labels


@dataclass(frozen=True)
class TrueModel:
    """A true mixture of experts with its covariate law.

    Parameters
    ----------
    params : MoEParams
    gate : Gate or str
    x_law : UniformDesign, GridDesign or any object with ``sample(n, rng) -> (n, d)``
    """

    params: MoEParams
    gate: Gate
    x_law: object = UniformDesign()

    def __post_init__(self):
        object.__setattr__(self, "gate", make_gate(self.gate))
        self.gate.validate(self.params.n_experts)
        if getattr(self.x_law, "n_features", self.params.n_features) != self.params.n_features:
            raise ValueError(
                f"x_law has n_features = {self.x_law.n_features}, the parameters "
                f"d = {self.params.n_features}")

    def sample(self, n, rng):
        """Draw ``n`` pairs: ``X`` (n, d) from ``x_law`` and ``y`` (n,) from the model.

        Parameters
        ----------
        n : int
        rng : numpy.random.Generator
        """
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        X = np.asarray(self.x_law.sample(int(n), rng), dtype=float)
        y, _ = sample_conditional(self.gate, self.params, X, rng)
        return X, y


def near_truth_init(true_params, n_experts, n, rng, *, fit_intercept=True,
                    gate_sd=0.005, expert_sd=0.05, var_sd=0.005,
                    gate_exponent=-0.083, expert_exponent=-0.083, var_exponent=-0.25,
                    split_weights=True, perturb_temperature=False):
    """The theory simulations' start "near the truth" (the user guide's *Solvers and certificates*).

    Fitted experts are assigned to true experts at random so that every true expert
    gets at least one and the (last) reference expert maps to the reference; then,
    independently per coordinate,

    - gate :math:`\\leftarrow` truth :math:`+ \\mathcal N(0, (\\mathrm{gate\\_sd}\\,
      n^{\\mathrm{gate\\_exponent}})^2)` (the fitted reference stays at 0),
    - expert slopes and intercepts :math:`\\leftarrow` truth :math:`+ \\mathcal N(0,
      (\\mathrm{expert\\_sd}\\, n^{\\mathrm{expert\\_exponent}})^2)`,
    - variances :math:`\\leftarrow` truth :math:`+ |\\mathcal N(0, (\\mathrm{var\\_sd}\\,
      n^{\\mathrm{var\\_exponent}})^2)|` (the authors' code had this draw's variance wrong).

    With ``split_weights`` an atom whose true expert receives :math:`m` fitted atoms
    starts at :math:`\\beta_{0j} - \\log m`, so that the start's cell weights sum to
    :math:`e^{\\beta^*_{0j}}`. Setting the exponents to 0 gives a start whose noise
    does not shrink with ``n`` (needed where the data cannot identify a direction,
    the user guide's *Simulations*, setups). With ``perturb_temperature`` (for a learned temperature)
    the temperature starts at the truth times
    :math:`\\exp(\\mathcal N(0, (\\mathrm{gate\\_sd}\\, n^{\\mathrm{gate\\_exponent}})^2))`;
    otherwise at the truth.

    Returns
    -------
    init : MoEParams
    assignment : ndarray of int (n_experts,)
        The true expert each fitted expert started from.
    """
    k_true = true_params.n_experts
    if n_experts < k_true:
        raise ValueError(f"n_experts = {n_experts} is below the true number of experts {k_true}")
    others = rng.permutation(n_experts - 1)
    assignment = np.empty(n_experts, dtype=int)
    assignment[-1] = k_true - 1
    assignment[others[: k_true - 1]] = np.arange(k_true - 1)
    assignment[others[k_true - 1:]] = rng.integers(0, k_true, size=n_experts - k_true)
    d = true_params.n_features
    g_sd = gate_sd * n ** gate_exponent
    e_sd = expert_sd * n ** expert_exponent
    v_sd = var_sd * n ** var_exponent
    gate_coef = true_params.gate_coef[assignment] + g_sd * rng.standard_normal((n_experts, d))
    gate_intercept = true_params.gate_intercept[assignment] + g_sd * rng.standard_normal(n_experts)
    if split_weights:
        counts = np.bincount(assignment, minlength=k_true)
        gate_intercept = gate_intercept - np.log(counts[assignment])
    gate_coef[-1] = 0.0
    gate_intercept = gate_intercept - gate_intercept[-1]
    if not fit_intercept:
        gate_intercept = np.zeros(n_experts)
    coef = true_params.expert_coef[assignment] + e_sd * rng.standard_normal((n_experts, d))
    intercept = true_params.expert_intercept[assignment] + e_sd * rng.standard_normal(n_experts)
    var = true_params.expert_var[assignment] + np.abs(v_sd * rng.standard_normal(n_experts))
    tau = true_params.temperature
    if perturb_temperature:
        tau *= float(np.exp(g_sd * rng.standard_normal()))
    init = MoEParams(gate_coef, gate_intercept, coef, intercept, var, tau)
    return init, assignment
