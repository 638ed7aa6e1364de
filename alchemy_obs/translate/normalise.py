"""Per-domain normalisation of maps: log10 with a floor, then robust scaling.

Surface densities, temperatures and fluxes span many decades, so non-negative domains are
mapped to ``log10(max(x, floor))``; every domain is then centred on its median and divided
by its interquartile range (robust to the bright centres and empty outskirts). Parameters are
fitted on training maps only and travel with the model (JSON) so that inference can invert
the transform.

Empty pixels: NaN (no particle along the line of sight, or blanked by a telescope) count as
zero signal, so they become ``floor`` in log domains and ``0`` in linear ones. The inverse of
any value below ``log10(floor)`` is ``floor``, i.e. the transform is exact above the floor
and saturates at it; the floor is the 1st percentile of the positive training pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DomainScaling", "Normalisation", "fit_domain_scaling"]


@dataclass(frozen=True)
class DomainScaling:
    """Invertible scaling of one domain: ``z = (f(x) - median) / iqr``.

    ``f(x) = log10(max(x, floor))`` when ``log`` else ``x``.
    """

    domain: str
    log: bool
    floor: float
    median: float
    iqr: float

    def forward(self, x: Tensor | np.ndarray) -> Tensor:
        """Physical map(s) -> normalised float32 tensor; NaN count as empty."""
        x = torch.as_tensor(x, dtype=torch.float32)
        x = torch.nan_to_num(x, nan=0.0)
        if self.log:
            x = torch.log10(torch.clamp(x, min=self.floor))
        return (x - self.median) / self.iqr

    def inverse(self, z: Tensor) -> Tensor:
        """Normalised tensor -> physical units (float64).

        Log domains saturate at ``floor`` below and at 1e100 above, so that a diverging
        prediction gives huge but finite metrics instead of infinities.
        """
        y = z.double() * self.iqr + self.median
        if self.log:
            y = torch.pow(10.0, torch.clamp(y, min=np.log10(self.floor), max=100.0))
        return y

    def log_abs_det_jacobian(self, x: Tensor | np.ndarray) -> Tensor:
        """``log |dz/dx|`` per pixel (float64) at physical values ``x``.

        Adding its sum over pixels to a log-density of normalised maps gives the log-density
        of physical maps (change of variables). Log domains: ``-log(x ln 10 iqr)``; below
        the floor the transform is flat, and ``x`` is taken at the floor there (the density
        of saturated pixels is not defined; this is its value at the edge).
        """
        x = torch.nan_to_num(torch.as_tensor(x, dtype=torch.float64), nan=0.0)
        if self.log:
            return -torch.log(torch.clamp(x, min=self.floor) * np.log(10.0) * self.iqr)
        return torch.full_like(x, -np.log(self.iqr))


def fit_domain_scaling(domain: str, maps: Iterable[np.ndarray]) -> DomainScaling:
    """Fit a :class:`DomainScaling` on training maps of one domain.

    Parameters
    ----------
    domain : str
        Domain name (stored for checks at inference).
    maps : iterable of ndarray
        Training maps in physical units (NaN = empty).

    Returns
    -------
    DomainScaling
        Log scaling when no finite pixel is negative, linear otherwise.

    Raises
    ------
    ValueError
        If the maps hold no finite pixel, or a log domain has no positive pixel.
    """
    values = np.concatenate([np.nan_to_num(np.asarray(m, np.float64).ravel(), nan=0.0) for m in maps])
    if values.size == 0:
        raise ValueError(f"domain {domain!r}: no training pixels to fit the normalisation")
    log = bool(values.min() >= 0)
    floor = 1.0
    if log:
        positive = values[values > 0]
        if positive.size == 0:
            raise ValueError(f"domain {domain!r}: every training pixel is zero or empty")
        floor = float(np.percentile(positive, 1.0))
        values = np.log10(np.maximum(values, floor))
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    iqr = float(q75 - q25)
    if not iqr > 0:
        iqr = float(values.std()) or 1.0
    return DomainScaling(domain, log, floor, float(med), iqr)


class Normalisation:
    """The scalings of several domains, serialisable to JSON.

    Parameters
    ----------
    scalings : mapping of str to DomainScaling
    """

    def __init__(self, scalings: Mapping[str, DomainScaling]) -> None:
        self.scalings = dict(scalings)

    def __getitem__(self, domain: str) -> DomainScaling:
        try:
            return self.scalings[domain]
        except KeyError:
            raise KeyError(
                f"no normalisation for domain {domain!r}; known: {sorted(self.scalings)}"
            ) from None

    def forward(self, domain: str, x: Tensor | np.ndarray) -> Tensor:
        """Normalise a physical map of ``domain``."""
        return self[domain].forward(x)

    def inverse(self, domain: str, z: Tensor) -> Tensor:
        """Physical map of ``domain`` from its normalised form."""
        return self[domain].inverse(z)

    def to_dict(self) -> dict:
        return {d: asdict(s) for d, s in self.scalings.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping]) -> Normalisation:
        return cls({d: DomainScaling(**s) for d, s in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Normalisation:
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return f"Normalisation({sorted(self.scalings)})"
