"""The local snapshot reader on a mini-snapshot written in the TNG on-disk layout.

The mini-snapshot has two FoF groups and three subhaloes (0 and 1 in group 0, 2 in group 1),
unbound "fuzz" particles after each group, three snapshot chunks whose boundaries cut
through subhaloes differently for each particle type (chunk 1 holds no black hole), two
group-catalogue chunks, and the offsets file in ``../postprocessing/offsets`` as in the
public data release.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from tng_layout import FIELDS, HEADER, resolve_shape

from alchemy_obs.cli import main
from alchemy_obs.sim.galaxy import load_galaxy
from alchemy_obs.sim.snapshot import (
    SnapshotError,
    extract_subhalo,
    load_subhalo,
    read_subhalo,
)
from alchemy_obs.sim.tng import CUTOUT_FIELDS, PART_TYPES, validate_cutout

SNAP = 99
H = 0.6774
TYPES = (0, 1, 4, 5)
# particles per type (gas, dm, stars, bh) in file order: sub0, sub1, fuzz of group 0, sub2, fuzz
BLOCKS = [
    ("sub", {0: 40, 1: 50, 4: 30, 5: 1}),
    ("sub", {0: 25, 1: 30, 4: 20, 5: 0}),
    ("fuzz", {0: 5, 1: 5, 4: 0, 5: 0}),
    ("sub", {0: 30, 1: 35, 4: 15, 5: 1}),
    ("fuzz", {0: 10, 1: 10, 4: 5, 5: 0}),
]
CHUNK_SIZES = {0: (50, 40), 1: (60, 45), 4: (35, 25), 5: (1, 0)}  # the last chunk takes the rest
CENTRES = np.array([[1000.0, 2000.0, 3000.0], [1010.0, 2005.0, 2990.0], [20000.0, 100.0, 34990.0]])
MASS_TABLE = np.array([0.0, 3.07e-5, 0.0, 0.0, 0.0, 0.0])


def header_attrs(counts: np.ndarray, n_files: int) -> dict:
    return {
        "BoxSize": 35000.0, "HubbleParam": H, "Omega0": 0.3089, "OmegaLambda": 0.6911,
        "OmegaBaryon": 0.0486, "Time": 1.0, "Redshift": 0.0, "MassTable": MASS_TABLE,
        "NumPart_ThisFile": np.asarray(counts, dtype=np.int32),
        "NumPart_Total": np.zeros(6, dtype=np.uint32),  # filled by the caller
        "NumPart_Total_HighWord": np.zeros(6, dtype=np.uint32),
        "NumFilesPerSnapshot": np.int32(n_files),
        "UnitLength_in_cm": 3.085678e21, "UnitMass_in_g": 1.989e43,
        "UnitVelocity_in_cm_per_s": 1.0e5,
    }


def block_particles(rng: np.random.Generator, t: int, n: int, centre: np.ndarray, first_id: int) -> dict:
    """Particles of one type in TNG names and dtypes (code units) around ``centre``."""
    f = {
        "Coordinates": np.mod(centre + rng.normal(0.0, 5.0, (n, 3)), 35000.0),
        "Velocities": rng.normal(0.0, 100.0, (n, 3)).astype(np.float32),
        "ParticleIDs": np.arange(first_id, first_id + n, dtype=np.uint64),
    }
    if t != 1:
        f["Masses"] = rng.uniform(1e-5, 2e-5, n).astype(np.float32)
    if t in (1, 4):
        f["SubfindHsml"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
    if t == 0:
        for name in ("Density", "InternalEnergy", "ElectronAbundance", "NeutralHydrogenAbundance",
                     "StarFormationRate", "GFM_Metallicity"):
            f[name] = rng.uniform(1e-4, 1.0, n).astype(np.float32)
        f["InternalEnergy"] *= 1e4
        f["MagneticField"] = rng.normal(0.0, 1e-2, (n, 3)).astype(np.float32)
        f["GFM_Metals"] = np.full((n, 10), 0.001, dtype=np.float32)
        f["GFM_Metals"][:, 0] = 0.76
    if t == 4:
        f["GFM_StellarFormationTime"] = rng.uniform(0.1, 1.0, n).astype(np.float32)
        f["GFM_Metallicity"] = rng.uniform(0.0, 0.03, n).astype(np.float32)
    return f


def write_mini_snapshot(root: Path) -> dict:
    """Write the mini-snapshot under ``root/output``; returns the particles of each subhalo."""
    rng = np.random.default_rng(7)
    output = root / "output"
    (output / f"snapdir_{SNAP:03d}").mkdir(parents=True)
    (output / f"groups_{SNAP:03d}").mkdir()
    (root / "postprocessing" / "offsets").mkdir(parents=True)

    glob: dict[int, dict[str, list]] = {t: {} for t in TYPES}
    per_sub: list[dict[int, dict[str, np.ndarray]]] = []
    sub_offsets, sub_lens = [], []
    cursor = dict.fromkeys(TYPES, 0)
    next_id = 1
    centre_of = [0, 1, 1, 2, 2]  # fuzz sits near its group's last subhalo
    for (kind, counts), c in zip(BLOCKS, centre_of):
        parts = {}
        if kind == "sub":
            sub_offsets.append([cursor.get(t, 0) for t in range(6)])
            sub_lens.append([counts.get(t, 0) for t in range(6)])
        for t in TYPES:
            n = counts[t]
            data = block_particles(rng, t, n, CENTRES[c], next_id)
            next_id += n
            parts[t] = data
            for name, values in data.items():
                glob[t].setdefault(name, []).append(values)
            cursor[t] += n
        if kind == "sub":
            per_sub.append(parts)
    arrays = {t: {k: np.concatenate(v) for k, v in glob[t].items()} for t in TYPES}
    totals = np.zeros(6, dtype=np.int64)
    for t in TYPES:
        totals[t] = cursor[t]

    # three snapshot chunks
    bounds = {t: np.cumsum((0,) + CHUNK_SIZES[t]) for t in TYPES}
    file_offsets = np.zeros((3, 6), dtype=np.int64)
    for i in range(3):
        counts = np.zeros(6, dtype=np.int64)
        for t in TYPES:
            lo = bounds[t][i]
            hi = bounds[t][i + 1] if i < 2 else totals[t]
            counts[t] = hi - lo
            file_offsets[i, t] = lo
        path = output / f"snapdir_{SNAP:03d}" / f"snap_{SNAP:03d}.{i}.hdf5"
        with h5py.File(path, "w") as f:
            attrs = header_attrs(counts, 3)
            attrs["NumPart_Total"] = totals.astype(np.uint32)
            f.create_group("Header").attrs.update(attrs)
            for t in TYPES:
                if counts[t] == 0:
                    continue
                g = f.create_group(f"PartType{t}")
                lo = file_offsets[i, t]
                for name, values in arrays[t].items():
                    ds = g.create_dataset(name, data=values[lo: lo + counts[t]])
                    ds.attrs["a_scaling"] = 1.0 if name == "Coordinates" else 0.0

    # group catalogue: subhaloes 0, 1 in chunk 0 and 2 in chunk 1
    pos = CENTRES
    for i, rows in enumerate(([0, 1], [2])):
        path = output / f"groups_{SNAP:03d}" / f"fof_subhalo_tab_{SNAP:03d}.{i}.hdf5"
        with h5py.File(path, "w") as f:
            f.create_group("Header").attrs.update(
                Nsubgroups_ThisFile=len(rows), Nsubgroups_Total=3, Ngroups_ThisFile=1,
                Ngroups_Total=2, NumFiles=2,
            )
            g = f.create_group("Subhalo")
            g["SubhaloPos"] = pos[rows].astype(np.float32)
            g["SubhaloLenType"] = np.asarray(sub_lens, dtype=np.int32)[rows]
            g["SubhaloGrNr"] = np.array([0, 0, 1], dtype=np.int32)[rows]
            f.create_group("Group")

    with h5py.File(root / "postprocessing" / "offsets" / f"offsets_{SNAP:03d}.hdf5", "w") as f:
        f["Subhalo/SnapByType"] = np.asarray(sub_offsets, dtype=np.int64)
        f["Group/SnapByType"] = np.asarray([sub_offsets[0], sub_offsets[2]], dtype=np.int64)
        f["FileOffsets/Subhalo"] = np.array([0, 2], dtype=np.int64)
        f["FileOffsets/Group"] = np.array([0, 1], dtype=np.int64)
        f["FileOffsets/SnapByType"] = file_offsets
    return {"output": output, "subhaloes": per_sub}


@pytest.fixture
def mini(tmp_path: Path) -> dict:
    return write_mini_snapshot(tmp_path / "TNG-mini")


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of every HDF5 file opened while the test runs."""
    names: list[str] = []
    real = h5py.File

    def spy(name, *args, **kwargs):
        names.append(Path(name).name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    return names


@pytest.mark.parametrize(
    ("sid", "snap_chunks", "group_chunk"),
    [(0, {0}, 0), (1, {0, 1}, 0), (2, {1, 2}, 1)],
)
def test_reads_exactly_the_subhalo_from_overlapping_chunks(mini, opened, sid, snap_chunks, group_chunk):
    data = read_subhalo(mini["output"], SNAP, sid)
    written = mini["subhaloes"][sid]
    for t in TYPES:
        group = f"PartType{t}"
        if len(written[t]["ParticleIDs"]) == 0:
            assert group not in data.groups
            continue
        assert set(data.groups[group]) == set(written[t]) & set(CUTOUT_FIELDS[
            {0: "gas", 1: "dm", 4: "stars", 5: "bhs"}[t]])
        for name, values in data.groups[group].items():
            np.testing.assert_array_equal(values, written[t][name], err_msg=f"{group}/{name}")
        assert data.header["NumPart_ThisFile"][t] == len(written[t]["ParticleIDs"])
    np.testing.assert_allclose(data.subhalo["SubhaloPos"], CENTRES[sid], rtol=1e-6)
    snaps = {int(n.split(".")[1]) for n in opened if n.startswith("snap_")}
    groups = {int(n.split(".")[1]) for n in opened if n.startswith("fof_subhalo_tab")}
    assert snaps == snap_chunks
    assert groups == {group_chunk}
    assert f"offsets_{SNAP:03d}.hdf5" in opened


def test_load_subhalo_gives_a_centred_galaxy_in_physical_units(mini):
    galaxy = load_subhalo(mini["output"], SNAP, 2)
    written = mini["subhaloes"][2]
    assert galaxy.subhalo_id == 2 and galaxy.snapshot == SNAP
    np.testing.assert_allclose(galaxy.centre_ckpch, CENTRES[2], rtol=1e-6)
    assert len(galaxy.gas) == 30 and len(galaxy.stars) == 15 and len(galaxy.dm) == 35
    # 1e10 Msun/h -> Msun; DM mass from the MassTable
    assert galaxy.gas.masses.sum() == pytest.approx(written[0]["Masses"].sum() * 1e10 / H, rel=1e-6)
    assert galaxy.dm.masses.sum() == pytest.approx(35 * MASS_TABLE[1] * 1e10 / H, rel=1e-6)
    # subhalo 2 straddles the periodic box edge in z; centred coordinates are small
    assert np.abs(galaxy.gas.coordinates).max() < 50.0


def test_extract_writes_a_cutout_the_loader_reads(mini, tmp_path):
    out = extract_subhalo(mini["output"], SNAP, 1, tmp_path / "cut" / "cutout_1.hdf5")
    validate_cutout(out, {"gas": CUTOUT_FIELDS["gas"][:4], "stars": CUTOUT_FIELDS["stars"][:4]})
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["id"] == 1 and meta["snap"] == SNAP
    with h5py.File(out) as f:
        assert f["PartType0/Coordinates"].attrs["a_scaling"] == 1.0
        np.testing.assert_array_equal(f["PartType4/ParticleIDs"][()],
                                      mini["subhaloes"][1][4]["ParticleIDs"])
    from_file = load_galaxy(out, subhalo_pos=[meta["pos_x"], meta["pos_y"], meta["pos_z"]])
    direct = load_subhalo(mini["output"], SNAP, 1)
    np.testing.assert_array_equal(from_file.gas.coordinates, direct.gas.coordinates)
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".part")] == []


