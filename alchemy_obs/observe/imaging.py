"""Imaging: weighting, dirty image and PSF with ducc0, Hogbom/Cotton-Schwab CLEAN, restoring.

Conventions
-----------
* Image weights per visibility: natural ``w = 1/sigma^2``; uniform ``w / W_k``; Briggs
  ``w / (1 + W_k f^2)`` with ``f^2 = (5 10^-R)^2 / (sum_k W_k^2 / sum_i w_i)`` (Briggs 1995,
  the CASA/WSClean form), where ``W_k`` is the natural weight summed in uv cell k of the image
  grid (cell 1/(N cell)), each visibility counted together with its conjugate.
* Dirty image ``I_D(x) = sum_i w_i Re[V_i exp(+2 pi i (u l + v m + w (n - 1)))] / sum_i w_i``
  in Jy/beam; the PSF is the same with V = 1 (peak 1). The noise of a dirty pixel is
  ``sqrt(sum_i w_i^2 sigma_i^2) / sum_i w_i`` with sigma_i per real part
  (:func:`predicted_rms`).
* CLEAN: Hogbom minor cycles (absolute peak, loop gain) on the dirty image with a PSF of
  twice the image size; Cotton-Schwab major cycles recompute the residual from the
  visibilities, ``I_D[V - predict(model)]``, after the peak fell by ``mgain``. Automatic
  mask and threshold, as WSClean's ``-auto-mask`` / ``-auto-threshold``: a first pass cleans
  everywhere down to ``auto_mask_sigma`` times the thermal noise; the components it found,
  grown by a beam, are the mask in which a deep pass cleans down to ``threshold_sigma``
  times the noise. Every channel also stops at ``floor`` times its dirty peak, the only stop
  of a noiseless mock, so extended emission is cleaned nearly completely.
* Restoring beam: elliptical Gaussian least-squares fitted to the PSF main lobe (pixels above
  35 % of the peak connected to it). Position angle east of north (BPA).
* Restored image: ``model * clean_beam + residual``. After deep cleaning the residual holds
  little flux, so the image measures fluxes correctly (a noiseless galaxy keeps its HI mass to
  1 %, a test). The Jorsater & van Moorsel (1995) rescaling of the residual by
  ``epsilon = Omega_clean / Omega_dirty`` is available (``jvm=True``) but off: it is right
  only for residuals much smaller than the beam, and it rescales the noise too, so an S/N
  measured on such an image is biased by epsilon (Czekala et al. 2021, ApJS 257, 2). With it
  on, the reported noise (``NOISERMS``) is ``epsilon`` times the dirty-image noise, the noise
  of the image actually written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numba
import numpy as np
from astropy import units as u
from astropy.wcs import WCS
from radio_beam import Beam, Beams
from scipy import ndimage, optimize
from scipy.fft import irfft2, next_fast_len, rfft2

from alchemy_obs.observe.interferometer import GridGeometry, Visibilities, degrid, grid

__all__ = [
    "image_weights",
    "predicted_rms",
    "dirty_image",
    "psf_image",
    "fit_beam",
    "gaussian_kernel",
    "hogbom",
    "jvm_epsilon",
    "ImageResult",
    "Imager",
    "spectral_wcs",
    "uv_cells",
    "PSFConvolver",
    "restore",
    "primary_beam_response",
]

log = logging.getLogger(__name__)

_C = 299792458.0


def uv_cells(uvw: np.ndarray, freq: float, geometry: GridGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Nearest uv-cell indices (iu, iv), 0..N-1 with zero spacing at N/2, of an image grid.

    ``uvw`` in metres, ``freq`` in Hz; the cell is ``1 / (N cell)`` wavelengths.
    """
    du_x = 1.0 / (geometry.nx * geometry.cell)
    du_y = 1.0 / (geometry.ny * geometry.cell)
    iu = np.rint(uvw[:, 0] * freq / _C / du_x).astype(np.int64) + geometry.nx // 2
    iv = np.rint(uvw[:, 1] * freq / _C / du_y).astype(np.int64) + geometry.ny // 2
    return np.clip(iu, 0, geometry.nx - 1), np.clip(iv, 0, geometry.ny - 1)


