"""Benchmark: galaxies per minute through ``build-maps`` + ``make-mocks``, and flow overhead.

Three measurements on the same small synthetic galaxies (settings of
``configs/flows/demo.yaml``, overridable):

1. the package called directly (``build_shard`` + ``add_mock_domains`` in a loop), the
   baseline without any orchestration;
2. the flows with the thread runner and 1 and 2 workers;
3. the flows with a local Dask cluster of 1 and of 2 single-threaded worker processes
   (its start-up, a few seconds, is part of the flow's time).

The flow overhead per task is (flow wall time - direct wall time) / number of tasks at one
worker. Each run writes into a fresh folder, so nothing is skipped; each configuration runs
``--repeat`` times and the fastest is kept (a loaded machine only ever slows a run down).

Run from the repository root::

    python benchmarks/pipeline.py [--galaxies 6] [--particles 10000]

Prints a table and writes ``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from here


def _overrides(base: Path, args) -> list[str]:
    return [
        f"synth.n_galaxies={args.galaxies}", f"synth.n_particles={args.particles}",
        f"synth.out_dir={base / 'synthetic'}", f"maps.out_dir={base / 'maps'}",
    ]


def direct(config_path: str, overrides: list[str]) -> float:
    from alchemy_obs.config import load_config
    from alchemy_obs.maps.build import build_shard, cutout_sources
    from alchemy_obs.maps.store import join_shards, shard_path
    from alchemy_obs.observe.mock import add_mock_domains
    from alchemy_obs.sim.synthetic import write_synthetic_cutouts

    cfg = load_config(config_path, overrides)
    t0 = time.perf_counter()
    sources = cutout_sources(write_synthetic_cutouts(cfg.synth))
    for s in sources:
        build_shard(s, cfg.maps.out_dir, cfg.maps)
        add_mock_domains(shard_path(cfg.maps.out_dir, s.galaxy_id), s.load(), cfg.mock,
                         cfg.observe, cfg.maps)
    join_shards([shard_path(cfg.maps.out_dir, s.galaxy_id) for s in sources],
                Path(cfg.maps.out_dir) / "dataset.h5",
                split_fractions=cfg.maps.split_fractions, split_seed=cfg.maps.split_seed)
    return time.perf_counter() - t0


def with_flows(config_path: str, overrides: list[str]) -> float:
    from alchemy_obs.flows.mocks import make_mocks

    t0 = time.perf_counter()
    make_mocks(config_path, overrides)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/flows/demo.yaml")
    parser.add_argument("--galaxies", type=int, default=6)
    parser.add_argument("--particles", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration; best kept")
    args = parser.parse_args()

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), \
            prefect_test_harness(server_startup_timeout=180):
        # warm numba caches and imports so that no configuration pays for compilation
        direct(args.config, _overrides(Path(tmp) / "warm", argparse.Namespace(
            galaxies=1, particles=args.particles)))
        runs = [
            ("package, direct loop", "direct", []),
            ("flows, threads x1", "flow", ["flows.runner=threads", "flows.max_workers=1"]),
            ("flows, threads x2", "flow", ["flows.runner=threads", "flows.max_workers=2"]),
            ("flows, dask x1", "flow", ["flows.runner=dask", "flows.dask_workers=1"]),
            ("flows, dask x2", "flow", ["flows.runner=dask", "flows.dask_workers=2"]),
        ]
        for k, (name, kind, extra) in enumerate(runs):
            walls = []
            for r in range(args.repeat):
                ov = _overrides(Path(tmp) / f"run{k}_{r}", args) + extra
                walls.append(direct(args.config, ov) if kind == "direct"
                             else with_flows(args.config, ov))
            wall = min(walls)
            rows.append({"run": name, "wall_s": wall, "galaxies_per_min": 60 * args.galaxies / wall})

    # tasks per galaxy in the flows: synthetic cutout, shard, mock (+ 2 joins per run)
    n_tasks = 3 * args.galaxies + 2
    overhead = (rows[1]["wall_s"] - rows[0]["wall_s"]) / n_tasks
    print(f"\n{args.galaxies} galaxies x {args.particles} particles ({args.config})")
    print(f"{'run':<24}{'wall (s)':>10}{'galaxies/min':>14}")
    for r in rows:
        print(f"{r['run']:<24}{r['wall_s']:>10.1f}{r['galaxies_per_min']:>14.2f}")
    print(f"flow overhead per task (threads x1 vs direct): {overhead:.3f} s over {n_tasks} tasks")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "galaxies": args.galaxies, "particles": args.particles, "config": args.config,
        "machine": platform.platform(), "rows": rows,
        "flow_overhead_per_task_s": overhead, "tasks": n_tasks,
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
