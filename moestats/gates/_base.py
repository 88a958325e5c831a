"""The shared machinery of the gate families.

Every family computes its logits in three stages,

.. math::

    z_{ij} = \\beta_{1j}^\\top x_i, \\qquad
    s_{ij} = \\frac{\\sigma(z_{ij})}{\\tau} + \\beta_{0j}, \\qquad
    s_{ij} \\leftarrow -\\infty \\text{ if } j \\notin S(x_i),

with the activation :math:`\\sigma` (identity unless the family says otherwise),
the temperature :math:`\\tau` (1 for families without one) and the support
:math:`S(x)` (all experts unless the family is sparse). The gate weights are
:math:`w(x) = \\operatorname{softmax}(s(x))`, computed in log space.

The one derivative every solver needs is the vector-Jacobian product (VJP)
of a scalar objective :math:`F` through the logits: given
:math:`G_{ij} = \\partial F / \\partial s_{ij}`,

.. math::

    \\frac{\\partial F}{\\partial \\beta_{0j}} = \\sum_i G_{ij}, \\qquad
    \\frac{\\partial F}{\\partial \\beta_{1j}} = \\sum_i G_{ij}\\,
        \\frac{\\sigma'(z_{ij})}{\\tau}\\, x_i, \\qquad
    \\frac{\\partial F}{\\partial \\log\\tau} = -\\sum_{ij} G_{ij}\\,
        \\frac{\\sigma(z_{ij})}{\\tau}.

For the EM gate objective :math:`Q(\\beta) = \\sum_{ij} r_{ij} \\log w_{ij}`,
:math:`G_{ij} = r_{ij} - (\\sum_l r_{il})\\, w_{ij}`; for the observed
log-likelihood, by Fisher's identity, the same formula holds with :math:`r` the
posterior responsibilities at the current parameters. Top-K supports are
piecewise constant in :math:`\\beta_1`, so these are the exact gradients away
from selection ties.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ..backends.numpy_kernels import row_logsumexp

from ..params import MoEParams

__all__ = ["Gate", "GateGradient", "TemperatureIdentifiabilityWarning"]


class TemperatureIdentifiabilityWarning(UserWarning):
    """Learning the temperature of a gate whose logits are linear in ``beta_1``.

    With the identity activation, :math:`(\\beta_1, \\tau) \\mapsto (c\\beta_1, c\\tau)`
    leaves every logit :math:`\\beta_1^\\top x / \\tau + \\beta_0` unchanged, so
    the density satisfies :math:`\\tau\\,\\partial_\\tau u = -\\beta_1^\\top
    \\partial_{\\beta_1} u`: :math:`\\beta_1` and :math:`\\tau` are not separately
    identifiable (no polynomial rate), while :math:`\\beta_1/\\tau` is.
    """


class GateGradient:
    """Gradient of a scalar with respect to a gate's parameters.

    Attributes
    ----------
    gate_coef : ndarray of shape (k, d)
    gate_intercept : ndarray of shape (k,)
    log_temperature : float
        Derivative with respect to :math:`\\log\\tau` (0 for families without a
        temperature).
    """

    __slots__ = ("gate_coef", "gate_intercept", "log_temperature")

    def __init__(self, gate_coef, gate_intercept, log_temperature):
        self.gate_coef = gate_coef
        self.gate_intercept = gate_intercept
        self.log_temperature = log_temperature


class Gate(BaseEstimator):
    """Base class of the gate families (hyperparameters only, like GP kernels).

    Subclasses set class attributes and override :meth:`_activate` and
    :meth:`_support`. Instances hold hyperparameters only; the parameters live
    in :class:`~moestats.params.MoEParams`.
    """

    #: whether the family has a temperature (``tau``) at all
    has_temperature = False
    #: whether the EM gate step may use the exact Newton step of the softmax family
    newton = False
    #: whether the EM gate step maximises the observed likelihood (ECM) instead of Q
    ecm_gate_step = False
    #: whether shifting x by a constant can be absorbed in the gate intercepts
    #: (logits affine in x with every intercept free), so the data may be centred
    shift_invariant = False

    # ------------------------------------------------------------ family hooks
    def _activate(self, z):
        """Activation :math:`\\sigma(z)` and its derivative :math:`\\sigma'(z)`."""
        return z, None  # identity; None means derivative 1

    def _activate2(self, z):
        """:math:`\\sigma(z), \\sigma'(z), \\sigma''(z)`; ``None`` for 1 and 0 (identity)."""
        h, dh = self._activate(z)
        return h, dh, None

    def _support(self, z, s):
        """Boolean mask of the selected experts, or ``None`` for all experts."""
        return None

    @property
    def learns_temperature(self) -> bool:
        """Whether ``tau`` is a free parameter of the fit."""
        return bool(self.has_temperature and getattr(self, "learn_temperature", False))

    @property
    def fits_intercept(self) -> bool:
        """Whether the gate intercepts ``beta_0`` enter the density (not for top-1)."""
        return True

    def validate(self, n_experts: int) -> None:
        """Check the hyperparameters against a model with ``n_experts`` experts.

        Raises ``ValueError`` naming the offending value; may warn.
        """
        if self.has_temperature:
            tau = self.temperature
            if (isinstance(tau, (bool, np.bool_))
                    or not isinstance(tau, (int, float, np.floating, np.integer))
                    or not np.isfinite(tau) or tau <= 0):
                raise ValueError(
                    f"{type(self).__name__}: temperature must be a finite number > 0, got {tau!r}"
                )
            # a tiny temperature makes every logit overflow: the fit would end in
            # non-finite parameters without naming the cause
            if tau < 1e-100:
                raise ValueError(f"{type(self).__name__}: temperature {tau!r} is too small "
                                 "(logits beta_1^T x / tau overflow); use tau >= 1e-100")
            learn = getattr(self, "learn_temperature", False)
            if not isinstance(learn, (bool, np.bool_)):
                raise ValueError(f"{type(self).__name__}: learn_temperature must be True or "
                                 f"False, got {learn!r}")

    def initial_temperature(self) -> float:
        """The temperature a fit starts from (and keeps, when it is not learned)."""
        return float(self.temperature) if self.has_temperature else 1.0

    # ---------------------------------------------------------------- forward
    def _forward(self, params: MoEParams, X):
        z = X @ params.gate_coef.T
        h, dh = self._activate(z)
        tau = params.temperature if self.has_temperature else 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            s = h / tau + params.gate_intercept
        mask = self._support(z, s)
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        return z, h, dh, tau, s, mask

    def logits(self, params: MoEParams, X) -> np.ndarray:
        """Logits :math:`s(x)`, shape (n, k); ``-inf`` off a sparse support."""
        return self._forward(params, X)[4]

    def log_weights(self, params: MoEParams, X) -> np.ndarray:
        """Log gate weights :math:`\\log w_j(x) = s_j - \\log\\sum_l e^{s_l}`, shape (n, k)."""
        s = self.logits(params, X)
        return s - row_logsumexp(s)[:, None]

    def weights(self, params: MoEParams, X) -> np.ndarray:
        """Gate weights :math:`w_j(x)`, shape (n, k), rows summing to 1."""
        return np.exp(self.log_weights(params, X))

    # --------------------------------------------------------------- backward
    def vjp(self, params: MoEParams, X, logit_grad) -> GateGradient:
        """Pull a gradient with respect to the logits back to the gate parameters.

        Parameters
        ----------
        params : MoEParams
        X : ndarray of shape (n, d)
        logit_grad : ndarray of shape (n, k)
            :math:`G_{ij} = \\partial F / \\partial s_{ij}`; entries off the support
            are ignored (treated as 0).

        Returns
        -------
        GateGradient
            Full-size gradients (the reference expert's rows included; solvers
            drop what is fixed).
        """
        return self._pullback(self._forward(params, X), X, logit_grad)

    def _pullback(self, forward, X, logit_grad):
        z, h, dh, tau, s, mask = forward
        G = np.asarray(logit_grad, dtype=float)
        if mask is not None:
            G = np.where(mask, G, 0.0)
        dz = G / tau if dh is None else G * dh / tau
        grad_log_tau = -float(np.sum(G * h)) / tau if self.has_temperature else 0.0
        return GateGradient(dz.T @ X, G.sum(axis=0), grad_log_tau)

    def objective_and_gradient(self, params: MoEParams, X, resp, log_expert=None):
        """The EM gate objective (or observed log-likelihood) and its gradient.

        With ``log_expert`` None: :math:`F = Q(\\beta) = \\sum_{ij} r_{ij}\\log w_{ij}`
        and :math:`G = r - (\\sum_l r_{il}) w`. With ``log_expert`` (the expert
        log-densities, shape (n, k)): :math:`F = \\sum_i \\log\\sum_j w_{ij}\\,
        \\phi_{ij}` with the experts held fixed, and :math:`G = \\pi - w` where
        :math:`\\pi` are the posterior responsibilities at ``params`` (Fisher's
        identity). ``resp`` is unused in the second form.

        Returns
        -------
        value : float
        gradient : GateGradient
        """
        forward = self._forward(params, X)
        s = forward[4]
        log_w = s - row_logsumexp(s)[:, None]
        w = np.exp(log_w)
        if log_expert is None:
            with np.errstate(invalid="ignore"):
                terms = np.where(resp > 0, resp * log_w, 0.0)
            value = float(np.sum(terms))
            G = resp - resp.sum(axis=1, keepdims=True) * w
        else:
            joint = log_w + log_expert
            log_p = row_logsumexp(joint)[:, None]
            value = float(np.sum(log_p))
            G = np.exp(joint - log_p) - w
        return value, self._pullback(forward, X, G)

    # ------------------------------------------------- free-parameter vector
    def n_free_params(self, n_experts: int, n_features: int) -> int:
        """Number of free gate parameters (reference expert fixed)."""
        k1 = n_experts - 1
        return k1 * n_features + (k1 if self.fits_intercept else 0) + int(self.learns_temperature)

    def pack(self, params: MoEParams) -> np.ndarray:
        """Free gate parameters as a vector: ``beta_1[:-1]``, ``beta_0[:-1]``, ``log tau``."""
        parts = [params.gate_coef[:-1].ravel()]
        if self.fits_intercept:
            parts.append(params.gate_intercept[:-1])
        if self.learns_temperature:
            parts.append([np.log(params.temperature)])
        return np.concatenate(parts).astype(float)

    def unpack(self, theta, params: MoEParams) -> MoEParams:
        """Inverse of :meth:`pack`: new parameters with the gate part from ``theta``."""
        k, d = params.gate_coef.shape
        theta = np.asarray(theta, dtype=float)
        coef = np.zeros((k, d))
        coef[:-1] = theta[: (k - 1) * d].reshape(k - 1, d)
        pos = (k - 1) * d
        intercept = np.zeros(k)
        if self.fits_intercept:
            intercept[:-1] = theta[pos: pos + k - 1]
            pos += k - 1
        tau = float(np.exp(theta[pos])) if self.learns_temperature else params.temperature
        return params.replace(gate_coef=coef, gate_intercept=intercept, temperature=tau)

    def pack_gradient(self, grad: GateGradient) -> np.ndarray:
        """A :class:`GateGradient` as a vector matching :meth:`pack`."""
        parts = [grad.gate_coef[:-1].ravel()]
        if self.fits_intercept:
            parts.append(grad.gate_intercept[:-1])
        if self.learns_temperature:
            parts.append([grad.log_temperature])
        return np.concatenate(parts).astype(float)
