"""Benchmark: writing and reading synthetic TNG-layout cutouts.

Target: 20 galaxies of 20 000 particles written in a few seconds on one core. Times the
generator (:func:`alchemy_obs.sim.synthetic.write_synthetic_cutouts`, HDF5 writing and the
64-neighbour ``SubfindHsml`` included) and the reader (:func:`alchemy_obs.sim.galaxy.load_galaxy`
with a shrinking-sphere centre) for a few particle numbers. Wall and CPU times are both
reported, because the wall time suffers on a shared machine.

Run::

    OMP_NUM_THREADS=1 python benchmarks/synthetic.py [--quick]

Prints a table and writes ``benchmarks/results/synthetic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from alchemy_obs.config import SynthConfig
from alchemy_obs.sim.galaxy import load_galaxy
from alchemy_obs.sim.synthetic import write_synthetic_cutouts

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic.json"


def bench(n_galaxies: int, n_particles: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(n_galaxies=n_galaxies, n_particles=n_particles, seed=1, out_dir=Path(tmp))
        t0, c0 = time.perf_counter(), time.process_time()
        paths = write_synthetic_cutouts(cfg)
        t_write, c_write = time.perf_counter() - t0, time.process_time() - c0
        size = sum(p.stat().st_size for p in paths)
        t0 = time.perf_counter()
        for p in paths:
            load_galaxy(p)
        t_read = time.perf_counter() - t0
    return {
        "n_galaxies": n_galaxies,
        "n_particles": n_particles,
        "write_s": round(t_write, 3),
        "write_cpu_s": round(c_write, 3),
        "read_s": round(t_read, 3),
        "write_per_galaxy_s": round(t_write / n_galaxies, 4),
        "megabytes": round(size / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 20 x 20k target case")
    args = parser.parse_args()
    cases = [(20, 20_000)] if args.quick else [(20, 5_000), (20, 20_000), (4, 200_000)]
    rows = [bench(n, m) for n, m in cases]
    print(f"{'galaxies':>8} {'particles':>10} {'write [s]':>10} {'write CPU [s]':>14} {'read [s]':>9} {'MB':>8}")
    for r in rows:
        print(f"{r['n_galaxies']:>8} {r['n_particles']:>10} {r['write_s']:>10.2f} {r['write_cpu_s']:>14.2f} "
              f"{r['read_s']:>9.2f} {r['megabytes']:>8.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
