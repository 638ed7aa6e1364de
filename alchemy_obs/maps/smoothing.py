"""Kernel support radii (``h``) of gas cells, dark matter and stars for the projection.

All radii are compact-support radii in the convention of :mod:`alchemy_obs.maps.kernels`.

Gas (Voronoi cells)
    :math:`h = f\\,(3m/4\\pi\\rho)^{1/3}`: a multiple of the radius of the sphere with the
    cell's volume. The default :math:`f = 2.5` is a common choice for SPH-kernel images of
    AREPO gas (e.g. images made by the IllustrisTNG team). Why: the cubic spline's central
    density is
    :math:`W(0) = 8/(\\pi h^3)`, so an isolated cell's kernel reproduces the cell density at its
    centre for :math:`h = (32/3)^{1/3} r_{\\rm cell} \\approx 2.2\\,r_{\\rm cell}`, and a
    kernel of :math:`f = 2.5` overlaps about :math:`f^3 \\approx 16` neighbouring cells, enough
    for a smooth map of a mesh of similar cells without smearing resolved structure.

Dark matter
    ``SubfindHsml`` where the catalogue provides it (the radius enclosing the 64 nearest
    dark matter particles), otherwise the distance to the k-th nearest dark matter particle
    (:func:`knn_smoothing_length`, k = 64 by default to match ``SubfindHsml``).

Stars
    The distance to the k-th nearest star (default k = 32, as in the IllustrisTNG mock images
    of Rodriguez-Gomez et al. 2019, MNRAS 483, 4140). ``SubfindHsml`` is never used for
    stars: IllustrisTNG computes it for every particle type from the *dark matter*
    neighbours, a length several times the stellar interparticle distance in a disc (median
    4.9 kpc against 0.74 kpc to the 32nd nearest star in 24 synthetic galaxies,
    ``benchmarks/fields.py``), which would smear an edge-on stellar disc to kpc thickness.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["GAS_FACTOR", "gas_smoothing_length", "knn_smoothing_length", "smoothing_length"]

#: Default multiple of the volume-equivalent cell radius for gas kernels.
GAS_FACTOR = 2.5


def gas_smoothing_length(
    masses: np.ndarray, density: np.ndarray, factor: float = GAS_FACTOR
) -> np.ndarray:
    """Support radius of Voronoi gas cells, :math:`h = f\\,(3m/4\\pi\\rho)^{1/3}`.

    Parameters
    ----------
    masses : ndarray
        Cell masses (e.g. Msun).
    density : ndarray
        Cell densities (mass per length^3 in the same units, e.g. Msun/kpc^3).
    factor : float
        Multiple :math:`f` of the volume-equivalent radius.

    Returns
    -------
    ndarray
        Support radii in the length unit of ``density``.
    """
    m = np.asarray(masses, np.float64)
    rho = np.asarray(density, np.float64)
    if np.any(rho <= 0) or np.any(m < 0):
        raise ValueError("gas densities must be > 0 and masses >= 0")
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    return factor * np.cbrt(3.0 * m / (4.0 * np.pi * rho))


def knn_smoothing_length(coordinates: np.ndarray, k: int = 64, workers: int = -1) -> np.ndarray:
    """Distance of each particle to its k-th nearest neighbour (itself excluded).

    Parameters
    ----------
    coordinates : ndarray, shape (N, 3)
        Positions.
    k : int
        Neighbour rank; reduced to N - 1 for fewer particles.
    workers : int
        Threads of the k-d tree query (-1: all).

    Returns
    -------
    ndarray, shape (N,)
        Support radii; zero for a lone particle (deposited as a point).
    """
    pos = np.asarray(coordinates, np.float64)
    n = len(pos)
    if n <= 1:
        return np.zeros(n)
    k = min(int(k), n - 1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dist, _ = cKDTree(pos).query(pos, k=[k + 1], workers=workers)
    return dist[:, 0]


def smoothing_length(
    particles: Any,
    gas_factor: float = GAS_FACTOR,
    k: int = 64,
    workers: int = -1,
    *,
    stars: bool = False,
) -> np.ndarray:
    """Support radii of one particle type of a galaxy (physical kpc).

    Gas cells (``density`` present) use :func:`gas_smoothing_length`; stars
    (``stars=True``) the distance to the k-th nearest star; dark matter ``hsml``
    (``SubfindHsml``) if present, else the distance to the k-th nearest particle.

    Parameters
    ----------
    particles : Particles
        One particle type.
    gas_factor : float
        Multiple of the cell radius for gas.
    k : int
        Neighbour rank for the k-nearest-neighbour estimate.
    workers : int
        Threads of the k-d tree query.
    stars : bool
        The particles are stars: ``hsml`` (a dark-matter length) is ignored.

    Returns
    -------
    ndarray, shape (N,)
        kpc.
    """
    if getattr(particles, "density", None) is not None:
        return gas_smoothing_length(particles.masses, particles.density, gas_factor)
    if not stars and getattr(particles, "hsml", None) is not None:
        return np.asarray(particles.hsml, np.float64)
    return knn_smoothing_length(particles.coordinates, k=k, workers=workers)
