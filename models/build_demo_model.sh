#!/usr/bin/env bash
# Rebuild the demonstration model models/demo-hi2dm from scratch, with the project's CLI and
# configs/experiments/demo_model.yaml only:
#   40 synthetic galaxies x 3 views -> 64x64 maps (48 kpc field) -> SKA-MID mock HI
#   (fast image-plane mode, 20 Mpc) -> pix2pix, HI column density -> dark-matter surface
#   density -> scored on the held-out test galaxies against two baselines -> published in
#   models/ (package data, installed with the package) and registered in
#   models/registry.yaml with the weights' sha256.
# A DEMONSTRATION MODEL, NOT A SCIENCE RESULT: synthetic galaxies, tiny network, short run.
#
# Usage: models/build_demo_model.sh   (from anywhere; intermediate files go to
# build/demo_model/ of the repository). CFG names the shipped configuration.
# Every stage resumes when rerun (existing cutouts, shards, mock domains and checkpoints are kept).
set -euo pipefail
cd "$(dirname "$0")/.."

CFG=configs/experiments/demo_model.yaml
BUILD=build/demo_model
NAME=demo-hi2dm
PY=${PYTHON:-.venv/bin/python}
AO=("$PY" -m alchemy_obs.cli)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

"${AO[@]}" synth --config "$CFG"
"${AO[@]}" maps --config "$CFG" --input "$BUILD/synthetic"
"${AO[@]}" mock --config "$CFG" --dataset "$BUILD/maps" --input "$BUILD/synthetic"
"${AO[@]}" train --config "$CFG" --no-progress
"${AO[@]}" evaluate --config "$CFG" "$BUILD/run/model" --split test --out "$BUILD/eval_test"
# One mock as FITS with the training set-up: its restoring beam is the model's resolution,
# and its cube is the end-to-end check below.
"${AO[@]}" mock --config "$CFG" --galaxy "$BUILD/synthetic/cutout_0.hdf5" --view faceon \
    --out "$BUILD/mocks" --overwrite > /dev/null

# Publish: model card (demonstration label, training data, test metrics with the baselines),
# the held-out test views (hi_nhi, dm) for re-evaluation, registry entry with the sha256.
"$PY" - "$CFG" "$BUILD" "$NAME" <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np
import torch
from astropy import units as u
from astropy.io import fits

from alchemy_obs.config import load_config
from alchemy_obs.infer.registry import register_model
from alchemy_obs.maps.store import join_shards, read_shard, shard_path, write_shard
from alchemy_obs.shipped import MODELS
from alchemy_obs.translate import metrics
from alchemy_obs.translate.checkpoint import load_model, save_model
from alchemy_obs.translate.data import PairedMapDataset
from alchemy_obs.translate.evaluate import baseline_predictions
from alchemy_obs.translate.normalise import Normalisation

cfg_path, build, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
cfg = load_config(cfg_path, [])
folder = MODELS / name
method, card = load_model(build / "run" / "model", device="cpu")
norm = Normalisation.from_dict(card["normalisation"])
(inp,), target = card["inputs"], card["target"]
store = cfg.train.data.store

# The two baselines of the translators' acceptance test, on the same test views.
train_ds = PairedMapDataset(store, [inp], target, "train", norm)
test_ds = PairedMapDataset(store, [inp], target, "test", norm)
truth = torch.stack([torch.as_tensor(test_ds.physical(i)[target]) for i in range(len(test_ds))])
baselines = baseline_predictions(train_ds, test_ds)
report = json.loads((build / "eval_test" / "metrics.json").read_text())
assert report["n_maps"] == len(test_ds), "evaluate scored another number of test views"

# Resolution of the training observations, from the mock written with the same set-up.
header = fits.getheader(build / "mocks" / "cutout_0_faceon_hi_mom0.fits")
distance = cfg.mock.distance_mpc * u.Mpc
beam_kpc = float((header["BMAJ"] * u.deg).to_value(u.rad) * distance.to_value(u.kpc))

