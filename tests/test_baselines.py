"""The baselines every translator must beat (``alchemy_obs.translate.evaluate.Baselines``)."""

from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pytest
import torch

from alchemy_obs.maps.store import META_COLUMNS, join_shards, write_shard
from alchemy_obs.translate.data import PairedMapDataset
from alchemy_obs.translate.evaluate import Baselines


def _store(tmp_path, n_inputs: int, n_galaxies: int = 12, n_views: int = 2, npix: int = 8):
    """Maps whose log10 target is, pixel by pixel, an exact linear function of the inputs
    (different coefficients in every pixel), so the per-pixel regression is exact."""
    rng = np.random.default_rng(1)
    coef = rng.normal(0, 1, (n_inputs + 1, npix, npix))
    shards = []
    for g in range(n_galaxies):
        x = rng.normal(0, 1, (n_inputs, n_views, npix, npix))  # signed: linear domains
        log_t = 7 + coef[0] + 0.3 * (coef[1:, None] * x).sum(0)
        maps = {f"x{i}": x[i] * u.Jy for i in range(n_inputs)}
        maps["t"] = 10**log_t * u.Msun / u.kpc**2
        meta = {col: np.zeros((n_views, *tail), dtype) for col, (dtype, tail) in META_COLUMNS.items()}
        meta["galaxy_id"][:] = g
        meta["view"][:] = [f"random{i}".encode() for i in range(n_views)]
        meta["rotation"][:] = np.eye(3)
        meta["pixel_kpc"][:] = 1.0
        shards.append(write_shard(tmp_path / "shards" / f"galaxy_{g}.h5", maps, meta,
                                  config_hash="t", cosmology=json.dumps({"H0": 67.74})))
    return join_shards(shards, tmp_path / "dataset.h5",
                       split_fractions={"train": 0.75, "test": 0.25})


@pytest.mark.parametrize("n_inputs", [1, 2])
def test_pixel_regression_is_exact_for_a_per_pixel_linear_relation(tmp_path, n_inputs):
    store = _store(tmp_path, n_inputs)
    inputs = [f"x{i}" for i in range(n_inputs)]
    train = PairedMapDataset(store, inputs, "t", split="train")
    test = PairedMapDataset(store, inputs, "t", split="test",
                            normalisation=train.normalisation)
    pred = Baselines.fit(train).predict(test)
    truth = np.stack([test.physical(i)["t"] for i in range(len(test))])
    # Exact wherever the log transform did not saturate at the normalisation's floor (the
    # 1st percentile of the training pixels), in training or in the test view.
    floor = train.normalisation.scalings["t"].floor
    seen = np.stack([train.physical(i)["t"] for i in range(len(train))]).min(0) >= floor
    exact = seen & (truth >= floor)
    assert exact.mean() > 0.5
    np.testing.assert_allclose(pred["pixel regression"].numpy()[exact], truth[exact], rtol=1e-6)
    mean = np.mean([train.physical(i)["t"] for i in range(len(train))], axis=0, dtype=np.float64)
    np.testing.assert_allclose(pred["mean map"].numpy(), np.broadcast_to(mean, truth.shape),
                               rtol=1e-12)


def test_a_pixel_whose_input_never_varies_predicts_its_mean_target(tmp_path):
    """Empty corners (an input that is the same in every view) must not divide by zero."""
    import h5py

    store = _store(tmp_path, 1)
    with h5py.File(store, "r+") as f:
        names = []
        f.visit(names.append)
        (x0,) = [n for n in names if n.endswith("x0") and isinstance(f[n], h5py.Dataset)]
        f[x0][:, 0, 0] = 0.0
    train = PairedMapDataset(store, ["x0"], "t", split="train")
    fitted = Baselines.fit(train)
    y = torch.stack([train[i]["target"][0] for i in range(len(train))]).double()
    assert torch.isfinite(fitted.coefficients).all()
    assert fitted.coefficients[1, 0, 0] == 0
    assert fitted.coefficients[0, 0, 0] == pytest.approx(float(y[:, 0, 0].mean()), rel=1e-12)
