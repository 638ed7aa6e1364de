"""The mock-observation driver: sky model in, CLEANed image out, as configured.

:class:`MockObserver` composes the pieces from an
:class:`~alchemy_obs.config.ObserveConfig`:

* the telescope (:class:`~alchemy_obs.observe.telescope.Telescope`) and an
  :class:`~alchemy_obs.observe.telescope.Observation` pointed at the sky's reference
  position, with the sky cube's channels (or the configured ones for an image);
* a simulator: the built-in ducc0 engine, Karabo, or the fast image-plane mode;
* an imager: the built-in CLEAN or WSClean.

In fast mode the :class:`~alchemy_obs.observe.fast.ImagePlaneSimulator` is cached per
observation set-up (pointing, channels, grid); a dataset should therefore put every galaxy
at the same sky position and on the same grid so that the cache is hit.

Examples
--------
>>> from alchemy_obs.config import ObserveConfig
>>> observer = MockObserver(ObserveConfig(mode="fast"))          # doctest: +SKIP
>>> result = observer.observe(sky)                                # doctest: +SKIP
>>> write_fits(result, "mock.fits", observer.last_observation)    # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.wcs import WCS

from alchemy_obs.config import ObserveConfig
from alchemy_obs.observe.fast import ImagePlaneSimulator
from alchemy_obs.observe.imaging import ImageResult, Imager
from alchemy_obs.observe.interferometer import BuiltinSimulator, SkyImage, Visibilities
from alchemy_obs.observe.telescope import Observation, Telescope

__all__ = ["MockObserver"]


def _image_wcs(sky: SkyImage, npix: int | None, cell_arcsec: float | None) -> tuple[WCS, tuple[int, int]]:
    if npix is None and cell_arcsec is None:
        return sky.wcs.celestial, sky.data.shape[-2:]
    geo = sky.geometry
    n = npix or geo.nx
    cell = cell_arcsec / 3600 if cell_arcsec else np.rad2deg(geo.cell)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = sky.wcs.celestial.wcs.crval
    w.wcs.cunit = sky.wcs.celestial.wcs.cunit
    w.wcs.cdelt = [-cell, cell]
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    return w, (n, n)


class MockObserver:
    """Observe sky models as configured by an :class:`~alchemy_obs.config.ObserveConfig`.

    Parameters
    ----------
    config : ObserveConfig, optional
    telescope : Telescope, optional
        Default ``Telescope.from_config(config.telescope)``.
    nthreads : int, optional
        Threads for ducc0's visibility prediction (0: all cores); default
        ``config.imaging.threads``.
    """

    def __init__(self, config: ObserveConfig | None = None, telescope: Telescope | None = None,
                 nthreads: int | None = None):
        self.config = config if config is not None else ObserveConfig()
        self.telescope = telescope if telescope is not None else Telescope.from_config(self.config.telescope)
        self.nthreads = self.config.imaging.threads if nthreads is None else nthreads
        self.rng = np.random.default_rng(self.config.seed)
        self._fast: dict[tuple, ImagePlaneSimulator] = {}
        self.last_observation: Observation | None = None

    def observation_for(self, sky) -> Observation:
        """The observation of ``sky``: its reference position, its channels if it is a cube."""
        sky_img = SkyImage.from_sky(sky)
        freqs = sky_img.frequencies
        if freqs is None and getattr(sky, "frequencies", None) is not None:
            freqs = u.Quantity(sky.frequencies, u.Hz)
        width = None
        if freqs is not None and len(freqs) > 1:
            width = abs(freqs[1] - freqs[0])
        return Observation.from_config(self.config, sky_img.phase_centre, freqs, width, self.telescope)

    def imager_for(self, sky) -> Imager:
        """The built-in imager on the configured grid (default: the sky's)."""
        sky = SkyImage.from_sky(sky)
        img = self.config.imaging
        wcs, shape = _image_wcs(sky, img.npix, img.cell_arcsec)
        return Imager.from_config(img, wcs, shape)

    def visibilities(self, sky, observation: Observation | None = None) -> Visibilities:
        """Visibilities of ``sky`` from the configured backend (built-in or Karabo)."""
        obs = observation if observation is not None else self.observation_for(sky)
        if self.config.backend == "karabo":
            from alchemy_obs.observe.karabo import KaraboSimulator

            sim = KaraboSimulator(noise=self.config.noise, seed=self.rng)
        else:
            sim = BuiltinSimulator(epsilon=min(self.config.imaging.epsilon, 1e-6), noise=self.config.noise,
                                   seed=self.rng, nthreads=self.nthreads)
        return sim.observe(sky, obs)

    def fast_simulator(self, sky, observation: Observation | None = None) -> ImagePlaneSimulator:
        """The cached image-plane simulator for ``sky``'s set-up (built on first use)."""
        sky_img = SkyImage.from_sky(sky)
        obs = observation if observation is not None else self.observation_for(sky)
        g = sky_img.geometry
        key = (round(obs.phase_centre.ra.deg, 9), round(obs.phase_centre.dec.deg, 9),
               tuple(np.round(obs.frequencies.to_value(u.Hz), 3)), obs.channel_width.to_value(u.Hz),
               obs.band, obs.n_pol, tuple(np.round(obs.times.mjd, 9)), obs.dump_time.to_value(u.s),
               id(obs.telescope), g.nx, g.ny, g.cell, g.ref_x, g.ref_y)
        if key not in self._fast:
            self._fast[key] = ImagePlaneSimulator(obs, self.imager_for(sky_img), self.config.noise, self.rng)
        return self._fast[key]

    def observe(self, sky, observation: Observation | None = None) -> ImageResult:
        """Mock observation of ``sky`` (SkyImage or any object with ``data`` and ``wcs``).

        Parameters
        ----------
        sky : SkyImage or object with ``data`` (Jy/pixel) and ``wcs``
        observation : Observation, optional
            Default :meth:`observation_for` ``(sky)``; pass one to control pointing or
            channel width yourself.
        """
        result = self._observe(sky, observation)
        specsys = SkyImage.from_sky(sky).wcs.wcs.specsys
        if specsys:
            result.meta["specsys"] = specsys
        return result

    def _observe(self, sky, observation: Observation | None) -> ImageResult:
        sky_img = SkyImage.from_sky(sky)
        if self.config.mode == "fast":
            fast = self.fast_simulator(sky, observation)
            self.last_observation = fast.observation
            return fast.observe(sky_img)
        obs = observation if observation is not None else self.observation_for(sky)
        self.last_observation = obs
        vis = self.visibilities(sky_img, obs)
        img = self.config.imaging
        if img.imager == "wsclean":
            from alchemy_obs.observe.wsclean import WSCleanImager

            # WSClean centres the phase centre on pixel n/2, so its grid is rebuilt that way.
            wcs, shape = _image_wcs(sky_img, img.npix or sky_img.geometry.nx,
                                    img.cell_arcsec or float(np.rad2deg(sky_img.geometry.cell) * 3600))
            return WSCleanImager(
                wcs, shape, weighting=img.weighting, robust=img.robust, niter=img.niter,
                gain=img.gain, mgain=img.mgain, threshold_sigma=img.threshold_sigma,
                auto_mask_sigma=img.auto_mask_sigma, floor=img.floor,
                major_cycles=img.major_cycles, jvm=img.jvm,
            ).image(vis, noise=self.config.noise)
        return self.imager_for(sky_img).image(vis, noise=self.config.noise)
