"""Inversion by Direct Iteration (Delbracio and Milanfar 2023, TMLR).

Training draws ``t ~ U(0, 1)`` and the point ``x_t = (1 - t) x + t y + t sigma eps`` between
the clean target ``x`` and the degraded start ``y`` (their eq. with the noise ``epsilon_t``,
here of constant ``sigma``); the restoration network ``F(x_t, t)`` predicts ``x`` with an L2
loss, so it learns ``E[x | x_t]``.

Sampling starts at ``x_1 = y + sigma eps`` and takes ``N`` steps on the continuous grid
``t_k = k / N``: ``x_{t - d} = (d / t) F(x_t, t) + (1 - d / t) x_t`` with ``d = 1/N`` (their
small-step iteration; with a constant ``sigma`` it adds no fresh noise). With the exact
``F`` every iterate lies on the training path, whatever ``N``.

What the network sees. ``F`` gets the iterate ``x_t`` and ``t``, never the start ``y``
itself: given ``y``, the noise-free target is ``(x_t - t y) / (1 - t)`` for every
``t < 1``, a linear inversion that a network learns at once, so training would be spent on
cases that teach nothing and the sampler's later steps would only re-apply the first one's
answer. From ``x_t`` alone, pairs ``(x, y)`` and ``(x + u, y - (1 - t) u / t)`` are
indistinguishable, so ``F`` has to know what dark matter and HI look like to separate them.

Start point. Here ``x`` (e.g. dark matter) and ``y`` (e.g. an HI map) are different physical
quantities, each normalised to order-unity numbers by
:class:`~alchemy_obs.translate.normalise.Normalisation`, so ``x_t`` mixes two normalised
maps. When the condition has as many channels as the target it is ``y``; when the target has
one channel, ``y`` is the condition's channel ``indi.start_channel`` and the other input
channels (other domains) are concatenated to ``x_t`` as side information. A side channel
that is (nearly) a copy of the start channel would bring the shortcut back; choose the
start channel so that none is. Other channel counts have no start point in target space and
are refused.

Models trained before ``indi.condition_on_start`` existed gave the network the whole
condition, ``y`` included; their cards load with it set and keep that behaviour, and
training with it is refused (docs/translators.rst).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alchemy_obs.config import InDIConfig, NetworkConfig
from alchemy_obs.translate.methods.base import Batch, Method, SampleCallback, randn
from alchemy_obs.translate.nets import build_network

__all__ = ["InDI"]


class InDI(Method):
    """InDI translator; the target must have one channel or as many as the input.

    Parameters
    ----------
    net : nn.Module
        Restoration network ``net(concat(x_t, side channels), t)`` with
        :meth:`network_channels` input and ``out_channels`` output channels.
    in_channels, out_channels : int
        Channels of the condition and of the target.
    **settings
        Keywords of :class:`~alchemy_obs.config.InDIConfig` (noise, start channel, sampler);
        the settings' defaults where omitted.
    """

    name = "indi"

    def __init__(
        self, net: nn.Module, *, in_channels: int, out_channels: int,
        **settings: Any,
    ) -> None:
        super().__init__({"net": net}, in_channels=in_channels, out_channels=out_channels)
        self.settings = cfg = InDIConfig(**settings)
        if out_channels != in_channels and out_channels != 1:
            raise ValueError(
                f"InDI needs a start point in target space: target has {out_channels} channels, "
                f"input {in_channels}"
            )
        if out_channels == 1 and cfg.start_channel >= in_channels:
            raise ValueError(f"indi.start_channel={cfg.start_channel} but input has {in_channels}")

    @staticmethod
    def network_channels(
        in_channels: int, out_channels: int, *, condition_on_start: bool = False
    ) -> int:
        """Input channels of ``F``: the iterate, then the side (or, legacy, all) channels."""
        if condition_on_start:
            return out_channels + in_channels
        side = 0 if out_channels == in_channels else in_channels - 1
        return out_channels + side

    @classmethod
    def from_config(
        cls, settings: InDIConfig, network: NetworkConfig, *, in_channels: int, out_channels: int
    ) -> InDI:
        channels = cls.network_channels(
            in_channels, out_channels, condition_on_start=settings.condition_on_start
        )
        net = build_network(network, channels, out_channels, time=True)
        return cls(net, in_channels=in_channels, out_channels=out_channels, **settings.model_dump())

    def start(self, condition: Tensor) -> Tensor:
        """The degraded point ``y`` in target space (t = 1)."""
        if self.out_channels == self.in_channels:
            return condition
        c = self.settings.start_channel
        return condition[:, c : c + 1]

    def side(self, condition: Tensor) -> Tensor:
        """The condition's channels other than the start point (possibly none)."""
        if self.out_channels == self.in_channels:
            return condition[:, :0]
        c = self.settings.start_channel
        return torch.cat([condition[:, :c], condition[:, c + 1 :]], dim=1)

    def path(self, x: Tensor, y: Tensor, t: Tensor, *, noise: Tensor | None = None) -> Tensor:
        """``x_t = (1 - t) x + t y (+ t sigma eps)`` for per-sample ``t`` (B,)."""
        tt = t.to(x.dtype).view(-1, 1, 1, 1)
        xt = (1 - tt) * x + tt * y
        if noise is not None and self.settings.noise > 0:
            xt = xt + tt * self.settings.noise * noise
        return xt

    def predict(self, xt: Tensor, condition: Tensor, t: Tensor) -> Tensor:
        """``F(x_t, t)``, with the side channels of ``condition`` (see the module docstring)."""
        extra = condition if self.settings.condition_on_start else self.side(condition)
        return self.net("net")(torch.cat([xt, extra.to(xt.dtype)], dim=1), t)

    def loss(self, batch: Batch) -> Tensor:
        if self.settings.condition_on_start:
            raise ValueError(
                "indi.condition_on_start=true gives the network the start point y, from which "
                "it inverts x_t = (1 - t) x + t y exactly; it only loads models trained that "
                "way before. Train with indi.condition_on_start=false (docs/translators.rst)."
            )
        x, cond = batch["target"], batch["input"]
        t = torch.rand(x.shape[0], device=x.device)
        xt = self.path(x, self.start(cond), t, noise=torch.randn_like(x))
        return F.mse_loss(self.predict(xt, cond, t).float(), x.float())

    @torch.no_grad()
    def sample(
        self, condition: Tensor, steps: int | None = None,
        generator: torch.Generator | None = None, *, callback: SampleCallback | None = None,
    ) -> Tensor:
        n = steps or self.settings.sample_steps
        if n < 1:
            raise ValueError(f"InDI needs at least one step, got {n}")
        x = self.start(condition).float()
        if self.settings.noise > 0:
            x = x + self.settings.noise * randn(tuple(x.shape), generator, x.device)
        d = 1.0 / n
        for k in range(n, 0, -1):
            t = k / n
            tb = torch.full((x.shape[0],), t, device=x.device)
            x0 = self.predict(x, condition, tb).float()
            x = (d / t) * x0 + (1 - d / t) * x
            if callback is not None:
                callback(t - d, x, x0)
        return x
