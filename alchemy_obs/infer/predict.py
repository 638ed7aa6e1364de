"""Running a translator on maps already on its grid, in physical units in and out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from alchemy_obs.translate.methods import Method
from alchemy_obs.translate.normalise import Normalisation

__all__ = ["predict"]


def predict(
    method: Method,
    card: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    *,
    samples: int = 1,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict the model's target map from its input maps.

    Parameters
    ----------
    method : Method
        A translator from :func:`alchemy_obs.translate.checkpoint.load_model`.
    card : mapping
        Its model card (``inputs``, ``target``, ``normalisation``).
    inputs : mapping of str to numpy.ndarray
        One ``(npix, npix)`` map per input domain, physical units (``card["units"]``);
        NaN counts as empty sky, as in training.
    samples : int
        Posterior samples to draw (diffusion models); one-shot methods give identical samples.
    steps : int, optional
        Sampler steps (``None``: the method's default).
    seed : int
        Seed of the sampling noise.
    batch_size : int
        Samples drawn per network call.

    Returns
    -------
    mean : numpy.ndarray
        ``(npix, npix)`` float64 mean of the samples in the target's physical units.
    std : numpy.ndarray or None
        Their standard deviation (``ddof=1``), ``None`` for a single sample.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    norm = Normalisation.from_dict(card["normalisation"])
    condition = torch.stack([norm.forward(d, inputs[d]) for d in card["inputs"]])[None]
    device = method.device
    condition = condition.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    drawn: list[np.ndarray] = []
    with torch.inference_mode():
        remaining = samples
        while remaining:
            n = min(batch_size, remaining)
            batch = condition.expand(n, -1, -1, -1).contiguous()
            z = method.sample(batch, steps=steps, generator=generator)
            physical = norm.inverse(card["target"], z[:, 0])
            drawn.append(physical.double().cpu().numpy())
            remaining -= n
    stack = np.concatenate(drawn, axis=0)
    std = stack.std(axis=0, ddof=1) if samples > 1 else None
    return stack.mean(axis=0), std
