"""From an :class:`~alchemy_obs.infer.read.Observation` to the model's input grid and units.

Steps, each a function:

1. :func:`line_integral` -- moment-0 over observed frequency (``Jy/beam Hz``) with an optional
   noise-based mask, and the redshift of the line (flux-weighted mean frequency). Integrating
   over frequency makes every spectral axis type (``FREQ``, ``VRAD``, ``VOPT``, ``VELO``) the
   same computation; :mod:`alchemy_obs.physics.radio` then converts to a rest-frame velocity
   integral, a column density or a surface density without any velocity-convention factor.
2. :func:`to_domain` -- the map in the units of a model input domain.
3. :func:`resolve_distance`, :func:`galaxy_centre`, :func:`model_grid` -- where the model's
   ``npix x npix`` grid of ``pixel_kpc`` pixels lies on the sky.
4. :func:`~alchemy_obs.observe.resample.reproject_map` -- resampling between the sky grid and
   the model grid, by the rule the mock stage used to make the training inputs.
5. :func:`match_beam` -- the map smoothed to the model's training beam when the observation
   is sharper, refused when it is coarser than a tolerance.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np
from astropy import units as u
from astropy.cosmology import Cosmology, z_at_value
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from radio_beam import Beam, Beams
from scipy import ndimage

from alchemy_obs.infer.errors import InferError
from alchemy_obs.infer.read import Observation
from alchemy_obs.maps.domains import DOMAINS
from alchemy_obs.observe.mock import MOCK_DOMAINS
from alchemy_obs.observe.resample import sky_grid
from alchemy_obs.physics import radio
from alchemy_obs.physics.units import COSMOLOGY
from alchemy_obs.skyimage import SkyImage

__all__ = [
    "DOMAIN_UNITS",
    "robust_rms",
    "noise_mask",
    "line_integral",
    "to_domain",
    "training_beam",
    "resolve_distance",
    "galaxy_centre",
    "model_grid",
    "beam_size_kpc",
    "training_beam_kpc",
    "model_beam",
    "convolve_to",
    "match_beam",
]

log = logging.getLogger(__name__)

#: Units of the observation-like model input domains: the mock domains, and the HI
#: surface density of the maps.
DOMAIN_UNITS: dict[str, u.UnitBase] = {**MOCK_DOMAINS, "hi": DOMAINS["hi"].unit}

#: Below this systemic velocity a Hubble-flow distance is refused (peculiar velocities
#: of a few hundred km/s dominate).
MIN_HUBBLE_VELOCITY = 1000 * u.km / u.s
#: An observation's beam up to this many times the model's training beam is used unsmoothed,
#: with a warning; a coarser one is refused. 1.5 admits the demo's own mocks, whose disc-sized
#: fields give beams of 1.0-1.4 times the 2.4 kpc of the shipped model's training mocks.
BEAM_TOLERANCE = 1.5


def _mad_sigma(values: np.ndarray) -> float:
    """Gaussian-equivalent standard deviation from the median absolute deviation."""
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def robust_rms(values: np.ndarray) -> float:
    """Noise rms of data that hold positive emission, from their negative half.

    Thermal noise is symmetric about zero and HI emission is positive, so the negative values
    are noise alone: for Gaussian noise their median absolute value is 0.6745 sigma. Unlike
    the median absolute deviation of all values, this does not grow with the fraction of the
    cube the galaxy fills. Falls back to the MAD when fewer than 100 values are negative
    (noise-free or continuum-subtracted-to-positive data); 0 when there is no spread at all.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, NaN where blank; same unit as the result.

    Returns
    -------
    float
    """
    values = values[np.isfinite(values)]
    negative = values[values < 0]
    if negative.size >= 100:
        return float(1.4826 * np.median(-negative))
    return _mad_sigma(values) if values.size else 0.0


def _disk(radius: float) -> np.ndarray:
    """Boolean disk of ``radius`` pixels (at least the centre pixel)."""
    r = int(np.floor(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x**2 + y**2 <= max(radius, 0.0) ** 2


def noise_mask(
    data: np.ndarray, threshold: float = 4.0, smooth_pixels: float = 1.5, *, smooth_channels: int = 3,
    dilate_pixels: float = 0.0, dilate_channels: int = 0,
) -> np.ndarray:
    """Voxels of a cube that belong to emission detected in a smoothed copy (S/N mask).

    The usual dilated smooth-and-clip mask (as SoFiA's S+C finder builds): the cube is
    smoothed by a Gaussian of ``smooth_pixels`` (sigma, pixels) on the sky and a
    ``smooth_channels`` boxcar along the spectrum, which averages noise down while extended
    emission stays; voxels above ``threshold`` times the smoothed cube's noise
    (:func:`robust_rms`) are detections; detections (connected voxels) smaller than the
    smoothing kernel (:math:`2\\pi\\sigma^2` pixels times ``smooth_channels``) are noise
    peaks and dropped; the rest are grown by ``dilate_pixels`` on
    the sky and ``dilate_channels`` along the spectrum to take in the faint wings the clip
    cut off. The mask selects voxels of the *original* cube: no smoothed value is summed.

    Parameters
    ----------
    data : numpy.ndarray
        ``(nchan, ny, nx)`` cube, NaN where blank.
    threshold : float
        Clip level in units of the smoothed noise.
    smooth_pixels : float
        Spatial Gaussian sigma, pixels.
    smooth_channels : int
        Spectral boxcar width, channels.
    dilate_pixels : float
        Radius of the disk the detections are grown by, pixels (0: none).
    dilate_channels : int
        Channels added on either side of each detection (0: none).

    Returns
    -------
    numpy.ndarray of bool
        True where the voxel is kept.
    """
    filled = np.nan_to_num(data.astype(np.float32, copy=False), nan=0.0)
    smoothed = ndimage.gaussian_filter(
        filled, sigma=(0.0, smooth_pixels, smooth_pixels), mode="constant", truncate=3.0
    )
    if smooth_channels > 1:
        smoothed = ndimage.uniform_filter1d(smoothed, smooth_channels, axis=0, mode="constant")
    finite = np.isfinite(data)
    sample = smoothed[finite]
    if sample.size > 2_000_000:
        # The median of a regular subset is as good a noise estimate and much cheaper.
        sample = sample[:: sample.size // 1_000_000]
    sigma = robust_rms(sample)
    if not sigma > 0:
        return finite  # no noise to speak of: every unblanked voxel is signal
    keep = smoothed > threshold * sigma
    del smoothed
    # A noise peak that just clears the threshold does so over a speck much smaller than
    # the smoothing kernel, real emission over at least the kernel: dropping the specks
    # keeps the mask's false detections (each a positive bias once grown) rare.
    min_voxels = 2.0 * np.pi * smooth_pixels**2 * max(smooth_channels, 1)
    labels, n = ndimage.label(keep)
    if n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_voxels
        small[0] = False
        keep[small[labels]] = False
    del labels
    if dilate_pixels >= 1.0 and keep.any():
        keep = ndimage.binary_dilation(keep, structure=_disk(dilate_pixels)[None])
    if dilate_channels > 0 and keep.any():
        keep = ndimage.maximum_filter1d(keep, 2 * dilate_channels + 1, axis=0, mode="constant")
    return keep & finite


def _beam_pixels(beam: Beam | None, wcs: WCS) -> float | None:
    """Geometric-mean FWHM of ``beam`` in pixels of ``wcs`` (``None`` without a beam)."""
    if beam is None:
        return None
    pixel = float(np.sqrt(np.prod(np.abs(proj_plane_pixel_scales(wcs)))))  # deg
    return float(np.sqrt(beam.major * beam.minor).to_value(u.deg)) / pixel


_FWHM_PER_SIGMA = float(np.sqrt(8.0 * np.log(2.0)))
#: Default threshold of the moment-0 mask, in sigma of the smoothed cube.
MASK_SIGMA = 4.0
#: Spatial smoothing of the moment-0 mask, in beams (FWHM of the Gaussian kernel).
MASK_SMOOTH_BEAMS = 2.0
#: Spectral smoothing of the moment-0 mask, channels.
MASK_SMOOTH_CHANNELS = 3
#: Spatial smoothing, pixels (Gaussian sigma), when the beam is unknown.
_MASK_SMOOTH_PIXELS_NO_BEAM = 1.5


def line_integral(
    obs: Observation, mask_sigma: float | None = None, *,
    smooth_beams: float = MASK_SMOOTH_BEAMS, smooth_channels: int = MASK_SMOOTH_CHANNELS,
) -> SkyImage:
    """Moment-0 of a cube over observed frequency, or an image as it is.

    Parameters
    ----------
    obs : Observation
        The observation.
    mask_sigma : float, optional
        If given, only voxels of a cube selected by :func:`noise_mask` at this threshold
        (in sigma of the smoothed cube) are summed: the cube is smoothed by ``smooth_beams``
        beams on the sky and ``smooth_channels`` channels, clipped, and the detections are
        grown by one beam and one channel either side. ``None`` sums every unblanked voxel
        (unbiased, but the noise of every channel adds up, and its ripples look like
        emission to the model).
    smooth_beams : float
        FWHM of the mask's spatial smoothing kernel, in beams (geometric-mean FWHM; 1.5
        pixels sigma when the cube has no beam).
    smooth_channels : int
        Width of the mask's spectral boxcar, channels.

    Returns
    -------
    SkyImage
        For a cube: :math:`\\int S\\,d\\nu_{\\rm obs}` in Jy/beam Hz (or K Hz), with the line
        redshift from the flux-weighted mean frequency. For an image: its values and unit.
        Sky pixels with no unblanked data are NaN.
    """
    if obs.cube is None:
        return SkyImage(u.Quantity(obs.image, obs.unit), obs.celestial_wcs, beam=obs.beam)
    cube = obs.cube.with_spectral_unit(u.Hz, rest_value=obs.rest_frequency)
    data = cube.unmasked_data[:].value  # float32 or float64 as read; never copied whole
    unblanked = cube.mask.include()
    unit = cube.unit
    nchan = data.shape[0]
    scale = np.ones(nchan)
    per_channel_beams = hasattr(cube, "beams") and unit.is_equivalent(u.Jy / u.beam)
    if per_channel_beams:
        # Per-channel beams: Jy/beam is not additive across channels, K is. Convert each
        # channel with its own beam, integrate, and return to Jy/beam with the common beam.
        scale = radio.jy_per_beam_to_kelvin(
            1.0 * unit, cube.spectral_axis, cube.beams.major, cube.beams.minor
        ).to_value(u.K)
    if mask_sigma is None:
        keep = unblanked
    else:
        scaled = data * scale[:, None, None].astype(np.float32) if per_channel_beams else data
        beam_px = _beam_pixels(obs.beam, obs.celestial_wcs)
        if beam_px is None:
            smooth_px, grow_px = _MASK_SMOOTH_PIXELS_NO_BEAM, 2.0
        else:
            smooth_px, grow_px = smooth_beams * beam_px / _FWHM_PER_SIGMA, beam_px
        keep = noise_mask(scaled, mask_sigma, smooth_px, smooth_channels=smooth_channels,
                          dilate_pixels=grow_px, dilate_channels=1) & unblanked
        log.info("%s: moment-0 mask (%.1f sigma, smoothed %.1f px sigma x %d channels) "
                 "keeps %.1f%% of the voxels", obs.path, mask_sigma, smooth_px,
                 smooth_channels, 100.0 * keep.mean())
    freqs_hz = cube.spectral_axis.to_value(u.Hz)
    widths = np.abs(np.gradient(freqs_hz))
    # Channel by channel, in float64: no second full-size cube, temporaries stay in cache.
    mom0 = np.zeros(data.shape[1:])
    spectrum = np.zeros(nchan)
    for i in range(nchan):
        plane = np.where(keep[i], data[i].astype(np.float64) * scale[i], 0.0)
        mom0 += widths[i] * plane
        spectrum[i] = plane.sum()
    mom0[~unblanked.any(axis=0)] = np.nan
    spectrum = np.clip(spectrum, 0.0, None)
    if spectrum.sum() > 0:
        mean_freq = float(np.sum(spectrum * freqs_hz) / spectrum.sum())
    else:
        mean_freq = float(np.mean(freqs_hz))
    redshift = float(obs.rest_frequency.to_value(u.Hz) / mean_freq - 1.0)
    if per_channel_beams:
        beam = obs.beam
        centre = obs.rest_frequency / (1.0 + redshift)
        value = radio.kelvin_to_jy_per_beam(mom0 * u.K, centre, beam.major, beam.minor)
        return SkyImage(value * u.Hz, obs.celestial_wcs, beam=beam, redshift=redshift)
    return SkyImage(u.Quantity(mom0, unit * u.Hz), obs.celestial_wcs, beam=obs.beam, redshift=redshift)


# A beam only used to route K through Jy/beam: the beam solid angle cancels exactly.
_REFERENCE_BEAM = Beam(1 * u.arcsec)


def to_domain(
    sky: SkyImage, domain: str, path: str | os.PathLike = "", *, training_beam: Beam | None = None
) -> u.Quantity:
    """The map in the units of a model input domain.

    ``hi_mom0`` is in Jy/beam km/s *per the restoring beam of the training mocks*: a
    surface brightness per beam scales with the beam's solid angle, so an observation with
    beam :math:`\\Omega_{\\rm obs}` is put on the training beam :math:`\\Omega_{\\rm train}`
    by :math:`S\\,\\Omega_{\\rm train}/\\Omega_{\\rm obs}` (for a mock read back the two are
    equal). A brightness-temperature input needs no observation beam then. Without
    ``training_beam`` the values stay per the observation's beam (logged).

    Parameters
    ----------
    sky : SkyImage
        Output of :func:`line_integral`.
    domain : str
        One of :data:`DOMAIN_UNITS`.
    path : path-like
        File name used in error messages.
    training_beam : radio_beam.Beam, optional
        Restoring beam of the model's training mocks (for ``hi_mom0``).

    Returns
    -------
    Quantity
        ``(ny, nx)`` in ``DOMAIN_UNITS[domain]``.

    Raises
    ------
    InferError
        If the data cannot be expressed in that domain (e.g. a continuum image for an HI model,
        or Jy/beam needed without a beam).
    """
    if domain not in DOMAIN_UNITS:
        raise InferError(path, f"model input domain {domain!r} is not an observable "
                               f"(known: {', '.join(DOMAIN_UNITS)})")
    data = sky.data
    z = sky.redshift
    target = DOMAIN_UNITS[domain]
    if domain == "continuum":
        if not data.unit.is_equivalent(target):
            raise InferError(path, f"the model wants a continuum image in Jy/beam, got {data.unit}")
        return data.to(target)
    if data.unit.is_equivalent(u.Jy / u.beam) or data.unit.is_equivalent(u.K):
        raise InferError(path, f"a 2-D image in {data.unit} is continuum; the model wants {domain} "
                               "(give an HI cube or a moment-0 map)")
    beam = sky.beam
    if data.unit.is_equivalent(u.K * u.Hz) or data.unit.is_equivalent(u.K * u.km / u.s):
        # Route brightness temperature through Jy/beam: exact, and the beam cancels.
        ref = beam if beam is not None else _REFERENCE_BEAM
        per_unit = u.K * u.Hz if data.unit.is_equivalent(u.K * u.Hz) else u.K * u.km / u.s
        freq = radio.HI_REST_FREQUENCY / (1.0 + z)
        factor = radio.kelvin_to_jy_per_beam(1.0 * u.K, freq, ref.major, ref.minor)
        data = data.to(per_unit) / u.K * factor
        beam = ref
        if domain == "hi_mom0" and sky.beam is None and training_beam is None:
            raise InferError(path, "converting K to Jy/beam needs the beam; pass --beam")
    if domain == "hi_mom0" and (data.unit.is_equivalent(u.Jy / u.beam * u.Hz)
                                or data.unit.is_equivalent(u.Jy / u.beam * u.km / u.s)):
        if data.unit.is_equivalent(u.Jy / u.beam * u.Hz):
            data = radio.frequency_integral_to_velocity_integral(data, z)
        return _per_training_beam(data.to(target), beam, training_beam, path)
    if data.unit.is_equivalent(u.Jy / u.beam * u.Hz):
        nhi = radio.hi_column_density_from_flux(data, beam.major, beam.minor, z)
    elif data.unit.is_equivalent(u.Jy / u.beam * u.km / u.s):
        if beam is None:
            raise InferError(path, "converting Jy/beam km/s to column density needs the beam; "
                                   "pass --beam")
        nhi = radio.hi_column_density_from_flux(data, beam.major, beam.minor, z)
    elif data.unit.is_equivalent(u.cm**-2):
        nhi = data.to(u.cm**-2)
    elif data.unit.is_equivalent(u.Msun / u.pc**2):
        if domain == "hi":
            return data.to(target)
        raise InferError(path, f"cannot convert a surface density map to {domain}")
    else:
        raise InferError(path, f"cannot convert {data.unit} to {domain} ({target})")
    if domain == "hi_nhi":
        return nhi.to(target)
    if domain == "hi":
        return radio.hi_surface_density(nhi).to(target)
    raise InferError(path, f"cannot convert {data.unit} to {domain} ({target})")


def training_beam(card: dict) -> Beam | None:
    """Restoring beam of a model's training mocks, from its card's
    ``training_data.mock.beam_arcsec`` ([major, minor] FWHM, arcsec); ``None`` if absent."""
    fwhm = card.get("training_data", {}).get("mock", {}).get("beam_arcsec")
    if not fwhm:
        return None
    major, minor = (float(fwhm[0]), float(fwhm[-1]))
    return Beam(major=major * u.arcsec, minor=minor * u.arcsec)


def _per_training_beam(data: u.Quantity, beam: Beam | None, training_beam: Beam | None,
                       path: str | os.PathLike) -> u.Quantity:
    """A Jy/beam map per ``beam`` rescaled to ``training_beam`` (Omega_train / Omega_obs)."""
    if training_beam is None:
        log.warning("%s: hi_mom0 stays per the observation's beam: the model's training beam "
                    "is unknown", path)
        return data
    if beam is None:
        raise InferError(path, "putting a Jy/beam moment-0 on the model's training beam needs "
                               "the observation's beam; pass --beam")
    ratio = (radio.beam_solid_angle(training_beam.major, training_beam.minor)
             / radio.beam_solid_angle(beam.major, beam.minor)).to_value(u.one)
    return data * ratio


_DISTANCE_KEYS = ("DISTANCE", "DIST", "OBJ_DIST")
#: Card of a luminosity distance (written by the mocks beside ``DISTANCE``).
_LUMINOSITY_DISTANCE_KEY = "DISTLUM"


def _angular_from_luminosity(d_l: u.Quantity, header: fits.Header, redshift: float | None,
                             cosmology: Cosmology) -> u.Quantity:
    """:math:`D_A = D_L/(1+z)^2` with z from a ``REDSHIFT`` card, the line, or D_L itself."""
    z = header.get("REDSHIFT")
    if not isinstance(z, (int, float)) or not z > 0:
        z = redshift if redshift is not None and redshift > 0 else None
    if z is None:
        z = float(z_at_value(cosmology.luminosity_distance, d_l))
    return (d_l / (1.0 + z) ** 2).to(u.Mpc)


def resolve_distance(
    header: fits.Header,
    redshift: float | None,
    distance: u.Quantity | None = None,
    *,
    cosmology: Cosmology = COSMOLOGY,
    path: str | os.PathLike = "",
) -> tuple[u.Quantity, str]:
    """The angular-diameter distance to the galaxy and where it came from.

    The model grid is laid out with the angular-diameter distance :math:`D_A` (pixel angle =
    length / :math:`D_A`). Priority: ``distance`` (the ``--distance`` option, an
    angular-diameter distance), a ``DISTANCE``/``DIST`` header card (in Mpc unless its
    comment says kpc; an angular-diameter distance, as the mocks write it, unless its comment
    says "luminosity"), a ``DISTLUM`` luminosity-distance card, then the angular-diameter
    distance of the line's redshift in ``cosmology`` (the Hubble flow), refused below
    :data:`MIN_HUBBLE_VELOCITY` where peculiar velocities dominate. A luminosity distance
    :math:`D_L` becomes :math:`D_A = D_L/(1+z)^2` with z from a ``REDSHIFT`` card, else the
    line's redshift, else the redshift of :math:`D_L` in ``cosmology``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The observation's header.
    redshift : float or None
        Redshift of the HI line (``None`` for images).
    distance : Quantity, optional
        Explicit angular-diameter distance.
    cosmology : astropy.cosmology.Cosmology
        Cosmology for redshift-based distances (the package's
        :data:`~alchemy_obs.physics.units.COSMOLOGY`, Planck 2018).
    path : path-like
        File name for error messages.

    Returns
    -------
    distance : Quantity
        Angular-diameter distance in Mpc.
    source : str
        ``"option"``, ``"header DISTANCE"``, ``"header DISTLUM (luminosity)"`` or
        ``"redshift z=..."``.
    """
    if distance is not None:
        return u.Quantity(distance, u.Mpc).to(u.Mpc), "option"
    for key in (*_DISTANCE_KEYS, _LUMINOSITY_DISTANCE_KEY):
        value = header.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            comment = header.comments[key].lower()
            d = (value * (u.kpc if "kpc" in comment else u.Mpc)).to(u.Mpc)
            if key == _LUMINOSITY_DISTANCE_KEY or "luminosity" in comment:
                return (_angular_from_luminosity(d, header, redshift, cosmology),
                        f"header {key} (luminosity)")
            return d, f"header {key}"
    if redshift is None or not redshift > 0:
        raise InferError(path, "no distance: pass --distance (Mpc); the file has no DISTANCE card "
                               "and no spectral axis to take a redshift from")
    velocity = (redshift * 299792.458) * u.km / u.s
    if velocity < MIN_HUBBLE_VELOCITY:
        raise InferError(
            path,
            f"systemic velocity {velocity:.0f} is too small for a Hubble-flow distance "
            "(peculiar velocities dominate); pass --distance (Mpc)",
        )
    d = cosmology.angular_diameter_distance(redshift).to(u.Mpc)
    log.info("%s: distance %.1f from z=%.5f (%s)", path, d.value, redshift, cosmology.name)
    return d, f"redshift z={redshift:.7f} ({cosmology.name})"


def galaxy_centre(sky: SkyImage, how: str = "flux") -> tuple[float, float]:
    """Sky position (longitude, latitude in degrees, input frame) of the galaxy centre.

    Parameters
    ----------
    sky : SkyImage
        The integrated map on the input grid.
    how : {"flux", "header"}
        ``"flux"``: flux-weighted centre of the pixels more than 3 sigma (MAD) above the
        map's median (of all positive pixels if none; the reference position if none are
        positive); ``"header"``: the WCS reference value
        (``CRVAL``), where observers usually point at the galaxy.

    Returns
    -------
    tuple of float
    """
    if how not in ("flux", "header"):
        raise ValueError(f"centre must be 'flux' or 'header', got {how!r}")
    values = np.nan_to_num(sky.data.value, nan=0.0)
    finite = sky.data.value[np.isfinite(sky.data.value)]
    # Only significant emission: positive noise far out would pull the centre to the field's.
    floor = np.median(finite) + 3.0 * _mad_sigma(finite) if finite.size else 0.0
    weights = np.where(values > floor, values, 0.0)
    if not weights.sum() > 0:
        weights = np.clip(values, 0.0, None)
    if how == "header" or not weights.sum() > 0:
        lon, lat = sky.wcs.wcs.crval[:2]
        return float(lon), float(lat)
    y, x = np.indices(weights.shape)
    xc = float(np.sum(x * weights) / weights.sum())
    yc = float(np.sum(y * weights) / weights.sum())
    lon, lat = sky.wcs.pixel_to_world_values(xc, yc)
    return float(lon), float(lat)


def model_grid(
    centre: tuple[float, float], like: WCS, pixel_kpc: float, *, npix: int, distance: u.Quantity
) -> WCS:
    """The model's square grid on the sky, laid out as the training maps were.

    :func:`~alchemy_obs.observe.resample.sky_grid`: orthographic (``SIN``), north up,
    centred on ``centre``, in the frame of ``like``.

    Parameters
    ----------
    centre : tuple of float
        (longitude, latitude) in degrees, in the frame of ``like``.
    like : astropy.wcs.WCS
        The observation's celestial WCS (its frame, equinox and axis names are kept).
    pixel_kpc : float
        Physical pixel size of the model (model card).
    npix : int
        Pixels per side of the model.
    distance : Quantity
        Angular-diameter distance.

    Returns
    -------
    astropy.wcs.WCS
    """
    pixel = (pixel_kpc / distance.to_value(u.kpc)) * u.rad
    return sky_grid(centre, pixel, npix, like=like)


def beam_size_kpc(beam: Beam, distance: u.Quantity) -> u.Quantity:
    """Geometric-mean FWHM of ``beam`` at ``distance``, in kpc."""
    fwhm = np.sqrt(beam.major * beam.minor).to_value(u.rad)
    return (fwhm * distance).to(u.kpc)


def training_beam_kpc(card: dict) -> float | None:
    """FWHM of a model's training beam in kpc: ``beam_fwhm_kpc`` of the card, else the
    major axis of ``training_data.mock.beam_arcsec`` at ``training_data.mock.distance_mpc``;
    ``None`` if the card records neither."""
    if card.get("beam_fwhm_kpc"):
        return float(card["beam_fwhm_kpc"])
    mock = card.get("training_data", {}).get("mock", {})
    if mock.get("beam_arcsec") and mock.get("distance_mpc"):
        major = float(mock["beam_arcsec"][0]) * u.arcsec
        return float(major.to_value(u.rad) * mock["distance_mpc"] * 1e3)
    return None


def model_beam(training_kpc: float, distance: u.Quantity) -> Beam:
    """The model's training beam as seen at ``distance``: a circular Gaussian whose FWHM is
    ``training_kpc`` at the angular-diameter distance (the training mocks' beam orientation
    is that of a simulated sky, so only its size carries over)."""
    return Beam((training_kpc / distance.to_value(u.kpc)) * u.rad)


def _beam_kernel(beam: Beam, wcs: WCS) -> np.ndarray:
    """``beam`` sampled on the pixel grid of ``wcs`` (any ``CDELT``/``CD``/rotation), sum 1."""
    matrix = wcs.pixel_scale_matrix  # deg per pixel: (east, north) offsets of (dx, dy)
    if wcs.wcs.lng > wcs.wcs.lat:
        matrix = matrix[::-1]
    scale = np.min(np.abs(proj_plane_pixel_scales(wcs)))
    sigma = (beam.major / _FWHM_PER_SIGMA).to_value(u.deg)
    half = int(np.ceil(5.0 * sigma / scale)) + 1
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    east = matrix[0, 0] * dx + matrix[0, 1] * dy
    north = matrix[1, 0] * dx + matrix[1, 1] * dy
    # Intermediate longitude grows eastward whatever the sign of CDELT1.
    pa = beam.pa.to_value(u.rad)
    along = east * np.sin(pa) + north * np.cos(pa)
    across = east * np.cos(pa) - north * np.sin(pa)
    s_major = (beam.major / _FWHM_PER_SIGMA).to_value(u.deg)
    s_minor = (beam.minor / _FWHM_PER_SIGMA).to_value(u.deg)
    kernel = np.exp(-0.5 * ((along / s_major) ** 2 + (across / s_minor) ** 2))
    return kernel / kernel.sum()


def convolve_to(sky: SkyImage, beam: Beam, path: str | os.PathLike = "") -> SkyImage:
    """``sky`` smoothed from its beam to the larger ``beam``.

    The map is convolved with the Gaussian that takes one beam to the other
    (:meth:`radio_beam.Beam.deconvolve`), blank pixels counting as zero and staying blank.
    A map per beam (``Jy/beam``, ``Jy/beam km/s``...) is then multiplied by the ratio of the
    beam areas, so a point source keeps its peak in Jy/beam; a brightness temperature, a
    column or surface density is a per-area quantity and its peak drops by that ratio.

    Parameters
    ----------
    sky : SkyImage
        The map with its beam.
    beam : radio_beam.Beam
        The resolution wanted; must contain ``sky.beam``.
    path : path-like
        File name for error messages.

    Returns
    -------
    SkyImage
        The smoothed map, with ``beam``.
    """
    if sky.beam is None:
        raise InferError(path, "smoothing to the model's beam needs the observation's beam; "
                               "pass --beam")
    try:
        kernel_beam = beam.deconvolve(sky.beam, failure_returns_pointlike=True)
    except ValueError as exc:
        raise InferError(path, f"cannot smooth the beam {sky.beam} to {beam} ({exc})") from None
    if not kernel_beam.major > 0:
        return replace(sky, beam=beam)
    from scipy.signal import fftconvolve

    values = sky.data.value
    blank = ~np.isfinite(values)
    smoothed = fftconvolve(np.where(blank, 0.0, values), _beam_kernel(kernel_beam, sky.wcs),
                           mode="same")
    if u.beam in sky.data.unit.bases:
        smoothed *= (beam.sr / sky.beam.sr).to_value(u.one)
    smoothed[blank] = np.nan
    return replace(sky, data=u.Quantity(smoothed, sky.data.unit), beam=beam)


def match_beam(
    sky: SkyImage, training_kpc: float | None, distance: u.Quantity,
    *,
    path: str | os.PathLike = "", tolerance: float = BEAM_TOLERANCE,
) -> tuple[SkyImage, str]:
    """Bring ``sky`` to the resolution the model was trained at.

    The model's beam at the galaxy is :func:`model_beam`. A finer observation is smoothed
    to the smallest beam containing both (the model's beam, unless the observation's is
    more elongated) with :func:`convolve_to`; one coarser by up to ``tolerance`` (ratio of
    the geometric-mean FWHMs) is used as it is; a coarser one is refused: the model has
    never seen structure that blurred and cannot put the detail back.

    Parameters
    ----------
    sky : SkyImage
        The moment-0 (or image) on the observation's grid.
    training_kpc : float or None
        FWHM of the model's training beam, kpc (:func:`training_beam_kpc`); ``None``: unknown,
        the map is returned unchanged.
    distance : Quantity
        Angular-diameter distance of the galaxy.
    path : path-like
        File name for messages.
    tolerance : float
        Largest accepted ratio of the observation's beam to the model's (>= 1).

    Returns
    -------
    sky : SkyImage
        The map the model should see, with its beam.
    note : str
        What was done, for the output's ``HISTORY``.

    Raises
    ------
    InferError
        If the observation's beam is coarser than the model's by more than ``tolerance``.
    """
    if training_kpc is None:
        log.warning("%s: the model's training beam is unknown; the map is not matched to it",
                    path)
        return sky, "beam not matched (training beam unknown)"
    if sky.beam is None:
        log.warning("%s: the observation has no beam; the map is not matched to the model's",
                    path)
        return sky, "beam not matched (observation beam unknown)"
    target = model_beam(training_kpc, distance)
    size = beam_size_kpc(sky.beam, distance).to_value(u.kpc)
    ratio = size / training_kpc
    described = _describe(sky.beam)
    if ratio > tolerance:
        raise InferError(
            path,
            f"the beam ({described}, {size:.2f} kpc at {distance.to_value(u.Mpc):.3g} Mpc) is "
            f"{ratio:.2f}x coarser than the model's training beam ({training_kpc:.2f} kpc); "
            f"a model cannot restore resolution it never saw (tolerance "
            f"infer.beam_tolerance = {tolerance:g})",
        )
    if ratio >= 1.0:
        log.warning("%s: beam %.2f kpc is %.2fx the model's training beam (%.2f kpc; "
                    "tolerance %.2fx): used as it is, expect a smoother prediction",
                    path, size, ratio, training_kpc, tolerance)
        return sky, f"beam {described} used as it is ({ratio:.2f}x the training beam)"
    goal = Beams(beams=[sky.beam, target]).common_beam()
    smoothed = convolve_to(sky, goal, path)
    note = (f"input smoothed from {described} to {_describe(goal)}, the model's training "
            f"beam ({training_kpc:.3g} kpc) at {distance.to_value(u.Mpc):.4g} Mpc")
    log.info("%s: %s", path, note)
    return smoothed, note


def _describe(beam: Beam) -> str:
    return (f'{beam.major.to_value(u.arcsec):.3g}"x{beam.minor.to_value(u.arcsec):.3g}" '
            f"PA {beam.pa.to_value(u.deg):.0f} deg")
