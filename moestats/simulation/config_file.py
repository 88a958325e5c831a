"""Reading sweep configs: TOML files and parsed tables to :class:`SweepSpec` objects.

The format is that of :mod:`moestats.simulation.spec` (one config per figure, shipped in
the package as ``moestats.configs``); :func:`load_spec` reads a file,
:func:`spec_from_config` a parsed table, :func:`spec_from_setup` a setup's shipped config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..setups import SETUPS, get_setup
from ..solvers.space import THEORY_SPACE, ParameterSpace
from .spec import FORMS, ConfigError, SweepSpec

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

__all__ = ["load_spec", "spec_from_config", "spec_from_setup", "default_config_dir"]


def _sample_sizes(value, where):
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max", "num"}
        if unknown:
            raise ConfigError(f"config field {where!r}: unknown key(s) {sorted(unknown)}; "
                              "use min, max, num")
        try:
            lo, hi, num = float(value["min"]), float(value["max"]), int(value["num"])
        except KeyError as exc:
            raise ConfigError(f"config field {where!r}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ConfigError(f"config field {where!r}: min, max and num must be numbers, "
                              f"got {value!r}") from None
        if not (10 <= lo <= hi) or num < 1:
            raise ConfigError(f"config field {where!r}: need 10 <= min <= max and num >= 1, "
                              f"got {value!r}")
        sizes = np.unique(np.round(np.geomspace(lo, hi, num)).astype(int))
        return tuple(int(n) for n in sizes)
    if isinstance(value, list):
        return tuple(value)
    raise ConfigError(f"config field {where!r}: must be a list of integers or "
                      f"{{min, max, num}}, got {value!r}")


_TOP_KEYS = {"setup", "fitted", "seed", "design", "start", "n_init", "start_noise",
             "density_sample", "truth",
             "solver", "space", "quick", "full", "description", "figure"}


def _table(config, name, allowed):
    """The sub-table ``config[name]`` ({} if absent), checked for unknown keys."""
    table = config.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config field {name!r}: must be a table, got {table!r}")
    bad = set(table) - allowed
    if bad:
        raise ConfigError(f"config field '{name}.{sorted(bad)[0]}': unknown; "
                          f"use {', '.join(sorted(allowed))}")
    return table


def spec_from_config(config: dict, form: str = "quick", name: str | None = None) -> SweepSpec:
    """A :class:`SweepSpec` from a parsed config (see the module docstring); ``name``
    labels a custom truth without a ``setup`` field (default ``"custom"``)."""
    if form not in FORMS:
        raise ConfigError(f"form must be one of {FORMS}, got {form!r}")
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"config field {sorted(unknown)[0]!r}: unknown field; "
                          f"known fields: {sorted(_TOP_KEYS)}")
    truth = None
    if "truth" in config:
        from .truth_config import truth_from_config
        setup, truth = truth_from_config(config, name)
        fitted = [f["name"] for f in truth["fitted"]]
    elif "setup" not in config:
        raise ConfigError("config field 'setup': missing (a setup id, or a [truth] table)")
    else:
        setup = config["setup"]
    if truth is None and setup not in SETUPS:
        raise ConfigError(f"config field 'setup': unknown setup {setup!r}; known: {sorted(SETUPS)}")
    solver = _table(config, "solver", {"name", "tol", "max_iter", "backend", "certify_tol"})
    space_table = _table(config, "space", {"var_bounds", "coef_bound", "temperature_bounds"})
    try:
        space = ParameterSpace.from_dict({**THEORY_SPACE.as_dict(), **space_table}) \
            if space_table else THEORY_SPACE
    except ValueError as exc:
        raise ConfigError(f"config field 'space': {exc}") from exc
    if form not in config:
        raise ConfigError(f"config field {form!r}: missing (the [{form}] table)")
    table = _table(config, form, {"sample_sizes", "replications"})
    for key in ("sample_sizes", "replications"):
        if key not in table:
            raise ConfigError(f"config field '{form}.{key}': missing")
    noise = _table(config, "start_noise", {"gate", "expert", "var"})
    if truth is None:
        fitted = config.get("fitted", [c.name for c in SETUPS[setup].fitted])
    if isinstance(fitted, str) or not isinstance(fitted, list):
        raise ConfigError(f"config field 'fitted': must be a list of names, got {fitted!r}")
    return SweepSpec(
        setup=setup, fitted=tuple(fitted),
        sample_sizes=_sample_sizes(table["sample_sizes"], f"{form}.sample_sizes"),
        replications=table["replications"], seed=config.get("seed", 0),
        design=config.get("design", "iid"), start=config.get("start", "near-truth"),
        n_init=config.get("n_init", 10),
        solver=solver.get("name", "em"), tol=solver.get("tol", 1e-6),
        max_iter=solver.get("max_iter", 2000), backend=solver.get("backend", "numba"),
        certify_tol=solver.get("certify_tol", 1e-3), space=space,
        density_sample=config.get("density_sample", 1000), form=form,
        start_gate_sd=noise.get("gate", 0.005), start_expert_sd=noise.get("expert", 0.05),
        start_var_sd=noise.get("var", 0.005), truth=truth,
        extra={k: config[k] for k in ("description", "figure") if k in config},
    )


def load_spec(path, form: str = "quick") -> SweepSpec:
    """Read a TOML config file (a path or a traversable) into a :class:`SweepSpec` of the
    given form; a custom truth without ``setup`` is labelled with the file's stem."""
    if not hasattr(path, "read_text"):
        path = Path(path)
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return spec_from_config(config, form, name=Path(path.name).stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def spec_from_setup(setup_id: str, form: str = "quick", config_dir=None) -> SweepSpec:
    """The spec of a setup id: ``<setup_id>.toml`` in ``config_dir`` (default: the shipped
    configs, :func:`default_config_dir`)."""
    config_dir = Path(config_dir) if config_dir is not None else default_config_dir()
    path = config_dir / f"{setup_id}.toml"
    if path.is_file():
        return load_spec(path, form)
    get_setup(setup_id)  # raises for an unknown id
    raise ConfigError(f"no config for setup {setup_id!r} in {config_dir}")


def default_config_dir():
    """The shipped configs, ``importlib.resources.files("moestats.configs")``.

    ``pyproject.toml`` maps that subpackage onto the repository's ``simulations/``: this
    is that folder in an editable install, ``site-packages/moestats/configs`` after
    ``pip install .`` or from a wheel (a :class:`~pathlib.Path`; a traversable for a zip
    import). An editable install older than the mapping falls back to ``simulations/``.

    Examples
    --------
    >>> from moestats.simulation.spec import default_config_dir
    >>> (default_config_dir() / "softmax-exact.toml").is_file()
    True
    """
    from importlib import resources
    try:
        return resources.files("moestats.configs")
    except ModuleNotFoundError:
        tree = Path(__file__).resolve().parents[2] / "simulations"
        if (tree / "__init__.py").is_file():
            return tree
        raise ConfigError("the shipped configs (moestats.configs) are not installed; "
                          "reinstall moestats (pip install .) or give a TOML file") from None
