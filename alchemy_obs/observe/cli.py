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
import time
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.wcs.utils import proj_plane_pixel_scales

from alchemy_obs.cli_checks import check_input_file, check_input_folder, check_output_folder
from alchemy_obs.config import Config
from alchemy_obs.errors import UsageError
from alchemy_obs.observe.fits import write_mock_products

log = logging.getLogger(__name__)

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
    raise UsageError(f"--view {name!r}: unknown view; use faceon, edgeon, random<k> or none")


def mock_galaxy(path: Path, config: Config, view: str = "faceon") -> tuple[str, dict]:
    """Mock observations of one cutout seen in one view, over the maps' field of view.

    Returns
    -------
    label : str
        Where the galaxy came from.
    mocks : dict of str to HIMock or ContinuumMock
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
    _, mocks = mock_view_maps(galaxy, rotation, extent, map_npix=config.mock.npix, mock=config.mock,
                              observe=config.observe, maps=config.maps)
    return source.label, mocks


def mock_summary(kind: str, m) -> str:
    """One line a radio astronomer reads first: channels, beam, noise, field."""
    beam = m.beam
    place = m.placement
    kpc = (np.sqrt(beam.major * beam.minor).to_value(u.rad)
           * place.angular_diameter_distance.to_value(u.kpc))
    rms = np.median(m.result.noise_rms.to_value(u.Jy / u.beam))
    rms_text = f"{rms * 1e3:.3g} mJy/beam" if rms >= 1e-4 else f"{rms * 1e6:.3g} uJy/beam"
    freqs = m.result.frequencies.to(u.GHz)
    if kind == "hi":
        band = (f"{len(freqs)} channels of {m.channel_velocity_width().to_value(u.km / u.s):.1f} km/s "
                f"({freqs.min().value:.4f}-{freqs.max().value:.4f} GHz)")
    else:
        band = f"{freqs.mean().value:.2f} GHz"
    pixel_deg = proj_plane_pixel_scales(m.wcs)[1]
    field = pixel_deg * 60.0 * m.result.image.shape[-1]
    return (f"{kind}: {band}; beam {beam.major.to_value(u.arcsec):.1f}\" x "
            f"{beam.minor.to_value(u.arcsec):.1f}\" PA {beam.pa.to_value(u.deg):.0f} deg "
            f"({kpc:.2f} kpc at {place.angular_diameter_distance.to_value(u.Mpc):.1f} Mpc); "
            f"rms {rms_text}{' per channel' if kind == 'hi' else ''}; field {field:.1f}'")


def mock_settings_hash(config: Config) -> str:
    """Hash of the settings a mock depends on (``SETTINGS`` card of its FITS files)."""
    from alchemy_obs.config import config_hash

    return config_hash(config.mock, config.observe, config.maps)


def _cutouts(path: Path | None) -> list[Path]:
    if path is not None and path.is_file():
        return [path]
    check_input_folder(path, "--input", "folder of the cutouts the maps were built from")
    paths = sorted(path.glob("*.hdf5"))
    if not paths:
        raise UsageError(f"--input {path}: no *.hdf5 cutout files")
    return paths


def _up_to_date(files: list[Path], out: Path, stem: str, config: Config) -> bool:
    """Whether ``files`` hold every configured product, written with these settings and seed."""
    from astropy.io import fits

    if any(not (out / f"{stem}_{kind}_image.fits").is_file() for kind in config.mock.products):
        return False
    want = mock_settings_hash(config)
    for f in files:
        try:
            header = fits.getheader(f)
        except OSError:
            return False
        if header.get("SETTINGS") != want or header.get("SEED") != config.seed:
            return False
    return True


def run(args: argparse.Namespace, config: Config) -> int:
    if args.galaxy is not None:
        check_input_file(args.galaxy, "--galaxy", "cutout file (.hdf5)")
        out = check_output_folder(args.out or config.mock.out_dir, "--out")
        stem = f"{args.galaxy.stem}_{args.view}"
        earlier = sorted(out.glob(f"{stem}_*.fits")) if out.is_dir() else []
        if earlier and not args.overwrite:  # decided before the mock is made, not after
            if _up_to_date(earlier, out, stem, config):
                log.info("%s: the mocks of %s (%s view) are up to date (same settings and "
                         "seed); nothing to do", out, args.galaxy.name, args.view)
                for f in earlier:
                    print(f)
                return 0
            raise UsageError(f"--out {out}: {earlier[0].name} and {len(earlier) - 1} more files of "
                             f"this galaxy and view exist, made with other settings; pass "
                             f"--overwrite to replace them")
        log.info("mock of %s (%s view): sky model, %s observation, imaging ...", args.galaxy.name,
                 args.view, config.observe.mode)
        start = time.perf_counter()
        _, mocks = mock_galaxy(args.galaxy, config, args.view)
        files = write_mock_products(mocks, out, stem, object_name=args.galaxy.stem,
                                    settings=mock_settings_hash(config), seed=config.seed,
                                    overwrite=args.overwrite)
        for kind, m in mocks.items():
            log.info("%s", mock_summary(kind, m))
        log.info("%d FITS files in %s (%.1f s)", len(files), out, time.perf_counter() - start)
        for f in files:
            print(f)
        return 0
    from alchemy_obs.maps.build import cutout_sources
    from alchemy_obs.observe.mock import mock_dataset

    report = mock_dataset(args.dataset, cutout_sources(_cutouts(args.input)), mock=config.mock,
                          observe=config.observe, maps=config.maps, overwrite=args.overwrite)
    print(f"mock: {len(report.written)} galaxies written, {len(report.skipped)} already "
          f"complete, {len(report.failed)} failed")
    if report.dataset is not None:
        print(f"dataset: {report.dataset}")
    for label, error in report.failed.items():
        print(f"FAILED {label}: {error}", file=sys.stderr)
    return 1 if report.failed else 0
