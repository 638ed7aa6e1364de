"""Interferometer simulators: sky image or cube with a WCS -> visibilities.

Every backend is an object with one method, ``observe(sky, observation)``, returning
:class:`Visibilities` (:class:`BuiltinSimulator`, the Karabo backend) or an image
(:class:`~alchemy_obs.observe.fast.ImagePlaneSimulator`); see :class:`Simulator`.

Conventions
-----------
* The sky is a :class:`~alchemy_obs.skyimage.SkyImage` with ``data`` in Jy per pixel
  (per channel for a cube, :func:`sky_planes`) on a celestial WCS whose reference value is the phase centre, with RA increasing to the left
  (CDELT1 < 0), square pixels and no rotation; SIN is exact, TAN differs from SIN by
  ``theta^3/2`` (1e-9 rad at 5 arcmin), which is ignored.
* A pixel (l, m) holding S Jy contributes ``S exp(-2 pi i (u l + v m + w (n - 1)))`` to the
  visibility at (u, v, w) in wavelengths, with l towards east (increasing RA), m north and
  n = sqrt(1 - l^2 - m^2) (Thompson, Moran & Swenson 2017, eq. 3.7). Jy per pixel already
  contains the 1/n of the solid angle, so no division by n. ducc0's wgridder evaluates this
  sum exactly to ``epsilon`` with w-gridding; its own w sign is the opposite, hence
  ``flip_w=True`` (tested against a direct Fourier sum with an asymmetric source).
* Primary beam: each pixel is multiplied by the baseline's beam (geometric mean of the two
  dishes' Gaussian power patterns) before degridding, once per dish-type pair.
* Thermal noise: independent Gaussian noise of standard deviation
  :meth:`~alchemy_obs.observe.telescope.Observation.sigma` in the real and in the imaginary
  part of every visibility.
* Rows are flagged where the source is below the SKA-MID elevation limit (15 deg) or where
  ``|u|`` or ``|v|`` exceeds half the sampling rate of the sky grid, 1/(2 cell): a pixelated sky holds
  no information there and ducc0 would return its periodic alias.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from astropy import units as u
from astropy.wcs import WCS
from ducc0.wgridder.experimental import dirty2vis, vis2dirty

from alchemy_obs.observe.telescope import Observation
from alchemy_obs.skyimage import SkyImage

__all__ = [
    "sky_planes",
    "Visibilities",
    "Simulator",
    "BuiltinSimulator",
    "GridGeometry",
    "degrid",
    "grid",
    "MIN_ELEVATION",
    "visibility_flags",
]

log = logging.getLogger(__name__)

#: Lowest elevation at which SKA-MID dishes observe.
MIN_ELEVATION = 15 * u.deg

_C = 299792458.0


@dataclass(frozen=True)
class GridGeometry:
    """A square SIN image grid around the phase centre, as ducc0 needs it.

    Parameters
    ----------
    nx, ny : int
        Image size (FITS order: ``data[y, x]``); even and >= 32 (ducc0).
    cell : float
        Pixel size in radians of direction cosine.
    ref_x, ref_y : float
        0-based pixel of the phase centre (CRPIX - 1).
    """

    nx: int
    ny: int
    cell: float
    ref_x: float
    ref_y: float

    def __post_init__(self) -> None:
        if self.nx % 2 or self.ny % 2 or min(self.nx, self.ny) < 32:
            raise ValueError(f"image sides must be even and >= 32 for ducc0, got {self.ny}x{self.nx}")

    @classmethod
    def from_wcs(cls, wcs: WCS, shape: tuple[int, int]) -> GridGeometry:
        """Geometry of a celestial WCS with image ``shape`` (ny, nx); checks orientation."""
        cel = wcs.celestial
        cdelt = cel.wcs.get_cdelt() * np.diag(cel.wcs.get_pc())
        if not np.allclose(cel.wcs.get_pc() - np.diag(np.diag(cel.wcs.get_pc())), 0):
            raise ValueError("sky WCS must not be rotated (PC/CD must be diagonal)")
        if not (cdelt[0] < 0 < cdelt[1]) or not np.isclose(-cdelt[0], cdelt[1], rtol=1e-6):
            raise ValueError(
                f"sky WCS needs square pixels with RA increasing to the left "
                f"(CDELT1 = -CDELT2 < 0), got CDELT = {cdelt}"
            )
        proj = {c[-3:] for c in cel.wcs.ctype}
        if proj - {"SIN", "TAN"}:
            raise ValueError(f"sky WCS projection must be SIN or TAN, got {cel.wcs.ctype}")
        unit = u.Unit(cel.wcs.cunit[1] or "deg")
        cell = (cdelt[1] * unit).to_value(u.rad)
        ny, nx = shape
        return cls(nx, ny, float(cell), float(cel.wcs.crpix[0] - 1), float(cel.wcs.crpix[1] - 1))

    @classmethod
    def from_sky(cls, sky: SkyImage) -> GridGeometry:
        """Geometry of the grid of a :class:`~alchemy_obs.skyimage.SkyImage`."""
        return cls.from_wcs(sky.wcs, sky.data.shape[-2:])

    @property
    def centre(self) -> tuple[float, float]:
        """ducc0 ``center_x, center_y`` of the transposed, l-ordered image (radian).

        ducc0 puts pixel (a, b) at l = (a - nx/2) cell + center_x, m = (b - ny/2) cell +
        center_y. The FITS image is stored transposed with its x axis reversed (l grows to
        the east, to the left), so a = nx - 1 - x, b = y.
        """
        return (self.ref_x + 1 - self.nx / 2) * self.cell, (self.ny / 2 - self.ref_y) * self.cell

    def to_ducc(self, image: np.ndarray) -> np.ndarray:
        """FITS-ordered ``image[y, x]`` -> ducc0 ``dirty[a, b]`` (contiguous)."""
        return np.ascontiguousarray(image[:, ::-1].T)

    def from_ducc(self, dirty: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_ducc`."""
        return np.ascontiguousarray(dirty.T[:, ::-1])

    def offsets(self) -> np.ndarray:
        """Angular distance (rad) of every pixel from the phase centre, FITS order (ny, nx)."""
        x = (np.arange(self.nx) - self.ref_x) * self.cell
        y = (np.arange(self.ny) - self.ref_y) * self.cell
        r = np.hypot(x[None, :], y[:, None])
        return np.arcsin(np.clip(r, 0, 1))

    def uv_limit(self) -> float:
        """Largest ``|u|`` or ``|v|`` (wavelengths) the grid samples: 1 / (2 cell)."""
        return 0.5 / self.cell


