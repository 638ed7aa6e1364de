"""One observation in, one physical map out: the driver that chains the inference stages.

::

    from alchemy_obs.infer import infer_file, load_translator

    model = load_translator("hi2dm")
    result = infer_file("ngc2403.fits", model, "out/", beam=parse_beam("12,10,30"),
                        distance=3.2 * u.Mpc)
    print(result.output, result.timings)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from radio_beam import Beam

from alchemy_obs.infer import preprocess, tiles
from alchemy_obs.infer.errors import InferError
from alchemy_obs.infer.predict import predict
from alchemy_obs.infer.read import read_observation
from alchemy_obs.infer.registry import RegistryError, registry_file, resolve
from alchemy_obs.infer.write import output_path, prediction_hdus, provenance_cards, write_atomic
from alchemy_obs.observe.resample import reproject_map
from alchemy_obs.translate.checkpoint import load_model, sha256_file
from alchemy_obs.translate.methods import Method

log = logging.getLogger(__name__)

__all__ = ["Translator", "InferResult", "load_translator", "infer_file"]


@dataclass
class Translator:
    """A loaded model with what inference needs to know about it.

    Attributes
    ----------
    method : Method
        The translator, in eval mode.
    card : dict
        Its model card.
    name, version : str
        Registry name and version (the folder path and ``"unregistered"`` otherwise).
    beam_fwhm_kpc : float or None
        Resolution of the training observations, when recorded.
    demonstration : bool
        True for models trained on synthetic data only.
    """

    method: Method
    card: dict[str, Any]
    name: str
    version: str
    beam_fwhm_kpc: float | None = None
    demonstration: bool = False

    @property
    def target(self) -> str:
        return self.card["target"]

    @property
    def target_unit(self) -> u.UnitBase:
        return u.Unit(self.card.get("units", {}).get(self.target, ""))


def load_translator(
    name_or_path: str | os.PathLike,
    registry_path: str | os.PathLike | None = None,
    device: str | None = None,
) -> Translator:
    """Load a model by registry name (checksum-verified) or by folder.

    Parameters
    ----------
    name_or_path : str or path-like
        A name in the registry or a model folder.
    registry_path : path-like, optional
        Registry file (default: the installed package's, see
        :func:`~alchemy_obs.infer.registry.registry_file`).
    device : str, optional
        Torch device (default: CUDA if available).

    Returns
    -------
    Translator

    Raises
    ------
    InferError
        Naming the model when it cannot be found, verified or loaded.
    """
    try:
        found = resolve(str(name_or_path), registry_path)
    except RegistryError as exc:
        raise InferError(name_or_path, str(exc)) from None
    folder = found[0] if found else Path(name_or_path)
    try:
        method, card = load_model(folder, device=device)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        where = "" if found else (
            f"; no model of that name in {registry_file(registry_path).resolve()}")
        raise InferError(name_or_path, f"cannot load the model ({exc}{where})") from None
    if found:
        entry = found[1]
        return Translator(method, card, str(name_or_path), entry.version,
                          entry.beam_fwhm_kpc, entry.demonstration)
    return Translator(method, card, str(folder), "unregistered",
                      card.get("beam_fwhm_kpc"), bool(card.get("demonstration", False)))


@dataclass
class InferResult:
    """What :func:`infer_file` did."""

    input: Path
    output: Path
    distance: u.Quantity
    distance_source: str
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    #: The model's input on the observation's grid, in the input domain's unit, after
    #: smoothing to the model's beam (``None`` when skipped).
    observable: u.Quantity | None = None
    #: Beam of ``observable`` (``None`` if unknown).
    beam: Beam | None = None
    #: Model fields predicted (0 when skipped).
    tiles: int = 0
    #: Fraction of the masked moment-0 flux that got a prediction (``None`` when skipped).
    emission_fraction: float | None = None


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InferError(path, f"cannot read ({exc.strerror or exc})") from None


def _settings_digest(**settings: Any) -> str:
    """Short hash of everything besides the input and the model that shapes an output."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _up_to_date(out: Path, input_sha: str, model_sha: str, settings: str) -> bool:
    """Whether ``out`` was made from this input, model and settings (an interrupted batch)."""
    try:
        header = fits.getheader(out)
    except (OSError, ValueError):
        return False
    return (header.get("INSHA256"), header.get("MODELSHA"), header.get("SETTINGS")) == (
        input_sha, model_sha, settings)


