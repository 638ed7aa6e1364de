"""Time the interferometer engine stage by stage, and the fast image-plane mode.

Full visibility path per galaxy: uvw -> degrid (ducc0, primary beams) -> noise -> weights,
dirty image and PSF -> CLEAN (Hogbom minor + Cotton-Schwab major cycles) -> restore.
Fast mode: a one-off set-up per observation (weights, PSFs per baseline type, noise power,
beam fit), then per galaxy: FFT convolution + noise -> CLEAN -> restore.

Prints a table and writes ``benchmarks/results/mocks_engine.json``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mocks_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.wcs import WCS

from alchemy_obs.config import TelescopeConfig
from alchemy_obs.observe.fast import ImagePlaneSimulator
from alchemy_obs.observe.imaging import Imager, dirty_image, fit_beam, psf_image
from alchemy_obs.observe.interferometer import BuiltinSimulator
from alchemy_obs.observe.telescope import Observation, Telescope
from alchemy_obs.skyimage import SkyImage

RESULTS = Path(__file__).parent / "results" / "mocks_engine.json"


def galaxy_sky(n: int, cell_arcsec: float, nchan: int, seed: int) -> SkyImage:
    """A lopsided exponential disc with spiral-ish clumps, ~1 Jy per channel (Jy/pixel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - n / 2
    q, pa = 0.5 + 0.4 * rng.random(), rng.uniform(0, np.pi)
    xr = xx * np.cos(pa) + yy * np.sin(pa)
    yr = (-xx * np.sin(pa) + yy * np.cos(pa)) / q
    r = np.hypot(xr, yr)
    disc = np.exp(-r / (n / 12)) * (1 + 0.5 * np.cos(2 * np.arctan2(yr, xr) - r / 4))
    disc += 0.3 * np.exp(-((xx - n / 8) ** 2 + (yy + n / 10) ** 2) / 6)
    disc /= disc.sum()
    w = WCS(naxis=3 if nchan > 1 else 2)
    ctype, crval = ["RA---SIN", "DEC--SIN"], [150.0, -30.0]
    cdelt, crpix = [-cell_arcsec / 3600, cell_arcsec / 3600], [n / 2 + 1, n / 2 + 1]
    if nchan > 1:
        ctype.append("FREQ"), crval.append(1.40e9), cdelt.append(1e5), crpix.append(1)
    w.wcs.ctype, w.wcs.crval, w.wcs.cdelt, w.wcs.crpix = ctype, crval, cdelt, crpix
    data = disc if nchan == 1 else disc[None] * np.linspace(0.5, 1.5, nchan)[:, None, None]
    return SkyImage(data * u.Jy, w)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def run_case(name: str, array: str, max_km: float | None, hours: float, dump_s: float, n: int,
             cell: float, nchan: int, niter: int, galaxies: int) -> dict:
    tel = Telescope.from_config(TelescopeConfig(array=array, max_baseline_km=max_km))
    sky0 = galaxy_sky(n, cell, nchan, 0)
    (obs, t_obs) = timed(Observation.from_hour_angles, tel, sky0.phase_centre,
                         (-hours / 2, hours / 2) * u.hourangle, dump_s * u.s, 1.40 * u.GHz,
                         100 * u.kHz, nchan)
    imager = Imager(sky0.wcs, (n, n), weighting="briggs", robust=0.0, niter=niter, threshold_sigma=3.0)
    sim = BuiltinSimulator(epsilon=1e-6, seed=1)
    stages = {"uvw": [], "degrid": [], "noise": [], "weights+dirty+psf": [], "clean+restore": []}
    full_total = []
    for g in range(galaxies):
        sky = galaxy_sky(n, cell, nchan, g)
        obs._uvw_cache = None
        _, t_uvw = timed(obs.uvw)
        vis, t_pred = timed(sim.predict, sky, obs)
        vis, t_noise = timed(sim.add_noise, vis)
        t0 = time.perf_counter()
        w = imager.weights(vis)
        dirty_image(vis, w, imager.geometry)
        psf = psf_image(vis, w, imager.geometry)
        [fit_beam(psf[c], imager.cell) for c in range(nchan)]
        t_img = time.perf_counter() - t0
        _, t_clean_all = timed(imager.image, vis)  # includes its own weights/dirty/psf
        t_clean = max(t_clean_all - t_img, 0.0)
        for k, v in zip(stages, (t_uvw, t_pred, t_noise, t_img, t_clean)):
            stages[k].append(v)
        full_total.append(t_uvw + t_pred + t_noise + t_img + t_clean)
    fast, t_setup = timed(ImagePlaneSimulator, obs, imager, True, 2)
    fast_dirty, fast_total = [], []
    for g in range(galaxies):
        sky = galaxy_sky(n, cell, nchan, g)
        _, t_d = timed(fast.dirty, sky)
        _, t_all = timed(fast.observe, sky)
        fast_dirty.append(t_d)
        fast_total.append(t_all)
    med = {k: float(np.median(v)) for k, v in stages.items()}
    out = {
        "case": name, "array": array, "n_antennas": tel.n_antennas, "max_baseline_km": max_km,
        "track_h": hours, "dump_s": dump_s, "n_rows": int(len(obs.uvw())), "n_channels": nchan,
        "npix": n, "cell_arcsec": cell, "niter": niter, "galaxies": galaxies,
        "flagged_fraction": float(vis.flag.mean()),
        "observation_setup_s": t_obs, "full_stage_median_s": med,
        "full_per_galaxy_s": float(np.median(full_total)),
        "fast_setup_s": t_setup, "fast_dirty_per_galaxy_s": float(np.median(fast_dirty)),
        "fast_per_galaxy_s": float(np.median(fast_total)),
    }
    out["speedup_per_galaxy"] = out["full_per_galaxy_s"] / out["fast_per_galaxy_s"]
    out["speedup_dirty_only"] = (med["degrid"] + med["noise"] + med["weights+dirty+psf"]) / out["fast_dirty_per_galaxy_s"]
    out["break_even_galaxies"] = t_setup / max(out["full_per_galaxy_s"] - out["fast_per_galaxy_s"], 1e-9)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller cases (CI smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        cases = [("continuum-core", "AA*", 2.0, 2.0, 600.0, 64, 4.0, 1, 300, 2)]
    else:
        cases = [
            ("continuum AA* 4h", "AA*", None, 4.0, 120.0, 256, 1.5, 1, 1000, 3),
            ("HI cube AA* core 16ch", "AA*", 5.0, 4.0, 300.0, 128, 3.0, 16, 500, 2),
        ]
    rows = [run_case(*c) for c in cases]
    hdr = f"{'case':26s} {'ants':>4s} {'rows':>8s} {'ch':>3s} {'npix':>4s} | " + " ".join(
        f"{k:>17s}" for k in rows[0]["full_stage_median_s"]) + f" | {'full/gal':>8s} {'fast setup':>10s} {'fast/gal':>8s} {'speedup':>7s}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['case']:26s} {r['n_antennas']:4d} {r['n_rows']:8d} {r['n_channels']:3d} {r['npix']:4d} | "
              + " ".join(f"{v:17.3f}" for v in r["full_stage_median_s"].values())
              + f" | {r['full_per_galaxy_s']:8.2f} {r['fast_setup_s']:10.2f} {r['fast_per_galaxy_s']:8.3f} "
              f"{r['speedup_per_galaxy']:7.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "mocks_engine", "python": sys.version.split()[0], "machine": platform.machine(),
               "processor": platform.processor(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cases": rows}
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
