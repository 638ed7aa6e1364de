"""``alchemy-obs train``: train a translator from an experiment configuration.

Rerunning the same command resumes from the run's latest checkpoint. For several GPUs (or
CPU processes) start it with ``torchrun --nproc_per_node N -m alchemy_obs.cli train ...``.
"""

from __future__ import annotations

import argparse

from alchemy_obs.config import Config

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-resume", action="store_true",
                        help="start from scratch even if the run folder has checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace, config: Config) -> int:
    from alchemy_obs.translate.train import train

    path = train(config, resume=not args.no_resume, progress=not args.no_progress)
    print(path)
    return 0
