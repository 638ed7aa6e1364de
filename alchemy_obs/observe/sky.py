"""Sky models with a WCS: a galaxy's HI line cube and radio continuum image.

The pieces are small objects composed by one function each, as in MARTINI (Oman et al. 2019):

* :class:`SkyPlacement` puts the galaxy on the sky: redshift or distance (astropy cosmology
  for the angular-diameter and luminosity distances), RA/Dec, peculiar velocity;
* :class:`SkyGrid` is the image grid (pixels and angular pixel size, or pixel size in kpc);
* :class:`SpectralAxis` is the channel grid, frequency (``FREQ``) or radio velocity (``VRAD``);
* :class:`LineModel` sets the line width (thermal plus turbulent) and its truncation;
* :class:`HISource` / :class:`ContinuumSource` are the per-particle inputs;
* :func:`hi_cube` and :func:`continuum_image` return a
  :class:`~alchemy_obs.skyimage.SkyImage` (Jy per pixel, with its :class:`~astropy.wcs.WCS`).

Geometry
--------
Particle coordinates are given in a view frame (``x' = R x``, see
:mod:`alchemy_obs.maps.geometry`): ``x'`` runs along increasing pixel column (West, since
``CDELT1 < 0``), ``y'`` along increasing row (North), and ``z'`` points towards the observer.
The image is therefore the same array as the physical map of that view (row = y, column = x)
and not mirrored on the sky. A particle's receding line-of-sight velocity is ``-v_z'`` plus
the Hubble flow ``H(z) (-z')`` across the galaxy's depth; its observed line frequency is
:math:`\\nu_0/[(1+z)(1+v_{\\rm pec}/c)(1+v_{\\rm los}/c)]`. Angles are :math:`x'/D_A`
(small-angle; exact for the SIN projection to :math:`(x'/D_A)^2`).

Flux
----
A particle of HI mass :math:`m` has the line flux :math:`\\int S d\\nu = m / (C D_L^2)`
(:func:`alchemy_obs.physics.radio.hi_line_flux`). It is spread over pixels with the SPH
kernel integrated over each pixel by the same code as the maps
(:func:`alchemy_obs.maps.deposit.pixel_weights`: corner differences of the cumulative kernel
for small kernels; the pixel-centre rule with its Laplacian correction, rescaled to the exact
mass inside the field, for large ones), and over channels with a Gaussian integrated over
each channel, :math:`\\Phi(\\cdot) - \\Phi(\\cdot)` of the normal CDF at the channel edges (cubic
Hermite interpolation of a table, accurate to 3.4e-13). Only channels within
``n_sigma`` of the line centre are touched; the Gaussian's tails beyond that are added to the
last touched channels so that a line inside the band keeps all its flux.

The cube is filled in one pass over the particles in raster order of their pixel: each
particle's pixel weights and channel fractions are computed once, and their outer product
is added to a channel-last buffer, so the innermost loop runs over contiguous channels and
vectorises. ``data`` is a (channel, y, x) view of that buffer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numba
import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM, z_at_value
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

from alchemy_obs.errors import AlchemyObsWarning
from alchemy_obs.maps.deposit import (FASTMATH, add_prolonged, coarser_grid, kernel_box_size,
                                      pixel_weights, polynomial_segments, pyramid_levels,
                                      weights_scratch)
from alchemy_obs.maps.kernels import kernel_tables
from alchemy_obs.maps.project import project_particles
from alchemy_obs.maps.smoothing import GAS_FACTOR, smoothing_length
from alchemy_obs.physics import gas as gas_physics
from alchemy_obs.physics import radio, units
from alchemy_obs.sim.galaxy import Galaxy
from alchemy_obs.skyimage import SkyImage

__all__ = [
    "BandTruncationWarning",
    "covering_band",
    "line_frequencies",
    "SkyPlacement",
    "SkyGrid",
    "SpectralAxis",
    "LineModel",
    "ContinuumModel",
    "HISource",
    "ContinuumSource",
    "hi_cube",
    "continuum_image",
    "thermal_sigma",
]

_C_KMS = const.c.to_value(u.km / u.s)
_U0 = np.uint64(0)


def thermal_sigma(temperature: u.Quantity) -> u.Quantity:
    """One-dimensional thermal velocity dispersion of hydrogen atoms, :math:`\\sqrt{kT/m_H}`.

    Parameters
    ----------
    temperature : Quantity
        Gas temperature.

    Returns
    -------
    Quantity
        km/s (9.08 km/s at 10^4 K).
    """
    return np.sqrt(const.k_B * temperature / (const.m_p + const.m_e)).to(u.km / u.s)


@dataclass(frozen=True)
class SkyPlacement:
    """Where a galaxy sits: redshift or distance, sky position and peculiar velocity.

    Give ``redshift`` (cosmological) or ``distance`` (luminosity distance, from which the
    redshift follows with ``cosmology``), not both.

    Parameters
    ----------
    redshift : float or None
        Cosmological redshift of the galaxy centre.
    distance : Quantity or None
        Luminosity distance.
    ra, dec : Quantity
        Position of the galaxy centre (ICRS).
    peculiar_velocity : Quantity
        Line-of-sight peculiar velocity of the galaxy as a whole (receding positive).
    cosmology : astropy.cosmology.FLRW
        Cosmology for distances and the Hubble rate; default the package's
        :data:`~alchemy_obs.physics.units.COSMOLOGY` (Planck 2018). Mocks of a simulated
        galaxy pass the simulation's own.
    """

    redshift: float | None = None
    distance: u.Quantity | None = None
    ra: u.Quantity = field(default_factory=lambda: 150.0 * u.deg)
    dec: u.Quantity = field(default_factory=lambda: -30.0 * u.deg)
    peculiar_velocity: u.Quantity = field(default_factory=lambda: 0.0 * u.km / u.s)
    cosmology: FlatLambdaCDM = field(default_factory=lambda: units.COSMOLOGY)

    def __post_init__(self) -> None:
        if (self.redshift is None) == (self.distance is None):
            raise ValueError("SkyPlacement needs exactly one of redshift or distance")
        if self.redshift is not None and self.redshift <= 0:
            raise ValueError(f"redshift must be > 0 (the galaxy needs a distance), got {self.redshift}")
        if self.distance is not None and self.distance <= 0 * u.Mpc:
            raise ValueError(f"distance must be > 0, got {self.distance}")

    @cached_property
    def z(self) -> float:
        """Cosmological redshift."""
        if self.redshift is not None:
            return float(self.redshift)
        return float(z_at_value(self.cosmology.luminosity_distance, self.distance.to(u.Mpc)))

    @property
    def luminosity_distance(self) -> u.Quantity:
        """Luminosity distance (Mpc)."""
        if self.distance is not None:
            return self.distance.to(u.Mpc)
        return self.cosmology.luminosity_distance(self.z).to(u.Mpc)

    @property
    def angular_diameter_distance(self) -> u.Quantity:
        """Angular-diameter distance, :math:`D_L/(1+z)^2` (Mpc)."""
        return (self.luminosity_distance / (1.0 + self.z) ** 2).to(u.Mpc)

    @property
    def observed_redshift(self) -> float:
        """Redshift including the peculiar velocity, :math:`(1+z)(1+v/c) - 1`."""
        return (1.0 + self.z) * (1.0 + self.peculiar_velocity.to_value(u.km / u.s) / _C_KMS) - 1

    @property
    def systemic_velocity(self) -> u.Quantity:
        """Optical-convention systemic velocity :math:`c z_{\\rm obs}` (km/s)."""
        return self.observed_redshift * _C_KMS * u.km / u.s

    @property
    def line_frequency(self) -> u.Quantity:
        """Observed frequency of the galaxy's systemic HI line (Hz)."""
        return radio.HI_REST_FREQUENCY / (1.0 + self.observed_redshift)

    @property
    def hubble_rate(self) -> u.Quantity:
        """:math:`H(z)` in km/s/kpc, for the Hubble flow across the galaxy."""
        return self.cosmology.H(self.z).to(u.km / u.s / u.kpc)

    def kpc_to_angle(self, length: u.Quantity) -> u.Quantity:
        """Angle subtended by a proper length at the galaxy (small-angle)."""
        return (length / self.angular_diameter_distance).decompose() * u.rad

    def angle_to_kpc(self, angle: u.Quantity) -> u.Quantity:
        """Proper length subtended by an angle at the galaxy (small-angle)."""
        return (angle.to_value(u.rad) * self.angular_diameter_distance).to(u.kpc)


