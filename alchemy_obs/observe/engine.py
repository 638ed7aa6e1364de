"""The mock-observation driver: sky model in, CLEANed image out.

:class:`MockObserver` is composed like MARTINI's source: the parts are passed in,

* the ``telescope`` (:class:`~alchemy_obs.observe.telescope.Telescope`);
* the ``simulator``: the built-in ducc0 engine
  (:class:`~alchemy_obs.observe.interferometer.BuiltinSimulator`),
  :class:`~alchemy_obs.observe.karabo.KaraboSimulator`, or the fast image-plane mode
  (:class:`~alchemy_obs.observe.fast.ImagePlaneMode`);
* the ``imager``: a callable ``imager(wcs, shape)`` that makes the imager of a grid, such as
  :class:`~alchemy_obs.observe.imaging.Imager` or
  :class:`~alchemy_obs.observe.wsclean.WSCleanImager` (or a ``functools.partial`` of either
  with its CLEAN settings);

and :meth:`MockObserver.from_config` chooses them from an
:class:`~alchemy_obs.config.ObserveConfig`. :func:`observation_for` is the one place that
points an :class:`~alchemy_obs.observe.telescope.Observation` at a sky, along a
:class:`~alchemy_obs.observe.telescope.Track`.

In fast mode the :class:`~alchemy_obs.observe.fast.ImagePlaneSimulator` is cached per
observation set-up (pointing, channels, grid); a dataset should therefore put every galaxy
at the same sky position and on the same grid so that the cache is hit.

Examples
--------
>>> from alchemy_obs.config import ObserveConfig
>>> observer = MockObserver.from_config(ObserveConfig(mode="fast"))  # doctest: +SKIP
>>> result = observer.observe(sky)                                   # doctest: +SKIP
>>> write_fits(result, "mock.fits", observer.last_observation)       # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy import units as u
from astropy.wcs import WCS

from alchemy_obs.config import ObserveConfig
from alchemy_obs.observe.fast import ImagePlaneMode
from alchemy_obs.observe.imaging import ImageResult, Imager
from alchemy_obs.observe.interferometer import BuiltinSimulator, GridGeometry, Simulator
from alchemy_obs.observe.telescope import Observation, Telescope, Track
from alchemy_obs.skyimage import SkyImage

__all__ = ["MockObserver", "ImagerFactory", "observation_for"]

#: ``imager(wcs, shape)``: the imager of a grid (``Imager``, ``WSCleanImager`` or a partial).
ImagerFactory = Callable[[WCS, tuple[int, int]], Any]


def _image_wcs(sky: SkyImage, npix: int | None, cell_arcsec: float | None) -> tuple[WCS, tuple[int, int]]:
    if npix is None and cell_arcsec is None:
        return sky.wcs.celestial, sky.data.shape[-2:]
    geo = GridGeometry.from_sky(sky)
    n = npix or geo.nx
    cell = cell_arcsec / 3600 if cell_arcsec else np.rad2deg(geo.cell)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = sky.wcs.celestial.wcs.crval
    w.wcs.cunit = sky.wcs.celestial.wcs.cunit
    w.wcs.cdelt = [-cell, cell]
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    return w, (n, n)


def observation_for(
    sky: SkyImage, *, telescope: Telescope, track: Track,
    channel_width: u.Quantity | None = None,
) -> Observation:
    """The observation of ``sky``: pointed at its reference position, in its channels.

    Parameters
    ----------
    sky : SkyImage
        Observed in its ``frequencies`` if it has them (a cube always has), else (an image
        without) in the track's channels.
    telescope : Telescope
    track : Track
        Hour angles or start, dump time, band and polarisations (and the channels of an image
        without frequencies).
    channel_width : Quantity, optional
        Channel width; default the sky's channel spacing, or ``track.channel_width`` for a
        single channel.
    """
    freqs = sky.frequencies
    if channel_width is None and freqs is not None and len(freqs) > 1:
        channel_width = abs(freqs[1] - freqs[0])
    return Observation.from_track(track, sky.phase_centre, freqs, channel_width=channel_width,
                                  telescope=telescope)


class MockObserver:
    """Observe sky models with a telescope, a simulator and an imager.

    Parameters
    ----------
    telescope : Telescope
    simulator : Simulator or ImagePlaneMode
        Makes visibilities (``simulator.observe(sky, observation)``), or, in the fast mode,
        image-plane simulators; its ``noise`` tells the imager whether there is noise.
    imager : ImagerFactory
        ``imager(wcs, shape)`` makes the imager of a grid. The fast mode needs the built-in
        :class:`~alchemy_obs.observe.imaging.Imager`.
    track : Track
        Track, band and channels of the observations (:func:`observation_for`).
    npix, cell_arcsec : int and float, optional
        Image grid; default the sky's grid.
    centred_grid : bool
        Always image on a grid with the phase centre on pixel ``n/2`` (WSClean's
        convention), of ``npix`` and ``cell_arcsec`` or the sky's size and pixel.
    """

    def __init__(
        self, *, telescope: Telescope, simulator: Simulator | ImagePlaneMode,
        imager: ImagerFactory = Imager, track: Track = Track(),
        npix: int | None = None, cell_arcsec: float | None = None, centred_grid: bool = False,
    ) -> None:
        self.telescope = telescope
        self.simulator = simulator
        self.imager = imager
        self.track = track
        self.npix, self.cell_arcsec, self.centred_grid = npix, cell_arcsec, centred_grid
        self.last_observation: Observation | None = None

    @classmethod
    def from_config(
        cls, config: ObserveConfig, *, telescope: Telescope | None = None,
        nthreads: int | None = None,
    ) -> MockObserver:
        """The observer described by ``config``: Karabo or built-in, WSClean or built-in.

        Parameters
        ----------
        config : ObserveConfig
        telescope : Telescope, optional
            Default ``Telescope.from_config(config.telescope)``.
        nthreads : int, optional
            Threads of ducc0's visibility prediction (0: all cores); default
            ``config.imaging.threads``.
        """
        img = config.imaging
        # One generator for every noise draw of the observer, seeded once.
        rng = np.random.default_rng(config.seed)
        simulator: Simulator | ImagePlaneMode
        if config.mode == "fast":
            simulator = ImagePlaneMode(noise=config.noise, seed=rng)
        elif config.backend == "karabo":
            from alchemy_obs.observe.karabo import KaraboSimulator

            simulator = KaraboSimulator(noise=config.noise, seed=rng)
        else:
            simulator = BuiltinSimulator(
                epsilon=min(img.epsilon, 1e-6), noise=config.noise, seed=rng,
                nthreads=img.threads if nthreads is None else nthreads,
            )
        clean = dict(weighting=img.weighting, robust=img.robust, niter=img.niter, gain=img.gain,
                     mgain=img.mgain, threshold_sigma=img.threshold_sigma,
                     auto_mask_sigma=img.auto_mask_sigma, floor=img.floor,
                     major_cycles=img.major_cycles, jvm=img.jvm)
        wsclean = img.imager == "wsclean" and config.mode != "fast"
        if wsclean:
            from alchemy_obs.observe.wsclean import WSCleanImager

            imager: ImagerFactory = functools.partial(WSCleanImager, **clean)
        else:
            imager = functools.partial(Imager, **clean, epsilon=img.epsilon, nthreads=img.threads)
        return cls(
            telescope=telescope if telescope is not None else Telescope.from_config(config.telescope),
            simulator=simulator, imager=imager, track=Track.from_config(config), npix=img.npix,
            cell_arcsec=img.cell_arcsec, centred_grid=wsclean,
        )

    def observation_for(self, sky: SkyImage, channel_width: u.Quantity | None = None) -> Observation:
        """The observation of ``sky`` with this telescope and track (see :func:`observation_for`)."""
        return observation_for(sky, telescope=self.telescope, track=self.track,
                               channel_width=channel_width)

    def imager_for(self, sky: SkyImage):
        """The imager on the image grid of ``sky`` (default: the sky's own grid)."""
        npix, cell = self.npix, self.cell_arcsec
        if self.centred_grid:
            geo = GridGeometry.from_sky(sky)
            npix = npix or geo.nx
            cell = cell or float(np.rad2deg(geo.cell) * 3600)
        return self.imager(*_image_wcs(sky, npix, cell))

    def observe(self, sky: SkyImage, observation: Observation | None = None) -> ImageResult:
        """Mock observation of ``sky``.

        Parameters
        ----------
        sky : SkyImage
            Jy per pixel.
        observation : Observation, optional
            Default :meth:`observation_for` ``(sky)``; pass one to control pointing or
            channel width yourself.
        """
        obs = observation if observation is not None else self.observation_for(sky)
        if isinstance(self.simulator, ImagePlaneMode):
            fast = self.simulator.simulator(obs, self.imager_for(sky))
            self.last_observation = fast.observation
            result = fast.observe(sky)
        else:
            self.last_observation = obs
            vis = self.simulator.observe(sky, obs)
            result = self.imager_for(sky).image(vis, noise=self.simulator.noise)
        if sky.wcs.wcs.specsys:
            result.meta["specsys"] = sky.wcs.wcs.specsys
        return result
