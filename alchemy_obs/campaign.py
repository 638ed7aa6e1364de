"""The per-galaxy campaign loop: one step per galaxy, recorded as written, skipped or failed.

A campaign (the maps of a dataset, the mock domains added to it) runs the same step on
every galaxy. :func:`run_campaign` runs it, in this process, in worker processes or through
a ``submit`` function of the caller's (a Prefect task's ``submit``, whose task runner may be
a thread pool or a Dask cluster, or an executor's), and records each galaxy: written (the step wrote something), skipped (its output was already
complete) or failed. A galaxy that fails is logged with its label and the others go on,
because one unreadable cutout must not stop a campaign of thousands. Joining the shards of
the galaxies that succeeded is the caller's last step (:func:`~alchemy_obs.maps.store.join_shards`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

__all__ = ["CampaignReport", "GalaxyStep", "Submit", "run_campaign"]

log = logging.getLogger(__name__)


class _Source(Protocol):
    galaxy_id: int
    label: str


#: ``step(source) -> bool``: True if it wrote the galaxy's output, False if that was complete.
GalaxyStep = Callable[[Any], bool]


class _Future(Protocol):
    def result(self) -> bool: ...


#: ``submit(step, source) -> future``: starts ``step(source)`` elsewhere; the future's
#: ``result()`` returns the step's outcome or raises its error
#: (:meth:`concurrent.futures.Executor.submit`, a Prefect task's ``submit``).
Submit = Callable[[GalaxyStep, Any], _Future]


@dataclass
class CampaignReport:
    """What a campaign did.

    Attributes
    ----------
    dataset : Path or None
        The joined dataset, once the caller has joined the shards.
    written, skipped : list of int
        Galaxy ids whose step wrote output, and whose output was already complete.
    failed : dict of str to str
        Failure message by galaxy label.
    """

    dataset: Path | None = None
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> list[int]:
        """Ids of the galaxies that succeeded (written or skipped), sorted."""
        return sorted(self.written + self.skipped)


def run_campaign(
    sources: Sequence[_Source], step: GalaxyStep, *, report: CampaignReport | None = None,
    workers: int = 1, initializer: Callable[..., None] | None = None, initargs: tuple = (),
    submit: Submit | None = None, desc: str = "", progress: bool = False,
) -> CampaignReport:
    """Run ``step`` on every galaxy of ``sources`` and record what happened.

    Parameters
    ----------
    sources : sequence of GalaxySource
        Anything with ``galaxy_id`` and ``label``.
    step : callable
        ``step(source) -> bool``; with ``workers > 1`` it must pickle (a module-level
        function or a ``functools.partial`` of one).
    report : CampaignReport, optional
        The report to fill (e.g. a subclass with more fields); default a new one.
    workers : int
        Worker processes (1: in this process). They are spawned, not forked: forking a
        parent whose numba thread pool is running is unsafe.
    initializer, initargs
        Run once in every worker process.
    submit : callable, optional
        ``submit(step, source) -> future``: run the steps through it instead (``workers``
        must then be 1). Every galaxy is submitted first, so the caller's runner may run them
        side by side; the outcomes are recorded in the order of ``sources``.
    desc, progress
        Label and switch of the progress bar.

    Returns
    -------
    CampaignReport
        ``report``, filled.
    """
    from tqdm import tqdm

    if submit is not None and workers > 1:
        raise ValueError("run_campaign: give workers or submit, not both")
    report = report if report is not None else CampaignReport()
    bar = tqdm(total=len(sources), desc=desc, unit="galaxy", disable=None if progress else True)

    def record(source: _Source, outcome: bool | BaseException) -> None:
        if isinstance(outcome, BaseException):
            report.failed[source.label] = f"{type(outcome).__name__}: {outcome}"
            log.error("galaxy %d (%s) failed: %s", source.galaxy_id, source.label, outcome)
        else:
            (report.written if outcome else report.skipped).append(source.galaxy_id)
        bar.update()

    if submit is not None:
        futures = [(s, submit(step, s)) for s in sources]
        for s, fut in futures:
            try:
                record(s, fut.result())
            except Exception as exc:  # one bad galaxy must not stop a campaign
                record(s, exc)
    elif workers <= 1:
        for s in sources:
            try:
                record(s, step(s))
            except Exception as exc:  # one bad galaxy must not stop a campaign
                record(s, exc)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=initializer, initargs=initargs) as pool:
            futures = {pool.submit(step, s): s for s in sources}
            for fut in as_completed(futures):
                exc = fut.exception()
                record(futures[fut], exc if exc is not None else fut.result())
    bar.close()
    return report