@dataclass(frozen=True)
class SkyGrid:
    """A square image grid centred on the galaxy.

    Parameters
    ----------
    npix : int
        Pixels per side.
    pixel_size : Quantity
        Angular pixel size, or a proper length (kpc) converted with the placement.
    """

    npix: int
    pixel_size: u.Quantity

    def __post_init__(self) -> None:
        if self.npix < 2:
            raise ValueError(f"npix must be >= 2, got {self.npix}")
        if not (self.pixel_size.unit.is_equivalent(u.deg) or self.pixel_size.unit.is_equivalent(u.kpc)):
            raise u.UnitsError(f"pixel_size must be an angle or a length, got {self.pixel_size.unit}")

    def pixel_angle(self, placement: SkyPlacement) -> u.Quantity:
        """Angular pixel size (arcsec)."""
        if self.pixel_size.unit.is_equivalent(u.deg):
            return self.pixel_size.to(u.arcsec)
        return placement.kpc_to_angle(self.pixel_size).to(u.arcsec)

    def pixel_kpc(self, placement: SkyPlacement) -> u.Quantity:
        """Pixel size as a proper length at the galaxy (kpc)."""
        if self.pixel_size.unit.is_equivalent(u.kpc):
            return self.pixel_size.to(u.kpc)
        return placement.angle_to_kpc(self.pixel_size)

    def celestial_wcs(self, placement: SkyPlacement) -> WCS:
        """SIN-projected celestial WCS with the galaxy centre between the two middle pixels."""
        w = WCS(naxis=2)
        cdelt = self.pixel_angle(placement).to_value(u.deg)
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.crval = [placement.ra.to_value(u.deg), placement.dec.to_value(u.deg)]
        w.wcs.crpix = [0.5 * self.npix + 0.5, 0.5 * self.npix + 0.5]
        w.wcs.cdelt = [-cdelt, cdelt]
        w.wcs.radesys = "ICRS"
        w.wcs.equinox = 2000.0
        return w


