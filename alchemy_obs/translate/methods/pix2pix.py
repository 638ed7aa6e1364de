"""pix2pix (Isola et al. 2017): conditional GAN with a PatchGAN and an L1 term.

The generator (attention U-Net without time embedding) maps the observation to the target.
The discriminator scores ``concat(observation, map)`` patch by patch. One training step has
two phases: the discriminator minimises the BCE of real pairs against 1 and generated pairs
against 0 (halved, as in the paper), then the generator minimises
``BCE(D(x, G(x)), 1) + lambda * |G(x) - y|_1`` with lambda = 100. Adam, lr 2e-4 and betas
(0.5, 0.999) are the paper's settings (see ``configs/experiments/pix2pix_*.yaml``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alchemy_obs.config import NetworkConfig, Pix2PixConfig
from alchemy_obs.translate.methods.base import Batch, Method, SampleCallback
from alchemy_obs.translate.nets import PatchGAN, build_network

__all__ = ["Pix2Pix"]


class Pix2Pix(Method):
    """Conditional GAN translator; :meth:`sample` is deterministic (one generator pass).

    Parameters
    ----------
    generator : nn.Module
        ``generator(condition)`` with ``in_channels`` input and ``out_channels`` output
        channels (no time argument).
    discriminator : nn.Module
        Patch logits of ``concat(condition, map)`` (``in_channels + out_channels``).
    in_channels, out_channels : int
        Channels of the condition and of the target.
    **settings
        Keywords of :class:`~alchemy_obs.config.Pix2PixConfig` (the L1 weight;
        the discriminator's shape is ``discriminator``'s);
        the settings' defaults where omitted.
    """

    name = "pix2pix"
    sample_networks = ("gen",)
    default_betas = (0.5, 0.999)

    @property
    def stochastic(self) -> bool:
        """One generator pass without noise (as trained here): repeated samples are equal."""
        return False

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, *, in_channels: int,
        out_channels: int, **settings: Any,
    ) -> None:
        super().__init__({"gen": generator, "disc": discriminator},
                         in_channels=in_channels, out_channels=out_channels)
        self.settings = Pix2PixConfig(**settings)
        # The generator output of the discriminator phase, reused (with its graph) by the
        # generator phase of the same step, as in the reference implementation.
        self._fake: Tensor | None = None

    @classmethod
    def from_config(
        cls, settings: Pix2PixConfig, network: NetworkConfig, *, in_channels: int,
        out_channels: int,
    ) -> Pix2Pix:
        gen = build_network(network, in_channels, out_channels, time=False)
        disc = PatchGAN(in_channels + out_channels, settings.disc_channels, settings.disc_layers)
        return cls(gen, disc, in_channels=in_channels, out_channels=out_channels,
                   **settings.model_dump())

    def phases(self):
        return [("disc", self.discriminator_loss), ("gen", self.loss)]

    def _d(self, cond: Tensor, y: Tensor) -> Tensor:
        return self.net("disc")(torch.cat([cond, y], dim=1))

    def discriminator_loss(self, batch: Batch) -> Tensor:
        cond, real = batch["input"], batch["target"]
        self._fake = self.net("gen")(cond)
        # One discriminator pass over real and fake pairs (instance norm keeps them apart).
        logits = self._d(torch.cat([cond, cond]), torch.cat([real, self._fake.detach()])).float()
        n = cond.shape[0]
        real_loss = F.binary_cross_entropy_with_logits(logits[:n], torch.ones_like(logits[:n]))
        fake_loss = F.binary_cross_entropy_with_logits(logits[n:], torch.zeros_like(logits[n:]))
        return 0.5 * (real_loss + fake_loss)

    def loss(self, batch: Batch) -> Tensor:
        cond, real = batch["input"], batch["target"]
        fake = self._fake if self._fake is not None else self.net("gen")(cond)
        self._fake = None
        logits = self._d(cond, fake).float()
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return adv + self.settings.l1_weight * F.l1_loss(fake.float(), real.float())

    @torch.no_grad()
    def sample(
        self, condition: Tensor, steps: int | None = None,
        generator: torch.Generator | None = None, *, callback: SampleCallback | None = None,
    ) -> Tensor:
        out = self.net("gen")(condition).float()
        if callback is not None:
            callback(0.0, out, out)
        return out
