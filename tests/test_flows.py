"""Prefect flows: task runners from config, identical datasets on threads and Dask, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("prefect")

from alchemy_obs.config import load_config  # noqa: E402
from alchemy_obs.maps.store import MapStore  # noqa: E402

from alchemy_obs.flows.runners import task_runner_from_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SMALL = [
    "synth.n_galaxies=3", "synth.n_particles=3000", "maps.npix=32", "maps.n_random_views=1",
    "mock.npix=32", "mock.n_channels=16", "mock.channel_width_kms=20", "observe.mode=fast",
    "observe.telescope.array=AA2",
]


@pytest.fixture(scope="module")
def prefect_api():
    """A Prefect test server for this module, flow heartbeats off.

    On a loaded 2-core machine the server's SQLite database can stay locked for seconds, so
    its timeouts (and the start-up timeout) are raised well above the defaults.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_DATABASE_TIMEOUT,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                                     PREFECT_SERVER_DATABASE_TIMEOUT: 120}):
        with prefect_test_harness(server_startup_timeout=180):
            yield PREFECT_API_URL.value()


# The flow in a child process, reporting to the test server, heartbeats off as in the parent.
_RUN_WITHOUT_HEARTBEAT = """
import sys
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from alchemy_obs.flows.maps import main
with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
    main(sys.argv[1:])
"""

_RUN_KILLED_AT_THIRD_SHARD = """
import os, signal, sys
import alchemy_obs.flows.maps, alchemy_obs.maps.build
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
real, started = alchemy_obs.maps.build.build_shard, []
def build_shard(*args, **kwargs):
    started.append(1)
    if len(started) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
alchemy_obs.maps.build.build_shard = build_shard
with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
    alchemy_obs.flows.maps.main(sys.argv[1:])
"""


def _overrides(tmp: Path, *extra: str) -> list[str]:
    return SMALL + [f"synth.out_dir={tmp / 'synthetic'}", f"maps.out_dir={tmp / 'maps'}", *extra]


def _dataset_content(path: Path) -> dict:
    with MapStore(path) as store:
        content = {f"map/{d}": np.stack([store.read(i, [d])[d] for i in range(len(store))])
                   for d in store.domains}
        for k, v in store.meta.items():
            content[f"meta/{k}"] = np.asarray(v)
    return content


def _assert_same(a: dict, b: dict) -> None:
    """Metadata equal; maps equal to float32 rounding.

    Two processes can run the projection compiled by numba (in one) and reloaded from
    numba's cache (in the other); the reload is re-optimised and its vectorised sums may add
    in another order, so a few pixels differ in the last bits (docs/orchestration.rst).
    """
    assert sorted(a) == sorted(b)
    for k in a:
        if k.startswith("map/"):
            scale = np.nanmax(np.abs(a[k]))
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6 * scale, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_runner_from_config():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    cfg = load_config(None, ["flows.max_workers=3"]).flows
    runner = task_runner_from_config(cfg)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    dask = task_runner_from_config(load_config(None, ["flows.runner=dask"]).flows)
    assert isinstance(dask, DaskTaskRunner)
    remote = task_runner_from_config(
        load_config(None, ["flows.runner=dask", "flows.dask_address=tcp://10.1.2.3:8786"]).flows)
    assert remote.address == "tcp://10.1.2.3:8786"


def test_jobqueue_config_makes_a_valid_slurm_script():
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    cfg = load_config("configs/flows/slurm.yaml").flows
    runner = task_runner_from_config(cfg)
    assert runner.resolved_cluster_class is dask_jobqueue.SLURMCluster
    assert runner.adapt_kwargs == {"minimum": 1, "maximum": 32}
    with dask_jobqueue.SLURMCluster(**runner.cluster_kwargs) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p compute" in script
    assert "#SBATCH -t 04:00:00" in script
    assert "#SBATCH --cpus-per-task=8" in script


@pytest.mark.slow
def test_threads_and_dask_give_identical_datasets(prefect_api, tmp_path):
    from alchemy_obs.flows.mocks import make_mocks

    results = {}
    for runner in ("threads", "dask"):
        out = tmp_path / runner
        extra = ["flows.max_workers=2"] if runner == "threads" else [
            "flows.runner=dask", "flows.dask_workers=2"]
        path = make_mocks(overrides=_overrides(out, f"flows.runner={runner}", *extra))
        results[runner] = _dataset_content(Path(path))
    assert {"map/hi_mom0", "map/continuum", "map/dm"} <= set(results["threads"])
    _assert_same(results["threads"], results["dask"])


@pytest.mark.slow
def test_killed_build_maps_resumes_to_the_same_dataset(prefect_api, tmp_path):
    from alchemy_obs.flows.maps import build_maps

    reference = Path(build_maps(overrides=_overrides(tmp_path / "ref", "synth.n_galaxies=4")))

    # One shard takes ~0.1 s, too short to hit reliably from outside, so the child kills
    # itself with SIGKILL as it starts the third galaxy: no cleanup code can run.
    out = tmp_path / "killed"
    args = [a for o in _overrides(out, "synth.n_galaxies=4", "flows.max_workers=1")
            for a in ("--set", o)]
    env = dict(os.environ, PREFECT_API_URL=prefect_api, OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", _RUN_KILLED_AT_THIRD_SHARD, *args], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    shards = out / "maps" / "shards"
    assert not (out / "maps" / "dataset.h5").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in shards.glob("galaxy_*.h5")}
    assert len(stamps) == 2

    cmd = [sys.executable, "-c", _RUN_WITHOUT_HEARTBEAT, *args]
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all((shards / name).stat().st_mtime_ns == t for name, t in stamps.items())
    resumed = _dataset_content(out / "maps" / "dataset.h5")
    _assert_same(_dataset_content(reference), resumed)
    views = list(zip(resumed["meta/galaxy_id"], resumed["meta/view"]))
    assert len(views) == len(set(views)) == 4 * 3


@pytest.mark.slow
def test_train_flow_launches_torchrun_and_evaluates(prefect_api, tmp_path, monkeypatch):
    """gpus=2 goes through torchrun (gloo on this CPU machine); the model then evaluates."""
    from translate_helpers import write_toy_store

    from alchemy_obs.translate.train import latest_checkpoint
    from alchemy_obs.flows.training import evaluate_translator, train_translator

    store = write_toy_store(tmp_path / "store", n_galaxies=6, n_views=2, npix=32)
    overrides = [
        f"train.data.store={store}", "train.method.name=pix2pix", f"train.out_dir={tmp_path / 'run'}",
        "train.network.base_channels=8", "train.network.channel_mults=[1,2]",
        "train.network.attention_levels=[1]", "train.network.groups=4", "train.batch_size=4",
        "train.steps=2", "train.checkpoint_every=2", "train.optim.warmup_steps=1",
        "train.eval_maps=0",
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model = Path(train_translator(None, overrides, gpus=2))
    assert json.loads((model / "card.json").read_text())["step"] == 2
    state = json.loads((latest_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["world_size"] == 2
    evaluation = Path(evaluate_translator(str(model), None, overrides))
    report = json.loads((evaluation / "metrics.json").read_text())
    assert report["n_maps"] > 0 and "profile_abs_dex" in report["metrics"]