def degrid(
    uvw: np.ndarray,
    freq: np.ndarray,
    image: np.ndarray,
    *,
    geometry: GridGeometry,
    epsilon: float = 1e-7,
    nthreads: int = 1,
) -> np.ndarray:
    """Visibilities (nrow, nchan) of a FITS-ordered image in Jy/pixel, exact to ``epsilon``.

    ``uvw`` in metres (nrow, 3); ``freq`` in Hz (nchan,); every channel sees the same image.
    """
    if len(uvw) == 0:
        return np.zeros((0, len(freq)), np.complex128)
    cx, cy = geometry.centre
    return dirty2vis(
        uvw=np.ascontiguousarray(uvw, np.float64), freq=np.asarray(freq, np.float64),
        dirty=geometry.to_ducc(np.asarray(image, np.float64)),
        pixsize_x=geometry.cell, pixsize_y=geometry.cell, center_x=cx, center_y=cy,
        epsilon=epsilon, do_wgridding=True, flip_w=True, divide_by_n=False, nthreads=nthreads,
    )


def grid(
    uvw: np.ndarray,
    freq: np.ndarray,
    vis: np.ndarray,
    *,
    weights: np.ndarray,
    geometry: GridGeometry,
    epsilon: float = 1e-7,
    nthreads: int = 1,
) -> np.ndarray:
    """Adjoint of :func:`degrid`: ``sum_k w_k Re(V_k exp(+2 pi i ...))`` as a FITS-ordered image.

    Not normalised: divide by the sum of weights for Jy/beam.
    """
    cx, cy = geometry.centre
    if len(uvw) == 0:
        return np.zeros((geometry.ny, geometry.nx))
    dirty = vis2dirty(
        uvw=np.ascontiguousarray(uvw, np.float64), freq=np.asarray(freq, np.float64),
        vis=np.ascontiguousarray(vis, np.complex128), wgt=np.ascontiguousarray(weights, np.float64),
        npix_x=geometry.nx, npix_y=geometry.ny, pixsize_x=geometry.cell, pixsize_y=geometry.cell,
        center_x=cx, center_y=cy, epsilon=epsilon, do_wgridding=True, flip_w=True,
        divide_by_n=False, nthreads=nthreads,
    )
    return geometry.from_ducc(dirty)


