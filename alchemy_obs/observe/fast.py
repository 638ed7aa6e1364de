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

Neighbouring channels share a PSF (:func:`shared_psf_channels`): a channel's uv coordinates
in wavelengths scale with its frequency, so the PSF of a channel at a relative frequency
offset :math:`\\delta` is the other's stretched by :math:`1 + \\delta`, which moves a
sidelobe at radius :math:`R` pixels by :math:`R\\delta`. Channels are grouped so that no
sidelobe of the PSF image (half-diagonal :math:`\\sqrt{2}` times the image side) moves by
more than :data:`PSF_SHIFT_PIX`: on a 128-pixel image one PSF serves a relative band of
1.1e-3, 34 channels of 10 km/s at 1.4 GHz.
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
from alchemy_obs.observe.interferometer import GridGeometry, Visibilities, sky_planes, visibility_flags
from alchemy_obs.observe.telescope import Observation
from alchemy_obs.skyimage import SkyImage

__all__ = ["ImagePlaneMode", "ImagePlaneSimulator", "PSF_SHIFT_PIX", "shared_psf_channels"]

#: Largest shift (pixels) of any PSF sidelobe between channels that share a PSF.
PSF_SHIFT_PIX = 0.1


def shared_psf_channels(frequencies: u.Quantity, npix: int,
                        max_shift: float = PSF_SHIFT_PIX) -> np.ndarray:
    """For each channel, the channel whose PSF it uses (consecutive groups, middle channel).

    Parameters
    ----------
    frequencies : Quantity, shape (nchan,)
        Channel frequencies, monotonic.
    npix : int
        Image side (pixels); the PSF image is twice that.
    max_shift : float
        Largest sidelobe shift allowed (pixels, at the corner of the PSF image).

    Returns
    -------
    ndarray of int, shape (nchan,)
    """
    f = u.Quantity(frequencies, u.Hz).to_value(u.Hz)
    reach = np.sqrt(2.0) * npix
    owner = np.empty(len(f), np.int64)
    start = 0
    while start < len(f):
        end = start + 1
        while end < len(f) and abs(f[end] / f[start] - 1.0) * reach <= 2 * max_shift:
            end += 1
        owner[start:end] = (start + end - 1) // 2
        start = end
    return owner


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

    def __init__(self, observation: Observation, imager: Imager, noise: bool = True, *, seed=None):
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
        # Channel c uses the PSF of channel owner[c]; psf_index[c] is its row among the PSFs.
        owner = shared_psf_channels(observation.frequencies, max(geo.nx, geo.ny))
        reps, self.psf_index = np.unique(owner, return_inverse=True)
        rep_vis = _channels(template, reps)
        self.groups = []  # (primary beams (nchan, ny, nx), PSF FFTs per shared PSF)
        psf_total = np.zeros((len(reps), 2 * geo.ny, 2 * geo.nx))
        big = GridGeometry(2 * geo.nx, 2 * geo.ny, geo.cell, geo.nx, geo.ny)
        wsum = w.sum(0)
        for pair, rows in observation.baseline_groups().items():
            wg = np.zeros((len(w), len(reps)))
            wg[rows] = w[rows][:, reps]
            if not wg.any():
                continue
            psf_g = (dirty_image(rep_vis, wg, big, epsilon=imager.epsilon, nthreads=imager.nthreads)
                     * (wg.sum(0) / wsum[reps])[:, None, None])
            psf_total += psf_g
            beams = np.stack([observation.baseline_beam(offsets, f, pair) for f in observation.frequencies])
            convs = [PSFConvolver(p, (geo.ny, geo.nx)) for p in psf_g]
            for cv in convs:
                cv.ft = cv.ft.astype(np.complex64)
            self.groups.append((beams, convs))
        self.psf = psf_total[self.psf_index]
        self.primary_beam = primary_beam_response(observation, w, geo)
        rep_beams = [fit_beam(p, imager.cell) for p in psf_total]
        self.beams = [rep_beams[k] for k in self.psf_index]
        # Noise power per uv cell, each visibility once (the real part of the sum supplies the
        # conjugate half).
        self.noise_amp = np.zeros((nchan, geo.ny, geo.nx))
        for c, f in enumerate(template.freq_hz):
            iu, iv = uv_cells(template.uvw, f, geo)
            g = np.bincount(iv * geo.nx + iu, w[:, c] ** 2 * sigma[:, c] ** 2, geo.ny * geo.nx)
            self.noise_amp[c] = ifftshift(np.sqrt(g.reshape(geo.ny, geo.nx))) / wsum[c]

    def noise_image(self) -> np.ndarray:
        """One thermal-noise realisation of the dirty cube (nchan, ny, nx), Jy/beam."""
        shape = self.noise_amp.shape
        e = self.rng.standard_normal(shape) + 1j * self.rng.standard_normal(shape)
        return fft2(self.noise_amp * e, axes=(-2, -1)).real

    def dirty(self, sky: SkyImage) -> np.ndarray:
        """Dirty cube (nchan, ny, nx) in Jy/beam of ``sky`` (noise included if enabled)."""
        cube = sky_planes(sky)
        geo, sky_geo = self.imager.geometry, GridGeometry.from_sky(sky)
        if (sky_geo.nx, sky_geo.ny) != (geo.nx, geo.ny) or not np.isclose(sky_geo.cell, geo.cell):
            raise ValueError("fast mode needs the sky on the imager's grid (same shape and cell)")
        nchan = len(self.observation.frequencies)
        if len(cube) not in (1, nchan):
            raise ValueError(f"sky has {len(cube)} channels, the observation {nchan}")
        out = np.zeros((nchan, geo.ny, geo.nx))
        for c in range(nchan):
            plane = cube[c] if len(cube) > 1 else cube[0]
            for beams, convs in self.groups:
                out[c] += convs[self.psf_index[c]](plane * beams[c])
        if self.noise:
            out += self.noise_image()
        return out

    def observe(self, sky: SkyImage, observation: Observation | None = None) -> ImageResult:
        """Dirty image, image-plane CLEAN and restore of ``sky``.

        ``observation``, if given, must be the cached one (the simulator protocol passes it).
        """
        if observation is not None and observation is not self.observation:
            raise ValueError("this ImagePlaneSimulator was built for another observation")
        im = self.imager
        dirty = self.dirty(sky)
        sigma = self.rms if self.noise else np.zeros_like(self.rms)
        # The minor cycles subtract each component's exact dirty image (the same PSF), so no
        # major cycle is needed.
        model, residual = im.deconvolve(dirty, self.psf, sigma, beams=self.beams)
        result = im.result(self.observation.frequencies, dirty, model, residual=residual, psf=self.psf,
                           beams=self.beams, rms=self.rms,
                           meta={"weighting": im.weighting, "robust": im.robust, "mode": "fast"})
        result.primary_beam = self.primary_beam
        return result


