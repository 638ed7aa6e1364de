"""Pixel and astrophysical metrics between predicted and true maps (torch, batched).

Every function takes ``(B, H, W)`` or ``(B, 1, H, W)`` tensors in physical units (invert
the normalisation first) and returns one value per image (or per image and radial/k bin),
computed in float64. Maps are assumed centred on the galaxy, as the store writes them.

Definitions (``P`` prediction, ``T`` truth, sums over pixels):

- ``mse = mean((P - T)^2)``; ``psnr = 10 log10(R^2 / mse)`` with ``R`` the truth's range
  (max - min) unless given.
- ``ssim``: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, averaged over the valid (unpadded) window positions.
- radial profile: mean of the pixels in 1-pixel-wide annuli about the map centre, out to
  the inscribed circle; profile residual ``log10(prof_P / prof_T)`` in dex per radius (bins
  where either profile is not positive are NaN and ignored).
- ``total_mass_ratio = sum(P) / sum(T)`` (a total flux ratio for observed domains).
- power spectrum: ``|FFT|^2`` averaged in rings of ``|k|`` (cycles per pixel, width 1/N);
  ``power_ratio = P_P(k) / P_T(k)``.
- ``centre_offset``: distance between the intensity-weighted centroids (pixels).
- asymmetry (Conselice, Bershady and Jangren 2000):
  ``A = min_c sum|I - R_c(I)| / sum|I|``, ``R_c`` the rotation by 180 degrees about ``c``;
  ``c`` runs over half-pixel positions within ``search`` pixels of the map centre. Noise-free
  maps need no background term.
- clumpiness (Conselice 2003): ``S = sum max(I - B_k(I), 0) / sum I`` with ``B_k`` a k x k
  boxcar smoothing (edges averaged over the pixels inside the map).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "mse",
    "psnr",
    "ssim",
    "radial_profile",
    "profile_residuals",
    "total_mass_ratio",
    "power_spectrum",
    "power_ratio",
    "centroid",
    "centre_offset",
    "asymmetry",
    "clumpiness",
    "summarise",
]


def _bhw(x: Tensor) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"metrics take single-channel maps, got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected (B, H, W) maps, got shape {tuple(x.shape)}")
    return x.double()


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per image, ``(B,)``."""
    p, t = _bhw(pred), _bhw(target)
    return ((p - t) ** 2).mean(dim=(-2, -1))


