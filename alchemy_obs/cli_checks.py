"""Checks of command-line paths made before a command starts its work.

A command that would fail on its output path only after minutes of work (or after reading
its inputs) checks the path first with these, and raises :class:`~alchemy_obs.errors.UsageError`
with a one-line message that names the option.
"""

from __future__ import annotations

import os
from pathlib import Path

from alchemy_obs.errors import UsageError

__all__ = ["check_output_folder", "check_output_file", "check_input_file", "check_input_folder"]


def check_output_folder(path: str | os.PathLike, option: str) -> Path:
    """``path`` is a folder or can be made one (it is not a file, nor under one)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f"{p} "
                raise UsageError(f"{option} {path}: {where}is a file, not a folder")
            break
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be written as a file: not a folder, and its folder is not a file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    check_output_folder(path.parent, option)
    return path


def check_input_file(path: str | os.PathLike, option: str, what: str = "file") -> Path:
    """``path`` exists and is a file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; expected a {what}")
    if not path.exists():
        raise UsageError(f"{option} {path}: no such {what}")
    return path


def check_input_folder(path: str | os.PathLike | None, option: str, what: str = "folder") -> Path:
    """``path`` is given, exists and is a folder."""
    if path is None:
        raise UsageError(f"{option}: required ({what})")
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{option} {path}: no such folder")
    if not path.is_dir():
        raise UsageError(f"{option} {path}: is a file; expected a {what}")
    return path


def parse_distance(text: str):
    """``--distance``: a number of Mpc or a length with its unit (``3.2``, ``3200kpc``).

    Returns
    -------
    Quantity
        In Mpc.

    Raises
    ------
    UsageError
        If ``text`` is not a positive length.
    """
    import astropy.units as u

    try:
        value = u.Quantity(text)
        value = value * u.Mpc if value.unit == u.one else value.to(u.Mpc)
    except (TypeError, ValueError, u.UnitsError):
        raise UsageError(f"--distance {text!r}: expected a length such as 3.2 (Mpc) or "
                         "3200kpc") from None
    if not (value.isscalar and value.value > 0):
        raise UsageError(f"--distance {text!r}: must be a positive length")
    return value
