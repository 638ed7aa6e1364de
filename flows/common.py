"""Pieces shared by the flows: configuration loading and the per-galaxy campaign report."""

from __future__ import annotations

from prefect import get_run_logger

from alchemy_obs.campaign import CampaignReport
from alchemy_obs.config import Config, load_config

__all__ = ["flow_config", "check_campaign"]


def flow_config(config: str | None, overrides: list[str] | None) -> Config:
    """The configuration a flow run uses: a YAML path (relative to the working directory,
    or ``configs/<name>`` of a shipped one) plus dotted overrides, exactly as on the command
    line."""
    return load_config(config, overrides or [])


def check_campaign(report: CampaignReport, what: str, n_galaxies: int) -> str:
    """Log what a campaign did and return its joined dataset.

    A failed galaxy does not fail the flow (a campaign goes on past a bad cutout; its task
    shows the error); only a run in which every galaxy failed raises.
    """
    log = get_run_logger()
    for label, error in report.failed.items():
        log.error("%s of %s failed: %s", what, label, error)
    if report.dataset is None:
        raise RuntimeError(f"{what}: all {n_galaxies} galaxies failed; see the task logs")
    log.info("dataset %s: %s of %d of %d galaxies (%d written, %d already complete)",
             report.dataset, what, len(report.done), n_galaxies, len(report.written),
             len(report.skipped))
    return str(report.dataset)
