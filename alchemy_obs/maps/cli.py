"""``alchemy-obs maps``: project galaxies into the map dataset.

Examples::

    alchemy-obs maps --source synthetic --set synth.n_galaxies=20 --set maps.npix=128
    alchemy-obs maps --source cutouts --input tng_cache/TNG50-1/snapshot_099 --workers 4
    alchemy-obs maps --source tng --ids 96763 117261
    alchemy-obs maps --source snapshot --ids 96763 --set tng.snapshot_dir=/data/TNG50-1/output

Rerunning the same command resumes: finished galaxies and views are skipped. A galaxy that
fails is reported and skipped; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from alchemy_obs.config import Config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        # maps.build.SOURCES, spelt out: importing maps.build here would load numba and h5py
        # for every alchemy-obs command
        "--source", choices=["synthetic", "cutouts", "tng", "snapshot"], default="synthetic",
        help="where galaxies come from: generate synthetic ones (synth.* settings), a folder "
             "of TNG-layout cutout files (--input), the TNG web API (--ids), or a local "
             "snapshot (--ids, tng.snapshot_dir); default: synthetic",
    )
    parser.add_argument("--input", type=Path, default=None,
                        help="folder of cutout_<id>.hdf5 files (--source cutouts)")
    parser.add_argument("--ids", type=int, nargs="+", default=None, metavar="ID",
                        help="subhalo ids (--source tng or snapshot)")
    parser.add_argument("--out", type=Path, default=None,
                        help="dataset folder; default: maps.out_dir")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes rendering galaxies in parallel, 1 or more (default 1)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="also save a grid of every domain for the first galaxy's views")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace shards written with other map settings (without it they "
                             "are refused; shards with the same settings are kept or completed)")


def _sources(args: argparse.Namespace, config: Config):
    from alchemy_obs.cli_checks import check_input_folder
    from alchemy_obs.maps.build import galaxy_sources

    if args.source == "cutouts":
        check_input_folder(args.input, "--input", "folder of cutout files (--source cutouts)")
    return galaxy_sources(args.source, inputs=None if args.input is None else [args.input],
                          ids=args.ids, synth=config.synth, tng=config.tng)


def _refuse_other_settings(out: Path, config: Config) -> None:
    """Shards of this folder written with other map settings are not silently replaced."""
    import h5py

    from alchemy_obs.errors import UsageError
    from alchemy_obs.maps.build import maps_hash

    wanted = maps_hash(config.maps)
    other = []
    for shard in sorted(Path(out, "shards").glob("galaxy_*.h5")):
        try:
            with h5py.File(shard, "r") as f:
                if f.attrs.get("config_hash") != wanted:
                    other.append(shard.name)
        except OSError:
            continue  # unreadable (an interrupted write): rebuilt, as a rerun resumes
    if other:
        raise UsageError(f"--out {out}: {len(other)} shards ({other[0]}, ...) were written with "
                         "other map settings; pass --overwrite to replace them, or choose "
                         "another --out")


def run(args: argparse.Namespace, config: Config) -> int:
    from alchemy_obs.maps.build import build_dataset
    from alchemy_obs.maps.plots import plot_views

    from alchemy_obs.cli_checks import check_output_folder
    from alchemy_obs.errors import UsageError

    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be 1 or more")
    out = check_output_folder(args.out or config.maps.out_dir, "--out")
    if not args.overwrite:
        _refuse_other_settings(out, config)
    try:
        sources = _sources(args, config)
        report = build_dataset(sources, out, config.maps, workers=args.workers)
    except ValueError as exc:
        print(f"alchemy-obs maps: error: {exc}", file=sys.stderr)
        return 2
    print(f"maps: {len(report.written)} galaxies written, {len(report.skipped)} already "
          f"complete, {len(report.failed)} failed")
    if report.dataset is not None:
        print(f"dataset: {report.dataset} (views per split: {report.split_counts})")
        if args.plot is not None:
            from alchemy_obs.maps.store import MapStore

            store = MapStore(report.dataset)
            first = store.meta["galaxy_id"][0]
            png = plot_views(store, [i for i in range(len(store))
                                     if store.meta["galaxy_id"][i] == first], args.plot)
            print(f"plot: {png}")
    for label, error in report.failed.items():
        print(f"FAILED {label}: {error}", file=sys.stderr)
    return 1 if report.failed else 0
