"""Translator speed and sampling cost: training steps/s, sampling time, evaluations vs quality.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/training.py            # CPU (and GPU if present)
    .venv/bin/python benchmarks/training.py --quick                      # smaller, for a smoke run
    .venv/bin/python benchmarks/training.py --unets-only                 # part 0 alone

Part 0 times one training step (forward, backward, Adam; batch 8 at 64^2, 2 input and 1
output channels, time embedding, one thread) of the demo attention U-Net against the U-Nets
of chuchichaestli 0.4.4 and diffusers at the same number of parameters (within 3 %), with
the ratio to chuchichaestli's, and the same U-Net without its attention gates, without its
self-attention and without either, which shows what each costs. The two peers are optional
(``pip install .[bench]`` brings diffusers; chuchichaestli needs ``pip install
chuchichaestli==0.4.4 --no-deps``, since its torchvision requirement would replace the CPU
build of torch); missing ones are skipped. Steps of all the networks are interleaved and
the best of ``--unet-repeats`` is kept, so that other load on the machine affects them
alike.

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
    method = build_method(cfg.method, cfg.network, in_channels=1, out_channels=1).to(
        device, memory_format=torch.channels_last if device.type == "cuda" else None)
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


def _ours_unet(*overrides: str) -> torch.nn.Module:
    from alchemy_obs.translate.nets import build_network

    return build_network(load_config(None, [*NETWORK, *overrides]).train.network, 2, 1, time=True)


def _chuchichaestli_unet() -> torch.nn.Module:
    from chuchichaestli.models.unet import UNet

    # Our widths 16/32/32 (its multipliers are cumulative) and self-attention at the lowest
    # level in the encoder, bottleneck and decoder, 2 heads. Its attention mixes the heads at
    # each position rather than the positions (sequence axis = heads), so it is far cheaper
    # than ours. The 256 time channels bring its parameter count to ours in the cheapest
    # place (per-block time projections), which favours it.
    return UNet(
        dimensions=2, in_channels=2, n_channels=16, out_channels=1,
        down_block_types=("DownBlock", "DownBlock", "AttnDownBlock"), mid_block_type="AttnMidBlock",
        up_block_types=("AttnUpBlock", "UpBlock", "UpBlock"), block_out_channel_mults=(1, 2, 1),
        time_embedding=True, time_channels=256, groups=8, res_groups=8, attn_groups=8,
        attn_n_heads=2, attn_head_dim=32, res_dropout=0.0,
    )


class _Diffusers(torch.nn.Module):
    """diffusers' UNet2DModel with our call signature: ``t`` in [0, 1] to steps 0..999."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        # Attention across positions at the lowest level, like ours; widths 14/28/28 (norm
        # groups 7) match our parameter count, its decoder having two blocks per level.
        self.net = UNet2DModel(
            sample_size=64, in_channels=2, out_channels=1, block_out_channels=(14, 28, 28),
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), layers_per_block=1,
            norm_num_groups=7, attention_head_dim=14,
        )

    def forward(self, x, t):
        return self.net(x, (t * 999).long()).sample


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def compare_unets(repeats: int, batch: int = 8, npix: int = 64) -> list[dict]:
    """Training-step time of our U-Net and of chuchichaestli's and diffusers' (one thread)."""
    builders = {
        "alchemy-obs attention U-Net": (_ours_unet, "alchemy-obs"),
        "chuchichaestli UNet": (_chuchichaestli_unet, "chuchichaestli"),
        "diffusers UNet2DModel": (_Diffusers, "diffusers"),
        # What the two attention mechanisms cost: the same U-Net without them (fewer
        # parameters), not a candidate for the comparison.
        "ours without attention gates": (
            lambda: _ours_unet("train.network.attention_gates=false"), "alchemy-obs"),
        "ours without self-attention": (
            lambda: _ours_unet("train.network.attention_levels=[]"), "alchemy-obs"),
        "ours without either": (
            lambda: _ours_unet("train.network.attention_gates=false",
                               "train.network.attention_levels=[]"), "alchemy-obs"),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for name, (build, dist) in builders.items():
            try:
                torch.manual_seed(0)
                net = build()
            except ImportError as err:
                print(f"{name}: skipped ({err})")
                continue
            opt = torch.optim.Adam(net.parameters(), 1e-4)
            x, t = torch.randn(batch, 2, npix, npix), torch.rand(batch)

            def step(net=net, opt=opt, x=x, t=t):
                opt.zero_grad(set_to_none=True)
                net(x, t).square().mean().backward()
                opt.step()

            step()
            step()
            runs[name] = {"step": step, "dist": dist, "params": sum(p.numel() for p in net.parameters()),
                          "wall": float("inf"), "cpu": float("inf")}
        for _ in range(repeats):
            for r in runs.values():
                w0, c0 = time.perf_counter(), time.thread_time()
                r["step"]()
                r["cpu"] = min(r["cpu"], time.thread_time() - c0)
                r["wall"] = min(r["wall"], time.perf_counter() - w0)
    finally:
        torch.set_num_threads(threads)
    ref = runs.get("chuchichaestli UNet", {}).get("wall")
    rows = [{"network": name, "version": _version(r["dist"]), "params": r["params"],
             "step_ms": r["wall"] * 1e3, "cpu_ms": r["cpu"] * 1e3,
             "ratio_to_chuchichaestli": r["wall"] / ref if ref else None,
             "batch": batch, "npix": npix, "threads": 1, "repeats": repeats}
            for name, r in runs.items()]
    print(f"\nU-Net training step, {npix}^2, batch {batch}, one thread, best of {repeats}")
    print(f"{'network':>28s} {'version':>8s} {'params':>8s} {'step ms':>8s} {'cpu ms':>8s} "
          f"{'vs chuchichaestli':>17s}")
    for r in rows:
        ratio = f"{r['ratio_to_chuchichaestli']:.2f}x" if r["ratio_to_chuchichaestli"] else "-"
        print(f"{r['network']:>28s} {r['version']:>8s} {r['params']:8d} {r['step_ms']:8.1f} "
              f"{r['cpu_ms']:8.1f} {ratio:>17s}")
    return rows


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
                method.settings.sampler = sampler
            if quick and n == 1000:
                continue
            t0 = time.perf_counter()
            res = evaluate_method(method, store, ["gas"], target="dm", normalisation=norm,
                                  split="test", max_maps=8,
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
    parser.add_argument("--unets-only", action="store_true", help="part 0 alone")
    parser.add_argument("--unet-repeats", type=int, default=20, help="interleaved steps of part 0")
    args = parser.parse_args()
    unets = compare_unets(5 if args.quick else args.unet_repeats)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(select_device("cuda"))
    speed = []
    for device in [] if args.unets_only else devices:
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
    if not (args.skip_quality or args.unets_only):
        with tempfile.TemporaryDirectory() as tmp:
            quality = quality_vs_evaluations(Path(tmp), args.train_steps, args.quick)
        print(f"\n{'method':>6s} {'sampler':>7s} {'NFE':>5s} {'profile dex':>12s} {'mass dex':>9s} {'s/8 maps':>9s}")
        for r in quality:
            print(f"{r['method']:>6s} {r['sampler']:>7s} {r['evaluations']:5d} {r['profile_abs_dex']:12.4f} "
                  f"{r['mass_abs_dex']:9.4f} {r['sample_s']:9.2f}")
    name = "training_unets.json" if args.unets_only else "training.json"
    out = REPO / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": platform.platform(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "unets": unets, "speed": speed,
              "quality": quality}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
