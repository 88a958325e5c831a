"""Gauge fixing: bring a fitted model to the truth's gauge before measuring it
(the user guide's *The model and its gates* and *Simulations*; package docstring: :mod:`moestats.losses`).

The softmax-type densities (softmax, top-K, temperature with the identity
activation) are unchanged when the same :math:`(t_1, t_0)` is added to every
expert's :math:`(\\beta_{1j}, \\beta_{0j})`, and by any relabelling of the
experts; a top-1 density is also unchanged when every :math:`\\beta_{1j}` is
multiplied by the same :math:`c > 0`. The Voronoi losses are written in the
truth's gauge, so the fit is first moved there
(:func:`~moestats.losses.align_to_truth`, module ``alignment``). This module
names the gauges and holds the pieces the alignment shares with the losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy.special import logsumexp


__all__ = ["GAUGES", "DEFAULT_GAUGE", "loss_gauge", "GaugeAlignment"]

#: every gauge the losses accept (see :func:`loss_gauge`)
GAUGES = ("slope", "slope+unit-norm", "reference", "intercept", "mass")
#: the gauge of every loss by default
DEFAULT_GAUGE = "slope"
_SLOPE_GAUGES = ("slope", "slope+unit-norm")


def loss_gauge(gauge=DEFAULT_GAUGE, *, slope_gauge=True):
    """The name of the gauge a loss call applies (for the tables and figures).

    ``gauge`` is what the caller asks for; ``slope_gauge`` says whether a common
    shift :math:`t_1` of the gate slopes leaves the fitted density unchanged
    (logits linear in :math:`\\beta_1`: softmax, top-K, temperature gate). Where
    it does not (activation gates :math:`\\sigma(\\beta_1^\\top x)/\\tau +
    \\beta_0` with a non-linear :math:`\\sigma`), ``"slope"`` fixes only
    :math:`t_0` and is the ``"mass"`` gauge.

    ===================== ======================================================
    name                  gauge
    ===================== ======================================================
    ``"slope"``           :math:`t_1`: the fitted atoms of the true reference's
                          cell carry its slope (mass-weighted mean);
                          :math:`t_0`: the fitted measure has the true total
                          mass (:func:`~moestats.losses.align_to_truth`)
    ``"slope+unit-norm"`` the top-1 form: gate slopes replaced by relative
                          slopes of unit total norm, cells and weights as
                          ``"slope"``
    ``"reference"``       none: both models in the reference-expert convention
    ``"intercept"``       infimum of the loss over :math:`t_0`
    ``"mass"``            :math:`t_0` only, by the true total mass
    ===================== ======================================================

    Parameters
    ----------
    gauge : str, default="slope"
        One of :data:`GAUGES`.
    slope_gauge : bool, default=True
        Whether the common slope shift is a symmetry of the fitted model.

    Returns
    -------
    str
        The gauge actually applied.

    Raises
    ------
    ValueError
        An unknown gauge; ``"slope+unit-norm"`` with ``slope_gauge=False``.

    Examples
    --------
    >>> from moestats.losses import loss_gauge
    >>> loss_gauge()
    'slope'
    >>> loss_gauge("slope", slope_gauge=False)  # activation gates
    'mass'
    >>> loss_gauge("slope+unit-norm")
    'slope+unit-norm'
    """
    if gauge not in GAUGES:
        raise ValueError(f"gauge must be one of {GAUGES}, got {gauge!r}")
    if not isinstance(slope_gauge, (bool, np.bool_)):
        raise ValueError(f"slope_gauge must be True or False, got {slope_gauge!r}")
    if gauge in _SLOPE_GAUGES and not slope_gauge:
        if gauge == "slope+unit-norm":
            raise ValueError(
                "gauge 'slope+unit-norm' (top-1 gates) needs the slope gauge freedom; "
                "got slope_gauge=False (logits non-linear in beta_1)")
        return "mass"
    return gauge


@dataclass(frozen=True)
class GaugeAlignment:
    """A fitted model brought to the truth's gauge, with its Voronoi cells.

    Attributes
    ----------
    gauge : str
        The gauge applied (:func:`loss_gauge`).
    reference : int or None
        Index of the true reference atom (slope gauges).
    fit_blocks, true_blocks : dict of ndarray
        Parameter blocks, shapes (k, width) and (k*, width), in the gauge:
        the gate block (first key) is shifted (``"slope"``) or normalised
        (``"slope+unit-norm"``); the others are as given.
    distances : dict of ndarray
        Per-block distances ``||block_i - block*_j||``, shape (k, k*).
    assignment : ndarray of int, shape (k,)
        True atom of every fitted atom.
    cells : list of ndarray of int
        :math:`A_j`, the fitted atoms of true atom ``j``.
    slope_shift : ndarray of shape (d,)
        :math:`t_1`, in units of :math:`\\beta_1`: the gauge's gate slopes are
        :math:`\\beta_{1i} + t_1` (``"slope"``; divided by :math:`\\hat\\tau` in
        the ``"ratio"`` mode) or :math:`(\\beta_{1i} + t_1) / N`
        (``"slope+unit-norm"``, :math:`t_1 = -m`); zeros in the other gauges.
    slope_scale : float
        :math:`N` of the unit-norm form, in units of :math:`\\beta_1` (1 in the
        other gauges, and where :math:`N = 0`, whose relative slopes are 0).
    log_mass_shift : float
        :math:`t_0` added to every fitted :math:`\\beta_{0i}` by the mass gauge
        (0 when no intercept shift is applied).
    fixed_point : bool
        Whether the chosen shift is a fixed point of the cell/shift iteration.
    """

    gauge: str
    reference: int | None
    fit_blocks: dict
    true_blocks: dict
    distances: dict
    assignment: np.ndarray
    cells: list
    slope_shift: np.ndarray
    slope_scale: float
    log_mass_shift: float
    fixed_point: bool


# ---------------------------------------------------------------- helpers
def _true_reference(tru, reference):
    """The true reference atom: given, else the one with the smallest
    :math:`\\|\\beta^*_{1j}\\| + |\\beta^*_{0j}|` (0 in the reference convention)."""
    k_true = tru["gate_coef"].shape[0]
    if reference is None:
        score = np.linalg.norm(tru["gate_coef"], axis=1) + np.abs(tru["gate_intercept"])
        return int(np.argmin(score))
    if isinstance(reference, bool) or not isinstance(reference, Integral) \
            or not -k_true <= reference < k_true:
        raise ValueError(
            f"reference must be None or a true atom index in [0, {k_true}), got {reference!r}")
    return int(reference) % k_true


def _relative(b0, cell):
    """:math:`e^{\\beta_{0i}} / \\sum_{l \\in A} e^{\\beta_{0l}}` on a cell."""
    return np.exp(b0[cell] - logsumexp(b0[cell]))


def _mass_weights(b0, b0_true):
    """:math:`w_i = e^{\\beta_{0i} + t_0}`, :math:`t_0 = \\log\\sum_j e^{\\beta^*_{0j}}
    - \\log\\sum_l e^{\\beta_{0l}}` (exactly :math:`e^{\\beta_{0i}}` when the
    intercepts are the true ones; finite for any intercepts)."""
    return np.exp(b0 + (logsumexp(b0_true) - logsumexp(b0)))


def _weights(b0, b0_true, cells, relative):
    """Atom weights, cell sums and true weights: relative within cells
    (:math:`w^*_j = 1`), or mass-normalised (:math:`\\sum_i w_i = \\sum_j w^*_j`)."""
    if relative:
        w = np.zeros_like(b0)
        for cell in cells:
            if cell.size:
                w[cell] = _relative(b0, cell)
        w_true = np.ones(len(cells))
    else:
        w, w_true = _mass_weights(b0, b0_true), np.exp(b0_true)
    return w, np.array([w[cell].sum() for cell in cells]), w_true


def _d1_criterion(distances, assignment, cells, b0, b0_true, relative):
    """:math:`D_1` (mass or relative weights) of one candidate gauge."""
    total = sum(distances.values())
    matched = total[np.arange(total.shape[0]), assignment]
    w, sums, target = _weights(b0, b0_true, cells, relative)
    return float(np.dot(w, matched) + np.abs(sums - target).sum())
