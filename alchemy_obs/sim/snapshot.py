"""Read one subhalo's particles from a local IllustrisTNG snapshot without reading the rest.

A TNG output folder (e.g. ``TNG50-1/output``) holds, for snapshot ``NNN``::

    snapdir_NNN/snap_NNN.{i}.hdf5               particles, split in chunks; each chunk has a
                                                Header (NumPart_ThisFile) and PartType0..5
    groups_NNN/fof_subhalo_tab_NNN.{i}.hdf5     group catalogue chunks: Subhalo/SubhaloPos,
                                                SubhaloLenType, SubhaloHalfmassRadType, ...
    ../postprocessing/offsets/offsets_NNN.hdf5  Subhalo/SnapByType: first particle of each
                                                subhalo per type; FileOffsets/SnapByType: first
                                                particle of each snapshot chunk per type;
                                                FileOffsets/Subhalo: first subhalo per group chunk

(https://www.tng-project.org/data/docs/specifications/). Particles are stored sorted by
group and subhalo, so a subhalo's particles of type ``t`` are the contiguous global range
``[SnapByType[id, t], SnapByType[id, t] + SubhaloLenType[id, t])``. The reader finds the
chunks overlapping that range from ``FileOffsets/SnapByType`` and reads only those slices;
the group catalogue chunk holding the subhalo is the only catalogue file opened.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from alchemy_obs.atomic import temporary_beside
from alchemy_obs.errors import AlchemyObsError
from alchemy_obs.sim.tng import CUTOUT_FIELDS, PART_TYPES, write_json_atomic

if TYPE_CHECKING:
    from alchemy_obs.sim.galaxy import Galaxy

__all__ = [
    "SnapshotError",
    "SubhaloParticles",
    "find_offsets_file",
    "read_subhalo",
    "extract_subhalo",
    "load_subhalo",
]

# Fields without which a particle type is unusable (when requested; DM has no Masses);
# the other requested fields are read when present.
_REQUIRED = {"Coordinates", "Velocities", "ParticleIDs", "Masses"}
# Subhalo catalogue fields carried along for provenance and centring.
_SUBHALO_FIELDS = (
    "SubhaloPos", "SubhaloVel", "SubhaloLenType", "SubhaloMassType", "SubhaloHalfmassRadType",
    "SubhaloSFR", "SubhaloGrNr",
)


class SnapshotError(AlchemyObsError, ValueError):
    """A snapshot folder is incomplete or inconsistent; the message names the file."""


@dataclass
class SubhaloParticles:
    """One subhalo's particles in code units, in the TNG cutout layout.

    Attributes
    ----------
    header : dict
        Snapshot ``Header`` attributes with ``NumPart_ThisFile``/``NumPart_Total`` set to
        this subhalo's counts.
    groups : dict
        ``{"PartType0": {"Coordinates": array, ...}, ...}`` for types with particles.
    field_attrs : dict
        ``{"PartType0": {"Coordinates": {attr: value}}}``: the datasets' unit attributes.
    subhalo : dict
        The subhalo's group-catalogue entries (``SubhaloPos`` in ckpc/h, ...).
    subhalo_id, snapshot : int
        What was read.
    source : str
        The snapshot folder, for messages and provenance.
    """

    header: dict[str, Any]
    groups: dict[str, dict[str, np.ndarray]]
    field_attrs: dict[str, dict[str, dict[str, Any]]]
    subhalo: dict[str, np.ndarray]
    subhalo_id: int
    snapshot: int
    source: str
    chunks_read: list[Path] = field(default_factory=list)


def _snap_chunk(root: Path, snap: int, i: int) -> Path:
    return root / f"snapdir_{snap:03d}" / f"snap_{snap:03d}.{i}.hdf5"


def _group_chunk(root: Path, snap: int, i: int) -> Path:
    return root / f"groups_{snap:03d}" / f"fof_subhalo_tab_{snap:03d}.{i}.hdf5"


def find_offsets_file(snapshot_dir: str | os.PathLike, snapshot: int) -> Path:
    """Locate ``offsets_NNN.hdf5`` for a snapshot.

    Looked for, in order, in ``snapshot_dir``, ``snapshot_dir/offsets``,
    ``snapshot_dir/postprocessing/offsets`` and ``snapshot_dir/../postprocessing/offsets``
    (the layout of the TNG public data release, where ``snapshot_dir`` is ``output``).

    Raises
    ------
    SnapshotError
        If none exists; the message lists the places searched.
    """
    root = Path(snapshot_dir)
    name = f"offsets_{snapshot:03d}.hdf5"
    candidates = [
        root / name,
        root / "offsets" / name,
        root / "postprocessing" / "offsets" / name,
        root.parent / "postprocessing" / "offsets" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise SnapshotError(
        f"{root}: no offsets file {name} for snapshot {snapshot} (looked in "
        + ", ".join(str(p.parent) for p in candidates)
        + "); download it from the TNG data release (postprocessing/offsets)"
    )


def _open(path: Path, purpose: str) -> h5py.File:
    if not path.is_file():
        raise SnapshotError(f"{path}: missing ({purpose})")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise SnapshotError(f"{path}: not a readable HDF5 file ({exc}) ({purpose})") from None


def _dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset:
    if name not in f:
        raise SnapshotError(f"{path}: no dataset {name}")
    return f[name]


def _header_dict(attrs: h5py.AttributeManager) -> dict[str, Any]:
    return {k: (v.item() if np.ndim(v) == 0 else np.asarray(v)) for k, v in attrs.items()}


def read_subhalo(
    snapshot_dir: str | os.PathLike,
    snapshot: int,
    subhalo_id: int,
    fields: Mapping[str, Sequence[str]] | None = None,
) -> SubhaloParticles:
    """Read one subhalo's particles from the snapshot chunks that hold them.

    Parameters
    ----------
    snapshot_dir : path-like
        The simulation output folder with ``snapdir_NNN`` and ``groups_NNN``.
    snapshot : int
        Snapshot number.
    subhalo_id : int
        Subfind ID.
    fields : mapping, optional
        Particle type (``gas``, ``dm``, ``stars``, ``bhs``) -> field names;
        :data:`alchemy_obs.sim.tng.CUTOUT_FIELDS` by default. ``Coordinates``,
        ``Velocities``, ``ParticleIDs`` and (except DM) ``Masses`` must exist; other fields
        are skipped when the snapshot lacks them (e.g. ``SubfindHsml`` in mini snapshots).

    Returns
    -------
    SubhaloParticles

    Raises
    ------
    SnapshotError
        Naming the file: no offsets file, subhalo ID out of range, a missing chunk or
        dataset, or chunks that disagree with the offsets file.
    """
    root = Path(snapshot_dir)
    if not root.is_dir():
        raise SnapshotError(f"{root}: snapshot folder does not exist")
    fields = dict(CUTOUT_FIELDS if fields is None else fields)
    sid = int(subhalo_id)
    offsets_path = find_offsets_file(root, snapshot)
    with _open(offsets_path, "offsets file") as f:
        by_type = _dataset(f, "Subhalo/SnapByType", offsets_path)
        n_subhalos = by_type.shape[0]
        if not 0 <= sid < n_subhalos:
            raise SnapshotError(
                f"{offsets_path}: subhalo {sid} out of range; snapshot {snapshot} has "
                f"{n_subhalos} subhaloes (0 to {n_subhalos - 1})"
            )
        first = np.asarray(by_type[sid], dtype=np.int64)
        file_first_subhalo = np.asarray(_dataset(f, "FileOffsets/Subhalo", offsets_path)[()], dtype=np.int64)
        file_first_particle = np.asarray(_dataset(f, "FileOffsets/SnapByType", offsets_path)[()], dtype=np.int64)

    # The group-catalogue chunk holding this subhalo.
    gfile = int(np.searchsorted(file_first_subhalo, sid, side="right") - 1)
    gpath = _group_chunk(root, snapshot, gfile)
    local = sid - int(file_first_subhalo[gfile])
    with _open(gpath, f"group catalogue chunk holding subhalo {sid}") as f:
        if "Subhalo" not in f or "SubhaloLenType" not in f["Subhalo"]:
            raise SnapshotError(f"{gpath}: no Subhalo/SubhaloLenType")
        n_local = f["Subhalo/SubhaloLenType"].shape[0]
        if local >= n_local:
            raise SnapshotError(
                f"{gpath}: has {n_local} subhaloes but the offsets file {offsets_path} puts "
                f"subhalo {sid} at row {local}"
            )
        subhalo = {name: np.asarray(f["Subhalo"][name][local]) for name in _SUBHALO_FIELDS
                   if name in f["Subhalo"]}
    if "SubhaloPos" not in subhalo:
        raise SnapshotError(f"{gpath}: no Subhalo/SubhaloPos")
    lengths = np.asarray(subhalo["SubhaloLenType"], dtype=np.int64)

    header: dict[str, Any] | None = None
    groups: dict[str, dict[str, np.ndarray]] = {}
    attrs: dict[str, dict[str, dict[str, Any]]] = {}
    opened: list[Path] = []
    for ptype, names in fields.items():
        t = PART_TYPES[ptype]
        start, stop = int(first[t]), int(first[t] + lengths[t])
        if stop == start:
            continue
        group = f"PartType{t}"
        pieces: dict[str, list[np.ndarray]] = {}
        chunk = int(np.searchsorted(file_first_particle[:, t], start, side="right") - 1)
        cursor = start
        while cursor < stop:
            if chunk >= len(file_first_particle):
                raise SnapshotError(
                    f"{offsets_path}: {group} particles [{cursor}, {stop}) of subhalo {sid} lie "
                    f"beyond the last of {len(file_first_particle)} snapshot chunks"
                )
            path = _snap_chunk(root, snapshot, chunk)
            purpose = f"{group} particles [{cursor}, {stop}) of subhalo {sid}"
            with _open(path, purpose) as f:
                if header is None:
                    header = _header_dict(f["Header"].attrs)
                in_chunk = int(f["Header"].attrs["NumPart_ThisFile"][t])
                if chunk + 1 < len(file_first_particle):
                    implied = int(file_first_particle[chunk + 1, t] - file_first_particle[chunk, t])
                else:
                    attrs_ = f["Header"].attrs
                    total = int(attrs_["NumPart_Total"][t])
                    if "NumPart_Total_HighWord" in attrs_:
                        total += int(attrs_["NumPart_Total_HighWord"][t]) << 32
                    implied = total - int(file_first_particle[chunk, t])
                if in_chunk != implied:
                    raise SnapshotError(
                        f"{path}: holds {in_chunk} {group} particles but the offsets file "
                        f"{offsets_path} implies {implied}"
                    )
                lo = cursor - int(file_first_particle[chunk, t])
                hi = min(stop - int(file_first_particle[chunk, t]), in_chunk)
                if group not in f:
                    raise SnapshotError(f"{path}: no {group} group ({purpose})")
                if not pieces:
                    present = [n for n in names if n in f[group]]
                    missing = [n for n in names if n not in f[group] and n in _REQUIRED]
                    if missing:
                        raise SnapshotError(f"{path}: {group} lacks required fields {missing}")
                    pieces = {n: [] for n in present}
                    attrs[group] = {n: dict(f[group][n].attrs) for n in present}
                for name, store in pieces.items():
                    if name not in f[group]:
                        raise SnapshotError(f"{path}: {group} lacks field {name} ({purpose})")
                    store.append(f[group][name][lo:hi])
            opened.append(path)
            cursor += hi - lo
            chunk += 1
        groups[group] = {name: np.concatenate(store) for name, store in pieces.items()}

    if header is None:
        raise SnapshotError(f"{gpath}: subhalo {sid} has no particles of the requested types")
    counts = np.zeros(6, dtype=np.int64)
    for ptype in fields:
        t = PART_TYPES[ptype]
        counts[t] = lengths[t] if f"PartType{t}" in groups else 0
    header.update(
        NumPart_ThisFile=counts.astype(np.int32), NumPart_Total=counts.astype(np.uint32),
        NumPart_Total_HighWord=np.zeros(6, dtype=np.uint32), NumFilesPerSnapshot=np.int32(1),
    )
    return SubhaloParticles(
        header=header, groups=groups, field_attrs=attrs, subhalo=subhalo, subhalo_id=sid,
        snapshot=int(snapshot), source=str(root), chunks_read=opened,
    )


def extract_subhalo(
    snapshot_dir: str | os.PathLike,
    snapshot: int,
    subhalo_id: int,
    out_path: str | os.PathLike,
    fields: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write one subhalo of a local snapshot as a cutout file (the web API's layout).

    The file is written to a temporary name beside ``out_path`` and renamed when complete.
    A ``.json`` file beside it holds ``id``, ``snap`` and ``pos_x/y/z`` (``SubhaloPos``,
    ckpc/h), the same keys as the web API's subhalo document saved by
    :meth:`alchemy_obs.sim.tng.TNGClient.download_cutout`.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    data = read_subhalo(snapshot_dir, snapshot, subhalo_id, fields)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(out, suffix=".part")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_group("Header").attrs.update(data.header)
            for group, arrays in data.groups.items():
                g = f.create_group(group)
                for name, values in arrays.items():
                    g.create_dataset(name, data=values).attrs.update(data.field_attrs[group][name])
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    pos = data.subhalo["SubhaloPos"]
    meta = {"id": data.subhalo_id, "snap": data.snapshot, "pos_x": float(pos[0]),
            "pos_y": float(pos[1]), "pos_z": float(pos[2]), "source": data.source}
    write_json_atomic(out.with_suffix(".json"), meta)
    return out


def load_subhalo(snapshot_dir: str | os.PathLike, snapshot: int, subhalo_id: int) -> Galaxy:
    """One subhalo of a local snapshot as a :class:`~alchemy_obs.sim.galaxy.Galaxy`.

    Centred on the catalogue's ``SubhaloPos``; see :func:`read_subhalo` for what is read.
    """
    from alchemy_obs.sim.galaxy import galaxy_from_arrays

    data = read_subhalo(snapshot_dir, snapshot, subhalo_id)
    return galaxy_from_arrays(
        data.header, data.groups, subhalo_pos=data.subhalo["SubhaloPos"],
        subhalo_id=data.subhalo_id, snapshot=data.snapshot,
        source=f"{data.source} (snapshot {data.snapshot}, subhalo {data.subhalo_id})",
    )
