"""Atomic output files: write a temporary file in the same directory, then rename it.

A reader (or a crash, a full disk, an interrupt) never sees a half-written figure,
table or JSON under its final name: the file there is the old one or the complete
new one. The temporary file is ``.<name>.<pid>.<random>.tmp`` in the target's
directory (same file system, so :func:`os.replace` is atomic); it is removed when the
writing fails, and :func:`remove_stale_temporaries` removes those of dead processes
(a SIGKILL during a write).
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path

from .faults import os_error

__all__ = ["atomic_path", "write_text", "write_csv", "save_figure",
           "remove_stale_temporaries", "pid_alive"]

_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(-wal|-shm|-journal)?$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine; a zombie counts).

    Examples
    --------
    >>> import os
    >>> from moestats.simulation.atomic import pid_alive
    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _temporary(path: Path) -> Path:
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


@contextmanager
def atomic_path(path, *, fsync=True, action="writing"):
    """Yield a temporary path beside ``path``; when the block ends without an
    exception, the temporary file replaces ``path`` (:func:`os.replace`), else it is
    removed and ``path`` is left as it was. An :class:`OSError` (disk full, read-only
    file system, ...) becomes a one-line :class:`~moestats.simulation.faults.FileSystemError`
    naming ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation.atomic import atomic_path
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("a,b\\n1,2\\n")
    >>> out.read_text()
    'a,b\\n1,2\\n'
    >>> try:
    ...     with atomic_path(out) as tmp:
    ...         _ = tmp.write_text("half a ta")
    ...         raise RuntimeError("disk gone")
    ... except RuntimeError:
    ...     pass
    >>> out.read_text(), sorted(p.name for p in out.parent.iterdir())
    ('a,b\\n1,2\\n', ['table.csv'])
    """
    path = Path(path)
    try:
        tmp = _temporary(path)
    except OSError as exc:
        exc.filename = None
        raise os_error(exc, path, action) from None
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            exc.filename = None  # name the output, not its temporary
            raise os_error(exc, path, action) from None
        raise


def write_text(path, text: str):
    """Write ``text`` to ``path`` atomically (UTF-8).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation.atomic import write_text
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "slopes.json"
    >>> write_text(path, "{}")
    >>> path.read_text()
    '{}'
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(frame, path, **kwargs):
    """``frame.to_csv(path, **kwargs)``, atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import pandas as pd
    >>> from moestats.simulation.atomic import write_csv
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
    >>> write_csv(pd.DataFrame({"n": [100, 200]}), path, index=False)
    >>> path.read_text().split()
    ['n', '100', '200']
    """
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def save_figure(fig, path, **kwargs):
    """``fig.savefig(path, **kwargs)``, atomically (the format from the suffix).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from matplotlib.figure import Figure
    >>> from moestats.simulation.atomic import save_figure
    >>> fig = Figure()
    >>> ax = fig.add_subplot()
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rates.svg"
    >>> save_figure(fig, path)
    >>> path.read_text().lstrip().startswith("<?xml")
    True
    """
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip("."))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)


def remove_stale_temporaries(directory) -> list:
    """Remove the temporary files of :func:`atomic_path` (and of a store's creation)
    left in ``directory`` by processes that no longer exist; return their paths.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation.atomic import remove_stale_temporaries
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".table.csv.999999999.0a1b2c3d.tmp").write_text("half")  # a dead pid
    >>> [p.name for p in remove_stale_temporaries(d)], list(d.iterdir())
    (['.table.csv.999999999.0a1b2c3d.tmp'], [])
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if m is None or pid_alive(int(m.group("pid"))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed
