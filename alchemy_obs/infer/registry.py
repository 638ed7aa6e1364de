"""The model registry: ``models/registry.yaml`` lists the translators shipped or installed.

Format (``format: alchemy-obs-registry/1``)::

    format: alchemy-obs-registry/1
    models:
      hi2dm:                           # the name given to ``--model``
        path: hi2dm                    # model folder, relative to the registry file
        version: "1"
        description: HI column density -> dark matter surface density (64x64, synthetic)
        demonstration: true            # trained on synthetic galaxies: not a science result
        method: pix2pix
        inputs: [hi_nhi]
        target: dm
        units: {hi_nhi: cm-2, dm: solMass / kpc2}
        npix: 64
        pixel_kpc: 0.75
        beam_fwhm_kpc: 1.5             # optional: resolution of the training observations
        normalisation: {...}           # as in the model card
        training_data: {...}           # as in the model card
        metrics: {...}                 # as in the model card
        sha256: 3f1c...                # SHA-256 of model.safetensors

The folder itself is a translator checkpoint written by
:func:`alchemy_obs.translate.checkpoint.save_model` (``card.json`` + ``model.safetensors``).
:func:`resolve` checks the weights against the registry's checksum, and the registry's
description against the card, before anything is loaded; :func:`register_model` writes an
entry from a model folder so the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alchemy_obs.atomic import temporary_beside
from alchemy_obs.errors import AlchemyObsError
from alchemy_obs.translate.checkpoint import models_folder, sha256_file

__all__ = [
    "REGISTRY_FORMAT",
    "RegistryError",
    "ModelEntry",
    "Registry",
    "load_registry",
    "resolve",
    "best_model",
    "register_model",
]

REGISTRY_FORMAT = "alchemy-obs-registry/1"
_CARD = "card.json"
_WEIGHTS = "model.safetensors"
#: Fields that the registry and the model card must agree on.
_SHARED_FIELDS = ("method", "inputs", "target", "npix", "pixel_kpc", "normalisation")


class RegistryError(AlchemyObsError, ValueError):
    """The registry file is invalid, a name is unknown, or a checksum does not match."""


class ModelEntry(BaseModel):
    """One registered translator."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(..., description="Model folder, relative to the registry file.")
    version: str = Field("1", description="Version of this model under its name.")
    description: str = ""
    demonstration: bool = Field(
        False, description="True for models trained on synthetic data: not a science result."
    )
    method: str
    inputs: list[str] = Field(..., min_length=1)
    target: str
    units: dict[str, str] = Field(default_factory=dict)
    npix: int = Field(..., ge=1)
    pixel_kpc: float = Field(..., gt=0)
    beam_fwhm_kpc: float | None = Field(None, gt=0)
    normalisation: dict[str, Any]
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")


class Registry(BaseModel):
    """The registry file."""

    model_config = ConfigDict(extra="forbid")

    format: str = REGISTRY_FORMAT
    models: dict[str, ModelEntry] = Field(default_factory=dict)


def default_registry_path() -> Path:
    """``registry.yaml`` of :func:`~alchemy_obs.translate.checkpoint.models_folder`."""
    return models_folder() / "registry.yaml"