def image_weights(
    vis: Visibilities,
    geometry: GridGeometry,
    weighting: str = "briggs",
    *,
    robust: float = 0.0,
) -> np.ndarray:
    """Imaging weights (nrow, nchan), zero where flagged or beyond the grid's uv range.

    Parameters
    ----------
    vis : Visibilities
    geometry : GridGeometry
        The image grid; its uv cell size defines the density for uniform and Briggs.
    weighting : {"natural", "uniform", "briggs"}
    robust : float
        Briggs robust parameter R (-2 ~ uniform, +2 ~ natural).
    """
    if weighting not in ("natural", "uniform", "briggs"):
        raise ValueError(f"unknown weighting {weighting!r}; choose natural, uniform or briggs")
    # A uv-range cut at 1/(2 cell): longer baselines would leave the PSF undersampled by the
    # image grid, which breaks the beam fit and CLEAN.
    uv = np.maximum(np.abs(vis.uvw[:, 0]), np.abs(vis.uvw[:, 1]))[:, None] * vis.freq_hz[None, :] / _C
    natural = np.where(vis.flag | (uv >= geometry.uv_limit()), 0.0, 1.0 / vis.sigma**2)
    if weighting == "natural":
        return natural
    out = np.zeros_like(natural)
    for c, f in enumerate(vis.freq_hz):
        w = natural[:, c]
        iu, iv = uv_cells(vis.uvw, f, geometry)
        ny, nx = geometry.ny, geometry.nx
        cells = iv * nx + iu
        conj = ((ny - iv) % ny) * nx + (nx - iu) % nx  # the conjugate visibility at (-u, -v)
        density = (np.bincount(cells, w, ny * nx) + np.bincount(conj, w, ny * nx)).reshape(ny, nx)
        W = density.ravel()[cells]
        if weighting == "uniform":
            out[:, c] = np.where(W > 0, w / np.where(W > 0, W, 1), 0)
        else:
            f2 = (5 * 10 ** (-robust)) ** 2 / ((density**2).sum() / (2 * w.sum()))
            out[:, c] = w / (1 + W * f2)
    return out


def predicted_rms(vis: Visibilities, weights: np.ndarray) -> np.ndarray:
    """Noise of a dirty-image pixel per channel, ``sqrt(sum w^2 sigma^2) / sum w`` (Jy/beam)."""
    return np.sqrt((weights**2 * vis.sigma**2).sum(0)) / weights.sum(0)


def dirty_image(vis: Visibilities, weights: np.ndarray, geometry: GridGeometry,
                *,
                data: np.ndarray | None = None, epsilon: float = 1e-6, nthreads: int = 1) -> np.ndarray:
    """Dirty image cube (nchan, ny, nx) in Jy/beam of ``data`` (default ``vis.data``)."""
    data = vis.data if data is None else data
    out = np.empty((len(vis.freq_hz), geometry.ny, geometry.nx))
    for c, f in enumerate(vis.freq_hz):
        rows = weights[:, c] > 0
        out[c] = grid(vis.uvw[rows], np.array([f]), data[rows, c:c + 1], weights=weights[rows, c:c + 1],
                      geometry=geometry, epsilon=epsilon, nthreads=nthreads) / weights[rows, c].sum()
    return out


def psf_image(vis: Visibilities, weights: np.ndarray, geometry: GridGeometry,
              *,
              factor: int = 2, epsilon: float = 1e-6, nthreads: int = 1) -> np.ndarray:
    """PSF cube (nchan, factor*ny, factor*nx), peak 1 at pixel (factor*ny/2, factor*nx/2)."""
    big = GridGeometry(factor * geometry.nx, factor * geometry.ny, geometry.cell,
                       factor * geometry.nx / 2, factor * geometry.ny / 2)
    ones = np.ones_like(vis.data)
    return dirty_image(vis, weights, big, data=ones, epsilon=epsilon, nthreads=nthreads)


def primary_beam_response(observation, weights: np.ndarray, geometry: GridGeometry) -> np.ndarray:
    """The primary-beam response of a dirty image, (nchan, ny, nx), 1 at the phase centre.

    Baselines of different dish-type pairs see the sky through different primary beams; the
    image sees their imaging-weighted mean. Dividing the restored image by it gives the sky's
    surface brightness (a "pbcor" image).
    """
    offsets = geometry.offsets() * u.rad
    total = weights.sum(axis=0)
    out = np.zeros((weights.shape[1], geometry.ny, geometry.nx))
    for pair, rows in observation.baseline_groups().items():
        share = weights[rows].sum(axis=0) / np.where(total > 0, total, 1.0)
        for c, f in enumerate(observation.frequencies):
            if share[c] > 0:
                out[c] += share[c] * observation.baseline_beam(offsets, f, pair)
    return out


