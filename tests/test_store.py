"""The HDF5 map dataset: shards, virtual join, splits, atomic writes and the reader."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pytest

from alchemy_obs.maps.store import (
    META_COLUMNS,
    MapStore,
    StoreError,
    assign_splits,
    join_shards,
    read_shard,
    shard_path,
    shard_views,
    write_domain,
    write_shard,
)

NPIX = 32
VIEWS = ["random0", "faceon", "edgeon"]
UNITS = {"dm": u.Msun / u.kpc**2, "temperature": u.K}
COSMOLOGY = '{"H0": 67.74}'


def fake_maps(galaxy_id: int) -> dict[str, u.Quantity]:
    rng = np.random.default_rng(galaxy_id)
    temp = rng.uniform(1e3, 1e6, (len(VIEWS), NPIX, NPIX))
    temp[:, 0, 0] = np.nan  # an empty pixel of a weighted average
    return {
        "dm": rng.lognormal(15, 1, (len(VIEWS), NPIX, NPIX)) * UNITS["dm"],
        "temperature": temp * UNITS["temperature"],
    }


def fake_meta(galaxy_id: int) -> dict[str, np.ndarray]:
    n = len(VIEWS)
    return {
        "galaxy_id": np.full(n, galaxy_id), "subhalo_id": np.full(n, 1000 + galaxy_id),
        "snapshot": np.full(n, 99), "redshift": np.zeros(n), "view": np.array(VIEWS),
        "rotation": np.tile(np.eye(3), (n, 1, 1)), "pixel_kpc": np.full(n, 0.5),
        "extent_kpc": np.tile([-8.0, 8, -8, 8], (n, 1)), "r_hi_kpc": np.full(n, 4.0),
        "n_gas": np.full(n, 10), "n_stars": np.full(n, 20), "n_dm": np.full(n, 30),
    }


def write_fake(out: Path, galaxy_id: int, **kw) -> Path:
    return write_shard(shard_path(out, galaxy_id), fake_maps(galaxy_id), fake_meta(galaxy_id),
                       config_hash="h1", cosmology=COSMOLOGY, **kw)


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_store import write_fake
    for g in map(int, sys.argv[2:]):
        write_fake(Path(sys.argv[1]), g)
""")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Ten shards written by two separate processes, then joined."""
    out = tmp_path_factory.mktemp("ds")
    code = WRITER.format(tests=str(Path(__file__).parent))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(out), *map(str, ids)])
        for ids in (range(0, 10, 2), range(1, 10, 2))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    shards = sorted((out / "shards").glob("galaxy_*.h5"))
    assert len(shards) == 10
    join_shards(shards, out / "dataset.h5", split_fractions={"train": 0.6, "val": 0.2,
                                                             "test": 0.2})
    return out


def test_join_reopens_with_the_written_maps(dataset):
    store = MapStore(dataset / "dataset.h5")
    assert len(store) == 30 and store.npix == NPIX
    assert store.domains == ["dm", "temperature"]
    assert store.units("dm") == UNITS["dm"] and store.units("temperature") == u.K
    for i in range(len(store)):
        g, v = store.meta["galaxy_id"][i], store.meta["view"][i]
        expected = fake_maps(g)
        k = VIEWS.index(v)
        got = store.read(i, ["dm", "temperature"])
        assert got["dm"].dtype == np.float32
        np.testing.assert_array_equal(got["dm"], expected["dm"].value[k].astype(np.float32))
        np.testing.assert_array_equal(got["temperature"],
                                      expected["temperature"].value[k].astype(np.float32))
    assert np.isnan(store.read(0, ["temperature"])["temperature"][0, 0])
    assert store.meta["subhalo_id"][0] == 1000 + store.meta["galaxy_id"][0]
    assert store.attrs["config_hash"] == "h1"


def test_dataset_layout_is_virtual_and_chunked(dataset):
    with h5py.File(dataset / "dataset.h5", "r") as f:
        ds = f["maps/dm"]
        assert ds.is_virtual and ds.dtype == np.float32 and ds.shape == (30, NPIX, NPIX)
        assert {Path(s.file_name).is_absolute() for s in ds.virtual_sources()} == {False}
        assert list(f.attrs["domains"]) == ["dm", "temperature"]
    with h5py.File(shard_path(dataset, 0), "r") as f:
        ds = f["maps/dm"]
        assert ds.chunks == (1, NPIX, NPIX) and ds.compression == "gzip"
    shard_bytes = sum(p.stat().st_size for p in (dataset / "shards").iterdir())
    # No map data copied: the joined file holds only metadata and mappings.
    assert (dataset / "dataset.h5").stat().st_size < 0.1 * shard_bytes


def test_splits_are_by_galaxy(dataset):
    store = MapStore(dataset / "dataset.h5")
    groups = {s: set(store.meta["galaxy_id"][store.indices(s)]) for s in ("train", "val", "test")}
    assert [len(groups[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"]
                or groups["val"] & groups["test"])
    assert sum(len(store.indices(s)) for s in ("train", "val", "test")) == len(store)
    with pytest.raises(ValueError, match="unknown split"):
        store.indices("validation")


def test_folder_can_move(dataset, tmp_path, monkeypatch):
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    monkeypatch.chdir(tmp_path.parent)
    store = MapStore(moved / "dataset.h5")
    original = MapStore(dataset / "dataset.h5")
    np.testing.assert_array_equal(store.read(5)["dm"], original.read(5)["dm"])


def test_dataset_without_its_shards_is_an_error(dataset, tmp_path):
    shutil.copy(dataset / "dataset.h5", tmp_path / "dataset.h5")
    with pytest.raises(StoreError, match="missing"):
        MapStore(tmp_path / "dataset.h5")


def test_store_pickles_for_dataloader_workers(dataset):
    store = MapStore(dataset / "dataset.h5")
    first = store.read(3)["dm"]
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read(3)["dm"], first)


def test_reader_errors_name_the_problem(dataset, tmp_path):
    store = MapStore(dataset / "dataset.h5")
    with pytest.raises(KeyError, match="hi_mom0"):
        store.read(0, ["hi_mom0"])
    with pytest.raises(IndexError):
        store.read(30)
    with pytest.raises(StoreError, match="no such"):
        MapStore(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="bad.h5"):
        MapStore(bad)


def test_assign_splits_properties():
    ids = list(range(100))
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    b = assign_splits(ids[::-1], {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert a == b  # independent of order
    assert [list(a.values()).count(s) for s in ("train", "val", "test")] == [80, 10, 10]
    c = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2)
    assert a != c
    small = assign_splits([5, 9, 11], {"train": 0.9, "val": 0.05, "test": 0.05})
    assert sorted(small.values()) == ["test", "train", "val"]
    assert set(assign_splits([1, 2], {"train": 1.0}).values()) == {"train"}
    with pytest.raises(ValueError):
        assign_splits(ids, {"train": 0.5})


def test_rerun_detection(tmp_path):
    path = write_fake(tmp_path, 3)
    assert shard_views(path, "h1", ["dm", "temperature"]) == VIEWS
    assert shard_views(shard_path(tmp_path, 4), "h1", ["dm"]) == []
    assert shard_views(path, "other-settings", ["dm"]) is None
    assert shard_views(path, "h1", ["dm", "hi"]) is None
    path.write_bytes(b"truncated")
    assert shard_views(path, "h1", ["dm"]) is None


def test_failed_write_leaves_no_shard_and_keeps_the_old_one(tmp_path):
    meta = fake_meta(7)
    meta["n_dm"] = np.ones(2)  # wrong length: raises after the maps were written
    target = shard_path(tmp_path, 7)
    with pytest.raises(ValueError, match="n_dm"):
        write_shard(target, fake_maps(7), meta, config_hash="h1", cosmology="{}")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary file left behind
    write_fake(tmp_path, 7)
    before = target.read_bytes()
    with pytest.raises(ValueError):
        write_shard(target, fake_maps(7), meta, config_hash="h1", cosmology="{}")
    assert target.read_bytes() == before
    maps, meta_back, attrs = read_shard(target)
    assert attrs["config_hash"] == "h1" and list(meta_back["view"].astype(str)) == VIEWS


def test_shard_write_validates_inputs(tmp_path):
    maps = fake_maps(1)
    maps["dm"] = maps["dm"][:2]
    with pytest.raises(ValueError, match="differ in shape"):
        write_shard(tmp_path / "x.h5", maps, fake_meta(1), config_hash="h", cosmology="{}")
    meta = fake_meta(1)
    del meta["redshift"]
    with pytest.raises(ValueError, match="redshift"):
        write_shard(tmp_path / "x.h5", fake_maps(1), meta, config_hash="h", cosmology="{}")
    assert set(META_COLUMNS) == set(fake_meta(1))


def test_add_mock_domain_and_rejoin(tmp_path):
    shards = [write_fake(tmp_path, g, compression="lzf") for g in range(4)]
    join_shards(shards, tmp_path / "dataset.h5")
    mom0 = {g: np.full((3, NPIX, NPIX), g + 0.5) * u.Jy / u.beam * u.km / u.s for g in range(4)}
    for g, p in enumerate(shards[:2]):
        write_domain(p, "hi_mom0", mom0[g])
    # Not yet in every shard: left out of the join (with a warning), not filled silently.
    join_shards(shards, tmp_path / "dataset.h5")
    assert "hi_mom0" not in MapStore(tmp_path / "dataset.h5").domains
    for g, p in enumerate(shards[2:], start=2):
        write_domain(p, "hi_mom0", mom0[g])
    join_shards(shards, tmp_path / "dataset.h5")
    store = MapStore(tmp_path / "dataset.h5")
    assert store.domains == ["dm", "temperature", "hi_mom0"]
    assert store.units("hi_mom0") == u.Jy / u.beam * u.km / u.s
    for i in range(len(store)):
        pair = store.read(i, ["hi_mom0", "dm"])
        g = store.meta["galaxy_id"][i]
        assert np.all(pair["hi_mom0"] == g + 0.5)
        k = VIEWS.index(store.meta["view"][i])
        np.testing.assert_array_equal(pair["dm"], fake_maps(g)["dm"].value[k].astype(np.float32))
    with pytest.raises(StoreError, match="exists"):
        write_domain(shards[0], "hi_mom0", mom0[0])
    write_domain(shards[0], "hi_mom0", 2 * mom0[0], overwrite=True)
    assert np.all(MapStore(shards[0]).read(1, ["hi_mom0"])["hi_mom0"] == 1.0)
    with pytest.raises(ValueError, match="shape"):
        write_domain(shards[0], "continuum", np.ones((2, NPIX, NPIX)) * u.Jy / u.beam)
    assert sorted(os.listdir(shards[0].parent)) == [p.name for p in shards]


def test_join_rejects_inconsistent_shards(tmp_path):
    a = write_fake(tmp_path, 1)
    b = write_shard(tmp_path / "other" / "galaxy_1.h5", fake_maps(1), fake_meta(1),
                    config_hash="h1", cosmology=COSMOLOGY)
    with pytest.raises(StoreError, match="galaxy 1"):
        join_shards([a, b], tmp_path / "dataset.h5")
    c = write_shard(shard_path(tmp_path, 2), fake_maps(2), fake_meta(2),
                    config_hash="h2", cosmology=COSMOLOGY)
    with pytest.raises(StoreError, match="config_hash"):
        join_shards([a, c], tmp_path / "dataset.h5")
    d = write_shard(shard_path(tmp_path, 3), fake_maps(3), fake_meta(3),
                    config_hash="h1", cosmology='{"H0": 70.0}')
    with pytest.raises(StoreError, match="cosmology"):
        join_shards([a, d], tmp_path / "dataset.h5")
    assert not (tmp_path / "dataset.h5").exists()
