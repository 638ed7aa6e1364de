"""``alchemy-obs infer``: real FITS cubes and images -> physical maps on the same sky grid."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from alchemy_obs.cli_checks import parse_distance
from alchemy_obs.config import Config
from alchemy_obs.errors import UsageError

log = logging.getLogger(__name__)

DESCRIPTION = """\
Run a trained translator on real observations. Each INPUT (an HI cube in Jy/beam or K,
or a 2-D moment-0, column-density or continuum image) is read, integrated over the line,
converted to the model's input units, reprojected onto the model's grid (pixel size from
the model card and the distance, centred on the galaxy; emission beyond one model field is
covered by overlapping fields blended without seams, --coverage centre keeps the central
one), translated, and reprojected back:
the output <input>_<target>.fits has exactly the input's celestial WCS, the target's BUNIT,
an UNCERT extension, and provenance keywords. Files are processed one by one; a file that
fails is reported in one line and the others go on. Exit status 1 if any file failed.
Defaults come from the 'infer' section of the configuration.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``alchemy-obs infer`` (each overrides the ``infer`` config section)."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="FITS files")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="registry name (see alchemy-obs models) or model folder "
                             "(default: infer.model)")
    parser.add_argument("--target", default=None, metavar="DOMAIN",
                        help="domain expected from the model (dm, stars, gas, ...); a model "
                             "predicting another domain is refused. Without --model (and "
                             "infer.model), the registry's best model for DOMAIN is used: "
                             "science before demonstration models, then the smallest "
                             "held-out profile error (see alchemy-obs models)")
    parser.add_argument("--distance", default=None, metavar="MPC",
                        help="angular-diameter distance, in Mpc unless a unit is given (3.2 or "
                             "3.2Mpc); default: the DISTANCE header card (angular-diameter, "
                             "or converted from a luminosity distance: DISTLUM, or 'luminosity' "
                             "in the comment), else the Hubble flow of the systemic velocity "
                             "(Planck 2018)")
    parser.add_argument("--beam", default=None, metavar="BMAJ[,BMIN[,BPA]]",
                        help="restoring beam, arcsec and deg (e.g. 12,10,30); required when "
                             "the file has none or an invalid one (BMAJ=-1)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="posterior samples for diffusion models (default: infer.samples)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="sampler steps (default: the method's)")
    parser.add_argument("--mask-sigma", type=float, default=None, metavar="SIGMA",
                        help="moment-0 noise mask: keep emission detected above SIGMA x the "
                             "noise of the cube smoothed by ~2 beams and 3 channels, grown by "
                             "a beam (default: infer.mask_sigma, 4)")
    parser.add_argument("--no-mask", action="store_true",
                        help="moment-0 of every unblanked voxel, without the noise mask")
    parser.add_argument("--centre", choices=("flux", "header"), default=None,
                        help="centre of the model grid: flux-weighted (default) or CRVAL")
    parser.add_argument("--coverage", choices=("emission", "centre"), default=None,
                        help="region predicted: emission (default: overlapping model fields "
                             "over all the masked moment-0 emission, blended without seams) "
                             "or centre (the central model field only)")
    parser.add_argument("--tile-overlap", type=float, default=None, metavar="FRACTION",
                        help="overlap of neighbouring model fields, fraction of a field "
                             "(default: infer.tile_overlap, 0.5)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: infer.out_dir, 'inferred')")
    parser.add_argument("--plot", action="store_true",
                        help="also write <output>.png: the input map with the prediction's "
                             "contours, and the prediction")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace existing outputs (inputs are never replaced)")


def _settings(args: argparse.Namespace, config: Config):
    options = {"model": "--model", "out_dir": "--out", "samples": "--samples",
               "steps": "--steps", "mask_sigma": "--mask-sigma", "centre": "--centre",
               "overwrite": "--overwrite", "coverage": "--coverage",
               "tile_overlap": "--tile-overlap"}
    update = {key: getattr(args, opt[2:].replace("-", "_")) for key, opt in options.items()
              if key != "out_dir"}
    update["out_dir"] = args.out
    if getattr(args, "no_mask", False):
        if args.mask_sigma is not None:
            return None, "--no-mask and --mask-sigma exclude each other"
        update["mask_sigma"] = None
    update = {key: value for key, value in update.items()
              if value is not None or (key == "mask_sigma" and getattr(args, "no_mask", False))}
    try:
        return config.infer.model_validate({**config.infer.model_dump(), **update}), None
    except ValidationError as exc:
        err = exc.errors()[0]
        option = options.get(str(err["loc"][0]), str(err["loc"][0]))
        return None, f"{option}: {err['msg']}"


