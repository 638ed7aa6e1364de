"""Fields of view and stellar kernels of the maps on synthetic galaxies, old rules against new.

Run from the repository root::

    .venv/bin/python benchmarks/fields.py [--galaxies 24] [--particles 20000] [--seed 42]

For each synthetic galaxy (``alchemy_obs.sim.synthetic``, the demo's seed by default) it
prints the field side of the old rule (twice the 3D half-mass radius of all gas and stars,
hot halo included) and of the default rule (:func:`alchemy_obs.maps.render.galaxy_field`),
the face-on HI radius :math:`R_{\\rm HI}` (and its offset from the
:math:`D_{\\rm HI}`-:math:`M_{\\rm HI}` relation of Wang et al. 2016), and the fraction of
the HI mass whose particles project outside the map in the face-on, edge-on and one random
view, counted from particle positions (not from the projected maps). Then the same fraction
for fixed fields of ``64 x pixel_kpc`` and the median stellar kernel radius: ``SubfindHsml``
(the 64 nearest dark matter particles) against the distance to the 32nd and 64th nearest
star. Numbers are quoted in ``docs/dataset.rst``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import astropy.units as u
import numpy as np

from alchemy_obs.config import MapsConfig
from alchemy_obs.maps.geometry import galaxy_views
from alchemy_obs.maps.render import galaxy_field
from alchemy_obs.maps.smoothing import knn_smoothing_length
from alchemy_obs.physics.gas import gas_hi_mass
from alchemy_obs.sim.galaxy import load_galaxy
from alchemy_obs.sim.synthetic import make_synthetic_cutout


def _outside(galaxy, gid: int, m_hi: np.ndarray, side: float) -> list[float]:
    fractions = []
    for view in galaxy_views(galaxy.stellar_angular_momentum(), gid, n_random=1):
        xy = galaxy.gas.coordinates @ view.matrix[:2].T
        out = np.any(np.abs(xy) >= 0.5 * side, axis=1)
        fractions.append(m_hi[out].sum() / m_hi.sum())
    return fractions


def _stats(values) -> str:
    return f"min {np.min(values):6.1f}  median {np.median(values):6.1f}  max {np.max(values):6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=24)
    parser.add_argument("--particles", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    config = MapsConfig()
    fixed = (48.0, 64.0, 80.0)
    old, new, r_hi, worst, worst_old, wang = [], [], [], [], [], []
    lost = {side: [] for side in fixed}
    h_subfind, h32, h64 = [], [], []
    print(" id  old_kpc  new_kpc  R_HI_kpc  HI outside (random, faceon, edgeon)")
    with tempfile.TemporaryDirectory() as tmp:
        for gid in range(args.galaxies):
            path = make_synthetic_cutout(Path(tmp) / f"cutout_{gid}.hdf5", gid, args.particles,
                                         args.seed)
            galaxy = load_galaxy(path)
            fov, radius = galaxy_field(galaxy, config)
            m_hi = gas_hi_mass(galaxy.gas, galaxy.redshift).to_value(u.Msun)
            fractions = _outside(galaxy, gid, m_hi, fov.to_value(u.kpc))
            old.append(2 * galaxy.half_mass_radius(("gas", "stars")))
            new.append(fov.to_value(u.kpc))
            r_hi.append(radius.to_value(u.kpc))
            # Wang et al. (2016): log D_HI/kpc = 0.506 log M_HI/Msun - 3.293, scatter 0.06 dex.
            wang.append(np.log10(2 * r_hi[-1]) - (0.506 * np.log10(m_hi.sum()) - 3.293))
            worst.append(max(fractions))
            worst_old.append(max(_outside(galaxy, gid, m_hi, old[-1])))
            for side in fixed:
                lost[side] += _outside(galaxy, gid, m_hi, side)
            stars = galaxy.stars.coordinates
            h_subfind.append(galaxy.stars.hsml)
            h32.append(knn_smoothing_length(stars, 32))
            h64.append(knn_smoothing_length(stars, 64))
            print(f"{gid:3d}  {old[-1]:7.1f}  {new[-1]:7.1f}  {r_hi[-1]:8.1f}  "
                  + "  ".join(f"{f:.4f}" for f in fractions))
    print(f"\nfield side, old rule (2 r_half, gas + stars) [kpc]: {_stats(old)}  "
          f"(max/min {max(old) / min(old):.1f})")
    print(f"field side, new rule (99% of the HI) [kpc]:        {_stats(new)}  "
          f"(max/min {max(new) / min(new):.1f})")
    print(f"R_HI [kpc]: {_stats(r_hi)}; 2 R_HI / new side: {_stats(2 * np.array(r_hi) / new)}")
    print(f"log D_HI - Wang et al. (2016) relation [dex]: median {np.median(wang):+.3f}, "
          f"rms {np.sqrt(np.mean(np.square(wang))):.3f}")
    print("HI mass fraction outside the map in a galaxy's worst view: old rule "
          f"min {min(worst_old):.4f} median {np.median(worst_old):.4f} max {max(worst_old):.4f}; "
          f"new rule min {min(worst):.4f} median {np.median(worst):.4f} max {max(worst):.4f}")
    for side in fixed:
        frac = np.array(lost[side])
        print(f"fixed {side:.0f} kpc field ({side / 64:.3g} kpc/pixel at 64^2): HI outside "
              f"median {np.median(frac):.4f}, max {frac.max():.3f}, views above 1%: "
              f"{np.mean(frac > 0.01):.0%}")
    print("stellar kernel radius, median over all stars [kpc]: SubfindHsml "
          f"{np.median(np.concatenate(h_subfind)):.2f}, 32nd star "
          f"{np.median(np.concatenate(h32)):.2f}, 64th star {np.median(np.concatenate(h64)):.2f}")


if __name__ == "__main__":
    main()