def _region_cards(
    plan: tiles.TilePlan, coverage: str, support: np.ndarray, moment0: np.ndarray,
    predicted: np.ndarray,
) -> tuple[dict[str, tuple[Any, str]], str]:
    """Header cards and a HISTORY line saying which region of the sky was predicted."""
    nx, ny, width, height, (lon, lat) = plan.extent()
    pixel_fraction, flux_fraction = tiles.coverage_fractions(support, moment0, predicted)
    overlap = (plan.npix - plan.step) / plan.npix
    cards: dict[str, tuple[Any, str]] = {
        "COVERAGE": (coverage, "predicted: emission (tiled) or centre field"),
        "NTILES": (plan.ntiles, "model fields predicted and blended"),
        "TILENPIX": (plan.npix, "[pix] model field side, model pixels"),
        "TILESTEP": (plan.step, "[pix] spacing of the fields, model pixels"),
        "TILEOVLP": (round(overlap, 6), "overlap of neighbouring fields (fraction)"),
        "TILEWIN": ("sin2", "blend: sin^2 windows / their sum"),
        "PREDNX": (nx, "[pix] predicted region width, model pixels"),
        "PREDNY": (ny, "[pix] predicted region height, model pixels"),
        "PREDXKPC": (round(width.to_value(u.kpc), 6), "[kpc] predicted region width"),
        "PREDYKPC": (round(height.to_value(u.kpc), 6), "[kpc] predicted region height"),
        "PREDLON": (lon, "[deg] centre of the predicted region"),
        "PREDLAT": (lat, "[deg] centre of the predicted region"),
        "PREDNPIX": (int(predicted.sum()), "output pixels with a prediction"),
        "EMISPIX": (round(pixel_fraction, 6), "fraction of emission pixels predicted"),
        "EMISFLUX": (round(flux_fraction, 6), "fraction of moment-0 flux predicted"),
    }
    how = ("the central model field" if coverage == "centre" else
           f"{plan.ntiles} model field(s) of {plan.npix} px, {plan.step} px apart, "
           "blended by sin^2 windows")
    note = (f"predicted {how} over {width.to_value(u.kpc):.4g} x "
            f"{height.to_value(u.kpc):.4g} kpc ({nx} x {ny} model pixels of "
            f"{plan.pixel.to_value(u.kpc):.4g} kpc); {100 * flux_fraction:.1f}% of the masked "
            f"moment-0 flux predicted")
    return cards, note


