"""DiM against the attention U-Net at equal parameter count, and the selective-scan backends.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dim_vs_unet.py          # CPU (and GPU if present)
    .venv/bin/python benchmarks/dim_vs_unet.py --quick                    # 64^2 and 128^2 only

Part 1 times one training step (forward, backward, Adam; a denoiser with 2 input and 1
output channels, batch 2) of the demo attention U-Net (configs/experiments/*_demo64.yaml:
widths 16/32/32, self-attention at the lowest level) and of a DiM sized to the same number
of parameters (4x4 patches), at 64^2, 128^2 and 256^2. Memory is the peak resident-set
growth of a fresh process from just before the first step (``ru_maxrss``; activations,
gradients and optimiser state), and
``torch.cuda.max_memory_allocated`` on GPU. The U-Net's attention at its lowest level holds
an ``HW/16 x HW/16`` matrix per head, so it grows with the square of the number of pixels;
DiM's scan grows linearly.

Part 2 times the two scan backends of :mod:`alchemy_obs.translate.nets.mamba` (forward with
and without backward) against the sequence length, which is how ``backend="auto"`` was
chosen. Prints tables and writes benchmarks/results/dim_vs_unet.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

UNET = {"kind": "unet", "base_channels": 16, "channel_mults": [1, 2, 2], "attention_levels": [2],
        "attention_heads": 2}


def _network(spec: dict):
    from alchemy_obs.config import NetworkConfig
    from alchemy_obs.translate.nets import build_network

    return build_network(NetworkConfig(**spec), 2, 1, time=True)


def _n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def matched_dim_spec(target: int, depth: int = 6, patch: int = 4) -> dict:
    """The DiM of ``depth`` blocks whose parameter count is closest to ``target``."""
    best = None
    for width in range(16, 257, 4):
        spec = {"kind": "dim", "dim": {"patch_size": patch, "dim": width, "depth": depth,
                                       "d_state": 8}}
        n = _n_params(_network(spec))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (spec, n)
    return best[0]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _time_step(spec: dict, npix: int, device: str, batch: int, repeats: int, queue) -> None:
    torch.manual_seed(0)
    dev = torch.device(device)
    net = _network(spec).to(dev)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    x = torch.randn(batch, 2, npix, npix, device=dev)
    t = torch.rand(batch, device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        net(x, t).square().mean().backward()
        opt.step()

    rss0 = _rss_mb()  # before the first step: its activations are the peak we want
    step()  # allocate optimiser state and warm up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    queue.put({"step_s": (time.perf_counter() - t0) / repeats, "memory_mb": mem,
               "params": _n_params(net)})


def time_network(spec: dict, npix: int, device: str, batch: int, repeats: int) -> dict:
    """One measurement in a fresh process, so that peak memory is this network's alone."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_time_step, args=(spec, npix, device, batch, repeats, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        return {"step_s": float("nan"), "memory_mb": float("nan"), "params": 0,
                "error": f"exit code {p.exitcode} (out of memory?)"}
    return q.get()


def time_scans(lengths, repeats: int = 3) -> list[dict]:
    from alchemy_obs.translate.nets.mamba import scan_parallel, scan_sequential

    rows = []
    b, d, n = 2, 64, 8
    for length in lengths:
        g = torch.Generator().manual_seed(0)
        a = torch.rand(b, length, d, n, generator=g) * 0.5 + 0.5
        bx = torch.randn(b, length, d, n, generator=g)
        c = torch.randn(b, length, n, generator=g)
        row = {"L": length}
        variants = {"sequential": lambda a, b_, c: scan_sequential(a, b_, c)}
        for chunk in (None, 32, 128):
            variants[f"parallel/{chunk or 'all'}"] = (
                lambda a, b_, c, ch=chunk: scan_parallel(a, b_, c, chunk=ch))
        for name, fn in variants.items():
            if name == "sequential" and length > 1100:
                continue  # minutes per call: the backward graph of the loop
            with torch.no_grad():
                fn(a, bx, c)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    fn(a, bx, c)
                row[f"{name} infer ms"] = (time.perf_counter() - t0) / repeats * 1e3
            a1, b1 = a.clone().requires_grad_(), bx.clone().requires_grad_()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(a1, b1, c).sum().backward()
            row[f"{name} train ms"] = (time.perf_counter() - t0) / repeats * 1e3
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64^2 and 128^2 only, shorter scans")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    sizes = [64, 128] if args.quick else [64, 128, 256]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    n_unet = _n_params(_network(UNET))
    dim_spec = matched_dim_spec(n_unet)
    nets = {"attention U-Net": UNET, "DiM": dim_spec}
    results = {"platform": platform.platform(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "networks": {}, "training": [], "scan": []}
    for name, spec in nets.items():
        results["networks"][name] = {"spec": spec, "params": _n_params(_network(spec))}
    print(f"U-Net {n_unet} parameters; DiM {results['networks']['DiM']['params']} "
          f"(dim {dim_spec['dim']['dim']}, depth 6, 4x4 patches)")
    print(f"\n{'device':>6s} {'npix':>5s} {'network':>16s} {'step s':>8s} {'memory MB':>10s}")
    for device in devices:
        for npix in sizes:
            for name, spec in nets.items():
                r = time_network(spec, npix, device, batch=2, repeats=args.repeats)
                results["training"].append({"device": device, "npix": npix, "network": name, **r})
                print(f"{device:>6s} {npix:>5d} {name:>16s} {r['step_s']:8.3f} {r['memory_mb']:10.1f}")
    lengths = [16, 64, 272, 1056] if args.quick else [16, 64, 272, 1056, 4160]
    results["scan"] = time_scans(lengths)
    keys = [k for k in results["scan"][0] if k != "L"]
    print("\nselective scan (B=2, D=64, N=8), ms per call\n" + f"{'L':>5s} "
          + " ".join(f"{k:>22s}" for k in keys))
    for row in results["scan"]:
        print(f"{row['L']:>5d} " + " ".join(f"{row.get(k, float('nan')):22.1f}" for k in keys))
    out = REPO / "benchmarks" / "results" / "dim_vs_unet.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)
    print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