def registry_file(path: str | os.PathLike | None = None) -> Path:
    """The registry file to read: ``path`` as given, else :func:`default_registry_path`.

    A path given by the user is read from there (relative to the working directory); only
    the default is the installed package's, so it does not depend on where a command runs
    or on a source checkout.
    """
    return Path(path) if path is not None else default_registry_path()


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Read and validate a registry file; a missing file is an empty registry.

    Raises
    ------
    RegistryError
        If the file is not valid YAML or does not follow the format; the message names it.
    """
    path = registry_file(path)
    if not path.is_file():
        return Registry()
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML ({exc})") from None
    if tree.get("format", REGISTRY_FORMAT) != REGISTRY_FORMAT:
        raise RegistryError(f"{path}: format {tree.get('format')!r} is not {REGISTRY_FORMAT!r}")
    try:
        return Registry.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RegistryError(f"{path}: {problems}") from None


def resolve(
    name: str, registry_path: str | os.PathLike | None = None
) -> tuple[Path, ModelEntry] | None:
    """The verified folder of a registered model, or ``None`` if ``name`` is not registered.

    Parameters
    ----------
    name : str
        Registry name.
    registry_path : path-like, optional
        Registry file (default :func:`default_registry_path`; see :func:`registry_file`).

    Returns
    -------
    (Path, ModelEntry) or None

    Raises
    ------
    RegistryError
        If the folder or its files are missing, the weights' SHA-256 differs from the
        registry's, or the registry and the model card disagree.
    """
    registry_path = registry_file(registry_path)
    entry = load_registry(registry_path).models.get(name)
    if entry is None:
        return None
    folder = (registry_path.parent / entry.path).resolve()
    weights, card_path = folder / _WEIGHTS, folder / _CARD
    if not weights.is_file() or not card_path.is_file():
        raise RegistryError(f"{registry_path}: model {name!r}: {folder} lacks {_WEIGHTS} or {_CARD}")
    digest = sha256_file(weights)
    if digest != entry.sha256:
        raise RegistryError(
            f"{weights}: sha256 {digest} does not match the registry's {entry.sha256} "
            f"for {name!r} (corrupt or replaced weights)"
        )
    card = json.loads(card_path.read_text())
    for field in _SHARED_FIELDS:
        if _normalised(card.get(field)) != _normalised(getattr(entry, field)):
            raise RegistryError(
                f"{registry_path}: model {name!r}: {field} differs between the registry and "
                f"{card_path}"
            )
    return folder, entry


def _score(entry: ModelEntry) -> tuple[bool, float, float]:
    """Sort key of :func:`best_model`: science models first, then the held-out errors."""
    model = entry.metrics.get("model", {})

    def dex(key: str) -> float:
        value = model.get(key)
        return float(value) if isinstance(value, (int, float)) else float("inf")

    return entry.demonstration, dex("profile_abs_dex"), dex("mass_abs_dex")


def best_model(
    target: str, registry_path: str | os.PathLike | None = None
) -> tuple[str, ModelEntry] | None:
    """The registered model to use for ``target`` when none is named.

    Models trained on real-like data come before demonstration models; among those, the one
    with the smallest held-out radial-profile error (``metrics.model.profile_abs_dex``, dex,
    as ``alchemy-obs models`` lists it), then total-mass error, then name, wins. A model
    without metrics ranks last among its kind.

    Parameters
    ----------
    target : str
        The target domain (``dm``, ``stars``, ...).
    registry_path : path-like, optional
        Registry file (see :func:`registry_file`).

    Returns
    -------
    (str, ModelEntry) or None
        Its registry name and entry, or ``None`` if no model predicts ``target``.
    """
    candidates = [(name, entry) for name, entry in load_registry(registry_path).models.items()
                  if entry.target == target]
    if not candidates:
        return None
    return min(candidates, key=lambda item: (*_score(item[1]), item[0]))


def _normalised(value: Any) -> Any:
    """JSON round trip, so tuples/lists and int/float spellings compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def register_model(
    folder: str | os.PathLike,
    name: str,
    registry_path: str | os.PathLike | None = None,
    *,
    version: str = "1",
    description: str = "",
    demonstration: bool = False,
    beam_fwhm_kpc: float | None = None,
) -> ModelEntry:
    """Add (or replace) ``name`` in the registry from a model folder; written atomically.

    Parameters
    ----------
    folder : path-like
        Model folder (``card.json`` + ``model.safetensors``).
    name : str
        Registry name.
    registry_path : path-like, optional
        Registry file; created if absent.
    version, description : str
        Shown to users and written into every output file.
    demonstration : bool
        Mark a model trained on synthetic data.
    beam_fwhm_kpc : float, optional
        Resolution of the training observations (for the beam-mismatch warning).

    Returns
    -------
    ModelEntry
    """
    registry_path = Path(registry_path) if registry_path is not None else default_registry_path()
    folder = Path(folder)
    card = json.loads((folder / _CARD).read_text())
    relative = os.path.relpath(folder.resolve(), registry_path.parent.resolve())
    entry = ModelEntry(
        path=relative, version=version, description=description, demonstration=demonstration,
        method=card["method"], inputs=card["inputs"], target=card["target"],
        units=card.get("units", {}), npix=card["npix"], pixel_kpc=card["pixel_kpc"],
        beam_fwhm_kpc=beam_fwhm_kpc if beam_fwhm_kpc is not None else card.get("beam_fwhm_kpc"),
        normalisation=card["normalisation"], training_data=card.get("training_data", {}),
        metrics=card.get("metrics", {}), sha256=sha256_file(folder / _WEIGHTS),
    )
    registry = load_registry(registry_path)
    registry.models[name] = entry
    text = yaml.safe_dump(
        _normalised(registry.model_dump(mode="json")), sort_keys=False, default_flow_style=None
    )
    registry_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(registry_path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, registry_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return entry
