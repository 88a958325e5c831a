"""Array backends of the likelihood kernels, and the choice between them.

A backend is an array namespace plus a few kernels (``the backends' design (:mod:`moestats.backends`)``):

- ``"numpy"``: the reference (:mod:`.numpy_kernels`, and the NumPy code of
  :mod:`moestats.experts` and :mod:`moestats.likelihood`);
- ``"numba"``: compiled CPU kernels, parallel over replications and samples
  (:mod:`.numba_kernels`; compiled, or loaded from the on-disk cache, on first use);
- ``"cupy"``: the array-API reference kernels of :mod:`.array_api` run on CuPy
  arrays on a CUDA device (``pip install "moestats[cupy]"``).

:func:`get_backend` resolves ``"auto"`` and checks that a requested backend can run.
Nothing here imports Numba or CuPy at import time.
"""

from __future__ import annotations

import functools
import importlib
import os

__all__ = ["BACKENDS", "NUMBA_MIN_SAMPLE_REPLICATIONS", "BackendUnavailableError",
           "available_backends", "get_backend"]

#: names of the backends (``"auto"`` picks one of them)
BACKENDS = ("numpy", "numba", "cupy")

#: ``"auto"`` picks Numba from this many samples times replications on.
#: From ``benchmarks/results/bench_backends.json`` (quiet 2-core machine): a single
#: softmax fit on Numba is faster than the NumPy reference at every n measured,
#: 50 to 1e4 (1.5-3.7x per EM iteration, 1.4-2.5x per fit), and batched Numba
#: (R = 40) is 2.1-9.3x faster per sample-iteration over the whole grid. What the
#: threshold guards against is the one-time cost of the first Numba call in a
#: process: about 0.3 s to load the cached kernels (30-60 s to compile them on the
#: very first use after installation), which only pays off once a fit moves well
#: over 1e4 samples; below that a NumPy fit takes milliseconds (under 25 ms at
#: n = 1e4, k = 3).
NUMBA_MIN_SAMPLE_REPLICATIONS = 10_000


#: libgomp, the OpenMP runtime under Numba's ``omp`` threading layer, makes idle workers
#: spin for about 3e5 iterations before they sleep. On a machine whose cores hold other
#: work, every parallel kernel then waits for descheduled spinners: measured 11.7 ms per
#: call of the observed-derivatives kernel (n = 1e4) with 2 threads, against 0.75 ms
#: with passive waiting, and a softmax fit at n = 2e4 4.4 s against 0.8 s (2-core machine
#: at load 4.5; ``benchmarks/bench_threads_under_load.py``). The policy
#: is read once, when the runtime starts (the first parallel kernel), so it is set here,
#: before any kernel runs, and only when the user has chosen none: results do not depend
#: on it (the kernels reduce over fixed chunks whatever the threads).
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


class BackendUnavailableError(ImportError):
    """A backend was asked for by name but cannot run here (package or device missing)."""


@functools.lru_cache(maxsize=None)
def _probe(name):
    """``None`` if backend ``name`` can run here, else the reason it cannot."""
    if name == "numpy":
        return None
    if name == "numba":
        try:
            importlib.import_module("numba")
        except Exception as exc:  # ImportError, or a broken install (e.g. NumPy too new)
            return f"numba does not import ({type(exc).__name__}: {exc})"
        return None
    if name == "cupy":
        try:
            cupy = importlib.import_module("cupy")
        except Exception as exc:
            return f"cupy does not import ({type(exc).__name__}: {exc})"
        try:
            n_devices = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver or runtime missing
            return f"cupy finds no CUDA device ({type(exc).__name__}: {exc})"
        if n_devices < 1:
            return "cupy finds no CUDA device"
        return None
    raise AssertionError(name)


def available_backends() -> tuple:
    """The backends that can run here, in the order of :data:`BACKENDS`.

    ``"numpy"`` always; ``"numba"`` if Numba imports; ``"cupy"`` if CuPy imports and
    sees at least one CUDA device. (The probe imports Numba and CuPy, once.)
    """
    return tuple(name for name in BACKENDS if _probe(name) is None)


def _check_name(name):
    if not isinstance(name, str) or name not in ("auto",) + BACKENDS:
        raise ValueError(
            f"backend must be 'auto' or 'numpy' or 'numba' or 'cupy', got {name!r}")


def _problem_size(arrays, n_samples, n_replications):
    if n_samples is None:
        if not arrays or getattr(arrays[0], "ndim", None) is None:
            return 0
        X = arrays[0]
        if X.ndim == 3:                       # (R, n, d): replications x samples
            return int(X.shape[0]) * int(X.shape[1])
        n_samples = X.shape[0]
    return int(n_samples) * int(n_replications)


def get_backend(name="auto", *arrays, n_samples=None, n_replications=1) -> str:
    """The backend that runs a fit: ``"numpy"``, ``"numba"`` or ``"cupy"``.

    Parameters
    ----------
    name : {"auto", "numpy", "numba", "cupy"}
        A backend by name (checked to be able to run here), or ``"auto"``.
    *arrays : arrays
        The data of the fit (e.g. ``X, y``); ``"auto"`` looks at their type and,
        when ``n_samples`` is not given, at the shape of the first one: (n, d) is
        ``n`` samples, (R, n, d) is ``R * n`` (``n_replications`` is then ignored).
    n_samples : int, optional
        Samples per replication.
    n_replications : int, default=1
        Replications fitted at once (:func:`moestats.solvers.batched_em.fit_em_batched`).

    Returns
    -------
    str
        ``"auto"`` resolves to ``"cupy"`` if any array is a CuPy array, else to
        ``"numba"`` if Numba imports and ``n_samples * n_replications >=``
        :data:`NUMBA_MIN_SAMPLE_REPLICATIONS`, else to ``"numpy"``.

    Raises
    ------
    ValueError
        ``name`` is not one of the names above.
    BackendUnavailableError
        (an ``ImportError``) ``"numba"`` or ``"cupy"`` asked for by name cannot run
        here: the package does not import, or CuPy sees no CUDA device.
    """
    _check_name(name)
    if name == "auto":
        from array_api_compat import is_cupy_array
        if any(is_cupy_array(a) for a in arrays):
            name = "cupy"
        elif (_problem_size(arrays, n_samples, n_replications) >= NUMBA_MIN_SAMPLE_REPLICATIONS
              and _probe("numba") is None):
            return "numba"
        else:
            return "numpy"
    reason = _probe(name)
    if reason is not None:
        hint = ('pip install "moestats[cupy]" (CuPy for CUDA 12) on a machine with an '
                'NVIDIA GPU' if name == "cupy" else "pip install numba")
        raise BackendUnavailableError(
            f"backend {name!r} is not available: {reason}; {hint}, or use backend="
            f"'numpy' (available here: {', '.join(available_backends())})")
    return name