def _best_model_for(target: str, settings):
    """``--target`` without a model: the registry's best model for it (logged), or a problem."""
    from alchemy_obs.infer.registry import RegistryError, best_model, registry_file

    try:
        found = best_model(target, settings.registry)
    except RegistryError as exc:
        return settings, str(exc)
    if found is None:
        where = registry_file(settings.registry).resolve()
        return settings, (f"--target {target}: no registered model predicts {target!r} "
                          f"(registry {where}); name one with --model")
    name, entry = found
    model = entry.metrics.get("model", {})
    score = (f"held-out profile error {model['profile_abs_dex']:.3f} dex"
             if isinstance(model.get("profile_abs_dex"), (int, float)) else "no recorded metrics")
    kind = ", demonstration model" if entry.demonstration else ""
    log.info("--target %s: using model %s (version %s, %s%s), the registry's best for %s",
             target, name, entry.version, score, kind, target)
    return settings.model_copy(update={"model": name}), None


def run(args: argparse.Namespace, config: Config) -> int:
    """Process every input; returns 0 if all succeeded, 1 if any failed, 2 on usage errors."""
    import astropy.units as u
    from tqdm import tqdm

    from alchemy_obs.infer.errors import InferError
    from alchemy_obs.infer.pipeline import infer_file, load_translator
    from alchemy_obs.infer.read import parse_beam

    settings, problem = _settings(args, config)
    if problem is None and settings.model is None and args.target is not None:
        settings, problem = _best_model_for(args.target, settings)
    if problem is None and settings.model is None:
        problem = "--model: required (or --target, or set infer.model in the configuration)"
    beam = None
    if problem is None and args.beam is not None:
        try:
            beam = parse_beam(args.beam)
        except ValueError as exc:
            problem = str(exc)
    distance = None
    if problem is None and args.distance is not None:
        try:
            distance = parse_distance(args.distance)
        except UsageError as exc:
            problem = str(exc)
    if problem is None and settings.out_dir.exists() and not settings.out_dir.is_dir():
        problem = f"--out {settings.out_dir}: is a file, not a folder"
    if problem is not None:
        print(f"alchemy-obs infer: {problem}", file=sys.stderr)
        return 2
    device = None if config.device == "auto" else config.device
    try:
        model = load_translator(settings.model, settings.registry, device=device)
    except InferError as exc:
        print(f"alchemy-obs infer: {exc}", file=sys.stderr)
        return 2
    if args.target is not None and args.target != model.target:
        print(f"alchemy-obs infer: --target {args.target}: model {model.name} predicts "
              f"{model.target!r}", file=sys.stderr)
        return 2
    if model.demonstration:
        log.warning("model %s is a demonstration model trained on synthetic galaxies: "
                    "its maps are not a science result", model.name)
    failures: list[str] = []
    done = skipped = 0
    for path in tqdm(args.inputs, desc="infer", unit="file", disable=True if len(args.inputs) < 2 else None):
        try:
            result = infer_file(
                path, model, settings.out_dir, beam=beam, distance=distance,
                samples=settings.samples, steps=settings.steps, mask_sigma=settings.mask_sigma,
                mask_smooth_beams=settings.mask_smooth_beams,
                centre=settings.centre, overwrite=settings.overwrite, seed=config.seed,
                target=args.target, beam_tolerance=settings.beam_tolerance,
                protected=tuple(args.inputs), plot=args.plot, coverage=settings.coverage,
                tile_overlap=settings.tile_overlap,
            )
        except InferError as exc:
            failures.append(str(exc))
            tqdm.write(f"alchemy-obs infer: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # a bug or an unforeseen file: report it, go on with the batch
            log.debug("traceback of %s", path, exc_info=True)
            line = str(InferError(path, f"unexpected {type(exc).__name__}: {exc} (run with -v)"))
            failures.append(line)
            tqdm.write(f"alchemy-obs infer: {line}", file=sys.stderr)
            continue
        if result.skipped:
            skipped += 1
            log.info("%s: %s is up to date (same input, model and options)", path, result.output)
            continue
        done += 1
        log.info("%s -> %s (distance %.2f Mpc from %s)", path, result.output,
                 result.distance.to_value(u.Mpc), result.distance_source)
    note = f", {skipped} up to date" if skipped else ""
    print(f"alchemy-obs infer: {done} succeeded{note}, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0