@dataclass(frozen=True)
class SpectralAxis:
    """Channels of a cube, uniform in frequency (and hence in radio velocity).

    Parameters
    ----------
    n_channels : int
        Number of channels.
    channel_width : Quantity
        Channel width in Hz, or in km/s of radio velocity (:math:`\\Delta\\nu = \\nu_0\\Delta v/c`).
    centre : Quantity or None
        Frequency or radio velocity of the band centre; ``None`` centres the band on the
        galaxy's systemic line frequency.
    ctype : {"FREQ", "VRAD"}
        Spectral axis of the WCS: frequency increasing with channel, or radio velocity
        (m/s, rest frequency 1420405751.768 Hz) increasing with channel.
    """

    n_channels: int
    channel_width: u.Quantity
    centre: u.Quantity | None = None
    ctype: str = "FREQ"

    def __post_init__(self) -> None:
        if self.n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {self.n_channels}")
        if self.ctype not in ("FREQ", "VRAD"):
            raise ValueError(f"ctype must be 'FREQ' or 'VRAD', got {self.ctype!r}")
        if self.channel_width.value <= 0:
            raise ValueError(f"channel_width must be > 0, got {self.channel_width}")

    def _width_hz(self) -> float:
        w = self.channel_width
        if w.unit.is_equivalent(u.Hz):
            return w.to_value(u.Hz)
        return (radio.HI_REST_FREQUENCY * w / const.c).to_value(u.Hz)

    def _centre_hz(self, placement: SkyPlacement) -> float:
        if self.centre is None:
            return placement.line_frequency.to_value(u.Hz)
        if self.centre.unit.is_equivalent(u.Hz):
            return self.centre.to_value(u.Hz)
        return radio.radio_velocity_to_frequency(self.centre).to_value(u.Hz)

    def frequency_step(self) -> u.Quantity:
        """Signed frequency step per channel (negative for ``VRAD``)."""
        step = self._width_hz()
        return (step if self.ctype == "FREQ" else -step) * u.Hz

    def frequencies(self, placement: SkyPlacement) -> u.Quantity:
        """Channel-centre frequencies, in channel order."""
        k = np.arange(self.n_channels) - 0.5 * (self.n_channels - 1)
        return (self._centre_hz(placement) + k * self.frequency_step().value) * u.Hz

    def spectral_wcs_keywords(self, placement: SkyPlacement) -> dict:
        """CTYPE/CUNIT/CRVAL/CDELT/CRPIX of the spectral axis."""
        nu = self.frequencies(placement)
        if self.ctype == "FREQ":
            return dict(ctype="FREQ", cunit="Hz", crval=nu[0].value, cdelt=self.frequency_step().value)
        v = radio.frequency_to_radio_velocity(nu).to_value(u.m / u.s)
        cdelt = v[1] - v[0] if self.n_channels > 1 else (
            -self.frequency_step() * const.c / radio.HI_REST_FREQUENCY).to_value(u.m / u.s)
        return dict(ctype="VRAD", cunit="m/s", crval=v[0], cdelt=cdelt)


@dataclass(frozen=True)
class LineModel:
    """Gaussian line profile of each particle.

    Parameters
    ----------
    turbulent_sigma : Quantity
        Non-thermal velocity dispersion added in quadrature to the thermal one.
    n_sigma : float
        Channels farther than this many sigma from the line centre are not touched.
    """

    turbulent_sigma: u.Quantity = field(default_factory=lambda: 0.0 * u.km / u.s)
    n_sigma: float = 4.0

    def __post_init__(self) -> None:
        if self.n_sigma <= 0:
            raise ValueError(f"n_sigma must be > 0, got {self.n_sigma}")

    def sigma(self, temperature: u.Quantity) -> u.Quantity:
        """Total velocity dispersion :math:`\\sqrt{kT/m_H + \\sigma_{\\rm turb}^2}`."""
        return np.sqrt(thermal_sigma(temperature) ** 2 + self.turbulent_sigma**2).to(u.km / u.s)


@dataclass(frozen=True)
class ContinuumModel:
    """Radio continuum emission of star formation.

    Parameters
    ----------
    frequency : Quantity
        Observed frequency.
    bandwidth : Quantity
        Bandwidth of the continuum observation (sets its radiometer noise).
    diffusion_length : Quantity
        Gaussian sigma (proper length) of the cosmic-ray electron diffusion kernel that
        smooths the image; 0 disables it. The default 0.3 kpc (FWHM 0.7 kpc) lies in the
        range of cosmic-ray electron diffusion lengths, a few hundred pc, that Murphy et al.
        (2006, ApJ 651, L111; 2008, ApJ 678, 828) find by smoothing infrared images into
        radio continuum ones.
        The free-free part is smoothed too, a simplification (it traces HII regions).
    electron_temperature : Quantity
        HII-region electron temperature of the free-free part.
    synchrotron_index : float
        Synchrotron spectral index.
    """

    frequency: u.Quantity = field(default_factory=lambda: 1.4 * u.GHz)
    bandwidth: u.Quantity = field(default_factory=lambda: 100 * u.MHz)
    diffusion_length: u.Quantity = field(default_factory=lambda: 0.3 * u.kpc)
    electron_temperature: u.Quantity = field(default_factory=lambda: 1e4 * u.K)
    synchrotron_index: float = -0.8


