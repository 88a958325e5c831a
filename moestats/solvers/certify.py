"""The stationarity certificate of a fit: how much could further ascent still gain?

At an endpoint :math:`\\hat\\theta` with gradient :math:`g` and Hessian :math:`H` of the
observed log-likelihood, restricted to the coordinates that are free (not held at a
bound of the parameter space by a gradient pointing outwards), the second-order model
of the likelihood predicts the remaining gain

.. math::

    \\Delta = \\tfrac12\\, g^\\top (M + \\mu I)^{-1} g, \\qquad M = -H,\\quad
    \\mu = \\max(0, -\\lambda_{\\min}(M)) + \\epsilon\\,\\max(1, \\lambda_{\\max}(M)),

the Newton decrement with the observed information :math:`M`, regularised by
:math:`\\mu` in flat (or ascending) directions (:math:`\\epsilon` = ``FLAT_REGULARISATION``).
A fit is **certified** when :math:`\\Delta \\le` ``certify_tol`` (nats) and :math:`M`
has no direction of ascent: either :math:`\\lambda_{\\min}(M) \\ge -` ``CURVATURE_TOL``
:math:`\\max(1, \\lambda_{\\max}(M))` (rounding), or the likelihood itself, probed
along the eigenvector of the negative eigenvalue in both directions over steps whose
predicted curvature gain runs from ``certify_tol`` to :math:`10^6` times it, never rose
by more than ``certify_tol`` (:func:`moestats.solvers.finish.probe_negative_curvature`).
Such probes are needed along directions the data do not identify (e.g. the scale of
:math:`(\\beta_1, \\tau)` of a learned temperature with the identity activation), where
the curvature of a straight line is of the order of the gradient. The result is a local
maximum of the likelihood over the parameter space up to ``certify_tol``.
A relative change of the likelihood below a tolerance is *not* such evidence: in
singular regimes EM makes tiny steps far from the maximum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Certificate", "certify", "free_coordinates", "negative_curvature",
           "FLAT_REGULARISATION", "CURVATURE_TOL"]

#: relative regularisation of the observed information in flat directions
FLAT_REGULARISATION = 1e-8
#: relative size of a negative eigenvalue of the observed information taken as rounding
CURVATURE_TOL = 1e-7


@dataclass
class Certificate:
    """What a fit's endpoint shows about its stationarity.

    Attributes
    ----------
    certified : bool
        ``predicted_gain <= certify_tol`` and no direction of ascent (see module).
    predicted_gain : float
        :math:`\\Delta`, nats the second-order model still predicts.
    grad_norm : float
        Largest absolute entry of the projected gradient (free coordinates).
    min_eigenvalue, max_eigenvalue : float
        Extreme eigenvalues of the observed information on the free coordinates.
    n_active_bounds : int
        Coordinates held at a bound of the parameter space.
    passes : int
        Passes over the data the fit used (E-steps, derivative and value evaluations).
    certify_tol : float
    reason : str
        Why the fit is not certified ("" when it is).
    boundary_gain : float or None
        Top-K: what the last exact search of the selection boundaries gained (the gate
        slopes are certified by these searches, see :mod:`moestats.solvers.finish`).

    Examples
    --------
    >>> import numpy as np
    >>> cert = certify(np.array([[1e-4, 0.0]]), -np.eye(2)[None] * 100,
    ...                np.zeros((1, 2)), np.full(2, -np.inf), np.full(2, np.inf), 1e-3)[0]
    >>> cert.certified, round(cert.predicted_gain, 12)
    (True, 5e-11)
    """

    certified: bool
    predicted_gain: float
    grad_norm: float
    min_eigenvalue: float
    max_eigenvalue: float
    n_active_bounds: int
    passes: int
    certify_tol: float
    reason: str = ""
    boundary_gain: float | None = None

    def as_dict(self) -> dict:
        """Plain-Python (JSON-serialisable) form."""
        return asdict(self)


def free_coordinates(theta, grad, lo, hi):
    """Boolean (A, p): coordinates not held at a bound by a gradient pointing outwards."""
    span = np.maximum(1.0, np.abs(theta))
    at_lo = (theta <= lo + 1e-12 * span) & (grad <= 0)
    at_hi = (theta >= hi - 1e-12 * span) & (grad >= 0)
    return ~(at_lo | at_hi)


def decrement(grad, hess, free):
    """Regularised Newton decrement and the information's spectrum on ``free``.

    Returns ``(gain, min_eig, max_eig, grad_norm)``, each of shape (A,).
    """
    A = grad.shape[0]
    gain, min_eig, max_eig, gnorm = (np.zeros(A) for _ in range(4))
    for a in range(A):
        f = free[a]
        if not f.any():
            continue
        g = grad[a, f]
        M = -hess[a][np.ix_(f, f)]
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(M))):
            gain[a] = min_eig[a] = max_eig[a] = gnorm[a] = np.nan
            continue
        eig, vec = np.linalg.eigh(M)
        min_eig[a], max_eig[a] = eig[0], eig[-1]
        mu = max(0.0, -eig[0]) + FLAT_REGULARISATION * max(1.0, eig[-1])
        gain[a] = 0.5 * float(np.sum((vec.T @ g) ** 2 / (eig + mu)))
        gnorm[a] = float(np.abs(g).max())
    return gain, min_eig, max_eig, gnorm


def negative_curvature(grad, hess, free):
    """Most negative eigenvalue of the information on ``free`` and its eigenvector.

    Returns ``(eig (A,), direction (A, p))``; the direction is 0 off ``free`` and where
    the curvature is within rounding (:data:`CURVATURE_TOL`).
    """
    A, p = grad.shape
    eig_out = np.zeros(A)
    direction = np.zeros((A, p))
    for a in range(A):
        f = free[a]
        if not f.any():
            continue
        M = -hess[a][np.ix_(f, f)]
        if not np.all(np.isfinite(M)):
            continue
        eig, vec = np.linalg.eigh(M)
        eig_out[a] = eig[0]
        if eig[0] < -CURVATURE_TOL * max(1.0, eig[-1]):
            direction[a, f] = vec[:, 0]
    return eig_out, direction


def certify(grad, hess, theta, lo, hi, certify_tol, passes=None, probed=None):
    """Certificates of A endpoints.

    Parameters
    ----------
    grad : ndarray (A, p)
    hess : ndarray (A, p, p)
        Gradient and Hessian of the observed log-likelihood in the free-parameter vector.
    theta : ndarray (A, p)
    lo, hi : ndarray (p,) or (A, p)
        Box of the parameter space.
    certify_tol : float
    passes : sequence of int, optional
    probed : ndarray (A,) of bool, optional
        Replications whose negative curvature the likelihood itself showed to be no
        direction of ascent (see the module docstring).

    Returns
    -------
    list of Certificate
    """
    free = free_coordinates(theta, grad, lo, hi)
    gain, min_eig, max_eig, gnorm = decrement(grad, hess, free)
    out = []
    for a in range(grad.shape[0]):
        ok_gain = bool(gain[a] <= certify_tol)
        ok_curv = bool(min_eig[a] >= -CURVATURE_TOL * max(1.0, max_eig[a])) or bool(
            probed is not None and probed[a])
        finite = bool(np.isfinite(gain[a]))
        reason = "" if (ok_gain and ok_curv and finite) else (
            "non-finite derivatives" if not finite else
            f"the second-order model predicts {gain[a]:.3g} nats more (tol {certify_tol:g})"
            if not ok_gain else
            f"the observed information has a negative eigenvalue {min_eig[a]:.3g} "
            "and the likelihood rises along it (a saddle, not a maximum)")
        out.append(Certificate(
            certified=not reason, predicted_gain=float(gain[a]), grad_norm=float(gnorm[a]),
            min_eigenvalue=float(min_eig[a]), max_eigenvalue=float(max_eig[a]),
            n_active_bounds=int((~free[a]).sum()),
            passes=int(passes[a]) if passes is not None else 0,
            certify_tol=float(certify_tol), reason=reason))
    return out
