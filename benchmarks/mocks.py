"""HI cube construction: alchemy-obs against MARTINI 3.0.0 on the same particles and grid.

Run from the repository root::

    .venv/bin/pip install -c constraints.txt astromartini==3.0.0   # the ``bench`` extra
    .venv/bin/python benchmarks/mocks.py [--particles N] [--npix N] [--repeat N] [--no-stages]

Both codes get the same particles (an exponential HI disc with rotation, dispersion and a
cubic-spline kernel per particle, MARTINI's FWHM smoothing lengths converted from the same
support radii), the same distance, pixel size, field and channels, and one CPU thread each
(this script sets the BLAS, OpenMP and numba thread counts to one; MARTINI runs with
``ncpu=1``). Timed: sky-cube construction from the particle arrays (MARTINI: ``SPHSource``,
``DataCube``, ``Martini`` and ``insert_source_in_cube``; alchemy-obs:
:func:`alchemy_obs.observe.sky.hi_cube`), after one warm-up run (numba compilation excluded
for both). Reported: the best CPU time (``time.process_time``, robust on a shared machine)
and the best wall-clock time of ``--repeat`` runs. The total flux :math:`\\int S\\,dv` of
the two cubes is compared; MARTINI's mass-flux constant is 2.36e5 where this package uses
2.356e5, a known 0.17% offset that the table reports separately.

It then times one HI mock stage by stage (``--stage-npix``, ``--stage-channels``): the sky
cube from the particles, and the interferometer stages (uvw, degridding, noise, imaging,
CLEAN, fast image-plane mode) through ``benchmarks/mocks_engine.py``.

Writes ``benchmarks/results/mocks.json`` and prints a table.
"""

from __future__ import annotations

import os

# One thread in every library, set before numpy and numba read these: the comparison is
# single-threaded.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from astropy import units as u  # noqa: E402

from alchemy_obs.observe.sky import (  # noqa: E402
    HISource,
    LineModel,
    SkyGrid,
    SkyPlacement,
    SpectralAxis,
    hi_cube,
)

RESULTS = Path(__file__).parent / "results" / "mocks.json"


