"""Score-based generative modelling through SDEs (Song et al. 2021), conditioned by concatenation.

The forward SDE ``dx = f(x, t) dt + g(t) dw`` on ``t`` in [0, 1] turns target maps into
noise. Two processes of Song et al. (2021, sections 3.4 and B):

VP (variance preserving, the continuous DDPM)
    ``f = -beta(t) x / 2``, ``g = sqrt(beta(t))``, ``beta(t) = beta_min + t (beta_max -
    beta_min)``; marginal ``x_t = m(t) x_0 + s(t) z`` with
    ``log m(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`` and ``s^2 = 1 - m^2``.
VE (variance exploding, the continuous SMLD)
    ``f = 0``, ``g = sigma(t) sqrt(2 log(sigma_max / sigma_min))``,
    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``; marginal ``x_t = x_0 + sigma(t) z``
    (the data are taken as already perturbed by ``sigma_min``, as in Song's code).

Training is denoising score matching; what the network predicts is ``sde.prediction``:

``"edm"`` (default; Karras et al. 2022)
    With ``sigma = s / m`` and the data scale ``sigma_data``, the network sees
    ``concat(c_in x_t / m, condition)`` and ``t``, and its output ``F`` gives the clean map
    ``x0_hat = c_skip x_t / m + c_out F`` with ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``,
    ``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``, ``c_out = sigma sigma_data /
    sqrt(sigma^2 + sigma_data^2)``. The loss ``|x0_hat - x_0|^2 / c_out^2`` is the error of
    ``F`` against a target of unit scale, at every noise level. The score is Tweedie's
    ``(m x0_hat - x_t) / s^2``. On VP with ``sigma_data = 1`` this is the v-prediction of
    :mod:`~alchemy_obs.translate.methods.ddpm`.
``"noise"`` (Song et al. 2021)
    The network sees ``concat(x_t, condition)`` and predicts the noise ``z`` (weighting
    ``lambda(t) = s(t)^2``); the score is ``-z_hat / s(t)``.

Why ``edm``: at high noise the clean map is ``(x_t - s z) / m`` with ``m`` down to 0.007
(VP, ``t = 1``), so a noise prediction must be exact to ~``m`` for the large scales of a
sample, which are set there, to come out right; a preconditioned clean-map prediction is
well conditioned at every ``t`` (see ``docs/training.rst`` for the measured difference).

Samplers integrate the reverse-time SDE ``dx = [f - g^2 score] dt + g dw_bar`` from the
prior at ``t = 1`` down to ``t_min``: Euler-Maruyama (predictor), optionally followed by
Langevin MCMC steps (corrector) whose step size is set by a signal-to-noise ratio (Song et
al. 2021, algorithms 4 and 5), or the probability-flow ODE ``dx = [f - g^2 score / 2] dt``
(deterministic; Heun's method). The samplers take any ``score_fn(x, t)``, so they can be
checked against exact scores of analytic targets. The method optionally ends with one
Tweedie denoising step at ``t_min`` (``denoise``, Song's "noise removal").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from alchemy_obs.config import NetworkConfig, SDEConfig
from alchemy_obs.translate.methods.base import Batch, Method, SampleCallback, randn
from alchemy_obs.translate.nets import build_network

__all__ = [
    "VPSDE",
    "VESDE",
    "ScoreFn",
    "ScoreSDE",
    "make_sde",
    "sample_pc",
    "sample_ode",
]

#: ``score_fn(x, t)`` with ``t`` a ``(B,)`` tensor returns ``grad_x log p_t(x)``.
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class VPSDE:
    """Variance-preserving SDE with a linear ``beta(t)``."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(m(t), s(t))``: ``x_t = m x_0 + s z``."""
        log_m = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return torch.exp(log_m), torch.sqrt(-torch.expm1(2.0 * log_m))

    def drift_diffusion(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Forward drift ``f(x, t)`` and diffusion ``g(t)`` ``(B,)``."""
        beta = self.beta(t)
        return -0.5 * _col(beta, x) * x, torch.sqrt(beta)

    def prior_std(self) -> float:
        return 1.0

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        """``alpha_i`` of the discretised chain (Song et al. 2021, algorithm 5).

        Song uses ``1 - beta(t) dt``, which turns negative for coarse grids
        (``beta dt > 1``); ``exp(-beta(t) dt)`` agrees to first order and stays positive.
        """
        return torch.exp(-self.beta(t) * dt)


class VESDE:
    """Variance-exploding SDE with a geometric ``sigma(t)``."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not sigma_max > sigma_min:
            raise ValueError(f"VE-SDE needs sigma_max > sigma_min, got {sigma_max} <= {sigma_min}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), self.sigma(t)

    def drift_diffusion(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        g = self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def prior_std(self) -> float:
        return self.sigma_max

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        return torch.ones_like(t)


def make_sde(cfg: SDEConfig) -> VPSDE | VESDE:
    """The SDE described by the configuration."""
    if cfg.sde == "vp":
        return VPSDE(cfg.beta_min, cfg.beta_max)
    return VESDE(cfg.sigma_min, cfg.sigma_max)


def _langevin(
    sde, score_fn: ScoreFn, x: Tensor, t: Tensor, dt: float, snr: float, generator
) -> Tensor:
    """One Langevin corrector step with step size set by ``snr`` (per sample)."""
    grad = score_fn(x, t)
    z = randn(tuple(x.shape), generator, x.device)
    grad_norm = grad.flatten(1).norm(dim=1)
    z_norm = z.flatten(1).norm(dim=1)
    step = 2.0 * sde.langevin_alpha(t, dt) * (snr * z_norm / grad_norm.clamp_min(1e-12)) ** 2
    return x + _col(step, x) * grad + _col(torch.sqrt(2.0 * step), x) * z


def sample_pc(
    sde, score_fn: ScoreFn, x: Tensor, *, steps: int, t_min: float = 1e-3,
    corrector_steps: int = 1, snr: float = 0.16, generator: torch.Generator | None = None,
    callback: SampleCallback | None = None,
) -> Tensor:
    """Reverse-time Euler-Maruyama predictor with optional Langevin corrector.

    Parameters
    ----------
    sde : VPSDE or VESDE
    score_fn : callable
        ``score_fn(x, t)``.
    x : Tensor
        Start, a draw from the prior at ``t = 1``.
    steps : int
        Predictor steps from ``t = 1`` to ``t_min``.
    corrector_steps : int
        Langevin steps before each predictor step (0: Euler-Maruyama only).
    snr : float
        Signal-to-noise ratio that sets the Langevin step size.

    Returns
    -------
    Tensor
        The sample at ``t_min`` (the mean of the last predictor step, without its noise, as
        in Song's code).
    """
    # Step i goes from 1 - i dt to 1 - (i + 1) dt, so the last one lands on t_min.
    dt = (1.0 - t_min) / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), 1.0 - i * dt, device=x.device, dtype=x.dtype)
        for _ in range(corrector_steps):
            x = _langevin(sde, score_fn, x, t, dt, snr, generator)
        f, g = sde.drift_diffusion(x, t)
        score = score_fn(x, t)
        x_mean = x - (f - _col(g**2, x) * score) * dt
        x = x_mean + _col(g, x) * math.sqrt(dt) * randn(tuple(x.shape), generator, x.device)
        if callback is not None:
            m, s = sde.marginal(t)
            callback(1.0 - (i + 1) * dt, x_mean, (x + _col(s**2, x) * score) / _col(m, x))
    return x_mean


def ode_drift(sde, score_fn: ScoreFn, x: Tensor, *, t: Tensor) -> Tensor:
    """Probability-flow drift ``f - g^2 score / 2``."""
    f, g = sde.drift_diffusion(x, t)
    return f - 0.5 * _col(g**2, x) * score_fn(x, t)


def sample_ode(
    sde, score_fn: ScoreFn, x: Tensor, *, steps: int, t_min: float = 1e-3,
    callback: SampleCallback | None = None,
) -> Tensor:
    """Integrate the probability-flow ODE from ``t = 1`` to ``t_min`` with ``steps`` drift calls.

    Heun's method (second order) on a uniform grid of ``steps // 2`` intervals; a single
    Euler step when ``steps`` is 1.
    """
    n = max(steps // 2, 1)
    heun = steps >= 2
    ts = torch.linspace(1.0, t_min, n + 1, dtype=torch.float64)
    for i in range(n):
        t0 = torch.full((x.shape[0],), float(ts[i]), device=x.device, dtype=x.dtype)
        t1 = torch.full_like(t0, float(ts[i + 1]))
        h = float(ts[i + 1] - ts[i])
        d0 = ode_drift(sde, score_fn, x, t=t0)
        x_e = x + h * d0
        x = x + 0.5 * h * (d0 + ode_drift(sde, score_fn, x_e, t=t1)) if heun else x_e
        if callback is not None:
            callback(float(ts[i + 1]), x, x)
    return x


class ScoreSDE(Method):
    """Conditional score-based diffusion (VP or VE SDE) with PC and ODE samplers.

    Parameters
    ----------
    net : nn.Module
        ``net(concat(x_t, condition), t)`` with ``in_channels + out_channels`` input and
        ``out_channels`` output channels.
    in_channels, out_channels : int
        Channels of the condition and of the target.
    **settings
        Keywords of :class:`~alchemy_obs.config.SDEConfig` (process, prediction, sampler,
        likelihood); the settings' defaults where omitted.
    """

    name = "sde"

    def __init__(
        self, net: nn.Module, *, in_channels: int, out_channels: int,
        **settings: Any,
    ) -> None:
        super().__init__({"net": net}, in_channels=in_channels, out_channels=out_channels)
        self.settings = SDEConfig(**settings)
        self.sde = make_sde(self.settings)

    @classmethod
    def from_config(
        cls, settings: SDEConfig, network: NetworkConfig, *, in_channels: int, out_channels: int
    ) -> ScoreSDE:
        net = build_network(network, in_channels + out_channels, out_channels, time=True)
        return cls(net, in_channels=in_channels, out_channels=out_channels, **settings.model_dump())

    def predict(self, x: Tensor, condition: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Estimates ``(x_0, z)`` of the clean map and the noise in ``x_t = m x_0 + s z``.

        ``prediction = "edm"``: with ``sigma = s / m`` and ``sigma_data``, the network sees
        ``c_in x_t / m`` and its output ``F`` gives ``x_0 = c_skip x_t / m + c_out F``
        (Karras et al. 2022), written without dividing by ``m`` (~0.007 at ``t = 1``);
        ``z = (x_t - m x_0) / s``. ``"noise"``: the network output is ``z``.
        """
        m, s = self.sde.marginal(t)
        m, s = _col(m, x), _col(s, x)
        net = self.net("net")
        if self.settings.prediction == "noise":
            z = net(torch.cat([x, condition.to(x.dtype)], dim=1), t)
            return (x - s * z) / m, z
        sd = self.settings.sigma_data
        norm = torch.sqrt(s**2 + (m * sd) ** 2)
        out = net(torch.cat([x / norm, condition.to(x.dtype)], dim=1), t)
        x0 = sd**2 * m / norm**2 * x + s * sd / norm * out.to(x.dtype)
        return x0, (x - m * x0) / s

    def predict_noise(self, x: Tensor, condition: Tensor, t: Tensor) -> Tensor:
        """The estimate of the noise ``z`` in ``x_t`` (see :meth:`predict`)."""
        return self.predict(x, condition, t)[1]

    def score_fn(self, condition: Tensor) -> ScoreFn:
        """``score(x, t) = -z_hat(x, condition, t) / s(t)`` for this condition."""

        def score(x: Tensor, t: Tensor) -> Tensor:
            _, s = self.sde.marginal(t)
            # The network runs in the condition's precision (the likelihood ODE is float64).
            z = self.predict_noise(x.to(condition.dtype), condition, t.to(condition.dtype))
            return -z.to(x.dtype) / _col(s, x)

        return score

    def loss(self, batch: Batch) -> Tensor:
        x0, cond = batch["target"], batch["input"]
        t_min = self.settings.t_min
        t = t_min + (1.0 - t_min) * torch.rand(x0.shape[0], device=x0.device)
        m, s = self.sde.marginal(t)
        z = torch.randn_like(x0)
        xt = _col(m, x0) * x0 + _col(s, x0) * z
        x0_hat, z_hat = self.predict(xt, cond, t)
        if self.settings.prediction == "edm":
            # Weight 1 / c_out^2 = (s^2 + m^2 sigma_data^2) / (s sigma_data)^2: the error of
            # the network output itself, of unit scale at every noise level.
            sd = self.settings.sigma_data
            c_out = s * sd / torch.sqrt(s**2 + (m * sd) ** 2)
            err = ((x0_hat.float() - x0.float()) / _col(c_out, x0).float()) ** 2
            return err.flatten(1).mean(1).mean()
        err = ((z_hat.float() - z.float()) ** 2).flatten(1).mean(1)
        cap = self.settings.snr_weight_cap
        if cap is not None:
            # s^2/m^2 turns the noise error into the clean-map error: at high noise a small
            # noise error is a large error of x_0 = (x_t - s z) / m.
            err = err * (s.float() ** 2 / m.float() ** 2).clamp(1.0, cap)
        return err.mean()

    @torch.no_grad()
    def sample(
        self, condition: Tensor, steps: int | None = None,
        generator: torch.Generator | None = None, *, callback: SampleCallback | None = None,
        sampler: str | None = None,
    ) -> Tensor:
        """Sample with the configured (or given) sampler: ``pc``, ``em`` or ``ode``.

        ``steps`` counts predictor steps (``pc``, ``em``) or drift evaluations (``ode``);
        each corrector step costs one more network evaluation.
        """
        cfg = self.settings
        sampler = sampler or cfg.sampler
        n = steps or cfg.sample_steps
        b, _, h, w = condition.shape
        x = self.sde.prior_std() * randn((b, self.out_channels, h, w), generator, condition.device)
        score = self.score_fn(condition)
        if sampler in ("pc", "em"):
            corrector = cfg.corrector_steps if sampler == "pc" else 0
            x = sample_pc(self.sde, score, x, steps=n, t_min=cfg.t_min, corrector_steps=corrector,
                          snr=cfg.snr, generator=generator, callback=callback)
        elif sampler == "ode":
            x = sample_ode(self.sde, score, x, steps=n, t_min=cfg.t_min, callback=callback)
        else:
            raise ValueError(f"unknown SDE sampler {sampler!r}; use 'pc', 'em' or 'ode'")
        if cfg.denoise:
            # Tweedie: E[x_0 | x_t] = (x_t + s^2 score) / m removes the noise left at t_min.
            t = torch.full((b,), cfg.t_min, device=x.device, dtype=x.dtype)
            m, s = self.sde.marginal(t)
            x = (x + _col(s**2, x) * score(x, t)) / _col(m, x)
        return x
