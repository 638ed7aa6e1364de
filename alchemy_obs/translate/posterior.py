"""Posterior sampling with any stochastic translator: uncertainty maps and their calibration.

A diffusion translator (DDPM, score SDE, InDI with noise) draws from ``p(target | observation)``
when it is sampled with fresh noise. ``N`` draws per observation give per-pixel summaries:
mean, standard deviation and chosen percentiles. Percentiles commute with the monotone
normalisation, so they are the same whether taken on normalised or physical maps; the mean
and standard deviation are taken on physical maps when a scaling is given (the mean of a
log-normal-like posterior is not the inverse of the mean of its logarithm).

Calibration: on held-out pairs, the fraction of true pixels that fall inside each central
``q`` interval of the posterior should be ``q``. Below ``q`` the maps are over-confident
(intervals too narrow); above, under-confident. The interval between the empirical
quantiles of ``N`` samples covers a fresh draw less often than ``q`` even for a perfect
model, about ``q (N - 1) / (N + 1)`` (0.84 instead of 0.95 for ``N = 16``), so
:func:`calibration` does not use it: it ranks each true pixel among its ``N`` samples
(uniform on ``0..N`` for a calibrated model, as in simulation-based calibration, Talts et
al. 2018) and counts the part of the rank's probability-integral-transform cell that falls
in the central ``q`` of [0, 1], whose expectation is exactly ``q`` for any ``N``.

Deterministic samplers (DDIM with ``eta = 0``, the probability-flow ODE) are still valid
posterior samplers, as their randomness is the initial noise; pix2pix and noise-free InDI
give one answer per observation and a zero-width posterior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from alchemy_obs.translate.methods.base import Method
from alchemy_obs.translate.normalise import DomainScaling

__all__ = ["PosteriorSummary", "draw_samples", "summarise_samples", "sample_posterior",
           "interval_coverage", "rank_coverage", "calibration"]


@dataclass
class PosteriorSummary:
    """Per-pixel summaries of posterior samples, all ``(B, C, H, W)``.

    Attributes
    ----------
    mean, std : Tensor
        Sample mean and standard deviation (physical units if a scaling was given).
    percentiles : dict of float to Tensor
        Maps of the requested percentiles (0-100).
    samples : Tensor or None
        ``(N, B, C, H, W)`` normalised samples, when kept.
    """

    mean: Tensor
    std: Tensor
    percentiles: dict[float, Tensor] = field(default_factory=dict)
    samples: Tensor | None = None


@torch.no_grad()
def draw_samples(
    method: Method, condition: Tensor, n_samples: int, *, steps: int | None = None,
    generator: torch.Generator | None = None, batch_size: int = 16,
) -> Tensor:
    """``n_samples`` normalised samples per observation, ``(N, B, C_t, H, W)``.

    Observations are repeated and sampled ``batch_size`` maps at a time.
    """
    if n_samples < 1:
        raise ValueError(f"need at least one posterior sample, got {n_samples}")
    method.eval()
    b = condition.shape[0]
    reps = condition.repeat(n_samples, 1, 1, 1)  # sample-major: row k * b + i
    out = []
    for lo in range(0, reps.shape[0], batch_size):
        out.append(method.sample(reps[lo : lo + batch_size], steps=steps, generator=generator).float())
    samples = torch.cat(out)
    return samples.reshape(n_samples, b, *samples.shape[1:])


def summarise_samples(
    samples: Tensor, percentiles: Sequence[float] = (2.5, 16.0, 50.0, 84.0, 97.5),
    scaling: DomainScaling | None = None, *, keep_samples: bool = False,
) -> PosteriorSummary:
    """Mean, standard deviation and percentile maps of ``(N, B, C, H, W)`` samples."""
    phys = scaling.inverse(samples) if scaling is not None else samples.double()
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=phys.dtype, device=phys.device)
    pct = torch.quantile(phys, q, dim=0) if len(percentiles) else []
    return PosteriorSummary(
        mean=phys.mean(0),
        std=phys.std(0) if phys.shape[0] > 1 else torch.zeros_like(phys[0]),
        percentiles={float(p): pct[i] for i, p in enumerate(percentiles)},
        samples=samples if keep_samples else None,
    )


def sample_posterior(
    method: Method, condition: Tensor, n_samples: int = 32,
    *,
    percentiles: Sequence[float] = (2.5, 16.0, 50.0, 84.0, 97.5),
    scaling: DomainScaling | None = None, steps: int | None = None,
    generator: torch.Generator | None = None, batch_size: int = 16, keep_samples: bool = False,
) -> PosteriorSummary:
    """Uncertainty maps of the translation of ``condition``.

    Parameters
    ----------
    method : Method
        A trained translator (stochastic sampler).
    condition : Tensor
        ``(B, C_in, H, W)`` normalised observations.
    n_samples : int
        Samples per observation.
    percentiles : sequence of float
        Percentiles (0-100) returned as maps.
    scaling : DomainScaling, optional
        The target's normalisation: summaries in physical units.
    steps : int, optional
        Sampler steps (method default when ``None``).
    generator : torch.Generator, optional
        Source of the sampling noise.
    batch_size : int
        Maps per call of the sampler.
    keep_samples : bool
        Return the normalised samples too.

    Returns
    -------
    PosteriorSummary
    """
    samples = draw_samples(method, condition, n_samples, steps=steps, generator=generator,
                           batch_size=batch_size)
    return summarise_samples(samples, percentiles, scaling, keep_samples=keep_samples)


def _central(level: float) -> tuple[float, float]:
    """Bounds in probability of the central interval holding ``level``."""
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    return (1 - level) / 2, (1 + level) / 2


def interval_coverage(
    samples: Tensor, truth: Tensor, levels: Sequence[float] = (0.68, 0.95)
) -> dict[float, float]:
    """Fraction of true pixels inside the central intervals of the samples.

    Parameters
    ----------
    samples : Tensor
        ``(N, B, C, H, W)`` posterior samples.
    truth : Tensor
        ``(B, C, H, W)`` true maps, in the same (monotone) units as the samples.
    levels : sequence of float
        Nominal probabilities of the central intervals, in (0, 1).

    Returns
    -------
    dict
        Level -> observed fraction of pixels inside ``[q_(1-l)/2, q_(1+l)/2]``.
    """
    out = {}
    s = samples.double()
    t = truth.to(s.dtype)
    for level in levels:
        q = torch.tensor(_central(level), dtype=s.dtype, device=s.device)
        lo, hi = torch.quantile(s, q, dim=0)
        out[float(level)] = float(((t >= lo) & (t <= hi)).double().mean())
    return out


def rank_coverage(
    samples: Tensor, truth: Tensor, levels: Sequence[float] = (0.68, 0.95)
) -> dict[float, float]:
    """Coverage of the central intervals from the ranks of the truth among the samples.

    A true pixel with ``r`` of the ``N`` samples below it has the probability integral
    transform cell ``[r, r + 1] / (N + 1)`` (ties widen the cell over the tied ranks); the
    fraction of the cell inside ``[(1 - q) / 2, (1 + q) / 2]`` is its contribution. For
    samples and truth from the same distribution the expected coverage is exactly ``q``,
    whatever ``N``, unlike :func:`interval_coverage`.

    Parameters
    ----------
    samples : Tensor
        ``(N, B, C, H, W)`` posterior samples.
    truth : Tensor
        ``(B, C, H, W)`` true maps, in the same (monotone) units as the samples.
    levels : sequence of float
        Nominal probabilities of the central intervals, in (0, 1).

    Returns
    -------
    dict
        Level -> coverage, to compare with the level itself.
    """
    s = samples.double()
    t = truth.to(s.dtype).unsqueeze(0)
    cells = s.shape[0] + 1.0
    lo = (s < t).sum(0).double() / cells
    hi = ((s <= t).sum(0).double() + 1.0) / cells
    out = {}
    for level in levels:
        a, b = _central(level)
        inside = (torch.clamp(hi, max=b) - torch.clamp(lo, min=a)).clamp(min=0.0) / (hi - lo)
        out[float(level)] = float(inside.mean())
    return out


def calibration(
    method: Method, condition: Tensor, truth: Tensor, *, n_samples: int = 32,
    levels: Sequence[float] = (0.68, 0.95), steps: int | None = None,
    generator: torch.Generator | None = None, batch_size: int = 16,
) -> dict[float, float]:
    """Coverage of the central posterior intervals on held-out pairs.

    ``condition`` ``(B, C_in, H, W)`` and ``truth`` ``(B, C_t, H, W)`` are normalised maps
    (coverage is the same in physical units, the normalisation being monotone).
    Returns level -> :func:`rank_coverage`, to compare with the level itself.
    """
    samples = draw_samples(method, condition, n_samples, steps=steps, generator=generator,
                           batch_size=batch_size)
    return rank_coverage(samples, truth.to(samples.device), levels)
