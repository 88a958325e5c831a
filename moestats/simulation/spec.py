"""Sweep specifications: what a Monte Carlo convergence-rate study runs.

A :class:`SweepSpec` is read from a TOML config (one per figure, in ``simulations/``)
or built from a setup id. It expands into independent :class:`Task` s, one per
(fitted configuration, sample size, replication); each task's randomness comes
from ``SeedSequence(seed, spawn_key=(setup, n, replication[, fitted]))`` only, so
results never depend on ``n_jobs``, task order, batching or resuming.

Config format::

    setup = "softmax-exact"        # an id of moestats.setups.SETUPS
    fitted = ["k2"]                # optional: a subset of the setup's fitted configurations
    seed = 2023
    design = "iid"                 # "iid" (X ~ the setup's law) or "grid" (linspace, as in [D]'s code)
    start = "near-truth"           # or "near-truth-fixed" (start noise not shrinking with n)
    start_noise = { gate = 0.005, expert = 0.05, var = 0.005 }   # optional: the noise scales
    density_sample = 1000          # X points for the Hellinger density error (0: not computed)

    [solver]
    name = "em"                    # or "mle"
    tol = 1e-6
    max_iter = 2000
    backend = "numba"              # EM kernels: "numba" (default), "numpy" or "cupy"
    certify_tol = 1e-3             # nats: a fit is converged only when certified (the user guide's *Solvers and certificates*)

    [space]                        # optional: the parameter space (default: the user guide's *Solvers and certificates*)
    var_bounds = [0.01, 100.0]
    coef_bound = 100.0

    [quick]
    sample_sizes = { min = 100, max = 10000, num = 8 }   # log-spaced, rounded; or a list
    replications = 10

    [full]
    sample_sizes = { min = 100, max = 100000, num = 200 }
    replications = 40

A ``[truth]`` table (with ``[[fitted]]`` tables) defines a true model instead of
``setup``'s built-in one (:mod:`moestats.simulation.truth_config`). The configs of
``simulations/`` ship inside the package (:func:`default_config_dir`).

Examples
--------
>>> from moestats.simulation.spec import spec_from_setup
>>> spec = spec_from_setup("softmax-exact", "quick")  # simulations/softmax-exact.toml
>>> spec.setup, spec.fitted, len(spec.tasks())
('softmax-exact', ('k2',), 480)
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ..setups import SETUPS, get_setup
from ..solvers.space import THEORY_SPACE, ParameterSpace

__all__ = ["SweepSpec", "Task", "ConfigError", "load_spec", "spec_from_config",
           "spec_from_setup", "task_seed", "default_config_dir"]

STARTS = ("near-truth", "near-truth-fixed", "agnostic")
BACKENDS = ("numba", "numpy", "cupy")
DESIGNS = ("iid", "grid")
FORMS = ("quick", "full")


class ConfigError(ValueError):
    """A sweep config with a missing or invalid field; the message names the field."""


@dataclass(frozen=True)
class Task:
    """One fit of a sweep: a fitted configuration on one replication at one sample size."""

    fitted: str
    n: int
    replication: int


@dataclass(frozen=True)
class SweepSpec:
    """Everything that determines a sweep's results (and nothing that does not).

    Attributes
    ----------
    setup : str
        Setup id (:data:`moestats.setups.SETUPS`), or the label of a custom ``truth``
        (letters, digits, ``.``, ``_``, ``-``; not a built-in id).
    fitted : tuple of str
        Names of the fitted configurations of the setup to run.
    sample_sizes : tuple of int
    replications : int
    seed : int
    design : {"iid", "grid"}
    start : {"near-truth", "near-truth-fixed", "agnostic"}
        The start protocol (the user guide's *Solvers and certificates*): the papers' near-truth start (noise
        shrinking with n), the same with noise fixed, or truth-agnostic: what a user
        does, :class:`~moestats.GaussianMoE` with ``n_init`` data-driven starts
        (k-means, random partitions, lines; short-run selection), the best certified
        likelihood kept.
    n_init : int
        Starts of the truth-agnostic protocol (default 10).
    solver : str
    tol : float
    max_iter : int
    backend : {"numba", "numpy", "cupy"}
        Kernels of the batched EM (:func:`moestats.solvers.fit_em_batched`) that fits
        the replications of one (configuration, n) together. Backends agree to about
        1e-12, not bit for bit, so the backend is part of the fingerprint; how many
        replications go into one batch is not (it does not change any result).
        ``solver = "mle"`` fits task by task with :class:`~moestats.GaussianMoE`.
    density_sample : int
        Size of the fixed X sample for the Hellinger density error (0: skipped).
    space : ParameterSpace
        The parameter space :math:`\\Theta` of the constrained MLE (default
        :data:`moestats.solvers.THEORY_SPACE`: variances in [0.01, 100], every gate and
        expert coordinate in [-100, 100]).
    certify_tol : float
        Nats; a fit is counted as converged only when certified at this tolerance.
    start_gate_sd, start_expert_sd, start_var_sd : float
        Start noise scales of :func:`moestats.sampling.near_truth_init` (the papers'
        0.005, 0.05, 0.005); with ``start="near-truth-fixed"`` they are used as they
        are at every n (no shrinking factor).
    form : str
        "quick", "full" or "custom" (a label; part of the fingerprint).
    truth : dict, optional
        A custom true model and its fitted configurations as JSON data, checked and
        completed by :func:`~moestats.simulation.truth_config.normalize_truth`; carried
        by value and part of the fingerprint. ``None``: the built-in setup ``setup``.
    """

    setup: str
    fitted: tuple
    sample_sizes: tuple
    replications: int
    seed: int = 0
    design: str = "iid"
    start: str = "near-truth"
    n_init: int = 10
    solver: str = "em"
    tol: float = 1e-6
    max_iter: int = 2000
    backend: str = "numba"
    density_sample: int = 1000
    start_gate_sd: float = 0.005
    start_expert_sd: float = 0.05
    start_var_sd: float = 0.005
    space: ParameterSpace = THEORY_SPACE
    certify_tol: float = 1e-3
    form: str = "custom"
    truth: dict | None = field(default=None, hash=False)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if isinstance(self.space, dict):  # from as_dict() (e.g. in a worker process)
            object.__setattr__(self, "space", ParameterSpace.from_dict(self.space))
        if self.truth is not None:
            from .truth_config import normalize_truth
            object.__setattr__(self, "truth", normalize_truth(self.truth))
        _check_spec(self)

    @property
    def setup_obj(self):
        """The :class:`~moestats.setups.Setup`: built-in, or built from ``truth``."""
        if self.truth is not None:
            from .truth_config import build_setup
            return build_setup(self.setup, self.truth)
        return get_setup(self.setup)

    def fitted_configs(self):
        """The :class:`~moestats.setups.FittedConfig` objects to run, in order."""
        by_name = {c.name: c for c in self.setup_obj.fitted}
        return [by_name[name] for name in self.fitted]

    def tasks(self):
        """All tasks, ordered by n, then replication, then fitted configuration."""
        return [Task(f, n, r) for n in self.sample_sizes for r in range(self.replications)
                for f in self.fitted]

    def as_dict(self) -> dict:
        """The spec as plain JSON data, with the moestats version that computes it."""
        from .. import __version__
        d = asdict(self)
        d.pop("extra")
        if d.get("truth") is None:  # built-in setups: the fingerprint they always had
            d.pop("truth", None)
        d["space"] = self.space.as_dict()
        d["moestats_version"] = __version__
        d["fitted"] = list(self.fitted)
        d["sample_sizes"] = list(self.sample_sizes)
        return d

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the canonical JSON of :meth:`as_dict`.

        The moestats version is part of it, so a store is never resumed by code
        that computes its results differently (bump ``__version__`` when that changes).
        """
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode())


