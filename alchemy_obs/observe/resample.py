"""The one resampling rule between sky grids, shared by the mock stage and ``infer``.

A translator sees its inputs on a square grid of fixed physical pixels. In training, the
mock stage resamples each mock image onto a view's map grid; in use, ``infer`` resamples a
real moment map onto the model's grid and the prediction back onto the observation's grid.
Both go through :func:`reproject_map` and lay out their grids with :func:`sky_grid`, so a
model sees its inputs resampled in use exactly as in training: a mock map passed through
``infer`` on its own grid comes back unchanged.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.wcs import WCS
from reproject import reproject_adaptive, reproject_interp

__all__ = ["pixel_scale", "sky_grid", "reproject_map"]

#: Output pixels up to this factor larger than the input's count as the same size
#: (round-off in WCS parameters), so a grid resampled onto itself is interpolated at
#: pixel centres and returned unchanged.
_SAME_SIZE = 1.0 + 1e-6


def pixel_scale(wcs: WCS) -> u.Quantity:
    """Geometric-mean celestial pixel size of ``wcs`` (works for CD matrices and rotations)."""
    cel = wcs.celestial
    return float(np.sqrt(abs(np.linalg.det(cel.pixel_scale_matrix)))) * u.deg


def sky_grid(
    centre: tuple[float, float],
    pixel: u.Quantity,
    npix: int,
    *,
    crpix: tuple[float, float] | None = None,
    like: WCS | None = None,
) -> WCS:
    """A square map grid on the sky: orthographic (``SIN``), north up, east to the left.

    ``SIN`` is the native projection of an interferometer image, so the mock images and the
    map grids of the training set share one projection, and so does the grid ``infer`` puts
    a model on.

    Parameters
    ----------
    centre : tuple of float
        (longitude, latitude) of the projection centre in degrees.
    pixel : Quantity
        Angular pixel size.
    npix : int
        Pixels per side.
    crpix : tuple of float, optional
        1-based pixel of ``centre``; default the middle of the grid, ``(npix + 1) / 2``.
    like : astropy.wcs.WCS, optional
        A celestial WCS whose frame (axis names, ``RADESYS``, ``EQUINOX``) the grid takes;
        default ICRS right ascension and declination.

    Returns
    -------
    astropy.wcs.WCS
    """
    cdelt = pixel.to_value(u.deg)
    w = WCS(naxis=2)
    if like is None:
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.radesys = "ICRS"
        w.wcs.equinox = 2000.0
    else:
        cel = like.celestial
        w.wcs.ctype = [c.split("-")[0].ljust(5, "-") + "SIN" for c in list(cel.wcs.ctype)[:2]]
        if cel.wcs.radesys:
            w.wcs.radesys = cel.wcs.radesys
        if np.isfinite(cel.wcs.equinox):
            w.wcs.equinox = cel.wcs.equinox
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [float(centre[0]), float(centre[1])]
    w.wcs.crpix = [(npix + 1) / 2.0] * 2 if crpix is None else [float(crpix[0]), float(crpix[1])]
    w.wcs.cdelt = [-cdelt, cdelt]
    w.pixel_shape = (npix, npix)
    return w


def reproject_map(
    data: np.ndarray, wcs_in: WCS, wcs_out: WCS, *, shape_out: tuple[int, ...]
) -> np.ndarray:
    """Resample intensive maps (surface brightness, column or surface density) between grids.

    Values are per beam or per unit area, so they are interpolated, not summed (no flux
    conservation). Where the output pixels are as small as the input's or smaller:
    bilinear interpolation (``reproject_interp``). Where they are larger: the anti-aliased
    adaptive resampling of DeForest (2004) (``reproject_adaptive``), since interpolation
    would alias structure finer than an output pixel. NaN input pixels (blanked data) and
    samples outside the input are left out of an output pixel's weighted mean; output
    pixels with no input at all are NaN.

    Parameters
    ----------
    data : numpy.ndarray
        ``(ny, nx)`` or ``(n, ny, nx)`` (several maps on the same grid); NaN = no data.
    wcs_in, wcs_out : astropy.wcs.WCS
        Celestial WCS of the input and output grids.
    shape_out : tuple of int
        ``(ny, nx)`` of the output.

    Returns
    -------
    numpy.ndarray
        Float64, ``(ny, nx)`` or ``(n, ny, nx)``.
    """
    data = np.asarray(data, dtype=np.float64)
    ratio = (pixel_scale(wcs_out) / pixel_scale(wcs_in)).to_value(u.one)
    if ratio > _SAME_SIZE:
        out, _ = reproject_adaptive(
            (data, wcs_in), wcs_out, shape_out=tuple(shape_out), conserve_flux=False,
            boundary_mode="ignore", bad_value_mode="ignore",
        )
    else:
        out, _ = reproject_interp((data, wcs_in), wcs_out, shape_out=tuple(shape_out),
                                  order="bilinear")
    return out
