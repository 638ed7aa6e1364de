"""One training loop for every translator method.

The trainer only knows the :class:`~alchemy_obs.translate.methods.base.Method` interface:
``phases()`` (optimiser name and loss function of each optimisation step),
``configure_optimizers``, ``nets`` and ``sample_networks``. Around it:

- device: CUDA when available (``config.device = "auto"``), else CPU; bf16 autocast and
  channels-last memory on CUDA;
- an exponential moving average (EMA) of the sampling networks, used for inference;
- gradient-norm clipping, linear warm-up then cosine learning-rate decay;
- checkpoints every ``checkpoint_every`` steps and at the end, holding weights, optimiser
  moments, EMA, per-process RNG states, step, normalisation and configuration (safetensors +
  JSON, never pickle); a rerun of the same command resumes exactly where the last
  checkpoint left off (same batches, same noise, same weights as an uninterrupted run);
- ``metrics.csv`` (one row every ``log_every`` steps) and a tqdm progress bar;
- data parallelism with ``torchrun --nproc_per_node N`` (NCCL on GPUs, gloo on CPU); each
  process reads its own slice of every global batch, and checkpoints load in one process.

The run folder ``out_dir`` receives ``checkpoints/step_<N>/``, ``metrics.csv`` and, at the
end, ``model/`` (the EMA weights and the model card, see
:mod:`alchemy_obs.translate.checkpoint`).
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from alchemy_obs import __version__
from alchemy_obs.config import Config, OptimConfig, TrainConfig, config_hash
from alchemy_obs.translate.checkpoint import (
    load_training_state,
    save_model,
    saved_train_config,
    save_training_state,
)
from alchemy_obs.maps.store import MapStore
from alchemy_obs.translate.data import EpochBatchSampler, PairedMapDataset, fit_normalisation
from alchemy_obs.translate.methods import Method, build_method

__all__ = ["select_device", "lr_factor", "train", "latest_checkpoint", "model_card"]

log = logging.getLogger(__name__)


def select_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``cuda:<local_rank>`` when available (or requested), else CPU."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(total - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The most recent complete checkpoint folder of a run, or ``None``."""
    folder = Path(out_dir) / "checkpoints"
    done = sorted(p for p in folder.glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


class _EMA:
    """EMA copies of some networks; decay ramps up as ``(1 + n) / (10 + n)`` early on."""

    def __init__(self, nets: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.nets = {k: copy.deepcopy(v).eval().requires_grad_(False) for k, v in nets.items()}

    @torch.no_grad()
    def update(self, nets: dict[str, nn.Module], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for name, ema in self.nets.items():
            for pe, p in zip(ema.parameters(), nets[name].parameters()):
                pe.lerp_(p.detach(), 1 - d)
            for be, b in zip(ema.buffers(), nets[name].buffers()):
                be.copy_(b)


def _flat_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{name}/{pid}/{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflat_optimizer(name: str, tensors: dict, meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim/{name}/"
    for key, v in tensors.items():
        if key.startswith(prefix):
            pid, k = key[len(prefix):].split("/", 1)
            state.setdefault(int(pid), {})[k] = v
    for pid, st in meta[name]["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta[name]["param_groups"]}


def model_card(
    tcfg: TrainConfig, method: Method, dataset: PairedMapDataset, *, step: int,
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The model card of a run (see :mod:`alchemy_obs.translate.checkpoint`)."""
    store = dataset.store
    pixel = store.meta.get("pixel_kpc")
    return {
        "config": tcfg.model_dump(mode="json"),
        "inputs": dataset.inputs,
        "target": dataset.target,
        "in_channels": method.in_channels,
        "out_channels": method.out_channels,
        "units": {d: store.units(d).to_string() for d in [*dataset.inputs, dataset.target]},
        "normalisation": dataset.normalisation.to_dict(),
        "npix": int(store.npix),
        "pixel_kpc": float(np.median(pixel[dataset.views])) if pixel is not None else None,
        "training_data": {
            "store": str(store.path),
            "n_train": len(dataset),
            "config_hash": str(store.attrs.get("config_hash", "")),
            "code_version": str(store.attrs.get("code_version", "")),
        },
        "metrics": metrics or {},
        "step": step,
        "code_version": __version__,
    }


class _Run:
    """State of one process of a training run."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tcfg = config.train
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = world > 1
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.world_size = world
        self.device = select_device(config.device, self.local_rank)
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend)
        self.cuda = self.device.type == "cuda"
        self.out = Path(self.tcfg.out_dir)

        d = self.tcfg.data
        store = MapStore(d.store)
        # Deterministic subset: every process fits the same normalisation without talking.
        norm = fit_normalisation(store, [*d.inputs, d.target], "train", max_maps=d.fit_maps)
        # Augmentation is chosen by the batch sampler, so resumes and workers agree.
        self.dataset = PairedMapDataset(store, d.inputs, d.target, split="train",
                                        normalisation=norm, augment=False)
        torch.manual_seed(config.seed)  # identical initial weights on every process
        self.method = build_method(
            self.tcfg.method, self.tcfg.network, in_channels=len(d.inputs), out_channels=1
        )
        fmt = torch.channels_last if (self.cuda and self.tcfg.channels_last) else None
        self.memory_format = fmt
        self.method.to(self.device, memory_format=fmt)
        self.optimizers = self.method.configure_optimizers(self.tcfg.optim)
        total = self.tcfg.steps
        self.schedulers = {
            k: torch.optim.lr_scheduler.LambdaLR(
                o, lambda s, total=total: lr_factor(s, total, self.tcfg.optim)
            )
            for k, o in self.optimizers.items()
        }
        self.ema = _EMA(
            {k: self.method.nets[k] for k in self.method.sample_networks}, self.tcfg.optim.ema_decay
        )
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.cuda else None
            self.method.wrap(lambda net: DDP(net, device_ids=ids))
        self.step = 0
        torch.manual_seed(config.seed + 1 + self.rank)
        if self.cuda:
            torch.cuda.manual_seed(config.seed + 1 + self.rank)

    # -- checkpoints -----------------------------------------------------------------
    def _rng_states(self) -> dict[str, torch.Tensor]:
        mine = {"cpu": torch.get_rng_state()}
        if self.cuda:
            mine["cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.distributed:
            return {f"rng/{k}/0": v for k, v in mine.items()}
        gathered: list[dict] = [None] * self.world_size  # type: ignore[list-item]
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in mine.items()})
        return {f"rng/{k}/{r}": v for r, g in enumerate(gathered) for k, v in g.items()}

    def _ema_weights(self) -> dict[str, torch.Tensor]:
        weights = {}
        for name, net in self.method.nets.items():
            src = self.ema.nets.get(name, net)
            weights.update({f"{name}.{k}": v for k, v in src.state_dict().items()})
        return weights

    def save(self) -> Path | None:
        rng = self._rng_states()  # collective: every rank takes part
        path = None
        if self.rank == 0:
            tensors: dict[str, torch.Tensor] = dict(rng)
            for name, net in self.method.nets.items():
                tensors.update({f"net/{name}.{k}": v for k, v in net.state_dict().items()})
            optim_meta: dict[str, Any] = {}
            for name, opt in self.optimizers.items():
                _flat_optimizer(name, opt, tensors, optim_meta)
            meta = {
                "step": self.step,
                "world_size": self.world_size,
                "optimizers": optim_meta,
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "config": self.tcfg.model_dump(mode="json"),
                "config_hash": config_hash(self.tcfg),
            }
            card = model_card(self.tcfg, self.method, self.dataset, step=self.step)
            path = self.out / "checkpoints" / f"step_{self.step:08d}"
            save_training_state(path, self.method, card, model_weights=self._ema_weights(),
                                tensors=tensors, meta=meta)
            old = sorted((self.out / "checkpoints").glob("step_*"))[: -self.tcfg.keep_checkpoints]
            for p in old:
                shutil.rmtree(p, ignore_errors=True)
        if self.distributed:
            dist.barrier()
        return path

    def restore(self, folder: Path) -> None:
        tensors, meta = load_training_state(folder)
        saved = saved_train_config(meta["config"])
        for section in ("data", "network", "method"):
            if getattr(saved, section) != getattr(self.tcfg, section):
                raise ValueError(
                    f"{folder}: the run was started with a different train.{section} section; "
                    f"use a new out_dir or delete {self.out}"
                )
        for name, net in self.method.nets.items():
            pre = f"net/{name}."
            net.load_state_dict({k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)})
            if name in self.ema.nets:
                ema_w = load_model_weights(folder, name)
                self.ema.nets[name].load_state_dict(ema_w)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(_unflat_optimizer(name, tensors, meta["optimizers"]))
        for name, sched in self.schedulers.items():
            sched.load_state_dict(meta["schedulers"][name])
        self.step = int(meta["step"])
        if meta["world_size"] == self.world_size:
            torch.set_rng_state(tensors[f"rng/cpu/{self.rank}"])
            if self.cuda and f"rng/cuda/{self.rank}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng/cuda/{self.rank}"], self.device)
        else:
            log.warning("resuming %d-process run with %d processes: RNG streams are reseeded",
                        meta["world_size"], self.world_size)
            torch.manual_seed(self.config.seed + 1 + self.rank + 7919 * self.step)

    # -- loop --------------------------------------------------------------------------
    def _csv_rows_upto(self, step: int) -> None:
        path = self.out / "metrics.csv"
        if self.rank != 0 or not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(rows[0])
        w.writerows(r for r in rows[1:] if int(r[0]) <= step)
        tmp = path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, path)

    def _log_row(self, row: dict[str, float]) -> None:
        path = self.out / "metrics.csv"
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            v = v.to(self.device, non_blocking=True)
            if v.ndim == 4 and self.memory_format is not None:
                v = v.contiguous(memory_format=self.memory_format)
            out[k] = v
        return out

    def run(self, stop_at: int | None, progress: bool) -> None:
        from tqdm.auto import tqdm

        tcfg = self.tcfg
        total = tcfg.steps
        nb = EpochBatchSampler.batches_per_epoch(len(self.dataset), tcfg.batch_size, self.world_size)
        if nb == 0:
            raise ValueError(
                f"{tcfg.data.store}: {len(self.dataset)} training views cannot fill a batch of "
                f"{tcfg.batch_size} x {self.world_size} processes; lower train.batch_size"
            )
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if (self.cuda and tcfg.amp) else nullcontext()
        )
        phases = self.method.phases()
        self.method.train()
        bar = tqdm(total=total, initial=self.step, disable=True if not progress or self.rank != 0 else None,
                   desc=f"train {self.method.name}", dynamic_ncols=True)
        t_last, s_last = time.perf_counter(), self.step
        end = min(total, stop_at) if stop_at is not None else total
        while self.step < end:
            epoch, start = divmod(self.step, nb)
            sampler = EpochBatchSampler(
                len(self.dataset), tcfg.batch_size, self.config.seed, epoch=epoch, augment=tcfg.data.augment,
                rank=self.rank, world_size=self.world_size, start=start,
            )
            loader = DataLoader(
                self.dataset, batch_sampler=sampler, num_workers=tcfg.data.num_workers,
                pin_memory=self.cuda,
            )
            for batch in loader:
                batch = self._to_device(batch)
                losses = {}
                for opt_name, loss_fn in phases:
                    opt = self.optimizers[opt_name]
                    opt.zero_grad(set_to_none=True)
                    with autocast:
                        loss = loss_fn(batch)
                    loss.backward()
                    if tcfg.optim.grad_clip is not None:
                        params = [p for g in opt.param_groups for p in g["params"]]
                        torch.nn.utils.clip_grad_norm_(params, tcfg.optim.grad_clip)
                    opt.step()
                    losses[f"loss_{opt_name}"] = loss.detach()
                for s in self.schedulers.values():
                    s.step()
                self.step += 1
                self.ema.update(self.method.nets, self.step)
                bar.update(1)
                if self.rank == 0 and (self.step % tcfg.log_every == 0 or self.step == end):
                    now = time.perf_counter()
                    row = {"step": self.step}
                    row.update({k: float(v) for k, v in losses.items()})
                    row["lr"] = next(iter(self.schedulers.values())).get_last_lr()[0]
                    row["steps_per_s"] = (self.step - s_last) / max(now - t_last, 1e-9)
                    t_last, s_last = now, self.step
                    self._log_row(row)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k.startswith("loss")})
                if self.step % tcfg.checkpoint_every == 0 or self.step == total:
                    self.save()
                if self.step >= end:
                    break
        bar.close()