def _main_lobe(psf: np.ndarray, level: float) -> np.ndarray:
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    labels, _ = ndimage.label(psf > level * psf[cy, cx])
    return labels == labels[cy, cx]


def _gauss(params, dx, dy):
    smaj, smin, pa = params
    # Major axis along PA east of north: pixel direction (-sin pa, cos pa) (x grows west).
    q1 = -dx * np.sin(pa) + dy * np.cos(pa)
    q2 = dx * np.cos(pa) + dy * np.sin(pa)
    return np.exp(-0.5 * (q1 / smaj) ** 2 - 0.5 * (q2 / smin) ** 2)


def fit_beam(psf: np.ndarray, cell: u.Quantity) -> Beam:
    """Elliptical Gaussian fitted to the main lobe (> 35 % of peak) of a PSF plane."""
    lobe = _main_lobe(psf, 0.35)
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    yy, xx = np.nonzero(lobe)
    dx, dy, val = xx - cx, yy - cy, psf[yy, xx] / psf[cy, cx]
    # Start from the second moments of the lobe.
    s0 = max(np.sqrt(np.average(dx**2 + dy**2, weights=val) / 2), 0.5)
    res = optimize.least_squares(lambda p: _gauss(p, dx, dy) - val, x0=[s0 * 1.1, s0 * 0.9, 0.1],
                                 bounds=([0.1, 0.1, -np.pi], [1e4, 1e4, np.pi]))
    smaj, smin, pa = res.x
    if smin > smaj:
        smaj, smin, pa = smin, smaj, pa + np.pi / 2
    pa = (pa + np.pi / 2) % np.pi - np.pi / 2
    fwhm = np.sqrt(8 * np.log(2))
    c = u.Quantity(cell).to(u.arcsec)
    return Beam(major=smaj * fwhm * c, minor=smin * fwhm * c, pa=pa * u.rad)


