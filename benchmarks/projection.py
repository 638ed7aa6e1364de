"""Benchmark: pixel-integrated SPH projection against swiftsimio and pynbody.

Projects log-normally distributed smoothing lengths (about 0.1 to 20 pixels, 2-sigma range)
of 1e5 and 1e6 particles onto 256^2 and 512^2 grids with every tool, after a warm-up call
(numba compilation is excluded from the timings and reported on its own). All tools get the
same kernel support radius H (swiftsimio's h = H / 1.897367, pynbody's smooth = H / 2).

Mass error is | map total - mass of the particles whose kernels lie inside the map | /
that mass; particles are placed so that every kernel lies inside, so the reference is the
total mass. Tools not installed (``pip install alchemy-obs[bench]``) are reported as skipped.

Run::

    python benchmarks/projection.py [--quick] [--repeat 3]

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


def run_alchemy(p, npix):
    from alchemy_obs.maps.project import project_particles

    image = project_particles(p["x"], p["y"], p["h"], p["m"], (0, 1, 0, 1), npix)
    return image.sum()


def run_swiftsimio(p, npix, backend="fast"):
    from swiftsimio.visualisation.projection_backends import backends_parallel

    image = backends_parallel[backend](
        p["x"], p["y"], p["m"].astype(np.float32),
        (p["h"] / SWIFT_KERNEL_GAMMA).astype(np.float32), npix, 0.0, 0.0,
    )
    return float(image.astype(np.float64).sum()) / npix**2


def run_pynbody(p, npix):
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
    # out_units of a surface density request the line-of-sight projection (not a slice).
    image = pynbody.sph.render_image(snap.gas, "rho", width=1.0, resolution=npix,
                                     out_units="Msol kpc^-2", threaded=True,
                                     approximate_fast=False, denoise=False)
    return float(np.asarray(image, dtype=np.float64).sum()) / npix**2


TOOLS = {
    "alchemy_obs": run_alchemy,
    "swiftsimio": run_swiftsimio,
    # swiftsimio's mass-conserving variant of "fast" (each kernel renormalised).
    "swiftsimio_renorm": lambda p, npix: run_swiftsimio(p, npix, "renormalised"),
    "pynbody": run_pynbody,
}


def available(tool: str) -> bool:
    if tool == "alchemy_obs":
        return True
    try:
        __import__(tool.split("_")[0])
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e4 and 1e5 particles only")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best kept)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    grids = [256, 512]
    rows, warmups = [], {}
    for tool in TOOLS:
        if not available(tool):
            print(f"{tool}: not installed, skipped")
            continue
        small = make_particles(1000, 64, seed=1)
        t0 = time.perf_counter()
        TOOLS[tool](small, 64)
        warmups[tool] = time.perf_counter() - t0
    for n in sizes:
        for npix in grids:
            p = make_particles(n, npix)
            mass = p["m"].sum()
            for tool in TOOLS:
                if tool not in warmups:
                    rows.append({"tool": tool, "n": n, "npix": npix, "status": "skipped"})
                    continue
                best, total = np.inf, np.nan
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    total = TOOLS[tool](p, npix)
                    best = min(best, time.perf_counter() - t0)
                rows.append({
                    "tool": tool, "n": int(p["x"].size), "npix": npix, "status": "ok",
                    "seconds": best, "particles_per_second": p["x"].size / best,
                    "mass_error": abs(total - mass) / mass,
                })
    fastest_peer = {}
    for r in rows:
        if r["status"] == "ok" and r["tool"] != "alchemy_obs":
            key = (r["n"], r["npix"])
            fastest_peer[key] = max(fastest_peer.get(key, 0.0), r["particles_per_second"])
    print(f"{'tool':<17} {'N':>8} {'npix':>5} {'seconds':>9} {'particles/s':>12} "
          f"{'mass error':>11} {'speed / fastest peer':>21}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['tool']:<17} {r['n']:>8} {r['npix']:>5} {'skipped':>9}")
            continue
        peer = fastest_peer.get((r["n"], r["npix"]))
        ratio = r["particles_per_second"] / peer if peer else float("nan")
        r["speed_over_fastest_peer"] = ratio
        print(f"{r['tool']:<17} {r['n']:>8} {r['npix']:>5} {r['seconds']:>9.3f} "
              f"{r['particles_per_second']:>12.3e} {r['mass_error']:>11.2e} {ratio:>21.2f}")
    print("warm-up (compile + first call) seconds:",
          {k: round(v, 2) for k, v in warmups.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "numba_threads": _numba_threads()},
        "warmup_seconds": warmups, "results": rows,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


if __name__ == "__main__":
    raise SystemExit(main())