@dataclass(frozen=True)
class HISource:
    """HI-emitting particles in a view frame (see the module notes on geometry).

    Parameters
    ----------
    positions : Quantity, shape (N, 3)
        Proper positions relative to the galaxy centre.
    velocities : Quantity, shape (N, 3)
        Peculiar velocities relative to the galaxy's bulk motion.
    hi_mass : Quantity, shape (N,)
        HI mass of each particle.
    smoothing_length : Quantity, shape (N,)
        Kernel support radius (zero for point particles).
    temperature : Quantity, shape (N,)
        Gas temperature (thermal line width).
    """

    positions: u.Quantity
    velocities: u.Quantity
    hi_mass: u.Quantity
    smoothing_length: u.Quantity
    temperature: u.Quantity

    def __post_init__(self) -> None:
        n = self.hi_mass.shape[0]
        for name in ("positions", "velocities"):
            if getattr(self, name).shape != (n, 3):
                raise ValueError(f"HISource.{name} must have shape ({n}, 3)")
        for name in ("smoothing_length", "temperature"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"HISource.{name} must have shape ({n},)")
        # Non-finite positions would reach the deposit as garbage pixel indices.
        for name in ("positions", "velocities", "hi_mass", "smoothing_length", "temperature"):
            if not np.all(np.isfinite(getattr(self, name).value)):
                raise ValueError(f"HISource.{name} has non-finite values")
        for name in ("hi_mass", "smoothing_length", "temperature"):
            if np.any(getattr(self, name).value < 0):
                raise ValueError(f"HISource.{name} must be >= 0")

    @classmethod
    def from_galaxy(
        cls,
        galaxy: Galaxy,
        rotation: np.ndarray | None = None,
        star_forming_temperature: u.Quantity | None = 1e4 * u.K,
        *,
        gas_factor: float = GAS_FACTOR,
        uvb: str = "FG09",
        column: str = "jeans",
    ) -> HISource:
        """HI source of a galaxy's gas seen through a view rotation.

        HI masses (VN18: Rahmati et al. 2013 self-shielding plus the KMT molecular
        correction, :func:`alchemy_obs.physics.gas.gas_hi_mass`) and support radii
        (:func:`alchemy_obs.maps.smoothing.smoothing_length`) are those of the physical maps,
        so the mock and the ``hi`` map of a view describe the same gas.

        Parameters
        ----------
        galaxy : Galaxy
            Centred galaxy in physical units.
        rotation : ndarray, shape (3, 3), optional
            View rotation ``x' = R x``; identity by default.
        star_forming_temperature : Quantity or None
            Temperature that sets the thermal line width of star-forming cells. Their
            internal energy is the effective one of the two-phase model (10^4-10^5 K, lines of
            10-30 km/s), not that of the cold clouds holding their HI; 10^4 K (9 km/s) matches
            the HI velocity dispersion of discs. ``None`` keeps the effective temperature.
        gas_factor, uvb, column
            Smoothing-length factor, UV background and KMT column of the maps
            (``MapsConfig.gas_hsml_factor``, ``uvb``, ``kmt_column``).

        Returns
        -------
        HISource
        """
        gas = galaxy.gas
        h = smoothing_length(gas, gas_factor=gas_factor)
        m_hi = gas_physics.gas_hi_mass(gas, galaxy.redshift, uvb=uvb, column=column).to_value(u.Msun)
        if star_forming_temperature is None:
            temperature = gas_physics.gas_temperature(gas).to_value(u.K)
        else:
            temperature = gas_physics.gas_temperature(
                gas, star_forming="cold",
                cold_temperature=star_forming_temperature.to_value(u.K)).to_value(u.K)
        if rotation is not None:
            gas = gas.rotated(np.asarray(rotation, dtype=np.float64))
        keep = m_hi > 0
        return cls(
            positions=gas.coordinates[keep] * u.kpc,
            velocities=gas.velocities[keep] * u.km / u.s,
            hi_mass=m_hi[keep] * u.Msun,
            smoothing_length=h[keep] * u.kpc,
            temperature=temperature[keep] * u.K,
        )


@dataclass(frozen=True)
class ContinuumSource:
    """Star-forming particles in a view frame.

    Parameters
    ----------
    positions : Quantity, shape (N, 3)
        Proper positions relative to the galaxy centre.
    sfr : Quantity, shape (N,)
        Star formation rate of each particle.
    smoothing_length : Quantity, shape (N,)
        Kernel support radius.
    """

    positions: u.Quantity
    sfr: u.Quantity
    smoothing_length: u.Quantity

    def __post_init__(self) -> None:
        n = self.sfr.shape[0]
        if self.positions.shape != (n, 3):
            raise ValueError(f"ContinuumSource.positions must have shape ({n}, 3)")
        if self.smoothing_length.shape != (n,):
            raise ValueError(f"ContinuumSource.smoothing_length must have shape ({n},)")

    @classmethod
    def from_galaxy(cls, galaxy: Galaxy, rotation: np.ndarray | None = None, *,
                    gas_factor: float = GAS_FACTOR) -> ContinuumSource:
        """Star-forming gas of a galaxy seen through a view rotation.

        Parameters
        ----------
        galaxy : Galaxy
            Centred galaxy with gas star formation rates.
        rotation : ndarray, shape (3, 3), optional
            View rotation ``x' = R x``.
        gas_factor : float
            Smoothing-length factor of the maps (``MapsConfig.gas_hsml_factor``).

        Returns
        -------
        ContinuumSource
        """
        gas = galaxy.gas
        if gas.sfr is None:
            raise ValueError(f"{galaxy.source}: gas has no StarFormationRate; no continuum model")
        h = smoothing_length(gas, gas_factor=gas_factor)
        if rotation is not None:
            gas = gas.rotated(np.asarray(rotation, dtype=np.float64))
        keep = gas.sfr > 0
        return cls(
            positions=gas.coordinates[keep] * u.kpc,
            sfr=gas.sfr[keep] * u.Msun / u.yr,
            smoothing_length=h[keep] * u.kpc,
        )


