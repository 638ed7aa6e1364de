"""Temporary files for atomic writes: written beside the target, then renamed onto it.

Every writer of the package writes a temporary file in the target's folder and moves it into
place with :func:`os.replace`, so a reader never sees half a file and an interrupted run
leaves the old file (or none). :func:`tempfile.mkstemp` creates its file with mode 0600; a
product renamed from it would be unreadable to the rest of a group on a shared cluster, so
:func:`temporary_beside` gives the file the mode a new file gets under the process umask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["temporary_beside"]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, str]:
    """Create a hidden temporary file in ``path``'s folder, with umask permissions.

    Parameters
    ----------
    path : path-like
        The file that the temporary file will replace.
    suffix : str
        Ending of the temporary name (some writers choose the format from it).

    Returns
    -------
    fd : int
        An open file descriptor of the temporary file (the caller closes it).
    name : str
        Its path.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.chmod(name, 0o666 & ~_umask())
    return fd, name
