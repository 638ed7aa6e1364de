"""Mock SKA-MID observations of sky images and cubes.

Composed like MARTINI: small objects handed to one driver.

* :mod:`~alchemy_obs.observe.telescope` -- :class:`Telescope` (SKA-MID layouts, dish types,
  SEFD, primary beam) and :class:`Observation` (pointing, track, channels, uvw, noise).
* :mod:`~alchemy_obs.observe.interferometer` -- :class:`SkyImage` (Jy/pixel + WCS),
  :class:`Visibilities` and the :class:`Simulator` protocol with the built-in ducc0 engine
  :class:`BuiltinSimulator`.
* :mod:`~alchemy_obs.observe.imaging` -- weighting, dirty image, CLEAN, restoring
  (:class:`Imager`, :class:`ImageResult`).
* :mod:`~alchemy_obs.observe.fast` -- :class:`ImagePlaneSimulator`, the cached image-plane
  mode for datasets.
"""

from alchemy_obs.observe.fast import ImagePlaneSimulator
from alchemy_obs.observe.imaging import ImageResult, Imager
from alchemy_obs.observe.interferometer import BuiltinSimulator, Simulator, SkyImage, Visibilities
from alchemy_obs.observe.telescope import Observation, Telescope

__all__ = [
    "BuiltinSimulator",
    "ImagePlaneSimulator",
    "ImageResult",
    "Imager",
    "Observation",
    "Simulator",
    "SkyImage",
    "Telescope",
    "Visibilities",
]