def sky_planes(sky: SkyImage) -> np.ndarray:
    """The planes of a sky to observe, float64 (nchan, ny, nx) Jy per pixel (nchan = 1 for
    an image); refuses data in other units."""
    data = sky.data
    if data.unit.is_equivalent(u.Jy / u.pix):
        values = data.to_value(u.Jy / u.pix)
    elif data.unit.is_equivalent(u.Jy):
        values = data.to_value(u.Jy)
    else:
        raise ValueError(f"sky data must be in Jy per pixel, got unit {data.unit!r}")
    values = values.astype(np.float64, copy=False)
    return values[None] if values.ndim == 2 else values


@dataclass
class Visibilities:
    """Calibrated Stokes I visibilities of one observation.

    Attributes
    ----------
    uvw : ndarray (nrow, 3)
        Baseline coordinates in metres (antenna2 - antenna1).
    antenna1, antenna2 : ndarray (nrow,)
    time : ndarray (nrow,)
        Dump centres, MJD in seconds (UTC), as the MeasurementSet stores them.
    frequencies : Quantity (nchan,)
    data : ndarray (nrow, nchan) complex128
        Jy.
    sigma : ndarray (nrow, nchan)
        Noise per real and per imaginary part (Jy).
    flag : ndarray (nrow, nchan) bool
        True where the visibility must not be used.
    observation : Observation
    """

    uvw: np.ndarray
    antenna1: np.ndarray
    antenna2: np.ndarray
    time: np.ndarray
    frequencies: u.Quantity
    data: np.ndarray
    sigma: np.ndarray
    flag: np.ndarray
    observation: Observation

    @property
    def freq_hz(self) -> np.ndarray:
        """Channel frequencies as float64 Hz."""
        return self.frequencies.to_value(u.Hz).astype(np.float64)

    @property
    def n_rows(self) -> int:
        return len(self.uvw)

    def replace_data(self, data: np.ndarray) -> Visibilities:
        """A copy sharing everything but ``data``."""
        return Visibilities(self.uvw, self.antenna1, self.antenna2, self.time, self.frequencies,
                            data, self.sigma, self.flag, self.observation)


@runtime_checkable
class Simulator(Protocol):
    """What every telescope simulator backend provides."""

    def observe(self, sky: SkyImage, observation: Observation):
        """Observe ``sky``; returns :class:`Visibilities` or an image result."""


