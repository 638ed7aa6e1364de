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


STAGES: list[tuple[str, Stage]] = [
    ("synthetic galaxies", _stage_synth),
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
