"""Tasks of a sweep: simulate, fit from the papers' start, measure the losses.

One task at a time (:func:`run_task`) or
the replications of one (configuration, n) at once (:func:`run_batch`, batched EM).
"""

from __future__ import annotations

import json
import time
import traceback
import warnings

import numpy as np

from ..estimator import GaussianMoE
from ..gates import ActivationGate
from ..losses import (cell_parameter_errors, density_error, equivalent_parametrisations,
                      loss_gauge, parameter_errors, voronoi_loss)
from ..sampling import GridDesign, near_truth_init, sample_conditional
from ..solvers import fit_em_batched, fit_mle
from ..solvers.trace import FitTrace
from .spec import SweepSpec, Task, task_seed

__all__ = ["run_task", "run_batch", "prepare_task", "simulate_data", "LOSS_GAUGE",
           "LOSS_GAUGE_TOP1"]

#: losses bring the fit to the truth's gauge: the common gate shift (t_1, t_0) that gives the true
#: reference's cell its slope and the fitted measure the true total mass, labels free (the density
#: is invariant to both; see moestats.losses.align_to_truth). Activation gates (logits non-linear
#: in beta_1) fix t_0 only, i.e. the "mass" gauge; each row names its gauge (``loss_gauge``).
LOSS_GAUGE = "slope"
#: the gauge of a true top-1 gate: relative gate slopes of unit total norm (|beta_1| is not
#: identifiable for top-1, the user guide's *The model and its gates*)
LOSS_GAUGE_TOP1 = "slope+unit-norm"


def _gauge_options(true_gate, fitted_gate):
    """``(gauge, slope_gauge)`` of the losses for a true and a fitted gate."""
    slope_gauge = not isinstance(fitted_gate, ActivationGate)
    top1 = getattr(true_gate, "k_active", None) == 1
    return (LOSS_GAUGE_TOP1 if top1 and slope_gauge else LOSS_GAUGE), slope_gauge


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


def _losses(config, truth, fitted_params, fitted_gate, X_density, weighted=False):
    """The losses at the parametrisation of the fit closest to the truth (a two-expert
    tanh or sigmoid gate has a second one that is not a gauge move:
    :func:`moestats.losses.equivalent_parametrisations`)."""
    candidates = [_losses_at(config, truth, p, fitted_gate, X_density, weighted)
                  for p in equivalent_parametrisations(fitted_gate, fitted_params)]
    return min(candidates, key=lambda c: (not np.isfinite(c[1]["voronoi"]),
                                          c[1]["voronoi"]))


def _losses_at(config, truth, fitted_params, fitted_gate, X_density, weighted=False):
    true_gate = truth.gate
    top_k = getattr(true_gate, "k_active", None)
    learned = fitted_gate.learns_temperature
    gauge, slope_gauge = _gauge_options(true_gate, fitted_gate)
    opts = dict(top_k=top_k, gauge=gauge, slope_gauge=slope_gauge)
    out = {}
    out["voronoi"] = voronoi_loss(fitted_params, truth.params, "auto",
                                  learned_temperature=learned, **opts)
    if learned:
        out["voronoi_ratio"] = voronoi_loss(fitted_params, truth.params, "auto",
                                            learned_temperature="ratio", **opts)
    errors = parameter_errors(fitted_params, truth.params, learned_temperature=learned,
                              relative_weights=(top_k == 1), gauge=gauge,
                              slope_gauge=slope_gauge)
    errors["loss_gauge"] = loss_gauge(gauge, slope_gauge=slope_gauge)
    if weighted:  # the theory's within-cell weighted form (report time, not stored)
        cells = cell_parameter_errors(fitted_params, truth.params, learned_temperature=learned,
                                      relative_weights=(top_k == 1), gauge=gauge,
                                      slope_gauge=slope_gauge, weighted=True)
        errors["per_cell_weighted"] = {k: v for k, v in cells.items()
                                       if k not in ("size", "gauge")}
    if X_density is not None:
        out["density"] = density_error(fitted_params, truth.params, fitted_gate, true_gate,
                                       X_density)
    main = {"density": out.get("density", np.nan)}.get(config.loss, out["voronoi"])
    return main, out, errors


def _cell_columns(errors, form="per_cell") -> dict:
    """Per-cell errors as flat columns: ``cell{j}_size``, ``cell{j}_<block>``, ``cell{j}_weight``
    (true atom j; NaN blocks for an empty cell), in the losses' gauge; ``form``
    ``"per_cell_weighted"``: the theory's weighted form."""
    out = {}
    for j, size in enumerate(np.asarray(errors["cell_sizes"]).tolist()):
        out[f"cell{j}_size"] = int(size)
        for name, values in errors[form].items():
            out[f"cell{j}_{name}"] = float(values[j])
    return out


