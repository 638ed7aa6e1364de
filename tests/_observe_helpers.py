"""Small skies and observations shared by the observe tests."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS


def sky_wcs(n: int, cell_arcsec: float, ra: float = 150.0, dec: float = -30.0,
            crpix: tuple[float, float] | None = None, freqs_hz=None) -> WCS:
    """A SIN WCS with the phase centre at pixel (n/2, n/2) (0-based), optional FREQ axis."""
    naxis = 2 if freqs_hz is None else 3
    w = WCS(naxis=naxis)
    ctype = ["RA---SIN", "DEC--SIN"]
    crval = [ra, dec]
    cdelt = [-cell_arcsec / 3600, cell_arcsec / 3600]
    cr = list(crpix) if crpix is not None else [n / 2 + 1, n / 2 + 1]
    cunit = ["deg", "deg"]
    if freqs_hz is not None:
        f = np.asarray(freqs_hz, float)
        ctype.append("FREQ")
        crval.append(f[0])
        cdelt.append(f[1] - f[0] if len(f) > 1 else 1e6)
        cr.append(1.0)
        cunit.append("Hz")
    w.wcs.ctype, w.wcs.crval, w.wcs.cdelt, w.wcs.crpix, w.wcs.cunit = ctype, crval, cdelt, cr, cunit
    return w


def direction_cosines(wcs: WCS, x, y):
    """(l, m, n) of pixels from their world coordinates (independent of the engine)."""
    c = wcs.celestial.pixel_to_world(x, y)
    ra0, dec0 = np.deg2rad(wcs.celestial.wcs.crval)
    dra = c.ra.rad - ra0
    dec = c.dec.rad
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    return l, m, np.sqrt(1 - l * l - m * m)


def asymmetric_source(n: int) -> np.ndarray:
    """An L-shaped, lopsided source (Jy/pixel): no symmetry under any flip or rotation."""
    img = np.zeros((n, n))
    c = n // 2
    img[c - 6:c + 8, c - 4:c - 1] = 0.02          # vertical bar
    img[c - 6:c - 3, c - 4:c + 10] = 0.015        # foot towards +x
    img[c + 5, c + 6] = 0.3                       # a knot off the axes
    yy, xx = np.mgrid[:n, :n]
    img += 0.05 * np.exp(-((xx - c - 9) ** 2 / 8 + (yy - c + 9) ** 2 / 3))
    return img
