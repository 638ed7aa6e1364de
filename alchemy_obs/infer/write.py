"""Writing predictions as FITS on exactly the input's celestial grid, atomically."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits

from alchemy_obs import __version__
from alchemy_obs.atomic import temporary_beside
from alchemy_obs.infer.errors import InferError
from alchemy_obs.infer.read import Observation

__all__ = ["output_path", "prediction_hdus", "provenance_cards", "write_atomic"]

#: Header cards of the input copied to the output for the reader's convenience.
_COPIED = ("OBJECT", "TELESCOP", "INSTRUME", "OBSERVER")


def output_path(input_path: str | os.PathLike, out_dir: str | os.PathLike, target: str) -> Path:
    """``OUT_DIR/<input stem>_<target>.fits``."""
    name = Path(input_path).name
    for suffix in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(out_dir) / f"{name}_{target}.fits"


def prediction_hdus(
    obs: Observation,
    mean: np.ndarray,
    std: np.ndarray | None,
    *,
    unit: u.UnitBase,
    provenance: dict[str, Any],
) -> fits.HDUList:
    """The output file: the prediction and its uncertainty on the input's celestial WCS.

    Parameters
    ----------
    obs : Observation
        The input; its celestial WCS cards are copied verbatim (spectral and Stokes axes are
        not), so every pixel has the same sky position as in the input.
    mean : numpy.ndarray
        ``obs.spatial_shape`` prediction, NaN where masked.
    std : numpy.ndarray or None
        Its standard deviation over posterior samples; ``None`` writes NaN (one sample).
    unit : astropy.units.UnitBase
        Unit of the target domain (``BUNIT``).
    provenance : dict
        Header keyword -> value or (value, comment) added to the primary header.

    Returns
    -------
    astropy.io.fits.HDUList
        Primary HDU (the prediction) and ``UNCERT`` image extension.
    """
    if mean.shape != obs.spatial_shape:
        raise ValueError(f"prediction shape {mean.shape} differs from the input's {obs.spatial_shape}")
    header = obs.celestial_cards.copy()
    header["BUNIT"] = (unit.to_string("fits"), "unit of the predicted domain")
    for key in _COPIED:
        if key in obs.header:
            header[key] = (obs.header[key], obs.header.comments[key])
    for key, value in provenance.items():
        value, comment = value if isinstance(value, tuple) else (value, "")
        # A long value (a path, a checksum) keeps its full text; its comment goes instead.
        header[key] = (value, comment) if len(f"{value}") + len(comment) < 60 else value
    header["HISTORY"] = f"alchemy-obs {__version__} infer: prediction from {obs.path.name}"
    primary = fits.PrimaryHDU(mean.astype(np.float32), header=header)
    uheader = obs.celestial_cards.copy()
    uheader["BUNIT"] = (unit.to_string("fits"), "unit of the uncertainty")
    if std is None:
        std = np.full(mean.shape, np.nan)
        uheader["COMMENT"] = "one sample: no posterior spread (NaN); rerun with --samples N > 1"
    else:
        uheader["COMMENT"] = "standard deviation of the posterior samples"
    uncertainty = fits.ImageHDU(np.where(np.isnan(mean), np.nan, std).astype(np.float32),
                                header=uheader, name="UNCERT")
    return fits.HDUList([primary, uncertainty])


def provenance_cards(
    model_name: str, model_version: str, model_sha256: str, *, method: str, target: str,
    input_path: Path, input_sha256: str, distance: u.Quantity, distance_source: str,
    samples: int, steps: int | None, pixel_kpc: float, centre: tuple[float, float],
) -> dict[str, tuple[Any, str]]:
    """The provenance keywords of an output file (name -> (value, comment))."""
    return {
        "MODEL": (model_name, "translator (registry name or folder)"),
        "MODELVER": (model_version, "model version"),
        "MODELSHA": (model_sha256, "sha256 of the model weights"),
        "METHOD": (method, "translator method"),
        "TARGET": (target, "predicted domain"),
        "INFILE": (input_path.name, "input file"),
        "INSHA256": (input_sha256, "sha256 of the input file"),
        "DISTANCE": (round(distance.to_value(u.Mpc), 6), "[Mpc] distance used"),
        "DISTSRC": (distance_source, "where the distance came from"),
        "NSAMPLES": (samples, "posterior samples averaged"),
        "NSTEPS": (-1 if steps is None else steps, "sampler steps (-1: method default)"),
        "PIXKPC": (pixel_kpc, "[kpc] model pixel size"),
        "CENLON": (centre[0], "[deg] centre of the model grid"),
        "CENLAT": (centre[1], "[deg] centre of the model grid"),
        "DATE": (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC file creation"),
        "ORIGIN": ("alchemy-obs", "software"),
        "SWVERS": (__version__, "alchemy-obs version"),
    }


def write_atomic(
    hdul: fits.HDUList,
    path: str | os.PathLike,
    overwrite: bool = False,
    *,
    protected: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write ``hdul`` to ``path`` through a temporary file in the same folder.

    A crash leaves either the old file or no file, never a partial one; the temporary file is
    removed on any error.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        What to write.
    path : path-like
        Destination.
    overwrite : bool
        Replace an existing destination.
    protected : tuple of path-like
        Files that must never be replaced (the inputs), even with ``overwrite``.

    Returns
    -------
    Path

    Raises
    ------
    InferError
        If the destination is an input, exists without ``overwrite``, is a folder, or
        cannot be written; the message names it.
    """
    path = Path(path)
    for other in protected:
        if path.exists() and Path(other).exists() and os.path.samefile(path, other):
            raise InferError(path, "output would overwrite an input file; choose another --out")
    if path.is_dir():
        raise InferError(path, "output path is an existing folder")
    if path.exists() and not overwrite:
        raise InferError(path, "output exists; pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InferError(path, f"cannot create the output folder ({exc.strerror or exc})") from None
    tmp = None
    try:
        fd, tmp = temporary_beside(path)
        with os.fdopen(fd, "wb") as f:
            hdul.writeto(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InferError(path, f"cannot write the output ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
