"""Mock SKA-MID observations of sky images and cubes.

Composed like MARTINI: small objects handed to one driver.

* :mod:`~alchemy_obs.observe.telescope` -- :class:`Telescope` (SKA-MID layouts, dish types,
  SEFD, primary beam), :class:`Track` (hour angles, dump time, band) and
  :class:`Observation` (pointing, track, channels, uvw, noise).
* :mod:`~alchemy_obs.observe.interferometer` -- :class:`Visibilities` and the
  :class:`Simulator` protocol with the built-in ducc0 engine :class:`BuiltinSimulator`,
  which observes a :class:`~alchemy_obs.skyimage.SkyImage` in Jy per pixel.
* :mod:`~alchemy_obs.observe.imaging` -- weighting, dirty image, CLEAN, restoring
  (:class:`Imager`, :class:`ImageResult`).
* :mod:`~alchemy_obs.observe.fast` -- :class:`ImagePlaneSimulator` and
  :class:`ImagePlaneMode`, the cached image-plane mode for datasets.
* :mod:`~alchemy_obs.observe.engine` -- :class:`MockObserver`, the driver composed of a
  telescope, a simulator and an imager (``MockObserver.from_config`` picks them from an
  :class:`~alchemy_obs.config.ObserveConfig`), and :func:`observation_for`.
* :mod:`~alchemy_obs.observe.fits` -- :func:`write_fits`; :mod:`~alchemy_obs.observe.measurement_set`,
  :mod:`~alchemy_obs.observe.wsclean` and :mod:`~alchemy_obs.observe.karabo` for the
  MeasurementSet, WSClean and Karabo routes.
"""

from alchemy_obs.observe.engine import MockObserver, observation_for
from alchemy_obs.observe.fast import ImagePlaneMode, ImagePlaneSimulator
from alchemy_obs.observe.fits import write_fits
from alchemy_obs.observe.imaging import ImageResult, Imager
from alchemy_obs.observe.interferometer import BuiltinSimulator, Simulator, Visibilities
from alchemy_obs.observe.telescope import Observation, Telescope, Track

__all__ = [
    "BuiltinSimulator",
    "ImagePlaneMode",
    "ImagePlaneSimulator",
    "ImageResult",
    "Imager",
    "MockObserver",
    "Observation",
    "Simulator",
    "Telescope",
    "Track",
    "Visibilities",
    "observation_for",
    "write_fits",
]