#: Nodes per sigma and half-range (sigmas) of the Gaussian CDF table; beyond the range the
#: CDF is 0 or 1 to 6e-16.
_CDF_SCALE = 256
_CDF_RANGE = 8.0


@lru_cache(maxsize=1)
def _gaussian_cdf_table() -> np.ndarray:
    """Rows (Phi, phi / _CDF_SCALE) of the standard normal at t = -_CDF_RANGE + k / _CDF_SCALE."""
    t = np.arange(-_CDF_RANGE * _CDF_SCALE, _CDF_RANGE * _CDF_SCALE + 1) / _CDF_SCALE
    table = np.stack([ndtr(t), np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi) / _CDF_SCALE], 1)
    table.setflags(write=False)
    return table


@numba.njit(cache=True, inline="always")
def _cdf_at(table, t):
    """Standard normal CDF at ``t`` by cubic Hermite interpolation of ``table``.

    The error is below (1/256)^4 / 384 max|Phi''''| = 3.4e-13 (erf costs three times as
    much); Phi(0) = 1/2 exactly (a node).
    """
    n = table.shape[0] - 1
    u = min(max((t + _CDF_RANGE) * _CDF_SCALE, 0.0), float(n))
    k = min(np.uint64(u), np.uint64(n - 1))
    s = u - k
    s2 = s * s
    s3 = s2 * s
    k1 = k + np.uint64(1)
    return ((2.0 * s3 - 3.0 * s2 + 1.0) * table[k, 0] + (s3 - 2.0 * s2 + s) * table[k, 1]
            + (3.0 * s2 - 2.0 * s3) * table[k1, 0] + (s3 - s2) * table[k1, 1])


@numba.njit(cache=True)
def _raster_order(x, y, npix):
    """Particle indices by the pixel holding them, row after row (a stable counting sort).

    Particles off the grid (or at non-finite positions) go to a border one pixel wide.
    """
    n = x.shape[0]
    side = npix + 2
    key = np.empty(n, np.int64)
    start = np.zeros(side * side + 1, np.int64)
    for i in range(n):
        ix = 0 if not x[i] >= 0.0 else (npix + 1 if x[i] >= npix else int(x[i]) + 1)
        iy = 0 if not y[i] >= 0.0 else (npix + 1 if y[i] >= npix else int(y[i]) + 1)
        key[i] = iy * side + ix
        start[key[i] + 1] += 1
    for b in range(side * side):
        start[b + 1] += start[b]
    order = np.empty(n, np.int64)
    for i in range(n):
        order[start[key[i]]] = i
        start[key[i]] += 1
    return order


@numba.njit(cache=True)
def _cube_scratch(hmax, npix, nchan, poly):
    """Work arrays of :func:`_deposit_cube`: polynomial segments, pixel weights, a spectrum."""
    return (polynomial_segments(poly),
            weights_scratch(npix, npix, kernel_box_size(hmax, hmax, npix, npix), poly),
            np.empty(nchan))


