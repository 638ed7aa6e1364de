"""The one sky-image type: an image or cube with its WCS, and its beam where it has one.

A :class:`SkyImage` is what every stage hands on: the sky model of a mock
(:func:`~alchemy_obs.observe.sky.hi_cube`, :func:`~alchemy_obs.observe.sky.continuum_image`,
Jy per pixel, no beam), the sky a simulator observes
(:class:`~alchemy_obs.observe.interferometer.BuiltinSimulator` checks its grid), and the
moment maps of ``alchemy-obs infer`` (:func:`~alchemy_obs.infer.preprocess.line_integral`,
with the observation's beam and the line's redshift). The imaging products of one
observation, several planes on one grid, are an
:class:`~alchemy_obs.observe.imaging.ImageResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from radio_beam import Beam

__all__ = ["SkyImage"]


@dataclass(frozen=True)
class SkyImage:
    """A 2-D image or a cube on a celestial grid.

    Attributes
    ----------
    data : Quantity
        ``(ny, nx)`` or ``(n_channels, ny, nx)``; any unit (Jy per pixel for a sky model,
        Jy/beam Hz for a moment map); NaN where there are no data.
    wcs : astropy.wcs.WCS
        Celestial WCS of an image, celestial plus spectral axis of a cube (FITS axis order,
        reversed from numpy). The celestial reference value is the phase centre when the
        image is observed.
    beam : radio_beam.Beam or None
        Resolution of ``data``; ``None`` for a model sky (pixel resolution) or when unknown.
    frequencies : Quantity or None
        Channel-centre frequencies. Default, for a cube, those of the WCS's spectral axis; a
        sky model gives the exact list, which its WCS holds only to rounding (and an image
        its one observing frequency).
    redshift : float
        Redshift of the HI line the data sample or integrate; 0 for an image of no line.
    """

    data: u.Quantity
    wcs: WCS
    beam: Beam | None = None
    frequencies: u.Quantity | None = None
    redshift: float = 0.0

    def __post_init__(self) -> None:
        if self.data.ndim not in (2, 3):
            raise ValueError(f"sky data must be 2-D or 3-D, got shape {self.data.shape}")
        if self.wcs.naxis != self.data.ndim:
            raise ValueError(f"WCS has {self.wcs.naxis} axes but the data {self.data.ndim}")
        if self.data.ndim == 3:
            if self.wcs.spectral.naxis != 1:
                raise ValueError("a sky cube needs a spectral WCS axis")
            if self.frequencies is None:
                world = self.wcs.spectral.pixel_to_world(np.arange(self.data.shape[0]))
                # frozen: the default is filled in once, at construction
                object.__setattr__(self, "frequencies", u.Quantity(world.to(u.Hz)))

    @property
    def phase_centre(self) -> SkyCoord:
        """Celestial reference value of the WCS."""
        cel = self.wcs.celestial
        return SkyCoord(*cel.wcs.crval, unit=cel.wcs.cunit[0] or "deg",
                        frame=(cel.wcs.radesys or "icrs").lower())
