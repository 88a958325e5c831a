"""Sphinx configuration of the moestats documentation.

Build (from the repository root)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import moestats  # noqa: E402
from sg_scrapers import TightMatplotlibScraper  # noqa: E402

project = "moestats"
author = "the moestats developers"
copyright = "the moestats developers"  # noqa: A001
version = release = moestats.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "gallery",
                    "sg_scrapers.py"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
language = "en"

# -- autodoc / autosummary / numpydoc ----------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {}
autodoc_typehints = "none"
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
nitpicky = False
add_module_names = False

# -- sphinx-gallery -----------------------------------------------------------------------
# Every example runs at build time: small sizes, a few seconds each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sphinx_gallery_conf = {
    "image_scrapers": (TightMatplotlibScraper(),),
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "backreferences_dir": None,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
}
# Matplotlib's "non-interactive backend" warning when an example calls plt.show().
warnings.filterwarnings("ignore", category=UserWarning,
                        message="(?s).*FigureCanvasAgg is non-interactive")

# -- intersphinx (used only when reachable; -W does not fail on it being offline) ----------
intersphinx_mapping = {}

# -- HTML -----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"moestats {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
html_show_sourcelink = False
mathjax3_config = {"tex": {"macros": {}}}


# -- citations ------------------------------------------------------------------------------
# The docstrings cite the papers as [D], [T] and [S]; make every such citation outside
# literal blocks a link to its full reference (user_guide/references.rst).
import re  # noqa: E402

_CITATION = re.compile(r"(?<![\w`\[])\[(D|T|S)\](?![_\w(])")


def _link_citations(app, what, name, obj, options, lines):
    literal_indent = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.endswith("::") or stripped.startswith(">>>") or stripped.startswith("..."):
            if stripped.endswith("::"):
                literal_indent = indent
            continue
        lines[i] = _CITATION.sub(r"[\1]_", line)


def setup(app):
    app.connect("autodoc-process-docstring", _link_citations, priority=400)
