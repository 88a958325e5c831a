"""Checks of the estimator's input that name the fault (issue 12, item 7).

Data whose squares leave float64's range (:func:`check_data_scale`), a user activation
that does not return finite arrays of its input's shape (:func:`check_activation`,
:func:`check_activation_output`) or whose derivative is wrong
(:func:`check_activation_derivative`), ``init`` parameters the gate overrides
(:func:`reconcile_init_params`) and a warm start the new hyperparameters cannot use
(:func:`warm_start_usable`). Only NumPy is imported here: the gates use it too.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["check_data_scale", "check_activation", "check_activation_output",
           "check_activation_derivative", "reconcile_init_params", "warm_start_usable",
           "check_hyperparameters"]

_MAX = float(np.finfo(np.float64).max)
_TINY = float(np.finfo(np.float64).tiny)
#: |y| beyond this: the squared residuals (y - a^T x - b)^2 of the likelihood overflow
Y_LIMIT = float(np.sqrt(_MAX) / 4.0)
#: a scale of y below this: its square (the scale of the variances) underflows
Y_SCALE_MIN = float(np.sqrt(_TINY))
#: a scale of an X column below this: the coefficients (about 1/scale) overflow
X_SCALE_MIN = 1e-305
#: points of the activation checks; off 0 and the integers, where a kink (ReLU) may sit
CHECK_POINTS = np.linspace(-3.0, 3.0, 7) + 0.137


def _robust_scale(a):
    """1.4826 MAD per column, else the RMS about the median (computed without overflow)."""
    dev = np.abs(a - np.median(a, axis=0))
    scale = 1.4826 * np.median(dev, axis=0)
    top = np.max(dev, axis=0)
    safe = np.where(top > 0, top, 1.0)
    rms = top * np.sqrt(np.mean((dev / safe) ** 2, axis=0))
    return np.where(scale > 0, scale, rms)


def check_data_scale(X, y):
    """Refuse data whose scale float64 cannot carry through the fit.

    The solvers work in standardised coordinates, so ``X`` of any finite spread fits
    (the coefficients scale back by 1/scale). ``y`` enters the likelihood squared on
    the user's scale (the expert variances have y's squared scale), so its values must
    stay below ``sqrt(float64 max) / 4`` (about 3.4e153) and its scale above
    ``sqrt(float64 tiny)`` (about 1.5e-154).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)

    Raises
    ------
    ValueError
        Naming the array, the value and the remedy (rescale).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 5)[:, None]
    >>> check_data_scale(X * 1e200, X[:, 0])
    >>> check_data_scale(X, X[:, 0] * 1e200)
    Traceback (most recent call last):
    ...
    ValueError: y has values up to 1e+200 in magnitude: the likelihood squares them ...
    """
    with np.errstate(over="ignore", invalid="ignore"):
        top = float(np.max(np.abs(y))) if y.size else 0.0
        if top > Y_LIMIT:
            raise ValueError(
                f"y has values up to {top:.3g} in magnitude: the likelihood squares them "
                f"(and the expert variances have y's squared scale), which overflows float64 "
                f"beyond {Y_LIMIT:.2g}; rescale y, e.g. y / {top:.0e}")
        scale = float(_robust_scale(y[:, None])[0]) if y.size else 0.0
        if 0 < scale < Y_SCALE_MIN:
            raise ValueError(
                f"y has scale {scale:.3g}: its square (the scale of the expert variances) "
                f"underflows float64 below {Y_SCALE_MIN:.2g}; rescale y, e.g. y / {scale:.0e}")
        if X.size:
            span = np.max(X, axis=0) - np.min(X, axis=0)
            bad = np.flatnonzero(~np.isfinite(span))
            if bad.size:
                j = int(bad[0])
                raise ValueError(
                    f"X[:, {j}] spans [{np.min(X[:, j]):.3g}, {np.max(X[:, j]):.3g}]: the "
                    f"difference overflows float64; rescale X")
            x_scale = _robust_scale(X)
            bad = np.flatnonzero((x_scale > 0) & (x_scale < X_SCALE_MIN))
            if bad.size:
                j = int(bad[0])
                raise ValueError(
                    f"X[:, {j}] has scale {x_scale[j]:.3g}: its coefficients (about 1/scale) "
                    f"overflow float64 below {X_SCALE_MIN:g}; rescale X")


def _name(f):
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _call(f, role, z):
    try:
        out = f(z)
    except Exception as exc:  # a scalar-only function (math.tanh), a wrong signature
        raise ValueError(f"ActivationGate: {role} {_name(f)} raised {type(exc).__name__}: "
                         f"{exc} when called on an array of shape {z.shape}; it must work "
                         "element-wise on NumPy arrays") from exc
    try:
        arr = np.asarray(out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ActivationGate: {role} {_name(f)} returned {out!r}, not an "
                         "array of numbers") from exc
    if arr.shape != z.shape:
        what = f"a scalar {arr.item()!r}" if arr.ndim == 0 else f"shape {arr.shape}"
        raise ValueError(f"ActivationGate: {role} {_name(f)} returned {what} for an input of "
                         f"shape {z.shape}; it must return an array of its input's shape "
                         "(applied element-wise)")
    return arr


def check_activation_output(activation, role, z, out):
    """Raise when a user activation (or its derivative) is not finite at a finite input.

    Called on every evaluation of a user activation during a fit, so that a NaN at
    some inputs is reported as the activation's, not as non-finite gate parameters.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([0.5, 5.0])
    >>> check_activation_output(np.log, "activation", z, np.log(z))
    >>> check_activation_output(np.log, "activation", -z, np.array([np.nan, np.nan]))
    Traceback (most recent call last):
    ...
    ValueError: ActivationGate: activation log returned nan at z = -0.5 ...
    """
    if out.shape != np.shape(z):
        raise ValueError(f"ActivationGate: {role} {_name(activation)} returned shape "
                         f"{out.shape} for an input of shape {np.shape(z)}; it must return "
                         "an array of its input's shape (applied element-wise)")
    bad = ~np.isfinite(out) & np.isfinite(z)
    if np.any(bad):
        i = np.flatnonzero(bad.ravel())[0]
        raise ValueError(
            f"ActivationGate: {role} {_name(activation)} returned {out.ravel()[i]} at "
            f"z = {np.ravel(z)[i]:.6g} (z = beta_1^T x in the solver's standardised "
            f"coordinates; {int(bad.sum())} of {bad.size} values not finite); it must be "
            "finite on the whole real line")


def check_activation(activation, derivative):
    """Check a user activation and its derivative on test arrays (1-D and 3-D).

    Both must return finite arrays of their input's shape.

    Raises
    ------
    ValueError
        Naming the function and what it returned.

    Examples
    --------
    >>> import numpy as np
    >>> check_activation(np.tanh, lambda z: 1 - np.tanh(z) ** 2)
    >>> check_activation(lambda z: 0.5, lambda z: 0.0)
    Traceback (most recent call last):
    ...
    ValueError: ActivationGate: activation ... returned a scalar 0.5 for an input of shape (7,)...
    """
    for z in (CHECK_POINTS, np.linspace(-3.0, 3.0, 24).reshape(2, 4, 3)):
        for f, role in ((activation, "activation"), (derivative, "activation_derivative")):
            check_activation_output(f, role, z, _call(f, role, z))


def check_activation_derivative(activation, derivative, points=None, rtol=1e-4):
    """Compare ``derivative`` with central finite differences of ``activation``.

    The error at a point :math:`z` is :math:`|d(z) - \\hat d(z)| / (\\max(|d(z)|,
    |\\hat d(z)|) + 10^{-6}(1 + |\\sigma(z)|))`, with :math:`\\hat d` the central
    difference of step :math:`10^{-6}(1 + |z|)`; its round-off (about
    :math:`10^{-10}|\\sigma|`) and truncation stay far below ``rtol``.

    Parameters
    ----------
    activation, derivative : callable
        :math:`\\sigma` and the claimed :math:`\\sigma'`, element-wise on arrays.
    points : array-like, optional
        Where to compare; default seven points in [-2.9, 3.1], off 0 and the integers.
    rtol : float, default=1e-4

    Returns
    -------
    float
        The largest error, when it is at most ``rtol``.

    Raises
    ------
    ValueError
        Naming the largest error and its point, when it exceeds ``rtol``.

    Examples
    --------
    >>> import numpy as np
    >>> err = check_activation_derivative(np.tanh, lambda z: 1 - np.tanh(z) ** 2)
    >>> bool(err < 1e-6)
    True
    >>> check_activation_derivative(np.tanh, np.cos)
    Traceback (most recent call last):
    ...
    ValueError: ActivationGate: activation_derivative cos disagrees with the central ...
    """
    z = np.atleast_1d(np.asarray(CHECK_POINTS if points is None else points, dtype=float))
    step = 1e-6 * (1.0 + np.abs(z))
    h = _call(activation, "activation", z)
    d = _call(derivative, "activation_derivative", z)
    fd = (_call(activation, "activation", z + step)
          - _call(activation, "activation", z - step)) / (2.0 * step)
    with np.errstate(invalid="ignore"):
        err = np.abs(d - fd) / (np.maximum(np.abs(d), np.abs(fd)) + 1e-6 * (1.0 + np.abs(h)))
    err = np.where(np.isfinite(err), err, np.inf)
    i = int(np.argmax(err))
    if err[i] > rtol:
        raise ValueError(
            f"ActivationGate: activation_derivative {_name(derivative)} disagrees with the "
            f"central finite differences of activation {_name(activation)}: relative error "
            f"{err[i]:.3g} at z = {z[i]:.6g} (derivative {d[i]:.6g}, finite difference "
            f"{fd[i]:.6g}; tolerance {rtol:g}); pass the derivative of the activation")
    return float(err[i])


def reconcile_init_params(params, n_experts, n_features, gate, source="init"):
    """Parameters to start from, made consistent with the gate; warns for each change.

    A top-1 gate has no intercepts (they do not enter its density): nonzero ones are set
    to 0. A gate whose temperature is not learned keeps its own: another one is
    replaced. Each replacement issues a ``UserWarning`` naming it.

    Parameters
    ----------
    params : MoEParams
    n_experts, n_features : int
    gate : Gate
        Validated.
    source : str, default="init"
        How the messages name ``params`` ("init", or "the previous fit's params_").

    Raises
    ------
    ValueError
        When ``params`` has another number of experts or features.

    Examples
    --------
    >>> import warnings
    >>> from moestats import SoftmaxGate, get_setup
    >>> p = get_setup("softmax-exact").truth.params.replace(temperature=0.3)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     q = reconcile_init_params(p, 2, 1, SoftmaxGate())
    >>> q.temperature
    1.0
    >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
    init's temperature 0.3 replaced by the gate's fixed temperature 1.0
    (SoftmaxGate has no temperature)
    """
    if params.n_experts != n_experts or params.n_features != n_features:
        raise ValueError(
            f"{source} parameters have {params.n_experts} experts and {params.n_features} "
            f"features, but the estimator has n_experts = {n_experts} and the data "
            f"n_features = {n_features}")
    changes = {}
    if not gate.fits_intercept and np.any(params.gate_intercept != 0):
        changes["gate_intercept"] = np.zeros(n_experts)
        warnings.warn(
            f"{source}'s gate_intercept {np.round(params.gate_intercept, 6).tolist()} set "
            f"to 0: the top-1 gate ({gate!r}) has no intercepts (they do not enter its "
            "density)", UserWarning, stacklevel=4)
    tau = gate.initial_temperature()
    if not gate.learns_temperature and params.temperature != tau:
        changes["temperature"] = tau
        why = ("learn_temperature=False" if gate.has_temperature
               else f"{type(gate).__name__} has no temperature")
        warnings.warn(
            f"{source}'s temperature {float(params.temperature)!r} replaced by the gate's "
            f"fixed temperature {float(tau)!r} ({why})", UserWarning, stacklevel=4)
    return params.replace(**changes) if changes else params


def warm_start_usable(estimator):
    """Whether ``fit`` can start from the previous fit's ``params_`` (``warm_start``).

    It cannot when ``n_experts`` changed since (``set_params``): then a ``UserWarning``
    says the warm start is ignored and the fit starts afresh from ``init``. (Another
    number of features is refused by scikit-learn's own check of ``X``.)

    Examples
    --------
    >>> from moestats import GaussianMoE
    >>> warm_start_usable(GaussianMoE(2, warm_start=True))  # not fitted yet
    False
    """
    if not (estimator.warm_start and hasattr(estimator, "params_")):
        return False
    before, now = estimator.params_.n_experts, estimator.n_experts
    if before != now:
        warnings.warn(
            f"warm_start ignored: the previous fit had {before} experts, n_experts is now "
            f"{now}; fitting from scratch (init={estimator.init!r}, n_init="
            f"{estimator.n_init})", UserWarning, stacklevel=3)
        return False
    return True


def check_hyperparameters(est):
    """Check the hyperparameters of a :class:`moestats.GaussianMoE`; return its gate.

    Each error names the parameter and the value. The gate is a clone of ``est.gate``
    (never modified) or the default of a family name (``"constant"``: the softmax gate,
    its covariates removed by :func:`moestats.structure.structured_space`), validated
    against ``est.n_experts``.

    Examples
    --------
    >>> from moestats import GaussianMoE
    >>> check_hyperparameters(GaussianMoE(2, tol=2.0))
    Traceback (most recent call last):
    ...
    ValueError: tol must be a number in [0, 1) (a relative change of the log-likelihood), got 2.0
    """
    import numbers

    from sklearn.base import clone

    from .backends import _check_name as _check_backend_name
    from .gates import Gate, make_gate
    from .params import MoEParams

    k = est.n_experts
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"n_experts must be an integer >= 1, got {k!r}")
    for name, low in (("max_iter", 1), ("n_init", 1), ("n_keep", 1), ("short_iter", 1)):
        v = getattr(est, name)
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if (not isinstance(est.tol, numbers.Real) or isinstance(est.tol, bool)
            or not 0 <= est.tol < 1):
        raise ValueError(f"tol must be a number in [0, 1) (a relative change of the "
                         f"log-likelihood), got {est.tol!r}")
    if est.solver not in ("em", "mle"):
        raise ValueError(f"solver must be 'em' or 'mle', got {est.solver!r}")
    _check_backend_name(est.backend)
    if not (isinstance(est.init, MoEParams)
            or (isinstance(est.init, str) and est.init in ("mixed", "kmeans", "random"))):
        raise ValueError(
            f"init must be 'mixed', 'kmeans', 'random' or an MoEParams, got {est.init!r}")
    if not (isinstance(est.certify_tol, numbers.Real) and est.certify_tol > 0):
        raise ValueError(f"certify_tol must be a number > 0, got {est.certify_tol!r}")
    if not (est.var_floor == "auto" or (
            isinstance(est.var_floor, numbers.Real) and 0 < est.var_floor < np.inf)):
        raise ValueError(f"var_floor must be 'auto' or a finite number > 0, "
                         f"got {est.var_floor!r}")
    # a string names the default of a family; an instance is cloned, never modified
    gate = clone(est.gate) if isinstance(est.gate, Gate) else make_gate(
        "softmax" if est.gate == "constant" else est.gate)
    gate.validate(k)
    return gate

