"""Mock SKA-MID observations of sky images and cubes.

Composed like MARTINI: small objects handed to one driver.

* :mod:`~alchemy_obs.observe.telescope` -- :class:`Telescope` (SKA-MID layouts, dish types,
  SEFD, primary beam) and :class:`Observation` (pointing, track, channels, uvw, noise).
* :mod:`~alchemy_obs.observe.interferometer` -- :class:`SkyModel` (Jy/pixel + WCS),
  :class:`Visibilities` and the :class:`Simulator` protocol with the built-in ducc0 engine
  :class:`BuiltinSimulator`.
"""

from alchemy_obs.observe.interferometer import BuiltinSimulator, Simulator, SkyModel, Visibilities
from alchemy_obs.observe.telescope import Observation, Telescope

__all__ = ["BuiltinSimulator", "Observation", "Simulator", "SkyModel", "Telescope", "Visibilities"]
