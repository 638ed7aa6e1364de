"""Saving and loading translators: safetensors weights plus a JSON model card.

This is the only way inference code should load a model::

    from alchemy_obs.translate.checkpoint import load_model
    from alchemy_obs.translate.normalise import Normalisation

    method, card = load_model("runs/gas2dm/model")       # a folder, a card.json, or a name
    norm = Normalisation.from_dict(card["normalisation"])
    x = torch.stack([norm.forward(d, maps[d]) for d in card["inputs"]])[None]   # (1, C, H, W)
    z = method.sample(x.to(method.device), steps=None)    # normalised prediction
    pred = norm.inverse(card["target"], z[0, 0])          # physical units (card["units"])

A model folder holds ``model.safetensors`` (the state dicts of the method's networks, keys
``"<network>.<parameter>"``; EMA weights for the sampling networks) and ``card.json``:

``format``
    ``"alchemy-obs-translator/1"``.
``method``
    Registered method name (``pix2pix``, ``ddpm``, ``indi``).
``config``
    The ``TrainConfig`` of the run (JSON): ``config["method"]`` and ``config["network"]``
    rebuild the networks.
``inputs``, ``target``
    Input domains (channel order) and target domain; ``in_channels``, ``out_channels``.
``units``
    Astropy unit string of each domain.
``normalisation``
    :meth:`~alchemy_obs.translate.normalise.Normalisation.to_dict` of every domain.
``npix``, ``pixel_kpc``
    Map size the model was trained on, and the pixel size in physical kpc.
``training_data``
    Store path, number of training maps, the store's ``config_hash`` and ``code_version``.
``metrics``
    Validation metrics at the end of training (see :mod:`alchemy_obs.translate.metrics`).
``step``
    Optimiser steps behind the weights.
``weights_sha256``
    SHA-256 of ``model.safetensors``; :func:`load_model` refuses a mismatch.

Names are resolved in the models folder (:func:`models_folder`: ``$ALCHEMY_OBS_MODELS``,
default the package's ``models`` folder): ``load_model("gas2dm")`` loads
``<models folder>/gas2dm/``.

Training checkpoints (:func:`save_training_state`) are model folders with two more files,
``state.safetensors`` (optimiser moments, EMA weights, RNG states) and ``state.json`` (step,
scheduler, config), so :func:`load_model` reads them too. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import difflib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from alchemy_obs.config import TrainConfig
from alchemy_obs.shipped import MODELS
from alchemy_obs.translate.methods import Method, build_method

__all__ = [
    "CARD_FORMAT",
    "save_model",
    "load_model",
    "resolve_model",
    "network_state",
    "save_training_state",
    "load_training_state",
    "saved_train_config",
    "sha256_file",
]

CARD_FORMAT = "alchemy-obs-translator/1"
WEIGHTS = "model.safetensors"
CARD = "card.json"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def network_state(method: Method) -> dict[str, torch.Tensor]:
    """Flat ``"<network>.<param>"`` state of every network of ``method`` (CPU, contiguous)."""
    return {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, net in method.nets.items()
        for k, v in net.state_dict().items()
    }


def _write_dir_atomically(final: Path, write) -> Path:
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        # mkdtemp and safetensors create private files; published models follow the umask.
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_model_files(folder: Path, weights: dict[str, torch.Tensor], card: dict) -> None:
    save_file(weights, str(folder / WEIGHTS))
    card = dict(card, format=CARD_FORMAT, weights_sha256=sha256_file(folder / WEIGHTS))
    (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))


def save_model(
    directory: str | os.PathLike, method: Method, card: dict[str, Any],
    *,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a model folder (``model.safetensors`` + ``card.json``) atomically.

    Parameters
    ----------
    directory : path-like
        Folder to create or replace.
    method : Method
        The trained method; its networks' current weights are saved unless ``weights``
        is given.
    card : dict
        Model card fields (see the module docstring); ``method``, ``format`` and
        ``weights_sha256`` are filled in here.
    weights : dict, optional
        Flat state to save instead (e.g. EMA weights), keys ``"<network>.<param>"``.

    Returns
    -------
    Path
    """
    state = weights if weights is not None else network_state(method)
    card = dict(card, method=method.name)
    return _write_dir_atomically(Path(directory), lambda d: _write_model_files(d, state, card))


def models_folder() -> Path:
    """The folder of installed models: ``$ALCHEMY_OBS_MODELS``, else the package's own.

    The default is :data:`alchemy_obs.shipped.MODELS`, the ``models`` folder installed with
    the package (editable or not), so every command finds the shipped models by name the
    same way from any working directory.
    """
    folder = os.environ.get("ALCHEMY_OBS_MODELS")
    return Path(folder) if folder else MODELS