def disc_particles(n: int, seed: int = 0) -> HISource:
    """An exponential HI disc (scale length 4 kpc, height 0.3 kpc) in flat rotation."""
    rng = np.random.default_rng(seed)
    r = rng.gamma(2.0, 4.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    z = rng.laplace(0.0, 0.3, n)
    pos = np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
    vrot = 200.0 * (1 - np.exp(-r / 2.0))
    vel = np.stack([-vrot * np.sin(phi), vrot * np.cos(phi), np.zeros(n)], 1)
    vel += rng.normal(0.0, 8.0, (n, 3))
    # Inclined by 60 degrees about x so that the line of sight sees rotation.
    inc = np.radians(60.0)
    rot = np.array([[1, 0, 0], [0, np.cos(inc), -np.sin(inc)], [0, np.sin(inc), np.cos(inc)]])
    pos, vel = pos @ rot.T, vel @ rot.T
    h = 0.6 * (1 + r / 8.0) * rng.uniform(0.7, 1.3, n)
    return HISource(
        positions=pos * u.kpc,
        velocities=vel * u.km / u.s,
        hi_mass=rng.uniform(2e3, 2e4, n) * u.Msun,
        smoothing_length=h * u.kpc,
        temperature=rng.uniform(5e3, 1.2e4, n) * u.K,
    )


def _best(fn, repeat: int) -> tuple[float, float, object]:
    """Best CPU time (all threads of this process) and best wall time of ``repeat`` calls.

    One warm-up call first (numba compilation, tables). CPU time is the robust measure on a
    shared machine; both codes run single-threaded, so the two agree on an idle one.
    """
    fn()
    cpu, wall, out = np.inf, np.inf, None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall, out


def run_alchemy(src, place, grid, spec, line, repeat):
    """Best CPU and wall time of :func:`hi_cube`, and its cube (n_channels, ny, nx) in Jy."""
    cpu, wall, cube = _best(lambda: hi_cube(src, place, grid, spec, line), repeat)
    return cpu, wall, cube.data.to_value(u.Jy)


def run_martini(src, place, grid, spec, repeat):
    """Best CPU and wall time of MARTINI from the particles to its cube, and the cube.

    The cube is returned as (n_channels, ny, nx) in Jy per pixel in the channel order of
    ``spec``, to compare with :func:`hi_cube` pixel by pixel.
    """
    from martini import DataCube, Martini
    from martini.sources import SPHSource
    from martini.spectral_models import GaussianSpectrum
    from martini.sph_kernels import CubicSplineKernel, find_fwhm
    from scipy.spatial.transform import Rotation

    from alchemy_obs.maps.kernels import kernel_3d

    # MARTINI smoothing lengths are kernel FWHMs; ours are support radii.
    fwhm_per_support = find_fwhm(lambda r: kernel_3d(np.asarray(r)))
    pixel = grid.pixel_angle(place)
    dist = place.luminosity_distance
    h_hubble = place.cosmology.H0.to_value(u.km / u.s / u.Mpc) / 100.0

    # MARTINI: x points away from the observer, y east, z north; ours: z' to the observer,
    # x' west, y' north.
    to_martini = Rotation.from_matrix(np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]], float))
    # MARTINI has one distance, for the flux and for angles (x / D); ours subtend x / D_A.
    # Lengths scaled by D / D_A put each particle and kernel at the same angles (0.45% at
    # 10 Mpc), so both codes fill the same pixels.
    stretch = (dist / place.angular_diameter_distance).to_value(u.one)

    def build():
        source = SPHSource(
            distance=dist, h=h_hubble, ra=place.ra, dec=place.dec,
            T_g=src.temperature, mHI_g=src.hi_mass,
            xyz_g=src.positions * stretch, vxyz_g=src.velocities,
            hsm_g=src.smoothing_length * (stretch * fwhm_per_support), rotation=to_martini,
        )
        datacube = DataCube(
            n_px_x=grid.npix, n_px_y=grid.npix, n_channels=spec.n_channels,
            px_size=pixel, channel_width=spec.channel_width,
            spectral_centre=source.vsys, ra=place.ra, dec=place.dec,
        )
        m = Martini(source=source, datacube=datacube, beam=None, noise=None,
                    sph_kernel=CubicSplineKernel(), spectral_model=GaussianSpectrum(sigma="thermal"),
                    quiet=True)
        m.insert_source_in_cube(ncpu=1, skip_validation=True)
        return m

    cpu, wall, m = _best(build, repeat)
    arr = m.datacube._array.to_value(u.Jy / u.arcsec**2) * pixel.to_value(u.arcsec) ** 2
    # MARTINI's array is (RA pixel, Dec pixel, channel) with frequency increasing along the
    # channels; ours is (channel, Dec pixel, RA pixel) in the order of ``spec``.
    cube = np.moveaxis(arr.reshape(arr.shape[:3]), 2, 0).transpose(0, 2, 1)
    if spec.ctype == "VRAD":
        cube = cube[::-1]
    return cpu, wall, cube


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Pixel-by-pixel agreement of two cubes (channel, y, x): moment 0 and spectrum."""
    m0, m1 = ours.sum(axis=0), theirs.sum(axis=0)
    s0, s1 = ours.sum(axis=(1, 2)), theirs.sum(axis=(1, 2))
    k = np.arange(s0.size)
    return {
        "moment0_correlation": float(np.corrcoef(m0.ravel(), m1.ravel())[0, 1]),
        "moment0_l1_difference": float(np.abs(m0 - m1).sum() / m1.sum()),
        "spectrum_correlation": float(np.corrcoef(s0, s1)[0, 1]),
        "spectrum_centroid_shift_channels": float((s0 * k).sum() / s0.sum() - (s1 * k).sum() / s1.sum()),
    }


def stage_timings(src: HISource, npix: int, channels: int) -> dict:
    """One HI mock per stage: this package's sky cube plus the engine's stages.

    The interferometer stages come from ``benchmarks/mocks_engine.py`` (:func:`run_case`, one
    galaxy, AA* within 5 km, 4 h track, 300 s dumps, 3 arcsec cells); the sky cube of the
    benchmark particles is built on the same grid and channels.
    """
    from mocks_engine import run_case

    place = SkyPlacement(distance=20 * u.Mpc)
    cell = 3.0 * u.arcsec
    grid = SkyGrid(npix, cell)
    spec = SpectralAxis(channels, 100 * u.kHz)
    t_cube, _, _ = _best(lambda: hi_cube(src, place, grid, spec), 1)
    engine = run_case(f"HI cube AA* core {channels}ch", "AA*", 5.0, 4.0, 300.0, npix,
                      cell.to_value(u.arcsec), channels, 500, 1)
    engine["sky_cube_s"] = t_cube
    engine["visibility_mock_per_galaxy_s"] = t_cube + engine["full_per_galaxy_s"]
    engine["fast_mock_per_galaxy_s"] = t_cube + engine["fast_per_galaxy_s"]
    engine["mock_speedup_per_galaxy"] = (engine["visibility_mock_per_galaxy_s"]
                                         / engine["fast_mock_per_galaxy_s"])
    return engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=100_000)
    parser.add_argument("--npix", type=int, default=256)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage-npix", type=int, default=128)
    parser.add_argument("--stage-channels", type=int, default=16)
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage timings")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    src = disc_particles(args.particles)
    place = SkyPlacement(distance=10 * u.Mpc)
    grid = SkyGrid(args.npix, 60.0 / args.npix * u.kpc)
    spec = SpectralAxis(args.channels, 4 * u.km / u.s, ctype="VRAD")
    line = LineModel()
    mass = float(src.hi_mass.sum().to_value(u.Msun))
    d_mpc = place.luminosity_distance.to_value(u.Mpc)

    cpu_ours, wall_ours, cube_ours = run_alchemy(src, place, grid, spec, line, args.repeat)
    dv = spec.channel_width.to_value(u.km / u.s)
    flux_ours = float(cube_ours.sum() * dv)
    row = {
        "particles": args.particles, "npix": args.npix, "channels": args.channels,
        "repeat": args.repeat,
        "alchemy_cpu_s": cpu_ours, "alchemy_wall_s": wall_ours,
        "alchemy_flux_jy_kms": flux_ours,
        "alchemy_mass_fraction": 2.356e5 * d_mpc**2 * flux_ours / mass,
        "input_hi_mass_msun": mass,
        "threads": numba.get_num_threads(), "python": platform.python_version(),
        "machine": platform.machine(), "load_average": os.getloadavg()[0],
    }
    try:
        import martini  # noqa: F401
    except ImportError:
        print("astromartini is not installed: pip install -c constraints.txt astromartini==3.0.0",
              file=sys.stderr)
        row["martini_cpu_s"] = None
    else:
        cpu_m, wall_m, cube_m = run_martini(src, place, grid, spec, args.repeat)
        flux_m = float(cube_m.sum() * dv)
        row.update(agreement(cube_ours, cube_m))
        row.update({
            "martini_version": martini.__version__,
            "martini_cpu_s": cpu_m, "martini_wall_s": wall_m, "martini_flux_jy_kms": flux_m,
            "martini_mass_fraction": 2.36e5 * d_mpc**2 * flux_m / mass,
            "speedup_cpu": cpu_m / cpu_ours, "speedup_wall": wall_m / wall_ours,
            "flux_difference": flux_ours / flux_m - 1.0,
            "flux_difference_same_constant": (flux_ours * 2.356e5) / (flux_m * 2.36e5) - 1.0,
        })

    print(f"HI cube: {args.particles} particles, {args.npix}^2 pixels, {args.channels} channels, "
          f"{row['threads']} thread, best of {args.repeat}")
    print(f"{'code':<12}{'CPU (s)':>10}{'wall (s)':>10}{'flux (Jy km/s)':>18}{'M_cube/M_in':>14}")
    print(f"{'alchemy-obs':<12}{cpu_ours:10.3f}{wall_ours:10.3f}{flux_ours:18.5g}"
          f"{row['alchemy_mass_fraction']:14.5f}")
    if row.get("martini_cpu_s") is not None:
        print(f"{'MARTINI':<12}{row['martini_cpu_s']:10.3f}{row['martini_wall_s']:10.3f}"
              f"{row['martini_flux_jy_kms']:18.5g}{row['martini_mass_fraction']:14.5f}")
        print(f"speed-up {row['speedup_cpu']:.1f}x (CPU), {row['speedup_wall']:.1f}x (wall); "
              f"total flux difference {100 * row['flux_difference']:+.3f}% "
              f"({100 * row['flux_difference_same_constant']:+.3f}% with the same 2.36e5 constant)")
        print(f"moment 0: correlation {row['moment0_correlation']:.5f}, L1 difference "
              f"{100 * row['moment0_l1_difference']:.2f}%; spectrum: correlation "
              f"{row['spectrum_correlation']:.5f}, centroid shift "
              f"{row['spectrum_centroid_shift_channels']:+.3f} channels")

    if not args.no_stages:
        stages = stage_timings(disc_particles(min(args.particles, 20_000)), args.stage_npix,
                               args.stage_channels)
        row["stages"] = stages
        print(f"\nOne HI mock, {stages['npix']}^2 x {stages['n_channels']} channels, "
              f"{stages['array']} ({stages['n_antennas']} dishes), {stages['n_rows']} rows:")
        print(f"  {'sky cube':<34}{stages['sky_cube_s']:10.3f} s")
        for k, v in stages["full_stage_median_s"].items():
            print(f"  {k:<34}{v:10.3f} s")
        print(f"  {'fast mode set-up (once)':<34}{stages['fast_setup_s']:10.3f} s")
        print(f"  {'fast mode per galaxy':<34}{stages['fast_per_galaxy_s']:10.3f} s")
        print(f"  {'mock per galaxy, visibility path':<34}{stages['visibility_mock_per_galaxy_s']:10.3f} s")
        print(f"  {'mock per galaxy, fast mode':<34}{stages['fast_mock_per_galaxy_s']:10.3f} s"
              f"  ({stages['mock_speedup_per_galaxy']:.1f}x)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(row, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