def load_model_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(Path(folder) / "model.safetensors"))
    pre = f"{name}."
    return {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}


def train(
    config: Config, *, resume: bool = True, stop_at: int | None = None, progress: bool = True,
) -> Path:
    """Train the translator described by ``config.train``; resume its run when possible.

    Parameters
    ----------
    config : Config
        Full configuration (``device``, ``seed`` and the ``train`` section are used).
    resume : bool
        Continue from the latest checkpoint in ``train.out_dir`` if there is one.
    stop_at : int, optional
        Stop after this optimiser step (as if interrupted; a later call resumes), e.g. to
        fit a run into batch-queue wall-time limits.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The final model folder ``out_dir/model`` (or the latest checkpoint when stopped).
    """
    run = _Run(config)
    run.out.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(run.out) if resume else None
    if ckpt is not None:
        run.restore(ckpt)
        log.info("resumed %s at step %d", ckpt, run.step)
    run._csv_rows_upto(run.step)
    run.run(stop_at, progress)
    if run.step < run.tcfg.steps:
        return latest_checkpoint(run.out) or run.out
    final = run.out / "model"
    if run.rank == 0:
        from alchemy_obs.translate.evaluate import evaluate_method

        run.method.wrap(lambda net: net)  # rank 0 alone must not go through DDP
        for name, ema in run.ema.nets.items():
            run.method.nets[name].load_state_dict(ema.state_dict())
        metrics = {}
        if run.tcfg.eval_maps > 0:
            try:
                metrics = evaluate_method(
                    run.method, run.tcfg.data.store, run.tcfg.data.inputs, target=run.tcfg.data.target,
                    normalisation=run.dataset.normalisation, split="val", max_maps=run.tcfg.eval_maps,
                )["summary"]
            except ValueError as exc:  # no validation views
                log.warning("no validation metrics: %s", exc)
        card = model_card(run.tcfg, run.method, run.dataset, step=run.step, metrics=metrics)
        save_model(final, run.method, card)
        log.info("wrote %s", final)
    if run.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return final
