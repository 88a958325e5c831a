"""The machine a run session ran on, as the store records it (:meth:`ResultStore.begin_session`).

Results are bit-identical only on the same CPU *and* the same compiled kernels: Numba
compiles for the host CPU (its LLVM name, e.g. ``znver4``, ``znver5``,
``skylake-avx512``), and two machines that both call themselves "AMD EPYC" may get
kernels that differ in the last bits. The session record therefore names both.
"""

from __future__ import annotations

import os
import platform

__all__ = ["numba_target", "cpu_description", "load_1min"]


def numba_target():
    """The CPU Numba compiles the kernels for.

    Returns
    -------
    str or None
        ``NUMBA_CPU_NAME`` where set, else LLVM's name of the host CPU; None where
        llvmlite cannot say.

    Examples
    --------
    >>> from moestats.simulation.machine import numba_target
    >>> isinstance(numba_target(), (str, type(None)))
    True
    """
    name = os.environ.get("NUMBA_CPU_NAME")
    if name:
        return name
    try:
        from llvmlite import binding
        return binding.get_host_cpu_name()
    except Exception:  # llvmlite missing or broken: the name is informative only
        return None


def cpu_description():
    """The CPU model with the kernels' target, e.g. ``"AMD EPYC (Numba target znver4)"``.

    Returns
    -------
    str
        The ``model name`` of ``/proc/cpuinfo`` (else :func:`platform.processor`
        or the machine type), followed by :func:`numba_target` in brackets.

    Examples
    --------
    >>> from moestats.simulation.machine import cpu_description, numba_target
    >>> cpu_description().endswith(f"(Numba target {numba_target()})")
    True
    """
    model = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    target = numba_target()
    return f"{model} (Numba target {target})" if target else model


def load_1min():
    """The 1-minute load average, rounded to 0.01 (None where the OS has none).

    Examples
    --------
    >>> from moestats.simulation.machine import load_1min
    >>> load_1min() is None or load_1min() >= 0
    True
    """
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None
