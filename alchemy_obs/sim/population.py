"""Population check: do the synthetic galaxies follow the observed scaling relations?

:func:`measure_galaxy` measures the integrated properties of one galaxy from its particles
(as read back from a written cutout), the way an observer or a TNG catalogue would, not
from the generator's input parameters:

* :math:`M_{200}`: total mass of all particles inside the radius within which the mean
  density is 200 times the critical density at the galaxy's redshift;
* :math:`M_*`, SFR and the star-forming gas metallicity inside a 30 kpc (physical)
  aperture (the convention of Pillepich et al. 2018, MNRAS 475, 648);
* :math:`M_{\\rm HI}` from the package's HI model
  (:func:`alchemy_obs.physics.gas.gas_hi_mass`: Rahmati et al. 2013 self-shielding and
  the Krumholz et al. 2009 H2 split) inside :math:`R_{200}`, like a single-dish beam;
* :math:`D_{\\rm HI}`, the diameter at which the azimuthally averaged face-on HI surface
  density falls to 1 Msun/pc² (Wang et al. 2016);
* :math:`V_{\\rm flat}`, the mean circular velocity in the disc plane
  (:func:`plane_circular_velocity`: the radial pull of all particles on rings in the
  plane of the stellar disc) along the flat outer part of the rotation curve out to
  :math:`R_{\\rm HI}`, found as in SPARC (:func:`flat_velocity`; Lelli et al. 2016, AJ
  152, 157);
* :math:`12+\\log({\\rm O/H})`, the SFR-weighted metal mass fraction of the star-forming
  gas converted with the solar values :math:`Z_\\odot = 0.0127` (TNG's) and
  :math:`12+\\log({\\rm O/H})_\\odot = 8.69` (Asplund et al. 2009).

:data:`RELATIONS` holds the observed relations (:mod:`alchemy_obs.sim.relations`), each
with its median, 1σ scatter and source: stellar-to-halo mass (Moster et al. 2013), HI
size-mass (Wang et al. 2016), HI gas fraction (xGASS, Catinella et al. 2018),
star-forming main sequence (Speagle et al. 2014, at each galaxy's cosmic time), baryonic
Tully-Fisher (Lelli et al. 2019) and mass-metallicity (Curti et al. 2020).

:func:`check_population` bins the galaxies in the abscissa of each relation and compares
the median residual (in dex) with the observed scatter; :func:`plot_population` draws the
galaxies over the relations. ``alchemy-obs synth --population-check PNG`` runs both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from tqdm.auto import tqdm

from alchemy_obs.maps.geometry import face_on_matrix
from alchemy_obs.physics.gas import SOLAR_METALLICITY, gas_hi_mass
from alchemy_obs.sim.galaxy import Galaxy, load_galaxy
from alchemy_obs.sim.relations import (
    LELLI2019_SCATTER,
    MOSTER2013_SCATTER,
    SOLAR_OXYGEN_ABUNDANCE,
    SPEAGLE2014_SCATTER,
    WANG2016_SCATTER,
    curti2020_oxygen_abundance,
    curti2020_scatter,
    lelli2019_baryonic_mass,
    moster2013_stellar_mass,
    speagle2014_sfr,
    wang2016_hi_diameter,
    xgass_gas_fraction,
    xgass_gas_fraction_scatter,
)

__all__ = [
    "HELIUM_CORRECTION",
    "GalaxyProperties",
    "ScalingRelation",
    "BinCheck",
    "RELATIONS",
    "hi_diameter",
    "flat_velocity",
    "plane_circular_velocity",
    "measure_galaxy",
    "measure_cutouts",
    "check_population",
    "plot_population",
    "format_checks",
]

#: Atomic gas mass per HI mass, for helium (Lelli et al. 2016, AJ 152, 157: M_gas = 1.33 M_HI).
HELIUM_CORRECTION = 1.33

_G = 4.30091e-6  # kpc (km/s)^2 / Msun
_APERTURE_KPC = 30.0


@dataclass(frozen=True)
class GalaxyProperties:
    """Integrated properties of one galaxy, measured from its particles.

    Attributes
    ----------
    source : str
        The cutout file.
    redshift : float
        Snapshot redshift.
    cosmic_time : Quantity
        Age of the universe at ``redshift`` (Gyr), in the galaxy's cosmology.
    m200 : Quantity
        Mass inside the radius of mean density 200 times critical (Msun).
    stellar_mass : Quantity
        Stars inside 30 kpc (Msun).
    hi_mass : Quantity
        HI inside :math:`R_{200}` (Msun).
    sfr : Quantity
        Instantaneous star formation rate of the gas inside 30 kpc (Msun/yr).
    hi_diameter : Quantity
        Face-on diameter at :math:`\\Sigma_{\\rm HI} = 1\\,M_\\odot\\,{\\rm pc^{-2}}` (kpc);
        NaN if the HI never reaches that surface density.
    v_flat : Quantity
        Mean circular velocity in the disc plane (:func:`plane_circular_velocity`) along
        the flat outer part of the rotation curve out to :math:`R_{\\rm HI}` (km/s,
        :func:`flat_velocity`); NaN without :math:`D_{\\rm HI}`.
    oxygen_abundance : float
        :math:`12+\\log({\\rm O/H})` of the star-forming gas (SFR-weighted); NaN without
        star formation.
    """

    source: str
    redshift: float
    cosmic_time: u.Quantity
    m200: u.Quantity
    stellar_mass: u.Quantity
    hi_mass: u.Quantity
    sfr: u.Quantity
    hi_diameter: u.Quantity
    v_flat: u.Quantity
    oxygen_abundance: float

    @property
    def baryonic_mass(self) -> u.Quantity:
        """:math:`M_b = M_* + 1.33\\,M_{\\rm HI}` (Msun), the BTFR's mass (Lelli et al. 2016)."""
        return self.stellar_mass + HELIUM_CORRECTION * self.hi_mass


