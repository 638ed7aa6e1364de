"""Small paired map stores written by the translator tests, in the store's own layout.

The maps follow a physics-like relation that is not per-pixel: the dark matter is a
flattened projected Plummer halo whose mass grows sub-linearly with the gas mass, whose scale
follows the gas disc's scale length, and which shares the disc's orientation; the gas is an
exponential disc with a few star-forming clumps (about 20% of its mass) that the dark matter
does not follow. The gas disc is truncated at three scale lengths while the halo extends
to the map edge, so the dark matter outside the disc must be inferred from the disc as a
whole, which a per-pixel regression cannot do.
"""

from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import numpy as np

from alchemy_obs.maps.store import META_COLUMNS, join_shards, write_shard


def toy_maps(rng: np.random.Generator, npix: int, n_views: int) -> tuple[dict, dict]:
    yy, xx = np.mgrid[0:npix, 0:npix] - (npix - 1) / 2
    scale = npix / 64
    log_mgas = rng.uniform(8.0, 10.5)
    rd = rng.uniform(2.0, 7.0) * scale
    q_gas = rng.uniform(0.4, 1.0)
    q_dm = 0.5 + 0.5 * q_gas
    r_edge = 3.0 * rd  # gas discs are truncated; the halo goes on
    gas, dm = [], []
    for _ in range(n_views):
        theta = rng.uniform(0, np.pi)
        c, s = np.cos(theta), np.sin(theta)
        xr, yr = c * xx + s * yy, -s * xx + c * yy
        r_gas = np.hypot(xr, yr / q_gas)
        disc = np.exp(-r_gas / rd) * (r_gas < r_edge)
        clumps = np.zeros_like(disc)
        for _ in range(4):
            rc, phi = rng.uniform(0, 0.8 * r_edge), rng.uniform(0, 2 * np.pi)
            cx, cy = rc * np.cos(phi), rc * q_gas * np.sin(phi)
            x0, y0 = c * cx - s * cy, s * cx + c * cy
            clumps += np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * (0.8 * scale) ** 2))
        g = 0.8 * disc / disc.sum() + 0.2 * clumps / clumps.sum()
        gas.append(10**log_mgas * g)
        a = 2.5 * rd
        r_dm = np.hypot(xr, yr / q_dm)
        halo = (1 + (r_dm / a) ** 2) ** -2
        mdm = 10 ** (11.0 + 0.7 * (log_mgas - 9.0) + rng.normal(0, 0.03))
        dm.append(mdm * halo / halo.sum())
    return {"gas": np.array(gas) * u.Msun / u.kpc**2, "dm": np.array(dm) * u.Msun / u.kpc**2}, {}


def write_toy_store(folder: Path, n_galaxies: int = 40, n_views: int = 2, npix: int = 64,
                    seed: int = 0, splits=None, gas_dynamic_range: float | None = None) -> Path:
    """Write ``n_galaxies`` shards and join them into ``folder/dataset.h5``.

    ``gas_dynamic_range`` empties gas pixels fainter than that fraction of each map's peak.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    shards = []
    for g in range(n_galaxies):
        maps, _ = toy_maps(rng, npix, n_views)
        if gas_dynamic_range is not None:
            gas = maps["gas"]
            peak = gas.value.max(axis=(1, 2), keepdims=True)
            maps["gas"] = np.where(gas.value > gas_dynamic_range * peak, gas.value, 0.0) * gas.unit
        meta = {}
        for col, (dtype, tail) in META_COLUMNS.items():
            meta[col] = np.zeros((n_views, *tail), dtype=dtype)
        meta["galaxy_id"][:] = g
        meta["subhalo_id"][:] = -1
        meta["snapshot"][:] = -1
        meta["view"][:] = [f"random{i}".encode() for i in range(n_views)]
        meta["rotation"][:] = np.eye(3)
        meta["pixel_kpc"][:] = 0.5
        meta["extent_kpc"][:] = [-16, 16, -16, 16]
        shards.append(write_shard(folder / "shards" / f"galaxy_{g}.h5", maps, meta,
                                  config_hash="toy", cosmology=json.dumps({"H0": 67.74})))
    return join_shards(shards, folder / "dataset.h5",
                       split_fractions=splits or {"train": 0.7, "val": 0.1, "test": 0.2})


def baseline_scores(store: Path):
    """The held-out scores of the two baselines every translator must beat.

    Baseline 1 is the mean target map of the training set (physical units); baseline 2 is
    a per-pixel least-squares regression of the normalised target on the normalised input
    over the training set, inverted to physical units.

    Returns
    -------
    scores : dict
        ``{"mean map": summary, "pixel regression": summary}`` on the test split.
    train_ds, test_ds : PairedMapDataset
        ``gas -> dm`` datasets of the train and test splits.
    """
    import torch

    from alchemy_obs.maps.store import MapStore
    from alchemy_obs.translate import metrics
    from alchemy_obs.translate.data import PairedMapDataset, fit_normalisation
    from alchemy_obs.translate.evaluate import baseline_predictions

    ms = MapStore(store)
    norm = fit_normalisation(ms, ["gas", "dm"])
    train_ds = PairedMapDataset(ms, ["gas"], "dm", split="train", normalisation=norm)
    test_ds = PairedMapDataset(ms, ["gas"], "dm", split="test", normalisation=norm)
    truth = torch.stack([torch.as_tensor(test_ds.physical(i)["dm"]) for i in range(len(test_ds))])
    scores = {name: metrics.summarise(pred, truth)
              for name, pred in baseline_predictions(train_ds, test_ds).items()}
    return scores, train_ds, test_ds


def tiny_unet(in_channels: int, out_channels: int, *, time: bool = True):
    """A U-Net small enough for CPU tests, built from plain keywords."""
    from alchemy_obs.translate.nets import UNet

    return UNet(in_channels, out_channels, base_channels=8, channel_mults=(1, 2),
                attention_levels=(1,), groups=4, time_embedding=time)