def _channels(vis: Visibilities, channels: np.ndarray) -> Visibilities:
    """``vis`` restricted to ``channels``."""
    return Visibilities(vis.uvw, vis.antenna1, vis.antenna2, vis.time, vis.frequencies[channels],
                        vis.data[:, channels], vis.sigma[:, channels], vis.flag[:, channels],
                        vis.observation)


class ImagePlaneMode:
    """The fast mode as the simulator part of a :class:`~alchemy_obs.observe.engine.MockObserver`.

    Holds one :class:`ImagePlaneSimulator` per observation set-up (pointing, channels,
    track, telescope, image grid), so the galaxies of a dataset observed on one set-up pay
    for the PSFs and noise statistics once.

    Parameters
    ----------
    noise : bool
        Add thermal noise.
    seed : int or numpy.random.Generator, optional
        Noise generator, shared by every cached simulator.
    """

    def __init__(self, *, noise: bool = True, seed=None) -> None:
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.cache: dict[tuple, ImagePlaneSimulator] = {}

    def simulator(self, observation: Observation, imager: Imager) -> ImagePlaneSimulator:
        """The cached simulator of this set-up (built on first use)."""
        obs, g = observation, imager.geometry
        key = (round(obs.phase_centre.ra.deg, 9), round(obs.phase_centre.dec.deg, 9),
               tuple(np.round(obs.frequencies.to_value(u.Hz), 3)), obs.channel_width.to_value(u.Hz),
               obs.band, obs.n_pol, tuple(np.round(obs.times.mjd, 9)), obs.dump_time.to_value(u.s),
               id(obs.telescope), g.nx, g.ny, g.cell, g.ref_x, g.ref_y)
        if key not in self.cache:
            self.cache[key] = ImagePlaneSimulator(obs, imager, self.noise, seed=self.rng)
        return self.cache[key]
