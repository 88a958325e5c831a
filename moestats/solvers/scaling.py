"""Standardised coordinates: the solvers work on data of unit scale.

With per-column scales :math:`S_c > 0` and centres :math:`\\mu_c` of ``X`` and a scale
:math:`s_y` and centre :math:`\\mu_y` of ``y``, the solvers see
:math:`\\tilde x = (x - \\mu_x)/S` and :math:`\\tilde y = (y - \\mu_y)/s_y`. The map between
parameters is exact (a bijection of the parameter space, so maxima map to maxima):

.. math::

    a = s_y\\,\\tilde a / S,\\quad b = \\mu_y + s_y\\tilde b - a^\\top\\mu_x,\\quad
    \\nu = s_y^2\\,\\tilde\\nu,\\quad \\beta_1 = \\tilde\\beta_1 / S,\\quad
    \\beta_0 = \\tilde\\beta_0 - \\beta_1^\\top\\mu_x/\\tau,

and :math:`\\ell = \\tilde\\ell - n\\log s_y`. The gate can absorb a shift of ``x``
only when its logits are affine in ``x`` with free intercepts (softmax, temperature:
``Gate.shift_invariant``); for the other families, and whenever the parameter space
bounds coordinates (a box is a box only under pure scaling), ``x`` is scaled but not
centred (and then ``y`` neither). Scales are robust (median absolute deviation, falling
back to the root mean square), so one outlier does not set them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..params import MoEParams
from .space import ParameterSpace

__all__ = ["Standardizer"]


def _robust_scale(a):
    """Per-column scale: 1.4826 MAD, else the RMS about the median, else 1."""
    med = np.median(a, axis=0)
    dev = np.abs(a - med)
    scale = 1.4826 * np.median(dev, axis=0)
    top = np.max(dev, axis=0)  # the RMS without squaring |dev| (no overflow beyond 1e154)
    rms = top * np.sqrt(np.mean((dev / np.where(top > 0, top, 1.0)) ** 2, axis=0))
    scale = np.where(scale > 0, scale, rms)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return scale, med


class Standardizer:
    """Map data, parameters, variance floors and parameter spaces to unit scale and back.

    Parameters
    ----------
    X : ndarray (n, d)
    y : ndarray (n,)
    center : bool
        Centre ``x`` and ``y`` (only valid for shift-invariant gates and unbounded
        coordinates; see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(500, np.random.default_rng(0))
    >>> st = Standardizer(X * 1e4, y, center=True)
    >>> inner = st.to_internal(truth.params.replace(gate_coef=truth.params.gate_coef / 1e4,
    ...                                             expert_coef=truth.params.expert_coef / 1e4))
    >>> back = st.to_user(inner)
    >>> bool(np.allclose(back.expert_coef * 1e4, truth.params.expert_coef))
    True
    """

    def __init__(self, X, y, center):
        self.x_scale, x_med = _robust_scale(X)
        y_scale, y_med = _robust_scale(y[:, None])
        self.y_scale = float(y_scale[0])
        self.x_center = x_med if center else np.zeros(X.shape[1])
        self.y_center = float(y_med[0]) if center else 0.0
        self.n = X.shape[0]

    def data(self, X, y):
        """``(X, y)`` in standardised coordinates."""
        return (X - self.x_center) / self.x_scale, (y - self.y_center) / self.y_scale

    def to_user(self, p: MoEParams) -> MoEParams:
        """Parameters fitted on standardised data, on the user's scale."""
        S, sy = self.x_scale, self.y_scale
        gate_coef = p.gate_coef / S
        expert_coef = sy * p.expert_coef / S
        return MoEParams(
            gate_coef, p.gate_intercept - gate_coef @ self.x_center / p.temperature,
            expert_coef, self.y_center + sy * p.expert_intercept - expert_coef @ self.x_center,
            sy * sy * p.expert_var, p.temperature)

    def to_internal(self, p: MoEParams) -> MoEParams:
        """Inverse of :meth:`to_user`."""
        S, sy = self.x_scale, self.y_scale
        return MoEParams(
            p.gate_coef * S, p.gate_intercept + p.gate_coef @ self.x_center / p.temperature,
            p.expert_coef * S / sy,
            (p.expert_intercept + p.expert_coef @ self.x_center - self.y_center) / sy,
            p.expert_var / (sy * sy), p.temperature)

    def log_likelihood_offset(self) -> float:
        """:math:`-n\\log s_y`: add to a standardised log-likelihood to get the user's."""
        return -self.n * float(np.log(self.y_scale))

    def var_floor(self, floor) -> float:
        """A variance floor on the user's scale, in standardised units."""
        return float(floor) / self.y_scale ** 2

    def space(self, space: ParameterSpace) -> ParameterSpace:
        """A parameter space for the standardised problem.

        Variance bounds scale exactly. A coordinate bound scales differently per
        block (``a`` by :math:`S/s_y`, ``b`` by :math:`1/s_y`, :math:`\\beta_1` by
        :math:`S`), which one number cannot express: with a finite ``coef_bound`` the
        data must be of unit scale already (the estimator then does not rescale).
        """
        sy2 = self.y_scale ** 2
        return dataclasses.replace(
            space, var_bounds=(space.var_bounds[0] / sy2, space.var_bounds[1] / sy2))

    @classmethod
    def identity(cls, n_samples, n_features):
        """The standardiser that changes nothing."""
        st = cls.__new__(cls)
        st.x_scale = np.ones(n_features)
        st.x_center = np.zeros(n_features)
        st.y_scale, st.y_center, st.n = 1.0, 0.0, n_samples
        return st
