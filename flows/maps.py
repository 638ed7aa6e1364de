"""``build_maps``: galaxies -> one shard per galaxy -> the joined dataset.

The flow runs :func:`alchemy_obs.maps.build.build_dataset`, the loop of ``alchemy-obs maps``,
with each galaxy's step submitted as one Prefect task, so any task runner (threads, a local
Dask cluster, dask-jobqueue on a batch system) can run them side by side without sharing
memory; each writes its own shard. The galaxies are chosen as on the command line
(:func:`alchemy_obs.maps.build.galaxy_sources`). ``build_shard`` skips views already
present, which makes a rerun after a crash or a cancellation resume where it stopped.
"""

from __future__ import annotations

import argparse

from prefect import flow, task

from alchemy_obs.campaign import GalaxyStep
from alchemy_obs.maps.build import SOURCES, GalaxySource, build_dataset, galaxy_sources
from alchemy_obs.flows.common import check_campaign, flow_config
from alchemy_obs.flows.runners import task_runner_from_config

__all__ = ["build_maps", "render_shard"]


@task(name="render-shard", task_run_name="shard-{source.galaxy_id}")
def render_shard(step: GalaxyStep, source: GalaxySource) -> bool:
    """Render the views missing from one galaxy's shard (``step`` is ``build_shard`` with
    the dataset folder and map settings); True if the shard was written."""
    return step(source)


@flow(name="build-maps")
def build_maps(
    config: str | None = None,
    overrides: list[str] | None = None,
    source: str = "synthetic",
    inputs: list[str] | None = None,
    ids: list[int] | None = None,
) -> str:
    """Build the map dataset; returns the path of ``dataset.h5``.

    Parameters
    ----------
    config : str, optional
        YAML configuration (``configs/``); ``maps.out_dir`` is the dataset folder and
        ``flows.runner`` chooses where the per-galaxy tasks run.
    overrides : list of str
        Dotted ``key=value`` overrides.
    source : {"synthetic", "cutouts", "tng", "snapshot"}
        Synthetic galaxies (``synth.*``), cutout files or folders (``inputs``), TNG subhalo
        ``ids`` fetched through the web API, or ``ids`` of a local snapshot
        (``tng.snapshot_dir``), as ``alchemy-obs maps --source``.
    inputs, ids : list
        Cutout paths (``source="cutouts"``) or subhalo ids (``tng``, ``snapshot``).
    """
    cfg = flow_config(config, overrides)
    # The runner is part of the configuration, so the work runs in a subflow given it.
    runner = task_runner_from_config(cfg.flows)
    return _build_maps.with_options(task_runner=runner)(config, overrides, source, inputs, ids)


@flow(name="build-maps-tasks")
def _build_maps(config, overrides, source, inputs, ids) -> str:
    cfg = flow_config(config, overrides)
    sources = galaxy_sources(source, inputs=inputs, ids=ids, synth=cfg.synth, tng=cfg.tng)
    shard = render_shard
    if source == "tng":
        # the cutout download inside the task can time out or be rate limited
        retries = cfg.flows.retries
        shard = render_shard.with_options(
            retries=retries,
            retry_delay_seconds=[cfg.flows.retry_backoff_s * 2**k for k in range(retries)],
        )
    report = build_dataset(sources, cfg.maps.out_dir, cfg.maps, submit=shard.submit,
                           progress=False)
    return check_campaign(report, "maps", len(sources))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the build-maps flow.")
    parser.add_argument("--config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--source", default="synthetic", choices=SOURCES)
    parser.add_argument("--inputs", nargs="*", default=None,
                        help="cutout files or folders (--source cutouts)")
    parser.add_argument("--ids", nargs="*", type=int, default=None,
                        help="subhalo ids (--source tng or snapshot)")
    args = parser.parse_args(argv)
    print(build_maps(args.config, args.overrides, args.source, args.inputs, args.ids))


if __name__ == "__main__":
    main()
