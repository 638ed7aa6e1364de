"""``make-mocks``: SKA-MID mock observations of every view of a map dataset.

One task per galaxy shard: it loads the galaxy's particles once, makes the HI and continuum
mocks of each view (sky model, telescope, imaging) and adds them as new domains of the
shard (atomic rewrite). Shards that already hold the mock domains are skipped, so a rerun
resumes. A final task joins the shards again so that ``dataset.h5`` shows the new domains.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from alchemy_obs.config import MapsConfig, MockConfig, ObserveConfig
from alchemy_obs.maps.build import GalaxySource
from alchemy_obs.maps.store import shard_path
from alchemy_obs.observe.mock import add_mock_domains
from alchemy_obs.flows.common import cache_key, completed_ids, file_stamp, flow_config
from alchemy_obs.flows.maps import build_maps, galaxy_sources, join_dataset
from alchemy_obs.flows.runners import task_runner_from_config

__all__ = ["make_mocks", "mock_shard"]


def _mock_key(context, parameters) -> str:
    source: GalaxySource = parameters["source"]
    shard = shard_path(parameters["out_dir"], source.galaxy_id)
    return cache_key("mock", source.galaxy_id, source.label, parameters["mock"],
                     parameters["observe"], parameters["maps"], file_stamp(shard))


@task(name="mock-shard", task_run_name="mock-{source.galaxy_id}",
      cache_key_fn=_mock_key, persist_result=True)
def mock_shard(source: GalaxySource, out_dir: str, mock: MockConfig, observe: ObserveConfig,
               maps: MapsConfig) -> int:
    """Add the mock domains to the views of one galaxy's shard; returns the galaxy id."""
    shard = shard_path(out_dir, source.galaxy_id)
    if not shard.exists():
        raise FileNotFoundError(f"{shard}: no map shard for galaxy {source.galaxy_id}; "
                                "run build-maps first")
    add_mock_domains(shard, source.load(), mock, observe, maps)
    return source.galaxy_id


@flow(name="make-mocks")
def make_mocks(
    config: str | None = None,
    overrides: list[str] | None = None,
    source: str = "synthetic",
    inputs: list[str] | None = None,
    ids: list[int] | None = None,
    build_missing_maps: bool = True,
) -> str:
    """Add SKA-MID mock domains (``hi_mom0``, ``hi_nhi``, ``continuum``) to a map dataset.

    Parameters are those of :func:`alchemy_obs.flows.maps.build_maps`. With ``build_missing_maps`` the
    maps of galaxies without a shard are built first (by the ``build-maps`` flow), so the
    deployment can run on an empty folder.
    """
    cfg = flow_config(config, overrides)
    if build_missing_maps:
        build_maps(config, overrides, source, inputs, ids)
    runner = task_runner_from_config(cfg.flows)
    return _make_mocks.with_options(task_runner=runner)(config, overrides, source, inputs, ids)


@flow(name="make-mocks-tasks")
def _make_mocks(config, overrides, source, inputs, ids) -> str:
    cfg = flow_config(config, overrides)
    out_dir = str(cfg.maps.out_dir)
    sources = [s for s in galaxy_sources(cfg, source, inputs, ids)
               if shard_path(out_dir, s.galaxy_id).exists()]
    futures = [mock_shard.submit(s, out_dir, cfg.mock, cfg.observe, cfg.maps)
               for s in sources]
    done = completed_ids(sources, futures, "mock")
    dataset = join_dataset(done, out_dir, cfg.maps)
    get_run_logger().info("dataset %s: mocks of %d of %d galaxies", dataset, len(done),
                          len(sources))
    return dataset
