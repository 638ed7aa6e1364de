"""Task runners chosen by the ``flows`` section of the configuration."""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from alchemy_obs.config import FlowsConfig, JobQueueConfig

__all__ = ["task_runner_from_config", "jobqueue_cluster_kwargs"]


def jobqueue_cluster_kwargs(cfg: JobQueueConfig) -> dict:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` / ``PBSCluster``."""
    kwargs: dict = {
        "cores": cfg.cores,
        "processes": cfg.processes,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "job_extra_directives": list(cfg.job_extra_directives),
    }
    if cfg.queue:
        kwargs["queue"] = cfg.queue
    if cfg.account:
        kwargs["account"] = cfg.account
    if cfg.local_directory:
        kwargs["local_directory"] = cfg.local_directory
    return kwargs


def task_runner_from_config(cfg: FlowsConfig) -> TaskRunner:
    """The Prefect task runner described by ``cfg``.

    ``threads`` runs tasks in a thread pool in the flow's process; ``dask`` starts a local
    Dask cluster (one single-threaded worker process per core by default, so that numba and
    HDF5 work in separate processes) or connects to ``dask_address``; ``jobqueue`` asks a
    SLURM or PBS batch system for Dask workers through dask-jobqueue.
    """
    if cfg.runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)

    from prefect_dask import DaskTaskRunner

    if cfg.runner == "dask":
        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": cfg.dask_workers,
                "threads_per_worker": cfg.dask_threads_per_worker,
                "processes": True,
                "dashboard_address": None,
            },
        )
    jq = cfg.jobqueue
    cluster_class = {
        "slurm": "dask_jobqueue.SLURMCluster",
        "pbs": "dask_jobqueue.PBSCluster",
    }[jq.system]
    return DaskTaskRunner(
        cluster_class=cluster_class,
        cluster_kwargs=jobqueue_cluster_kwargs(jq),
        adapt_kwargs={"minimum": 1, "maximum": jq.jobs},
    )
