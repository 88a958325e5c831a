r"""Fused Numba E-step of the dense temperature and activation gates.

For the dense gates with logits

.. math::

    s_{ij} = \sigma(z_{ij})/\tau + \beta_{0j}, \qquad z_{ij} = \beta_{1j}^\top x_i,

(:math:`\sigma` the identity, tanh, the logistic sigmoid or gelu; :math:`\tau` fixed
or learned), one pass over the data gives what :mod:`.numba_softmax` gives for the
softmax gate: the responsibilities and per-sample log-likelihood and, with
``extra``, the expert sufficient statistics, the residual moments of the current
experts, and the value, gradient and Hessian of the EM gate objective
:math:`Q(\beta) = \sum_{ij} r_{ij}\log w_{ij}` at the current gate, in the gate part
of the free-parameter vector (:class:`moestats.solvers.ParamLayout`: slopes
:math:`\beta_{1j}`, intercepts :math:`\beta_{0j}` for :math:`j < k`, then
:math:`\lambda = \log\tau` when learned). The EM engine's gate step starts from
them, so an EM iteration of these gates costs one pass over the data, as for the
softmax gate.

With :math:`G_{ij} = r_{ij} - m_i w_{ij}` (:math:`m_i = \sum_j r_{ij}`),
:math:`\psi_{ij} = (\sigma'(z_{ij})x_i/\tau,\ 1)` (the logit's gradient in expert
j's own block) and :math:`t_{ij} = \partial_\lambda s_{ij} = -\sigma(z_{ij})/\tau`
(every expert, the reference included):

.. math::

    \nabla_{j} Q = \sum_i G_{ij}\psi_{ij},\qquad
    \partial_\lambda Q = \sum_{ij} G_{ij} t_{ij},

    \nabla^2_{jl} Q = -\sum_i m_i (w_{ij}\delta_{jl} - w_{ij}w_{il})\,\psi_{ij}\psi_{il}^\top
        + \delta_{jl}\sum_i G_{ij}\,\frac{\sigma''(z_{ij})}{\tau}
          \begin{pmatrix} x_ix_i^\top & 0\\ 0 & 0\end{pmatrix},

    \nabla_{j}\partial_\lambda Q = -\sum_i m_i w_{ij}(t_{ij} - \bar t_i)\psi_{ij}
        - \sum_i G_{ij}\frac{\sigma'(z_{ij})}{\tau}\begin{pmatrix}x_i\\0\end{pmatrix},
    \qquad
    \partial^2_\lambda Q = -\sum_i m_i \operatorname{Var}_{w_i}(t_i)
        + \sum_{ij} G_{ij}\frac{\sigma(z_{ij})}{\tau},

with :math:`\bar t_i = \sum_j w_{ij}t_{ij}`. The blocks are accumulated as
weighted sums over the samples of a block (:mod:`.numba_blocks`), the activations
computed by vectorisable formulas (tanh and the sigmoid through
:func:`moestats.backends.numba_vmath._vexp`; gelu through ``erfc``). The tests hold
the results to 1e-10 relative of the NumPy reference
(:func:`moestats.solvers.derivatives.gate_objective_derivatives`).

Examples
--------
>>> import numpy as np
>>> from moestats import get_setup
>>> from moestats.solvers.batched_params import as_batched
>>> from moestats.backends.numba_fused_gates import dense_fused_e_step
>>> s = get_setup("temperature")
>>> X, y = s.truth.sample(500, np.random.default_rng(0))
>>> P = as_batched(s.truth.params, 1)
>>> resp, log_p, (stats, (value, grad, hess), moments) = dense_fused_e_step(
...     s.fitted[0].gate, X[None], y[None], np.zeros(1, dtype=np.int64), P, True)
>>> resp.shape, grad.shape, hess.shape
((1, 500, 2), (1, 3), (1, 3, 3))
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_blocks import (_B, _L, _LOG_2PI, CHUNK, _dot, _load_x, _lse_block, _n_chunks,
                           _posterior_block, _stats_block, _sum, _write_stats)
from .numba_vmath import _vexp

__all__ = ["dense_fused_e_step", "fuses"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
#: tanh by its Taylor series below this |z| (the exp form cancels there)
_TANH_SERIES = 0.0625


@njit(cache=True, error_model="numpy", inline="always")
def _vtanh(z):
    """tanh(z), 1 - tanh(z)^2 (both to a few ulp; branch-free)."""
    a = abs(z)
    e = _vexp(-2.0 * a)
    t_exp = (1.0 - e) / (1.0 + e)
    z2 = a * a
    t_ser = a * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (
        -17.0 / 315.0 + z2 * (62.0 / 2835.0)))))
    t = t_ser if a < _TANH_SERIES else t_exp
    t = t if z >= 0.0 else -t
    inv = 1.0 / (1.0 + e)
    return t, 4.0 * e * inv * inv  # 1 - t^2 = 4e / (1 + e)^2, exact for large |z|


@njit(cache=True, error_model="numpy", inline="always")
def _activate_block(code, zb, h, h1, h2, nbp):
    """sigma, sigma', sigma'' of the activation ``code`` on zb[:nbp]."""
    if code == 0:
        for i in range(nbp):
            h[i] = zb[i]
            h1[i] = 1.0
            h2[i] = 0.0
    elif code == 1:
        for i in range(nbp):
            t, d1 = _vtanh(zb[i])
            h[i] = t
            h1[i] = d1
            h2[i] = -2.0 * t * d1
    elif code == 2:
        for i in range(nbp):
            ex = _vexp(-zb[i])  # inf for very negative z: e = 0, e * ex -> handled below
            e = 1.0 / (1.0 + ex)
            om = ex * e  # 1 - e without cancellation
            om = om if ex < 1e300 else 0.0
            h[i] = e
            h1[i] = e * om
            h2[i] = e * om * (1.0 - 2.0 * e)
    else:
        for i in range(nbp):
            z = zb[i]
            cdf = 0.5 * math.erfc(-z * _INV_SQRT_2)
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
            h[i] = z * cdf
            h1[i] = cdf + z * pdf
            h2[i] = pdf * (2.0 - z * z)


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _dense_fused_k(X, y, rows, gcoef, gint, tau, coef, intercept, var, code, learns_tau,
                   extra, nch, resp, log_p, pmass, psxx, psxy, pval, pgrad, phess, pree,
                   prex):
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    k1 = k - 1
    q = d + 1
    nq = q * (q + 1) // 2
    npar = k1 * q + (1 if learns_tau else 0)
    lam = npar - 1
    # packed (p, v) index of x_p x_v in xx (p <= v < q, row-major upper triangle)
    pv = np.empty((q, q), dtype=np.int64)
    u = 0
    for p in range(q):
        for v in range(p, q):
            pv[p, v] = u
            pv[v, p] = u
            u += 1
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        ta = tau[a]
        inv_t = 1.0 / ta
        xt = np.empty((q, _B))
        xx = np.empty((nq, _B))
        yb = np.empty(_B)
        zb = np.empty(_B)
        h = np.empty((k, _B))
        h1 = np.empty((k, _B))
        h2 = np.empty((k, _B))
        s = np.empty((k, _B))
        e = np.empty((k, _B))
        lw = np.empty((k, _B))
        w = np.empty((k, _B))
        jn = np.empty((k, _B))
        res_b = np.empty((k, _B))
        rb = np.empty((k, _B))
        G = np.empty((k, _B))
        mu = np.empty(_B)
        m = np.empty(_B)
        tot = np.empty(_B)
        lse = np.empty(_B)
        lp = np.empty(_B)
        rowm = np.empty(_B)
        tbar = np.empty(_B)
        cw = np.empty(_B)
        cw2 = np.empty(_B)
        acc_v = 0.0
        acc_g = np.zeros(npar)
        acc_h = np.zeros((npar, npar))
        acc_m = np.zeros(k)
        acc_xx = np.zeros((k, nq))
        acc_xy = np.zeros((k, q))
        acc_ee = np.zeros(k)
        acc_ex = np.zeros((k, q))
        c0 = np.empty(k)
        for j in range(k):
            c0[j] = -0.5 * (_LOG_2PI + math.log(var[a, j]))
        i_end = min(n, (c + 1) * CHUNK)
        for i0 in range(c * CHUNK, i_end, _B):
            nb = min(_B, i_end - i0)
            nbp = (nb + _L - 1) // _L * _L
            _load_x(X, r, i0, nb, nbp, d, xt)
            for i in range(nbp):
                yb[i] = y[r, i0 + i] if i < nb else 0.0
            # gate: activations, logits, log weights, weights
            for j in range(k):
                for i in range(nbp):
                    zb[i] = 0.0
                for p in range(d):
                    cp = gcoef[a, j, p]
                    for i in range(nbp):
                        zb[i] += xt[p, i] * cp
                _activate_block(code, zb, h[j], h1[j], h2[j], nbp)
                b0 = gint[a, j]
                for i in range(nbp):
                    s[j, i] = h[j, i] * inv_t + b0
            _lse_block(s, e, m, tot, lse, k, nbp)
            for i in range(nbp):
                tot[i] = 1.0 / tot[i]
            for j in range(k):
                for i in range(nbp):
                    lw[j, i] = s[j, i] - lse[i]
                    w[j, i] = e[j, i] * tot[i]
            # experts and responsibilities (as the softmax kernel)
            _posterior_block(xt, yb, lw, coef, intercept, var, c0, a, k, d, nb, nbp, mu, res_b,
                             jn, e, m, tot, lp, rb)
            for i in range(nb):
                log_p[a, i0 + i] = lp[i]
                for j in range(k):
                    resp[a, i0 + i, j] = rb[j, i]
            if not extra:
                continue
            _stats_block(xt, xx, yb, rb, cw, k, q, nbp, acc_m, acc_xx, acc_xy)
            for j in range(k):
                for i in range(nbp):
                    cw[i] = rb[j, i] * res_b[j, i]
                acc_ee[j] += _dot(cw, res_b[j], nbp)
                for p in range(q):
                    acc_ex[j, p] += _dot(cw, xt[p], nbp)
            # the gate objective and its derivatives at the current gate
            for i in range(nbp):
                rowm[i] = rb[0, i]
            for j in range(1, k):
                for i in range(nbp):
                    rowm[i] += rb[j, i]
            for j in range(k):
                for i in range(nbp):
                    rj = rb[j, i]
                    cw[i] = rj * lw[j, i] if rj > 0 else 0.0
                acc_v += _sum(cw, nbp)
                for i in range(nbp):
                    G[j, i] = rb[j, i] - rowm[i] * w[j, i]
            for j in range(k1):
                for i in range(nbp):
                    cw[i] = G[j, i] * h1[j, i] * inv_t
                for p in range(d):
                    acc_g[j * q + p] += _dot(cw, xt[p], nbp)
                acc_g[j * q + d] += _sum(G[j], nbp)
            for j in range(k1):
                for l2 in range(j, k1):
                    # -m (w_j delta_jl - w_j w_l), times psi_j psi_l^T
                    for i in range(nbp):
                        cc = -(w[j, i] * w[l2, i])
                        if j == l2:
                            cc += w[j, i]
                        m[i] = -rowm[i] * cc
                    for i in range(nbp):
                        cw[i] = m[i] * h1[j, i] * h1[l2, i] * (inv_t * inv_t)
                        if j == l2:
                            cw[i] += G[j, i] * h2[j, i] * inv_t
                    for p in range(d):
                        for v in range(p if j == l2 else 0, d):
                            acc_h[j * q + p, l2 * q + v] += _dot(cw, xx[pv[p, v]], nbp)
                    for i in range(nbp):
                        cw[i] = m[i] * h1[j, i] * inv_t
                    for p in range(d):
                        acc_h[j * q + p, l2 * q + d] += _dot(cw, xt[p], nbp)
                    if j != l2:
                        for i in range(nbp):
                            cw[i] = m[i] * h1[l2, i] * inv_t
                        for p in range(d):
                            acc_h[j * q + d, l2 * q + p] += _dot(cw, xt[p], nbp)
                    acc_h[j * q + d, l2 * q + d] += _sum(m, nbp)
            if learns_tau:
                # t_j = -h_j / tau; tbar = sum_j w_j t_j
                for i in range(nbp):
                    tbar[i] = 0.0
                    cw2[i] = 0.0
                for j in range(k):
                    for i in range(nbp):
                        tj = -h[j, i] * inv_t
                        tbar[i] += w[j, i] * tj
                        cw2[i] += w[j, i] * tj * tj
                for i in range(nbp):
                    cw2[i] = -rowm[i] * (cw2[i] - tbar[i] * tbar[i])
                for j in range(k):
                    for i in range(nbp):
                        cw[i] = -G[j, i] * h[j, i] * inv_t
                    acc_g[lam] += _sum(cw, nbp)
                    for i in range(nbp):
                        cw2[i] -= cw[i]  # + G_j sigma_j / tau
                acc_h[lam, lam] += _sum(cw2, nbp)
                for j in range(k1):
                    for i in range(nbp):
                        m[i] = -rowm[i] * w[j, i] * (-h[j, i] * inv_t - tbar[i])
                    acc_h[j * q + d, lam] += _sum(m, nbp)
                    for i in range(nbp):
                        cw[i] = (m[i] - G[j, i]) * h1[j, i] * inv_t
                    for p in range(d):
                        acc_h[j * q + p, lam] += _dot(cw, xt[p], nbp)
        if extra:
            for j in range(k):
                pree[a, c, j] = acc_ee[j]
                for p in range(q):
                    prex[a, c, j, p] = acc_ex[j, p]
            _write_stats(acc_m, acc_xx, acc_xy, k, q, a, c, pmass, psxx, psxy)
            pval[a, c] = acc_v
            for i in range(npar):
                pgrad[a, c, i] = acc_g[i]
                for v in range(i, npar):
                    phess[a, c, i, v] = acc_h[i, v]
                    phess[a, c, v, i] = acc_h[i, v]


