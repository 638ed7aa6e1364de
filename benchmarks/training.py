"""Translator speed and sampling cost: training steps/s, sampling time, evaluations vs quality.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/training.py            # CPU (and GPU if present)
    .venv/bin/python benchmarks/training.py --quick                      # smaller, for a smoke run

Part 1 times training steps (forward + backward + optimiser, per batch) and sampling (per
image, each method's default number of steps) for pix2pix, DDPM and InDI at 64^2 and 256^2
with the demo network (configs/experiments/*_demo64.yaml); on CPU at 256^2, where a 50-step
sampler takes minutes, the sampling time is scaled from a timed 2-evaluation run. Part 2 trains DDPM and InDI
briefly on a paired test dataset at 64^2 (tests/translate_helpers.py, the same as the
learning test) and reports the radial-profile residual (dex, lower is better) on held-out
maps against the number of network evaluations: InDI with 1, 5 and 10 steps, DDIM with 10
and 50, ancestral DDPM with 1000. Prints a table and writes benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from alchemy_obs.config import load_config  # noqa: E402
from alchemy_obs.translate.evaluate import evaluate_method  # noqa: E402
from alchemy_obs.translate.methods import build_method  # noqa: E402
from alchemy_obs.translate.train import select_device, train  # noqa: E402

NETWORK = ["train.network.base_channels=16", "train.network.channel_mults=[1,2,2]",
           "train.network.attention_levels=[2]", "train.network.attention_heads=2"]
SAMPLE_STEPS = {"pix2pix": None, "ddpm": 50, "indi": 10}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_method(name: str, npix: int, device: torch.device, batch: int, repeats: int) -> dict:
    cfg = load_config(None, [f"train.method.name={name}", *NETWORK]).train
    torch.manual_seed(0)
    method = build_method(cfg.method, cfg.network, 1, 1).to(
        device, torch.channels_last if device.type == "cuda" else None)
    opts = method.configure_optimizers(cfg.optim)
    b = {"input": torch.randn(batch, 1, npix, npix, device=device),
         "target": torch.randn(batch, 1, npix, npix, device=device)}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None

    def step():
        for opt_name, fn in method.phases():
            opts[opt_name].zero_grad(set_to_none=True)
            if amp is not None:
                with amp:
                    loss = fn(b)
            else:
                loss = fn(b)
            loss.backward()
            opts[opt_name].step()

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    train_s = (time.perf_counter() - t0) / repeats
    method.eval()
    cond = b["input"][:2]
    n_eval = SAMPLE_STEPS[name] or 1
    # On CPU at 256^2 a full 50-step sampler takes minutes: time 2 evaluations there and
    # scale by the number of evaluations (the samplers' own arithmetic is negligible).
    measured = n_eval if (device.type == "cuda" or npix <= 64) else min(n_eval, 2)
    method.sample(cond, steps=min(measured, 2))
    _sync(device)
    t0 = time.perf_counter()
    method.sample(cond, steps=measured)
    _sync(device)
    sample_s = (time.perf_counter() - t0) / cond.shape[0] * n_eval / measured
    return {"method": name, "npix": npix, "device": str(device), "batch": batch,
            "train_steps_per_s": 1.0 / train_s, "sample_steps": n_eval,
            "sample_s_per_image": sample_s, "sample_evaluations_timed": measured}


def quality_vs_evaluations(workdir: Path, steps: int, quick: bool) -> list[dict]:
    from translate_helpers import write_toy_store

    from alchemy_obs.translate.checkpoint import load_model
    from alchemy_obs.translate.normalise import Normalisation

    store = write_toy_store(workdir / "store", n_galaxies=60, n_views=2, npix=64, seed=3,
                            gas_dynamic_range=1e-6)
    rows = []
    plan = {"indi": [("indi", 1), ("indi", 5), ("indi", 10)],
            "ddpm": [("ddim", 10), ("ddim", 50), ("ddpm", 1000)]}
    for name, runs in plan.items():
        cfg = load_config(None, [
            f"train.data.store={store}", f"train.method.name={name}", f"train.out_dir={workdir / name}",
            "train.network.base_channels=8", "train.network.channel_mults=[1,2,2]",
            "train.network.attention_levels=[2]", "train.network.attention_heads=1",
            "train.network.groups=4", "train.batch_size=8", f"train.steps={steps}",
            f"train.checkpoint_every={steps}", "train.eval_maps=0", "train.optim.lr=0.002",
            "train.optim.warmup_steps=20", "train.optim.ema_decay=0.98",
            "train.method.ddpm.clip_x0=3.0",
        ])
        t0 = time.perf_counter()
        train(cfg, progress=False)
        train_s = time.perf_counter() - t0
        method, card = load_model(workdir / name / "model")
        norm = Normalisation.from_dict(card["normalisation"])
        for sampler, n in runs:
            if name == "ddpm":
                method.config.ddpm.sampler = sampler
            if quick and n == 1000:
                continue
            t0 = time.perf_counter()
            res = evaluate_method(method, store, ["gas"], "dm", norm, "test", max_maps=8,
                                  steps=None if sampler == "ddpm" else n)
            rows.append({"method": name, "sampler": sampler, "evaluations": n,
                         "profile_abs_dex": res["summary"]["profile_abs_dex"],
                         "mass_abs_dex": res["summary"]["mass_abs_dex"],
                         "sample_s": time.perf_counter() - t0, "train_steps": steps,
                         "train_s": train_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no DDPM-1000")
    parser.add_argument("--train-steps", type=int, default=250, help="training steps of part 2")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(select_device("cuda"))
    speed = []
    for device in devices:
        for npix in (64, 256):
            for name in ("pix2pix", "ddpm", "indi"):
                batch = 8 if npix == 64 else 2
                repeats = 20 if device.type == "cuda" else (1 if npix > 64 or args.quick else 3)
                speed.append(time_method(name, npix, device, batch, repeats))
                r = speed[-1]
                print(f"{r['device']:>6s} {name:>8s} {npix:4d}^2  batch {batch}: "
                      f"{r['train_steps_per_s']:8.2f} steps/s, sampling {r['sample_s_per_image']:8.3f} "
                      f"s/image ({r['sample_steps']} evaluations)", flush=True)
    quality = []
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            quality = quality_vs_evaluations(Path(tmp), args.train_steps, args.quick)
        print(f"\n{'method':>6s} {'sampler':>7s} {'NFE':>5s} {'profile dex':>12s} {'mass dex':>9s} {'s/8 maps':>9s}")
        for r in quality:
            print(f"{r['method']:>6s} {r['sampler']:>7s} {r['evaluations']:5d} {r['profile_abs_dex']:12.4f} "
                  f"{r['mass_abs_dex']:9.4f} {r['sample_s']:9.2f}")
    out = REPO / "benchmarks" / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": platform.platform(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "speed": speed, "quality": quality}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
