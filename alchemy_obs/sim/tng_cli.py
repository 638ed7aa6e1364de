"""``alchemy-obs tng``: find IllustrisTNG galaxies and fetch their particles.

Three sub-commands::

    alchemy-obs tng search --min-mass 1e10 --max-mass 1e11 --min-particles 20000 --limit 20
    alchemy-obs tng download 96763 117261
    alchemy-obs tng snapshot --snapshot-dir /data/TNG50-1/output --subhalo 96763 --out c.hdf5

``search`` and ``download`` use the web API (key from ``TNG_API_KEY`` or ``tng.api_key``);
``snapshot`` reads a local copy of the simulation output and needs no network.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tqdm import tqdm

from alchemy_obs.config import Config


def _add_common(parser: argparse.ArgumentParser) -> None:
    # Accept --config/--set/-v after the sub-command too; SUPPRESS keeps values given before it.
    parser.add_argument("--config", metavar="YAML", default=argparse.SUPPRESS,
                        help="configuration file (see configs/)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", dest="overrides",
                        default=argparse.SUPPRESS,
                        help="override one configuration value, e.g. --set tng.simulation=TNG100-1")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debugging detail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``search``, ``download`` and ``snapshot`` sub-commands."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Find IllustrisTNG galaxies (subhaloes) and fetch their particles, from the web API\n"
        "or from a local copy of the simulation output.\n\n"
        "examples:\n"
        "  alchemy-obs tng search --min-mass 1e10 --max-mass 1e11 --min-particles 20000\n"
        "  alchemy-obs tng download 96763 117261\n"
        "  alchemy-obs tng snapshot --snapshot-dir /data/TNG50-1/output --subhalo 96763 "
        "--out cutout_96763.hdf5"
    )
    parser.epilog = (
        "The web API needs a free account: register at\n"
        "  https://www.tng-project.org/users/register/\n"
        "then copy the API key from your profile page into the TNG_API_KEY environment variable."
    )
    sub = parser.add_subparsers(dest="tng_command", metavar="SUBCOMMAND", required=True)

    search = sub.add_parser(
        "search", help="list subhaloes (galaxies) in a mass range",
        description="List subhaloes of one snapshot within a mass range and with at least a "
                    "number of particles, with their stellar and gas masses, star formation "
                    "rate and particle counts.",
    )
    search.add_argument("--snapshot", type=int, default=None,
                        help="snapshot number (99 is z=0 in TNG); default: tng.snapshot")
    search.add_argument("--min-mass", type=float, default=None, metavar="MSUN",
                        help="lowest mass in Msun (physical, no h), e.g. 1e10")
    search.add_argument("--max-mass", type=float, default=None, metavar="MSUN",
                        help="highest mass in Msun, e.g. 1e11")
    search.add_argument("--mass-type", choices=["stars", "gas", "dm", "total"], default="stars",
                        help="which mass the bounds apply to (default: stars)")
    search.add_argument("--min-particles", type=int, default=None, metavar="N",
                        help="fewest particles/cells of --count-type (resolution cut)")
    search.add_argument("--count-type", choices=["stars", "gas", "dm", "total"], default="total",
                        help="which particles --min-particles counts (default: all types)")
    search.add_argument("--limit", type=int, default=20, help="most rows to list (default 20)")
    _add_common(search)

    download = sub.add_parser(
        "download", help="download particle cutouts of subhaloes into the cache",
        description="Download each subhalo's gas, dark matter, star and black-hole particles "
                    "(the fields the maps need) into tng.cache_dir. Files already there and "
                    "complete are not fetched again, so an interrupted run can simply be repeated.",
    )
    download.add_argument("ids", type=int, nargs="+", metavar="ID", help="Subfind subhalo IDs")
    download.add_argument("--snapshot", type=int, default=None,
                          help="snapshot number; default: tng.snapshot")
    _add_common(download)

    snap = sub.add_parser(
        "snapshot", help="cut one subhalo out of a local snapshot (no network)",
        description="Read one subhalo's particles from a local TNG output folder (snapdir_NNN, "
                    "groups_NNN and the offsets file) and write them as a cutout file.",
    )
    snap.add_argument("--snapshot-dir", type=Path, default=None,
                      help="simulation output folder; default: tng.snapshot_dir")
    snap.add_argument("--snapshot", type=int, default=None, help="snapshot number; default: tng.snapshot")
    snap.add_argument("--subhalo", type=int, required=True, metavar="ID", help="Subfind subhalo ID")
    snap.add_argument("--out", type=Path, required=True, help="cutout HDF5 file to write")
    _add_common(snap)


def run(args: argparse.Namespace, config: Config) -> int:
    """Run the chosen sub-command; returns the exit status (1 on any failed subhalo)."""
    from alchemy_obs.sim.snapshot import SnapshotError
    from alchemy_obs.sim.tng import TNGError

    commands = {"search": _search, "download": _download, "snapshot": _snapshot}
    try:
        return commands[args.tng_command](args, config)
    except (TNGError, SnapshotError) as exc:
        print(f"alchemy-obs tng {args.tng_command}: error: {exc}", file=sys.stderr)
        return 1


def _search(args: argparse.Namespace, config: Config) -> int:
    from alchemy_obs.physics.units import mass_factor
    from alchemy_obs.sim.tng import TNGClient

    client = TNGClient(config.tng)
    hits = client.search_subhalos(
        snapshot=args.snapshot, min_mass=args.min_mass, max_mass=args.max_mass,
        mass_type=args.mass_type, min_particles=args.min_particles, count_type=args.count_type,
        limit=args.limit,
    )
    if not hits:
        print("no subhaloes match", file=sys.stderr)
        return 0
    to_msun = mass_factor(client.hubble_param())
    columns = ("id", "log10(M/Msun)", "log10(M*/Msun)", "log10(Mgas/Msun)", "N_gas", "N_stars",
               "N_dm", "SFR/(Msun/yr)")
    widths = [max(len(c), 9) for c in columns]

    def row(cells: tuple[object, ...]) -> str:
        return " ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths))

    def log_mass(code: float) -> str:
        return f"{math.log10(code * to_msun):.3f}" if code > 0 else "-inf"

    lines = [row(columns), row(tuple("-" * w for w in widths))]
    for hit in tqdm(hits, desc="subhalo details", unit="subhalo", file=sys.stderr,
                    disable=True if len(hits) < 5 else None):
        doc = client.subhalo(hit.id, hit.snapshot)
        lines.append(row((
            hit.id, f"{hit.mass_log_msun:.3f}", log_mass(doc["mass_stars"]),
            log_mass(doc["mass_gas"]), doc["len_gas"], doc["len_stars"], doc["len_dm"],
            f"{hit.sfr:.3g}",
        )))
    print("\n".join(lines))
    return 0


def _download(args: argparse.Namespace, config: Config) -> int:
    from alchemy_obs.sim.tng import TNGClient, TNGError

    client = TNGClient(config.tng)
    failed = []
    for sid in tqdm(args.ids, desc="subhaloes", unit="subhalo", file=sys.stderr,
                    disable=True if len(args.ids) < 2 else None):
        with tqdm(desc=f"cutout {sid}", unit="B", unit_scale=True, unit_divisor=1024,
                  file=sys.stderr, leave=False, disable=None) as bar:
            def progress(done: int, total: int | None) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                path = client.download_cutout(sid, args.snapshot, progress=progress)
            except TNGError as exc:
                failed.append(sid)
                tqdm.write(f"alchemy-obs tng download: error: {exc}", file=sys.stderr)
                continue
        tqdm.write(str(path), file=sys.stdout)
    if failed:
        print(f"{len(failed)} of {len(args.ids)} downloads failed: {failed}; rerun to retry",
              file=sys.stderr)
        return 1
    return 0


def _snapshot(args: argparse.Namespace, config: Config) -> int:
    from alchemy_obs.sim.snapshot import extract_subhalo

    folder = args.snapshot_dir or config.tng.snapshot_dir
    if folder is None:
        print("alchemy-obs tng snapshot: give --snapshot-dir or set tng.snapshot_dir",
              file=sys.stderr)
        return 2
    snap = config.tng.snapshot if args.snapshot is None else args.snapshot
    path = extract_subhalo(folder, snap, args.subhalo, args.out)
    print(path)
    return 0
