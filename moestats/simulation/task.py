"""One task of a sweep: simulate, fit from the papers' start, measure the losses."""

from __future__ import annotations

import json
import time
import traceback
import warnings

import numpy as np

from ..estimator import GaussianMoE
from ..losses import density_error, parameter_errors, voronoi_loss
from ..sampling import GridDesign, near_truth_init, sample_conditional
from .spec import SweepSpec, Task, task_seed

__all__ = ["run_task", "simulate_data", "LOSS_GAUGE"]

#: losses fix the common intercept shift by giving the fitted measure the true total mass (the density
#: is invariant to it; see moestats.losses, ``gauge``)
LOSS_GAUGE = "mass"


def simulate_data(spec: SweepSpec, n: int, replication: int):
    """The replication's data set, shared by all fitted configurations."""
    rng = np.random.default_rng(task_seed(spec, n, replication))
    truth = spec.setup_obj.truth
    if spec.design == "grid":
        law = truth.x_law
        X = GridDesign(law.low, law.high).sample(n)
    else:
        X = truth.x_law.sample(n, rng)
    y, _ = sample_conditional(truth.gate, truth.params, X, rng)
    return X, y


def density_sample(spec: SweepSpec):
    """The fixed X sample over which the density error is averaged."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2**31 - 1,)))
    return spec.setup_obj.truth.x_law.sample(spec.density_sample, rng)


def _losses(config, truth, fitted_params, fitted_gate, X_density):
    true_gate = truth.gate
    top_k = getattr(true_gate, "k_active", None)
    learned = fitted_gate.learns_temperature
    opts = dict(top_k=top_k, gauge=LOSS_GAUGE)
    out = {}
    out["voronoi"] = voronoi_loss(fitted_params, truth.params, "auto",
                                  learned_temperature=learned, **opts)
    if learned:
        out["voronoi_ratio"] = voronoi_loss(fitted_params, truth.params, "auto",
                                            learned_temperature="ratio", **opts)
    errors = parameter_errors(fitted_params, truth.params, learned_temperature=learned,
                              relative_weights=(top_k == 1), gauge=LOSS_GAUGE)
    if X_density is not None:
        out["density"] = density_error(fitted_params, truth.params, fitted_gate, true_gate,
                                       X_density)
    main = {"density": out.get("density", np.nan)}.get(config.loss, out["voronoi"])
    return main, out, errors


def run_task(spec: SweepSpec, task: Task, X_density=None) -> dict:
    """Run one task and return its result row (never raises for a failed fit).

    The row holds: the task key, ``status`` ("ok"/"failed"), ``error`` (the
    exception text of a failed fit), ``loss`` (the configuration's main loss),
    ``losses`` and ``errors`` (JSON: every loss and per-parameter error),
    ``log_likelihood``, ``n_iter``, ``converged``, ``wall_time`` (seconds),
    ``params`` and ``init`` (JSON :class:`MoEParams`) and the start's cell
    ``assignment``.
    """
    row = {"fitted": task.fitted, "n": int(task.n), "replication": int(task.replication),
           "status": "failed", "error": None, "loss": None, "losses": None, "errors": None,
           "log_likelihood": None, "n_iter": None, "converged": None, "wall_time": None,
           "params": None, "init": None, "assignment": None}
    start_time = time.perf_counter()
    try:
        config = next(c for c in spec.fitted_configs() if c.name == task.fitted)
        truth = spec.setup_obj.truth
        X, y = simulate_data(spec, task.n, task.replication)
        rng = np.random.default_rng(task_seed(spec, task.n, task.replication, task.fitted))
        shrink = spec.start != "near-truth-fixed"
        init, assignment = near_truth_init(
            truth.params, config.n_experts, task.n, rng,
            fit_intercept=config.gate.fits_intercept,
            perturb_temperature=config.gate.learns_temperature,
            gate_sd=spec.start_gate_sd, expert_sd=spec.start_expert_sd,
            var_sd=spec.start_var_sd,
            gate_exponent=-0.083 * shrink, expert_exponent=-0.083 * shrink,
            var_exponent=-0.25 * shrink)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = GaussianMoE(config.n_experts, gate=config.gate, solver=spec.solver,
                              tol=spec.tol, max_iter=spec.max_iter, init=init).fit(X, y)
        if X_density is None and spec.density_sample > 0:
            X_density = density_sample(spec)
        main, losses, errors = _losses(config, truth, est.params_, est.gate_, X_density)
        row.update(
            status="ok", loss=float(main), losses=json.dumps(_jsonable(losses)),
            errors=json.dumps(_jsonable(errors)), log_likelihood=float(est.log_likelihood_),
            n_iter=int(est.n_iter_), converged=bool(est.converged_),
            params=json.dumps(est.params_.as_dict()), init=json.dumps(init.as_dict()),
            assignment=json.dumps(assignment.tolist()))
    except Exception as exc:  # a failed fit is a result, not a crash of the sweep
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    row["wall_time"] = time.perf_counter() - start_time
    return row


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
