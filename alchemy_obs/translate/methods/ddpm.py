"""Conditional denoising diffusion (Ho et al. 2020) with ancestral and DDIM samplers.

The denoiser sees ``concat(x_t, condition)``; the network time is ``t = (i + 1) / T`` for
step index ``i`` in ``0..T-1``. The samplers are written in terms of the noise ``epsilon``
and the clean-map estimate ``x_0``, which :meth:`DDPM.predict` derives from the network
output ``F`` according to ``ddpm.prediction``:

``"v"`` (default; Salimans and Ho 2022)
    ``F`` estimates the velocity ``v = sqrt(abar) eps - sqrt(1 - abar) x_0``, so
    ``eps = sqrt(1 - abar) x_i + sqrt(abar) F`` and ``x_0 = sqrt(abar) x_i - sqrt(1 - abar) F``.
``"eps"`` (Ho et al. 2020)
    ``F`` estimates ``eps`` and ``x_0 = (x_i - sqrt(1 - abar) F) / sqrt(abar)``.

Why ``v``: at high noise the best epsilon output is ``x_i`` minus a small multiple
``sqrt(abar / (1 - abar))`` of the clean map, so the clean-map estimate divides the network's
error by ``sqrt(abar)`` (0.078 at the first step of a 20-step DDIM, 3e-5 at ``i = T - 1``).
The large scales of a sample, hence its total mass and radial profile, are fixed in those
first steps. With ``v`` the network predicts ``-x_0`` there directly, and the loss
``|v_hat - v|^2 = |eps_hat - eps|^2 + |x0_hat - x_0|^2`` counts both errors at every step.
After 500 CPU steps of the small U-Net of ``tests/test_train.py``, the clean-map estimate
from a true ``x_950`` is off by 1.54 normalised units (RMS) with ``eps`` and 0.20 with
``v``, and DDIM samples miss the held-out dark-matter profiles by 1.30 dex with ``eps``
and 0.095 dex with ``v`` (``docs/training.rst``).

Forward process: ``x_i = sqrt(abar_i) x_0 + sqrt(1 - abar_i) eps`` with
``abar_i = prod_{j<=i} (1 - beta_j)``. Schedules: linear (Ho et al. 2020, betas from 1e-4
to 0.02 at T = 1000, rescaled by 1000/T) and cosine (Nichol and Dhariwal 2021,
``abar(t) = f(t)/f(0)``, ``f(t) = cos^2(pi/2 (t/T + s)/(1 + s))``, s = 0.008, beta <= 0.999).

DDIM (Song et al. 2021) visits a decreasing subsequence ``tau`` of step indices; each update
goes from ``tau_k`` to the *next visited* index ``tau_{k+1}`` (``abar = 1`` after the last),
so strided sampling stays on the forward marginals for any stride.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alchemy_obs.config import DDPMConfig, NetworkConfig
from alchemy_obs.translate.methods.base import Batch, Method, SampleCallback, randn
from alchemy_obs.translate.nets import build_network

__all__ = ["DDPM", "beta_schedule", "ddim_timesteps"]


def beta_schedule(kind: str, timesteps: int) -> np.ndarray:
    """The betas (float64, length ``timesteps``) of a ``"linear"`` or ``"cosine"`` schedule."""
    if kind == "linear":
        scale = 1000.0 / timesteps
        return np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
    if kind == "cosine":
        s = 0.008
        t = np.arange(timesteps + 1, dtype=np.float64) / timesteps
        f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
    raise ValueError(f"unknown noise schedule {kind!r}; use 'linear' or 'cosine'")


def ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """Decreasing step indices visited by a ``steps``-step DDIM sampler.

    ``floor(k T / steps)`` for ``k = steps - 1, ..., 0``: the stride ``T / steps`` of Song et
    al. (2021) generalised to any number of steps (``range(0, T, stride)`` when it divides
    ``T``). Starting one stride below ``T`` rather than at ``T - 1`` avoids the last steps
    of the cosine schedule, where ``abar`` falls to ~1e-9 and the clean-map estimate of
    an imperfect epsilon network is meaningless, while the first jump would carry it
    forward.
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be in 1..{timesteps}, got {steps}")
    return (np.arange(steps, dtype=np.int64) * timesteps // steps)[::-1].copy()


class DDPM(Method):
    """Denoising diffusion (v or epsilon prediction) conditioned by channel concatenation.

    Parameters
    ----------
    net : nn.Module
        Denoiser ``net(concat(x_t, condition), t)`` with ``in_channels + out_channels`` input
        and ``out_channels`` output channels.
    in_channels, out_channels : int
        Channels of the condition and of the target.
    **settings
        Keywords of :class:`~alchemy_obs.config.DDPMConfig` (schedule, prediction, sampler);
        the settings' defaults where omitted.
    """

    name = "ddpm"

    def __init__(
        self, net: nn.Module, *, in_channels: int, out_channels: int,
        **settings: Any,
    ) -> None:
        super().__init__({"net": net}, in_channels=in_channels, out_channels=out_channels)
        self.settings = DDPMConfig(**settings)
        self.T = self.settings.timesteps
        betas = beta_schedule(self.settings.schedule, self.T)
        # Buffers move with the method; not persistent, as the settings define them.
        self.register_buffer("betas", torch.from_numpy(betas), persistent=False)
        self.register_buffer(
            "alphas_cumprod", torch.from_numpy(np.cumprod(1.0 - betas)), persistent=False
        )

    @classmethod
    def from_config(
        cls, settings: DDPMConfig, network: NetworkConfig, *, in_channels: int, out_channels: int
    ) -> DDPM:
        net = build_network(network, in_channels + out_channels, out_channels, time=True)
        return cls(net, in_channels=in_channels, out_channels=out_channels, **settings.model_dump())

    def _coefs(self, idx: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``sqrt(abar_i)`` and ``sqrt(1 - abar_i)`` as columns of ``like``'s dtype.

        Computed in float64: ``1 - abar`` is ~1e-5 at the first step.
        """
        abar = self.alphas_cumprod[idx].view(-1, 1, 1, 1)
        return abar.sqrt().to(like.dtype), (1 - abar).sqrt().to(like.dtype)

    def q_sample(self, x0: Tensor, idx: Tensor, noise: Tensor) -> Tensor:
        """Draw ``x_i`` from the forward marginal ``q(x_i | x_0)``."""
        a, s = self._coefs(idx, x0)
        return a * x0 + s * noise

    def network_time(self, idx: Tensor) -> Tensor:
        return (idx.float() + 1.0) / self.T

    def predict(self, x: Tensor, condition: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Estimates ``(x_0, epsilon)`` of the clean map and the noise in ``x_i``.

        With ``prediction = "v"`` the network output ``F`` is the velocity, and
        ``x_0 = sqrt(abar) x_i - sqrt(1 - abar) F``, ``eps = sqrt(1 - abar) x_i +
        sqrt(abar) F``; with ``"eps"`` it is the noise and ``x_0 = (x_i - sqrt(1 - abar)
        eps) / sqrt(abar)``.
        """
        out = self.net("net")(torch.cat([x, condition], dim=1), self.network_time(idx)).float()
        x = x.float()
        a, s = self._coefs(idx, x)
        if self.settings.prediction == "v":
            return a * x - s * out, s * x + a * out
        return (x - s * out) / a, out

    def loss(self, batch: Batch) -> Tensor:
        x0, cond = batch["target"], batch["input"]
        idx = torch.randint(0, self.T, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        out = self.net("net")(
            torch.cat([self.q_sample(x0, idx, noise), cond], dim=1), self.network_time(idx)
        ).float()
        cfg = self.settings
        if cfg.prediction == "v":
            a, s = self._coefs(idx, out)
            v = a * noise.float() - s * x0.float()
            return ((out - v) ** 2).mean()
        err = ((out - noise.float()) ** 2).mean(dim=(1, 2, 3))
        if cfg.snr_weight_cap is not None:
            abar = self.alphas_cumprod[idx].float()
            err = err * ((1 - abar) / abar).clamp(1.0, cfg.snr_weight_cap)
        return err.mean()

    @torch.no_grad()
    def sample(
        self, condition: Tensor, steps: int | None = None,
        generator: torch.Generator | None = None, *, callback: SampleCallback | None = None,
        sampler: str | None = None, eta: float | None = None,
    ) -> Tensor:
        """Sample with DDIM (``steps`` evaluations) or ancestral DDPM (``T`` evaluations).

        ``sampler`` and ``eta`` default to the configuration; ``steps`` must be ``None`` or
        ``T`` for the ancestral sampler.
        """
        cfg = self.settings
        sampler = sampler or cfg.sampler
        b, _, h, w = condition.shape
        x = randn((b, self.out_channels, h, w), generator, condition.device)
        if sampler == "ddpm":
            if steps not in (None, self.T):
                raise ValueError(f"the ancestral sampler takes T={self.T} steps, not {steps}")
            return self._ancestral(x, condition, generator, callback)
        if sampler == "ddim":
            return self._ddim(
                x, condition, steps or cfg.sample_steps, cfg.eta if eta is None else eta,
                generator, callback,
            )
        raise ValueError(f"unknown sampler {sampler!r}; use 'ddpm' or 'ddim'")

    def _clipped(self, x: Tensor, condition: Tensor, i: int, ab: float) -> tuple[Tensor, Tensor]:
        """``(x_0, eps)`` at step ``i`` (``abar_i = ab``) with the estimate clamped to ``clip_x0``.

        With epsilon prediction the estimate divides by ``sqrt(abar)`` (down to ~1e-4 near
        ``t = 1`` for the cosine schedule), so small noise errors become huge ``x0`` values
        that strided samplers carry into the next state; clamping to the range of
        normalised maps and recomputing the implied noise keeps the update consistent.
        """
        idx = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        x0, eps = self.predict(x, condition, idx)
        clip = self.settings.clip_x0
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return x0, eps

    def _ancestral(self, x, condition, generator, callback) -> Tensor:
        # The step coefficients are host scalars: one transfer per call, none per step.
        betas = self.betas.tolist()
        abar = self.alphas_cumprod.tolist()
        for i in reversed(range(self.T)):
            ab = abar[i]
            ab_prev = abar[i - 1] if i > 0 else 1.0
            x0, _ = self._clipped(x, condition, i, ab)
            # Posterior q(x_{i-1} | x_i, x_0) (Ho et al. 2020, eq. 7).
            c0 = math.sqrt(ab_prev) * betas[i] / (1 - ab)
            ct = math.sqrt(1 - betas[i]) * (1 - ab_prev) / (1 - ab)
            x = c0 * x0 + ct * x
            if i > 0:
                var = betas[i] * (1 - ab_prev) / (1 - ab)
                x = x + math.sqrt(var) * randn(tuple(x.shape), generator, x.device)
            if callback is not None:
                callback(i / self.T, x, x0)
        return x

    def _ddim(self, x, condition, steps, eta, generator, callback) -> Tensor:
        taus = ddim_timesteps(self.T, steps)
        abar = self.alphas_cumprod.tolist()
        for k, i in enumerate(taus):
            ab = abar[i]
            prev = int(taus[k + 1]) if k + 1 < len(taus) else -1
            ab_prev = abar[prev] if prev >= 0 else 1.0
            x0, eps = self._clipped(x, condition, int(i), ab)
            sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
            x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * randn(tuple(x.shape), generator, x.device)
            if callback is not None:
                callback((prev + 1) / self.T, x, x0)
        return x
