"""Pieces shared by the flows: configuration loading and cache keys."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from alchemy_obs.config import Config, config_hash, load_config

__all__ = ["flow_config", "file_stamp", "cache_key"]


def flow_config(config: str | None, overrides: list[str] | None) -> Config:
    """The configuration a flow run uses: a YAML path (relative to the working directory)
    plus dotted overrides, exactly as on the command line."""
    return load_config(config, overrides or [])


def file_stamp(path: str | os.PathLike) -> str:
    """Size and modification time of ``path`` ("absent" if it does not exist).

    Part of every cache key of a task that writes a file: deleting or rewriting the output
    invalidates the cached result, so the task runs again instead of returning stale data.
    """
    p = Path(path)
    if not p.exists():
        return "absent"
    st = p.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def cache_key(*parts: Any) -> str:
    """A cache key from the task's identifying inputs and configuration sections."""
    h = hashlib.sha256()
    for part in parts:
        text = config_hash(part) if hasattr(part, "model_dump") else str(part)
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()
