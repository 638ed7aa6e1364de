"""``make-mocks``: SKA-MID mock observations of every view of a map dataset.

The flow runs :func:`alchemy_obs.observe.mock.mock_dataset`, the loop of ``alchemy-obs mock
--dataset``, with each galaxy's step submitted as one Prefect task: it loads the galaxy's
particles once, makes the HI and continuum mocks of each view (sky model, telescope,
imaging) and adds them as new domains of the shard (atomic rewrite). Shards that already
hold the mock domains are skipped, so a rerun resumes. The shards are then joined again so
that ``dataset.h5`` shows the new domains.
"""

from __future__ import annotations

from prefect import flow, task

from alchemy_obs.campaign import GalaxyStep
from alchemy_obs.maps.build import GalaxySource, galaxy_sources
from alchemy_obs.observe.mock import mock_dataset
from alchemy_obs.flows.common import check_campaign, flow_config
from alchemy_obs.flows.maps import build_maps
from alchemy_obs.flows.runners import task_runner_from_config

__all__ = ["make_mocks", "mock_shard"]


@task(name="mock-shard", task_run_name="mock-{source.galaxy_id}")
def mock_shard(step: GalaxyStep, source: GalaxySource) -> bool:
    """Add the mock domains to the views of one galaxy's shard (``step`` holds the dataset
    folder and the mock, observe and maps settings); True if the shard was written."""
    return step(source)


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
    sources = galaxy_sources(source, inputs=inputs, ids=ids, synth=cfg.synth, tng=cfg.tng)
    report = mock_dataset(cfg.maps.out_dir, sources, mock=cfg.mock, observe=cfg.observe,
                          maps=cfg.maps, submit=mock_shard.submit)
    return check_campaign(report, "mocks", len(sources))
