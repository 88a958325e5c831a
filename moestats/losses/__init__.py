"""Voronoi losses, per-parameter errors and the density error (papers.md section 4).

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
need not have its reference expert last).

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

Gauge. The losses of papers.md section 4 compare :math:`e^{\\beta_{0i}}` with
:math:`e^{\\beta^*_{0j}}` in the reference gauge (last expert's
:math:`\\beta_0 = 0` in both models), as written there; that is the default
``gauge="reference"``. The softmax density only identifies the intercepts up to
a common shift :math:`t_0`, and when the true **reference** atom is fitted by
two or more atoms, the reference-gauge weight term does not vanish at a fitted
model with exactly the true density (e.g. truth weights
:math:`(e^{\\beta^*_{01}}, 1)`, fitted :math:`(e^{\\beta^*_{01}}(1+c), c, 1)`
gives weight term :math:`c\\,(1 + e^{\\beta^*_{01}})`). ``gauge="intercept"``
takes the infimum over :math:`t_0` instead (fitted weights multiplied by
:math:`s = e^{t_0} > 0`); see :func:`voronoi_loss`. Its infimum includes the
limit :math:`s \to 0`, where every cell total is :math:`e^{\beta^*_{0j}}`, so a
poor fit saturates at :math:`\\sum_j e^{\\beta^*_{0j}}`. ``gauge="mass"`` fixes the
shift instead by giving the fitted measure the true total mass,
:math:`w_i = e^{\\beta_{0i}} \\sum_j e^{\\beta^*_{0j}} / \\sum_l e^{\\beta_{0l}}`:
translation invariant, zero at the truth and in the example above, computed
stably for any intercepts (the simulations use it).
"""

from __future__ import annotations

from .atoms import rbar, voronoi_cells
from .density import density_error
from .parameter_errors import parameter_errors
from .voronoi import d1_loss, d2_loss, voronoi_loss

__all__ = [
    "rbar",
    "voronoi_cells",
    "voronoi_loss",
    "d1_loss",
    "d2_loss",
    "parameter_errors",
    "density_error",
]
