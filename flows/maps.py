"""``build_maps``: galaxies -> one shard per galaxy -> the joined dataset.

Each galaxy is one task that writes its own shard file, so any task runner (threads, a
local Dask cluster, dask-jobqueue on a batch system) can run them side by side without
sharing memory. ``alchemy_obs.maps.build.build_shard`` skips views already present, which
makes a rerun after a crash or a cancellation resume where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped

from alchemy_obs.config import Config, MapsConfig, SynthConfig
from alchemy_obs.maps.build import GalaxySource, build_shard, cutout_sources, tng_sources
from alchemy_obs.maps.store import join_shards, shard_path
from alchemy_obs.sim.synthetic import is_valid_cutout, make_synthetic_cutout
from alchemy_obs.flows.common import cache_key, completed_ids, file_stamp, flow_config
from alchemy_obs.flows.runners import task_runner_from_config

__all__ = ["build_maps", "galaxy_sources", "synthetic_cutout", "render_shard", "join_dataset"]


def _shard_key(context, parameters) -> str:
    source: GalaxySource = parameters["source"]
    out = shard_path(parameters["out_dir"], source.galaxy_id)
    return cache_key("shard", source.galaxy_id, source.label, parameters["config"], file_stamp(out))


@task(name="synthetic-cutout", task_run_name="synthetic-{index}")
def synthetic_cutout(index: int, config: SynthConfig) -> str:
    """Write synthetic galaxy ``index`` unless a valid cutout is already there."""
    path = Path(config.out_dir) / f"cutout_{index}.hdf5"
    if not (path.exists() and is_valid_cutout(path)):
        make_synthetic_cutout(path, index, config.n_particles, config.seed, config.merger_fraction)
    return str(path)


@task(name="render-shard", task_run_name="shard-{source.galaxy_id}",
      cache_key_fn=_shard_key, persist_result=True)
def render_shard(source: GalaxySource, out_dir: str, config: MapsConfig) -> int:
    """Render the views missing from one galaxy's shard; returns the galaxy id."""
    build_shard(source, out_dir, config)
    return source.galaxy_id


@task(name="join-dataset")
def join_dataset(galaxy_ids: list[int], out_dir: str, config: MapsConfig) -> str:
    """Join the shards into ``dataset.h5`` with virtual datasets (no map data copied)."""
    shards = [shard_path(out_dir, g) for g in sorted(galaxy_ids)]
    return str(join_shards(shards, Path(out_dir) / "dataset.h5",
                           split_fractions=config.split_fractions, split_seed=config.split_seed))


def galaxy_sources(cfg: Config, source: str, inputs: list[str] | None,
                   ids: list[int] | None) -> list[GalaxySource]:
    """The galaxies a flow works on; synthetic cutouts are written first (one task each)."""
    if source == "synthetic":
        futures = synthetic_cutout.map(range(cfg.synth.n_galaxies), config=unmapped(cfg.synth))
        return cutout_sources(futures.result())
    if source == "cutouts":
        return cutout_sources(inputs or [])
    if source == "tng":
        return tng_sources(cfg.tng, ids or [])
    raise ValueError(f"unknown source {source!r}: use synthetic, cutouts or tng")


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
    source : {"synthetic", "cutouts", "tng"}
        Synthetic galaxies (``synth.*``), cutout files (``inputs``) or TNG subhalo ``ids``
        fetched through the web API.
    inputs, ids : list
        Cutout paths (``source="cutouts"``) or subhalo ids (``source="tng"``).
    """
    cfg = flow_config(config, overrides)
    # The runner is part of the configuration, so the work runs in a subflow given it.
    runner = task_runner_from_config(cfg.flows)
    return _build_maps.with_options(task_runner=runner)(config, overrides, source, inputs, ids)


@flow(name="build-maps-tasks")
def _build_maps(config, overrides, source, inputs, ids) -> str:
    cfg = flow_config(config, overrides)
    out_dir = str(cfg.maps.out_dir)
    sources = galaxy_sources(cfg, source, inputs, ids)
    shard = render_shard
    if source == "tng":
        # the cutout download inside the task can time out or be rate limited
        retries = cfg.flows.retries
        shard = render_shard.with_options(
            retries=retries,
            retry_delay_seconds=[cfg.flows.retry_backoff_s * 2**k for k in range(retries)],
        )
    futures = [shard.submit(s, out_dir, cfg.maps) for s in sources]
    done = completed_ids(sources, futures, "maps")
    dataset = join_dataset(done, out_dir, cfg.maps)
    get_run_logger().info("dataset %s: %d of %d galaxies", dataset, len(done), len(sources))
    return dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the build-maps flow.")
    parser.add_argument("--config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--source", default="synthetic", choices=["synthetic", "cutouts", "tng"])
    parser.add_argument("--inputs", nargs="*", default=None, help="cutout files (--source cutouts)")
    parser.add_argument("--ids", nargs="*", type=int, default=None, help="subhalo ids (--source tng)")
    args = parser.parse_args(argv)
    print(build_maps(args.config, args.overrides, args.source, args.inputs, args.ids))


if __name__ == "__main__":
    main()
