"""The simulation configs, shipped inside the package as :mod:`moestats.configs`.

This folder stays the repository's ``simulations/``: ``pyproject.toml`` maps the
subpackage ``moestats.configs`` onto it (``[tool.setuptools] package-dir``), so an
editable install, ``pip install .`` and a wheel all carry the ``*.toml`` files (and
this folder's ``README.md``) without a copy. ``moestats run SETUP_ID`` reads them with
``importlib.resources.files("moestats.configs")``; see ``README.md`` here for the
config format.
"""
