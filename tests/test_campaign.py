"""The per-galaxy campaign loop records each galaxy and goes on past failures."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from alchemy_obs.campaign import CampaignReport, run_campaign


def _step(source) -> bool:
    if source.galaxy_id == 2:
        raise OSError("unreadable cutout")
    return source.galaxy_id != 3  # galaxy 3's output is already complete


def test_written_skipped_and_failed_galaxies_are_recorded(caplog):
    sources = [SimpleNamespace(galaxy_id=g, label=f"cutout_{g}.hdf5") for g in (4, 1, 2, 3)]
    with caplog.at_level(logging.ERROR):
        report = run_campaign(sources, _step)
    assert (report.written, report.skipped) == ([4, 1], [3])
    assert report.failed == {"cutout_2.hdf5": "OSError: unreadable cutout"}
    assert report.done == [1, 3, 4] and report.dataset is None
    assert "galaxy 2 (cutout_2.hdf5) failed" in caplog.text


def test_a_given_report_is_filled():
    class Extended(CampaignReport):
        pass

    report = run_campaign([SimpleNamespace(galaxy_id=1, label="a")], _step, report=Extended())
    assert isinstance(report, Extended) and report.written == [1]


@pytest.mark.timeout(300)
def test_worker_processes_give_the_serial_report():
    sources = [SimpleNamespace(galaxy_id=g, label=f"g{g}") for g in (1, 2, 3)]
    parallel = run_campaign(sources, _step, workers=2)
    assert (sorted(parallel.written), parallel.skipped, list(parallel.failed)) == ([1], [3], ["g2"])


def test_a_submit_function_gives_the_serial_report():
    """A task runner's submit (here a thread pool's) runs the steps; the report is the same."""
    from concurrent.futures import ThreadPoolExecutor

    sources = [SimpleNamespace(galaxy_id=g, label=f"g{g}") for g in (4, 1, 2, 3)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        report = run_campaign(sources, _step, submit=pool.submit)
    serial = run_campaign(sources, _step)
    assert (report.written, report.skipped, report.failed) == (
        serial.written, serial.skipped, serial.failed) == ([4, 1], [3], {"g2": "OSError: unreadable cutout"})
    with pytest.raises(ValueError, match="not both"):
        run_campaign(sources, _step, workers=2, submit=pool.submit)
