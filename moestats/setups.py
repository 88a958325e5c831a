"""The papers' true models and fitted configurations, by id (the user guide's *Simulations*, setups)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .gates import ActivationGate, Gate, SoftmaxGate, TemperatureGate, TopKGate
from .params import MoEParams
from .sampling import TrueModel, UniformDesign

__all__ = ["FittedConfig", "Setup", "SETUPS", "get_setup"]


@dataclass(frozen=True)
class FittedConfig:
    """A fitted model of a setup: a name, the number of experts and the gate.

    ``theory_slope`` is the slope of log(loss) on log(n) the theory predicts
    (``None`` where it predicts no polynomial rate; 0 where it predicts no
    convergence); ``loss`` names the loss (the user guide's *Simulations*, losses and gauges).
    """

    name: str
    n_experts: int
    gate: Gate
    loss: str
    theory_slope: float | None
    note: str = ""
    #: theory slopes of the secondary loss columns (e.g. ``{"loss_voronoi_ratio": -0.5}``)
    other_theory: dict = field(default_factory=dict)
    #: what the theory says of the main loss where it gives no slope (tables print it)
    theory_text: str = ""

    def theory_for(self, column: str):
        """The theory slope of a result column (``"loss"`` or ``"loss_<name>"``)."""
        if column == "loss":
            return self.theory_slope
        return {"loss_density": -0.5, **self.other_theory}.get(column)


@dataclass(frozen=True)
class Setup:
    """A simulation setup: its true model and the fitted configurations."""

    id: str
    paper: str
    truth: TrueModel
    fitted: tuple = field(default_factory=tuple)
    description: str = ""


def _dnh_params(top1=False):
    """The [D] truth: k* = 2, d = 1 (with beta_0 = 0 for the top-1 variant of [T])."""
    return MoEParams(
        gate_coef=[[25.0], [0.0]],
        gate_intercept=[0.0, 0.0] if top1 else [-8.0, 0.0],
        expert_coef=[[-20.0], [20.0]],
        expert_intercept=[15.0, -5.0],
        expert_var=[0.09, 0.16],
    )


def _temperature_params():
    """This project's [S] truth: k* = 2, d = 1, tau = 0.5."""
    return MoEParams(
        gate_coef=[[3.0], [0.0]], gate_intercept=[0.5, 0.0],
        expert_coef=[[-2.0], [2.0]], expert_intercept=[1.0, -1.0],
        expert_var=[0.1, 0.2], temperature=0.5,
    )


def _d2_params():
    """The added d = 2, k* = 3 softmax truth (U[-1, 1]^2): three experts, each with
    a gate region of positive mass, distinct regression planes."""
    return MoEParams(
        gate_coef=[[4.0, -3.0], [-2.0, 5.0], [0.0, 0.0]],
        gate_intercept=[-1.0, -1.2, 0.0],
        expert_coef=[[-3.0, 2.0], [2.0, 1.0], [1.0, -3.0]],
        expert_intercept=[1.0, -1.0, 0.5],
        expert_var=[0.1, 0.15, 0.2],
    )


def _activation_setup(name, activation):
    sym = UniformDesign(-1.0, 1.0)
    return Setup(
        f"activation-{name}", "S",
        TrueModel(_temperature_params(), ActivationGate(activation, 0.5), sym),
        (FittedConfig(f"k2-{name}", 2, ActivationGate(activation, 1.0, learn_temperature=True),
                      "D1-temperature", -0.5, other_theory={"loss_voronoi_ratio": -0.5}),),
        f"activation ({name}) gate with learned tau, exact-specified (added setup)")


def _build():
    unit = UniformDesign(0.0, 1.0)
    sym = UniformDesign(-1.0, 1.0)
    setups = [
        Setup("softmax-exact", "D", TrueModel(_dnh_params(), SoftmaxGate(), unit),
              (FittedConfig("k2", 2, SoftmaxGate(), "D1", -0.5),),
              "softmax gate, exact-specified (k = k* = 2)"),
        Setup("softmax-over", "D", TrueModel(_dnh_params(), SoftmaxGate(), unit),
              (FittedConfig("k3", 3, SoftmaxGate(), "D2", -0.5),
               FittedConfig("k4", 4, SoftmaxGate(), "D2", -0.5)),
              "softmax gate, over-specified (k = 3, 4 > k* = 2)"),
        Setup("topk-exact", "T", TrueModel(_dnh_params(top1=True), TopKGate(1), sym),
              (FittedConfig("k2-top1", 2, TopKGate(1), "D1-topk", -0.5),),
              "top-1 gate, exact-specified (k = k* = 2), X ~ U[-1, 1]"),
        Setup("topk-over", "T", TrueModel(_dnh_params(top1=True), TopKGate(1), sym),
              (FittedConfig("k3-top2", 3, TopKGate(2), "D2-topk", -0.5,
                            "K-bar = 2 >= K_needed = 2 ([T]: converges); measured: the "
                            "density error converges at -1/2 but D2 does not, because "
                            "a top-2-of-3 gate always selects the middle-slope expert "
                            "(d = 1) and reaches the top-1 truth only as gate "
                            "parameters diverge",
                            {"loss_density": -0.5}),
               FittedConfig("k3-top1", 3, TopKGate(1), "density", None,
                            "K-bar = 1 < K_needed = 2: [T]'s condition is sufficient "
                            "only, so [T] gives no guarantee (the user guide's *The model and its gates*); "
                            "measured: converges at -1/2, because in d = 1 a top-1 "
                            "gate selects only the largest or the smallest slope, so "
                            "one of three experts is never selected and the fitted "
                            "class contains the truth", {},
                            "no guarantee ([T]'s condition fails)")),
              "top-K gate, over-specified (k = 3 > k* = 2); the top-2-of-3 case is a "
              "documented pathology (its limit needs diverging gate parameters)"),
        Setup("topk-over-k4", "T", TrueModel(_dnh_params(top1=True), TopKGate(1), sym),
              (FittedConfig("k4-top2", 4, TopKGate(2), "D2-topk", -0.5,
                            "K-bar = 2 >= K_needed = 2 with a finite limit: each true "
                            "expert fitted by two atoms with equal slopes, so the top-2 "
                            "selection picks both copies of the true expert everywhere "
                            "(a 3 + 1 split has K_needed = 3 > K-bar and no finite "
                            "limit)", {"loss_density": -0.5}),),
              "top-K gate, over-specified where [T]'s condition holds with a finite "
              "limit (top-1 truth, k* = 2; fitted k = 4, top-2)"),
        Setup("temperature", "S",
              TrueModel(_temperature_params(), TemperatureGate(0.5), sym),
              (FittedConfig("k2-learned-tau", 2, TemperatureGate(1.0, learn_temperature=True),
                            "D1-temperature", None,
                            "(beta_1, tau) not identifiable; beta_1/tau at -1/2",
                            {"loss_voronoi_ratio": -0.5}, "no polynomial rate"),),
              "temperature gate with learned tau, identity activation"),
        Setup("activation", "S",
              TrueModel(_temperature_params(), ActivationGate("tanh", 0.5), sym),
              (FittedConfig("k2-tanh", 2, ActivationGate("tanh", 1.0, learn_temperature=True),
                            "D1-temperature", -0.5, other_theory={"loss_voronoi_ratio": -0.5}),
               FittedConfig("k3-tanh", 3, ActivationGate("tanh", 1.0, learn_temperature=True),
                            "D2-temperature", -0.5, other_theory={"loss_voronoi_ratio": -0.5})),
              "activation (tanh) gate with learned tau"),
        _activation_setup("sigmoid", "sigmoid"),
        _activation_setup("gelu", "gelu"),
        Setup("softmax-d2-exact", "D", TrueModel(_d2_params(), SoftmaxGate(),
                                                UniformDesign(-1.0, 1.0, 2)),
              (FittedConfig("k3", 3, SoftmaxGate(), "D1", -0.5),),
              "softmax gate, d = 2, k* = 3, exact-specified (added setup)"),
        Setup("softmax-d2-over", "D", TrueModel(_d2_params(), SoftmaxGate(),
                                               UniformDesign(-1.0, 1.0, 2)),
              (FittedConfig("k4", 4, SoftmaxGate(), "D2", -0.5),),
              "softmax gate, d = 2, k* = 3, over-specified with k = 4 (added setup; "
              "one doubled cell: per-cell rates)"),
    ]
    return {s.id: s for s in setups}


#: the setups of the user guide's *Simulations*, setups, by id
SETUPS = _build()


def get_setup(setup_id) -> Setup:
    """The setup named ``setup_id`` (see :data:`SETUPS`); a :class:`Setup` is returned as is.

    A :class:`Setup` passes through so that code taking a setup id also takes the setup
    of a custom truth (a sweep config's ``[truth]`` table, built by
    :func:`moestats.simulation.truth_config.build_setup`), which is not in :data:`SETUPS`.

    Examples
    --------
    >>> from moestats.setups import get_setup
    >>> s = get_setup("softmax-exact")
    >>> s.truth.params.n_experts, get_setup(s) is s
    (2, True)
    """
    if isinstance(setup_id, Setup):
        return setup_id
    try:
        return SETUPS[setup_id]
    except KeyError:
        raise ValueError(f"unknown setup {setup_id!r}; known: {sorted(SETUPS)}") from None

