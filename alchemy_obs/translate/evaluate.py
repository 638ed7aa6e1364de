"""Scoring a trained translator on a split of the store (``alchemy-obs evaluate``).

Predictions are made in normalised space, inverted to physical units with the model's
normalisation, and scored with :mod:`alchemy_obs.translate.metrics`. The command writes
``metrics.json`` and the figures of :mod:`alchemy_obs.translate.plots` next to the model
(or into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alchemy_obs.config import Config
from alchemy_obs.translate import metrics
from alchemy_obs.translate.data import PairedMapDataset
from alchemy_obs.translate.methods import Method
from alchemy_obs.translate.normalise import Normalisation

__all__ = ["evaluate_method", "Baselines", "baseline_predictions", "evaluate_model", "add_arguments", "run"]

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_method(
    method: Method, store: str | os.PathLike, inputs: Sequence[str], *, target: str,
    normalisation: Normalisation, split: str = "test", max_maps: int | None = None,
    steps: int | None = None, batch_size: int = 16, seed: int = 0,
) -> dict[str, Any]:
    """Predict and score the views of ``split``.

    Returns
    -------
    dict
        ``summary`` (dict of float, see :func:`alchemy_obs.translate.metrics.summarise`),
        and physical-unit tensors ``input`` (N, C, H, W), ``pred`` and ``target`` (N, H, W).
    """
    ds = PairedMapDataset(store, inputs, target, split=split, normalisation=normalisation, augment=False)
    n = len(ds) if max_maps is None else min(len(ds), max_maps)
    gen = torch.Generator(device=method.device).manual_seed(seed)
    method.eval()
    preds, truths, conds = [], [], []
    for lo in range(0, n, batch_size):
        items = [ds[i] for i in range(lo, min(lo + batch_size, n))]
        cond = torch.stack([it["input"] for it in items]).to(method.device)
        z = method.sample(cond, steps=steps, generator=gen)
        preds.append(normalisation.inverse(target, z[:, 0].cpu()))
        raw = [ds.physical(i) for i in range(lo, min(lo + batch_size, n))]
        truths.append(torch.as_tensor(np.stack([np.nan_to_num(r[target]) for r in raw])))
        conds.append(torch.as_tensor(np.stack([[np.nan_to_num(r[d]) for d in inputs] for r in raw])))
    pred, truth = torch.cat(preds), torch.cat(truths)
    return {"summary": metrics.summarise(pred, truth), "pred": pred, "target": truth,
            "input": torch.cat(conds)}


class Baselines:
    """The two baselines a translator must beat, fitted on the training views.

    ``"mean map"`` is the mean target map of the training views in physical units.
    ``"pixel regression"`` is, for each pixel, the least-squares linear map from the
    normalised inputs (one or more domains) to the normalised target, inverted to physical
    units: it knows everything a pixel's own value says, and nothing about its neighbours.

    Parameters
    ----------
    mean_map : Tensor
        ``(H, W)`` float64, physical units.
    coefficients : Tensor
        ``(C + 1, H, W)`` float64: an intercept, then one slope per input domain.
    normalisation : Normalisation
        The model's, to invert the regression's prediction.
    target : str
    """

    def __init__(self, mean_map: torch.Tensor, coefficients: torch.Tensor, *,
                 normalisation: Normalisation, target: str) -> None:
        self.mean_map = mean_map
        self.coefficients = coefficients
        self.normalisation = normalisation
        self.target = target

    @classmethod
    def fit(cls, train: PairedMapDataset, ridge: float = 1e-9) -> "Baselines":
        """Fit both baselines on every view of ``train`` (no augmentation).

        ``ridge`` (relative to each pixel's input variance) keeps a pixel where an input
        never varies (empty corners) at its mean target instead of dividing by zero.
        """
        target = train.target
        mean_map = torch.stack([torch.as_tensor(train.physical(i)[target])
                                for i in range(len(train))]).double().mean(0)
        x = torch.stack([train[i]["input"] for i in range(len(train))]).double()  # N C H W
        y = torch.stack([train[i]["target"][0] for i in range(len(train))]).double()
        xm, ym = x.mean(0), y.mean(0)
        xc, yc = (x - xm).permute(2, 3, 0, 1), (y - ym).permute(1, 2, 0)  # H W N C, H W N
        gram = xc.transpose(-1, -2) @ xc
        scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
        gram = gram + ridge * scale[..., None, None] * torch.eye(x.shape[1], dtype=x.dtype)
        slopes = torch.linalg.solve(gram, (xc.transpose(-1, -2) @ yc[..., None]))[..., 0]
        slopes = slopes.permute(2, 0, 1)  # C H W
        intercept = ym - (slopes * xm).sum(0)
        return cls(mean_map, torch.cat([intercept[None], slopes]),
                   normalisation=train.normalisation, target=target)

    def predict(self, views: PairedMapDataset) -> dict[str, torch.Tensor]:
        """Both baselines' maps for every view of ``views``: float64 ``(N, H, W)`` tensors
        in physical units, to score with :func:`alchemy_obs.translate.metrics.summarise`."""
        x = torch.stack([views[i]["input"] for i in range(len(views))]).double()
        z = self.coefficients[0] + (self.coefficients[1:] * x).sum(1)
        linear = self.normalisation.inverse(self.target, z)
        return {"mean map": self.mean_map.expand(len(views), *self.mean_map.shape),
                "pixel regression": linear}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted arrays, to ship beside a model (``safetensors``)."""
        return {"mean_map": self.mean_map, "coefficients": self.coefficients}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], *, normalisation: Normalisation,
                        target: str) -> "Baselines":
        """The inverse of :meth:`state_dict`, with the model's normalisation."""
        return cls(state["mean_map"], state["coefficients"], normalisation=normalisation,
                   target=target)