def model_names(folder: Path | None = None) -> list[str]:
    """Names of the model folders (those with a card) in ``folder`` (default :func:`models_folder`)."""
    folder = models_folder() if folder is None else folder
    return sorted(p.parent.name for p in folder.glob(f"*/{CARD}")) if folder.is_dir() else []


def resolve_model(path_or_name: str | os.PathLike) -> Path:
    """The model folder of a path (folder or ``card.json``) or of a name in :func:`models_folder`."""
    p = Path(path_or_name)
    if p.name == CARD and p.is_file():
        return p.parent
    if (p / CARD).is_file():
        return p
    folder = models_folder()
    if (folder / str(path_or_name) / CARD).is_file():
        return folder / str(path_or_name)
    names = model_names(folder)
    close = difflib.get_close_matches(str(path_or_name), names, n=1)
    hint = (f"; did you mean {close[0]!r}?" if close
            else f"; installed: {', '.join(names)}" if names else "")
    raise FileNotFoundError(
        f"{path_or_name}: not a model folder (no {CARD}) nor a model name in {folder}/{hint}"
    )


# Keys whose default changed: cards written before the key existed were trained with the
# old behaviour, which the new default would silently replace.
_LEGACY_DEFAULTS = {("method", "ddpm", "prediction"): "eps", ("method", "sde", "prediction"): "noise",
                    ("method", "indi", "condition_on_start"): True}


def saved_train_config(config: dict[str, Any]) -> TrainConfig:
    """The ``train`` section stored in a card or checkpoint, as it was when it was trained."""
    config = json.loads(json.dumps(config))
    for (*parents, key), old in _LEGACY_DEFAULTS.items():
        section = config
        for name in parents:
            section = section.get(name) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.setdefault(key, old)
    return TrainConfig.model_validate(config)


def load_model(
    path_or_name: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[Method, dict[str, Any]]:
    """Load a translator for inference.

    Parameters
    ----------
    path_or_name : str or path-like
        Model folder, its ``card.json``, a training checkpoint folder, or a name in the
        model registry folder.
    device : str or torch.device, optional
        Defaults to CUDA when available, else CPU.

    Returns
    -------
    method : Method
        In eval mode on ``device``.
    card : dict
        The model card (see the module docstring).

    Raises
    ------
    FileNotFoundError
        If nothing is found.
    ValueError
        If the card is not a translator card or the weights' checksum does not match.
    """
    folder = resolve_model(path_or_name)
    card_path = folder / CARD
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{card_path}: not valid JSON ({exc})") from None
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{card_path}: format {card.get('format')!r} is not {CARD_FORMAT!r}")
    weights_path = folder / WEIGHTS
    digest = sha256_file(weights_path)
    if digest != card.get("weights_sha256"):
        raise ValueError(
            f"{weights_path}: sha256 {digest} does not match the card's {card.get('weights_sha256')}"
        )
    cfg = saved_train_config(card["config"])
    method = build_method(
        cfg.method, cfg.network, in_channels=card["in_channels"], out_channels=card["out_channels"]
    )
    state = load_file(str(weights_path))
    for name, net in method.nets.items():
        prefix = f"{name}."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{weights_path}: weights of {name!r} do not fit: {exc}") from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    method.to(device).eval()
    return method, card


def save_training_state(
    directory: str | os.PathLike, method: Method, card: dict[str, Any],
    *,
    model_weights: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], meta: dict,
) -> Path:
    """Write a resumable training checkpoint folder atomically.

    ``model_weights`` (usually the EMA weights) become the folder's inference model;
    ``tensors`` (raw weights, optimiser state, RNG states...) go to ``state.safetensors`` and
    ``meta`` (JSON-serialisable) to ``state.json``.
    """
    card = dict(card, method=method.name)

    def write(d: Path) -> None:
        _write_model_files(d, model_weights, card)
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / STATE_TENSORS))
        (d / STATE_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))

    return _write_dir_atomically(Path(directory), write)


def load_training_state(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of a training checkpoint written by :func:`save_training_state`."""
    d = Path(directory)
    if not (d / STATE_TENSORS).is_file():
        raise FileNotFoundError(f"{d}: no {STATE_TENSORS}; not a training checkpoint")
    return load_file(str(d / STATE_TENSORS)), json.loads((d / STATE_JSON).read_text())
