"""Pieces shared by the flows: configuration loading and cache keys."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.futures import wait

from alchemy_obs.config import Config, config_hash, load_config

__all__ = ["flow_config", "file_stamp", "cache_key", "completed_ids"]


def flow_config(config: str | None, overrides: list[str] | None) -> Config:
    """The configuration a flow run uses: a YAML path (relative to the working directory,
    or ``configs/<name>`` of a shipped one) plus dotted overrides, exactly as on the command
    line."""
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


def completed_ids(sources, futures, what: str) -> list[int]:
    """Wait for one task per galaxy; log each failure and return the ids that succeeded.

    A failed galaxy does not fail the flow (a campaign goes on past a bad cutout); only a
    run in which every galaxy failed raises.
    """
    wait(futures)
    log = get_run_logger()
    done = []
    for s, fut in zip(sources, futures):
        if fut.state.is_completed():
            done.append(fut.result())
        else:
            log.error("%s of galaxy %d (%s) failed: %s", what, s.galaxy_id, s.label,
                      fut.state.message)
    if not done:
        raise RuntimeError(f"{what}: all {len(sources)} galaxies failed; see the task logs")
    return done
