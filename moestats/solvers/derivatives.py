"""Exact gradient and Hessian of the observed log-likelihood, for every gate family.

With :math:`u_{ij} = \\log w_j(x_i) + \\log\\phi_{ij}` (gate log weight plus expert
log-density), :math:`\\ell = \\sum_i \\log\\sum_j e^{u_{ij}}`, posterior
:math:`\\pi_{ij} = e^{u_{ij} - \\ell_i}` and the free-parameter vector
:math:`\\theta` of :class:`~moestats.solvers.batched_params.ParamLayout`,

.. math::

    \\nabla\\ell = \\sum_i \\Bigl(\\sum_j \\pi_{ij} v_{ij} - \\sum_j w_{ij} g_{ij}\\Bigr),

    \\nabla^2\\ell = \\sum_i \\Bigl(\\sum_j (\\pi_{ij} - w_{ij})\\nabla^2 s_{ij}
        + \\sum_j \\pi_{ij}\\nabla^2\\log\\phi_{ij}
        + \\operatorname{Cov}_{\\pi_i}(v_{i\\cdot}) - \\operatorname{Cov}_{w_i}(g_{i\\cdot})\\Bigr),

where :math:`g_{ij} = \\nabla s_{ij}` is the gradient of the logit and
:math:`v_{ij} = g_{ij} + \\nabla\\log\\phi_{ij}`, and
:math:`\\operatorname{Cov}_p(v) = \\sum_j p_j v_j v_j^\\top - \\bar v\\bar v^\\top`.
For logits :math:`s_{ij} = \\sigma(z_{ij})/\\tau + \\beta_{0j}`,
:math:`z_{ij} = \\beta_{1j}^\\top x_i`:

.. math::

    \\partial_{\\beta_{1j}} s_{ij} = \\frac{\\sigma'(z_{ij})}{\\tau} x_i,\\quad
    \\partial_{\\beta_{0j}} s_{ij} = 1,\\quad
    \\partial_{\\log\\tau} s_{ij} = -\\frac{\\sigma(z_{ij})}{\\tau},\\quad
    \\partial^2_{\\beta_{1j}} s_{ij} = \\frac{\\sigma''(z_{ij})}{\\tau} x_i x_i^\\top,\\quad
    \\partial_{\\beta_{1j}}\\partial_{\\log\\tau} s_{ij} = -\\frac{\\sigma'(z_{ij})}{\\tau} x_i,\\quad
    \\partial^2_{\\log\\tau} s_{ij} = \\frac{\\sigma(z_{ij})}{\\tau},

and, with :math:`e_{ij} = y_i - a_j^\\top x_i - b_j`, :math:`\\tilde x = (x, 1)`,
:math:`\\partial_{(a_j,b_j)}\\log\\phi_{ij} = e_{ij}\\tilde x_i/\\nu_j`,
:math:`\\partial_{\\log\\nu_j}\\log\\phi_{ij} = e_{ij}^2/(2\\nu_j) - 1/2`, second
derivatives :math:`-\\tilde x\\tilde x^\\top/\\nu_j`, :math:`-e_{ij}\\tilde x_i/\\nu_j`
and :math:`-e_{ij}^2/(2\\nu_j)`. Top-K logits are those of a softmax over the
selected experts: exact away from selection changes (a set of measure zero), where
the likelihood is not differentiable.

The EM gate objective :math:`Q(\\beta) = \\sum_{ij} r_{ij}\\log w_{ij}` has
:math:`\\nabla Q = \\sum_{ij}(r_{ij} - m_i w_{ij}) g_{ij}` and
:math:`\\nabla^2 Q = \\sum_{ij}(r_{ij} - m_i w_{ij})\\nabla^2 s_{ij}
- \\sum_i m_i\\operatorname{Cov}_{w_i}(g_{i\\cdot})` with :math:`m_i = \\sum_j r_{ij}`
(:func:`gate_objective_derivatives`). Everything is vectorised over replications
and computed in chunks of samples, so memory stays bounded.
"""

from __future__ import annotations

import numpy as np

from ..backends.numpy_kernels import row_logsumexp
from .batched_params import BatchedParams, ParamLayout