def test_extracted_cutout_follows_the_tng_layout_table(mini, tmp_path):
    out = extract_subhalo(mini["output"], SNAP, 0, tmp_path / "cutout_0.hdf5")
    with h5py.File(out) as f:
        for name, dtype, shape in HEADER:
            value = np.asarray(f["Header"].attrs[name])
            assert (value.dtype, value.shape) == (np.dtype(dtype), shape), name
        n = f["Header"].attrs["NumPart_ThisFile"]
        for group, name, dtype, shape in FIELDS:
            if group in f and name in f[group]:
                ds = f[group][name]
                assert (ds.dtype, ds.shape) == (np.dtype(dtype), resolve_shape(shape, n[int(group[-1])]))


def test_requested_fields_are_tng_fields():
    """Every field the API client and the reader ask for exists in the TNG specification."""
    spec = {(group, name) for group, name, _, _ in FIELDS}
    for ptype, names in CUTOUT_FIELDS.items():
        group = f"PartType{PART_TYPES[ptype]}"
        assert [n for n in names if (group, n) not in spec] == [], ptype


def test_cli_snapshot(mini, tmp_path, capsys):
    out = tmp_path / "cli" / "cutout_0.hdf5"
    assert main(["tng", "snapshot", "--snapshot-dir", str(mini["output"]), "--subhalo", "0",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with h5py.File(out) as f:
        assert list(f["Header"].attrs["NumPart_ThisFile"]) == [40, 50, 0, 0, 30, 1]
    assert main(["tng", "snapshot", "--snapshot-dir", str(mini["output"]), "--subhalo", "3",
                 "--out", str(out)]) == 1
    assert "out of range" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad input

def test_missing_offsets_file_is_named(mini):
    offsets = mini["output"].parent / "postprocessing" / "offsets" / f"offsets_{SNAP:03d}.hdf5"
    offsets.unlink()
    with pytest.raises(SnapshotError, match=r"no offsets file offsets_099\.hdf5 .*postprocessing"):
        read_subhalo(mini["output"], SNAP, 0)


def test_missing_chunk_is_named_and_unneeded_chunks_do_not_matter(mini):
    (mini["output"] / f"snapdir_{SNAP:03d}" / f"snap_{SNAP:03d}.2.hdf5").unlink()
    with pytest.raises(SnapshotError, match=r"snap_099\.2\.hdf5: missing \(PartType0 particles"):
        read_subhalo(mini["output"], SNAP, 2)
    assert len(read_subhalo(mini["output"], SNAP, 1).groups["PartType0"]["Masses"]) == 25


def test_subhalo_out_of_range(mini):
    with pytest.raises(SnapshotError, match=r"offsets_099\.hdf5: subhalo 3 out of range; .* 3 subhaloes"):
        read_subhalo(mini["output"], SNAP, 3)
    with pytest.raises(SnapshotError, match="out of range"):
        read_subhalo(mini["output"], SNAP, -1)


def test_chunk_inconsistent_with_offsets(mini):
    path = mini["output"] / f"snapdir_{SNAP:03d}" / f"snap_{SNAP:03d}.0.hdf5"
    with h5py.File(path, "r+") as f:
        counts = f["Header"].attrs["NumPart_ThisFile"].copy()
        counts[4] = 20  # the offsets file says 35 stars
        f["Header"].attrs["NumPart_ThisFile"] = counts
    with pytest.raises(SnapshotError, match=r"snap_099\.0\.hdf5: holds 20 PartType4 particles"):
        read_subhalo(mini["output"], SNAP, 1)


def test_missing_folder_and_required_field(mini, tmp_path):
    with pytest.raises(SnapshotError, match="does not exist"):
        read_subhalo(tmp_path / "nowhere", SNAP, 0)
    path = mini["output"] / f"snapdir_{SNAP:03d}" / f"snap_{SNAP:03d}.0.hdf5"
    with h5py.File(path, "r+") as f:
        del f["PartType4/Velocities"]
    with pytest.raises(SnapshotError, match=r"snap_099\.0\.hdf5: PartType4 lacks required fields \['Velocities'\]"):
        read_subhalo(mini["output"], SNAP, 0)
