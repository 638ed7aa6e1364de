"""Paired datasets: normalisation, augmentation, sampling, streaming with workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from translate_helpers import write_toy_store

from alchemy_obs.maps.store import MapStore
from alchemy_obs.translate.data import EpochBatchSampler, PairedMapDataset, dihedral, fit_normalisation
from alchemy_obs.translate.normalise import DomainScaling, Normalisation, fit_domain_scaling


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_toy_store(tmp_path_factory.mktemp("toy"), n_galaxies=10, n_views=2, npix=32)


def test_log_scaling_round_trip_and_floor():
    rng = np.random.default_rng(0)
    maps = [10 ** rng.uniform(3, 9, (16, 16)) for _ in range(4)]
    maps[0][:4] = 0.0
    maps[1][0, 0] = np.nan
    s = fit_domain_scaling("dm", maps)
    assert s.log
    positive = np.concatenate([m[m > 0] for m in maps])
    assert s.floor == pytest.approx(np.percentile(positive[np.isfinite(positive)], 1))
    x = torch.as_tensor(maps[2])
    back = s.inverse(s.forward(x))
    above = x >= s.floor
    torch.testing.assert_close(back[above], x[above].double(), rtol=1e-5, atol=0)
    assert (~above).any()
    torch.testing.assert_close(back[~above], torch.full_like(back[~above], s.floor), rtol=1e-5, atol=0)
    z0 = s.forward(torch.as_tensor(maps[0]))
    z1 = s.forward(torch.as_tensor(maps[1]))
    # Empty pixels (0 or NaN) sit at the floor.
    assert z0[0, 0] == pytest.approx((np.log10(s.floor) - s.median) / s.iqr, rel=1e-6)
    assert z1[0, 0] == z0[0, 0]


def test_signed_domain_scaling_is_linear_and_robust():
    rng = np.random.default_rng(1)
    maps = [rng.normal(2.0, 3.0, (64, 64)) for _ in range(3)]
    s = fit_domain_scaling("bfield_los", maps)
    assert not s.log
    v = np.concatenate([m.ravel() for m in maps])
    assert s.median == pytest.approx(np.median(v))
    assert s.iqr == pytest.approx(np.subtract(*np.percentile(v, [75, 25])))
    x = torch.as_tensor(maps[0])
    torch.testing.assert_close(s.inverse(s.forward(x)), x.double(), atol=1e-5, rtol=1e-5)


def test_normalisation_json_round_trip():
    n = Normalisation({"dm": DomainScaling("dm", True, 1e3, 6.5, 1.2),
                       "t": DomainScaling("t", False, 1.0, 0.0, 2.0)})
    back = Normalisation.from_json(n.to_json())
    assert back.to_dict() == n.to_dict()
    assert json.loads(n.to_json())["dm"]["floor"] == 1e3
    with pytest.raises(KeyError, match="known"):
        n["gas"]


def test_normalisation_is_fitted_on_train_split_only(store):
    ms = MapStore(store)
    norm = fit_normalisation(ms, ["gas", "dm"])
    train = [ms.read(i, ["dm"])["dm"] for i in ms.indices("train")]
    ref = fit_domain_scaling("dm", train)
    assert norm["dm"] == ref
    every = fit_domain_scaling("dm", [ms.read(i, ["dm"])["dm"] for i in range(len(ms))])
    assert norm["dm"].median != every.median


def test_dihedral_group():
    x = torch.arange(9.0).reshape(1, 3, 3)
    images = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_dataset_items_and_paired_augmentation(store):
    ds = PairedMapDataset(store, ["gas"], "dm", split="train")
    item = ds[0]
    assert item["input"].shape == (1, 32, 32) and item["target"].shape == (1, 32, 32)
    assert item["input"].dtype == torch.float32
    raw = ds.physical(0)
    torch.testing.assert_close(item["target"][0], ds.normalisation.forward("dm", raw["dm"]))
    for k in range(8):
        aug = ds[(0, k)]
        torch.testing.assert_close(aug["input"], dihedral(item["input"], k))
        torch.testing.assert_close(aug["target"], dihedral(item["target"], k))
    val = PairedMapDataset(store, ["gas"], "dm", split="val", normalisation=ds.normalisation)
    assert set(val.views.tolist()).isdisjoint(ds.views.tolist())
    with pytest.raises(KeyError, match="no domain 'hi'"):
        PairedMapDataset(store, ["hi"], "dm")


def test_epoch_sampler_is_deterministic_and_shards_ranks():
    a = list(EpochBatchSampler(20, 3, seed=1, epoch=2, augment=True))
    b = list(EpochBatchSampler(20, 3, seed=1, epoch=2, augment=True))
    assert a == b and len(a) == 6
    c = list(EpochBatchSampler(20, 3, seed=1, epoch=3, augment=True))
    assert a != c
    resumed = list(EpochBatchSampler(20, 3, seed=1, epoch=2, augment=True, start=4))
    assert resumed == a[4:]
    r0 = list(EpochBatchSampler(20, 3, 1, epoch=2, augment=False, rank=0, world_size=2))
    r1 = list(EpochBatchSampler(20, 3, 1, epoch=2, augment=False, rank=1, world_size=2))
    seen = [i for batch in r0 + r1 for i, _ in batch]
    assert len(seen) == len(set(seen)) == 18
    assert all(k == 0 for batch in r0 for _, k in batch)
    with pytest.raises(ValueError, match="cannot fill"):
        EpochBatchSampler(5, 3, 0, epoch=0, augment=False, world_size=2)


def test_streaming_with_workers_matches_single_process(store):
    ds = PairedMapDataset(store, ["gas"], "dm", split="train", augment=True)
    sampler = EpochBatchSampler(len(ds), 4, seed=0, epoch=0, augment=True)
    single = [b["target"] for b in DataLoader(ds, batch_sampler=sampler, num_workers=0)]
    multi = [b["target"] for b in DataLoader(ds, batch_sampler=sampler, num_workers=2)]
    assert len(single) == len(multi) == len(ds) // 4
    for s, m in zip(single, multi):
        assert torch.equal(s, m)