# Without the runtime's reference counting (no arrays are made here; the work arrays come
# from _cube_scratch): numba counts references to the ~20 arrays that pixel_weights is
# handed on every call, and cannot prune the counts across its branches, which cost about
# 100 ns per particle, as much as all the weights of a kernel inside one pixel
# (116 -> 3 ns per such particle, 404 -> 318 ns at 4.5 pixels).
@numba.njit(cache=True, fastmath=FASTMATH, _nrt=False)
def _deposit_cube(x, y, h, flux, pchan, schan, nchan, n_sigma, npix, packed, poly, quad, marg,
                  cdf_table, segments, scratch, spec, flat):
    """Add each particle's flux to ``flat``, a flat (ny, nx, nchan) cube, over pixels and channels.

    ``pchan`` is the line centre in channel coordinates (channel k spans [k, k + 1)),
    ``schan`` its Gaussian sigma in channels; ``flux`` is in the cube's unit times channels.
    Pixel weights are those of the maps (:func:`alchemy_obs.maps.deposit.pixel_weights`);
    ``segments``, ``scratch`` and ``spec`` come from :func:`_cube_scratch`.
    """
    seg_scale, seg_offset, seg_top = segments
    box32 = scratch[-3]
    box64 = scratch[-1]
    for i in range(x.shape[0]):
        p = pchan[i]
        s = schan[i]
        klo = int(math.floor(p - n_sigma * s))
        khi = int(math.floor(p + n_sigma * s))
        klo_c = max(klo, 0)
        khi_c = min(khi, nchan - 1)
        if klo_c > khi_c:
            continue
        x0, y0, nx, ny, scale, wide = pixel_weights(
            x[i], y[i], h[i], h[i], npix, npix, packed, poly, quad, marg, seg_scale, seg_offset,
            seg_top, scratch)
        if nx == 0:
            continue
        # Channel fractions are differences of the Gaussian CDF at the channel edges, each
        # edge evaluated once; where the window was cut by n_sigma (not by the band edge)
        # the tail is kept in the end channel.
        nk = khi_c - klo_c + 1
        inv = 1.0 / s
        for k in range(nk):
            spec[k] = _cdf_at(cdf_table, (klo_c + k + 1 - p) * inv)
        if khi_c == khi:
            spec[nk - 1] = 1.0
        for k in range(nk - 1, 0, -1):
            spec[k] = (spec[k] - spec[k - 1]) * flux[i]
        first = 0.0 if klo_c == klo else _cdf_at(cdf_table, (klo_c - p) * inv)
        spec[0] = (spec[0] - first) * flux[i]
        m = 0
        for jy in range(ny):
            row = ((y0 + jy) * npix + x0) * nchan + klo_c
            for jx in range(nx):
                w = scale * box32[m] if wide else box64[m]
                m += 1
                # Pixels of the box beyond the kernel (zero weight, 40 to 55 % of them) are
                # added too: a test skipping them is mispredicted twice per row, which cost
                # more than their channels (0.119 -> 0.107 s for the benchmark's cube).
                # Unsigned indices into the flat cube (no wraparound check): the loop over
                # contiguous channels vectorises.
                at = np.uint64(row + jx * nchan)
                for k in range(_U0, np.uint64(nk)):
                    flat[at + k] += w * spec[k]


#: Prolonging a pyramid level of a cube costs about this many times the direct deposit of
#: one particle in one pixel and channel, per pixel and channel of the cube. Measured on
#: ``benchmarks/mocks.py``'s set-up: 0.09 s to prolong its 256^2 x 128 cube (11 ns per
#: pixel and channel) against 0.12 s to deposit its 1e5 particles' 2.9e8 pixels times
#: channels directly (0.4 ns each, pixel weights included).
_PROLONG_COST = 25.0


def _pyramid_cube(x, y, h, flux, pchan, schan, npix, n_channels, n_sigma, tables):
    """Channel-last cube (npix, npix, n_channels) of the particles (pixel units).

    Kernels wider than :data:`~alchemy_obs.maps.deposit.H_LEVEL` pixels go through the
    image pyramid of the maps when that saves work: each is deposited on the level where it
    spans 5 to 10 pixels and the levels are prolonged channel by channel
    (:func:`~alchemy_obs.maps.deposit.prolong`, which keeps each coarse pixel's flux in
    every channel). Prolonging costs in proportion to the whole cube, pixels times channels,
    while a map's is one plane; so when the wide kernels' own pixels times channels are
    fewer than :data:`_PROLONG_COST` times the cube's, every kernel is integrated exactly
    over the cube's pixels instead (for ``benchmarks/mocks.py``: 3 % of the particles,
    0.01 s to deposit directly against 0.09 s to prolong).
    """
    level = pyramid_levels(h, h)
    top = int(level.max()) if level.size else 0
    if top:
        wide = level > 0
        reach = n_sigma * schan[wide]
        channels = np.maximum(np.minimum(np.floor(pchan[wide] + reach), n_channels - 1)
                              - np.maximum(np.floor(pchan[wide] - reach), 0) + 1, 0)
        side = np.minimum(2 * h[wide] + 2, npix + 2)  # a kernel's box, clipped to the map
        if (side**2 * channels).sum() < _PROLONG_COST * npix**2 * n_channels:
            top = 0

    def deposit(sel, origin, f, n):
        cube = np.zeros((n, n, n_channels))
        hs = h[sel] / f
        _deposit_cube((x[sel] - origin) / f, (y[sel] - origin) / f, hs, flux[sel],
                      pchan[sel], schan[sel], n_channels, n_sigma, n, tables.packed,
                      tables.poly, tables.quadrant, tables.marginal, _gaussian_cdf_table(),
                      *_cube_scratch(float(hs.max(initial=0.0)), n, n_channels, tables.poly),
                      cube.reshape(-1))
        return cube

    if top == 0:
        return deposit(slice(None), 0.0, 1.0, npix)
    levels = [(deposit(level == 0, 0.0, 1.0, npix)[None], (0, 0))]
    bounds = (0, npix, 0, npix)
    for lev in range(1, top + 1):
        bounds = coarser_grid(bounds, lev)
        n = (bounds[1] - bounds[0]) // 2**lev
        levels.append((deposit(level == lev, float(bounds[0]), float(2**lev), n)[None],
                       (bounds[0], bounds[2])))
    total, total_at = levels[-1]
    for lev in range(top - 1, -1, -1):
        own, at = levels[lev]
        total, total_at = add_prolonged(own, at, total, total_at, lev), at
    return total[0]