meta = test_ds.store.meta
views = test_ds.views
card.update(
    demonstration=True,
    description=("DEMONSTRATION MODEL, NOT A SCIENCE RESULT: HI column density (SKA-MID mock, "
                 "fast image-plane mode) -> dark-matter surface density, 64x64 maps of "
                 "synthetic galaxies, tiny pix2pix trained for minutes on a CPU."),
    beam_fwhm_kpc=round(beam_kpc, 4),
    training_data={
        **card["training_data"],
        "store": f"{store} (rebuilt by models/build_demo_model.sh)",
        "config": cfg_path,
        "source": "synthetic galaxies (alchemy-obs synth), not IllustrisTNG",
        "synth_seed": cfg.synth.seed,
        "n_galaxies": int(len(set(test_ds.store.meta["galaxy_id"]))),
        "views_per_split": {s: int(len(test_ds.store.indices(s))) for s in ("train", "val", "test")},
        "test_galaxies": sorted({int(g) for g in meta["galaxy_id"][views]}),
        "field_kpc": cfg.maps.npix * cfg.maps.pixel_kpc,
        "mock": {"telescope": cfg.observe.telescope.array, "mode": cfg.observe.mode,
                 "distance_mpc": cfg.mock.distance_mpc, "channels": cfg.mock.n_channels,
                 "channel_width_kms": cfg.mock.channel_width_kms,
                 "beam_arcsec": [round(header["BMAJ"] * 3600, 3), round(header["BMIN"] * 3600, 3)]},
    },
    metrics={
        "split": "test", "n_maps": report["n_maps"],
        "model": report["metrics"],
        "baselines": {"mean_map": metrics.summarise(baselines["mean map"], truth),
                      "pixel_regression": metrics.summarise(baselines["pixel regression"], truth)},
    },
)
save_model(folder, method, card)

# The held-out test views (model input and target only), in the dataset format.
test_dir = folder / "test_views"
shards = []
for gid in card["training_data"]["test_galaxies"]:
    maps, shard_meta, attrs = read_shard(shard_path(cfg.maps.out_dir, gid))
    shards.append(write_shard(shard_path(test_dir, gid), {d: maps[d] for d in (inp, target)},
                              shard_meta, config_hash=str(attrs["config_hash"]),
                              cosmology=str(attrs["cosmology"])))
join_shards(shards, test_dir / "dataset.h5", split_fractions={"test": 1.0})

entry = register_model(folder, name, MODELS / "registry.yaml", version="1",
                       description=card["description"], demonstration=True,
                       beam_fwhm_kpc=card["beam_fwhm_kpc"])
m, b = card["metrics"]["model"], card["metrics"]["baselines"]
rows = [("pix2pix (this model)", m), ("mean training map", b["mean_map"]),
        ("per-pixel linear regression", b["pixel_regression"])]
table = ["| predictor | radial profile mean abs dex | total mass abs dex | SSIM | PSNR |",
         "|---|---|---|---|---|"]
table += [f"| {label} | {s['profile_abs_dex']:.4f} | {s['mass_abs_dex']:.4f} | {s['ssim']:.3f} "
          f"| {s['psnr']:.2f} |" for label, s in rows]
td = card["training_data"]
(folder / "README.md").write_text(f"""# {name}: DEMONSTRATION MODEL, NOT A SCIENCE RESULT

HI column density (`{inp}`, cm^-2) -> dark-matter surface density (`{target}`, Msun/kpc^2).
Trained on **synthetic** galaxies (not IllustrisTNG) seen through a simulated SKA-MID
({td['mock']['telescope']}, {td['mock']['mode']} image-plane mode) at {cfg.mock.distance_mpc:g} Mpc, with a tiny
network trained for {card['step']} steps on a CPU. It shows that `alchemy-obs infer` works end
to end; its maps say nothing about real galaxies.

- method: {card['method']} (one network evaluation per map); weights `model.safetensors`,
  sha256 `{entry.sha256}` (also in `models/registry.yaml`)
- maps: {card['npix']}x{card['npix']} pixels of {card['pixel_kpc']:g} kpc ({cfg.maps.npix * cfg.maps.pixel_kpc:g} kpc field);
  training beam FWHM {card['beam_fwhm_kpc']:.3g} kpc ({td['mock']['beam_arcsec'][0]:.3g}" x {td['mock']['beam_arcsec'][1]:.3g}")
- data: {td['n_galaxies']} galaxies x 3 views (face-on, edge-on, one random); views per split
  {td['views_per_split']}; splits by galaxy; normalisation in `card.json`
- test views (model input and target) ship in `test_views/` for re-evaluation

Scores on the {report['n_maps']} held-out test views (`alchemy-obs evaluate`; baselines as in the
translators' acceptance test; lower is better except SSIM and PSNR):

{chr(10).join(table)}

Rebuild (about 6 CPU minutes, mostly the mock observations and training; 20 minutes
of wall time on a busy shared 2-core machine):

    models/build_demo_model.sh

which runs, with `configs/experiments/demo_model.yaml`: `alchemy-obs synth`, `maps`,
`mock --dataset`, `train`, `evaluate --split test`, then writes this folder and registers it.
""")
print(f"{name}: sha256 {entry.sha256}")
print("\n".join(table))
EOF

# End to end: the registered name on a mock cube, exactly as a user would run it.
"${AO[@]}" infer "$BUILD/mocks/cutout_0_faceon_hi_image.fits" --model "$NAME" \
    --out "$BUILD/infer" --overwrite --plot
du -sh "models/$NAME"
