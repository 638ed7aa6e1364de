"""The :class:`Galaxy`: per-type particle arrays in physical units, centred on the galaxy.

Every galaxy source (synthetic files, TNG web API cutouts, local snapshots) ends here.
:func:`load_galaxy` reads a file in the IllustrisTNG cutout layout (a ``Header`` group and
``PartType0/1/4/5`` groups in code units) and returns a :class:`Galaxy`;
:func:`galaxy_from_arrays` builds one from arrays already in memory (the snapshot reader
uses it), so the conventions below hold for all sources:

* Positions are centred in float64 with periodic minimum-image wrapping (box size from
  the header) *before* any conversion, so a galaxy straddling the box edge is whole and no
  float32 rounding of large box coordinates (~1e4 ckpc/h) can eat the sub-pc offsets.
* Then code units are converted to physical kpc, Msun, km/s (peculiar), Msun/kpc^3 and
  Gauss with :mod:`alchemy_obs.physics.units`.
* The centre is the subhalo position when given (``SubhaloPos``, ckpc/h), otherwise the
  shrinking-sphere centre (Power et al. 2003, MNRAS 338, 14) of the stars, or of all
  particles for a galaxy without stars.
* Velocities are relative to the mass-weighted mean velocity of the particles within
  ``bulk_radius_kpc`` of the centre.
* Wind particles (``PartType4`` with ``GFM_StellarFormationTime <= 0``) are not stars and
  are dropped from :attr:`Galaxy.stars`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.cosmology import FlatLambdaCDM

from alchemy_obs.errors import AlchemyObsError
from alchemy_obs.physics import units

__all__ = [
    "Particles",
    "Galaxy",
    "GalaxyFileError",
    "PART_TYPES",
    "READ_FIELDS",
    "load_galaxy",
    "galaxy_from_arrays",
    "periodic_offset",
    "shrinking_sphere_centre",
]

#: Galaxy attribute -> TNG particle group.
PART_TYPES: dict[str, str] = {"gas": "PartType0", "dm": "PartType1", "stars": "PartType4", "bh": "PartType5"}

#: Primordial hydrogen mass fraction used where ``GFM_Metals`` is absent.
PRIMORDIAL_HYDROGEN_FRACTION = 0.76

#: Particle fields the reader uses; real cutouts carry many more, which are not read.
READ_FIELDS = frozenset({
    "Coordinates", "Velocities", "Masses", "ParticleIDs", "SubfindHsml", "Density",
    "InternalEnergy", "ElectronAbundance", "NeutralHydrogenAbundance", "MagneticField",
    "StarFormationRate", "GFM_Metallicity", "GFM_Metals", "GFM_StellarFormationTime",
})

_REQUIRED_HEADER = ("BoxSize", "HubbleParam", "Time", "Omega0")
_TNG_UNITS = {
    "UnitLength_in_cm": units.TNG_UNIT_LENGTH_CM,
    "UnitMass_in_g": units.TNG_UNIT_MASS_G,
    "UnitVelocity_in_cm_per_s": units.TNG_UNIT_VELOCITY_CM_S,
}


class GalaxyFileError(AlchemyObsError, ValueError):
    """A cutout or snapshot file is unreadable or lacks what a Galaxy needs; names the file."""


@dataclass
class Particles:
    """One particle type in physical units, centred on the galaxy.

    Attributes
    ----------
    coordinates : ndarray, shape (N, 3), float64
        Physical kpc relative to the galaxy centre.
    velocities : ndarray, shape (N, 3), float64
        Peculiar km/s relative to the galaxy's bulk velocity.
    masses : ndarray, shape (N,), float64
        Msun.
    ids : ndarray, shape (N,), uint64
        ``ParticleIDs``.
    hsml : ndarray or None
        ``SubfindHsml`` in physical kpc (DM and stars), where present.
    density : ndarray or None
        Gas density, physical Msun/kpc^3.
    internal_energy : ndarray or None
        Gas specific internal energy, (km/s)^2.
    electron_abundance : ndarray or None
        Gas :math:`n_e/n_H`.
    neutral_hydrogen_abundance : ndarray or None
        Gas :math:`n_{HI}/n_H`.
    magnetic_field : ndarray, shape (N, 3), or None
        Gas magnetic field, physical Gauss.
    sfr : ndarray or None
        Gas instantaneous star formation rate, Msun/yr.
    metallicity : ndarray or None
        Metal mass fraction (gas and stars).
    hydrogen_fraction : ndarray or None
        Gas hydrogen mass fraction ``GFM_Metals[:, 0]`` (0.76 where absent).
    formation_time : ndarray or None
        Stars: scale factor at birth.
    """

    coordinates: np.ndarray
    velocities: np.ndarray
    masses: np.ndarray
    ids: np.ndarray
    hsml: np.ndarray | None = None
    density: np.ndarray | None = None
    internal_energy: np.ndarray | None = None
    electron_abundance: np.ndarray | None = None
    neutral_hydrogen_abundance: np.ndarray | None = None
    magnetic_field: np.ndarray | None = None
    sfr: np.ndarray | None = None
    metallicity: np.ndarray | None = None
    hydrogen_fraction: np.ndarray | None = None
    formation_time: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.masses.shape[0])

    def __repr__(self) -> str:
        present = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]
        return f"Particles(n={len(self)}, fields={present})"

    @classmethod
    def empty(cls) -> Particles:
        """A particle set with no particles (a type absent from a cutout)."""
        return cls(
            coordinates=np.zeros((0, 3)),
            velocities=np.zeros((0, 3)),
            masses=np.zeros(0),
            ids=np.zeros(0, dtype=np.uint64),
        )

    def select(self, mask: np.ndarray) -> Particles:
        """The subset selected by a boolean mask or an index array (every field is cut)."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name)[mask]
                for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None
            },
        )

    def rotated(self, matrix: np.ndarray) -> Particles:
        """Copy with coordinates, velocities and magnetic field rotated: ``v' = R v``."""
        update = {"coordinates": self.coordinates @ matrix.T, "velocities": self.velocities @ matrix.T}
        if self.magnetic_field is not None:
            update["magnetic_field"] = self.magnetic_field @ matrix.T
        return dataclasses.replace(self, **update)

    @property
    def total_mass(self) -> float:
        """Sum of the particle masses, Msun."""
        return float(self.masses.sum())