def _pixel_coordinates(positions: u.Quantity, h: u.Quantity, grid: SkyGrid, placement: SkyPlacement):
    """Positions and support radii in pixel-edge units (pixel j spans [j, j + 1))."""
    pix = grid.pixel_kpc(placement).to_value(u.kpc)
    xyz = positions.to_value(u.kpc)
    x = np.ascontiguousarray(xyz[:, 0] / pix + 0.5 * grid.npix)
    y = np.ascontiguousarray(xyz[:, 1] / pix + 0.5 * grid.npix)
    hh = np.ascontiguousarray(h.to_value(u.kpc) / pix)
    return x, y, hh


#: A fixed band that loses more than this fraction of the HI flux warns.
BAND_LOSS_WARNING = 1e-3


class BandTruncationWarning(AlchemyObsWarning):
    """Part of the HI line falls outside a mock cube's fixed band (the message gives how much)."""


def line_frequencies(source: HISource, placement: SkyPlacement,
                     line: LineModel = LineModel()) -> tuple[np.ndarray, np.ndarray]:
    """Observed line-centre frequency and line width (Hz) of each particle.

    The line-of-sight velocity is the particle's peculiar velocity plus the Hubble flow across
    the galaxy's depth; the galaxy's own redshift (cosmological and peculiar) shifts it.
    """
    xyz = source.positions.to_value(u.kpc)
    vel = source.velocities.to_value(u.km / u.s)
    # Receding velocity: z' points at the observer; Hubble flow across the galaxy's depth.
    v_los = -vel[:, 2] + placement.hubble_rate.to_value(u.km / u.s / u.kpc) * (-xyz[:, 2])
    one_plus_z = 1.0 + placement.observed_redshift
    nu = radio.HI_REST_FREQUENCY.to_value(u.Hz) / (one_plus_z * (1.0 + v_los / _C_KMS))
    sigma_v = line.sigma(source.temperature).to_value(u.km / u.s)
    return nu, nu * sigma_v / _C_KMS


def _fraction_in_band(nu, sigma_nu, flux, freqs, step) -> float:
    """Flux-weighted fraction of the particles' Gaussian lines between the band edges."""
    lo = min(freqs[0], freqs[-1]) - 0.5 * abs(step)
    hi = max(freqs[0], freqs[-1]) + 0.5 * abs(step)
    total = flux.sum()
    if not total > 0:
        return 1.0
    # Only lines within _CDF_RANGE sigma of an edge, or beyond one, lose flux (more than
    # 6e-16); the normal CDF is taken for those alone (0.4 % of the particles of
    # benchmarks/mocks.py: 4 ms less per cube).
    reach = _CDF_RANGE * sigma_nu
    cut = np.flatnonzero((nu - reach <= lo) | (nu + reach >= hi))
    scale = np.maximum(sigma_nu[cut], 1e-300)
    inside = ndtr((hi - nu[cut]) / scale) - ndtr((lo - nu[cut]) / scale)
    return float(1.0 - (flux[cut] * (1.0 - inside)).sum() / total)


def covering_band(source: HISource, placement: SkyPlacement, channel_width: u.Quantity,
                  line: LineModel = LineModel(), *, ctype: str = "FREQ",
                  multiple: int = 16) -> SpectralAxis:
    """The channels, centred on the systemic line, that hold every particle's line.

    The band reaches, on both sides of systemic and plus one channel, the line centre plus
    ``line.n_sigma`` of the line width of every particle but the fastest holding 1e-4 of
    the HI, and its channel count is rounded up to a multiple of
    ``multiple``: views of similar galaxies then share a band (and a cached fast-mode set-up).

    Parameters
    ----------
    source : HISource
    placement : SkyPlacement
    channel_width : Quantity
        In Hz or km/s of radio velocity, as for :class:`SpectralAxis`.
    line : LineModel
    ctype : {"FREQ", "VRAD"}
    multiple : int

    Returns
    -------
    SpectralAxis
    """
    step = SpectralAxis(1, channel_width, ctype=ctype)._width_hz()
    nu, sigma_nu = line_frequencies(source, placement, line)
    centre = placement.line_frequency.to_value(u.Hz)
    reach = np.abs(nu - centre) + line.n_sigma * sigma_nu
    # The reach of all but 1e-4 of the HI: a few hot, fast particles with a trace of HI
    # would otherwise triple the band.
    order = np.argsort(reach)
    weight = np.cumsum(source.hi_mass.value[order])
    k = np.searchsorted(weight, (1.0 - 0.1 * BAND_LOSS_WARNING) * weight[-1]) if len(weight) else 0
    reach = float(reach[order][min(k, len(order) - 1)]) if len(order) else 0.0
    n = 2 * int(np.ceil(reach / step + 1.0))
    n = multiple * int(np.ceil(n / multiple))
    return SpectralAxis(n, channel_width, ctype=ctype)


