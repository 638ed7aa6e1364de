"""Learning is real with DiM on held-out synthetic 64x64 maps, and calibration of the
score SDE's uncertainty maps.

DiM with DDPM and the score SDE each beats the two baselines of Translators I (mean
training map, per-pixel linear regression) on the radial-profile residual and the total-mass
ratio after 600 CPU steps, with their default parameterisations (DDPM predicts the velocity,
the SDE's network is EDM-preconditioned; see docs/training.rst). DDPM uses the linear
schedule here: it spends ~17% of training at noise levels where only the condition tells
the total mass (abar < 1e-3), the cosine schedule 2%, and DiM does not learn that in 600
steps from 2% (0.34 / 0.31 dex, losing to the regression). The diffusion methods are scored
on one posterior sample per map.

The calibration check uses a score SDE that predicts the noise with the truncated SNR
weighting: the rank coverage of its 68% and 95% intervals is 70% and 95% with 30 sampler
steps. The default EDM-preconditioned SDE is more accurate but over-confident with 30
steps (48% and 90%) and within 10 points only from about 100 (60% and 95%), which would
double the check's time; docs/uncertainty.rst reports both.

The paired maps are those of ``tests/translate_helpers.py`` with one change: gas pixels
fainter than 1e-6 of the map's peak are set to zero (empty). The helper's star-forming
clumps are Gaussians evaluated over the whole map, so their tails reach 1e-45 of the peak;
the normalisation's floor (1st percentile of positive pixels) then sits at 1e-45 and the
robust scale spans ~15 decades, which squeezes the disc's mass, the quantity the dark
matter depends on, into a few per cent of the input range. No telescope map has 45
decades of dynamic range; six is generous.
"""

from __future__ import annotations

import time

import pytest
import torch
from translate_helpers import baseline_scores, write_toy_store

from alchemy_obs.config import load_config
from alchemy_obs.translate.checkpoint import load_model
from alchemy_obs.translate.evaluate import evaluate_method
from alchemy_obs.translate.normalise import Normalisation
from alchemy_obs.translate.posterior import calibration
from alchemy_obs.translate.train import train

DIM_SETTINGS = [
    "train.network.kind=dim", "train.network.dim.patch_size=8", "train.network.dim.dim=32",
    "train.network.dim.depth=4", "train.network.dim.d_state=8",
    "train.batch_size=8", "train.eval_maps=0", "train.optim.lr=0.002",
    "train.optim.warmup_steps=20", "train.optim.ema_decay=0.98",
    "train.method.ddpm.sample_steps=20", "train.method.ddpm.clip_x0=3.0",
    "train.method.sde.sample_steps=30",
]
STEPS = 600
#: Trained models by name: (method, extra settings). "sde-noise" is the calibration check's.
RUNS = {
    "ddpm": ("ddpm", ["train.method.ddpm.schedule=linear"]),
    "sde": ("sde", []),
    "sde-noise": ("sde", ["train.method.sde.prediction=noise",
                          "train.method.sde.snr_weight_cap=1000"]),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Store, held-out scores of the two baselines, and a cache of trained models."""
    store = write_toy_store(tmp_path_factory.mktemp("dimlearn"), n_galaxies=60, seed=3,
                            gas_dynamic_range=1e-6)
    scores, _, test_ds = baseline_scores(store)
    return {"store": store, "scores": scores, "models": {}, "root": tmp_path_factory.mktemp("runs"),
            "test": test_ds}


def _trained(setup, name):
    """The model ``name`` of :data:`RUNS` and its training wall time (trained once)."""
    if name not in setup["models"]:
        method, extra = RUNS[name]
        cfg = load_config(None, [
            f"train.data.store={setup['store']}", f"train.method.name={method}",
            f"train.out_dir={setup['root'] / name}", f"train.steps={STEPS}",
            f"train.checkpoint_every={STEPS}", *DIM_SETTINGS, *extra])
        start = time.perf_counter()
        folder = train(cfg, progress=False)
        setup["models"][name] = (*load_model(folder, device="cpu"), time.perf_counter() - start)
    return setup["models"][name]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # includes training: a CPU minute each, far more on a crowded machine
# InDI is not here: without the start point in its input (Delbracio and Milanfar's
# definition) DiM + InDI at 600 steps scored 0.417 / 0.443 dex (profile / mass) on these
# held-out maps, losing to the mean map on mass (0.415); tests/test_train.py and
# tests/test_indi.py check InDI with the U-Net.
@pytest.mark.parametrize("method", ["ddpm", "sde"])
def test_dim_learning_beats_baselines(setup, method):
    loaded, card, wall = _trained(setup, method)
    assert type(loaded.nets["net"]).__name__ == "DiM"
    res = evaluate_method(loaded, setup["store"], ["gas"], target="dm",
                          normalisation=Normalisation.from_dict(card["normalisation"]), split="test")
    mine = res["summary"]
    print(f"\nDiM + {method}: {STEPS} steps ({wall:.0f} s wall), {len(setup['test'])} held-out maps")
    print(f"{'':>18s} {'profile |dex|':>14s} {'mass |dex|':>11s} {'SSIM':>6s}")
    for name, s in [(f"DiM {method}", mine), *setup["scores"].items()]:
        print(f"{name:>18s} {s['profile_abs_dex']:14.4f} {s['mass_abs_dex']:11.4f} {s['ssim']:6.3f}")
    for name, s in setup["scores"].items():
        assert mine["profile_abs_dex"] < s["profile_abs_dex"], f"{method} loses to {name} on profiles"
        assert mine["mass_abs_dex"] < s["mass_abs_dex"], f"{method} loses to {name} on total mass"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dim_sde_uncertainty_calibration(setup):
    """Rank coverage of the central 68% and 95% intervals on held-out maps, within 10 points."""
    method, card, _ = _trained(setup, "sde-noise")
    assert method.settings.prediction == "noise"
    ds = setup["test"]
    n = min(8, len(ds))
    cond = torch.stack([ds[i]["input"] for i in range(n)])
    truth = torch.stack([ds[i]["target"] for i in range(n)])
    gen = torch.Generator().manual_seed(0)
    cov = calibration(method, cond, truth, n_samples=16, steps=30, generator=gen, batch_size=64)
    print(f"\nDiM score SDE, {n} held-out maps x 16 samples: rank coverage of the 68% interval "
          f"{cov[0.68]:.3f}, of the 95% interval {cov[0.95]:.3f}")
    assert abs(cov[0.68] - 0.68) <= 0.10
    assert abs(cov[0.95] - 0.95) <= 0.10
