"""Packaging: the configs ship inside the package (moestats.configs), every package is
listed in pyproject.toml, ``moestats --version``.

The install itself (a wheel in a fresh environment, run outside the repository) is a CI
step (``.ci/run``, "the wheel check"), not a test: it takes a minute or two.
"""

import sys
from importlib import resources
from pathlib import Path

import pytest

import moestats
from moestats.simulation.cli import main as cli_main
from moestats.simulation.spec import default_config_dir, load_spec, spec_from_setup

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "simulations").glob("*.toml"))


def _shipped():
    """``importlib.resources.files("moestats.configs")``; skipped (not failed) only for an
    editable install made before pyproject.toml mapped moestats.configs."""
    try:
        return resources.files("moestats.configs")
    except ModuleNotFoundError:
        finders = [m for name, m in sys.modules.items()
                   if name.startswith("__editable___moestats") and name.endswith("_finder")]
        if finders and "moestats.configs" not in getattr(finders[0], "MAPPING", {}):
            pytest.skip("this editable install predates the moestats.configs mapping of "
                        "pyproject.toml; rerun pip install -e .")
        raise


def test_the_repository_has_configs():
    assert len(CONFIGS) >= 10 and (ROOT / "simulations" / "__init__.py").is_file()


def test_configs_are_found_through_importlib_resources():
    shipped = _shipped()
    names = sorted(p.name for p in shipped.iterdir() if p.name.endswith(".toml"))
    assert names == [p.name for p in CONFIGS]
    for path in CONFIGS:
        assert (shipped / path.name).read_text() == path.read_text(), path.name
    assert (shipped / "README.md").is_file()
    assert (default_config_dir() / "softmax-exact.toml").is_file()


@pytest.mark.parametrize("form", ["quick", "full"])
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_loads_in_both_forms(path, form):
    spec = load_spec(path, form)
    assert spec.form == form and spec.tasks()
    # the same spec from the shipped configs, and by setup id where the file is named so
    shipped = load_spec(default_config_dir() / path.name, form)
    assert shipped.fingerprint() == spec.fingerprint()
    if spec.truth is None and spec.setup == path.stem:
        assert spec_from_setup(path.stem, form).fingerprint() == spec.fingerprint()


def test_pyproject_lists_every_package_and_ships_the_configs():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "moestats").rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"moestats.configs"}, (
        "pyproject.toml [tool.setuptools] packages must list every package of moestats/")
    assert setuptools["package-dir"] == {"moestats.configs": "simulations"}
    assert "*.toml" in setuptools["package-data"]["moestats.configs"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"moestats {moestats.__version__}"
