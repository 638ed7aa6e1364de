"""Fast image-plane mode for dataset generation.

The PSF, the imaging weights and the noise statistics depend only on the observation set-up
(array, track, channels, image grid, weighting), not on the galaxy. They are computed once
with the visibility machinery and cached in an :class:`ImagePlaneSimulator`; each galaxy's
dirty image is then

``sum_g PSF_g * (sky x PB_g) + noise``

where g runs over the dish-type pairs (each has its own primary beam PB_g and the part PSF_g
of the PSF made by its baselines' weights), ``*`` is a linear convolution (FFT, PSFs of twice
the image size, so it equals the gridded sum of the degridded visibilities up to the
w-term), and the noise is drawn in the uv plane: a complex Gaussian per uv cell of variance
``G_k = sum_{i in k} w_i^2 sigma_i^2`` per part, Fourier transformed and divided by
``sum_i w_i``. Its variance is ``sum_i w_i^2 sigma_i^2 / (sum_i w_i)^2`` -- the dirty-image
noise of the visibility path -- and its correlation is the "noise PSF" (FT of G), up to the
nearest-cell placement of the visibilities. CLEAN then runs in the image plane (Hogbom with
the exact image-plane residual, the same automatic mask and thresholds) and the image is
restored like the visibility path's.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from scipy.fft import fft2, ifftshift

from alchemy_obs.observe.imaging import (
    ImageResult,
    Imager,
    PSFConvolver,
    dirty_image,
    fit_beam,
    predicted_rms,
    primary_beam_response,
    uv_cells,
)
from alchemy_obs.observe.interferometer import GridGeometry, SkyImage, Visibilities, visibility_flags
from alchemy_obs.observe.telescope import Observation

__all__ = ["ImagePlaneSimulator"]


class ImagePlaneSimulator:
    """Observation-specific cache: PSFs per channel and baseline type, noise power, beams.

    Parameters
    ----------
    observation : Observation
    imager : Imager
        Image grid, weighting and CLEAN controls; the sky must come on this grid.
    noise : bool
        Add a thermal-noise realisation.
    seed : int or numpy.random.Generator, optional

    Examples
    --------
    >>> fast = ImagePlaneSimulator(obs, Imager(sky.wcs, sky.data.shape[-2:]))  # doctest: +SKIP
    >>> result = fast.observe(sky)                                            # doctest: +SKIP
    """

    def __init__(self, observation: Observation, imager: Imager, noise: bool = True, seed=None):
        self.observation = observation
        self.imager = imager
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        geo = imager.geometry
        flag = visibility_flags(observation, geo)
        a1, a2, t = observation.rows()
        sigma = np.broadcast_to(observation.sigma(), flag.shape).copy()
        template = Visibilities(observation.uvw(), a1, a2, np.zeros(len(a1)), observation.frequencies,
                                np.ones(flag.shape, np.complex128), sigma, flag, observation)
        w = imager.weights(template)
        self.rms = predicted_rms(template, w)
        nchan = len(observation.frequencies)
        offsets = geo.offsets() * u.rad
        self.groups = []  # (primary beams (nchan, ny, nx), PSF FFTs per channel)
        psf_total = np.zeros((nchan, 2 * geo.ny, 2 * geo.nx))
        big = GridGeometry(2 * geo.nx, 2 * geo.ny, geo.cell, geo.nx, geo.ny)
        wsum = w.sum(0)
        for pair, rows in observation.baseline_groups().items():
            wg = np.zeros_like(w)
            wg[rows] = w[rows]
            if not wg.any():
                continue
            psf_g = dirty_image(template, wg, big, epsilon=imager.epsilon) * (wg.sum(0) / wsum)[:, None, None]
            psf_total += psf_g
            beams = np.stack([observation.baseline_beam(offsets, f, pair) for f in observation.frequencies])
            convs = [PSFConvolver(psf_g[c], (geo.ny, geo.nx)) for c in range(nchan)]
            for cv in convs:
                cv.ft = cv.ft.astype(np.complex64)
            self.groups.append((beams, convs))
        self.psf = psf_total
        self.primary_beam = primary_beam_response(observation, w, geo)
        self._psf_convs: list[PSFConvolver] | None = None
        self.beams = [fit_beam(psf_total[c], imager.cell) for c in range(nchan)]
        # Noise power per uv cell, each visibility once (the real part of the sum supplies the
        # conjugate half).
        self.noise_amp = np.zeros((nchan, geo.ny, geo.nx))
        for c, f in enumerate(template.freq_hz):
            iu, iv = uv_cells(template.uvw, f, geo)
            g = np.bincount(iv * geo.nx + iu, w[:, c] ** 2 * sigma[:, c] ** 2, geo.ny * geo.nx)
            self.noise_amp[c] = ifftshift(np.sqrt(g.reshape(geo.ny, geo.nx))) / wsum[c]

    def convolve_psf(self, model: np.ndarray) -> np.ndarray:
        """``PSF * model`` per channel (Jy/beam): the dirty image of a CLEAN model."""
        if self._psf_convs is None:
            shape = self.psf.shape[-2] // 2, self.psf.shape[-1] // 2
            self._psf_convs = [PSFConvolver(p, shape) for p in self.psf]
        return np.stack([conv(m) for conv, m in zip(self._psf_convs, model)])

    def noise_image(self) -> np.ndarray:
        """One thermal-noise realisation of the dirty cube (nchan, ny, nx), Jy/beam."""
        shape = self.noise_amp.shape
        e = self.rng.standard_normal(shape) + 1j * self.rng.standard_normal(shape)
        return fft2(self.noise_amp * e, axes=(-2, -1)).real

    def dirty(self, sky) -> np.ndarray:
        """Dirty cube (nchan, ny, nx) in Jy/beam of ``sky`` (noise included if enabled)."""
        sky = SkyImage.from_sky(sky)
        geo = self.imager.geometry
        if (sky.geometry.nx, sky.geometry.ny) != (geo.nx, geo.ny) or not np.isclose(sky.geometry.cell, geo.cell):
            raise ValueError("fast mode needs the sky on the imager's grid (same shape and cell)")
        cube = sky.cube
        nchan = len(self.observation.frequencies)
        if len(cube) not in (1, nchan):
            raise ValueError(f"sky has {len(cube)} channels, the observation {nchan}")
        out = np.zeros((nchan, geo.ny, geo.nx))
        for c in range(nchan):
            plane = cube[c] if len(cube) > 1 else cube[0]
            for beams, convs in self.groups:
                out[c] += convs[c](plane * beams[c])
        if self.noise:
            out += self.noise_image()
        return out

    def observe(self, sky, observation: Observation | None = None) -> ImageResult:
        """Dirty image, image-plane CLEAN and restore of ``sky``.

        ``observation``, if given, must be the cached one (the simulator protocol passes it).
        """
        if observation is not None and observation is not self.observation:
            raise ValueError("this ImagePlaneSimulator was built for another observation")
        im = self.imager
        dirty = self.dirty(sky)
        sigma = self.rms if self.noise else np.zeros_like(self.rms)
        model, residual = im.deconvolve(dirty, self.psf, sigma, self.beams,
                                        residual_of=lambda m: dirty - self.convolve_psf(m))
        result = im.result(self.observation.frequencies, dirty, model, residual, self.psf,
                           self.beams, self.rms,
                           {"weighting": im.weighting, "robust": im.robust, "mode": "fast"})
        result.primary_beam = self.primary_beam
        return result