def task_seed(spec: SweepSpec, n: int, replication: int, fitted: str | None = None):
    """The task's :class:`numpy.random.SeedSequence`.

    ``fitted=None`` gives the data seed (shared by every fitted configuration of a
    replication, so they are compared on the same data); a fitted name gives the
    seed of that configuration's start.
    """
    key = (_stable_int(spec.setup), int(n), int(replication))
    if fitted is not None:
        key = key + (_stable_int(fitted),)
    return np.random.SeedSequence(spec.seed, spawn_key=key)


def _check_spec(spec):
    def fail(field_name, msg):
        raise ConfigError(f"config field {field_name!r}: {msg}")

    if spec.truth is not None:
        from .truth_config import check_label
        check_label(spec.setup)
    elif spec.setup not in SETUPS:
        fail("setup", f"unknown setup {spec.setup!r}; known: {sorted(SETUPS)}")
    names = [c.name for c in spec.setup_obj.fitted]
    if not spec.fitted:
        fail("fitted", "needs at least one fitted configuration")
    for f in spec.fitted:
        if f not in names:
            fail("fitted", f"{f!r} is not a fitted configuration of {spec.setup!r}; known: {names}")
    if not spec.sample_sizes:
        fail("sample_sizes", "is empty")
    for n in spec.sample_sizes:
        if not isinstance(n, (int, np.integer)) or n < 10:
            fail("sample_sizes", f"sample sizes must be integers >= 10, got {n!r}")
    for name, value, low in (("replications", spec.replications, 1), ("seed", spec.seed, 0),
                             ("n_init", spec.n_init, 1), ("solver.max_iter", spec.max_iter, 1),
                             ("density_sample", spec.density_sample, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            fail(name, f"must be an integer >= {low}, got {value!r}")
    for name, value in (("solver.tol", spec.tol), ("solver.certify_tol", spec.certify_tol)):
        if not isinstance(value, (int, float)) or not value > 0:
            fail(name, f"must be a number > 0, got {value!r}")
    if spec.design not in DESIGNS:
        fail("design", f"must be one of {DESIGNS}, got {spec.design!r}")
    if spec.design == "grid" and spec.setup_obj.truth.params.n_features != 1:
        fail("design", "'grid' is for d = 1 covariate, got d = "
                       f"{spec.setup_obj.truth.params.n_features}")
    if spec.start not in STARTS:
        fail("start", f"must be one of {STARTS}, got {spec.start!r}")
    if spec.solver not in ("em", "mle"):
        fail("solver.name", f"must be 'em' or 'mle', got {spec.solver!r}")
    if spec.backend not in BACKENDS:
        fail("solver.backend", f"must be one of {BACKENDS}, got {spec.backend!r}")
    if not isinstance(spec.space, ParameterSpace):
        fail("space", f"must be a ParameterSpace, got {spec.space!r}")
    for key in ("gate", "expert", "var"):
        v = getattr(spec, f"start_{key}_sd")
        if not isinstance(v, (int, float)) or not v >= 0:
            fail(f"start_noise.{key}", f"must be a number >= 0, got {v!r}")


# the reading of TOML configs (kept importable from here, where it always was)
from .config_file import (default_config_dir, load_spec, spec_from_config,  # noqa: E402
                          spec_from_setup)
