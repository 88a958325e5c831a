"""The one entry point from the solver to the backends: :func:`make_ops`.

An *ops* object owns the data of R replications of one problem and runs every pass
over them (E-step, expert statistics and residual sums, the softmax gate's
objective/gradient/-Hessian); the solver calls only its methods, so it never
branches on the backend's name.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_ops", "check_batched_data"]


def check_batched_data(X, y):
    """Float64 arrays of shapes (R, n, d) and (R, n); arrays of another namespace
    (e.g. CuPy) are kept in it.

    Examples
    --------
    >>> X, y = check_batched_data([[[0.0], [1.0]]], [[1.0, 2.0]])
    >>> X.shape, y.shape
    ((1, 2, 1), (1, 2))
    """
    from array_api_compat import is_array_api_obj
    arrays = []
    for a in (X, y):
        if isinstance(a, np.ndarray) or not is_array_api_obj(a):
            a = np.asarray(a, dtype=float)
        arrays.append(a)
    X, y = arrays
    if X.ndim != 3 or y.ndim != 2 or tuple(y.shape) != tuple(X.shape[:2]):
        raise ValueError(f"X must be (R, n, d) and y (R, n); got X of shape "
                         f"{tuple(X.shape)} and y of shape {tuple(y.shape)}")
    return X, y


def make_ops(backend, X, y, sample_weight=None):
    """The ops object of ``backend`` for data ``X`` (R, n, d), ``y`` (R, n).

    With ``sample_weight`` (R, n: positive weights of the log-likelihood) the passes
    run on the NumPy reference whatever ``backend`` says (the compiled kernels are
    unweighted).

    Parameters
    ----------
    backend : {"auto", "numpy", "numba", "cupy"} or array namespace
        A name (``"auto"`` resolved by :func:`moestats.backends.get_backend`) or an
        array namespace (a module with ``asarray``, e.g. ``array_api_strict``), which
        runs the array-API path of ``"cupy"`` on it.

    Examples
    --------
    >>> import numpy as np
    >>> make_ops("numpy", np.zeros((1, 5, 1)), np.zeros((1, 5))).name
    'numpy'
    """
    from . import get_backend
    from .array_api_ops import ArrayAPIOps, cupy_namespace, to_numpy
    if sample_weight is not None:
        from .host_ops import NumpyOps
        X, y = check_batched_data(to_numpy(X), to_numpy(y))
        c = np.asarray(to_numpy(sample_weight), dtype=float)
        if c.shape != y.shape:
            raise ValueError(f"sample_weight must have the shape of y {tuple(y.shape)}, "
                             f"got {c.shape}")
        return NumpyOps(X, y, c)
    if isinstance(backend, str):
        name = get_backend(backend, X, y, n_samples=X.shape[1], n_replications=X.shape[0])
        if name == "cupy":
            backend = cupy_namespace()
        else:
            from .host_ops import NumbaOps, NumpyOps
            X, y = check_batched_data(to_numpy(X), to_numpy(y))
            return (NumpyOps if name == "numpy" else NumbaOps)(X, y)
    if not hasattr(backend, "asarray"):
        raise ValueError(
            "backend must be 'auto', 'numpy', 'numba', 'cupy' or an array namespace "
            f"(a module such as array_api_strict), got {backend!r}")
    from array_api_compat import array_namespace, is_array_api_obj
    xp = array_namespace(backend.asarray([0.0]))  # the compat wrapper of NumPy/CuPy/...
    Xh, yh = check_batched_data(to_numpy(X), to_numpy(y))
    X_dev = xp.asarray(X, dtype=xp.float64) if is_array_api_obj(X) and not isinstance(
        X, np.ndarray) else None
    y_dev = xp.asarray(y, dtype=xp.float64) if X_dev is not None else None
    return ArrayAPIOps(Xh, yh, xp, X_dev, y_dev)
