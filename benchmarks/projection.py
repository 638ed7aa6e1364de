"""Benchmark: pixel-integrated SPH projection against a histogram floor and peer projectors.

One physical particle set per N, a disc whose support radii are log-normal with a 2-sigma
range of 0.1 to 20 pixels of a 256^2 map (capped at 40 such pixels), all kernels inside the
map: the same particles are projected on every grid, so on a 1024^2 grid their kernels are
four times wider in pixels. Every tool gets the same particles, extent, kernel support
radius H (swiftsimio's h = H / 1.897367, pynbody's smooth = H / 2) and thread count.

Per size (N, grid) it reports, for each tool: the best wall-clock and CPU time of
``--repeat`` interleaved runs (tool A, B, C, A, B, C, ...: a busy spell of a shared machine
hits all alike), particles per second, the ratio of the time to a nearest-grid-point
histogram of the same particles made in the same run (``np.bincount`` of the pixel
indices: the floor any projector pays to read and bin its input), the L1 distance to the
exact pixel-integrated map (``project_particles(..., exact=True)``: every kernel integrated
over the map's own pixels) as a fraction of the total, and the mass error
| map total - total mass | / total mass. Inputs are built before the clock starts and a
warm-up call excludes compilation.

``--levels`` measures the pyramid's accuracy kernel by kernel: maps of particles that all
have one support radius, from 0.01 to 50 pixels, against the exact maps. ``--h-level H``
sends kernels wider than ``H`` pixels (default 10) to the pyramid, to measure how much speed
a lower threshold buys for its loss of accuracy.

Also plotted (``benchmarks/results/projection.png``): time against N (1e5 to 4e6, on a
512^2 grid) and against the grid (128^2 to 1024^2, 1e6 particles) for each tool and the
histogram. Tools not installed (``pip install alchemy-obs[bench]``) are reported as skipped.

Run::

    python benchmarks/projection.py [--quick] [--repeat 3] [--threads 2] [--levels]
                                     [--h-level H] [--no-plot]

Prints tables and writes ``benchmarks/results/projection.json``.
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
#: The grid on which the support radii are log-normal between 0.1 and 20 pixels (2 sigma).
REFERENCE_GRID = 256


def make_particles(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A disc-like cloud on the unit square, every kernel inside it (see the module notes)."""
    rng = np.random.default_rng(seed)
    pixel = 1.0 / REFERENCE_GRID
    mu, sigma = 0.5 * (np.log(0.1) + np.log(20.0)), 0.25 * (np.log(20.0) - np.log(0.1))
    h = np.minimum(np.exp(rng.normal(mu, sigma, n)), 40.0) * pixel
    r = np.abs(rng.normal(0.0, 0.15, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    x = 0.5 + r * np.cos(phi)
    y = 0.5 + r * np.sin(phi)
    inside = (x - h > 0) & (x + h < 1) & (y - h > 0) & (y + h < 1)
    x, y, h = x[inside], y[inside], h[inside]
    z = rng.normal(0.0, 0.05, x.size)
    m = rng.uniform(0.5, 1.5, x.size)
    return {"x": x, "y": y, "z": z, "h": h, "m": m}


def project(p, npix, exact=False):
    from alchemy_obs.maps.project import project_particles

    return project_particles(p["x"], p["y"], p["h"], p["m"], (0, 1, 0, 1), npix, exact=exact)


def run_alchemy(p, npix):
    return project(p, npix)


def run_histogram(p, npix):
    """Nearest-grid-point map: the pixel of each particle, then one weighted bincount."""
    i = np.minimum((p["x"] * npix).astype(np.int64), npix - 1)
    j = np.minimum((p["y"] * npix).astype(np.int64), npix - 1)
    return np.bincount(j * npix + i, p["m"], npix * npix).reshape(npix, npix)


def swiftsimio_inputs(p):
    # swiftsimio's backends take float64 positions in [0, 1] and float32 weights and h.
    return {"x": p["x"], "y": p["y"], "m": p["m"].astype(np.float32),
            "h": (p["h"] / SWIFT_KERNEL_GAMMA).astype(np.float32)}


def run_swiftsimio(s, npix, backend="fast"):
    from swiftsimio.visualisation.projection_backends import backends_parallel

    image = backends_parallel[backend](s["x"], s["y"], s["m"], s["h"], npix, 0.0, 0.0)
    # swiftsimio returns a surface density in units of the unit square.
    return np.asarray(image, dtype=np.float64).T / npix**2


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
    return np.asarray(image, dtype=np.float64) / npix**2


def _same(p):
    return p


#: name -> (input preparation, untimed; projection to a map of masses per pixel, timed)
TOOLS = {
    "alchemy_obs": (_same, run_alchemy),
    "histogram": (_same, run_histogram),
    "swiftsimio": (swiftsimio_inputs, run_swiftsimio),
    # swiftsimio's mass-conserving variant of "fast" (each kernel renormalised).
    "swiftsimio_renorm": (swiftsimio_inputs,
                          lambda s, npix: run_swiftsimio(s, npix, "renormalised")),
    "pynbody": (pynbody_inputs, run_pynbody),
}


def available(tool: str) -> bool:
    if tool in ("alchemy_obs", "histogram"):
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


def time_tools(tools: list[str], p: dict, npix: int, repeat: int) -> tuple[dict, dict, dict]:
    """Best wall and CPU seconds of each tool over interleaved runs, and its last map."""
    inputs = {tool: TOOLS[tool][0](p) for tool in tools}
    wall = dict.fromkeys(tools, np.inf)
    cpu = dict.fromkeys(tools, np.inf)
    maps = {}
    for _ in range(repeat):
        for tool in tools:
            t0, c0 = time.perf_counter(), time.process_time()
            maps[tool] = TOOLS[tool][1](inputs[tool], npix)
            cpu[tool] = min(cpu[tool], time.process_time() - c0)
            wall[tool] = min(wall[tool], time.perf_counter() - t0)
    return wall, cpu, maps


def measure(tools: list[str], sizes: list[int], grids: list[int], repeat: int,
            threads: int, accuracy: bool = True) -> list[dict]:
    """Rows of the table: one per tool, N and grid."""
    rows = []
    for n in sizes:
        p = make_particles(n)
        mass = p["m"].sum()
        for npix in grids:
            wall, cpu, maps = time_tools(tools, p, npix, repeat)
            exact = project(p, npix, exact=True) if accuracy else None
            for tool in tools:
                image = maps[tool]
                rows.append({
                    "tool": tool, "threads": threads, "n": int(p["x"].size), "npix": npix,
                    "wall_seconds": wall[tool], "cpu_seconds": cpu[tool],
                    "particles_per_second": p["x"].size / wall[tool],
                    "over_histogram": wall[tool] / wall["histogram"],
                    "l1": (float(np.abs(image - exact).sum() / mass) if accuracy
                           else float("nan")),
                    "mass_error": abs(float(image.sum()) - mass) / mass,
                })
            del maps, exact
    return rows


def kernel_accuracy(radii: list[float], npix: int = 256, seed: int = 3) -> list[dict]:
    """Pyramid against exact maps for particles that all share one support radius (pixels)."""
    rng = np.random.default_rng(seed)
    rows = []
    for h_pix in radii:
        n = 2000 if h_pix < 20 else 200
        h = h_pix / npix
        # Sparse enough that kernels rarely overlap: each one's error shows, not an average.
        p = {"x": rng.uniform(h, 1 - h, n), "y": rng.uniform(h, 1 - h, n),
             "h": np.full(n, h), "m": rng.uniform(0.5, 1.5, n)}
        image = project(p, npix)
        exact = project(p, npix, exact=True)
        single = {"x": p["x"][:1], "y": p["y"][:1], "h": p["h"][:1], "m": np.ones(1)}
        one = project(single, npix)
        one_exact = project(single, npix, exact=True)
        mass = p["m"].sum()
        rows.append({"h_pixels": h_pix, "n": n,
                     "l1": float(np.abs(image - exact).sum() / mass),
                     "l1_single": float(np.abs(one - one_exact).sum()),
                     "mass_error": abs(float(image.sum()) - mass) / mass,
                     "min": float(image.min())})
    return rows


def sweeps(tools: list[str], repeat: int, quick: bool) -> dict:
    """Time against N (512^2) and against the grid (1e6 particles), for the plot."""
    ns = [10_000, 30_000, 100_000] if quick else [100_000, 300_000, 1_000_000, 2_000_000,
                                                   4_000_000]
    grids = [128, 256, 512, 1024]
    by_n = {tool: [] for tool in tools}
    by_grid = {tool: [] for tool in tools}
    for n in ns:
        wall, _, _ = time_tools(tools, make_particles(n), 512, repeat)
        for tool in tools:
            by_n[tool].append(wall[tool])
    p = make_particles(ns[-1] if quick else 1_000_000)
    for npix in grids:
        wall, _, _ = time_tools(tools, p, npix, repeat)
        for tool in tools:
            by_grid[tool].append(wall[tool])
    return {"n": ns, "grids": grids, "n_at_grid": int(p["x"].size), "by_n": by_n,
            "by_grid": by_grid}


def plot(sweep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for tool, seconds in sweep["by_n"].items():
        left.loglog(sweep["n"], seconds, "o-", label=tool)
    left.set(xlabel="particles", ylabel="seconds", title="512² grid")
    for tool, seconds in sweep["by_grid"].items():
        right.loglog(sweep["grids"], seconds, "o-", label=tool)
    right.set(xlabel="pixels per side", ylabel="seconds",
              title=f"{sweep['n_at_grid']:.2e} particles")
    right.minorticks_off()
    right.set_xticks(sweep["grids"], [str(g) for g in sweep["grids"]])
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    import numba

    import alchemy_obs.maps.project as projection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e4 and 1e5 particles only")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved timed repetitions per tool (fastest kept)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every tool")
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS),
                        help="tools to run (default: all; the histogram always runs)")
    parser.add_argument("--grids", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--levels", action="store_true",
                        help="also measure the pyramid's accuracy for one support radius at "
                             "a time, 0.01 to 50 pixels")
    parser.add_argument("--h-level", type=float, default=None,
                        help="support radius (pixels) above which kernels go to a coarser "
                             "level of the pyramid (default: the package's H_LEVEL, 10); "
                             "lower trades accuracy for speed")
    parser.add_argument("--no-plot", action="store_true", help="skip the sweeps and the plot")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.h_level is not None:
        # project_particles reads the threshold at call time
        projection.H_LEVEL = args.h_level

    sizes = [10_000, 100_000] if args.quick else [1_000_000, 4_000_000]
    tools = [t for t in TOOLS if (t in args.tools or t == "histogram") and available(t)]
    skipped = [t for t in args.tools if t not in tools]
    for tool in skipped:
        print(f"{tool}: not installed, skipped")
    set_threads(args.threads)
    warmups = {}
    for tool in tools:
        prepare, run = TOOLS[tool]
        small = make_particles(1000, seed=1)
        t0 = time.perf_counter()
        run(prepare(small), 64)
        warmups[tool] = time.perf_counter() - t0
    project(make_particles(1000, seed=1), 64, exact=True)
    rows = measure(tools, sizes, args.grids, args.repeat, args.threads)
    print(f"{args.threads} threads (numba layer {numba.threading_layer()}); best of "
          f"{args.repeat} interleaved runs; L1 and mass error as fractions of the total")
    print(f"{'tool':<17} {'N':>8} {'npix':>5} {'wall s':>8} {'cpu s':>8} {'particles/s':>12} "
          f"{'/ histogram':>11} {'L1 vs exact':>11} {'mass error':>10}")
    for r in rows:
        print(f"{r['tool']:<17} {r['n']:>8} {r['npix']:>5} {r['wall_seconds']:>8.3f} "
              f"{r['cpu_seconds']:>8.3f} {r['particles_per_second']:>12.3e} "
              f"{r['over_histogram']:>11.2f} {r['l1']:>11.2e} {r['mass_error']:>10.1e}")
    growth = {}
    for n in sorted({r["n"] for r in rows}):
        wall = {r["npix"]: r["wall_seconds"] for r in rows
                if r["tool"] == "alchemy_obs" and r["n"] == n}
        if 512 in wall and 1024 in wall:
            growth[n] = wall[1024] / wall[512]
            print(f"alchemy_obs, N = {n}: time 1024^2 / 512^2 = {growth[n]:.2f}")
    payload = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "threads": args.threads, "threading_layer": numba.threading_layer(),
        "repeat": args.repeat, "skipped": skipped, "warmup_seconds": warmups,
        "h_level": float(projection.H_LEVEL),
        "results": rows, "growth_1024_over_512": growth,
    }
    if args.levels:
        radii = [0.01, 0.1, 0.5, 1.0, 3.0, 9.0, 10.5, 15.0, 20.5, 30.0, 41.0, 50.0]
        payload["kernels"] = kernel_accuracy(radii)
        print(f"{'h (pixels)':>10} {'L1 vs exact':>11} {'one kernel':>10} {'mass error':>10}")
        for r in payload["kernels"]:
            print(f"{r['h_pixels']:>10} {r['l1']:>11.2e} {r['l1_single']:>10.2e} "
                  f"{r['mass_error']:>10.1e}")
    if not args.no_plot:
        payload["sweeps"] = sweeps(tools, args.repeat, args.quick)
        plot(payload["sweeps"], args.out.with_suffix(".png"))
        print(f"wrote {args.out.with_suffix('.png')}")
    print("warm-up (compile + first call) seconds:",
          {k: round(v, 2) for k, v in warmups.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