def gaussian_kernel(beam: Beam, cell: u.Quantity, shape: tuple[int, int]) -> np.ndarray:
    """The beam sampled on a grid of ``shape`` centred at (ny//2, nx//2), peak 1."""
    c = u.Quantity(cell).to_value(u.arcsec)
    fwhm = np.sqrt(8 * np.log(2))
    smaj = beam.major.to_value(u.arcsec) / c / fwhm
    smin = beam.minor.to_value(u.arcsec) / c / fwhm
    ny, nx = shape
    dy, dx = np.mgrid[:ny, :nx]
    return _gauss((smaj, smin, beam.pa.to_value(u.rad)), dx - nx // 2, dy - ny // 2)


def jvm_epsilon(psf: np.ndarray, beam: Beam, cell: u.Quantity) -> float:
    """Jorsater & van Moorsel ratio Omega_clean / Omega_dirty (PSF summed to its first null)."""
    omega_dirty = psf[_main_lobe(psf, 0.0)].sum() / psf.max()
    c = u.Quantity(cell).to_value(u.arcsec)
    omega_clean = np.pi * beam.major.to_value(u.arcsec) * beam.minor.to_value(u.arcsec) / (4 * np.log(2)) / c**2
    return float(omega_clean / omega_dirty)


@numba.njit(cache=True)
def _hogbom(residual, psf, mask, gain, threshold, niter, model):
    ny, nx = residual.shape
    pcy, pcx = psf.shape[0] // 2, psf.shape[1] // 2
    for it in range(niter):
        best = -1.0
        by = 0
        bx = 0
        for y in range(ny):
            for x in range(nx):
                if mask[y, x]:
                    a = abs(residual[y, x])
                    if a > best:
                        best = a
                        by = y
                        bx = x
        if best <= threshold:
            return it
        amp = gain * residual[by, bx]
        model[by, bx] += amp
        oy = pcy - by
        ox = pcx - bx
        for y in range(ny):
            for x in range(nx):
                residual[y, x] -= amp * psf[y + oy, x + ox]
    return niter


@numba.njit(cache=True)
def _clark(values, ys, xs, psf, gain, threshold, niter, model):
    """Hogbom iterations on the listed pixels only (a Clark minor cycle); ``values`` updated."""
    n = len(values)
    pcy, pcx = psf.shape[0] // 2, psf.shape[1] // 2
    for it in range(niter):
        best = -1.0
        k = 0
        for j in range(n):
            a = abs(values[j])
            if a > best:
                best = a
                k = j
        if best <= threshold:
            return it
        amp = gain * values[k]
        model[ys[k], xs[k]] += amp
        oy = pcy - ys[k]
        ox = pcx - xs[k]
        for j in range(n):
            values[j] -= amp * psf[ys[j] + oy, xs[j] + ox]
    return niter


def hogbom(residual: np.ndarray, psf: np.ndarray, gain: float = 0.1, *, threshold: float = 0.0,
           niter: int = 1000, mask: np.ndarray | None = None,
           model: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Hogbom CLEAN of one plane.

    Parameters
    ----------
    residual : ndarray (ny, nx)
        Dirty or residual image (Jy/beam); not modified.
    psf : ndarray (2 ny, 2 nx)
        PSF with peak 1 at (ny, nx).
    gain, threshold, niter : float, float, int
        Loop gain, stop when the absolute peak inside the mask is below ``threshold``,
        maximum components.
    mask : ndarray of bool, optional
        Where components may be placed (default everywhere).
    model : ndarray, optional
        Model to add components to (copied).

    Returns
    -------
    model, residual, n_components
    """
    ny, nx = residual.shape
    if psf.shape != (2 * ny, 2 * nx):
        raise ValueError(f"PSF must be twice the image size {(2 * ny, 2 * nx)}, got {psf.shape}")
    res = np.array(residual, dtype=np.float64, copy=True)
    mod = np.zeros_like(res) if model is None else np.array(model, dtype=np.float64, copy=True)
    m = np.ones(res.shape, bool) if mask is None else np.asarray(mask, bool)
    n = _hogbom(res, np.ascontiguousarray(psf, np.float64), m, gain, threshold, niter, mod)
    return mod, res, int(n)


class PSFConvolver:
    """Linear convolution of (ny, nx) images with fixed PSFs of shape (2 ny, 2 nx), via cached FFTs.

    ``out[y, x] = sum_{y', x'} image[y', x'] psf[y - y' + ny, x - x' + nx]``: exactly what the
    visibility path gives for the same weights (PSF peak at (ny, nx)).
    """

    def __init__(self, psf: np.ndarray, shape: tuple[int, int]):
        ny, nx = shape
        self.shape = shape
        self.fshape = (next_fast_len(3 * ny, real=True), next_fast_len(3 * nx, real=True))
        self.ft = rfft2(psf, self.fshape)

    def __call__(self, image: np.ndarray, ft=None) -> np.ndarray:
        ny, nx = self.shape
        full = irfft2(rfft2(image, self.fshape) * (self.ft if ft is None else ft), self.fshape)
        return full[ny:2 * ny, nx:2 * nx]


def restore(model: np.ndarray, residual: np.ndarray, beam: Beam, *, cell: u.Quantity,
            epsilon: float = 1.0) -> np.ndarray:
    """``model * clean_beam + epsilon * residual`` in Jy/beam (model in Jy/pixel)."""
    ny, nx = model.shape
    kernel = np.zeros((2 * ny, 2 * nx))
    kernel[:, :] = gaussian_kernel(beam, cell, (2 * ny, 2 * nx))
    return PSFConvolver(kernel, (ny, nx))(model) + epsilon * residual


@dataclass
class ImageResult:
    """Images of one observation (cubes: one plane per channel).

    Attributes
    ----------
    image : Quantity (nchan, ny, nx)
        Restored image, Jy/beam (residual JvM-rescaled only with ``jvm``).
    model : Quantity (nchan, ny, nx)
        CLEAN components, Jy/pixel.
    residual : Quantity (nchan, ny, nx)
        Final residual, Jy per dirty beam (not rescaled).
    dirty : Quantity (nchan, ny, nx)
        Dirty image, Jy/beam.
    psf : ndarray (nchan, ny, nx)
        Central part of the PSF (peak 1 at (ny/2, nx/2)).
    beams : radio_beam.Beams
        Restoring beam per channel.
    wcs : WCS
        Celestial (plus FREQ) WCS of the planes.
    noise_rms : Quantity (nchan,)
        Thermal-noise rms of the restored image (that of the dirty image, times epsilon when
        the residual is JvM-rescaled); the noise a mock with noise has.
    jvm_epsilon : ndarray (nchan,)
        The residual's rescaling (ones unless ``jvm``).
    frequencies : Quantity (nchan,)
    meta : dict
        Observation parameters for the FITS header.
    primary_beam : ndarray (nchan, ny, nx) or None
        Primary-beam response of the images (:func:`primary_beam_response`); the images are
        apparent brightness, ``image / primary_beam`` is the sky's.
    """

    image: u.Quantity
    model: u.Quantity
    residual: u.Quantity
    dirty: u.Quantity
    psf: np.ndarray
    beams: Beams
    wcs: WCS
    noise_rms: u.Quantity
    jvm_epsilon: np.ndarray
    frequencies: u.Quantity
    meta: dict = field(default_factory=dict)
    primary_beam: np.ndarray | None = None


def _grown(support: np.ndarray, radius_pix: float) -> np.ndarray:
    """``support`` dilated by a disc of ``radius_pix`` (the automatic CLEAN mask)."""
    r = max(int(np.ceil(radius_pix)), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ndimage.binary_dilation(support, structure=xx**2 + yy**2 <= r * r)


#: Scales of the multi-scale CLEAN, as multiples of the beam's FWHM (0: point components).
MULTISCALE_BEAMS = (0.0, 2.0, 4.0, 8.0)
#: A multi-scale round cleans the chosen scale's pixels down to this fraction of its peak.
ROUND_DEPTH = 0.1


class _Scales:
    """The scales of a multi-scale CLEAN of one plane.

    Per scale of :data:`MULTISCALE_BEAMS` that fits the image (FWHM at most a quarter of
    its side): the FWHM and Gaussian sigma in pixels, the PSF seen at that scale
    (``PSF * G_s * G_s``, normalised to peak 1) and its peak before normalising.

    Images are smoothed to every scale from one forward FFT (zero padding of five sigmas of
    the largest scale, so that nothing wraps around; the same result as
    ``ndimage.gaussian_filter(..., mode="constant")`` to its 4-sigma truncation): a round of
    the minor cycle smooths the residual to every scale, which with direct convolutions
    cost more than the CLEAN iterations themselves.
    """

    def __init__(self, psf: np.ndarray, beam_pix: float, shape: tuple[int, int]):
        fwhm = np.sqrt(8 * np.log(2))
        self.size, self.sigma, self.psf, self.peak = [], [], [], []
        for s in MULTISCALE_BEAMS:
            size = s * beam_pix
            if size > min(shape) / 4:
                break
            sigma = size / fwhm
            p = psf if size == 0 else ndimage.gaussian_filter(psf, sigma * np.sqrt(2),
                                                              mode="constant")
            peak = float(p.max())
            self.size.append(size)
            self.sigma.append(sigma)
            self.psf.append(np.ascontiguousarray(p / peak))
            self.peak.append(peak)
        ny, nx = shape
        pad = int(np.ceil(5 * max(self.sigma)))
        self.shape = shape
        self.fshape = (next_fast_len(ny + pad, real=True), next_fast_len(nx + pad, real=True))
        ky = np.fft.fftfreq(self.fshape[0])[:, None]
        kx = np.fft.rfftfreq(self.fshape[1])[None, :]
        self.transfer = [None if sg == 0 else np.exp(-2 * np.pi**2 * sg**2 * (ky**2 + kx**2))
                         for sg in self.sigma]

    def __len__(self) -> int:
        return len(self.size)

    def smooth_all(self, image: np.ndarray) -> list[np.ndarray]:
        """``image`` smoothed to every scale (the image itself at the point scale)."""
        ny, nx = self.shape
        ft = rfft2(image, self.fshape)
        return [image if t is None else irfft2(ft * t, self.fshape)[:ny, :nx]
                for t in self.transfer]

    def smooth(self, image: np.ndarray, k: int) -> np.ndarray:
        """``image`` smoothed to scale ``k``."""
        if self.transfer[k] is None:
            return image
        ny, nx = self.shape
        return irfft2(rfft2(image, self.fshape) * self.transfer[k], self.fshape)[:ny, :nx]


def _multiscale_minor(residual: np.ndarray, scales: _Scales, convolver: PSFConvolver,
                      model: np.ndarray, mask: np.ndarray, *, stop: float, gain: float,
                      niter: int, max_rounds: int = 1000) -> int:
    """Multi-scale CLEAN of one plane in the image plane (Cornwell 2008), in place.

    Components are Gaussians of FWHM ``MULTISCALE_BEAMS`` times the beam (and points),
    described by ``scales``. Each round picks the scale whose smoothed residual peaks
    highest (with Cornwell's small-scale bias ``1 - 0.6 s / s_max``, and divided by the
    square root of that scale's PSF peak, a matched-filter normalisation under which a point
    source picks the point scale), runs Hogbom iterations at that scale (:func:`_clark`,
    with the PSF seen at that scale) on the pixels above :data:`ROUND_DEPTH` of its peak
    down to that level, adds the components to ``model`` and subtracts their exact dirty
    image from ``residual``. Extended emission is then removed with far fewer components
    than with points alone. Stops when the point-scale peak inside ``mask`` is below
    ``stop``; no scale cleans below ``stop`` in its own noise units.

    Returns
    -------
    int
        Components used (counted against ``niter``).
    """
    largest = max(scales.size) or 1.0
    used = 0
    for _ in range(max_rounds):
        if used >= niter:
            break
        if (np.abs(residual) * mask).max(initial=0.0) <= stop:
            break
        # Noise correlated like the PSF has rms sigma * sqrt(peak) once smoothed to a scale, so
        # peak / sqrt(peak of the scale's PSF) puts every scale in units of the point-scale
        # noise: a point source picks the point scale, and no scale cleans below the stop.
        smoothed = scales.smooth_all(residual)
        value = [(np.abs(rs) * mask).max(initial=0.0) / np.sqrt(peak) * (1 - 0.6 * size / largest)
                 for rs, peak, size in zip(smoothed, scales.peak, scales.size)]
        k = int(np.argmax(value))
        peak = scales.peak[k]
        level = (np.abs(smoothed[k]) * mask).max(initial=0.0)
        target = max(ROUND_DEPTH * level, stop * np.sqrt(peak))
        ys, xs = np.nonzero((np.abs(smoothed[k]) * mask) > target)
        components = np.zeros_like(residual)
        n = _clark(smoothed[k][ys, xs].astype(np.float64), ys, xs, scales.psf[k], gain, target,
                   niter - used, components)
        if n == 0:
            break
        used += n
        delta = scales.smooth(components / peak, k)
        model += delta
        residual -= convolver(delta)
    return used


def spectral_wcs(wcs: WCS, frequencies: u.Quantity) -> WCS:
    """The celestial part of ``wcs`` (as SIN) plus a linear FREQ axis through ``frequencies``."""
    cel = wcs.celestial
    out = WCS(naxis=3)
    out.wcs.ctype = [cel.wcs.ctype[0][:4] + "-SIN", cel.wcs.ctype[1][:4] + "-SIN", "FREQ"]
    out.wcs.crval = [*cel.wcs.crval, frequencies[0].to_value(u.Hz)]
    step = (frequencies[1] - frequencies[0]).to_value(u.Hz) if len(frequencies) > 1 else 1.0
    out.wcs.cdelt = [*(cel.wcs.get_cdelt() * np.diag(cel.wcs.get_pc())), step]
    out.wcs.crpix = [*cel.wcs.crpix, 1.0]
    out.wcs.cunit = [cel.wcs.cunit[0] or "deg", cel.wcs.cunit[1] or "deg", "Hz"]
    out.wcs.radesys = cel.wcs.radesys or "ICRS"
    out.wcs.specsys = "TOPOCENT"
    return out


class Imager:
    """The built-in imager: weighting, dirty image/PSF, auto-masked CLEAN and restoring.

    Parameters
    ----------
    wcs : WCS
        Celestial image grid (SIN/TAN, phase centre at CRVAL); usually the sky's.
    shape : tuple of int
        (ny, nx) of the image.
    weighting, robust : str, float
        See :func:`image_weights`.
    niter, gain, mgain, threshold_sigma, auto_mask_sigma, floor, major_cycles, jvm :
        CLEAN and restoring controls (see :class:`alchemy_obs.config.ImagingConfig`), named
        and ordered as for :class:`~alchemy_obs.observe.wsclean.WSCleanImager`.
    epsilon : float
        ducc0 accuracy.
    nthreads : int
        ducc0 threads (0: all cores).
    """

    def __init__(self, wcs: WCS, shape: tuple[int, int], *, weighting: str = "briggs",
                 robust: float = 0.0, niter: int = 100_000, gain: float = 0.3, mgain: float = 0.9,
                 threshold_sigma: float = 1.0, auto_mask_sigma: float | None = 5.0,
                 floor: float = 3e-4, major_cycles: int = 20, jvm: bool = False,
                 epsilon: float = 1e-6, nthreads: int = 1):
        self.wcs = wcs.celestial
        self.geometry = GridGeometry.from_wcs(self.wcs, shape)
        self.weighting, self.robust = weighting, robust
        self.niter, self.gain, self.threshold_sigma = niter, gain, threshold_sigma
        self.auto_mask_sigma, self.floor = auto_mask_sigma, floor
        self.major_cycles, self.mgain, self.jvm = major_cycles, mgain, jvm
        self.epsilon, self.nthreads = epsilon, nthreads

    @property
    def cell(self) -> u.Quantity:
        return (self.geometry.cell * u.rad).to(u.arcsec)

    def weights(self, vis: Visibilities) -> np.ndarray:
        """Imaging weights of ``vis`` on this grid."""
        return image_weights(vis, self.geometry, self.weighting, robust=self.robust)

    def image(self, vis: Visibilities, mask: np.ndarray | None = None,
              noise: bool = True) -> ImageResult:
        """CLEAN ``vis`` with Cotton-Schwab major cycles and restore.

        Parameters
        ----------
        vis : Visibilities
        mask : ndarray of bool (ny, nx) or (nchan, ny, nx), optional
            Clean mask; default automatic (see :meth:`deconvolve`).
        noise : bool
            Whether the visibilities carry thermal noise. Without it the noise-based
            thresholds do not apply, and only ``floor`` stops CLEAN.
        """
        geo = self.geometry
        w = self.weights(vis)
        rms = predicted_rms(vis, w)
        dirty = dirty_image(vis, w, geo, epsilon=self.epsilon, nthreads=self.nthreads)
        psf = psf_image(vis, w, geo, epsilon=self.epsilon, nthreads=self.nthreads)
        beams = [fit_beam(psf[c], self.cell) for c in range(len(vis.freq_hz))]
        model, residual = self.deconvolve(dirty, psf, rms if noise else np.zeros_like(rms), beams=beams,
                                          residual_of=lambda m, cs: self._residual(vis, w, m, cs),
                                          mask=mask)
        result = self.result(vis.frequencies, dirty, model, residual=residual, psf=psf, beams=beams, rms=rms,
                             meta={"weighting": self.weighting, "robust": self.robust})
        if vis.observation is not None:
            result.primary_beam = primary_beam_response(vis.observation, w, geo)
        return result

    def deconvolve(self, dirty: np.ndarray, psf: np.ndarray, sigma: np.ndarray, *, beams,
                   residual_of=None, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Auto-masked CLEAN of a dirty cube.

        Every channel stops at ``max(threshold_sigma * sigma, floor * peak)``, ``peak`` its
        absolute dirty peak. Unless ``mask`` is given, channels with noise are first cleaned
        everywhere to ``auto_mask_sigma * sigma``; their components, grown by the beam's
        major axis, are the mask of the deep pass.

        Parameters
        ----------
        dirty : ndarray (nchan, ny, nx)
        psf : ndarray (nchan, 2 ny, 2 nx)
        sigma : ndarray (nchan,)
            Thermal noise of the dirty image (zero for a noiseless mock).
        beams : sequence of Beam
            Restoring beams (the mask growth).
        residual_of : callable, optional
            ``(model, channels) -> residual`` of those channels from the data (Cotton-Schwab
            major cycles); without it the minor cycles' image-plane residual is exact (fast
            mode) and one cycle suffices.
        mask : ndarray of bool, optional
            A fixed mask instead of the automatic one.

        Returns
        -------
        model, residual : ndarray (nchan, ny, nx)
        """
        nchan = len(dirty)
        model = np.zeros_like(dirty)
        residual = dirty.copy()
        beam_pix = [float((b.major / self.cell).decompose().value) for b in beams]
        shape = dirty.shape[-2:]
        convolvers, scales = [], []
        for c in range(nchan):
            # Channels sharing a PSF (the fast mode's) share its transforms.
            if c and beam_pix[c] == beam_pix[c - 1] and np.array_equal(psf[c], psf[c - 1]):
                convolvers.append(convolvers[-1])
                scales.append(scales[-1])
            else:
                convolvers.append(PSFConvolver(psf[c], shape))
                scales.append(_Scales(psf[c], beam_pix[c], shape))
        planes = (convolvers, scales)
        peak = np.abs(dirty).reshape(nchan, -1).max(axis=1)
        stop = np.maximum(self.threshold_sigma * sigma, self.floor * peak)
        left = np.full(nchan, self.niter)
        everywhere = np.ones(dirty.shape, bool)
        if mask is not None:
            masks = np.broadcast_to(np.asarray(mask, bool), dirty.shape)
        elif self.auto_mask_sigma is not None and (sigma > 0).any():
            first = np.where(sigma > 0, np.maximum(self.auto_mask_sigma * sigma, stop), stop)
            residual = self._clean(residual, planes, model, first, everywhere, left, residual_of)
            masks = np.stack([
                _grown(np.abs(model[c]) > 1e-3 * np.abs(model[c]).max(initial=0.0), beam_pix[c])
                if sigma[c] > 0 else everywhere[c] for c in range(nchan)
            ])
        else:
            masks = everywhere
        residual = self._clean(residual, planes, model, stop, masks, left, residual_of)
        return model, residual

    def _clean(self, residual, planes, model, levels, masks, left, residual_of) -> np.ndarray:
        """CLEAN down to ``levels`` inside ``masks``; updates ``model`` and ``left``.

        Minor cycles (:func:`_multiscale_minor`) run in the image plane with the exact PSF;
        with ``residual_of`` a major cycle recomputes the residual from the data each time
        a channel's peak fell by ``mgain``.
        """
        convolvers, scales = planes
        for _ in range(self.major_cycles if residual_of is not None else 1):
            cleaned = []
            for c in range(len(residual)):
                peak = (np.abs(residual[c]) * masks[c]).max(initial=0.0)
                if peak <= levels[c] or left[c] <= 0:
                    continue
                cleaned.append(c)
                stop = max(levels[c], (1 - self.mgain) * peak) if residual_of else levels[c]
                left[c] -= _multiscale_minor(residual[c], scales[c], convolvers[c], model[c],
                                             masks[c], stop=stop, gain=self.gain,
                                             niter=int(left[c]))
            if not cleaned or residual_of is None:
                break
            # Only channels whose model changed need their residual from the data again.
            residual[cleaned] = residual_of(model, cleaned)
        return residual

    def _residual(self, vis: Visibilities, w: np.ndarray, model: np.ndarray,
                  channels: list[int]) -> np.ndarray:
        """Dirty images of ``data - model`` for ``channels``, (len(channels), ny, nx)."""
        out = np.empty((len(channels), self.geometry.ny, self.geometry.nx))
        for k, c in enumerate(channels):
            rows = w[:, c] > 0
            f = np.array([vis.freq_hz[c]])
            data = vis.data[rows, c:c + 1]
            if model[c].any():
                data = data - degrid(vis.uvw[rows], f, model[c], geometry=self.geometry, epsilon=self.epsilon,
                                     nthreads=self.nthreads)
            out[k] = grid(vis.uvw[rows], f, data, weights=w[rows, c:c + 1],
                          geometry=self.geometry, epsilon=self.epsilon,
                          nthreads=self.nthreads) / w[rows, c].sum()
        return out

    def result(self, freqs, dirty, model, *, residual, psf, beams, rms, meta) -> ImageResult:
        """Restore and package CLEAN products as an :class:`ImageResult`.

        With ``jvm`` the residual is rescaled by the Jorsater-van Moorsel epsilon, and the
        reported noise with it (the noise of the image written).
        """
        ny, nx = self.geometry.ny, self.geometry.nx
        nchan = len(dirty)
        eps = (np.array([jvm_epsilon(psf[c], beams[c], self.cell) for c in range(nchan)])
               if self.jvm else np.ones(nchan))
        restored = np.stack([restore(model[c], residual[c], beams[c], cell=self.cell, epsilon=eps[c])
                             for c in range(nchan)])
        jyb = u.Jy / u.beam
        return ImageResult(
            image=restored * jyb, model=model * u.Jy, residual=residual * jyb, dirty=dirty * jyb,
            psf=psf[:, ny // 2:ny // 2 + ny, nx // 2:nx // 2 + nx], beams=Beams(beams=beams),
            wcs=spectral_wcs(self.wcs, u.Quantity(freqs, u.Hz)),
            noise_rms=np.asarray(rms) * eps * jyb, jvm_epsilon=eps,
            frequencies=u.Quantity(freqs, u.Hz), meta={**meta, "jvm": bool(self.jvm)},
        )
