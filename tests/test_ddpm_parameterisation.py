"""DDPM with velocity prediction: the samplers driven by an exact v-model, the loss identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from translate_helpers import tiny_unet

from alchemy_obs.config import DDPMConfig
from alchemy_obs.translate.methods import DDPM
from alchemy_obs.translate.methods.ddpm import ddim_timesteps


class VOracle(nn.Module):
    """Returns the exact velocity ``sqrt(abar) eps - sqrt(1 - abar) x0`` of ``x_t``."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor, T: int) -> None:
        super().__init__()
        self.x0, self.abar, self.T = x0, alphas_cumprod, T
        self.dummy = nn.Parameter(torch.zeros(()))
        self.times: list[float] = []

    def forward(self, inp, t):
        xt = inp[:, :1].double()
        self.times.append(float(t[0]))
        ab = float(self.abar[int(round(float(t[0]) * self.T)) - 1])
        eps = (xt - math.sqrt(ab) * self.x0) / math.sqrt(1 - ab)
        return (math.sqrt(ab) * eps - math.sqrt(1 - ab) * self.x0).float()


def _v_method(kind: str):
    m = DDPM(tiny_unet(3, 1), in_channels=2, out_channels=1, schedule=kind)
    x0 = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0),
                     dtype=torch.float64).clamp(-3, 3)
    m.nets["net"] = VOracle(x0, m.alphas_cumprod, m.T)
    return m, x0


def test_v_is_the_default():
    assert DDPMConfig().prediction == "v"


@pytest.mark.parametrize("stride", [1, 10, 50])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_with_exact_v_model_recovers_target(kind, stride):
    m, x0 = _v_method(kind)
    steps = m.T // stride
    out = m.sample(torch.zeros(1, 2, 32, 32), steps=steps, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.double(), x0, atol=1e-4, rtol=0)
    np.testing.assert_allclose(m.nets["net"].times, (ddim_timesteps(m.T, steps) + 1) / m.T)


def test_ancestral_with_exact_v_model_recovers_target():
    m, x0 = _v_method("cosine")
    out = m.sample(torch.zeros(1, 2, 32, 32), sampler="ddpm", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.double(), x0, atol=1e-4, rtol=0)


def test_v_estimates_are_exact_at_pure_noise():
    """Where abar ~ 1e-9 (cosine, last step) epsilon prediction cannot give x0; v can."""
    m, x0 = _v_method("cosine")
    idx = torch.full((1,), m.T - 1)
    noise = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    xt = m.q_sample(x0, idx, noise)
    x0_hat, eps_hat = m.predict(xt.float(), torch.zeros(1, 1, 32, 32), idx)
    assert float(m.alphas_cumprod[-1]) < 1e-6
    torch.testing.assert_close(x0_hat.double(), x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_hat.double(), noise, atol=1e-5, rtol=0)


def test_v_loss_is_noise_error_plus_clean_map_error():
    """``|v_hat - v|^2 = |eps_hat - eps|^2 + |x0_hat - x0|^2`` because ``abar + (1 - abar) = 1``."""
    torch.manual_seed(0)
    m = DDPM(tiny_unet(2, 1), in_channels=1, out_channels=1)
    x0, cond = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16)
    torch.manual_seed(1)
    loss = m.loss({"input": cond, "target": x0})
    torch.manual_seed(1)  # the same draws of the steps and the noise as inside loss()
    idx = torch.randint(0, m.T, (6,))
    noise = torch.randn_like(x0)
    with torch.no_grad():
        x0_hat, eps_hat = m.predict(m.q_sample(x0, idx, noise), cond, idx)
    expected = ((eps_hat - noise) ** 2 + (x0_hat - x0) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_snr_weighting_needs_epsilon_prediction():
    with pytest.raises(ValidationError, match="prediction = 'eps'"):
        DDPMConfig(snr_weight_cap=100.0)
    assert DDPMConfig(prediction="eps", snr_weight_cap=100.0).snr_weight_cap == 100.0