def fuses(gate, k):
    """Whether :func:`dense_fused_e_step` handles ``gate`` with ``k`` experts: a dense
    temperature or activation gate (built-in activation), ``k >= 2``."""
    from ..gates import TopKGate
    from .numba_gates import gate_code
    return (k > 1 and getattr(gate, "has_temperature", False)
            and not isinstance(gate, TopKGate) and gate.fits_intercept
            and gate_code(gate) is not None)


def _layout_order(k1, d, learns_tau):
    """Kernel order (j, p) with p = d the intercept, then log tau -> pack order
    (:class:`moestats.solvers.ParamLayout`: slopes, intercepts, log tau)."""
    q = d + 1
    order = [j * q + p for j in range(k1) for p in range(d)] + [j * q + d for j in range(k1)]
    if learns_tau:
        order.append(k1 * q)
    return np.asarray(order, dtype=np.int64)


def dense_fused_e_step(gate, X, y, rows, P, extra):
    """E-step of a dense temperature/activation gate in one pass (module docstring).

    Parameters
    ----------
    gate : TemperatureGate or ActivationGate
        With a built-in activation (:func:`fuses`).
    X : ndarray (R, n, d)
    y : ndarray (R, n)
    rows : int64 array (A,)
        The replications to work on.
    P : BatchedParams
        Parameters of all R replications (read at ``rows``).
    extra : bool
        Also return the statistics, the gate objective's derivatives and the
        residual moments.

    Returns
    -------
    resp : ndarray (A, n, k)
    log_p : ndarray (A, n)
    extra : None or tuple
        ``((mass, sxx, sxy), (value, grad, hess), (ree, rex))``: the expert
        statistics, :math:`Q` with its gradient and Hessian in pack order at the
        current gate, and the residual moments :math:`\\sum_i r_{ij}e_{ij}^2`,
        :math:`\\sum_i r_{ij}e_{ij}\\tilde x_i` of the current experts.
    """
    from .numba_gates import gate_code
    c = np.ascontiguousarray
    A, n, d = rows.size, X.shape[1], X.shape[2]
    k = P.gate_coef.shape[1]
    learns_tau = bool(gate.learns_temperature)
    q = d + 1
    npar = (k - 1) * q + int(learns_tau)
    nch = _n_chunks(n)
    mm = nch if extra else 1
    resp = np.empty((A, n, k))
    log_p = np.empty((A, n))
    pmass = np.empty((A, mm, k))
    psxx = np.empty((A, mm, k, q, q))
    psxy = np.empty((A, mm, k, q))
    pval = np.empty((A, mm))
    pgrad = np.empty((A, mm, npar))
    phess = np.empty((A, mm, npar, npar))
    pree = np.empty((A, mm, k))
    prex = np.empty((A, mm, k, q))
    tau = c(P.temperature[rows], dtype=np.float64)
    _dense_fused_k(X, y, rows, c(P.gate_coef[rows], dtype=np.float64),
                   c(P.gate_intercept[rows], dtype=np.float64), tau,
                   c(P.expert_coef[rows], dtype=np.float64),
                   c(P.expert_intercept[rows], dtype=np.float64),
                   c(P.expert_var[rows], dtype=np.float64), gate_code(gate), learns_tau,
                   bool(extra), nch, resp, log_p, pmass, psxx, psxy, pval, pgrad, phess,
                   pree, prex)
    if not extra:
        return resp, log_p, None
    order = _layout_order(k - 1, d, learns_tau)
    value = pval.sum(axis=1)
    value = np.where(np.isnan(value), -np.inf, value)
    grad = pgrad.sum(axis=1)[:, order]
    hess = phess.sum(axis=1)[:, order[:, None], order[None, :]]
    stats = (pmass.sum(axis=1), psxx.sum(axis=1), psxy.sum(axis=1))
    return resp, log_p, (stats, (value, grad, hess), (pree.sum(axis=1), prex.sum(axis=1)))