__all__ = ["gate_forward", "observed_loglik", "observed_derivatives",
           "gate_objective_derivatives"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: floats per (replication x sample x expert x parameter) block of one chunk
_CHUNK_FLOATS = 1 << 21


def gate_forward(gate, X, P: BatchedParams, second=False):
    """Batched gate pieces: ``z, h, h1, h2, tau, s, mask`` for ``X`` (A, n, d).

    ``h, h1, h2`` are :math:`\\sigma, \\sigma', \\sigma''` at ``z`` (``h1``/``h2``
    ``None`` for the identity), ``tau`` (A,), ``s`` the logits (``-inf`` off the
    support), ``mask`` the support (``None`` when dense).
    """
    z = X @ P.gate_coef.transpose(0, 2, 1)
    if second:
        h, h1, h2 = gate._activate2(z)
    else:
        (h, h1), h2 = gate._activate(z), None
    A, n, k = z.shape
    tau = P.temperature if gate.has_temperature else np.ones(A)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = h / tau[:, None, None] + P.gate_intercept[:, None, :]
    mask = gate._support(z.reshape(A * n, k), s.reshape(A * n, k))
    if mask is not None:
        mask = mask.reshape(A, n, k)
        s = np.where(mask, s, -np.inf)
    return z, h, h1, h2, tau, s, mask


def _expert_log_density(X, y, P):
    resid = y[..., None] - (X @ P.expert_coef.transpose(0, 2, 1)
                            + P.expert_intercept[:, None, :])
    var = P.expert_var[:, None, :]
    return -0.5 * (_LOG_2PI + np.log(var)) - 0.5 * resid * resid / var, resid


def observed_loglik(gate, X, y, P: BatchedParams, sample_weight=None) -> np.ndarray:
    """Observed log-likelihood :math:`\\sum_i c_i\\log p(y_i\\mid x_i)` per replication, (A,).

    ``X`` (A, n, d), ``y`` (A, n); ``sample_weight`` (A, n) the weights :math:`c_i`
    (default 1). NaN-free: a non-finite value comes back as ``-inf``.
    """
    s = gate_forward(gate, X, P)[5]
    log_w = s - row_logsumexp(s)[..., None]
    log_phi, _ = _expert_log_density(X, y, P)
    with np.errstate(invalid="ignore"):
        lse = row_logsumexp(log_w + log_phi)
        ll = (lse if sample_weight is None else sample_weight * lse).sum(axis=1)
    return np.where(np.isnan(ll), -np.inf, ll)


def _chunks(n, A, k, p):
    size = max(64, _CHUNK_FLOATS // max(1, A * k * p))
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _logit_gradients(L: ParamLayout, X, h, h1, tau, p):
    """:math:`g_{ij} = \\nabla_\\theta s_{ij}` as a dense (A, n, k, p) array."""
    A, n, d = X.shape
    k = L.k
    g = np.zeros((A, n, k, p))
    c = (np.ones_like(h) if h1 is None else h1) / tau[:, None, None]
    for j in range(k - 1):
        start = L.gate_slope.start + j * d
        g[:, :, j, start:start + d] = c[:, :, j, None] * X
        if L.fits_intercept:
            g[:, :, j, L.gate_intercept.start + j] = 1.0
    if L.learns_temperature:
        g[:, :, :, L.log_temperature.start] = -h / tau[:, None, None]
    return g, c


def _logit_second(L: ParamLayout, X, h, c, h2, tau, omega, out):
    """Add :math:`\\sum_{ij}\\omega_{ij}\\nabla^2 s_{ij}` to ``out`` (A, p, p)."""
    d = X.shape[2]
    t = L.log_temperature.start
    for j in range(L.k - 1):
        sl = slice(L.gate_slope.start + j * d, L.gate_slope.start + (j + 1) * d)
        if h2 is not None:
            wgt = omega[:, :, j] * h2[:, :, j] / tau[:, None]
            out[:, sl, sl] += (X * wgt[..., None]).transpose(0, 2, 1) @ X
        if L.learns_temperature:
            cross = -np.einsum("an,and->ad", omega[:, :, j] * c[:, :, j], X)
            out[:, sl, t] += cross
            out[:, t, sl] += cross
    if L.learns_temperature:
        out[:, t, t] += np.einsum("ank,ank->a", omega, h) / tau


def _weighted_cov(V, p_weights, c=None):
    """:math:`\\sum_i c_i\\operatorname{Cov}_{p_i}(V_{i\\cdot})` for V (A, n, k, p), weights
    (A, n, k) and sample weights ``c`` (A, n; default 1)."""
    A, n, k, P = V.shape
    mean = np.einsum("ank,ankp->anp", p_weights, V)
    scale = p_weights if c is None else p_weights * c[..., None]
    D = (V - mean[:, :, None, :]) * np.sqrt(scale)[..., None]
    D = D.reshape(A, n * k, P)
    return D.transpose(0, 2, 1) @ D, mean


def observed_derivatives(gate, X, y, P: BatchedParams, order=2, gate_only=False,
                         sample_weight=None):
    """Observed log-likelihood, its gradient and (``order=2``) Hessian in :math:`\\theta`.

    With sample weights :math:`c_i` the log-likelihood is :math:`\\sum_i c_i \\log
    p(y_i \\mid x_i)` (frequency weights: an integer :math:`c_i` counts the sample
    :math:`c_i` times), and its derivatives are weighted alike.

    Parameters
    ----------
    gate : Gate
    X : ndarray (A, n, d)
    y : ndarray (A, n)
    P : BatchedParams
        A replications.
    order : {0, 1, 2}
        0: the value only (``grad`` then stays 0).
    gate_only : bool
        Derivatives in the gate part of :math:`\\theta` only (the experts held
        fixed: the ECM gate step).
    sample_weight : ndarray (A, n), optional
        The weights :math:`c_i` (default 1).

    Returns
    -------
    value : ndarray (A,)
    grad : ndarray (A, p)
    hess : ndarray (A, p, p) or None

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(500, np.random.default_rng(0))
    >>> P = BatchedParams.stack([truth.params])
    >>> value, grad, hess = observed_derivatives(SoftmaxGate(), X[None], y[None], P)
    >>> grad.shape, hess.shape
    ((1, 8), (1, 8, 8))
    """
    A, n, d = X.shape
    k = P.gate_coef.shape[1]
    L = ParamLayout(gate, k, d)
    p = L.n_gate if gate_only else L.size
    value = np.zeros(A)
    grad = np.zeros((A, p))
    hess = np.zeros((A, p, p)) if order >= 2 else None
    ones = np.ones((A, 1, 1))
    for sl in _chunks(n, A, k, p):
        Xc, yc = X[:, sl], y[:, sl]
        cw = None if sample_weight is None else sample_weight[:, sl]
        nc = Xc.shape[1]
        z, h, h1, h2, tau, s, mask = gate_forward(gate, Xc, P, second=order >= 2)
        log_w = s - row_logsumexp(s)[..., None]
        w = np.exp(log_w)
        log_phi, e = _expert_log_density(Xc, yc, P)
        joint = log_w + log_phi
        lse = row_logsumexp(joint)
        value += (lse if cw is None else cw * lse).sum(axis=1)
        post = np.exp(joint - lse[..., None])
        if mask is not None:
            h = np.where(mask, h, 0.0)
        g, c = _logit_gradients(L, Xc, h, h1, tau, p)
        v = g.copy()
        var = P.expert_var[:, None, :]
        scaled = e / var
        for j in range(0 if gate_only else k):
            cs = slice(L.expert_coef.start + j * d, L.expert_coef.start + (j + 1) * d)
            v[:, :, j, cs] += scaled[:, :, j, None] * Xc
            v[:, :, j, L.expert_intercept.start + j] += scaled[:, :, j]
            v[:, :, j, L.log_var.start + j] += 0.5 * e[:, :, j] * scaled[:, :, j] - 0.5
        if order < 2:
            pc, wc = (post, w) if cw is None else (post * cw[..., None], w * cw[..., None])
            grad += np.einsum("ank,ankp->ap", pc, v) - np.einsum("ank,ankp->ap", wc, g)
            continue
        cov_post, mean_post = _weighted_cov(v, post, cw)
        cov_w, mean_w = _weighted_cov(g, w, cw)
        diff = mean_post - mean_w
        grad += (diff if cw is None else diff * cw[..., None]).sum(axis=1)
        hess += cov_post - cov_w
        omega = post - w
        _logit_second(L, Xc, h, c, h2, tau, omega if cw is None else omega * cw[..., None],
                      hess)
        if gate_only:
            continue
        Xt = np.concatenate([Xc, np.broadcast_to(ones, (A, nc, 1))], axis=2)
        for j in range(k):
            mean_sl = np.r_[L.expert_coef.start + j * d: L.expert_coef.start + (j + 1) * d,
                            L.expert_intercept.start + j]
            lv = L.log_var.start + j
            pj = post[:, :, j] if cw is None else post[:, :, j] * cw
            nu = P.expert_var[:, j]
            hess[:, mean_sl[:, None], mean_sl[None, :]] -= (
                (Xt * pj[..., None]).transpose(0, 2, 1) @ Xt) / nu[:, None, None]
            cross = -np.einsum("an,and->ad", pj * scaled[:, :, j], Xt)
            hess[:, mean_sl, lv] += cross
            hess[:, lv, mean_sl] += cross
            hess[:, lv, lv] -= 0.5 * np.einsum("an,an->a", pj, e[:, :, j] * scaled[:, :, j])
    return np.where(np.isnan(value), -np.inf, value), grad, hess


def gate_objective_derivatives(gate, X, resp, P: BatchedParams, order=2):
    """EM gate objective :math:`Q`, gradient and Hessian in the gate part of :math:`\\theta`.

    Parameters
    ----------
    X : ndarray (A, n, d)
    resp : ndarray (A, n, k)
        Responsibilities :math:`r_{ij}` (row masses :math:`m_i` need not be 1).
    P : BatchedParams
    order : {0, 1, 2}
        0: the value only.

    Returns
    -------
    value : ndarray (A,)
        :math:`Q` (``-inf`` where a positive responsibility meets a zero weight).
    grad : ndarray (A, p_gate)
    hess : ndarray (A, p_gate, p_gate) or None

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, _ = truth.sample(200, np.random.default_rng(0))
    >>> resp = np.full((1, 200, 2), 0.5)
    >>> value, grad, hess = gate_objective_derivatives(
    ...     SoftmaxGate(), X[None], resp, BatchedParams.stack([truth.params]))
    >>> grad.shape, bool(np.all(np.linalg.eigvalsh(hess[0]) <= 0))    # Q is concave
    ((1, 2), True)
    """
    A, n, d = X.shape
    k = P.gate_coef.shape[1]
    L = ParamLayout(gate, k, d)
    p = L.n_gate
    value = np.zeros(A)
    grad = np.zeros((A, p))
    hess = np.zeros((A, p, p)) if order >= 2 else None
    for sl in _chunks(n, A, k, p):
        Xc, r = X[:, sl], resp[:, sl]
        z, h, h1, h2, tau, s, mask = gate_forward(gate, Xc, P, second=order >= 2)
        log_w = s - row_logsumexp(s)[..., None]
        w = np.exp(log_w)
        with np.errstate(invalid="ignore"):
            value += np.where(r > 0, r * log_w, 0.0).sum(axis=(1, 2))
        if order == 0:
            continue
        if mask is not None:
            h = np.where(mask, h, 0.0)
        g, c = _logit_gradients(L, Xc, h, h1, tau, p)
        m = r.sum(axis=2)
        omega = r - m[..., None] * w
        grad += np.einsum("ank,ankp->ap", omega, g)
        if order >= 2:
            # m_i Cov_{w_i}(g): deviations from the w-mean, weighted by m_i w_ij
            mean = np.einsum("ank,ankp->anp", w, g)
            D = (g - mean[:, :, None, :]) * np.sqrt(w * m[..., None])[..., None]
            D = D.reshape(A, -1, p)
            hess -= D.transpose(0, 2, 1) @ D
            _logit_second(L, Xc, h, c, h2, tau, omega, hess)
    return np.where(np.isnan(value), -np.inf, value), grad, hess