@dataclass
class Galaxy:
    """A galaxy's particles in physical units, centred, with its provenance.

    Attributes
    ----------
    gas, dm, stars, bh : Particles
        ``PartType0``, ``PartType1``, ``PartType4`` without wind particles, ``PartType5``.
    redshift, scale_factor, hubble_param : float
        Epoch and :math:`h` of the snapshot.
    cosmology : astropy.cosmology.FlatLambdaCDM
        Built from the header (``HubbleParam``, ``Omega0``, ``OmegaBaryon``).
    box_size_kpc : float
        Periodic box size, physical kpc at this epoch.
    centre_ckpch : ndarray, shape (3,)
        Box coordinates of the centre, ckpc/h (provenance).
    subhalo_id, snapshot : int or None
        Catalogue identity where known.
    source : str
        Where the particles came from (a file path).
    """

    gas: Particles
    dm: Particles
    stars: Particles
    bh: Particles
    redshift: float
    scale_factor: float
    hubble_param: float
    cosmology: FlatLambdaCDM
    box_size_kpc: float
    centre_ckpch: np.ndarray
    subhalo_id: int | None = None
    snapshot: int | None = None
    source: str = ""

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(getattr(self, name))}" for name in PART_TYPES)
        return (
            f"Galaxy({counts}, z={self.redshift:.3f}, subhalo_id={self.subhalo_id}, "
            f"source={self.source!r})"
        )

    def particle_types(self) -> dict[str, Particles]:
        """``{"gas": ..., "dm": ..., "stars": ..., "bh": ...}``."""
        return {name: getattr(self, name) for name in PART_TYPES}

    def rotated(self, matrix: np.ndarray) -> Galaxy:
        """A copy seen in a rotated frame: every position, velocity and B vector is ``R @ v``.

        Parameters
        ----------
        matrix : ndarray, shape (3, 3)
            A proper rotation matrix (orthonormal, determinant +1).

        Raises
        ------
        ValueError
            If ``matrix`` is not a proper rotation.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-8):
            raise ValueError("rotation matrix must be a 3x3 orthonormal matrix")
        if np.linalg.det(matrix) < 0:
            raise ValueError("rotation matrix has determinant -1 (a reflection, not a rotation)")
        return dataclasses.replace(
            self, **{name: p.rotated(matrix) for name, p in self.particle_types().items()}
        )

    def half_mass_radius(self, types: Sequence[str] = ("gas", "stars")) -> float:
        """3-D radius (kpc) enclosing half of the mass of the given particle types.

        Parameters
        ----------
        types : sequence of str
            Any of ``"gas"``, ``"dm"``, ``"stars"``, ``"bh"``; baryons by default.

        Raises
        ------
        ValueError
            If the selected types hold no particles.
        """
        radii = np.concatenate([np.linalg.norm(getattr(self, t).coordinates, axis=1) for t in types])
        masses = np.concatenate([getattr(self, t).masses for t in types])
        if masses.size == 0 or masses.sum() <= 0:
            raise ValueError(f"no particles of types {tuple(types)} in {self.source or 'galaxy'}")
        order = np.argsort(radii)
        cumulative = np.cumsum(masses[order])
        half = 0.5 * cumulative[-1]
        return float(np.interp(half, cumulative, radii[order]))

    def stellar_angular_momentum(self, radius_kpc: float | None = None) -> np.ndarray:
        """Unit vector of the stellar angular momentum (the disc's rotation axis).

        Parameters
        ----------
        radius_kpc : float, optional
            Only stars within this radius count; default three stellar half-mass radii,
            which keeps a merging companion or stripped stars from tilting the axis.

        Returns
        -------
        ndarray, shape (3,)
            Unit vector; gas is used instead of stars for a galaxy without stars.
        """
        part = self.stars if len(self.stars) else self.gas
        kind = "stars" if len(self.stars) else "gas"
        if len(part) == 0:
            raise ValueError(f"no stars or gas to define an angular momentum in {self.source}")
        if radius_kpc is None:
            radius_kpc = 3.0 * self.half_mass_radius((kind,))
        inner = np.linalg.norm(part.coordinates, axis=1) < radius_kpc
        if not inner.any():
            inner = np.ones(len(part), dtype=bool)
        moment = np.sum(
            part.masses[inner, None] * np.cross(part.coordinates[inner], part.velocities[inner]), axis=0
        )
        norm = np.linalg.norm(moment)
        if norm == 0:
            raise ValueError(f"the {kind} of {self.source} have no net angular momentum")
        return moment / norm


def periodic_offset(x: np.ndarray, centre: np.ndarray, box_size: float) -> np.ndarray:
    """Minimum-image offsets ``x - centre`` in a periodic box, computed in float64.

    Parameters
    ----------
    x : ndarray, shape (N, 3)
        Positions in box coordinates (any float dtype; promoted to float64 first).
    centre : ndarray, shape (3,)
        Reference position, same unit.
    box_size : float
        Box side, same unit.

    Returns
    -------
    ndarray, shape (N, 3), float64
        Offsets in ``[-box_size/2, box_size/2)``.
    """
    d = np.asarray(x, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    return d - box_size * np.floor(d / box_size + 0.5)


def shrinking_sphere_centre(
    positions: np.ndarray,
    masses: np.ndarray,
    box_size: float,
    shrink: float = 0.975,
    min_particles: int = 100,
    min_fraction: float = 0.01,
) -> np.ndarray:
    """Centre of the densest concentration by the shrinking-sphere method (Power et al. 2003).

    Starting from the sphere around the centre of mass that holds every particle, the
    radius shrinks by ``shrink`` each step and the centre moves to the centre of mass of
    the particles inside, until fewer than ``max(min_particles, min_fraction * N)`` remain.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Box coordinates (periodic); float64 arithmetic is used throughout.
    masses : ndarray, shape (N,)
        Weights.
    box_size : float
        Periodic box side in the unit of ``positions``.
    shrink : float
        Radius factor per iteration (Power et al. use 0.975).
    min_particles, min_fraction : int, float
        Stop criterion.

    Returns
    -------
    ndarray, shape (3,), float64
        The centre in box coordinates, wrapped into ``[0, box_size)``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    if positions.shape[0] == 0:
        raise ValueError("no particles to find a centre")
    # Offsets from one member particle are whole as long as the object spans < box/2.
    ref = positions[0]
    d = periodic_offset(positions, ref, box_size)
    centre = np.average(d, axis=0, weights=masses)
    radius = np.sqrt(np.max(np.sum((d - centre) ** 2, axis=1)))
    stop = max(min_particles, int(min_fraction * len(masses)))
    m = masses
    while True:
        inside = np.sum((d - centre) ** 2, axis=1) <= radius**2
        if inside.sum() < stop:
            break
        d, m = d[inside], m[inside]
        centre = np.average(d, axis=0, weights=m)
        radius *= shrink
    return np.mod(ref + centre, box_size)


def _subhalo_id_from_name(path: Path) -> int | None:
    match = re.fullmatch(r"cutout_(\d+)\.hdf5", path.name)
    return int(match.group(1)) if match else None


def _read_cutout(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Header attributes and ``{group: {field: array}}`` of a TNG-layout file."""
    if not path.is_file():
        raise GalaxyFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise GalaxyFileError(
            f"{path}: not a readable HDF5 file (truncated or corrupt download?): {exc}"
        ) from None
    try:
        with f:
            if "Header" not in f:
                raise GalaxyFileError(f"{path}: no 'Header' group; not a TNG cutout or snapshot")
            header = {k: (v.item() if np.ndim(v) == 0 else np.asarray(v)) for k, v in f["Header"].attrs.items()}
            groups: dict[str, dict[str, np.ndarray]] = {}
            for group in PART_TYPES.values():
                if group in f:
                    groups[group] = {name: ds[()] for name, ds in f[group].items() if name in READ_FIELDS}
    except OSError as exc:
        raise GalaxyFileError(f"{path}: HDF5 read failed (truncated file?): {exc}") from None
    return header, groups


def load_galaxy(
    path: str | os.PathLike,
    subhalo_pos: Sequence[float] | np.ndarray | None = None,
    *,
    subhalo_id: int | None = None,
    snapshot: int | None = None,
    bulk_radius_kpc: float = 10.0,
) -> Galaxy:
    """Read a TNG-layout cutout HDF5 file into a centred :class:`Galaxy` in physical units.

    Parameters
    ----------
    path : path-like
        A cutout as served by the TNG web API (``cutout_<id>.hdf5``) or written by
        :mod:`alchemy_obs.sim.synthetic`.
    subhalo_pos : array-like of 3 floats, optional
        The subhalo's ``SubhaloPos`` in ckpc/h (box coordinates). Without it the centre is
        found with a shrinking sphere.
    subhalo_id : int, optional
        Catalogue id; by default parsed from a ``cutout_<id>.hdf5`` file name.
    snapshot : int, optional
        Snapshot number, for provenance.
    bulk_radius_kpc : float
        Radius (physical kpc) of the sphere whose mass-weighted mean velocity is the bulk
        velocity subtracted from all particles.

    Returns
    -------
    Galaxy

    Raises
    ------
    GalaxyFileError
        If the file is missing, truncated or not HDF5, lacks ``PartType0`` or required
        header attributes, or uses a unit system other than TNG's; the message names the
        file and what is missing.
    """
    path = Path(path)
    header, groups = _read_cutout(path)
    if subhalo_id is None:
        subhalo_id = _subhalo_id_from_name(path)
    return galaxy_from_arrays(
        header,
        groups,
        subhalo_pos=subhalo_pos,
        subhalo_id=subhalo_id,
        snapshot=snapshot,
        source=str(path),
        bulk_radius_kpc=bulk_radius_kpc,
    )


def _require(fields: Mapping[str, np.ndarray], names: Sequence[str], where: str) -> None:
    missing = [n for n in names if n not in fields]
    if missing:
        raise GalaxyFileError(f"{where} lacks required field(s) {missing}")


def galaxy_from_arrays(
    header: Mapping[str, Any],
    groups: Mapping[str, Mapping[str, np.ndarray]],
    *,
    subhalo_pos: Sequence[float] | np.ndarray | None = None,
    subhalo_id: int | None = None,
    snapshot: int | None = None,
    source: str = "",
    bulk_radius_kpc: float = 10.0,
) -> Galaxy:
    """Build a :class:`Galaxy` from TNG-layout arrays in code units.

    Parameters
    ----------
    header : mapping
        The ``Header`` attributes (at least ``BoxSize``, ``HubbleParam``, ``Time``,
        ``Omega0``; ``MassTable`` when ``PartType1`` has no ``Masses``).
    groups : mapping
        ``{"PartType0": {"Coordinates": ..., ...}, ...}`` in code units; ``PartType0`` is
        required, the other types may be absent.
    subhalo_pos, subhalo_id, snapshot, bulk_radius_kpc
        As in :func:`load_galaxy`.
    source : str
        Provenance (file path) used in messages.

    Returns
    -------
    Galaxy
    """
    where = source or "<arrays>"
    missing = [k for k in _REQUIRED_HEADER if k not in header]
    if missing:
        raise GalaxyFileError(f"{where}: Header lacks required attribute(s) {missing}")
    for key, tng in _TNG_UNITS.items():
        if key in header and not np.isclose(float(header[key]), tng, rtol=1e-3):
            raise GalaxyFileError(
                f"{where}: Header {key}={header[key]} differs from the TNG unit system ({tng}); "
                "only TNG code units are supported"
            )
    if "PartType0" not in groups:
        raise GalaxyFileError(f"{where}: no 'PartType0' (gas) group; the galaxy needs its gas cells")

    cu = units.CodeUnits.from_header(header)
    box = float(header["BoxSize"])
    a, h = cu.a, cu.h
    redshift = float(header.get("Redshift", 1.0 / a - 1.0))
    omega_b = float(header["OmegaBaryon"]) if "OmegaBaryon" in header else None
    cosmology = FlatLambdaCDM(H0=100.0 * h, Om0=float(header["Omega0"]), Ob0=omega_b)

    fields: dict[str, Mapping[str, np.ndarray]] = {}
    for name, group in PART_TYPES.items():
        data = groups.get(group)
        if data is None or len(data) == 0:
            continue
        _require(data, ("Coordinates", "Velocities", "ParticleIDs"), f"{where}: {group}")
        if "Masses" not in data:
            table = header.get("MassTable")
            idx = int(group[-1])
            if table is None or float(np.asarray(table)[idx]) <= 0:
                raise GalaxyFileError(
                    f"{where}: {group} has no 'Masses' and Header MassTable[{idx}] is not positive"
                )
        fields[name] = data

    # Centre in box coordinates (ckpc/h), float64, before anything else touches positions.
    if subhalo_pos is not None:
        centre = np.mod(np.asarray(subhalo_pos, dtype=np.float64).reshape(3), box)
    else:
        basis = "stars" if "stars" in fields and _n_stars(fields["stars"]) > 0 else None
        if basis is not None:
            star = fields["stars"]
            keep = np.asarray(star["GFM_StellarFormationTime"]) > 0 if "GFM_StellarFormationTime" in star else slice(None)
            pos = np.asarray(star["Coordinates"], dtype=np.float64)[keep]
            mass = _masses(star, header, 4)[keep]
        else:
            pos = np.concatenate([np.asarray(d["Coordinates"], dtype=np.float64) for d in fields.values()])
            mass = np.concatenate([_masses(d, header, int(PART_TYPES[n][-1])) for n, d in fields.items()])
        centre = shrinking_sphere_centre(pos, mass, box)

    parts: dict[str, Particles] = {}
    for name, data in fields.items():
        ptype = int(PART_TYPES[name][-1])
        offset = periodic_offset(data["Coordinates"], centre, box)
        p = Particles(
            coordinates=offset * cu.length,
            velocities=units.velocity_to_km_s(data["Velocities"], a),
            masses=_masses(data, header, ptype) * cu.mass,
            ids=np.asarray(data["ParticleIDs"]).astype(np.uint64, copy=False),
            hsml=units.length_to_kpc(data["SubfindHsml"], a, h) if "SubfindHsml" in data else None,
            metallicity=_float(data, "GFM_Metallicity"),
        )
        if name == "gas":
            _require(data, ("Density", "InternalEnergy"), f"{where}: PartType0")
            p.density = units.density_to_msun_kpc3(data["Density"], a, h)
            p.internal_energy = _float(data, "InternalEnergy")
            p.electron_abundance = _float(data, "ElectronAbundance")
            p.neutral_hydrogen_abundance = _float(data, "NeutralHydrogenAbundance")
            p.sfr = _float(data, "StarFormationRate")
            if "MagneticField" in data:
                p.magnetic_field = np.asarray(data["MagneticField"], dtype=np.float64) * cu.magnetic_field
            if "GFM_Metals" in data:
                p.hydrogen_fraction = np.asarray(data["GFM_Metals"], dtype=np.float64)[:, 0]
            else:
                p.hydrogen_fraction = np.full(len(p), PRIMORDIAL_HYDROGEN_FRACTION)
        if name == "stars" and "GFM_StellarFormationTime" in data:
            p.formation_time = np.asarray(data["GFM_StellarFormationTime"], dtype=np.float64)
            p = p.select(p.formation_time > 0)
        parts[name] = p
    for name in PART_TYPES:
        parts.setdefault(name, Particles.empty())

    bulk = _bulk_velocity(parts, bulk_radius_kpc)
    for p in parts.values():
        p.velocities = p.velocities - bulk

    return Galaxy(
        **parts,
        redshift=redshift,
        scale_factor=a,
        hubble_param=h,
        cosmology=cosmology,
        box_size_kpc=box * cu.length,
        centre_ckpch=centre,
        subhalo_id=subhalo_id,
        snapshot=snapshot,
        source=source,
    )


def _n_stars(data: Mapping[str, np.ndarray]) -> int:
    if "GFM_StellarFormationTime" in data:
        return int(np.count_nonzero(np.asarray(data["GFM_StellarFormationTime"]) > 0))
    return int(np.asarray(data["Coordinates"]).shape[0])


def _masses(data: Mapping[str, np.ndarray], header: Mapping[str, Any], ptype: int) -> np.ndarray:
    """Code masses, from ``Masses`` or the header's ``MassTable`` (DM)."""
    if "Masses" in data:
        return np.asarray(data["Masses"], dtype=np.float64)
    n = np.asarray(data["Coordinates"]).shape[0]
    return np.full(n, float(np.asarray(header["MassTable"])[ptype]))


def _float(data: Mapping[str, np.ndarray], name: str) -> np.ndarray | None:
    return np.asarray(data[name], dtype=np.float64) if name in data else None


def _bulk_velocity(parts: Mapping[str, Particles], radius_kpc: float) -> np.ndarray:
    """Mass-weighted mean velocity of all particles within ``radius_kpc`` of the centre."""
    momentum = np.zeros(3)
    mass = 0.0
    for p in parts.values():
        if len(p) == 0:
            continue
        inner = np.einsum("ij,ij->i", p.coordinates, p.coordinates) < radius_kpc**2
        momentum += np.sum(p.masses[inner, None] * p.velocities[inner], axis=0)
        mass += float(p.masses[inner].sum())
    return momentum / mass if mass > 0 else np.zeros(3)