def hi_diameter(
    radius: u.Quantity,
    hi_mass: u.Quantity,
    *,
    threshold: u.Quantity = 1.0 * u.Msun / u.pc**2,
    cells_per_annulus: int | None = None,
) -> u.Quantity:
    """Diameter at which the azimuthally averaged HI surface density falls to ``threshold``.

    The face-on profile is built from annuli holding equal numbers of HI-bearing cells
    (``cells_per_annulus``; by default 1/25 of them, at least 8), so that every annulus
    has the same Poisson noise; the outermost crossing of ``threshold`` is interpolated
    linearly in :math:`\\log\\Sigma`. This is the definition of Wang et al. (2016, MNRAS
    460, 2143) for inclination-corrected HI maps.

    Parameters
    ----------
    radius : Quantity
        Cylindrical radius of each cell in the disc plane (length).
    hi_mass : Quantity
        HI mass of each cell.
    threshold : Quantity
        Surface density defining the HI edge (default 1 Msun/pc²).
    cells_per_annulus : int, optional
        Cells per annulus of the profile.

    Returns
    -------
    Quantity
        :math:`D_{\\rm HI} = 2R_{\\rm HI}` in kpc; NaN if no annulus reaches ``threshold``.
    """
    r = np.asarray(radius.to_value(u.kpc), np.float64)
    m = np.asarray(hi_mass.to_value(u.Msun), np.float64)
    limit = threshold.to_value(u.Msun / u.kpc**2)
    # Ionised cells (hot halo, x_HI ~ 1e-6) carry no HI; they only dilute the annuli.
    keep = m > 1e-4 * m.max() if m.size else np.zeros(0, bool)
    r, m = r[keep], m[keep]
    order = np.argsort(r)
    r, m = r[order], m[order]
    step = cells_per_annulus or max(8, r.size // 25)
    if r.size < 2 * step:
        return np.nan * u.kpc
    # The remainder joins the outermost annulus: a handful of cells in a sliver of area
    # would fake a high surface density far out.
    edges_idx = np.arange(0, r.size - step + 1, step)
    edges = np.append(r[edges_idx], r[-1])
    edges[0] = 0.0
    mass = np.add.reduceat(m, edges_idx)
    area = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    sigma = mass / np.maximum(area, 1e-12)
    centre = np.sqrt(0.5 * (edges[1:] ** 2 + edges[:-1] ** 2))
    above = np.nonzero(sigma >= limit)[0]
    if above.size == 0:
        return np.nan * u.kpc
    i = above[-1]
    if i == sigma.size - 1:
        return 2 * edges[-1] * u.kpc
    # Interpolate log Sigma between the last annulus above and the next (below) one.
    s0, s1 = math.log(sigma[i]), math.log(max(sigma[i + 1], 1e-300))
    frac = (s0 - math.log(limit)) / (s0 - s1)
    return 2 * (centre[i] + frac * (centre[i + 1] - centre[i])) * u.kpc


def flat_velocity(rotation_curve: u.Quantity, tolerance: float = 0.05, n_outer: int = 3) -> u.Quantity:
    """Mean velocity along the flat outer part of a rotation curve (Lelli et al. 2016, AJ 152, 157).

    Starting from the ``n_outer`` outermost points, points further in are added while each
    differs from the mean of those already taken by less than ``tolerance``; the mean of
    the points taken is :math:`V_{\\rm flat}`.

    Parameters
    ----------
    rotation_curve : Quantity
        Circular velocities at increasing radii (velocity).
    tolerance : float
        Largest fractional difference from the running mean of a point on the flat part.
    n_outer : int
        Outermost points always taken.

    Returns
    -------
    Quantity
        :math:`V_{\\rm flat}`, same unit as ``rotation_curve``.
    """
    v = np.asarray(rotation_curve.value, np.float64)
    if v.size < n_outer:
        raise ValueError(f"a rotation curve needs at least {n_outer} points, got {v.size}")
    start = v.size - n_outer
    mean = v[start:].mean()
    while start > 0 and abs(v[start - 1] - mean) <= tolerance * mean:
        start -= 1
        mean = v[start:].mean()
    return mean * rotation_curve.unit


def plane_circular_velocity(
    positions: np.ndarray,
    masses: np.ndarray,
    radius: u.Quantity,
    axis: np.ndarray,
    *,
    n_azimuth: int = 16,
    softening: u.Quantity = 0.3 * u.kpc,
) -> u.Quantity:
    """Circular velocity in the disc plane from the gravity of all particles.

    The radial acceleration of every particle (Plummer-softened, summed directly) is
    averaged over ``n_azimuth`` points on a ring of each radius in the plane normal to
    ``axis``, and :math:`V_c = \\sqrt{R\\,\\langle -g_R\\rangle}`. This is the speed of
    cold gas on circular orbits, the quantity an HI rotation curve measures (SPARC
    corrects dwarfs for pressure support; Lelli et al. 2016, AJ 152, 157). The spherical
    :math:`\\sqrt{GM(<r)/r}` underestimates it where a disc contributes: an exponential
    disc pulls 15-30 % harder in :math:`V^2` between 2 and 6 scale lengths (Freeman 1970,
    ApJ 160, 811).

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Particle positions relative to the galaxy centre, kpc.
    masses : ndarray, shape (N,)
        Particle masses, Msun.
    radius : Quantity
        Ring radii (length).
    axis : ndarray, shape (3,)
        Unit normal of the disc plane (e.g. :meth:`Galaxy.stellar_angular_momentum`).
    n_azimuth : int
        Points per ring.
    softening : Quantity
        Plummer softening length, against the noise of particles next to a ring point
        (TNG50 softens stars at 0.29 kpc; Pillepich et al. 2019, MNRAS 490, 3196). The
        synthetic galaxies' :math:`V_{\\rm flat}` changes by less than 2 % between 0.05
        and 0.3 kpc.

    Returns
    -------
    Quantity
        :math:`V_c` at each radius, km/s (0 where the net pull points outwards).
    """
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    rings = np.asarray(radius.to_value(u.kpc), np.float64)
    phi = 2 * np.pi * (np.arange(n_azimuth) + 0.5) / n_azimuth
    unit = np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2  # (n_azimuth, 3)
    points = (rings[:, None, None] * unit[None]).reshape(-1, 3)
    outward = np.broadcast_to(unit[None], (rings.size, n_azimuth, 3)).reshape(-1, 3)
    pos = np.asarray(positions, np.float64)
    mass = np.asarray(masses, np.float64)
    eps2 = softening.to_value(u.kpc) ** 2
    pull = np.zeros(points.shape[0])
    # Chunks keep the (points x particles) arrays to a few tens of MB for large cutouts.
    step = max(1, 2_000_000 // max(points.shape[0], 1))
    for start in range(0, mass.size, step):
        d = pos[None, start:start + step] - points[:, None]
        inv = (np.einsum("ijk,ijk->ij", d, d) + eps2) ** -1.5
        # d points from the ring to the particle: an inward pull has d . outward < 0.
        pull -= np.einsum("ij,ijk,ik->i", mass[None, start:start + step] * inv, d, outward)
    v2 = _G * rings * pull.reshape(rings.size, n_azimuth).mean(axis=1)
    return np.sqrt(np.maximum(v2, 0.0)) * u.km / u.s


def _enclosed(galaxy: Galaxy) -> tuple[np.ndarray, np.ndarray]:
    """Sorted 3-D radii (kpc) of all particles and the mass (Msun) inside each."""
    parts = galaxy.particle_types().values()
    r = np.concatenate([np.linalg.norm(p.coordinates, axis=1) for p in parts])
    m = np.concatenate([p.masses for p in parts])
    order = np.argsort(r)
    return r[order], np.cumsum(m[order])


def measure_galaxy(galaxy: Galaxy, aperture: u.Quantity = _APERTURE_KPC * u.kpc) -> GalaxyProperties:
    """Integrated properties of a galaxy from its particles (see the module docstring).

    Parameters
    ----------
    galaxy : Galaxy
        A centred galaxy, e.g. from :func:`~alchemy_obs.sim.galaxy.load_galaxy`.
    aperture : Quantity
        Radius of the sphere inside which stellar mass, SFR and metallicity are summed.

    Returns
    -------
    GalaxyProperties

    Raises
    ------
    ValueError
        If the galaxy has no stars or no gas, or no sphere around its centre is 200 times
        denser than the critical density.
    """
    if len(galaxy.stars) == 0 or len(galaxy.gas) == 0:
        raise ValueError(f"{galaxy.source or 'galaxy'} needs stars and gas for a population check")
    ap = aperture.to_value(u.kpc)
    z = galaxy.redshift
    r_all, m_all = _enclosed(galaxy)
    rho_200 = 200 * galaxy.cosmology.critical_density(z).to_value(u.Msun / u.kpc**3)
    mean_density = m_all / (4 / 3 * np.pi * np.maximum(r_all, 1e-6) ** 3)
    inside = np.nonzero(mean_density >= rho_200)[0]
    if inside.size == 0:
        raise ValueError(f"{galaxy.source or 'galaxy'}: mean density never reaches 200 rho_crit")
    r200 = r_all[inside[-1]]
    m200 = m_all[inside[-1]]

    stars, gas = galaxy.stars, galaxy.gas
    in_ap = np.linalg.norm(stars.coordinates, axis=1) < ap
    mstar = float(stars.masses[in_ap].sum())
    gas_r = np.linalg.norm(gas.coordinates, axis=1)
    hi = gas_hi_mass(gas, z).to_value(u.Msun)
    in_halo = gas_r < r200
    m_hi = float(hi[in_halo].sum())
    sfr_cells = np.where(gas_r < ap, gas.sfr, 0.0)
    sfr = float(sfr_cells.sum())
    if sfr > 0 and gas.metallicity is not None:
        z_sf = float(np.sum(sfr_cells * gas.metallicity) / sfr)
        oxygen = SOLAR_OXYGEN_ABUNDANCE + math.log10(z_sf / SOLAR_METALLICITY)
    else:
        oxygen = math.nan

    axis = galaxy.stellar_angular_momentum()
    face_on = face_on_matrix(axis)
    xy = (gas.coordinates[in_halo] @ face_on.T)[:, :2]
    d_hi = hi_diameter(np.hypot(xy[:, 0], xy[:, 1]) * u.kpc, hi[in_halo] * u.Msun)
    r_hi = 0.5 * d_hi.to_value(u.kpc)
    if np.isfinite(r_hi) and r_hi > 0:
        grid = np.linspace(0.05, 1.0, 20) * r_hi
        parts = galaxy.particle_types().values()
        pos = np.concatenate([p.coordinates for p in parts])
        mass = np.concatenate([p.masses for p in parts])
        v_flat = flat_velocity(plane_circular_velocity(pos, mass, grid * u.kpc, axis))
    else:
        v_flat = math.nan * u.km / u.s
    return GalaxyProperties(
        source=galaxy.source,
        redshift=z,
        cosmic_time=galaxy.cosmology.age(z).to(u.Gyr),
        m200=m200 * u.Msun,
        stellar_mass=mstar * u.Msun,
        hi_mass=m_hi * u.Msun,
        sfr=sfr * u.Msun / u.yr,
        hi_diameter=d_hi,
        v_flat=v_flat.to(u.km / u.s),
        oxygen_abundance=oxygen,
    )


def measure_cutouts(paths: Sequence[str | os.PathLike]) -> list[GalaxyProperties]:
    """:func:`measure_galaxy` of each TNG-layout cutout file, read with :func:`load_galaxy`.

    Parameters
    ----------
    paths : sequence of path-like
        Cutout files.

    Returns
    -------
    list of GalaxyProperties
        In the order of ``paths``.
    """
    return [measure_galaxy(load_galaxy(p)) for p in tqdm(paths, desc="measuring galaxies", unit="galaxy")]


# --- observed relations ------------------------------------------------------------------

def _log(q: u.Quantity, unit: u.UnitBase | str) -> float:
    value = q.to_value(unit)
    return math.log10(value) if value > 0 else math.nan


@dataclass(frozen=True)
class ScalingRelation:
    """An observed scaling relation: median, 1σ scatter, validity range and source.

    Attributes
    ----------
    key, title : str
        Short name and plot title.
    citation : str
        Where the median and the scatter come from.
    x_label, y_label : str
        Axis labels (matplotlib mathtext).
    x_range : tuple of float
        Abscissa range covered by the observations; galaxies outside are not checked.
    median : callable
        ``median(x) -> y`` of the relation.
    scatter : callable
        ``scatter(x) -> sigma`` in dex.
    coordinates : callable
        ``coordinates(props) -> (x, y)`` of one measured galaxy.
    """

    key: str
    title: str
    citation: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    median: Callable[[np.ndarray], np.ndarray]
    scatter: Callable[[np.ndarray], np.ndarray]
    coordinates: Callable[[GalaxyProperties], tuple[float, float]]


def _t0() -> float:
    from alchemy_obs.sim.synthetic import tng_cosmology

    return float(tng_cosmology().age(0).to_value(u.Gyr))


def _sfr_at_z0(p: GalaxyProperties) -> tuple[float, float]:
    """log M*, and log SFR moved to z = 0 along Speagle's main-sequence evolution."""
    x = _log(p.stellar_mass, u.Msun)
    shift = speagle2014_sfr(x, p.cosmic_time.to_value(u.Gyr)) - speagle2014_sfr(x, _t0())
    return x, _log(p.sfr, u.Msun / u.yr) - float(shift)


def _const(value: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.full(np.shape(x), value)


#: The observed relations of the population check, in plotting order.
RELATIONS: tuple[ScalingRelation, ...] = (
    ScalingRelation(
        key="shmr", title="stellar-to-halo mass",
        citation="Moster, Naab & White (2013), z = 0; 0.15 dex",
        x_label=r"$\log M_{200}\ [M_\odot]$", y_label=r"$\log M_*\ [M_\odot]$",
        x_range=(10.5, 14.0), median=moster2013_stellar_mass, scatter=_const(MOSTER2013_SCATTER),
        coordinates=lambda p: (_log(p.m200, u.Msun), _log(p.stellar_mass, u.Msun)),
    ),
    ScalingRelation(
        key="hi_size", title="HI size-mass",
        citation="Wang et al. (2016); 0.06 dex",
        x_label=r"$\log M_{\rm HI}\ [M_\odot]$", y_label=r"$\log D_{\rm HI}\ [{\rm kpc}]$",
        x_range=(6.0, 11.0), median=wang2016_hi_diameter, scatter=_const(WANG2016_SCATTER),
        coordinates=lambda p: (_log(p.hi_mass, u.Msun), _log(p.hi_diameter, u.kpc)),
    ),
    ScalingRelation(
        key="gas_fraction", title="HI gas fraction",
        citation="xGASS, Catinella et al. (2018): medians, error x sqrt(N)",
        x_label=r"$\log M_*\ [M_\odot]$", y_label=r"$\log M_{\rm HI}/M_*$",
        x_range=(9.14, 11.2), median=xgass_gas_fraction, scatter=xgass_gas_fraction_scatter,
        coordinates=lambda p: (_log(p.stellar_mass, u.Msun),
                               _log(p.hi_mass, u.Msun) - _log(p.stellar_mass, u.Msun)),
    ),
    ScalingRelation(
        key="sfms", title="star-forming main sequence",
        citation="Speagle et al. (2014), moved to z = 0; 0.2 dex",
        x_label=r"$\log M_*\ [M_\odot]$", y_label=r"$\log {\rm SFR}_{z=0}\ [M_\odot\,{\rm yr}^{-1}]$",
        x_range=(9.0, 11.5), median=lambda x: speagle2014_sfr(x, _t0()), scatter=_const(SPEAGLE2014_SCATTER),
        coordinates=_sfr_at_z0,
    ),
    ScalingRelation(
        key="btfr", title="baryonic Tully-Fisher",
        citation="Lelli et al. (2019), V_flat; 0.1 dex",
        x_label=r"$\log V_{\rm flat}\ [{\rm km\,s^{-1}}]$", y_label=r"$\log M_b\ [M_\odot]$",
        x_range=(1.3, 2.5), median=lelli2019_baryonic_mass, scatter=_const(LELLI2019_SCATTER),
        coordinates=lambda p: (_log(p.v_flat, u.km / u.s), _log(p.baryonic_mass, u.Msun)),
    ),
    ScalingRelation(
        key="mzr", title="mass-metallicity",
        citation="Curti et al. (2020), Te scale; fig. 3 spread",
        x_label=r"$\log M_*\ [M_\odot]$", y_label=r"$12 + \log({\rm O/H})$",
        x_range=(7.5, 11.4), median=curti2020_oxygen_abundance,
        scatter=curti2020_scatter,
        coordinates=lambda p: (_log(p.stellar_mass, u.Msun), p.oxygen_abundance),
    ),
)


@dataclass(frozen=True)
class BinCheck:
    """One abscissa bin of one relation: the galaxies' median offset against the scatter.

    Attributes
    ----------
    relation : str
        :attr:`ScalingRelation.key`.
    x_low, x_high, x_median : float
        Bin edges and the galaxies' median abscissa.
    n : int
        Galaxies in the bin.
    offset : float
        Median of the galaxies' residuals from the observed median (dex).
    scatter : float
        Observed 1σ scatter at ``x_median`` (dex).
    median_error : float
        Standard error of ``offset`` from the galaxies' own spread,
        :math:`1.253\\,s/\\sqrt{n}` (dex).
    """

    relation: str
    x_low: float
    x_high: float
    x_median: float
    n: int
    offset: float
    scatter: float
    median_error: float

    @property
    def inside(self) -> bool:
        """Whether the median offset lies within the observed 1σ scatter."""
        return abs(self.offset) <= self.scatter


def _points(relation: ScalingRelation, props: Sequence[GalaxyProperties]) -> tuple[np.ndarray, np.ndarray]:
    xy = np.array([relation.coordinates(p) for p in props], np.float64).reshape(-1, 2)
    return xy[:, 0], xy[:, 1]


def check_population(
    props: Sequence[GalaxyProperties], galaxies_per_bin: int = 20, max_bins: int = 5
) -> list[BinCheck]:
    """Compare the galaxies with every relation of :data:`RELATIONS` in abscissa bins.

    Galaxies with a finite measurement inside a relation's ``x_range`` are split into
    bins of equal numbers (about ``galaxies_per_bin``, at most ``max_bins``, at least one);
    each bin reports the median residual from the observed median and the observed scatter.

    Parameters
    ----------
    props : sequence of GalaxyProperties
        The measured galaxies.
    galaxies_per_bin : int
        Target number of galaxies per bin.
    max_bins : int
        Most bins per relation.

    Returns
    -------
    list of BinCheck
        In the order of :data:`RELATIONS`, bins in increasing abscissa; a relation without
        galaxies in its range has no bins.
    """
    checks = []
    for rel in RELATIONS:
        x, y = _points(rel, props)
        ok = np.isfinite(x) & np.isfinite(y) & (x >= rel.x_range[0]) & (x <= rel.x_range[1])
        x, y = x[ok], y[ok]
        if x.size == 0:
            continue
        n_bins = int(np.clip(x.size // galaxies_per_bin, 1, max_bins))
        order = np.argsort(x)
        for idx in np.array_split(order, n_bins):
            residual = y[idx] - rel.median(x[idx])
            xm = float(np.median(x[idx]))
            spread = float(np.std(residual, ddof=1)) if idx.size > 1 else math.nan
            checks.append(BinCheck(
                relation=rel.key, x_low=float(x[idx].min()), x_high=float(x[idx].max()),
                x_median=xm, n=int(idx.size), offset=float(np.median(residual)),
                scatter=float(rel.scatter(np.array(xm))),
                median_error=1.2533 * spread / math.sqrt(idx.size),
            ))
    return checks


def format_checks(checks: Sequence[BinCheck]) -> str:
    """A plain-text table of :func:`check_population`'s bins (one line per bin)."""
    lines = [f"{'relation':<13}{'x range':>14}{'n':>5}{'offset':>9}{'+-':>7}{'scatter':>9}  verdict"]
    for c in checks:
        verdict = "inside" if c.inside else "OUTSIDE"
        lines.append(
            f"{c.relation:<13}{c.x_low:>7.2f}-{c.x_high:<6.2f}{c.n:>5}{c.offset:>+9.3f}"
            f"{c.median_error:>7.3f}{c.scatter:>9.3f}  {verdict}"
        )
    return "\n".join(lines)


def plot_population(
    props: Sequence[GalaxyProperties], png: str | os.PathLike, checks: Sequence[BinCheck] | None = None
) -> Path:
    """Draw the galaxies over the observed relations, one panel per relation.

    Each panel shows the observed median (line) and 1σ scatter (band) over the observed
    range, the galaxies coloured by redshift, and the binned medians of
    :func:`check_population` with their standard errors.

    Parameters
    ----------
    props : sequence of GalaxyProperties
        The measured galaxies.
    png : path-like
        Output image (written atomically).
    checks : sequence of BinCheck, optional
        Binned medians to overplot; computed when not given.

    Returns
    -------
    pathlib.Path
        The PNG file.
    """
    from alchemy_obs.sim.plots import plt, save_png

    checks = check_population(props) if checks is None else checks
    z = np.array([p.redshift for p in props])
    fig, axes = plt.subplots(2, 3, figsize=(13.0, 8.0), constrained_layout=True)
    for ax, rel in zip(axes.ravel(), RELATIONS):
        x, y = _points(rel, props)
        ok = np.isfinite(x) & np.isfinite(y)
        lo = max(rel.x_range[0], np.nanmin(x[ok]) - 0.2) if ok.any() else rel.x_range[0]
        hi = min(rel.x_range[1], np.nanmax(x[ok]) + 0.2) if ok.any() else rel.x_range[1]
        grid = np.linspace(lo, hi, 200)
        med, sig = rel.median(grid), rel.scatter(grid)
        ax.fill_between(grid, med - sig, med + sig, color="0.8", label="observed ±1σ")
        ax.plot(grid, med, color="k", lw=1.5, label="observed median")
        sc = ax.scatter(x[ok], y[ok], c=z[ok], cmap="viridis", vmin=0, vmax=1, s=10, alpha=0.8)
        mine = [c for c in checks if c.relation == rel.key]
        if mine:
            xm = np.array([c.x_median for c in mine])
            ym = rel.median(xm) + np.array([c.offset for c in mine])
            ax.errorbar(xm, ym, yerr=[c.median_error for c in mine], fmt="s", color="C3",
                        mec="k", ms=6, capsize=2, label="synthetic median")
        ax.set_xlabel(rel.x_label)
        ax.set_ylabel(rel.y_label)
        ax.set_title(f"{rel.title}\n{rel.citation}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.colorbar(sc, ax=axes, shrink=0.6, label="redshift")
    return save_png(fig, png, dpi=75)