def visibility_flags(observation: Observation, geometry: GridGeometry) -> np.ndarray:
    """Flags (nrow, nchan): below the elevation limit or beyond the sky grid's uv range."""
    uvw = observation.uvw()
    freq = observation.frequencies.to_value(u.Hz)
    _, _, t = observation.rows()
    low = (observation.elevations() < MIN_ELEVATION)[t]
    uv_lambda = np.maximum(np.abs(uvw[:, 0]), np.abs(uvw[:, 1]))[:, None] * freq[None, :] / _C
    flag = low[:, None] | (uv_lambda >= geometry.uv_limit())
    if flag.all():
        raise ValueError(
            "every visibility is flagged: the phase centre never rises above "
            f"{MIN_ELEVATION} or the sky pixels are too coarse for the baselines"
        )
    return flag


def _check_pointing(sky: SkyImage, geometry: GridGeometry, observation: Observation) -> None:
    sep = sky.phase_centre.separation(observation.phase_centre)
    if sep > 0.01 * abs(geometry.cell) * u.rad:
        raise ValueError(
            f"sky WCS reference {sky.phase_centre.to_string('hmsdms')} is not the observation's "
            f"phase centre {observation.phase_centre.to_string('hmsdms')} ({sep.to(u.arcsec):.3f} apart)"
        )


def _check_channels(sky: SkyImage, observation: Observation) -> None:
    nchan = sky.data.shape[0]
    if sky.data.ndim == 3 and nchan != len(observation.frequencies):
        raise ValueError(
            f"sky cube has {nchan} channels but the observation {len(observation.frequencies)}"
        )


class BuiltinSimulator:
    """The default engine: exact degridding with ducc0 plus radiometer noise.

    Parameters
    ----------
    epsilon : float
        Relative accuracy of ducc0's wgridder.
    noise : bool
        Add thermal noise.
    seed : int or numpy.random.Generator, optional
        Noise generator.
    nthreads : int
        Threads for ducc0.

    Notes
    -----
    A 2-D sky is observed in every channel of the observation (flat spectrum within the
    band); a cube must have one plane per observed channel.
    """

    def __init__(self, epsilon: float = 1e-7, noise: bool = True, seed=None, *, nthreads: int = 1):
        self.epsilon = epsilon
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.nthreads = nthreads

    def predict(self, sky: SkyImage, observation: Observation) -> Visibilities:
        """Noise-free visibilities of the primary-beam-attenuated sky."""
        cube = sky_planes(sky)
        geo = GridGeometry.from_sky(sky)
        _check_pointing(sky, geo, observation)
        _check_channels(sky, observation)
        uvw = observation.uvw()
        freq = observation.frequencies.to_value(u.Hz)
        flag = visibility_flags(observation, geo)
        data = np.zeros((len(uvw), len(freq)), np.complex128)
        offsets = geo.offsets() * u.rad
        for c, f in enumerate(freq):
            plane = cube[c] if len(cube) > 1 else cube[0]
            for pair, rows in observation.baseline_groups().items():
                rows = rows[~flag[rows, c]]
                beam = observation.baseline_beam(offsets, f * u.Hz, pair)
                data[rows, c] = degrid(uvw[rows], freq[c:c + 1], plane * beam, geometry=geo,
                                       epsilon=self.epsilon, nthreads=self.nthreads)[:, 0]
        a1, a2, t = observation.rows()
        mjd_s = observation.times.utc.mjd * 86400.0
        sigma = np.broadcast_to(observation.sigma(), data.shape).copy()
        return Visibilities(uvw, a1, a2, mjd_s[t], observation.frequencies, data, sigma, flag,
                            observation)

    def add_noise(self, vis: Visibilities) -> Visibilities:
        """A copy of ``vis`` with thermal noise added to the unflagged visibilities."""
        shape = vis.data.shape
        noise = vis.sigma * (self.rng.standard_normal(shape) + 1j * self.rng.standard_normal(shape))
        return vis.replace_data(np.where(vis.flag, 0, vis.data + noise))

    def observe(self, sky: SkyImage, observation: Observation) -> Visibilities:
        """Visibilities of ``sky`` seen by ``observation``, with noise if enabled."""
        vis = self.predict(sky, observation)
        return self.add_noise(vis) if self.noise else vis
