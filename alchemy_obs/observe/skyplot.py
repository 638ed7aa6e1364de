"""Sky panels for figures: RA/Dec axes, the restoring beam and a physical scale bar.

Every figure of the package that shows an image of the sky (mock observations, ``infer``
results) draws it on WCSAxes with these, so the figures can go on a slide as they are.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from radio_beam import Beam

__all__ = ["label_sky_axes", "draw_beam", "draw_scale_bar", "nice_length"]


def label_sky_axes(ax) -> None:
    """``RA``/``Dec`` (or ``lon``/``lat``) axis labels of a WCSAxes panel."""
    ctype = [c.upper() for c in list(ax.wcs.wcs.ctype)[:2]]
    ax.coords[0].set_axislabel("RA (ICRS)" if ctype[0].startswith("RA") else "lon")
    ax.coords[1].set_axislabel("Dec (ICRS)" if ctype[1].startswith("DEC") else "lat")


def draw_beam(ax, beam: Beam, color: str = "cyan") -> None:
    """The restoring beam as an ellipse in the lower left corner."""
    from astropy.visualization.wcsaxes import add_beam

    add_beam(ax, major=beam.major, minor=beam.minor, angle=beam.pa, frame=False,
             corner="bottom left", color=color, fill=False, linewidth=1.2)


def nice_length(target: u.Quantity) -> u.Quantity:
    """The largest 1, 2 or 5 x 10^n not above ``target`` (for a scale bar)."""
    value = target.value
    exponent = np.floor(np.log10(value))
    mantissa = max(m for m in (1.0, 2.0, 5.0, 10.0) if m <= value / 10**exponent)
    return mantissa * 10**exponent * target.unit


def draw_scale_bar(ax, distance: u.Quantity, fraction: float = 0.25, *, color: str = "white") -> None:
    """A bar of a round number of kpc (about ``fraction`` of the panel) at ``distance``.

    Parameters
    ----------
    ax : WCSAxes
    distance : Quantity
        Angular-diameter distance, which turns angles into proper lengths.
    fraction : float
        Rough length of the bar as a fraction of the panel width.
    color : str
    """
    from astropy.visualization.wcsaxes import add_scalebar

    nx = ax.get_xlim()[1] - ax.get_xlim()[0]
    pixel = np.sqrt(abs(np.linalg.det(ax.wcs.celestial.pixel_scale_matrix))) * u.deg
    width_kpc = (nx * pixel).to_value(u.rad) * distance.to(u.kpc)
    length = nice_length(fraction * width_kpc)
    angle = (length / distance.to(u.kpc)).decompose() * u.rad
    add_scalebar(ax, angle.to(u.deg), label=f"{length.value:g} kpc", corner="bottom right",
                 color=color, frame=False)