def infer_file(
    path: str | os.PathLike,
    model: Translator,
    out_dir: str | os.PathLike,
    *,
    beam: Beam | None = None,
    distance: u.Quantity | None = None,
    samples: int = 1,
    steps: int | None = None,
    mask_sigma: float | None = preprocess.MASK_SIGMA,
    mask_smooth_beams: float = preprocess.MASK_SMOOTH_BEAMS,
    centre: str = "flux",
    overwrite: bool = False,
    seed: int = 0,
    target: str | None = None,
    beam_tolerance: float = preprocess.BEAM_TOLERANCE,
    protected: tuple[str | os.PathLike, ...] = (),
    plot: bool = False,
    coverage: str = "emission",
    tile_overlap: float = 0.5,
) -> InferResult:
    """Run the model on one FITS cube or image and write the prediction next to it.

    Parameters
    ----------
    path : path-like
        Input FITS (HI cube or moment-0 / column-density / continuum image).
    model : Translator
        From :func:`load_translator`.
    out_dir : path-like
        Folder of the output ``<stem>_<target>.fits``.
    beam : radio_beam.Beam, optional
        Overrides or supplies the restoring beam.
    distance : Quantity, optional
        Overrides the header or redshift distance.
    samples, steps, seed :
        Posterior sampling (see :func:`~alchemy_obs.infer.predict.predict`).
    mask_sigma : float or None
        Threshold of the moment-0 noise mask, in sigma of the smoothed cube (see
        :func:`~alchemy_obs.infer.preprocess.line_integral`); ``None`` sums every unblanked
        voxel.
    mask_smooth_beams : float
        FWHM of the mask's spatial smoothing, in beams.
    centre : {"flux", "header"}
        Centre of the model grid (see :func:`~alchemy_obs.infer.preprocess.galaxy_centre`).
    overwrite : bool
        Replace an existing output. Without it, an existing output made from the same input
        file, model and options is kept and reported as skipped (so an interrupted batch
        resumes), and any other existing output is refused.
    target : str, optional
        Expected target domain; refused if the model predicts another one.
    beam_tolerance : float
        An input beam up to this many times the model's training beam (geometric-mean FWHM
        in kpc at the distance) is used as it is, a coarser one refused; a finer one is
        smoothed to the training beam (:func:`~alchemy_obs.infer.preprocess.match_beam`).
    protected : tuple of path-like
        Files never to overwrite (all inputs of a batch); ``path`` is always protected.
    plot : bool
        Also write ``<output>.png``: the model's input map with the prediction's contours
        (:func:`~alchemy_obs.infer.plots.plot_overlay`).
    coverage : {"emission", "centre"}
        ``"emission"``: as many model fields as the emission (the masked moment-0 support)
        needs, overlapping and blended (:mod:`~alchemy_obs.infer.tiles`); ``"centre"``: the
        central field only.
    tile_overlap : float
        Overlap of neighbouring fields, fraction of a field in [0, 1).

    Returns
    -------
    InferResult

    Raises
    ------
    InferError
        One line naming the file and the problem; no output file is left behind.
    """
    path = Path(path)
    card = model.card
    timings: dict[str, float] = {}
    warnings: list[str] = []
    if target is not None and target != model.target:
        raise InferError(path, f"model {model.name} predicts {model.target!r}, not {target!r}")
    if coverage not in ("emission", "centre"):
        raise ValueError(f"coverage must be 'emission' or 'centre', got {coverage!r}")
    if len(card["inputs"]) != 1:
        raise InferError(path, f"model {model.name} needs {len(card['inputs'])} input maps "
                               f"({', '.join(card['inputs'])}); infer feeds one observation")
    domain = card["inputs"][0]
    out = output_path(path, out_dir, model.target)
    input_sha = _sha256(path) if path.is_file() else ""
    model_sha = card.get("weights_sha256", "")
    settings = _settings_digest(
        beam=None if beam is None else [beam.major.to_value(u.arcsec),
                                        beam.minor.to_value(u.arcsec), beam.pa.to_value(u.deg)],
        distance=None if distance is None else distance.to_value(u.Mpc), samples=samples,
        beam_tolerance=beam_tolerance,
        steps=steps, mask_sigma=mask_sigma, centre=centre, seed=seed,
        mask_smooth_beams=None if mask_sigma is None else mask_smooth_beams,
        coverage=coverage, tile_overlap=None if coverage == "centre" else tile_overlap,
    )
    if out.exists() and not overwrite:  # decided before the expensive part
        if _up_to_date(out, input_sha, model_sha, settings):
            return InferResult(path, out, u.Quantity(fits.getheader(out)["DISTANCE"], u.Mpc),
                               "existing output", skipped=True)
        raise InferError(out, "output exists (from another input, model or settings); "
                              "pass --overwrite to replace it")

    t0 = time.perf_counter()
    obs = read_observation(path, beam=beam)
    timings["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sky = preprocess.line_integral(obs, mask_sigma=mask_sigma, smooth_beams=mask_smooth_beams)
    # Before the beam matching, which would spread the masked map over the whole field.
    support = tiles.emission_support(sky)
    moment0 = sky.data.value
    redshift = sky.redshift if obs.cube is not None else None
    dist, dist_source = preprocess.resolve_distance(obs.header, redshift, distance, path=path)
    training_kpc = (model.beam_fwhm_kpc if model.beam_fwhm_kpc is not None
                    else preprocess.training_beam_kpc(card))
    sky, beam_note = preprocess.match_beam(sky, training_kpc, dist, path=path, tolerance=beam_tolerance)
    observable = preprocess.to_domain(sky, domain, path, training_beam=preprocess.training_beam(card))
    timings["moment0"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lonlat = preprocess.galaxy_centre(sky, centre)
    npix, pixel_kpc = int(card["npix"]), float(card["pixel_kpc"])
    central = preprocess.model_grid(lonlat, obs.celestial_wcs, pixel_kpc, npix=npix, distance=dist)
    plan = tiles.plan_tiles(support, obs.celestial_wcs, central, pixel=pixel_kpc * u.kpc,
                            overlap=tile_overlap, single=coverage == "centre", path=path)
    model_input = reproject_map(observable.value, obs.celestial_wcs, plan.grid, shape_out=plan.shape)
    timings["reproject_in"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if samples > 1 and not model.method.stochastic:
        # Identical samples would write an uncertainty of exact zeros.
        log.warning("%s: %s model %s is deterministic: one sample, no uncertainty map",
                    path, card.get("method", ""), model.name)
        samples = 1

    def predict_one(field: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return predict(model.method, card, {domain: field}, samples=samples, steps=steps,
                       seed=seed)

    mean, std = tiles.blend_tiles(plan, model_input, predict_one)
    timings["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stack = mean[None] if std is None else np.stack([mean, std])
    back = reproject_map(stack, plan.grid, obs.celestial_wcs, shape_out=obs.spatial_shape)
    masked = ~obs.spatial_mask
    back[:, masked] = np.nan
    timings["reproject_out"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    provenance = provenance_cards(
        model.name, model.version, card.get("weights_sha256", ""), method=card.get("method", ""),
        target=model.target, input_path=path, input_sha256=input_sha, distance=dist,
        distance_source=dist_source, samples=samples, steps=steps, pixel_kpc=pixel_kpc, centre=lonlat,
    )
    provenance["SETTINGS"] = (settings, "hash of the options; a rerun skips equal outputs")
    if obs.beam is not None:
        provenance["INBMAJ"] = (obs.beam.major.to_value(u.arcsec), "[arcsec] input beam used")
        provenance["INBMIN"] = (obs.beam.minor.to_value(u.arcsec), "[arcsec] input beam used")
        provenance["INBPA"] = (obs.beam.pa.to_value(u.deg), "[deg] input beam used")
        provenance["BEAMSRC"] = ("option" if beam is not None else "file", "origin of the beam")
    if sky.beam is not None:
        # The resolution of the map the model saw: the input's, or the model's after smoothing.
        provenance["BMAJ"] = (sky.beam.major.to_value(u.deg), "[deg] beam of the model input")
        provenance["BMIN"] = (sky.beam.minor.to_value(u.deg), "[deg] beam of the model input")
        provenance["BPA"] = (sky.beam.pa.to_value(u.deg), "[deg] beam of the model input")
    region_cards, region_note = _region_cards(plan, coverage, support, moment0,
                                              np.isfinite(back[0]))
    provenance.update(region_cards)
    if model.demonstration:
        provenance["DEMOMODL"] = (True, "demonstration model: not a science result")
    hdul = prediction_hdus(obs, back[0], None if std is None else back[1], unit=model.target_unit,
                           provenance=provenance)
    hdul[0].header["HISTORY"] = f"alchemy-obs infer: {beam_note}"
    hdul[0].header["HISTORY"] = f"alchemy-obs infer: {region_note}"
    write_atomic(hdul, out, overwrite=overwrite, protected=(path, *protected))
    timings["write"] = time.perf_counter() - t0
    if plot:
        from alchemy_obs.infer.plots import plot_overlay

        png = out.with_suffix(".png")
        tmp = png.with_name(f".{png.stem}.tmp.png")
        try:
            plot_overlay(observable, obs.celestial_wcs, out, png=tmp, domain=domain, beam=sky.beam,
                         title=f"{path.name} -> {model.target} ({model.name})")
            os.replace(tmp, png)
        finally:
            if tmp.exists():
                tmp.unlink()
    return InferResult(path, out, dist, dist_source, warnings, timings, observable=observable,
                       beam=sky.beam, tiles=plan.ntiles,
                       emission_fraction=provenance["EMISFLUX"][0])
