"""Theory slopes of the per-cell parameter errors."""

from __future__ import annotations


#: the parameter blocks whose cell exponent is that of the gate slope (the user guide's *Simulations*)
_SLOW_BLOCKS = ("gate_coef", "expert_intercept", "temperature", "gate_slope_over_temperature")
#: the blocks at the faster exponent 1/rbar of a cell with m >= 2 atoms
_FAST_BLOCKS = ("expert_coef", "expert_var")


def cell_theory_slope(block, size):
    """Theory slope of the error of one parameter block of a Voronoi cell.

    Papers.md section 5 ([D]): a true atom matched by one fitted atom has all
    its parameter errors at :math:`n^{-1/2}`; matched by :math:`m \\ge 2`
    fitted atoms, :math:`\\beta_1` and :math:`b` at :math:`n^{-1/(2\\bar r(m))}`
    and :math:`a` and :math:`\\nu` at :math:`n^{-1/\\bar r(m)}`, with
    :math:`\\bar r(2) = 4`, :math:`\\bar r(3) = 6`; the cell's weight sum
    :math:`\\sum_{i \\in A_j} e^{\\beta_{0i}}` at :math:`n^{-1/2}` whatever
    :math:`m`. The temperature (and :math:`\\beta_1/\\tau`) takes the exponent of
    :math:`\\beta_1` (the user guide's *Simulations*, losses and gauges).

    ============ ========= =========== ===========
    block         m = 1     m = 2       m = 3
    ============ ========= =========== ===========
    β₁, b, τ      −1/2      −1/8        −1/12
    a, ν          −1/2      −1/4        −1/6
    weight        −1/2      −1/2        −1/2
    ============ ========= =========== ===========

    Parameters
    ----------
    block : str
        ``"gate_coef"``, ``"expert_coef"``, ``"expert_intercept"``,
        ``"expert_var"``, ``"temperature"``, ``"gate_slope_over_temperature"``
        or ``"weight"``.
    size : int
        Cell size :math:`m = |A_j|` (0: an empty cell).

    Returns
    -------
    float or None
        None where the theory gives no rate: an empty cell (its weight error is
        the true weight; its parameters are undefined), and :math:`m \\ge 4`
        (only :math:`\\bar r(m) \\ge 7` is known) for the parameter blocks.

    Examples
    --------
    >>> from moestats.rates import cell_theory_slope
    >>> cell_theory_slope("gate_coef", 2), cell_theory_slope("expert_var", 2)
    (-0.125, -0.25)
    >>> cell_theory_slope("expert_intercept", 3), cell_theory_slope("expert_coef", 3)
    (-0.08333333333333333, -0.16666666666666666)
    >>> cell_theory_slope("weight", 3), cell_theory_slope("gate_coef", 1)
    (-0.5, -0.5)
    >>> cell_theory_slope("gate_coef", 4) is None
    True
    """
    if block not in _SLOW_BLOCKS + _FAST_BLOCKS + ("weight",):
        raise ValueError(f"unknown parameter block {block!r}; known: "
                         f"{_SLOW_BLOCKS + _FAST_BLOCKS + ('weight',)}")
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise ValueError(f"size must be an integer >= 0, got {size!r}")
    size = int(size)
    if size == 0:
        return None
    if block == "weight" or size == 1:
        return -0.5
    rbar = {2: 4, 3: 6}.get(size)  # [D, Lemma 1]; moestats.losses.rbar
    if rbar is None:
        return None
    return -1.0 / (2 * rbar) if block in _SLOW_BLOCKS else -1.0 / rbar
