"""The documentation sources: every public name in the API reference, shipped references only.

The build itself (``python -m sphinx -W --keep-going -b html docs docs/_build/html``, which
also runs the gallery) is a CI step, not a test: it takes about a minute.
"""

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: modules whose ``__all__`` the API reference must cover
PUBLIC_MODULES = [
    "moestats", "moestats.gates", "moestats.params", "moestats.sampling", "moestats.setups",
    "moestats.likelihood", "moestats.experts", "moestats.solvers", "moestats.inference",
    "moestats.selection", "moestats.losses", "moestats.rates", "moestats.plotting",
    "moestats.simulation", "moestats.backends", "moestats.datasets", "moestats.structure",
    "moestats.weights",
]

#: gallery examples the issue asks for (file stem -> what it shows)
GALLERY = {
    "plot_gate_families": "fitting each gate family",
    "plot_rate_study": "a rate study",
    "plot_inference": "inference",
    "plot_model_selection": "model selection",
    "plot_real_data": "real data",
}


def _documented():
    """{(module, name)} of every autosummary entry and ``.. data::`` of the API pages."""
    found = set()
    for page in sorted((DOCS / "api").glob("*.rst")):
        module = None
        in_autosummary = False
        for line in page.read_text().splitlines():
            m = re.match(r"\.\. currentmodule:: (\S+)", line)
            if m:
                module = m.group(1)
                continue
            if line.startswith(".. "):
                in_autosummary = line.startswith(".. autosummary::")
                m = re.match(r"\.\. data:: (\S+)", line)
                if m:
                    found.add((module, m.group(1)))
                continue
            if in_autosummary:
                m = re.fullmatch(r"   ([A-Za-z_][\w.]*)", line)
                if m:
                    found.add((module, m.group(1)))
                elif line.strip() and not line.startswith("   "):
                    in_autosummary = False
    return found


def _same_object(a, b):
    return a is b or (inspect.isroutine(a) and inspect.isroutine(b)
                      and getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module_name):
    documented = _documented()
    module = importlib.import_module(module_name)
    objects = {}
    for mod, name in documented:
        if mod is None:
            continue
        try:
            objects[mod, name] = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            pytest.fail(f"the API reference lists {mod}.{name}, which does not exist")
    missing = []
    for name in module.__all__:
        if (module_name, name) in documented:
            continue
        obj = getattr(module, name)
        # documented under another public module, by the same name (e.g.
        # moestats.SoftmaxGate for moestats.gates.SoftmaxGate)
        if not any(other_name == name and _same_object(obj, other)
                   for (_, other_name), other in objects.items()):
            missing.append(name)
    assert not missing, (f"{module_name}: not in docs/api/*.rst: {missing} (add them to an "
                         "autosummary list or a '.. data::' entry)")


def test_no_unshipped_file_is_cited_in_the_docs():
    pattern = re.compile(r"papers\.md|ARCHITECTURE\.md")
    sources = [p for p in DOCS.rglob("*") if p.suffix in (".rst", ".py")
               and "_build" not in p.parts and "auto_examples" not in p.parts
               and "generated" not in p.parts and p.name != "test_docs.py"]
    offenders = [str(p.relative_to(DOCS)) for p in sources if pattern.search(p.read_text())]
    assert sources and not offenders


def test_citations_are_expanded():
    refs = (DOCS / "user_guide" / "references.rst").read_text()
    for label, arxiv in [("D", "2305.03288"), ("T", "2309.13850"), ("S", "2401.13875"),
                         ("DSC", "2510.12744")]:
        assert f".. [{label}]" in refs and f"arXiv:{arxiv}" in refs


@pytest.mark.parametrize("stem", sorted(GALLERY))
def test_gallery_example_exists_with_a_title(stem):
    path = DOCS / "gallery" / f"{stem}.py"
    assert path.exists(), f"gallery example for {GALLERY[stem]} missing"
    doc = path.read_text().split('"""')[1].strip().splitlines()
    assert len(doc) >= 2 and set(doc[1]) == {"="} and len(doc[1]) >= len(doc[0])


def test_user_guide_pages_are_in_the_toctree():
    index = (DOCS / "user_guide" / "index.rst").read_text()
    pages = {p.stem for p in (DOCS / "user_guide").glob("*.rst")} - {"index"}
    assert pages and all(f"   {page}\n" in index for page in pages)


def test_public_docstrings_cite_no_unshipped_file():
    pattern = re.compile(r"papers\.md|ARCHITECTURE\.md")
    offenders = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        if pattern.search(module.__doc__ or ""):
            offenders.add(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            docs = [inspect.getdoc(obj) or ""] if (inspect.isclass(obj)
                                                   or inspect.isroutine(obj)) else []
            if inspect.isclass(obj):
                docs += [inspect.getdoc(m) or "" for _, m in inspect.getmembers(obj)
                         if inspect.isroutine(m) or isinstance(m, property)]
            if any(pattern.search(d) for d in docs):
                offenders.add(f"{module_name}.{name}")
    assert not offenders, sorted(offenders)