def psnr(pred: Tensor, target: Tensor, data_range: float | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB per image; ``data_range`` defaults to the truth's."""
    t = _bhw(target)
    r = t.amax(dim=(-2, -1)) - t.amin(dim=(-2, -1)) if data_range is None else torch.full(
        t.shape[:1], float(data_range), dtype=t.dtype, device=t.device)
    return 10.0 * torch.log10(r**2 / mse(pred, target))


def _gaussian_window(size: int, sigma: float, device, dtype) -> Tensor:
    ax = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(
    pred: Tensor, target: Tensor, data_range: float | None = None, *, window: int = 11,
    sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) per image, ``(B,)``."""
    p, t = _bhw(pred)[:, None], _bhw(target)[:, None]
    if data_range is None:
        r = (t.amax(dim=(-3, -2, -1)) - t.amin(dim=(-3, -2, -1))).view(-1, 1, 1, 1)
    else:
        r = torch.full((t.shape[0], 1, 1, 1), float(data_range), dtype=t.dtype, device=t.device)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    w = _gaussian_window(window, sigma, t.device, t.dtype)
    mu_p, mu_t = F.conv2d(p, w), F.conv2d(t, w)
    var_p = F.conv2d(p * p, w) - mu_p**2
    var_t = F.conv2d(t * t, w) - mu_t**2
    cov = F.conv2d(p * t, w) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return s.mean(dim=(-3, -2, -1))


def _radius(h: int, w: int, device) -> Tensor:
    y = torch.arange(h, device=device, dtype=torch.float64) - (h - 1) / 2
    x = torch.arange(w, device=device, dtype=torch.float64) - (w - 1) / 2
    return torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2)


def radial_profile(img: Tensor) -> tuple[Tensor, Tensor]:
    """Azimuthally averaged profile about the map centre.

    Returns
    -------
    radius : Tensor
        ``(R,)`` bin centres in pixels (bins 1 pixel wide, to ``min(H, W) / 2``).
    profile : Tensor
        ``(B, R)`` mean pixel value per annulus.
    """
    x = _bhw(img)
    h, w = x.shape[-2:]
    r = _radius(h, w, x.device)
    nbins = min(h, w) // 2
    idx = r.floor().long().flatten()
    keep = idx < nbins
    idx = idx[keep]
    counts = torch.bincount(idx, minlength=nbins).to(x.dtype)
    sums = torch.zeros(x.shape[0], nbins, dtype=x.dtype, device=x.device)
    sums.index_add_(1, idx, x.flatten(1)[:, keep])
    return torch.arange(nbins, dtype=x.dtype, device=x.device) + 0.5, sums / counts


def profile_residuals(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Radial-profile residuals in dex, per image and their distribution per radius.

    Returns
    -------
    dict
        ``radius`` (R,) pixels; ``residual`` (B, R) ``log10(prof_pred / prof_true)`` (NaN
        where a profile is not positive); ``median``, ``p16``, ``p84`` (R,) over the batch;
        ``mean_abs`` (B,) mean of ``|residual|`` over radii.
    """
    r, pp = radial_profile(pred)
    _, pt = radial_profile(target)
    ok = (pp > 0) & (pt > 0)
    res = torch.where(ok, torch.log10(pp.clamp_min(1e-300) / pt.clamp_min(1e-300)),
                      torch.full_like(pp, math.nan))
    q = torch.nanquantile(res, torch.tensor([0.16, 0.5, 0.84], dtype=res.dtype, device=res.device), dim=0)
    return {"radius": r, "residual": res, "p16": q[0], "median": q[1], "p84": q[2],
            "mean_abs": torch.nanmean(res.abs(), dim=1)}


def total_mass_ratio(pred: Tensor, target: Tensor) -> Tensor:
    """``sum(pred) / sum(target)`` per image."""
    return _bhw(pred).sum(dim=(-2, -1)) / _bhw(target).sum(dim=(-2, -1))


def power_spectrum(img: Tensor) -> tuple[Tensor, Tensor]:
    """Azimuthally averaged power spectrum ``(k, P)``; k in cycles per pixel, P ``(B, K)``."""
    x = _bhw(img)
    h, w = x.shape[-2:]
    power = torch.fft.fft2(x).abs() ** 2 / (h * w)
    ky = torch.fft.fftfreq(h, device=x.device, dtype=x.dtype)
    kx = torch.fft.fftfreq(w, device=x.device, dtype=x.dtype)
    k = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    n = min(h, w)
    nbins = n // 2
    idx = torch.round(k * n).long().flatten()  # ring i holds |k| in [(i - 1/2)/n, (i + 1/2)/n)
    keep = (idx >= 1) & (idx <= nbins)
    idx = idx[keep] - 1
    counts = torch.bincount(idx, minlength=nbins).to(x.dtype)
    sums = torch.zeros(x.shape[0], nbins, dtype=x.dtype, device=x.device)
    sums.index_add_(1, idx, power.flatten(1)[:, keep])
    kc = (torch.arange(nbins, dtype=x.dtype, device=x.device) + 1) / n
    return kc, sums / counts


def power_ratio(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``(k, P_pred(k) / P_true(k))`` per image, ``(K,)`` and ``(B, K)``."""
    k, pp = power_spectrum(pred)
    _, pt = power_spectrum(target)
    return k, pp / pt


def centroid(img: Tensor) -> Tensor:
    """Intensity-weighted centroid ``(B, 2)`` as (row, column) pixel coordinates."""
    x = _bhw(img)
    h, w = x.shape[-2:]
    tot = x.sum(dim=(-2, -1))
    yy = torch.arange(h, dtype=x.dtype, device=x.device)
    xx = torch.arange(w, dtype=x.dtype, device=x.device)
    cy = (x.sum(dim=-1) * yy).sum(-1) / tot
    cx = (x.sum(dim=-2) * xx).sum(-1) / tot
    return torch.stack([cy, cx], dim=-1)


def centre_offset(pred: Tensor, target: Tensor) -> Tensor:
    """Distance in pixels between the centroids of prediction and truth, ``(B,)``."""
    return torch.linalg.vector_norm(centroid(pred) - centroid(target), dim=-1)


def asymmetry(img: Tensor, search: int = 2) -> Tensor:
    """Rotational asymmetry A (Conselice et al. 2000) per image, ``(B,)``.

    The rotation centre is searched on a half-pixel grid within ``search`` pixels of the map
    centre: rotating about ``centre + d`` equals flipping both axes and shifting by ``2 d``.
    """
    x = _bhw(img)
    flipped = torch.flip(x, dims=(-2, -1))
    denom = x.abs().sum(dim=(-2, -1))
    best = torch.full_like(denom, math.inf)
    s = 2 * search
    padded = F.pad(flipped, (s, s, s, s))
    h, w = x.shape[-2:]
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            rot = padded[:, s - dy : s - dy + h, s - dx : s - dx + w]
            best = torch.minimum(best, (x - rot).abs().sum(dim=(-2, -1)) / denom)
    return best


def clumpiness(img: Tensor, box: int = 5) -> Tensor:
    """Clumpiness S (Conselice 2003) per image with a ``box`` x ``box`` boxcar, ``(B,)``."""
    if box < 1 or box % 2 == 0:
        raise ValueError(f"clumpiness box must be a positive odd number, got {box}")
    x = _bhw(img)[:, None]
    smooth = F.avg_pool2d(x, box, stride=1, padding=box // 2, count_include_pad=False)
    return (x - smooth).clamp_min(0).sum(dim=(-3, -2, -1)) / x.sum(dim=(-3, -2, -1))


def summarise(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Scalar summary of every metric over a batch (means unless named otherwise)."""
    prof = profile_residuals(pred, target)
    ratio = total_mass_ratio(pred, target)
    _, pr = power_ratio(pred, target)
    out = {
        "mse": mse(pred, target).mean(),
        "psnr": psnr(pred, target).mean(),
        "ssim": ssim(pred, target).mean(),
        "profile_abs_dex": prof["mean_abs"].nanmean(),
        "mass_ratio_median": ratio.median(),
        "mass_abs_dex": torch.log10(ratio.abs()).abs().mean(),
        "power_abs_dex": torch.log10(pr).abs().nanmean(),
        "centre_offset_px": centre_offset(pred, target).mean(),
        "asymmetry_diff": (asymmetry(pred) - asymmetry(target)).mean(),
        "clumpiness_diff": (clumpiness(pred) - clumpiness(target)).mean(),
    }
    return {k: float(v) for k, v in out.items()}
