"""``alchemy-obs dynamics-check``: a predicted dark-matter map against the rotation curve."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alchemy_obs.config import Config

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

DESCRIPTION = """\
Check a predicted dark-matter map (a FITS map in Msun/kpc^2 on a galaxy's WCS, as written by
'alchemy-obs infer') against the galaxy's rotation curve. NFW and cored haloes are fitted to
the dark-matter part of the curve (observed minus baryons, for a SPARC rotmod file or a CSV
with r, v, err, v_gas, v_disk[, v_bul]), refitted at both ends of the disc mass-to-light
range, and projected along the line of sight as the training maps were (the whole halo to
r200, or a slab of maps.slab_kpc). Prints, and writes as ECSV and PNG, the predicted and
dynamical dark-matter mass inside cylinders of radius R and their ratio in dex. Radii whose
cylinder reaches blank map pixels or leaves the map are flagged, with no mass.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``alchemy-obs dynamics-check`` (each overrides the ``dynamics`` section)."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("map", type=Path, metavar="MAP",
                        help="predicted dark-matter FITS map (BUNIT a surface density)")
    parser.add_argument("--curve", type=Path, required=True, metavar="FILE",
                        help="rotation curve and mass model: SPARC *_rotmod.dat, or CSV with "
                             "columns r (kpc), v, err, v_gas, v_disk[, v_bul] (km/s)")
    parser.add_argument("--distance", default=None, metavar="MPC",
                        help="distance, in Mpc unless a unit is given (default: the map's "
                             "DISTANCE card); the curve is moved to it")
    parser.add_argument("--centre", default=None, metavar="HOW",
                        help="galaxy centre: model (CENLON/CENLAT of an infer output), flux, "
                             "header (CRVAL) or LON,LAT in degrees (default: dynamics.centre)")
    parser.add_argument("--radii", default=None, metavar="R1,R2,...",
                        help="cylinder radii in kpc for the table (default: 8 up to the last "
                             "radius of the curve)")
    parser.add_argument("--depth", default=None, metavar="KPC",
                        help="line-of-sight depth of the training maps in kpc, or 'full' for "
                             "the whole halo to r200 (default: maps.slab_kpc)")
    parser.add_argument("--ml-disk", type=float, default=None, metavar="Y",
                        help="nominal disc mass-to-light ratio (default: dynamics.ml_disk)")
    parser.add_argument("--ml-range", default=None, metavar="LO,HI",
                        help="disc mass-to-light range of the band (default: "
                             "dynamics.ml_disk_range)")
    parser.add_argument("--ml-bulge", type=float, default=None, metavar="Y",
                        help="bulge mass-to-light ratio (default: dynamics.ml_bulge)")
    parser.add_argument("--haloes", default=None, metavar="NAMES",
                        help="comma-separated halo models: nfw, burkert, iso (default: "
                             "dynamics.haloes)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: dynamics.out_dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs")


def _floats(text: str, option: str, count: int | None = None) -> list[float]:
    from alchemy_obs.errors import UsageError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated numbers") from None
    if not values or (count is not None and len(values) != count):
        raise UsageError(f"{option} {text!r}: expected {count or 'some'} comma-separated numbers")
    return values


def _outputs(map_path: Path, out_dir: Path) -> tuple[Path, Path]:
    """``OUT/<map stem>_dynamics.ecsv`` and ``.png``."""
    name = map_path.name
    for suffix in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out_dir / f"{name}_dynamics.ecsv", out_dir / f"{name}_dynamics.png"


def run(args: argparse.Namespace, config: Config) -> int:
    """Run the check; 0 on success, 2 (through the package error handler) on bad input."""
    import astropy.units as u
    import numpy as np
    from pydantic import ValidationError

    from alchemy_obs.cli_checks import check_input_file, check_output_folder, parse_distance
    from alchemy_obs.dynamics.check import (
        dynamics_check,
        plot_check,
        read_mass_map,
        write_table,
    )
    from alchemy_obs.dynamics.rotmod import read_rotation_curve
    from alchemy_obs.errors import UsageError

    check_input_file(args.map, "MAP", "FITS map")
    check_input_file(args.curve, "--curve", "rotation curve")
    update = {"ml_disk": args.ml_disk, "ml_bulge": args.ml_bulge, "centre": args.centre,
              "out_dir": args.out}
    if args.ml_range is not None:
        update["ml_disk_range"] = _floats(args.ml_range, "--ml-range", 2)
    if args.haloes is not None:
        update["haloes"] = [h.strip() for h in args.haloes.split(",") if h.strip()]
    try:
        settings = config.dynamics.model_validate(
            {**config.dynamics.model_dump(), **{k: v for k, v in update.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    lo, hi = settings.ml_disk_range
    if not lo <= settings.ml_disk <= hi:
        raise UsageError(f"--ml-disk {settings.ml_disk:g}: outside the range {lo:g}-{hi:g}")
    distance = None if args.distance is None else parse_distance(args.distance)
    if args.depth is None:
        depth = None if config.maps.slab_kpc is None else config.maps.slab_kpc * u.kpc
    elif args.depth.strip().lower() == "full":
        depth = None
    else:
        value = _floats(args.depth, "--depth", 1)[0]
        if not value > 0:
            raise UsageError(f"--depth {args.depth}: must be > 0 kpc (or 'full')")
        depth = value * u.kpc
    radii = None if args.radii is None else np.array(_floats(args.radii, "--radii")) * u.kpc
    if radii is not None and not np.all(radii.value > 0):
        raise UsageError(f"--radii {args.radii}: radii must be > 0")
    out_dir = check_output_folder(settings.out_dir, "--out")
    table_path, png_path = _outputs(args.map, out_dir)
    if not args.overwrite:
        for p in (table_path, png_path):
            if p.exists():
                raise UsageError(f"{p}: exists; pass --overwrite to replace it")

    mass_map = read_mass_map(args.map, distance=distance, centre=settings.centre)
    if mass_map.header.get("DEMOMODL"):
        log.warning("%s was made by a demonstration model: its maps are not a science result",
                    args.map)
    curve = read_rotation_curve(args.curve)
    check = dynamics_check(
        mass_map, curve, radius=radii, haloes=tuple(settings.haloes), ml_disk=settings.ml_disk,
        ml_disk_range=settings.ml_disk_range, ml_bulge=settings.ml_bulge, depth=depth,
    )
    print(check.summary())
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(check, table_path, overwrite=True)
    plot_check(check, png_path, overwrite=True)
    log.info("wrote %s and %s", table_path, png_path)
    return 0
