"""Predicting over a whole galaxy: overlapping model fields blended without seams.

A translator sees a fixed ``npix x npix`` field of ``pixel_kpc`` pixels (48 kpc for the
demonstration model), and a large nearby spiral overflows it. Rather than resample the
galaxy onto coarser pixels than the model was trained on, the emission is covered by
several fields of the model's own pixel scale, laid on one lattice:

* The lattice is a single ``SIN`` grid of model pixels centred on the galaxy
  (:func:`~alchemy_obs.infer.preprocess.model_grid` extended by whole fields), so every
  field is a sub-array of it: the fields share one projection and their pixels coincide
  where they overlap, and the observation is resampled onto it once.
* Fields are ``step = npix (1 - overlap)`` model pixels apart (half a field by default).
  The central field, the one a single-field run predicts, is always one of them; the others
  are those whose core (their middle ``step x step`` pixels) holds emission (the support of
  the masked moment-0 map, grown by one model pixel, the stencil of the interpolation back
  to the sky). The cores tile the plane, so every emission pixel lies at least
  ``(npix - step) / 2`` pixels inside a predicted field, away from the field edges where a
  network is least reliable.
* Each field's prediction is weighted by a separable :func:`blend_window`
  (:math:`\\sin^2`, a Hann window sampled at pixel centres) and the weighted sum divided by
  the sum of the windows. At half a field overlap the windows of the fields over a pixel
  add up to exactly one, and at any overlap the division makes them a partition of unity;
  a window falls to nearly zero at its field's edge, where a network's output is least
  trustworthy, so a field fades out instead of stopping: no seams.

When the emission fits inside the central field (with that one-pixel margin), the plan is
that field alone and the output is exactly that of a single-field run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.wcs import WCS

from alchemy_obs.infer.errors import InferError
from alchemy_obs.skyimage import SkyImage

__all__ = ["MAX_TILES", "TilePlan", "blend_window", "emission_support", "plan_tiles",
           "blend_tiles", "coverage_fractions"]

log = logging.getLogger(__name__)

#: More fields than this is refused (a wide image with emission everywhere, or a wrong
#: distance): the run would take hours and the result would hardly be what was meant.
MAX_TILES = 400


@dataclass(frozen=True)
class TilePlan:
    """Where the model's fields lie on the sky.

    Attributes
    ----------
    grid : astropy.wcs.WCS
        The mosaic grid: the central model grid extended by whole steps (``SIN``, model
        pixels, same projection centre); ``grid.pixel_shape`` is ``(nx, ny)``.
    shape : tuple of int
        ``(ny, nx)`` of the mosaic, model pixels.
    origins : tuple of tuple of int
        ``(y0, x0)`` of each field's first pixel in the mosaic; the central field first.
    npix : int
        Pixels per side of one field.
    step : int
        Spacing of neighbouring fields, model pixels.
    overlap : float
        Requested overlap of neighbouring fields, as a fraction of a field.
    pixel : Quantity
        Model pixel size, kpc.
    """

    grid: WCS
    shape: tuple[int, int]
    origins: tuple[tuple[int, int], ...]
    npix: int
    step: int
    overlap: float
    pixel: u.Quantity

    @property
    def ntiles(self) -> int:
        return len(self.origins)

    def bounds(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)``: the bounding box of the fields in mosaic pixels (end excluded)."""
        ys = [o[0] for o in self.origins]
        xs = [o[1] for o in self.origins]
        return min(ys), max(ys) + self.npix, min(xs), max(xs) + self.npix

    def extent(self) -> tuple[int, int, u.Quantity, u.Quantity, tuple[float, float]]:
        """Size of the predicted region's bounding box.

        Returns
        -------
        nx, ny : int
            Model pixels.
        width, height : Quantity
            kpc.
        centre : tuple of float
            (longitude, latitude) of the box centre, degrees, in the input's frame.
        """
        y0, y1, x0, x1 = self.bounds()
        lon, lat = self.grid.pixel_to_world_values((x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0)
        return (x1 - x0, y1 - y0, (x1 - x0) * self.pixel, (y1 - y0) * self.pixel,
                (float(lon), float(lat)))


def blend_window(npix: int) -> np.ndarray:
    """Weight of a field's pixels when overlapping fields are blended.

    :math:`w(i, j) = \\sin^2(\\pi (i + 1/2)/n)\\,\\sin^2(\\pi (j + 1/2)/n)`: largest in the
    middle, :math:`\\sin^2(\\pi/2n)` (1 % for n = 16) at the edge pixels and never zero, so a
    pixel that only one field covers keeps that field's value. Fields ``n/2`` apart (n even)
    sum to exactly one, since :math:`\\sin^2 x + \\sin^2(x + \\pi/2) = 1`.

    Parameters
    ----------
    npix : int
        Pixels per side.

    Returns
    -------
    numpy.ndarray
        ``(npix, npix)`` float64, dimensionless.
    """
    profile = np.sin(np.pi * (np.arange(npix) + 0.5) / npix) ** 2
    return np.outer(profile, profile)


def emission_support(sky: SkyImage) -> np.ndarray:
    """Sky pixels holding emission: those where the (masked) moment-0 map is non-zero.

    With the default noise mask every pixel outside the detected emission is exactly zero,
    so this is the mask's footprint; without the mask (``--no-mask``) or for an image it is
    every unblanked non-zero pixel, i.e. the whole field.

    Parameters
    ----------
    sky : SkyImage
        The moment-0 map of :func:`~alchemy_obs.infer.preprocess.line_integral`, before any
        smoothing (smoothing would spread it over the whole field).

    Returns
    -------
    numpy.ndarray of bool
        ``(ny, nx)``.
    """
    values = sky.data.value
    return np.isfinite(values) & (values != 0)


def _single(central: WCS, npix: int, step: int, overlap: float, pixel: u.Quantity) -> TilePlan:
    grid = central.deepcopy()
    grid.pixel_shape = (npix, npix)
    return TilePlan(grid, (npix, npix), ((0, 0),), npix, step, overlap, pixel)


def plan_tiles(
    support: np.ndarray,
    sky_wcs: WCS,
    central: WCS,
    *,
    pixel: u.Quantity,
    overlap: float = 0.5,
    single: bool = False,
    path: str | os.PathLike = "",
) -> TilePlan:
    """The model fields that cover every emission pixel.

    Parameters
    ----------
    support : numpy.ndarray of bool
        ``(ny, nx)`` emission pixels on the observation's grid (:func:`emission_support`).
    sky_wcs : astropy.wcs.WCS
        The observation's celestial WCS.
    central : astropy.wcs.WCS
        The central model grid (:func:`~alchemy_obs.infer.preprocess.model_grid`); its
        ``pixel_shape`` gives ``npix``.
    pixel : Quantity
        Model pixel size (kpc), recorded in the plan.
    overlap : float
        Overlap of neighbouring fields, fraction of a field in [0, 1).
    single : bool
        Only the central field (the behaviour before tiling).
    path : path-like
        File name for messages.

    Returns
    -------
    TilePlan

    Raises
    ------
    InferError
        If more than :data:`MAX_TILES` fields would be needed.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    npix = int(central.pixel_shape[0])
    step = max(1, int(round(npix * (1.0 - overlap))))
    pixel = u.Quantity(pixel, u.kpc)
    if single:
        return _single(central, npix, step, overlap, pixel)
    ys, xs = np.nonzero(support)
    if xs.size == 0:
        log.info("%s: no emission found; predicting the central field", path)
        return _single(central, npix, step, overlap, pixel)
    px, py = central.world_to_pixel_values(*sky_wcs.pixel_to_world_values(xs, ys))
    good = np.isfinite(px) & np.isfinite(py)  # beyond the projection's horizon: never seen
    px, py = px[good], py[good]
    if px.size == 0:
        return _single(central, npix, step, overlap, pixel)
    # One model pixel of margin: each sky pixel's value is interpolated from the model
    # pixels around it, and all of those must have a prediction.
    lo_x, hi_x = int(np.floor(px.min())) - 1, int(np.ceil(px.max())) + 1
    lo_y, hi_y = int(np.floor(py.min())) - 1, int(np.ceil(py.max())) + 1
    if lo_x >= 0 and lo_y >= 0 and hi_x <= npix - 1 and hi_y <= npix - 1:
        return _single(central, npix, step, overlap, pixel)
    # Field k spans central-grid pixels k*step ... k*step + npix - 1 (k = 0: the central one).
    # Its core, the middle ``step`` pixels, is where its window outweighs its neighbours';
    # the cores tile the plane, and a field is predicted when its core holds emission, so
    # every emission pixel lies at least (npix - step) / 2 pixels inside a predicted field.
    core = (npix - step) // 2
    ix, iy = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fields: set[tuple[int, int]] = {(0, 0)}
    for d in (-1, 0, 1, 2):  # the emission pixel and its stencil, one pixel grown
        kx = (ix + d - core) // step
        for e in (-1, 0, 1, 2):
            ky = (iy + e - core) // step
            pairs = np.unique(np.stack([ky, kx], axis=1), axis=0)
            fields.update(map(tuple, pairs.tolist()))
            if len(fields) > MAX_TILES:
                raise InferError(
                    path, f"the emission spans more than {MAX_TILES} model fields; check "
                          "the distance, or pass --coverage centre")
    ky0 = min(k[0] for k in fields)
    kx0 = min(k[1] for k in fields)
    ny = (max(k[0] for k in fields) - ky0) * step + npix
    nx = (max(k[1] for k in fields) - kx0) * step + npix
    # The central field first, then row by row.
    origins = [((ky - ky0) * step, (kx - kx0) * step)
               for ky, kx in sorted(fields, key=lambda k: (k != (0, 0), k))]
    grid = central.deepcopy()
    grid.wcs.crpix = [central.wcs.crpix[0] - kx0 * step, central.wcs.crpix[1] - ky0 * step]
    grid.pixel_shape = (nx, ny)
    grid.wcs.set()
    log.info("%s: the emission spans %d model fields (%d x %d model pixels, fields %d apart)",
             path, len(origins), nx, ny, step)
    return TilePlan(grid, (ny, nx), tuple(origins), npix, step, overlap, pixel)


def blend_tiles(
    plan: TilePlan,
    model_input: np.ndarray,
    predict_one: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict every field of ``plan`` and blend them with :func:`blend_window`.

    Parameters
    ----------
    plan : TilePlan
        From :func:`plan_tiles`.
    model_input : numpy.ndarray
        ``plan.shape`` model input on ``plan.grid`` (physical units of the input domain).
    predict_one : callable
        ``(npix, npix)`` input -> ``(mean, std or None)`` in the target's units.

    Returns
    -------
    mean : numpy.ndarray
        ``plan.shape`` blended prediction, NaN outside every field.
    std : numpy.ndarray or None
        The posterior spreads blended with the same weights (the fields' errors are treated
        as fully correlated where they overlap, which does not understate them); ``None``
        when ``predict_one`` gives none.
    """
    n = plan.npix
    if plan.ntiles == 1 and plan.shape == (n, n):
        # One field's weights cancel; not dividing keeps it bit-identical to a single-field run.
        return predict_one(model_input)
    window = blend_window(n)
    total = np.zeros(plan.shape)
    spread: np.ndarray | None = None
    weight = np.zeros(plan.shape)
    for y0, x0 in plan.origins:
        cut = (slice(y0, y0 + n), slice(x0, x0 + n))
        mean, std = predict_one(model_input[cut])
        total[cut] += window * mean
        if std is not None:
            spread = np.zeros(plan.shape) if spread is None else spread
            spread[cut] += window * std
        weight[cut] += window
    covered = weight > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(covered, total / weight, np.nan)
        std = None if spread is None else np.where(covered, spread / weight, np.nan)
    return mean, std


def coverage_fractions(support: np.ndarray, moment0: np.ndarray,
                       predicted: np.ndarray) -> tuple[float, float]:
    """How much of the emission got a prediction.

    Parameters
    ----------
    support : numpy.ndarray of bool
        Emission pixels (:func:`emission_support`).
    moment0 : numpy.ndarray
        The masked moment-0 map (any unit), same shape.
    predicted : numpy.ndarray of bool
        Pixels with a finite prediction.

    Returns
    -------
    pixels : float
        Fraction of the emission pixels predicted (1 when there are none).
    flux : float
        Fraction of the absolute moment-0 flux on them (1 when there is none).
    """
    if not support.any():
        return 1.0, 1.0
    flux = np.abs(np.where(support, moment0, 0.0))
    total = flux.sum()
    return (float(predicted[support].mean()),
            float(flux[predicted].sum() / total) if total > 0 else 1.0)
