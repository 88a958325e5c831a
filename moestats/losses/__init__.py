"""Voronoi losses, per-parameter errors and the density error (the user guide's *Simulations*, losses and gauges).

The theory measures a fitted model through its mixing measure

.. math::

    G = \\sum_{i=1}^{k} e^{\\beta_{0i}}\\, \\delta_{\\theta_i}, \\qquad
    \\theta_i = (\\beta_{1i}, a_i, b_i, \\nu_i)
    \\quad [\\,\\text{and } \\tau \\text{ for learned temperatures}\\,],

compared with the true :math:`G_* = \\sum_{j=1}^{k_*} e^{\\beta^*_{0j}}
\\delta_{\\theta^*_j}` through the Voronoi cells

.. math::

    A_j = \\{\\, i : j = \\operatorname{argmin}_l \\|\\theta_i - \\theta^*_l\\| \\,\\},
    \\qquad
    \\|\\theta_i - \\theta^*_l\\| = \\|\\Delta\\beta_{1il}\\| + \\|\\Delta a_{il}\\|
        + |\\Delta b_{il}| + |\\Delta\\nu_{il}|
    \\;[\\, + |\\hat\\tau - \\tau^*| \\,],

ties going to the lower :math:`j`.

Every function here is a pure function of its arguments. A model can be given
as a :class:`~moestats.params.MoEParams` or as a mapping with the same keys
(``gate_coef``, ``gate_intercept``, ``expert_coef``, ``expert_intercept``,
``expert_var`` and optionally ``temperature``); the losses never use the
reference-expert convention, so the atoms may come in any order (a mapping
need not have its reference expert last; the true reference of the slope
gauges is the true atom with zero gate parameters, wherever it is, or the
one given as ``reference``).

Temperature modes (argument ``learned_temperature`` / ``include_temperature``):

``False``
    atoms :math:`(\\beta_1, a, b, \\nu)`; the temperature is ignored.
``True``
    atoms :math:`(\\beta_1, a, b, \\nu, \\tau)`: :math:`|\\hat\\tau - \\tau^*|` is
    added to every atom's bracket, with the exponent of :math:`\\beta_1`.
``"ratio"``
    atoms :math:`(\\beta_1/\\tau, a, b, \\nu)`: the identifiable gate slope of the
    (identity-activation) temperature gate replaces :math:`(\\beta_1, \\tau)`,
    in the cells and in the brackets (exponent of :math:`\\beta_1`).

Gauge. The fitted gate parameters are identified only up to a common shift
:math:`(t_1, t_0)` added to every expert's :math:`(\\beta_{1j}, \\beta_{0j})`
(softmax, top-K and temperature gates; only :math:`t_0` for activation gates,
whose logits :math:`\\sigma(\\beta_1^\\top x)/\\tau + \\beta_0` are not linear in
:math:`\\beta_1`) and up to relabelling; a top-1 gate also up to a common scale
:math:`c > 0` of the slopes. The losses of the user guide's *Simulations*, losses and gauges hold in the
truth's gauge, so every loss first brings the fit there
(:func:`align_to_truth`; argument ``gauge``, named by :func:`loss_gauge`):

``"slope"`` (default)
    :math:`t_1` so that the fitted atoms in the true reference's cell carry the
    reference's slope (within-cell mass-weighted mean), found as a fixed point
    of (cells -> shift -> cells) from the gauge-free cells and from every fitted
    atom as the reference's anchor, the fixed point of smallest :math:`D_1`
    kept; :math:`t_0` so that the fitted measure has the true total mass.
    Invariant to relabelling and to common shifts, zero at every
    reparametrisation of the truth (including split atoms). With
    ``slope_gauge=False`` (activation gates) only :math:`t_0` is fixed and the
    gauge is ``"mass"``.
``"slope+unit-norm"``
    The identifiable top-1 form: the gate slopes are replaced by the relative
    slopes :math:`(\\beta_{1i} - m)/N` of unit total norm (the user guide's *The model and its gates*;
    :func:`align_to_truth` gives :math:`m`, :math:`N`), in the cells and in the
    brackets; invariant to :math:`\\beta_1 \\to c\\beta_1 + t_1`.
``"reference"``
    Papers.md section 4 as written: :math:`e^{\\beta_{0i}}` against
    :math:`e^{\\beta^*_{0j}}` with both models in the reference-expert
    convention, raw slopes. Not invariant: a fit with the true density whose
    fitted reference is another true expert scores huge losses (labels
    switched, :math:`D_1 \\approx 7.8 \\cdot 10^4` on the [D] truth).
``"intercept"``
    The infimum over :math:`t_0` (fitted weights multiplied by :math:`s > 0`),
    raw slopes; see :func:`voronoi_loss`. Its infimum includes the limit
    :math:`s \\to 0`, where every cell total is :math:`e^{\\beta^*_{0j}}`, so a
    poor fit saturates at :math:`\\sum_j e^{\\beta^*_{0j}}`.
``"mass"``
    :math:`t_0` only, by the true total mass,
    :math:`w_i = e^{\\beta_{0i}} \\sum_j e^{\\beta^*_{0j}} / \\sum_l e^{\\beta_{0l}}`,
    raw slopes.

Examples
--------
>>> from moestats import MoEParams
>>> from moestats.losses import d1_loss, loss_gauge
>>> truth = MoEParams([[25.0], [0.0]], [-8.0, 0.0], [[-20.0], [20.0]],
...                   [15.0, -5.0], [0.09, 0.16])
>>> switched = MoEParams([[-25.0], [0.0]], [8.0, 0.0], [[20.0], [-20.0]],
...                      [-5.0, 15.0], [0.16, 0.09])   # same density
>>> d1_loss(switched, truth) < 1e-12, loss_gauge()
(True, 'slope')
"""

from __future__ import annotations

from .alignment import align_to_truth
from .atoms import rbar, voronoi_cells
from .density import density_error
from .gauge import DEFAULT_GAUGE, GAUGES, GaugeAlignment, loss_gauge
from .parameter_errors import cell_parameter_errors, parameter_errors
from .reflection import equivalent_parametrisations
from .voronoi import d1_loss, d2_loss, voronoi_loss

__all__ = [
    "equivalent_parametrisations",
    "rbar",
    "voronoi_cells",
    "voronoi_loss",
    "d1_loss",
    "d2_loss",
    "parameter_errors",
    "cell_parameter_errors",
    "density_error",
    "align_to_truth",
    "GaugeAlignment",
    "loss_gauge",
    "GAUGES",
    "DEFAULT_GAUGE",
]
