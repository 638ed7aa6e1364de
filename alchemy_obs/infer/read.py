"""Reading real radio FITS cubes and images into one :class:`Observation`.

Real headers are messy. This module accepts, and tests, the situations listed in
``docs/fits_handling.rst``: any spectral axis type (``FREQ``, ``VRAD``, ``VOPT``, ``VELO-HEL``,
``FELO-HEL``, ``VELO-LSR``...), degenerate ``STOKES`` and other length-1 axes, legacy
projections such as ``NCP``, ``EPOCH`` without ``EQUINOX``, integer images with ``BLANK``
(and float images whose writer put a ``BLANK`` card on them anyway), beams in the header, in a
``BEAMS`` table (one per channel) or in AIPS history, and the common spellings of
``Jy/beam`` and ``K``. Everything else fails with an :class:`~alchemy_obs.infer.errors.InferError`
that names the file and the problem in one line.

Cubes become a :class:`spectral_cube.SpectralCube` (or
:class:`~spectral_cube.VaryingResolutionSpectralCube`), images a plain array with their
celestial :class:`~astropy.wcs.WCS`.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from radio_beam import Beam, Beams
from radio_beam.beam import NoBeamException
from spectral_cube import BooleanArrayMask, SpectralCube, VaryingResolutionSpectralCube

from alchemy_obs.infer.errors import InferError
from alchemy_obs.physics.radio import HI_REST_FREQUENCY

__all__ = [
    "Observation",
    "read_observation",
    "parse_bunit",
    "parse_beam",
    "identify_line",
    "celestial_header",
]

log = logging.getLogger(__name__)

#: Rest frequencies of lines a radio cube is likely to hold instead of HI (for error messages).
KNOWN_LINES: dict[str, u.Quantity] = {
    "HI 21 cm": HI_REST_FREQUENCY,
    "OH 1612 MHz": 1612.231 * u.MHz,
    "OH 1665 MHz": 1665.4018 * u.MHz,
    "OH 1667 MHz": 1667.359 * u.MHz,
    "OH 1720 MHz": 1720.530 * u.MHz,
    "H2O 22 GHz maser": 22.23508 * u.GHz,
    "NH3(1,1)": 23.6944955 * u.GHz,
    "HCN(1-0)": 88.6316023 * u.GHz,
    "HCO+(1-0)": 89.1885247 * u.GHz,
    "CS(2-1)": 97.980953 * u.GHz,
    "C18O(1-0)": 109.7821734 * u.GHz,
    "13CO(1-0)": 110.2013543 * u.GHz,
    "CO(1-0)": 115.2712018 * u.GHz,
    "CO(2-1)": 230.538 * u.GHz,
    "CO(3-2)": 345.7959899 * u.GHz,
    "[CII] 158 um": 1900.5369 * u.GHz,
}

#: Relative tolerance for calling a rest frequency "this line" (a few writers round it).
_LINE_TOLERANCE = 1e-4

#: Physical kinds of data the stage understands, by the unit they are measured in.
UNIT_KINDS: dict[str, u.UnitBase] = {
    "surface_brightness": u.Jy / u.beam,
    "brightness_temperature": u.K,
    "flux_velocity": u.Jy / u.beam * u.km / u.s,
    "temperature_velocity": u.K * u.km / u.s,
    "column_density": u.cm**-2,
    "surface_density": u.Msun / u.pc**2,
}

_PREFIXES = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6}
_BASES = {
    "JY/BEAM": u.Jy / u.beam,
    "JY/BM": u.Jy / u.beam,
    "JY/B": u.Jy / u.beam,
    "JYBEAM-1": u.Jy / u.beam,
    "JY.BEAM-1": u.Jy / u.beam,
    "JYBEAM^-1": u.Jy / u.beam,
    "K": u.K,
    "KELVIN": u.K,
}
_VELOCITY_SUFFIXES = {
    "": u.one,
    "KM/S": u.km / u.s,
    "KMS-1": u.km / u.s,
    "KM.S-1": u.km / u.s,
    "KM/SEC": u.km / u.s,
    "M/S": u.m / u.s,
    "MS-1": u.m / u.s,
    "M.S-1": u.m / u.s,
}


def parse_bunit(text: str) -> u.UnitBase | None:
    """Parse a ``BUNIT`` value leniently and check it against the kinds the stage knows.

    Accepts the spellings found in archives (``Jy/beam``, ``JY/BEAM``, ``Jy/Beam``,
    ``JY/BEAM `` with padding, ``Jy beam-1``, ``mJy/beam``, ``K``, ``Kelvin``, ``Jy/beam.km/s``,
    ``JY/BEAM*M/S``, ``K km/s``, ``cm-2``, ``Msun/pc2``) and anything astropy parses to a unit
    equivalent to one of :data:`UNIT_KINDS`.

    Parameters
    ----------
    text : str
        The ``BUNIT`` card value.

    Returns
    -------
    astropy.units.UnitBase or None
        The unit, or ``None`` when it is empty, unknown or of a kind the stage cannot use.
    """
    raw = text.strip()
    if not raw:
        return None
    if re.fullmatch(r"(?i)km\s*(/\s*s(ec)?|\.?\s*s-1)", raw):
        return None  # a velocity field (moment 1), not "K m/s"
    key = re.sub(r"\s+", "", raw).replace("*", ".")
    upper = key.upper()
    for prefix, factor in _PREFIXES.items():
        if prefix and not key.lower().startswith(prefix):
            continue
        rest_upper = upper[len(prefix):]
        for base, base_unit in sorted(_BASES.items(), key=lambda kv: -len(kv[0])):
            if not rest_upper.startswith(base):
                continue
            suffix = rest_upper[len(base):].lstrip(".")
            if suffix in _VELOCITY_SUFFIXES:
                if prefix and base_unit is u.K:
                    continue  # prefixed kelvins go to astropy below
                if prefix and raw[0] == "M":
                    log.warning("BUNIT %r read as milli-Jansky (MJy/beam would be absurd)", raw)
                unit = base_unit * _VELOCITY_SUFFIXES[suffix]
                return u.CompositeUnit(factor, [unit], [1]) if factor != 1.0 else unit
    try:
        unit = u.Unit(raw, format="fits")
    except ValueError:
        try:
            unit = u.Unit(raw.replace("Msun", "solMass").replace("MSUN", "solMass"))
        except ValueError:
            return None
    if any(unit.is_equivalent(kind) for kind in UNIT_KINDS.values()):
        return unit
    return None


def parse_beam(text: str) -> Beam:
    """Parse a ``--beam`` value: ``BMAJ[,BMIN[,BPA]]``.

    Numbers without a unit are arcseconds for the axes and degrees for the position angle,
    e.g. ``"60"``, ``"12.5,11.2,34"`` or ``"0.5arcmin,20arcsec,-10deg"``.

    Parameters
    ----------
    text : str
        The option value.

    Returns
    -------
    radio_beam.Beam

    Raises
    ------
    ValueError
        If the value cannot be parsed or an axis is not positive.
    """
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"--beam {text!r}: expected BMAJ[,BMIN[,BPA]], e.g. 30,25,45")

    def quantity(value: str, default: u.UnitBase) -> u.Quantity:
        q = u.Quantity(value)
        return q * default if q.unit == u.one else q.to(default)

    try:
        major = quantity(parts[0], u.arcsec)
        minor = quantity(parts[1], u.arcsec) if len(parts) > 1 else major
        pa = quantity(parts[2], u.deg) if len(parts) > 2 else 0 * u.deg
    except (TypeError, ValueError, u.UnitsError):
        raise ValueError(f"--beam {text!r}: expected BMAJ[,BMIN[,BPA]] with numbers in arcsec "
                         "and deg or with units, e.g. 30,25,45 or 0.5arcmin,20arcsec") from None
    if not (major > 0 and minor > 0):
        raise ValueError(f"--beam {text!r}: beam axes must be positive")
    if minor > major:
        major, minor = minor, major
    return Beam(major=major, minor=minor, pa=pa)


def identify_line(frequency: u.Quantity) -> str | None:
    """Name of the known line whose rest frequency is ``frequency`` (0.01 %), else ``None``."""
    for name, rest in KNOWN_LINES.items():
        if abs((frequency / rest).to_value(u.one) - 1.0) < _LINE_TOLERANCE:
            return name
    return None


@dataclass
class Observation:
    """One real observation, read and checked, in a form every later stage can use.

    Attributes
    ----------
    path : Path
        The file it came from.
    header : astropy.io.fits.Header
        The data HDU's header as written in the file (plus ``EQUINOX`` where only the
        deprecated ``EPOCH`` was given).
    celestial_wcs : astropy.wcs.WCS
        The two celestial axes (longitude first), as astropy interprets the header.
    celestial_cards : astropy.io.fits.Header
        The file's own celestial WCS cards, renumbered to axes 1 and 2 and otherwise
        untouched (same ``CTYPE``, projection, ``CD``/``PC``/``CDELT``, equinox), for writing
        outputs on exactly the input's grid.
    unit : astropy.units.UnitBase
        Unit of the data.
    beam : radio_beam.Beam or None
        The beam (the smallest common beam when it varies per channel), or ``None`` if the
        file has none and none was given.
    cube : spectral_cube.SpectralCube or None
        The cube, for line data; ``None`` for images.
    image : numpy.ndarray or None
        The image (NaN where blank), for 2-D data; ``None`` for cubes.
    rest_frequency : Quantity
        Rest frequency of the line (HI unless the file says otherwise, which is refused).
    """

    path: Path
    header: fits.Header
    celestial_wcs: WCS
    celestial_cards: fits.Header
    unit: u.UnitBase
    beam: Beam | None
    cube: SpectralCube | None
    image: np.ndarray | None
    rest_frequency: u.Quantity = HI_REST_FREQUENCY

    @property
    def spatial_shape(self) -> tuple[int, int]:
        """(ny, nx) of the celestial grid."""
        if self.cube is not None:
            return tuple(self.cube.shape[1:])
        return tuple(self.image.shape)

    @property
    def spatial_mask(self) -> np.ndarray:
        """True where the sky has data: at least one unblanked channel (cubes) or value."""
        if self.cube is not None:
            return self.cube.mask.include().any(axis=0)
        return np.isfinite(self.image)


_CELESTIAL_KEYS = ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "CROTA", "CNAME", "CRDER", "CSYER")
_GLOBAL_CELESTIAL_KEYS = (
    "EQUINOX", "EPOCH", "RADESYS", "RADECSYS", "LONPOLE", "LATPOLE", "MJD-OBS", "DATE-OBS",
    "MJDREF", "WCSAXES",
)


def celestial_header(header: fits.Header, lon: int, lat: int) -> fits.Header:
    """The celestial WCS cards of ``header``, renumbered so ``lon`` is axis 1 and ``lat`` 2.

    Cards are copied verbatim (values and comments), so the projection code, the ``CD`` or
    ``PC``+``CDELT`` form and ``EPOCH``/``EQUINOX`` stay as the observer wrote them.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The input header.
    lon, lat : int
        1-based FITS axis numbers of the longitude and latitude axes.

    Returns
    -------
    astropy.io.fits.Header
    """
    out = fits.Header()
    renumber = {lon: 1, lat: 2}
    for old, new in renumber.items():
        for key in _CELESTIAL_KEYS:
            name = f"{key}{old}"
            if name in header:
                out[f"{key}{new}"] = (header[name], header.comments[name])
    for i_old, i_new in renumber.items():
        for j_old, j_new in renumber.items():
            for key in ("CD", "PC"):
                name = f"{key}{i_old}_{j_old}"
                if name in header:
                    out[f"{key}{i_new}_{j_new}"] = (header[name], header.comments[name])
    # Projection parameters belong to the latitude axis (PV2_m for the usual order) and, for
    # the native longitude/latitude of the fiducial point, to the longitude axis.
    for card in header.cards:
        m = re.fullmatch(r"(PV|PS)(\d+)_(\d+)", card.keyword)
        if m and int(m.group(2)) in renumber:
            out[f"{m.group(1)}{renumber[int(m.group(2))]}_{m.group(3)}"] = (card.value, card.comment)
    for key in _GLOBAL_CELESTIAL_KEYS:
        if key in header and key != "WCSAXES":
            out[key] = (header[key], header.comments[key])
    if "EQUINOX" not in out and "EPOCH" in out:
        # EPOCH is the deprecated spelling of EQUINOX; wcslib reads it the same way.
        out["EQUINOX"] = (float(out["EPOCH"]), "from EPOCH (deprecated spelling)")
    return out


def _fail(path: Path, problem: str) -> InferError:
    return InferError(path, problem)


def _open_data_hdu(path: Path) -> tuple[fits.Header, np.ndarray, fits.HDUList]:
    """Header and raw (unscaled) data of the first HDU with an image; checks truncation."""
    try:
        hdul = fits.open(path, memmap=False, do_not_scale_image_data=True)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(path, f"not a readable FITS file ({exc})") from None
    hdu = next(
        (h for h in hdul if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
         and h.header.get("NAXIS", 0) > 0),
        None,
    )
    if hdu is None:
        raise _fail(path, "no image HDU with data (the file holds only headers or tables)")
    info = hdu.fileinfo()
    expected = abs(hdu.header["BITPIX"]) // 8 * int(
        np.prod([hdu.header[f"NAXIS{i}"] for i in range(1, hdu.header["NAXIS"] + 1)])
    )
    size = os.path.getsize(path)
    # Sizes only compare for plain files; a truncated compressed file fails on reading below.
    compressed = getattr(hdul.fileinfo(0)["file"], "compression", None) if info else None
    if info is not None and not compressed and not isinstance(hdu, fits.CompImageHDU):
        if info["datLoc"] + expected > size:
            raise _fail(
                path,
                f"truncated file: the header announces {expected} data bytes from byte "
                f"{info['datLoc']}, but the file has {size} bytes",
            )
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(path, f"cannot read the data ({exc})") from None
    return hdu.header, data, hdul


def _blank_to_nan(path: Path, header: fits.Header, raw: np.ndarray) -> np.ndarray:
    """Scaled float data with BLANK and infinite pixels as NaN.

    Floating-point data keep their precision (a float32 cube stays float32: half the memory
    of a large cube); scaled integers become float64.
    """
    blank = header.get("BLANK")
    bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    plain_float = raw.dtype.kind == "f" and bscale == 1.0 and bzero == 0.0
    # A native-endian copy that the in-place steps below may change.
    data = raw.astype(raw.dtype.newbyteorder("=") if plain_float else np.float64)
    if blank is not None:
        if raw.dtype.kind in "iu":
            blanked = raw == int(blank)
        else:
            # BLANK is only defined for integer images, but some writers put it on float data
            # (often -32768 or 0 after a conversion from 16-bit): honour it, it is never a
            # real sky value.
            log.info("%s: BLANK=%r on floating-point data honoured", path, blank)
            blanked = data == float(blank)
        data[blanked] = np.nan
    if bscale != 1.0:
        data *= bscale
    if bzero != 0.0:
        data += bzero
    np.copyto(data, np.nan, where=np.isinf(data))
    return data


def _beam_from_file(path: Path, header: fits.Header, hdul: fits.HDUList) -> Beam | Beams | None:
    """The beam(s) the file declares, ``None`` if it declares none; invalid ones refused."""
    if "BEAMS" in hdul:
        table = hdul["BEAMS"]
        try:
            beams = Beams.from_fits_bintable(table)
        except (KeyError, ValueError) as exc:
            raise _fail(path, f"unreadable BEAMS table ({exc}); pass --beam") from None
        if not (np.all(np.isfinite(beams.major)) and np.all(beams.major > 0)
                and np.all(beams.minor > 0)):
            raise _fail(path, "BEAMS table has non-positive or NaN beam sizes; pass --beam")
        return beams
    if "BMAJ" in header:
        bmaj = header["BMAJ"]
        bmin = header.get("BMIN", bmaj)
        if not all(isinstance(v, (int, float)) and np.isfinite(v) and v > 0 for v in (bmaj, bmin)):
            raise _fail(
                path,
                f"invalid beam in the header (BMAJ={bmaj}, BMIN={bmin}); "
                "give the restoring beam with --beam BMAJ[,BMIN[,BPA]] (arcsec, deg)",
            )
        return Beam(major=bmaj * u.deg, minor=bmin * u.deg, pa=header.get("BPA", 0.0) * u.deg)
    try:
        beam = Beam.from_fits_header(header)  # AIPS "CLEAN BMAJ=" history and CASA variants
    except (NoBeamException, ValueError, KeyError, TypeError):
        return None
    if not (beam.major > 0 and beam.minor > 0):
        return None
    return beam


def _check_rest_frequency(path: Path, wcs: WCS, header: fits.Header, spec_axis: int) -> None:
    """Refuse cubes (and moment maps, ``spec_axis < 0``) of other lines, naming the line."""
    rest = wcs.wcs.restfrq
    if not rest and wcs.wcs.restwav:
        rest = (wcs.wcs.restwav * u.m).to_value(u.Hz, u.spectral())
    if rest:
        rest_q = rest * u.Hz
        line = identify_line(rest_q)
        if line == "HI 21 cm":
            return
        what = f"{line} at {rest_q.to(u.GHz):.6g}" if line else f"{rest_q.to(u.GHz):.6g}"
        raise _fail(
            path,
            f"rest frequency is {what}, not the HI 21 cm line "
            f"({HI_REST_FREQUENCY.to(u.GHz):.7g}); infer needs an HI cube",
        )
    if spec_axis < 0:
        return
    ctype = wcs.wcs.ctype[spec_axis].upper()
    if ctype.startswith("FREQ"):
        n = header.get(f"NAXIS{spec_axis + 1}", 1)
        ends = wcs.sub([spec_axis + 1]).pixel_to_world_values([0, n - 1])
        f_max = u.Quantity(np.max(ends), u.Hz)
        if not (0.4 * HI_REST_FREQUENCY < f_max < 1.002 * HI_REST_FREQUENCY):
            line = identify_line(f_max)
            guess = f" (it matches {line})" if line else ""
            raise _fail(
                path,
                f"no rest frequency in the header and the band reaches {f_max.to(u.GHz):.6g}"
                f"{guess}, outside redshifted HI (0.57-1.42 GHz); infer needs an HI cube",
            )
    # A velocity axis without a rest frequency: the velocity is all we need, HI is assumed.


#: Numeric WCS keywords of one axis (``CRVAL3``) or axis pair (``PC1_2``), and rest frequency.
_WCS_NUMBER = re.compile(r"(CRVAL|CDELT|CRPIX|CROTA)\d+|(CD|PC)\d+_\d+|RESTFR(Q|EQ)|RESTWAV")


def _check_wcs_numbers(path: Path, header: fits.Header) -> None:
    """Refuse WCS cards whose value is not a finite number (``CRVAL3 = NaN``).

    astropy "fixes" such a card by dropping its value and wcslib then uses the default (0
    for ``CRVAL``), so a cube with a corrupted spectral axis would be read silently on a
    made-up axis (about -250 km/s for a FREQ axis at 0 Hz). The warnings that say so are
    hidden with the harmless header repairs, hence this explicit check.
    """
    for card in header.cards:
        if not _WCS_NUMBER.fullmatch(card.keyword):
            continue
        try:
            value = card.value
        except fits.VerifyError:
            value = None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and np.isfinite(value)):
            if isinstance(value, str):
                text = value.strip()
            else:  # unparsable: show the card's value field as written
                text = card.image[10:].split("/")[0].strip() or repr(value)
            raise _fail(
                path,
                f"{card.keyword} = {text} is not a finite number: the WCS of "
                "this file is corrupt (its axis cannot be located); fix the header",
            )


def _spectral_cube_header(header: fits.Header, wcs: WCS, spec: int) -> fits.Header:
    """``header`` with the spectral ``CUNIT`` spelt so that astropy units parses it.

    spectral-cube takes the display unit of the spectral axis from the header's ``CUNIT``
    with :class:`astropy.units.Unit`, which refuses spellings that wcslib repairs (``'HZ'``
    of WSRT and older AIPS files, ``'MHZ'``, ``'KM/S'``). The cube's values come from the
    WCS, which wcslib already normalised, so its unit is the right replacement.
    """
    key = f"CUNIT{spec + 1}"
    if key not in header:
        return header
    try:
        u.Unit(str(header[key]).strip(), format="fits")
        return header
    except ValueError:
        pass
    fixed = header.copy()
    fixed[key] = (wcs.wcs.cunit[spec].to_string("fits"), f"was {str(header[key]).strip()!r}")
    return fixed


def read_observation(path: str | os.PathLike, beam: Beam | None = None) -> Observation:
    """Read a FITS cube or image, check it, and return an :class:`Observation`.

    Parameters
    ----------
    path : path-like
        FITS file: an HI cube (Jy/beam or K) or a 2-D map (moment-0 in Jy/beam km/s or
        K km/s, column density, or a continuum image in Jy/beam).
    beam : radio_beam.Beam, optional
        Restoring beam to use instead of (or in the absence of) the file's.

    Returns
    -------
    Observation

    Raises
    ------
    InferError
        One line naming the file and the problem (see ``docs/fits_handling.rst``).
    """
    path = Path(path)
    with warnings.catch_warnings():
        # Header repairs (EPOCH, NCP, VELO-HEL) are expected; we report what matters ourselves.
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)  # truncation: reported by us
        header, raw, hdul = _open_data_hdu(path)
        try:
            return _build(path, header, raw, hdul, beam)
        finally:
            hdul.close()


def _build(
    path: Path, header: fits.Header, raw: np.ndarray, hdul: fits.HDUList, beam: Beam | None
) -> Observation:
    naxis = header["NAXIS"]
    if raw.ndim == 1 or naxis == 1:
        raise _fail(path, "1-D data (a spectrum?): infer needs a cube or a 2-D image of the sky")
    _check_wcs_numbers(path, header)
    header = header.copy()
    if "EQUINOX" not in header and isinstance(header.get("EPOCH"), (int, float)):
        header["EQUINOX"] = float(header["EPOCH"])
    try:
        wcs = WCS(header)
    except Exception as exc:  # wcslib raises several types for broken headers
        raise _fail(path, f"invalid WCS ({str(exc).splitlines()[0]})") from None
    if not wcs.has_celestial:
        raise _fail(path, "no celestial WCS (CTYPE1/CTYPE2 do not name RA/DEC or GLON/GLAT axes)")
    lon, lat = wcs.wcs.lng, wcs.wcs.lat
    spec = wcs.wcs.spec
    shape = [header[f"NAXIS{i}"] for i in range(1, naxis + 1)]  # FITS axis order
    data = _blank_to_nan(path, header, raw)

    # Select: keep lon, lat and a spectral axis; length-1 axes are dropped, STOKES I is taken.
    index: list[slice | int] = [slice(None)] * naxis  # numpy order is reversed FITS order
    for ax in range(naxis):
        if ax in (lon, lat) or (ax == spec and shape[ax] > 1):
            continue
        ctype = wcs.wcs.ctype[ax].upper()
        if shape[ax] == 1:
            index[naxis - 1 - ax] = 0
        elif ctype.startswith("STOKES"):
            values = wcs.sub([ax + 1]).pixel_to_world_values(np.arange(shape[ax]))
            if 1 not in np.round(values).astype(int):
                raise _fail(path, "STOKES axis without Stokes I")
            index[naxis - 1 - ax] = int(np.flatnonzero(np.round(values) == 1)[0])
        else:
            raise _fail(path, f"unexpected non-degenerate axis {ax + 1} ({ctype or 'no CTYPE'})")
    data = data[tuple(index)]
    is_cube = spec >= 0 and shape[spec] > 1
    keep = [lon, lat, spec] if is_cube else [lon, lat]
    # numpy axes of the kept FITS axes, to transpose into (spec, lat, lon) order
    kept_sorted = sorted(keep)
    numpy_pos = {ax: len(kept_sorted) - 1 - kept_sorted.index(ax) for ax in keep}
    data = np.transpose(data, [numpy_pos[ax] for ax in reversed(keep)])

    finite = np.isfinite(data)
    if not finite.any():
        raise _fail(path, "all data values are blank (NaN or BLANK)")
    bunit = str(header.get("BUNIT", ""))
    unit = parse_bunit(bunit)
    if unit is None and "PIX" in bunit.upper():
        raise _fail(path, f"BUNIT {bunit.strip()!r} is a sky model or CLEAN-component image; "
                          "infer needs restored data (Jy/beam or K)")
    if unit is None:
        known = "Jy/beam, K, Jy/beam km/s, K km/s, cm-2"
        raise _fail(path, f"unknown or missing BUNIT {bunit.strip()!r} (expected one of: {known})")

    celestial_wcs = wcs.sub([lon + 1, lat + 1])
    cards = celestial_header(header, lon + 1, lat + 1)
    file_beam = _beam_from_file(path, header, hdul) if beam is None else None
    needs_beam = u.beam in unit.bases
    if beam is None and file_beam is None and needs_beam:
        raise _fail(
            path,
            "no beam in the header (BMAJ/BMIN/BPA, BEAMS table or AIPS history) and the data "
            f"are in {unit}; give the restoring beam with --beam BMAJ[,BMIN[,BPA]] (arcsec, deg)",
        )
    if not is_cube:
        if unit.is_equivalent(u.Jy / u.beam * u.km / u.s) or unit.is_equivalent(u.K * u.km / u.s):
            # A moment map keeps its cube's RESTFRQ; continuum images may carry RESTFRQ as
            # their observing frequency, so they are not checked.
            _check_rest_frequency(path, wcs, header, -1)
        if isinstance(file_beam, Beams):
            file_beam = file_beam.common_beam()
        rep = beam if beam is not None else file_beam
        return Observation(path, header, celestial_wcs, cards, unit, rep, None, data)

    _check_rest_frequency(path, wcs, header, spec)
    cube_wcs = wcs.sub([lon + 1, lat + 1, spec + 1])
    cube_header = _spectral_cube_header(header, wcs, spec)
    quantity = u.Quantity(data, unit, copy=False)
    mask = BooleanArrayMask(finite, cube_wcs)
    try:
        if isinstance(file_beam, Beams):
            if len(file_beam) != data.shape[0]:
                raise _fail(
                    path, f"BEAMS table has {len(file_beam)} rows for {data.shape[0]} channels"
                )
            cube = VaryingResolutionSpectralCube(
                data=quantity, wcs=cube_wcs, mask=mask, beams=file_beam, header=cube_header
            )
            rep = file_beam.common_beam()
        else:
            rep = beam if beam is not None else file_beam
            cube = SpectralCube(data=quantity, wcs=cube_wcs, mask=mask, header=cube_header, beam=rep)
    except InferError:
        raise
    except Exception as exc:  # spectral-cube refuses odd spectral axes with several types
        raise _fail(path, f"spectral-cube cannot use this cube ({exc})") from None
    return Observation(path, header, celestial_wcs, cards, unit, rep, cube, None)