def baseline_predictions(
    train: PairedMapDataset, test: PairedMapDataset
) -> dict[str, torch.Tensor]:
    """:class:`Baselines` fitted on ``train``, predicted for the views of ``test``."""
    return Baselines.fit(train).predict(test)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="model folder, training checkpoint or model name")
    parser.add_argument("--store", default=None, help="dataset (default: the training store)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--max-maps", type=int, default=None, help="score at most this many")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: config)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")


def evaluate_model(
    checkpoint: str | os.PathLike, out: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None, *, split: str = "test", max_maps: int | None = None,
    steps: int | None = None, seed: int = 0, device: str | None = None,
) -> dict[str, Any]:
    """Score a saved model on a split and write ``metrics.json`` and figures into ``out``.

    Parameters
    ----------
    checkpoint : path-like or str
        Model folder, training checkpoint or registered name (see
        :func:`~alchemy_obs.translate.checkpoint.load_model`).
    out : path-like, optional
        Output folder; default ``<model>/eval_<split>``.
    store : path-like, optional
        Dataset; default the one the model was trained on.
    split, max_maps, steps, seed
        Views to score, how many at most, sampler steps (None: the model's default) and
        the seed of the sampling noise.
    device : str, optional
        Default CUDA when available.

    Returns
    -------
    dict
        The report written to ``metrics.json``.
    """
    from alchemy_obs.translate import plots
    from alchemy_obs.translate.checkpoint import load_model, resolve_model

    method, card = load_model(checkpoint, device=device)
    norm = Normalisation.from_dict(card["normalisation"])
    store = store or card["training_data"]["store"]
    result = evaluate_method(method, store, card["inputs"], target=card["target"],
                             normalisation=norm, split=split,
                             max_maps=max_maps, steps=steps, seed=seed)
    out = Path(out) if out is not None else resolve_model(checkpoint) / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(checkpoint), "store": str(store), "split": split,
              "n_maps": int(result["pred"].shape[0]), "steps": steps,
              "metrics": result["summary"]}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "metrics.json")
    units = card["units"]
    first, target = card["inputs"][0], card["target"]
    plots.triptych(result["input"][:, 0], result["pred"], result["target"], path=out / "triptych.png",
                   labels=(first, f"{target} predicted", f"{target} true"),
                   units=(units[first], units[target]))
    plots.radial_profiles(result["pred"], result["target"], out / "profiles.png",
                          pixel_kpc=card.get("pixel_kpc"), unit=units[target])
    plots.pixel_distributions(result["pred"], result["target"], out / "pixels.png",
                              unit=units[target])
    if method.name in ("ddpm", "indi"):
        cond = torch.stack([norm.forward(d, result["input"][0, c])
                            for c, d in enumerate(card["inputs"])])[None].to(method.device)
        plots.sampling_trajectory(method, cond, out / "trajectory.png", normalisation=norm,
                                  target=target, steps=steps)
    log.info("wrote %s", out)
    return report


def run(args: argparse.Namespace, config: Config) -> int:
    device = None if config.device == "auto" else config.device
    report = evaluate_model(args.checkpoint, args.out, args.store, split=args.split, max_maps=args.max_maps,
                            steps=args.steps, seed=config.seed, device=device)
    for k, v in report["metrics"].items():
        print(f"{k:>20s} {v: .4g}")
    return 0