def _density_points(spec, X_density):
    """The density error's X sample: the one given, else the spec's (None if not computed)."""
    if X_density is None and spec.density_sample > 0:
        return density_sample(spec)
    return X_density


def _empty_row(task) -> dict:
    return {"fitted": task.fitted, "n": int(task.n), "replication": int(task.replication),
            "status": "failed", "error": None, "loss": None, "losses": None, "errors": None,
            "log_likelihood": None, "n_iter": None, "converged": None, "wall_time": None,
            "params": None, "init": None, "assignment": None}


def _error_text(exc) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def prepare_task(spec: SweepSpec, task: Task):
    """The task's data, fitted configuration, validated gate and start.

    Returns ``(config, gate, X, y, init, assignment, var_floor)``: the data of the
    replication (:func:`simulate_data`), the papers' near-truth start drawn from the
    task's own seed (``None``, and no assignment, for the truth-agnostic protocol),
    and a variance floor of ``1e-6 var(y)`` (below the spec's parameter space's
    lower variance bound in the papers' setups).
    """
    config = next(c for c in spec.fitted_configs() if c.name == task.fitted)
    truth = spec.setup_obj.truth
    X, y = simulate_data(spec, task.n, task.replication)
    seed = task_seed(spec, task.n, task.replication, task.fitted)
    rng = np.random.default_rng(seed)
    var_y = float(np.var(y))
    var_floor = 1e-6 * var_y if var_y > 0 else 1e-12
    if spec.start == "agnostic":
        # no start from the truth: the estimator's own starts (drawn in _fit_agnostic)
        est = GaussianMoE(config.n_experts, gate=config.gate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gate = est._check_hyperparameters()
        return config, gate, X, y, None, None, var_floor
    shrink = spec.start != "near-truth-fixed"
    init, assignment = near_truth_init(
        truth.params, config.n_experts, task.n, rng,
        fit_intercept=config.gate.fits_intercept,
        perturb_temperature=config.gate.learns_temperature,
        gate_sd=spec.start_gate_sd, expert_sd=spec.start_expert_sd,
        var_sd=spec.start_var_sd,
        gate_exponent=-0.083 * shrink, expert_exponent=-0.083 * shrink,
        var_exponent=-0.25 * shrink)
    est = GaussianMoE(config.n_experts, gate=config.gate, init=init)
    with warnings.catch_warnings():
        # the identifiability warning of a learned identity temperature is the setup's
        # subject (``moestats setups`` states it), not news at every task
        warnings.simplefilter("ignore")
        gate = est._check_hyperparameters()
    init = est._check_init_params(init, X.shape[1], gate)
    return config, gate, X, y, init, assignment, var_floor


def _finish_row(row, spec, config, trace, fitted_gate, init, assignment, X_density):
    """Fill ``row`` with the losses and the fit's summary (``status="ok"``)."""
    fitted_params = trace.params
    main, losses, errors = _losses(config, spec.setup_obj.truth, fitted_params, fitted_gate,
                                   X_density)
    cert = None if trace.certificate is None else trace.certificate.as_dict()
    row.update(_cell_columns(errors))
    row.update(
        status="ok", loss_gauge=errors["loss_gauge"], loss=float(main),
        losses=json.dumps(_jsonable(losses)),
        errors=json.dumps(_jsonable(errors)), log_likelihood=float(trace.log_likelihood),
        n_iter=int(trace.n_iter), converged=bool(trace.converged),
        params=json.dumps(fitted_params.as_dict()),
        init=None if init is None else json.dumps(init.as_dict()),
        assignment=None if assignment is None else json.dumps(assignment.tolist()),
        passes=int(trace.passes),
        certificate=json.dumps(_jsonable(cert)))
    return row


def _fit(spec, gate, X, y, inits, floors):
    """Fit replications of one configuration and n: the batched EM engine, or MLE."""
    options = dict(var_floor=floors, space=spec.space, certify_tol=spec.certify_tol)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        if spec.solver == "mle":
            return [fit_mle(gate, X[r], y[r], inits[r], max_iter=spec.max_iter,
                            var_floor=floors[r], space=spec.space,
                            certify_tol=spec.certify_tol) for r in range(len(inits))]
        return fit_em_batched(gate, X, y, inits, tol=spec.tol, max_iter=spec.max_iter,
                              backend=spec.backend, on_error="record", **options)


def _fit_agnostic(spec, config, X, y, floor, task):
    """The truth-agnostic protocol: :class:`~moestats.GaussianMoE` with ``spec.n_init``
    data-driven starts inside the spec's parameter space, the best certified
    likelihood kept (the highest if none is certified); returned as a FitTrace whose
    ``passes`` count every start's passes and whose events hold the start
    log-likelihoods."""
    seed = task_seed(spec, task.n, task.replication, task.fitted)
    est = GaussianMoE(config.n_experts, gate=config.gate, n_init=spec.n_init,
                      var_floor=floor, space=spec.space, certify_tol=spec.certify_tol,
                      tol=spec.tol, max_iter=spec.max_iter, solver=spec.solver,
                      backend=spec.backend,
                      random_state=int(seed.generate_state(1)[0] % (2**31 - 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            est.fit(X, y)
    events = dict(est.fit_events_)
    events["start_log_likelihoods"] = [float(v) for v in est.start_log_likelihoods_]
    return FitTrace(est.params_, np.asarray(est.log_likelihoods_), int(est.n_iter_),
                    bool(est.converged_), events, est.certificate_, int(est.n_passes_))


def run_task(spec: SweepSpec, task: Task, X_density=None) -> dict:
    """Run one task and return its result row (:func:`run_batch` with one task).

    Never raises for a failed fit. The row holds: the task key, ``status``
    ("ok"/"failed"), ``error`` (the exception text of a failed fit), ``loss`` (the
    configuration's main loss), ``losses`` and ``errors`` (JSON: every loss and
    per-parameter error, with the per-cell errors), ``loss_gauge`` (the gauge of the losses and
    errors, :func:`moestats.losses.loss_gauge`), ``cell{j}_size``, ``cell{j}_<block>`` and
    ``cell{j}_weight`` (per true atom j, :func:`moestats.losses.cell_parameter_errors`),
    ``log_likelihood``, ``n_iter``, ``converged`` (certified),
    ``passes`` (over the data), ``certificate`` (JSON), ``wall_time`` (seconds),
    ``params`` and ``init`` (JSON :class:`MoEParams`) and the start's cell
    ``assignment``.
    """
    return run_batch(spec, [task], X_density)[0]


def run_batch(spec: SweepSpec, tasks, X_density=None) -> list:
    """Run tasks of one (fitted configuration, n) together by batched EM.

    The replications' data and starts are drawn from their own seeds; they are fitted
    at once by :func:`moestats.solvers.fit_em_batched` on ``spec.backend`` inside the
    spec's parameter space and certified at ``spec.certify_tol``, each with its own
    stopping rule, so a replication's result does not depend on which others share its
    batch. Returns one row per task (the fields of :func:`run_task`; ``wall_time`` is
    the task's share of the batch's fit plus its own losses). A replication that fails
    is stored as failed with its error; the others go on. With ``spec.solver ==
    "mle"`` the tasks are fitted one by one by :func:`moestats.solvers.fit_mle`.
    """
    tasks = list(tasks)
    if len({(t.fitted, t.n) for t in tasks}) > 1:
        raise ValueError("a batch holds tasks of one fitted configuration and one n, got "
                         f"{sorted({(t.fitted, t.n) for t in tasks})}")
    start_time = time.perf_counter()
    X_density = _density_points(spec, X_density)  # once for the batch, not per row
    rows = [_empty_row(t) for t in tasks]
    prepared, ok = [], []
    for i, task in enumerate(tasks):
        try:
            prepared.append(prepare_task(spec, task))
            ok.append(i)
        except Exception as exc:
            rows[i]["error"] = _error_text(exc)
    traces = []
    if prepared and spec.start == "agnostic":
        for i, prep in zip(list(ok), prepared):
            try:
                traces.append(_fit_agnostic(spec, prep[0], prep[2], prep[3], prep[6], tasks[i]))
            except Exception as exc:
                traces.append(FitTrace(None, np.array([-np.inf]), 0, False,
                                       {"error": f"{type(exc).__name__}: {exc}"}))
    elif prepared:
        gate = prepared[0][1]
        try:
            traces = _fit(spec, gate, np.stack([p[2] for p in prepared]),
                          np.stack([p[3] for p in prepared]), [p[4] for p in prepared],
                          np.array([p[6] for p in prepared]))
        except Exception as exc:  # the whole batch failed (e.g. a backend error)
            for i in ok:
                rows[i]["error"] = _error_text(exc)
            ok = []
    fit_share = (time.perf_counter() - start_time) / max(len(tasks), 1)
    for i, prep, trace in zip(ok, prepared, traces):
        own = time.perf_counter()
        config, gate, _, _, init, assignment, _ = prep
        try:
            if "error" in trace.events:
                raise FloatingPointError(trace.events["error"])
            _finish_row(rows[i], spec, config, trace, gate, init, assignment, X_density)
        except Exception as exc:
            rows[i]["error"] = _error_text(exc)
        rows[i]["wall_time"] = fit_share + time.perf_counter() - own
    for row in rows:
        if row["wall_time"] is None:
            row["wall_time"] = fit_share
    return rows


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
