"""Per-view map making: a galaxy, a rotation and the settings give the maps of every domain.

All domains of a view share one rotation and one grid. Per particle type, every weight column
the requested domains need (amounts for surface densities; weights and weight * value for
averages) is deposited in a single projection pass, so the kernels are evaluated once per
particle type and view. Smoothing lengths are 3D and rotation invariant: they are computed
once per galaxy and reused by all of its views.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import astropy.units as u
import numpy as np

from alchemy_obs.config import MapsConfig
from alchemy_obs.maps.domains import Domain, GasPhysics, get_domains
from alchemy_obs.maps.geometry import (
    View,
    enclosing_radius,
    face_on_matrix,
    field_of_view,
    fixed_field_of_view,
    hi_radius,
    map_extent,
)
from alchemy_obs.maps.project import project_particles
from alchemy_obs.maps.smoothing import smoothing_length
from alchemy_obs.physics import gas as gas_physics
from alchemy_obs.sim.galaxy import Galaxy, Particles

__all__ = ["galaxy_field", "render_view", "render_views", "cosmology_json"]

_COUNTED = ("gas", "stars", "dm")


def cosmology_json(galaxy: Galaxy) -> str:
    """The galaxy's cosmology as a JSON string (for the dataset's ``cosmology`` attribute)."""
    c = galaxy.cosmology
    return json.dumps({
        "class": type(c).__name__, "H0": c.H0.to_value(u.km / u.s / u.Mpc), "Om0": c.Om0,
        "Ob0": None if c.Ob0 is None else float(c.Ob0), "Tcmb0": c.Tcmb0.to_value(u.K),
    })


def galaxy_field(galaxy: Galaxy, config: MapsConfig) -> tuple[u.Quantity, u.Quantity]:
    """Field of view of a galaxy's maps and its HI radius.

    With ``config.pixel_kpc`` the field is ``npix * pixel_kpc``
    (:func:`~alchemy_obs.maps.geometry.fixed_field_of_view`). Otherwise it is sized on the
    galaxy's discs, not its hot halo (:func:`~alchemy_obs.maps.geometry.field_of_view`): the
    half-side is the 3D radius enclosing ``fov_hi_fraction`` of the HI mass, or
    ``fov_stellar_r_half`` stellar half-mass radii if larger, so at least that fraction of
    the HI lies in the map in every view.

    Parameters
    ----------
    galaxy : Galaxy
        Centred galaxy in physical units.
    config : MapsConfig

    Returns
    -------
    fov : Quantity
        Side of the square field (kpc).
    r_hi : Quantity
        :math:`R_{\\rm HI}` (:func:`~alchemy_obs.maps.geometry.hi_radius`) in the face-on
        plane of the stellar angular momentum (kpc); NaN for a galaxy without angular
        momentum.
    """
    gas = galaxy.gas
    m_hi = (gas_physics.gas_hi_mass(gas, galaxy.redshift, uvb=config.uvb,
                                    column=config.kmt_column)
            if len(gas) else u.Quantity(np.zeros(0), u.Msun))
    try:
        axis = galaxy.stellar_angular_momentum()
    except ValueError:  # no stars and no gas, or no net rotation: no disc plane
        r_hi = np.nan * u.kpc
    else:
        disc_plane = face_on_matrix(axis)[:2]
        r_hi = hi_radius(np.hypot(*(disc_plane @ gas.coordinates.T)) * u.kpc, m_hi)
    if config.pixel_kpc is not None:
        return fixed_field_of_view(config.npix, config.pixel_kpc * u.kpc), r_hi
    hi_extent = enclosing_radius(np.linalg.norm(gas.coordinates, axis=1) * u.kpc,
                                 m_hi.to_value(u.Msun), config.fov_hi_fraction)
    r_star = (galaxy.half_mass_radius(("stars",)) if len(galaxy.stars) else 0.0) * u.kpc
    fov = field_of_view(hi_extent, r_star, stellar_multiple=config.fov_stellar_r_half)
    return fov, r_hi


def _columns(domains: Sequence[Domain], p: Particles, galaxy: Galaxy, physics: GasPhysics):
    """Weight columns for one projection pass and, per domain, how to read its map back."""
    columns: dict[str, np.ndarray] = {}

    def add(key: str, array: np.ndarray) -> str:
        # The gas surface density and the mass weight are the same array: project it once.
        for existing, column in columns.items():
            if column is array:
                return existing
        columns[key] = array
        return key

    recipe: dict[str, tuple[str, str | None]] = {}
    for d in domains:
        value = d.value(p, galaxy, physics)
        if d.weighting == "sum":
            recipe[d.name] = (add(f"sum:{d.name}", value), None)
            continue
        if d.weighting == "mass":
            weight = p.masses
        else:
            if p.density is None:
                raise ValueError(f"domain {d.name!r} is volume weighted and needs gas densities")
            weight = p.masses / p.density
        wkey = f"weight:{d.weighting}"
        wkey = add(wkey, columns.get(wkey, weight))
        recipe[d.name] = (add(f"wq:{d.name}", columns[wkey] * value), wkey)
    return columns, recipe


def render_views(
    galaxy: Galaxy, views: Sequence[View], config: MapsConfig
) -> list[tuple[dict[str, u.Quantity], dict]]:
    """Project every configured domain of ``galaxy`` for each view.

    Parameters
    ----------
    galaxy : Galaxy
        Centred galaxy in physical units.
    views : sequence of View
        Orientations (see :func:`alchemy_obs.maps.geometry.galaxy_views`).
    config : MapsConfig
        Grid size, field of view (:func:`galaxy_field`), slab, kernel and the list of
        domains.

    Returns
    -------
    list of (maps, meta)
        ``maps``: domain name -> (npix, npix) Quantity (float64); ``meta``: one row of the
        dataset's metadata table (``view``, ``rotation``, ``pixel_kpc``, ``extent_kpc``,
        ``r_hi_kpc``, ``n_gas``, ``n_stars``, ``n_dm``; counts are particles whose centre
        lies in the field of view and slab).
    """
    domains = get_domains(config.domains)
    fov, r_hi = galaxy_field(galaxy, config)
    half = 0.5 * fov.to_value(u.kpc)
    extent = tuple(map_extent(fov).to_value(u.kpc))
    npix = config.npix
    pixel_area = (2 * half / npix) ** 2
    slab = None if config.slab_kpc is None else (-0.5 * config.slab_kpc, 0.5 * config.slab_kpc)
    by_type: dict[str, list[Domain]] = {}
    for d in domains:
        by_type.setdefault(d.particle_type, []).append(d)
    hsml = {
        t: smoothing_length(
            getattr(galaxy, t), gas_factor=config.gas_hsml_factor, stars=t == "stars",
            k=config.star_neighbours if t == "stars" else config.knn_neighbours,
        )
        for t in by_type
    }

    physics = GasPhysics(uvb=config.uvb, kmt_column=config.kmt_column,
                         sf_temperature=config.sf_temperature)
    results = []
    for view in views:
        matrix = np.asarray(view.matrix, dtype=np.float64)
        maps: dict[str, u.Quantity] = {}
        meta: dict = {
            "view": view.name, "rotation": matrix, "pixel_kpc": fov.to_value(u.kpc) / npix,
            "extent_kpc": np.array(extent), "r_hi_kpc": r_hi.to_value(u.kpc),
        }
        for t in _COUNTED:
            xyz = getattr(galaxy, t).coordinates @ matrix.T
            inside = (np.abs(xyz[:, 0]) < half) & (np.abs(xyz[:, 1]) < half)
            if slab is not None:
                inside &= np.abs(xyz[:, 2]) < 0.5 * config.slab_kpc
            meta[f"n_{t}"] = int(inside.sum())
        for t, doms in by_type.items():
            p = getattr(galaxy, t).rotated(matrix)
            h = hsml[t]
            # Kernels that cannot reach the map (or the slab) are dropped before projecting.
            xy = np.abs(p.coordinates[:, :2])
            near = (xy[:, 0] < half + h) & (xy[:, 1] < half + h)
            if slab is not None:
                near &= np.abs(p.coordinates[:, 2]) < slab[1] + h
            p, h = p.select(near), h[near]
            columns, recipe = _columns(doms, p, galaxy, physics)
            keys = list(columns)
            if len(p):
                images = project_particles(
                    p.coordinates[:, 0], p.coordinates[:, 1], h,
                    np.stack([columns[k] for k in keys]), extent, npix, config.kernel,
                    z=p.coordinates[:, 2], zrange=slab,
                )
            else:
                images = np.zeros((len(keys), npix, npix))
            image = dict(zip(keys, images))
            for d in doms:
                num, den = recipe[d.name]
                if den is None:
                    maps[d.name] = image[num] / pixel_area * d.unit
                else:
                    covered = image[den] > 0
                    avg = np.full((npix, npix), np.nan)
                    avg[covered] = image[num][covered] / image[den][covered]
                    maps[d.name] = avg * d.unit
        results.append(({d.name: maps[d.name] for d in domains}, meta))
    return results


def render_view(
    galaxy: Galaxy, rotation: np.ndarray, config: MapsConfig, name: str = "view"
) -> tuple[dict[str, u.Quantity], dict]:
    """Maps of every configured domain of ``galaxy`` seen through one rotation.

    Parameters
    ----------
    galaxy : Galaxy
    rotation : ndarray, shape (3, 3)
        Proper rotation, ``x_view = rotation @ x_sim``; the line of sight is ``z'``.
    config : MapsConfig
    name : str
        View name stored in the metadata.

    Returns
    -------
    maps : dict of str to Quantity
        Domain name -> (npix, npix) map.
    meta : dict
        See :func:`render_views`.
    """
    return render_views(galaxy, [View(name, np.asarray(rotation))], config)[0]
