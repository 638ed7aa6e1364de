"""FITS output of mock observations: SIN, FREQ and STOKES axes, Jy/beam and the beam.

Layout
------
The primary HDU holds the restored image as ``(STOKES, FREQ, DEC, RA)`` = ``(1, nchan, ny, nx)``
float32 with ``BUNIT = 'Jy/beam'``, ``RESTFRQ``, ``SPECSYS``, ``TELESCOP``, ``OBJECT`` and the
observation parameters (array, band, track, dump time, channel width, weighting, predicted
noise). ``BMAJ``/``BMIN``/``BPA`` (degrees) give the restoring beam; where it varies between
channels the CASA convention is followed as well: ``CASAMBM = T`` and a ``BEAMS`` binary table
(``BMAJ``, ``BMIN`` arcsec, ``BPA`` deg, ``CHAN``, ``POL``), which spectral-cube reads into a
``VaryingResolutionSpectralCube``. The primary header's BMAJ/BMIN/BPA are then those of the
largest beam (the one to convolve to). Files are written atomically (temporary file in the
same folder, then :func:`os.replace`).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

from alchemy_obs import __version__
from alchemy_obs.atomic import temporary_beside
from alchemy_obs.observe.imaging import ImageResult
from alchemy_obs.observe.telescope import Observation

if TYPE_CHECKING:
    from alchemy_obs.observe.mock import ContinuumMock, HIMock

__all__ = ["to_hdulist", "write_fits", "write_hdulist", "mock_cards", "write_mock_products"]

#: Planes of an imaging result written by :func:`write_mock_products`.
MOCK_PLANES = ("image", "dirty", "residual", "model")


def _beams_vary(result: ImageResult) -> bool:
    b = result.beams
    return len(b) > 1 and not (
        np.allclose(b.major.value, b.major.value[0], rtol=1e-6)
        and np.allclose(b.minor.value, b.minor.value[0], rtol=1e-6)
        and np.allclose(b.pa.value, b.pa.value[0], atol=1e-6)
    )


def to_hdulist(
    result: ImageResult,
    observation: Observation | None = None,
    plane: str = "image",
    *,
    restfreq: u.Quantity | None = None,
    object_name: str | None = None,
    specsys: str | None = None,
) -> fits.HDUList:
    """The FITS representation of one plane set of an :class:`ImageResult`.

    Parameters
    ----------
    result : ImageResult
    observation : Observation, optional
        Adds telescope, array size, band, track and correlator set-up to the header.
    plane : {"image", "residual", "dirty", "model"}
        Which cube to write (model in Jy/pixel, the others Jy/beam).
    restfreq : Quantity, optional
        Rest frequency of the line (e.g. 1420.405751768 MHz for HI).
    object_name : str, optional
    specsys : str, optional
        Spectral reference frame of the FREQ axis (FITS ``SPECSYS``), e.g. that of the sky
        cube (``BARYCENT``); default ``result.meta["specsys"]`` or ``TOPOCENT``.
    """
    if plane not in ("image", "residual", "dirty", "model"):
        raise ValueError(f"unknown plane {plane!r}")
    data = getattr(result, plane)
    nchan, ny, nx = data.shape
    w3 = result.wcs.wcs
    w4 = WCS(naxis=4)
    w4.wcs.ctype = [*w3.ctype, "STOKES"]
    w4.wcs.crval = [*w3.crval, 1.0]
    w4.wcs.cdelt = [*(w3.get_cdelt() * np.diag(w3.get_pc())), 1.0]
    w4.wcs.crpix = [*w3.crpix, 1.0]
    w4.wcs.cunit = [*w3.cunit, ""]
    w4.wcs.radesys = w3.radesys or "ICRS"
    w4.wcs.specsys = specsys or result.meta.get("specsys") or "TOPOCENT"
    if restfreq is not None:
        w4.wcs.restfrq = u.Quantity(restfreq, u.Hz).value
    header = w4.to_header()
    header["BUNIT"] = "Jy/pixel" if plane == "model" else "Jy/beam"
    beams = result.beams
    big = int(np.argmax(beams.sr.value))
    header["BMAJ"] = beams[big].major.to_value(u.deg)
    header["BMIN"] = beams[big].minor.to_value(u.deg)
    header["BPA"] = beams[big].pa.to_value(u.deg)
    header["TELESCOP"] = "SKA-MID"
    header["INSTRUME"] = "alchemy-obs"
    header["ORIGIN"] = "alchemy-obs built-in interferometer simulator"
    if object_name:
        header["OBJECT"] = object_name
    header["NOISERMS"] = (float(np.median(result.noise_rms.value)), "predicted thermal rms (Jy/beam)")
    header["WEIGHT"] = (str(result.meta.get("weighting", "")), "uv weighting")
    if "robust" in result.meta:
        header["ROBUST"] = (float(result.meta["robust"]), "Briggs robust")
    if "mode" in result.meta:
        header["SIMMODE"] = (str(result.meta["mode"]), "visibility or fast image-plane")
    if observation is not None:
        tel = observation.telescope
        header["TELESCOP"] = tel.name
        header["NANTENNA"] = (tel.n_antennas, "dishes in the array")
        header["BAND"] = (observation.band, "SKA-MID receiver band")
        header["DATE-OBS"] = observation.times[0].isot
        header["MJD-OBS"] = observation.times[0].mjd
        ha = observation.hour_angles().to_value(u.hourangle)
        header["HASTART"] = (float(ha[0]), "first dump hour angle (h)")
        header["HAEND"] = (float(ha[-1]), "last dump hour angle (h)")
        header["TINTEG"] = (observation.dump_time.to_value(u.s), "dump time (s)")
        header["EXPOSURE"] = (observation.n_times * observation.dump_time.to_value(u.s), "track (s)")
        header["CHANWID"] = (observation.channel_width.to_value(u.Hz), "channel width (Hz)")
        header["OBSRA"] = observation.phase_centre.ra.deg
        header["OBSDEC"] = observation.phase_centre.dec.deg
    hdus = [fits.PrimaryHDU(np.asarray(data.value, np.float32)[None], header)]
    if _beams_vary(result):
        hdus[0].header["CASAMBM"] = True
        cols = [
            fits.Column("BMAJ", "1E", unit="arcsec", array=beams.major.to_value(u.arcsec)),
            fits.Column("BMIN", "1E", unit="arcsec", array=beams.minor.to_value(u.arcsec)),
            fits.Column("BPA", "1E", unit="deg", array=beams.pa.to_value(u.deg)),
            fits.Column("CHAN", "1J", array=np.arange(nchan, dtype=np.int32)),
            fits.Column("POL", "1J", array=np.zeros(nchan, dtype=np.int32)),
        ]
        table = fits.BinTableHDU.from_columns(cols, name="BEAMS")
        table.header["NCHAN"] = nchan
        table.header["NPOL"] = 1
        hdus.append(table)
    return fits.HDUList(hdus)


def write_hdulist(hdul: fits.HDUList, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``hdul`` atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    os.close(fd)
    try:
        hdul.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_fits(
    result: ImageResult,
    path: str | os.PathLike,
    observation: Observation | None = None,
    *,
    plane: str = "image",
    restfreq: u.Quantity | None = None,
    object_name: str | None = None,
    overwrite: bool = False,
    specsys: str | None = None,
) -> Path:
    """Write one plane set of ``result`` to ``path`` (see :func:`to_hdulist`); returns the path."""
    hdul = to_hdulist(result, observation, plane, restfreq=restfreq, object_name=object_name, specsys=specsys)
    return write_hdulist(hdul, path, overwrite)


def mock_cards(mock: HIMock | ContinuumMock, *, object_name: str, settings: str, seed: int) -> dict:
    """Provenance and distance cards of a mock's FITS products (name -> (value, comment)).

    ``DISTANCE`` is the angular-diameter distance, the one that turns angles into lengths,
    so ``alchemy-obs infer`` lays a moment map of the mock on the model grid without a
    ``--distance``; ``DISTLUM`` is the luminosity distance the fluxes were computed with.
    ``SIMULATD = T`` marks the data as simulated.
    """
    place = mock.placement
    return {
        "OBJECT": (object_name, "source galaxy"),
        "SIMULATD": (True, "simulated data (alchemy-obs mock observation)"),
        "DISTANCE": (round(place.angular_diameter_distance.to_value(u.Mpc), 6),
                     "[Mpc] angular-diameter distance"),
        "DISTLUM": (round(place.luminosity_distance.to_value(u.Mpc), 6),
                    "[Mpc] luminosity distance"),
        "REDSHIFT": (round(place.z, 9), "cosmological redshift"),
        "VSYS": (round(place.systemic_velocity.to_value(u.km / u.s), 3),
                 "[km/s] systemic velocity, optical convention"),
        "SETTINGS": (settings, "hash of the mock, observe and maps settings"),
        "SEED": (seed, "random seed of the run"),
        "DATE": (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC file creation"),
        "SWVERS": (__version__, "alchemy-obs version"),
    }


def _with_cards(hdul: fits.HDUList, cards: dict, history: str) -> fits.HDUList:
    header = hdul[0].header
    for key, (value, comment) in cards.items():
        header[key] = (value, comment)
    header["HISTORY"] = history
    return hdul


def _map_hdul(image: u.Quantity, wcs: WCS, beam, specsys: str) -> fits.HDUList:
    header = wcs.celestial.to_header()
    header["SPECSYS"] = specsys
    header["BUNIT"] = image.unit.to_string("fits")
    if beam is not None:
        header["BMAJ"], header["BMIN"], header["BPA"] = (
            beam.major.to_value(u.deg), beam.minor.to_value(u.deg), beam.pa.to_value(u.deg))
    return fits.HDUList([fits.PrimaryHDU(np.asarray(image.value, np.float32), header)])


def write_mock_products(
    mocks: dict, out: str | os.PathLike, stem: str, *, object_name: str, settings: str = "",
    seed: int = 0, overwrite: bool = False,
) -> list[Path]:
    """Write mock observations as FITS files, each with the same provenance cards.

    For each product (``"hi"``, ``"continuum"``): ``<stem>_<product>_<plane>.fits`` for the
    restored, dirty, residual and CLEAN-model planes (apparent brightness, as imagers write
    them), ``<stem>_<product>_psf.fits`` (the dirty beam, peak 1),
    ``<stem>_<product>_pb.fits`` (the primary-beam response the images are divided by to
    give the sky's brightness) and ``<stem>_<product>_sky.fits`` (the sky model,
    Jy/pixel); HI also gets its primary-beam corrected moment 0 (Jy/beam km/s) and column
    density (cm^-2) maps. Writes are atomic.

    Parameters
    ----------
    mocks : dict of str to HIMock or ContinuumMock
    out : path-like
        Output folder.
    stem : str
        File name stem, e.g. ``cutout_3_faceon``.
    object_name : str
        ``OBJECT`` card.
    settings : str
        Hash of the settings that made the mocks (``SETTINGS`` card).
    seed : int
        The run's random seed (``SEED`` card).
    overwrite : bool
        Replace existing files.

    Returns
    -------
    list of Path
        The files written.
    """
    from alchemy_obs.physics import radio

    out = Path(out)
    written = []
    for kind, m in mocks.items():
        cards = mock_cards(m, object_name=object_name, settings=settings, seed=seed)
        specsys = m.result.meta.get("specsys") or "BARYCENT"
        restfreq = radio.HI_REST_FREQUENCY if kind == "hi" else None

        def put(hdul, name, what):
            path = out / f"{stem}_{kind}_{name}.fits"
            history = f"alchemy-obs {__version__} mock: {what} of {object_name}"
            written.append(write_hdulist(_with_cards(hdul, cards, history), path, overwrite))

        for plane in MOCK_PLANES:
            put(to_hdulist(m.result, m.observation, plane, restfreq=restfreq,
                           object_name=object_name, specsys=specsys),
                plane, f"{plane} {'cube' if kind == 'hi' else 'image'}")
        psf_hdul = to_hdulist(m.result, m.observation, "image", restfreq=restfreq,
                              object_name=object_name, specsys=specsys)
        psf_hdul[0].data = np.asarray(m.result.psf, np.float32)[None]
        psf_hdul[0].header["BUNIT"] = ""
        psf_hdul[0].header.remove("NOISERMS", ignore_missing=True)
        put(psf_hdul, "psf", "point spread function (dirty beam)")
        if m.result.primary_beam is not None:
            pb_hdul = to_hdulist(m.result, m.observation, "image", restfreq=restfreq,
                                 object_name=object_name, specsys=specsys)
            pb_hdul[0].data = np.asarray(m.result.primary_beam, np.float32)[None]
            pb_hdul[0].header["BUNIT"] = ""
            pb_hdul[0].header.remove("NOISERMS", ignore_missing=True)
            put(pb_hdul, "pb", "primary-beam response (divide the images by it)")
        sky_header = m.sky.wcs.to_header()
        sky_header["BUNIT"] = "Jy/pixel"
        sky_header["SPECSYS"] = specsys
        sky = fits.HDUList([fits.PrimaryHDU(np.asarray(m.sky.data.value, np.float32), sky_header)])
        put(sky, "sky", "sky model")
        if kind == "hi":
            for name, image in (("mom0", m.moment0()), ("nhi", m.column_density())):
                hdul = _map_hdul(image, m.wcs, m.beam, specsys)
                hdul[0].header["PBCOR"] = (True, "corrected for the primary-beam response")
                put(hdul, name, f"HI {name} map")
    return written
