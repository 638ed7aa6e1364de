"""``train-translator`` and ``evaluate-translator`` flows.

Training is one task: a single process for CPU or one GPU, ``torchrun`` for several GPUs of
one node (torch DDP; the training loop reads the ranks torchrun sets). The package's
training loop checkpoints and resumes by itself, so a retried or rerun flow continues the
same run instead of starting over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from alchemy_obs.flows.common import flow_config

__all__ = ["train_translator", "evaluate_translator", "torchrun_command"]


def torchrun_command(gpus: int, config: str | None, overrides: list[str]) -> list[str]:
    """The command line that trains on ``gpus`` processes of this node with torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={gpus}", "-m", "alchemy_obs.cli", "train", "--no-progress"]
    if config:
        cmd += ["--config", config]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


@task(name="train")
def _train(config: str | None, overrides: list[str], gpus: int) -> str:
    log = get_run_logger()
    if gpus > 1:
        cmd = torchrun_command(gpus, config, overrides)
        log.info("launching %s", " ".join(cmd))
        subprocess.run(cmd, check=True, env=dict(os.environ))
        cfg = flow_config(config, overrides)
        return str(Path(cfg.train.out_dir) / "model")
    from alchemy_obs.translate.train import train

    return str(train(flow_config(config, overrides), progress=False))


@flow(name="train-translator")
def train_translator(config: str | None = None, overrides: list[str] | None = None,
                     gpus: int = 0) -> str:
    """Train a translator; returns the folder of the trained model.

    Parameters
    ----------
    config : str
        Experiment configuration, e.g. ``configs/experiments/indi_demo64.yaml``.
    overrides : list of str
        Dotted ``key=value`` overrides.
    gpus : int
        GPUs of this node to train on; more than one launches torchrun (DDP).
    """
    return _train(config, list(overrides or []), gpus)


@task(name="evaluate")
def _evaluate(model: str, config: str | None, overrides: list[str]) -> str:
    from alchemy_obs.cli import main

    out = Path(model).parent / "evaluation"

    argv = ["evaluate", model, "--out", str(out)]
    if config:
        argv += ["--config", config]
    for item in overrides:
        argv += ["--set", item]
    if main(argv) != 0:
        raise RuntimeError(f"evaluation of {model} failed")
    metrics = out / "metrics.json"
    get_run_logger().info("metrics: %s", json.loads(metrics.read_text()) if metrics.exists() else "-")
    return str(out)


@flow(name="evaluate-translator")
def evaluate_translator(model: str, config: str | None = None,
                        overrides: list[str] | None = None) -> str:
    """Score a trained model on the test split; returns the folder with metrics and plots."""
    return _evaluate(model, config, list(overrides or []))
