"""The ``moestats`` console script: the command's imports inside its Ctrl-C handler.

The script pip writes runs ``from moestats._entry import main`` at its top level, so
a Ctrl-C there would print a traceback; this module and the package's ``__init__``
import nothing heavy (``moestats/__init__.py`` imports its public names lazily), and
:func:`main` imports the command (scikit-learn, SciPy, Dask ...) where a Ctrl-C ends
it with the command's one line and exit code 130 (:mod:`moestats.simulation.cli`).
"""

import sys

__all__ = ["main"]


def main(argv=None):
    """Run the ``moestats`` command (:func:`moestats.simulation.cli.main`).

    Returns its exit code; 130 (or the signal's code) after a Ctrl-C that comes
    before the command has installed its own handler, i.e. during the imports.
    """
    try:
        from .simulation.cli import main as command
        return command(argv)
    except KeyboardInterrupt as exc:
        print("moestats: interrupted; no store was changed", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", 130)
