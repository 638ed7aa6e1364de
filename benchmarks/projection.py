"""Benchmark: pixel-integrated SPH projection against swiftsimio and pynbody.

Projects log-normally distributed smoothing lengths (about 0.1 to 20 pixels, 2-sigma range)
of 1e5 and 1e6 particles onto 256^2 and 512^2 grids with every tool. All tools get the same
particles, the same extent and the same kernel support radius H (swiftsimio's
h = H / 1.897367, pynbody's smooth = H / 2).

Fairness:

* Each tool's input is built before the clock starts (float32 arrays for swiftsimio, a
  pynbody snapshot); only the projection call and the map total are timed.
* Compilation is excluded: every tool projects a small set once before any timing (the
  warm-up seconds are reported on their own).
* Every tool runs on the same number of threads: numba's thread count (this package and
  swiftsimio) and pynbody's ``number_of_threads``. By default the table is made twice:
  with one thread (rates per CPU second, which other processes on a shared machine do not
  inflate) and with all cores (rates per wall-clock second).
* Repetitions are interleaved (tool A, B, C, A, B, C, ...) so a busy spell of a shared
  machine hits all tools alike; the fastest repetition of each tool is kept.

Mass error is | map total - mass of the particles whose kernels lie inside the map | /
that mass; particles are placed so that every kernel lies inside, so the reference is the
total mass. Tools not installed (``pip install alchemy-obs[bench]``) are reported as skipped.

Run::

    python benchmarks/projection.py [--quick] [--repeat 5] [--threads 1 2]

Prints a table and writes ``benchmarks/results/projection.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "projection.json"
SWIFT_KERNEL_GAMMA = 1.897367  # swiftsimio's support radius / smoothing length (Wendland C2)
PYNBODY_MAX_D = 2.0  # pynbody's support radius / smooth


def make_particles(n: int, npix: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A disc-like cloud with support radii log-normal in pixels, all kernels inside [0, 1]^2."""
    rng = np.random.default_rng(seed)
    pixel = 1.0 / npix
    # 2-sigma range of ln H spans 0.1 .. 20 pixels.
    mu, sigma = 0.5 * (np.log(0.1) + np.log(20.0)), 0.25 * (np.log(20.0) - np.log(0.1))
    h = np.exp(rng.normal(mu, sigma, n)) * pixel
    h = np.minimum(h, 40 * pixel)
    r = np.abs(rng.normal(0.0, 0.15, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    x = 0.5 + r * np.cos(phi)
    y = 0.5 + r * np.sin(phi)
    inside = (x - h > 0) & (x + h < 1) & (y - h > 0) & (y + h < 1)
    x, y, h = x[inside], y[inside], h[inside]
    z = rng.normal(0.0, 0.05, x.size)
    m = rng.uniform(0.5, 1.5, x.size)
    return {"x": x, "y": y, "z": z, "h": h, "m": m}


def alchemy_inputs(p):
    return p


def run_alchemy(p, npix):
    from alchemy_obs.maps.project import project_particles

    image = project_particles(p["x"], p["y"], p["h"], p["m"], (0, 1, 0, 1), npix)
    return image.sum()


def swiftsimio_inputs(p):
    # swiftsimio's backends take float64 positions in [0, 1] and float32 weights and h.
    return {"x": p["x"], "y": p["y"], "m": p["m"].astype(np.float32),
            "h": (p["h"] / SWIFT_KERNEL_GAMMA).astype(np.float32)}


def run_swiftsimio(s, npix, backend="fast"):
    from swiftsimio.visualisation.projection_backends import backends_parallel

    image = backends_parallel[backend](s["x"], s["y"], s["m"], s["h"], npix, 0.0, 0.0)
    return float(image.sum(dtype=np.float64)) / npix**2


def pynbody_inputs(p):
    import pynbody

    n = p["x"].size
    snap = pynbody.new(gas=n)
    snap["pos"] = np.column_stack([p["x"] - 0.5, p["y"] - 0.5, p["z"]])
    snap["pos"].units = "kpc"
    snap["mass"] = p["m"]
    snap["mass"].units = "Msol"
    snap["smooth"] = p["h"] / PYNBODY_MAX_D
    snap["smooth"].units = "kpc"
    snap["rho"] = np.ones(n)
    snap["rho"].units = "Msol kpc^-3"
    return snap


def run_pynbody(snap, npix):
    import pynbody

    # out_units of a surface density request the line-of-sight projection (not a slice).
    image = pynbody.sph.render_image(snap.gas, "rho", width=1.0, resolution=npix,
                                     out_units="Msol kpc^-2", threaded=True,
                                     approximate_fast=False, denoise=False)
    return float(np.asarray(image, dtype=np.float64).sum()) / npix**2


#: name -> (input preparation, untimed; projection, timed)
TOOLS = {
    "alchemy_obs": (alchemy_inputs, run_alchemy),
    "swiftsimio": (swiftsimio_inputs, run_swiftsimio),
    # swiftsimio's mass-conserving variant of "fast" (each kernel renormalised).
    "swiftsimio_renorm": (swiftsimio_inputs,
                          lambda s, npix: run_swiftsimio(s, npix, "renormalised")),
    "pynbody": (pynbody_inputs, run_pynbody),
}


def available(tool: str) -> bool:
    if tool == "alchemy_obs":
        return True
    try:
        __import__(tool.split("_")[0])
    except ImportError:
        return False
    return True


def set_threads(threads: int) -> None:
    """The same thread count for every tool."""
    import numba

    numba.set_num_threads(threads)
    try:
        import pynbody
    except ImportError:
        return
    pynbody.config["number_of_threads"] = threads


def measure(tools: list[str], sizes: list[int], grids: list[int], repeat: int,
            threads: int) -> list[dict]:
    """Rows of the table for one thread count (rates per CPU second for one thread)."""
    set_threads(threads)
    basis = "cpu" if threads == 1 else "wall"
    rows = []
    for n in sizes:
        for npix in grids:
            p = make_particles(n, npix)
            mass = p["m"].sum()
            inputs = {tool: TOOLS[tool][0](p) for tool in tools}
            wall = dict.fromkeys(tools, np.inf)
            cpu = dict.fromkeys(tools, np.inf)
            totals = {}
            for _ in range(repeat):
                for tool in tools:
                    t0, c0 = time.perf_counter(), time.process_time()
                    totals[tool] = TOOLS[tool][1](inputs[tool], npix)
                    cpu[tool] = min(cpu[tool], time.process_time() - c0)
                    wall[tool] = min(wall[tool], time.perf_counter() - t0)
            group = []
            for tool in tools:
                seconds = cpu[tool] if basis == "cpu" else wall[tool]
                group.append({
                    "tool": tool, "threads": threads, "n": int(p["x"].size), "npix": npix,
                    "time_basis": basis,
                    "wall_seconds": wall[tool], "cpu_seconds": cpu[tool],
                    "particles_per_second": p["x"].size / seconds,
                    "mass_error": abs(totals[tool] - mass) / mass,
                })
            peers = [r["particles_per_second"] for r in group if r["tool"] != "alchemy_obs"]
            for r in group:
                r["speed_over_fastest_peer"] = (r["particles_per_second"] / max(peers)
                                                if peers else float("nan"))
            rows += group
    return rows


def main(argv: list[str] | None = None) -> int:
    import numba

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e4 and 1e5 particles only")
    parser.add_argument("--repeat", type=int, default=5,
                        help="interleaved timed repetitions per tool (fastest kept)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts to run, each for every tool (default: 1 and all "
                             f"{numba.config.NUMBA_NUM_THREADS} cores)")
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS),
                        help="tools to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    thread_counts = args.threads or sorted({1, numba.config.NUMBA_NUM_THREADS})

    sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    grids = [256, 512]
    tools = [t for t in TOOLS if t in args.tools and available(t)]
    for tool in args.tools:
        if tool not in tools:
            print(f"{tool}: not installed, skipped")
    warmups = {}
    for tool in tools:
        prepare, run = TOOLS[tool]
        small = prepare(make_particles(1000, 64, seed=1))
        t0 = time.perf_counter()
        run(small, 64)
        warmups[tool] = time.perf_counter() - t0
    rows = []
    for threads in thread_counts:
        rows += measure(tools, sizes, grids, args.repeat, threads)
    print(f"numba threading layer {numba.threading_layer()}; fastest of {args.repeat} "
          "interleaved runs; rates per CPU second with one thread, per wall-clock second "
          "with more")
    print(f"{'tool':<17} {'threads':>7} {'N':>8} {'npix':>5} {'wall s':>8} {'cpu s':>8} "
          f"{'particles/s':>12} {'mass error':>11} {'speed / fastest peer':>21}")
    for r in rows:
        print(f"{r['tool']:<17} {r['threads']:>7} {r['n']:>8} {r['npix']:>5} "
              f"{r['wall_seconds']:>8.3f} {r['cpu_seconds']:>8.3f} "
              f"{r['particles_per_second']:>12.3e} {r['mass_error']:>11.2e} "
              f"{r['speed_over_fastest_peer']:>21.2f}")
    print("warm-up (compile + first call) seconds:",
          {k: round(v, 2) for k, v in warmups.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "threads": thread_counts, "threading_layer": numba.threading_layer(),
        "repeat": args.repeat, "skipped": [t for t in args.tools if t not in tools],
        "warmup_seconds": warmups, "results": rows,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