def hi_cube(
    source: HISource,
    placement: SkyPlacement,
    grid: SkyGrid,
    spectral: SpectralAxis,
    line: LineModel = LineModel(),
    kernel: str = "cubic_spline",
) -> SkyImage:
    """HI line sky cube in Jy per pixel per channel.

    Parameters
    ----------
    source : HISource
        Particles in the view frame.
    placement : SkyPlacement
        Distance/redshift, sky position and systemic motion.
    grid : SkyGrid
        Image grid.
    spectral : SpectralAxis
        Channels.
    line : LineModel
        Line width model.
    kernel : {"cubic_spline", "wendland_c2"}
        SPH kernel integrated over pixels (the support radius is the smoothing length).

    Returns
    -------
    SkyImage
        ``data`` of shape (n_channels, npix, npix): the mean flux density of each pixel over
        each channel. Summing ``data * |channel width|`` gives the line flux of the particles
        inside the cube, :math:`M_{\\rm HI}/(C D_L^2)` (see :func:`~alchemy_obs.physics.radio.hi_mass`).
    """
    d_l = placement.luminosity_distance
    nu, sigma_nu = line_frequencies(source, placement, line)

    freqs = spectral.frequencies(placement).to_value(u.Hz)
    step = spectral.frequency_step().to_value(u.Hz)
    edge0 = freqs[0] - 0.5 * step
    pchan = np.ascontiguousarray((nu - edge0) / step)
    schan = np.ascontiguousarray(sigma_nu / abs(step))

    line_flux = radio.hi_line_flux(source.hi_mass, d_l).to_value(u.Jy * u.Hz)
    flux = np.ascontiguousarray(line_flux / abs(step))  # Jy per channel-fraction
    lost = 1.0 - _fraction_in_band(nu, sigma_nu, line_flux, freqs, step)
    if lost > BAND_LOSS_WARNING:
        warnings.warn(f"{100 * lost:.1f} % of the HI flux falls outside the band of "
                      f"{spectral.n_channels} channels; leave mock.n_channels unset for a band "
                      "that holds the whole line", BandTruncationWarning, stacklevel=2)

    x, y, h = _pixel_coordinates(source.positions, source.smoothing_length, grid, placement)
    # Visiting particles in raster order of their pixel keeps the cube rows they update in
    # cache (1.5 times faster than a random order for a large cube).
    order = _raster_order(x, y, grid.npix)
    x, y, h, flux, pchan, schan = (a[order] for a in (x, y, h, flux, pchan, schan))
    work = _pyramid_cube(x, y, h, flux, pchan, schan, grid.npix, spectral.n_channels,
                         float(line.n_sigma), kernel_tables(kernel))
    # A (n_channels, ny, nx) view of the channel-last work array: no 100 MB copy.
    data = u.Quantity(np.moveaxis(work, -1, 0), u.Jy, copy=False)

    w = WCS(naxis=3)
    cel = grid.celestial_wcs(placement)
    spec = spectral.spectral_wcs_keywords(placement)
    w.wcs.ctype = [*cel.wcs.ctype, spec["ctype"]]
    w.wcs.cunit = [*cel.wcs.cunit, spec["cunit"]]
    w.wcs.crval = [*cel.wcs.crval, spec["crval"]]
    w.wcs.crpix = [*cel.wcs.crpix, 1.0]
    w.wcs.cdelt = [*cel.wcs.cdelt, spec["cdelt"]]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.wcs.restfrq = radio.HI_REST_FREQUENCY.to_value(u.Hz)
    w.wcs.specsys = "BARYCENT"
    w.wcs.set()
    return SkyImage(data=data, wcs=w, frequencies=freqs * u.Hz, redshift=placement.observed_redshift)


def continuum_image(
    source: ContinuumSource,
    placement: SkyPlacement,
    grid: SkyGrid,
    model: ContinuumModel = ContinuumModel(),
    kernel: str = "cubic_spline",
) -> SkyImage:
    """Radio continuum sky image from star formation, in Jy per pixel.

    Each particle's SFR becomes a flux density at the observed frequency with the
    Murphy et al. (2011) calibration and the K-correction
    (:func:`alchemy_obs.physics.radio.sfr_to_flux_density`), is spread over pixels with the
    SPH kernel (:func:`alchemy_obs.maps.project.project_particles`), and the image is smoothed
    by the cosmic-ray diffusion kernel of ``model``.

    Parameters
    ----------
    source : ContinuumSource
        Star-forming particles in the view frame.
    placement : SkyPlacement
        Distance/redshift and sky position.
    grid : SkyGrid
        Image grid.
    model : ContinuumModel
        Frequency, diffusion length and emission parameters.
    kernel : {"cubic_spline", "wendland_c2"}
        SPH kernel.

    Returns
    -------
    SkyImage
        ``data`` (npix, npix) in Jy per pixel; the sum is the total flux density inside the grid.
    """
    s = radio.sfr_to_flux_density(
        source.sfr, model.frequency, placement.luminosity_distance, placement.z,
        electron_temperature=model.electron_temperature, synchrotron_index=model.synchrotron_index,
    ).to_value(u.Jy)
    x, y, h = _pixel_coordinates(source.positions, source.smoothing_length, grid, placement)
    keep = s > 0
    image = project_particles(x[keep], y[keep], h[keep], s[keep], (0, grid.npix, 0, grid.npix),
                              grid.npix, kernel)
    sigma_pix = (model.diffusion_length / grid.pixel_kpc(placement)).to_value(u.one)
    if sigma_pix > 0:
        image = gaussian_filter(image, sigma_pix, mode="constant", truncate=5.0)
    w = grid.celestial_wcs(placement)
    return SkyImage(data=image * u.Jy, wcs=w, frequencies=u.Quantity([model.frequency.to(u.Hz)]))
