"""Configuration: one pydantic model per section, read from YAML with dotted overrides.

Every YAML file in ``configs/`` is validated by :class:`Config`. Unknown keys are an error
that names the key and the file, because a misspelt option silently falling back to its
default is the most expensive kind of configuration bug in a long simulation campaign.

Examples
--------
>>> from alchemy_obs.config import load_config
>>> cfg = load_config(None, ["synth.n_galaxies=3"])
>>> cfg.synth.n_galaxies
3
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

__all__ = [
    "ConfigError",
    "Section",
    "SynthConfig",
    "TNGConfig",
    "Config",
    "load_config",
    "config_hash",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file and key."""


class Section(BaseModel):
    """Base of every configuration section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(Section):
    """Synthetic galaxies written in the TNG cutout layout."""

    n_galaxies: int = Field(4, ge=1, description="Number of galaxies to generate.")
    n_particles: int = Field(
        20_000, ge=1_000, le=5_000_000, description="Approximate total particles per galaxy."
    )
    seed: int = Field(42, description="Seed of the random generator; galaxy i uses (seed, i).")
    out_dir: Path = Field(Path("synthetic"), description="Folder receiving cutout_<id>.hdf5.")
    merger_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="Probability that a galaxy has a merging companion."
    )


class TNGConfig(Section):
    """Access to IllustrisTNG through the web API or a local snapshot directory."""

    api_key: SecretStr | None = Field(
        None, description="TNG API key; the TNG_API_KEY environment variable takes precedence."
    )
    base_url: str = "https://www.tng-project.org/api"
    simulation: str = "TNG50-1"
    snapshot: int = 99
    cache_dir: Path = Path("tng_cache")
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(5, ge=0)
    backoff_s: float = Field(2.0, ge=0)
    snapshot_dir: Path | None = Field(
        None, description="Local simulation output folder (snapdir_NNN, groups_NNN, offsets)."
    )

    def resolved_api_key(self) -> SecretStr | None:
        """The key to use: environment first, then the config file."""
        env = os.environ.get("TNG_API_KEY")
        return SecretStr(env) if env else self.api_key


class Config(Section):
    """The whole pipeline configuration; each stage reads its own section."""

    synth: SynthConfig = SynthConfig()
    tng: TNGConfig = TNGConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key!r}")
        else:
            lines.append(f"{source}: {key}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML configuration and apply ``key.sub=value`` overrides.

    Parameters
    ----------
    path : path-like or None
        YAML file; ``None`` uses the built-in defaults.
    overrides : list of str
        Dotted assignments such as ``"maps.npix=256"``; values are parsed as YAML scalars.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If the file is missing or not a mapping, or a key is unknown or invalid. The message
        names the file (or ``--set`` for overrides) and the key.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read configuration ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: top level must be a mapping of sections")
        tree = loaded
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. maps.npix=256")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        where = source if not overrides else f"{source} (with --set {' '.join(overrides)})"
        raise ConfigError(_describe(exc, where)) from None


def config_hash(section: BaseModel) -> str:
    """A short stable hash of a configuration section, for provenance and caching.

    Secrets serialise masked (``SecretStr``), so the hash and the dump can go into files.
    """
    data = section.model_dump(mode="json")
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
