"""Observed information, per-sample scores and the Wald covariance of a fit.

With :math:`\\ell(\\theta) = \\sum_i \\log p_\\theta(y_i \\mid x_i)` in the
free-parameter vector :math:`\\theta` of
:class:`~moestats.solvers.batched_params.ParamLayout`, the observed information is
:math:`I = -\\nabla^2\\ell(\\hat\\theta)` (the exact Hessian of
:func:`moestats.solvers.derivatives.observed_derivatives`) and the per-sample scores
are :math:`s_i = \\nabla_\\theta \\log p_\\theta(y_i \\mid x_i)`,

.. math::

    s_i = \\sum_j \\pi_{ij}\\,(g_{ij} + \\nabla\\log\\phi_{ij}) - \\sum_j w_{ij}\\, g_{ij},

with the posterior :math:`\\pi`, the gate weights :math:`w`, the logit gradients
:math:`g_{ij} = \\nabla s_{ij}` and the expert log-densities :math:`\\log\\phi_{ij}`.
The covariance of :math:`\\hat\\theta` is

.. math::

    \\widehat{\\operatorname{Cov}}_{\\rm observed} = I^{-1}, \\qquad
    \\widehat{\\operatorname{Cov}}_{\\rm robust} = I^{-1}\\Bigl(\\sum_i s_i s_i^\\top\\Bigr) I^{-1}

(the sandwich, valid under misspecification). Everything is computed on the data
and parameters on the user's scale, so no change of coordinates is involved; the
information is equilibrated by its diagonal, :math:`D^{-1} I D^{-1}` with
:math:`D = \\operatorname{diag}(I)^{1/2}`, before its eigen-decomposition, which makes
the result invariant to the units of ``X`` and ``y``.

Coordinates without a Wald standard error (NaN, with the reason):

* structural (:mod:`moestats.inference.parameters`): the gate slopes of a top-1 gate;
  with the identity activation and a learned temperature the information is computed
  with :math:`\\tau` held at its estimate (the identifiable parametrisation), so
  :math:`\\beta_1` there stands for :math:`\\beta_1` at fixed :math:`\\tau`;
* at a bound of the parameter space (``space``, ``var_floor``): held fixed;
* singular information: the equilibrated information has eigenvalues
  :math:`\\lambda \\le` ``singular_rtol`` :math:`\\lambda_{\\max}` (flat, or
  negative: not a strict maximum); the coordinates whose loading on such an
  eigenvector exceeds ``loading_tol`` are unidentified at this fit (over-specified
  experts, a boundary). The other coordinates are estimable functions and get
  their variance from the pseudo-inverse on the remaining eigen-directions.

An over-specified fit at finite n usually has a positive definite but ill-conditioned
information (its condition number is printed in the summary): its standard errors are
large, and Wald theory does not apply to the split atoms. Top-K gates with K >= 2: the
Hessian is exact away from changes of the selected sets. Where those sets move with
the gate parameters (``selection="logit"``, or d >= 2) the likelihood is not
differentiable at the selection boundaries and the gate slopes' intervals have no
Wald theory behind them; with ``selection="slope"`` in d = 1 the sets change only at
x = 0 and the model is regular (``benchmarks/bench_coverage.py``, top-2 of 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from ..backends.numpy_kernels import row_logsumexp
from ..solvers.batched_params import BatchedParams, ParamLayout
from ..solvers.derivatives import (_expert_log_density, _logit_gradients, gate_forward,
                                   observed_derivatives)
from ..solvers.space import ParameterSpace
from .parameters import REASON_TOP1, identity_temperature, top1_gate

__all__ = ["per_sample_scores", "observed_information", "wald_covariance",
           "WaldCovariance", "REASON_BOUND", "REASON_SINGULAR", "REASON_EXCLUDED",
           "COV_TYPES"]

REASON_BOUND = "at a bound of the parameter space (held fixed)"
REASON_SINGULAR = "singular information (over-specified or at a boundary)"
REASON_EXCLUDED = "not in the model (gate_features/expert_features hold it at 0)"
COV_TYPES = ("observed", "robust")
#: floats of one chunk of per-sample logit gradients (n x k x p)
_CHUNK_FLOATS = 1 << 21


def _batch(X, y, params):
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got shapes {X.shape} and {y.shape}")
    return X[None], y[None], BatchedParams.stack([params])


def per_sample_scores(gate, params, X, y) -> np.ndarray:
    """Per-sample scores :math:`s_i = \\nabla_\\theta\\log p(y_i\\mid x_i)`, shape (n, p).

    Their sum is the gradient of :func:`moestats.solvers.derivatives.observed_derivatives`.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate, get_setup
    >>> from moestats.solvers.batched_params import BatchedParams
    >>> from moestats.solvers.derivatives import observed_derivatives
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(300, np.random.default_rng(0))
    >>> S = per_sample_scores(SoftmaxGate(), truth.params, X, y)
    >>> grad = observed_derivatives(SoftmaxGate(), X[None], y[None],
    ...                             BatchedParams.stack([truth.params]), order=1)[1][0]
    >>> S.shape, bool(np.allclose(S.sum(axis=0), grad))
    ((300, 8), True)
    """
    Xb, yb, P = _batch(X, y, params)
    n, d = X.shape[0], Xb.shape[2]
    k = params.n_experts
    L = ParamLayout(gate, k, d)
    p = L.size
    out = np.empty((n, p))
    size = max(64, _CHUNK_FLOATS // max(1, k * p))
    for i0 in range(0, n, size):
        sl = slice(i0, min(n, i0 + size))
        Xc, yc = Xb[:, sl], yb[:, sl]
        z, h, h1, h2, tau, s, mask = gate_forward(gate, Xc, P)
        log_w = s - row_logsumexp(s)[..., None]
        w = np.exp(log_w)
        log_phi, e = _expert_log_density(Xc, yc, P)
        joint = log_w + log_phi
        post = np.exp(joint - row_logsumexp(joint)[..., None])
        if mask is not None:
            h = np.where(mask, h, 0.0)
        g, _ = _logit_gradients(L, Xc, h, h1, tau, p)
        score = np.einsum("ank,ankp->anp", post - w, g)[0]
        scaled = (e / P.expert_var[:, None, :])[0]
        pj = post[0]
        for j in range(k):
            cs = slice(L.expert_coef.start + j * d, L.expert_coef.start + (j + 1) * d)
            score[:, cs] += (pj[:, j] * scaled[:, j])[:, None] * Xc[0]
            score[:, L.expert_intercept.start + j] += pj[:, j] * scaled[:, j]
            score[:, L.log_var.start + j] += pj[:, j] * (0.5 * e[0, :, j] * scaled[:, j] - 0.5)
        out[sl] = score
    return out


def observed_information(gate, params, X, y, sample_weight=None):
    """Observed information :math:`-\\nabla^2\\ell` and gradient :math:`\\nabla\\ell`
    (of the weighted log-likelihood with ``sample_weight``, shape (n,)).

    Returns
    -------
    info : ndarray (p, p)
    grad : ndarray (p,)
    """
    Xb, yb, P = _batch(X, y, params)
    with np.errstate(over="ignore", under="ignore"):
        _, grad, hess = observed_derivatives(
            gate, Xb, yb, P, order=2,
            sample_weight=None if sample_weight is None else np.asarray(sample_weight)[None])
    info = -hess[0]
    return 0.5 * (info + info.T), grad[0]


@dataclass
class WaldCovariance:
    """The Wald covariance of a fit in its free-parameter vector.

    Attributes
    ----------
    gate : Gate
        The gate of the layout (the fitted gate, or it with the temperature held
        fixed for the identity activation).
    layout : ParamLayout
    theta : ndarray (p,)
    covariance : ndarray (p, p)
        NaN in the rows and columns of unidentified coordinates.
    reasons : list of str
        Per coordinate, why it has no standard error ("" when it has one).
    cov_type : {"observed", "robust"}
    n_samples : int
    min_eigenvalue, max_eigenvalue : float
        Extreme eigenvalues of the equilibrated information on the free coordinates.
    identity_temperature : bool
        Whether the fitted gate's temperature was held at its estimate.
    gradient : ndarray (p,)
        Gradient of the log-likelihood at the fit (for diagnostics).
    """

    gate: object
    layout: ParamLayout
    theta: np.ndarray
    covariance: np.ndarray
    reasons: list
    cov_type: str
    n_samples: int
    min_eigenvalue: float = np.nan
    max_eigenvalue: float = np.nan
    identity_temperature: bool = False
    gradient: np.ndarray = field(default=None, repr=False)

    def embed(self, fit_gate) -> tuple:
        """Covariance and reasons in the layout of ``fit_gate`` (the fitted gate).

        With the identity activation and a learned temperature, the rows of
        :math:`\\beta_1` and :math:`\\log\\tau` are NaN (their reason says why).
        """
        if not self.identity_temperature:
            return self.covariance, list(self.reasons)
        from .parameters import REASON_IDENTITY_TAU
        L, W = ParamLayout(fit_gate, self.layout.k, self.layout.d), self.layout
        idx = np.r_[np.arange(W.size)[:W.gate_intercept.stop],
                    np.arange(W.size)[W.expert_coef.start:]]
        pos = np.r_[np.arange(L.size)[:L.gate_intercept.stop],
                    np.arange(L.size)[L.expert_coef.start:]]
        cov = np.full((L.size, L.size), np.nan)
        cov[np.ix_(pos, pos)] = self.covariance[np.ix_(idx, idx)]
        reasons = [""] * L.size
        for a, b in zip(pos, idx):
            reasons[a] = self.reasons[b]
        for q in list(range(L.gate_slope.start, L.gate_slope.stop)) + [L.log_temperature.start]:
            cov[q, :] = np.nan
            cov[:, q] = np.nan
            reasons[q] = REASON_IDENTITY_TAU
        return cov, reasons


def _bound_coordinates(layout, theta, space, var_floor, rtol=1e-7):
    lo, hi = space.box(layout, var_floor)
    with np.errstate(invalid="ignore"):
        near = lambda b: np.isfinite(b) & (np.abs(theta - b) <= rtol * (1.0 + np.abs(b)))  # noqa: E731
        return near(lo) | near(hi)


def wald_covariance(gate, params, X, y, *, cov_type="observed", space=None, var_floor=0.0,
                    singular_rtol=1e-9, loading_tol=1e-3,
                    sample_weight=None) -> WaldCovariance:
    """Wald covariance of the free parameters of a fit (see the module docstring).

    Parameters
    ----------
    gate : Gate
        The fitted gate.
    params : MoEParams
        The fit, on the scale of ``X`` and ``y``.
    X : ndarray (n, d)
    y : ndarray (n,)
    cov_type : {"observed", "robust"}, default="observed"
    space : ParameterSpace, optional
        The parameter space of the fit (coordinates at its bounds are held fixed).
    var_floor : float, default=0
        The fit's variance floor (a variance there is at a bound).
    singular_rtol : float, default=1e-9
        Eigenvalues of the equilibrated information at most this times the largest
        are singular directions.
    loading_tol : float, default=1e-3
        A coordinate whose loading on a singular eigenvector (unit norm,
        equilibrated coordinates) exceeds this gets no standard error.
    sample_weight : ndarray (n,), optional
        Frequency weights of the fit: the information is :math:`\\sum_i c_i
        (-\\nabla^2 \\log p_i)` and the sandwich's meat :math:`\\sum_i c_i s_i s_i^\\top`.

    Returns
    -------
    WaldCovariance

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import GaussianMoE, get_setup
    >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
    >>> est = GaussianMoE(2, random_state=0).fit(X, y)
    >>> wc = wald_covariance(est.gate_, est.params_, X, y)
    >>> wc.covariance.shape, all(r == "" for r in wc.reasons)
    ((8, 8), True)
    """
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be 'observed' or 'robust', got {cov_type!r}")
    for name, tol in (("singular_rtol", singular_rtol), ("loading_tol", loading_tol)):
        if not (isinstance(tol, (int, float)) and 0 < tol < 1):
            raise ValueError(f"{name} must be a number in (0, 1), got {tol!r}")
    space = ParameterSpace() if space is None else space
    ident = identity_temperature(gate)
    work = clone(gate).set_params(learn_temperature=False) if ident else gate
    k, d = params.n_experts, params.n_features
    L = ParamLayout(work, k, d)
    theta = L.pack(BatchedParams.stack([params]))[0]
    info, grad = observed_information(work, params, X, y, sample_weight)
    reasons = [""] * L.size
    if top1_gate(work):
        for q in range(L.gate_slope.start, L.gate_slope.stop):
            reasons[q] = REASON_TOP1
    for q in np.flatnonzero(space.pinned(L)):
        reasons[q] = REASON_EXCLUDED
    for q in np.flatnonzero(_bound_coordinates(L, theta, space, var_floor)):
        if not reasons[q]:
            reasons[q] = REASON_BOUND
    # theta = J phi: the structure's free coordinates (tied variances one coordinate)
    J = space.tie_matrix(L)
    J = np.eye(L.size) if J is None else J
    rep = np.argmax(J, axis=0)
    free = np.array([c for c in range(J.shape[1]) if not reasons[rep[c]]], dtype=int)
    Jf = J[:, free]
    cov = np.full((L.size, L.size), np.nan)
    lam_min = lam_max = np.nan
    if free.size:
        M = Jf.T @ info @ Jf
        diag = np.abs(np.diag(M))
        D = np.where(diag > 0, np.sqrt(diag), 1.0)
        Mt = M / np.outer(D, D)
        if not np.all(np.isfinite(Mt)):
            for q in np.flatnonzero(Jf.any(axis=1)):
                reasons[q] = "non-finite information"
            return WaldCovariance(work, L, theta, cov, reasons, cov_type, X.shape[0],
                                  identity_temperature=ident, gradient=grad)
        lam, V = np.linalg.eigh(Mt)
        lam_min, lam_max = float(lam[0]), float(lam[-1])
        cut = singular_rtol * max(lam_max, np.finfo(float).tiny)
        keep = lam > cut
        flagged = np.zeros(free.size, dtype=bool)
        if not np.all(keep):
            flagged = np.any(np.abs(V[:, ~keep]) > loading_tol, axis=1)
        pinv = (V[:, keep] / lam[keep]) @ V[:, keep].T
        if cov_type == "robust":
            S = per_sample_scores(work, params, X, y) @ Jf / D
            Sc = S if sample_weight is None else S * np.asarray(sample_weight)[:, None]
            pinv = pinv @ (S.T @ Sc) @ pinv
        full = Jf @ (pinv / np.outer(D, D)) @ Jf.T
        rows = Jf.any(axis=1)
        cov[np.ix_(rows, rows)] = full[np.ix_(rows, rows)]
        for q in np.flatnonzero(Jf[:, flagged].any(axis=1)):
            cov[q, :] = np.nan
            cov[:, q] = np.nan
            reasons[q] = REASON_SINGULAR
    return WaldCovariance(work, L, theta, cov, reasons, cov_type, X.shape[0], lam_min,
                          lam_max, ident, grad)
