"""Inversion by Direct Iteration (Delbracio and Milanfar 2023).

Training draws a continuous ``t ~ U(0, 1)`` and the point
``x_t = (1 - t) x + t y + t sigma eps`` between the clean target ``x`` and the degraded start
``y`` (the observation, or one channel of it); the network sees ``concat(x_t, condition)``
and ``t`` and predicts ``x`` (L2 loss, so it learns ``E[x | x_t, condition]``).

Sampling starts at ``x_1 = y + sigma eps`` and takes ``N`` steps on the same continuous
grid ``t_k = k / N``: ``x_{t - d} = (d / t) F(x_t, t) + (1 - d / t) x_t`` with ``d = 1/N``.
With the exact ``F`` every iterate lies on the training path, whatever ``N``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alchemy_obs.config import InDIConfig, MethodConfig, NetworkConfig
from alchemy_obs.translate.methods.base import Batch, Method, SampleCallback, randn
from alchemy_obs.translate.nets import build_network

__all__ = ["InDI"]


class InDI(Method):
    """InDI translator; the target must have one channel or as many as the input."""

    name = "indi"

    def __init__(self, nets, in_channels, out_channels, config: MethodConfig) -> None:
        super().__init__(nets, in_channels, out_channels, config)
        cfg: InDIConfig = config.indi
        if out_channels != in_channels and out_channels != 1:
            raise ValueError(
                f"InDI needs a start point in target space: target has {out_channels} channels, "
                f"input {in_channels}"
            )
        if out_channels == 1 and cfg.start_channel >= in_channels:
            raise ValueError(f"indi.start_channel={cfg.start_channel} but input has {in_channels}")

    @classmethod
    def from_config(cls, config, network: NetworkConfig, in_channels, out_channels) -> InDI:
        net = build_network(network, in_channels + out_channels, out_channels, time=True)
        return cls({"net": net}, in_channels, out_channels, config)

    def start(self, condition: Tensor) -> Tensor:
        """The degraded point ``y`` in target space (t = 1)."""
        if self.out_channels == self.in_channels:
            return condition
        c = self.config.indi.start_channel
        return condition[:, c : c + 1]

    def path(self, x: Tensor, y: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """``x_t = (1 - t) x + t y (+ t sigma eps)`` for per-sample ``t`` (B,)."""
        tt = t.to(x.dtype).view(-1, 1, 1, 1)
        xt = (1 - tt) * x + tt * y
        if noise is not None and self.config.indi.noise > 0:
            xt = xt + tt * self.config.indi.noise * noise
        return xt

    def predict(self, xt: Tensor, condition: Tensor, t: Tensor) -> Tensor:
        return self.net("net")(torch.cat([xt, condition], dim=1), t)

    def loss(self, batch: Batch) -> Tensor:
        x, cond = batch["target"], batch["input"]
        t = torch.rand(x.shape[0], device=x.device)
        xt = self.path(x, self.start(cond), t, torch.randn_like(x))
        return F.mse_loss(self.predict(xt, cond, t).float(), x.float())

    @torch.no_grad()
    def sample(
        self, condition: Tensor, steps: int | None = None,
        generator: torch.Generator | None = None, callback: SampleCallback | None = None,
    ) -> Tensor:
        n = steps or self.config.indi.sample_steps
        if n < 1:
            raise ValueError(f"InDI needs at least one step, got {n}")
        x = self.start(condition).float()
        if self.config.indi.noise > 0:
            x = x + self.config.indi.noise * randn(tuple(x.shape), generator, x.device)
        d = 1.0 / n
        for k in range(n, 0, -1):
            t = k / n
            tb = torch.full((x.shape[0],), t, device=x.device)
            x0 = self.predict(x, condition, tb).float()
            x = (d / t) * x0 + (1 - d / t) * x
            if callback is not None:
                callback(t - d, x, x0)
        return x
