"""``alchemy-obs mock``: SKA-MID mock observations of one galaxy (FITS) or of a whole dataset.

Examples::

    # one galaxy, face-on, HI cube and continuum image as FITS in mocks/
    alchemy-obs mock --galaxy synthetic/cutout_0.hdf5 --view faceon
    # every galaxy of a map dataset: adds hi_mom0, hi_nhi and continuum to each view
    alchemy-obs mock --dataset maps --input synthetic --set observe.mode=fast

Settings come from the ``mock`` (sky model) and ``observe`` (telescope, track, imaging)
sections. Rerunning the dataset mode skips shards that already hold the mock domains.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits

from alchemy_obs.config import Config

log = logging.getLogger(__name__)

_PLANES = ("image", "dirty", "residual", "model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--galaxy", type=Path, metavar="HDF5",
                      help="one TNG-layout cutout file: write its mock observations as FITS")
    what.add_argument("--dataset", type=Path, metavar="DIR",
                      help="a map dataset folder (alchemy-obs maps): add the mock domains to "
                           "every view of every galaxy found in --input")
    parser.add_argument("--input", type=Path, default=None,
                        help="folder (or file) of the cutouts the dataset was built from")
    parser.add_argument("--view", default="faceon",
                        help="--galaxy: faceon, edgeon, random0, ... (as in maps) or 'none' "
                             "(simulation axes); default faceon")
    parser.add_argument("--out", type=Path, default=None,
                        help="--galaxy: output folder; default mock.out_dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing FITS files or mock domains")


def _view_matrix(galaxy, galaxy_id: int, name: str, config: Config) -> np.ndarray:
    from alchemy_obs.maps.geometry import galaxy_views

    if name == "none":
        return np.eye(3)
    n_random = int(name[6:]) + 1 if name.startswith("random") and name[6:].isdigit() else 0
    views = galaxy_views(galaxy.stellar_angular_momentum(), galaxy_id, n_random=n_random,
                         face_on=True, edge_on=True, seed=config.maps.seed)
    for v in views:
        if v.name == name:
            return np.asarray(v.matrix)
    raise ValueError(f"unknown view {name!r}; use faceon, edgeon, random<k> or none")


def mock_galaxy(path: Path, config: Config, view: str = "faceon") -> tuple[str, dict]:
    """Mock observations of one cutout seen in one view, over the maps' field of view.

    Returns
    -------
    label : str
        Where the galaxy came from.
    mocks : dict of str to Mock
        ``"hi"`` and/or ``"continuum"`` (``mock.products``).
    """
    from alchemy_obs.maps.build import cutout_sources
    from alchemy_obs.maps.geometry import map_extent
    from alchemy_obs.maps.render import galaxy_field
    from alchemy_obs.observe.mock import mock_view_maps

    source = cutout_sources([path])[0]
    galaxy = source.load()
    rotation = _view_matrix(galaxy, source.galaxy_id, view, config)
    extent = map_extent(galaxy_field(galaxy, config.maps)[0]).value
    _, mocks = mock_view_maps(galaxy, rotation, extent, config.mock.npix, config.mock,
                              config.observe, config.maps)
    return source.label, mocks


def write_mock_fits(mocks: dict, out: Path, stem: str, label: str = "",
                    overwrite: bool = False) -> list[Path]:
    """Write mocks as FITS: ``<stem>_<product>_<plane>.fits`` for the restored, dirty,
    residual and CLEAN-model planes and the sky model (Jy/pixel); HI also gets its moment 0
    (Jy/beam km/s) and column density (cm^-2) maps. Writes are atomic.

    Returns
    -------
    list of Path
        The files written.
    """
    from alchemy_obs.observe.fits import write_fits, write_hdulist
    from alchemy_obs.physics import radio

    written = []
    for kind, m in mocks.items():
        restfreq = radio.HI_REST_FREQUENCY if kind == "hi" else None
        for plane in _PLANES:
            written.append(write_fits(m.result, out / f"{stem}_{kind}_{plane}.fits", m.observation,
                                      plane=plane, restfreq=restfreq, object_name=label,
                                      overwrite=overwrite))
        sky = fits.PrimaryHDU(np.asarray(m.sky.data.value, np.float32), m.sky.header())
        sky.header["OBJECT"] = label
        written.append(write_hdulist(fits.HDUList([sky]), out / f"{stem}_{kind}_sky.fits", overwrite))
        if kind == "hi":
            for name, image in (("mom0", m.moment0()), ("nhi", m.column_density())):
                hdr = m.wcs.to_header()
                hdr["BUNIT"] = image.unit.to_string("fits")
                beam = m.beam
                hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = (beam.major.to_value(u.deg),
                                                       beam.minor.to_value(u.deg), beam.pa.to_value(u.deg))
                hdr["OBJECT"] = label
                hdu = fits.PrimaryHDU(np.asarray(image.value, np.float32), hdr)
                written.append(write_hdulist(fits.HDUList([hdu]), out / f"{stem}_hi_{name}.fits", overwrite))
    return written


def mock_dataset(dataset: Path, inputs: list[Path], config: Config, overwrite: bool = False) -> dict:
    """Add the mock domains to every shard of ``dataset`` whose galaxy is in ``inputs``.

    Returns
    -------
    dict
        ``{"written": [ids], "skipped": [ids], "failed": {id: message}, "dataset": path}``.
    """
    from alchemy_obs.maps.build import cutout_sources
    from alchemy_obs.maps.store import join_shards, shard_path
    from alchemy_obs.observe.mock import add_mock_domains

    report: dict = {"written": [], "skipped": [], "failed": {}, "dataset": None}
    done = []
    for source in cutout_sources(inputs):
        shard = shard_path(dataset, source.galaxy_id)
        if not shard.exists():
            log.warning("%s: no shard %s (run alchemy-obs maps first); skipped", source.label, shard)
            continue
        try:
            added = add_mock_domains(shard, source.load(), config.mock, config.observe,
                                     config.maps, overwrite=overwrite)
        except Exception as exc:  # one bad galaxy must not stop a campaign
            report["failed"][source.galaxy_id] = f"{type(exc).__name__}: {exc}"
            log.error("galaxy %d (%s) failed: %s", source.galaxy_id, source.label, exc)
            continue
        (report["written"] if added else report["skipped"]).append(source.galaxy_id)
        done.append(source.galaxy_id)
    if done:
        shards = sorted(Path(dataset, "shards").glob("galaxy_*.h5"))
        report["dataset"] = join_shards(shards, Path(dataset) / "dataset.h5",
                                        split_fractions=config.maps.split_fractions,
                                        split_seed=config.maps.split_seed)
    return report


def _cutouts(path: Path | None) -> list[Path]:
    if path is None:
        raise ValueError("--dataset needs --input FOLDER (the cutouts the maps were built from)")
    if path.is_file():
        return [path]
    paths = sorted(path.glob("*.hdf5"))
    if not paths:
        raise ValueError(f"{path}: no *.hdf5 cutout files")
    return paths


def run(args: argparse.Namespace, config: Config) -> int:
    try:
        if args.galaxy is not None:
            if not args.galaxy.is_file():
                raise ValueError(f"{args.galaxy}: no such cutout file")
            out = args.out or config.mock.out_dir
            label, mocks = mock_galaxy(args.galaxy, config, args.view)
            files = write_mock_fits(mocks, out, f"{args.galaxy.stem}_{args.view}", label,
                                    args.overwrite)
            for f in files:
                print(f)
            return 0
        report = mock_dataset(args.dataset, _cutouts(args.input), config, args.overwrite)
    except (ValueError, FileExistsError) as exc:
        print(f"alchemy-obs mock: error: {exc}", file=sys.stderr)
        return 2
    print(f"mock: {len(report['written'])} galaxies written, {len(report['skipped'])} already "
          f"complete, {len(report['failed'])} failed")
    if report["dataset"] is not None:
        print(f"dataset: {report['dataset']}")
    for gid, error in report["failed"].items():
        print(f"FAILED galaxy {gid}: {error}", file=sys.stderr)
    return 1 if report["failed"] else 0
