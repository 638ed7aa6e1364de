"""``alchemy-obs demo``: the whole pipeline on built-in synthetic galaxies.

The demo is a list of stages run in order; each stage reads what the previous ones wrote in
the output folder, skips work that is already there, and logs what it produced. It needs no
network access and no GPU.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

from alchemy_obs.config import Config

log = logging.getLogger(__name__)

Stage = Callable[[Config, Path], None]


def _stage_synth(config: Config, out: Path) -> None:
    from alchemy_obs.sim.plots import plot_particles
    from alchemy_obs.sim.synthetic import write_synthetic_cutouts

    synth = config.synth.model_copy(update={"out_dir": out / "synthetic"})
    paths = write_synthetic_cutouts(synth)
    png = plot_particles(paths, out / "synthetic_particles.png")
    log.info("wrote %d synthetic cutouts and %s", len(paths), png)


def _stage_maps(config: Config, out: Path) -> None:
    """Map 20 synthetic galaxies x 3 views x every domain on 128^2 grids, plot one galaxy.

    These demo sizes apply unless ``synth.n_galaxies`` or ``maps.npix`` are set explicitly
    (``--set`` or a YAML file); the production default grid is 512^2.
    """
    import numpy as np

    from alchemy_obs.maps.build import build_dataset, cutout_sources
    from alchemy_obs.maps.plots import plot_views
    from alchemy_obs.maps.store import MapStore
    from alchemy_obs.sim.synthetic import write_synthetic_cutouts

    synth = config.synth.model_copy(update={"out_dir": out / "synthetic"})
    if "n_galaxies" not in config.synth.model_fields_set:
        synth = synth.model_copy(update={"n_galaxies": max(20, synth.n_galaxies)})
    maps = config.maps.model_copy(update={"out_dir": out / "maps"})
    if "npix" not in config.maps.model_fields_set:
        maps = maps.model_copy(update={"npix": 128})
    paths = write_synthetic_cutouts(synth)
    report = build_dataset(cutout_sources(paths), maps.out_dir, maps)
    for label, error in report.failed.items():
        log.error("demo maps: %s failed: %s", label, error)
    if report.dataset is None:
        raise RuntimeError("demo maps: no galaxy could be mapped")
    store = MapStore(report.dataset)
    first = store.meta["galaxy_id"][0]
    png = plot_views(store, np.flatnonzero(store.meta["galaxy_id"] == first), out / "maps.png")
    log.info("wrote %s: %d views of %d galaxies on %d^2 grids, domains %s; views per split %s; "
             "plot %s", report.dataset, len(store), len(set(store.meta["galaxy_id"])),
             store.npix, ", ".join(store.domains), report.split_counts, png)


def _demo_mock_config(config: Config) -> Config:
    """Demo sizes for mocks (64^2 sky grid, channels of 10 km/s covering the line, fast
    image-plane mode) unless ``mock.npix``, ``mock.channel_width_kms`` or ``observe.mode``
    are set explicitly."""
    demo = {"npix": 64, "channel_width_kms": 10.0}
    mock = config.mock.model_copy(
        update={k: v for k, v in demo.items() if k not in config.mock.model_fields_set})
    observe = config.observe
    if "mode" not in observe.model_fields_set:
        observe = observe.model_copy(update={"mode": "fast"})
    return config.model_copy(update={"mock": mock, "observe": observe})


def _stage_mock(config: Config, out: Path) -> None:
    """SKA-MID mock HI cube and continuum image of the first synthetic galaxy, face-on."""
    from alchemy_obs.observe.cli import mock_galaxy, mock_settings_hash, mock_summary
    from alchemy_obs.observe.fits import write_mock_products
    from alchemy_obs.observe.mock import plot_mock
    from alchemy_obs.sim.synthetic import write_synthetic_cutouts

    synth = config.synth.model_copy(update={"out_dir": out / "synthetic"})
    path = write_synthetic_cutouts(synth)[0]
    mock_config = _demo_mock_config(config)
    _, mocks = mock_galaxy(path, mock_config, "faceon")
    files = write_mock_products(mocks, out / "mocks", f"{path.stem}_faceon", object_name=path.stem,
                                settings=mock_settings_hash(mock_config), seed=config.seed,
                                overwrite=True)
    png = plot_mock(mocks, out / "mock.png")
    for kind, m in mocks.items():
        log.info("%s", mock_summary(kind, m))
    log.info("wrote %d FITS files in %s and %s", len(files), out / "mocks", png)


def _stage_mock_dataset(config: Config, out: Path) -> None:
    """Add the mock domains (hi_mom0, hi_nhi, continuum) to every view of the demo dataset."""
    from alchemy_obs.maps.build import cutout_sources
    from alchemy_obs.observe.mock import mock_dataset

    cutouts = sorted((out / "synthetic").glob("cutout_*.hdf5"))
    mock_config = _demo_mock_config(config)
    report = mock_dataset(out / "maps", cutout_sources(cutouts), mock=mock_config.mock,
                          observe=mock_config.observe, maps=mock_config.maps)
    for label, error in report.failed.items():
        log.error("demo mock dataset: %s failed: %s", label, error)
    if report.dataset is None:
        raise RuntimeError("demo mock dataset: no galaxy got its mock domains")
    log.info("mock domains: %d galaxies written, %d already complete; dataset %s",
             len(report.written), len(report.skipped), report.dataset)


def _stage_infer(config: Config, out: Path) -> None:
    """The released HI -> dark matter model's map of the mock HI cube, with an overlay PNG.

    Uses ``infer.model`` when set, else the shipped :data:`DEMO_MODEL` of ``infer.registry``
    (default: the installed package's registry, see
    :func:`alchemy_obs.infer.registry.registry_file`).
    """
    from alchemy_obs.infer import infer_file, load_translator

    cubes = sorted((out / "mocks").glob("*_hi_image.fits"))
    if not cubes:
        raise RuntimeError(f"demo infer: no mock HI cube (*_hi_image.fits) in {out / 'mocks'}")
    device = None if config.device == "auto" else config.device
    model = load_translator(config.infer.model or DEMO_MODEL, config.infer.registry, device)
    result = infer_file(cubes[0], model, out / "inferred", overwrite=True, plot=True,
                        seed=config.seed, samples=config.infer.samples, steps=config.infer.steps,
                        coverage=config.infer.coverage, tile_overlap=config.infer.tile_overlap)
    log.info("%s -> %s and %s (model %s%s; distance %.1f Mpc from %s)", cubes[0],
             result.output, result.output.with_suffix(".png"), model.name,
             ", a demonstration model: not a science result" if model.demonstration else "",
             result.distance.to_value("Mpc"), result.distance_source)


#: Registry name of the released HI -> dark matter model, used by the demo's infer stage.
DEMO_MODEL = "hi2dm"

STAGES: list[tuple[str, Stage]] = [
    ("synthetic galaxies", _stage_synth),
    ("physical maps dataset", _stage_maps),
    ("mock SKA-MID observation", _stage_mock),
    ("mock domains of the dataset", _stage_mock_dataset),
    ("dark-matter inference with the released model", _stage_infer),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("demo_output"),
        help="output folder (default: demo_output); rerunning resumes where it stopped",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, stage in STAGES:
        t0 = time.perf_counter()
        log.info("demo: %s ...", name)
        stage(config, out)
        log.info("demo: %s done in %.1f s", name, time.perf_counter() - t0)
    log.info("demo finished; results in %s", out.resolve())
    return 0
