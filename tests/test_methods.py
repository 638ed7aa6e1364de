"""Translator methods: forward processes, samplers driven by exact oracles, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from translate_helpers import tiny_unet

from alchemy_obs.config import ConfigError, MethodConfig, OptimConfig, load_config
from alchemy_obs.translate.methods import DDPM, METHODS, InDI, Method, Pix2Pix
from alchemy_obs.translate.methods.ddpm import beta_schedule, ddim_timesteps
from alchemy_obs.translate.nets import PatchGAN


def _method(name: str, **settings) -> Method:
    """A method on a two-channel condition and a one-channel target, from plain keywords."""
    if name == "pix2pix":
        return Pix2Pix(tiny_unet(2, 1, time=False), PatchGAN(3), in_channels=2, out_channels=1,
                       **settings)
    # The denoiser sees the iterate and the condition (DDPM) or the side channel (InDI).
    cls, net_in = {"ddpm": (DDPM, 3), "indi": (InDI, 2)}[name]
    return cls(tiny_unet(net_in, 1), in_channels=2, out_channels=1, **settings)


class EpsOracle(nn.Module):
    """Returns the exact noise of ``x_t`` given the known clean map (and records t)."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor, T: int) -> None:
        super().__init__()
        self.x0, self.abar, self.T = x0, alphas_cumprod, T
        self.dummy = nn.Parameter(torch.zeros(()))
        self.times: list[float] = []
        self.eps: list[torch.Tensor] = []

    def forward(self, inp, t):
        xt = inp[:, :1].double()
        self.times.append(float(t[0]))
        idx = int(round(float(t[0]) * self.T)) - 1
        ab = float(self.abar[idx])
        eps = (xt - math.sqrt(ab) * self.x0) / math.sqrt(1 - ab)
        self.eps.append(eps)
        return eps.float()


class XOracle(nn.Module):
    """Returns the exact clean map (InDI) and records t."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0
        self.dummy = nn.Parameter(torch.zeros(()))
        self.times: list[float] = []

    def forward(self, inp, t):
        self.times.append(float(t[0]))
        return self.x0.expand(inp.shape[0], -1, -1, -1)


def _x0(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, n, n, generator=g, dtype=torch.float64).clamp(-3, 3)


def test_registry_and_configuration_agree():
    from typing import get_args

    sections = get_args(get_args(MethodConfig)[0])
    assert set(METHODS) == {get_args(s)[0].model_fields["name"].default for s in sections}
    with pytest.raises(ConfigError, match="'gan9000' is not one of"):
        load_config(None, ["train.method.name=gan9000"])
    with pytest.raises(ConfigError, match="method 'pix2pix' cannot train network.kind 'dim'"):
        load_config(None, ["train.method.name=pix2pix", "train.network.kind=dim"])
    with pytest.raises(ConfigError, match="unknown key 'train.method.ddpm.nosie'"):
        load_config(None, ["train.method.ddpm.nosie=1"])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_match_their_formulas(kind):
    T = 1000
    betas = beta_schedule(kind, T)
    abar = np.cumprod(1 - betas)
    if kind == "linear":
        assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
        assert np.allclose(np.diff(betas), (0.02 - 1e-4) / (T - 1))
    else:
        s = 0.008
        f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
        i = np.arange(1, T + 1)
        unclipped = betas < 0.999
        assert np.allclose(abar[unclipped], (f(i) / f(0))[unclipped], rtol=1e-10)
        assert unclipped[:-1].all()
    assert np.all(np.diff(abar) < 0) and 0 < abar[-1] < 1e-3


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_forward_marginal_statistics(kind):
    m = _method("ddpm", schedule=kind)
    x0 = torch.full((4, 1, 256, 256), 0.7, dtype=torch.float64)
    torch.manual_seed(0)
    for i in (0, 100, 500, 999):
        idx = torch.full((4,), i)
        xt = m.q_sample(x0, idx, torch.randn_like(x0))
        ab = float(m.alphas_cumprod[i])
        assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=4e-3)
        assert xt.var().item() == pytest.approx(1 - ab, rel=1e-2, abs=1e-5)


def _ddpm_with_oracle(kind="cosine", n=64):
    m = _method("ddpm", schedule=kind, prediction="eps")
    x0 = _x0(n)
    oracle = EpsOracle(x0, m.alphas_cumprod, m.T)
    m.nets["net"] = oracle
    return m, oracle, x0


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ancestral_sampler_with_exact_model_follows_marginals(kind):
    m, oracle, x0 = _ddpm_with_oracle(kind, n=96)
    states = {}
    keep = {900, 500, 100, 10}
    gen = torch.Generator().manual_seed(1)
    cond = torch.zeros(1, 2, 96, 96)

    def cb(t, x, x0_hat):
        i = round(t * m.T)  # state after the step is x_{i-1}; t = i / T
        if i - 1 in keep:
            states[i - 1] = x.double()

    out = m.sample(cond, generator=gen, sampler="ddpm", callback=cb)
    assert len(oracle.times) == m.T
    assert oracle.times[0] == pytest.approx(1.0) and oracle.times[-1] == pytest.approx(1 / m.T)
    torch.testing.assert_close(out.double(), x0, atol=1e-4, rtol=0)
    for i, x in states.items():
        ab = float(m.alphas_cumprod[i])
        resid = x - math.sqrt(ab) * x0  # should be N(0, 1 - ab)
        assert abs(resid.mean().item()) < 0.03
        assert resid.var().item() == pytest.approx(1 - ab, rel=0.05, abs=2e-5)


@pytest.mark.parametrize("stride", [1, 10, 50, 30])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_with_exact_model_recovers_target_for_any_stride(kind, stride):
    m, oracle, x0 = _ddpm_with_oracle(kind)
    steps = math.ceil(m.T / stride)
    out = m.sample(torch.zeros(1, 2, 64, 64), steps=steps, sampler="ddim",
                   generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.double(), x0, atol=1e-4, rtol=0)
    taus = ddim_timesteps(m.T, steps)
    assert len(oracle.times) == len(taus) == steps
    np.testing.assert_allclose(oracle.times, (taus + 1) / m.T)
    # Re-noising to the *next visited* step keeps every state on the forward marginal of
    # the same noise, so the exact model sees one noise field all along the trajectory.
    # (Re-noising to i - 1 instead of the next strided step breaks this.)
    for eps in oracle.eps[1:]:
        torch.testing.assert_close(eps, oracle.eps[0], atol=2e-3, rtol=0)


def test_ddim_timesteps():
    assert list(ddim_timesteps(1000, 1)) == [0]
    assert list(ddim_timesteps(1000, 1000)) == list(range(999, -1, -1))
    assert list(ddim_timesteps(1000, 20)) == list(range(950, -1, -50))
    t = ddim_timesteps(1000, 30)  # a stride that does not divide T
    assert t[-1] == 0 and len(t) == 30 and np.all(np.diff(t) < 0) and set(np.diff(t)) <= {-33, -34}
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 1001)


def test_ddpm_ancestral_rejects_steps():
    m, _, _ = _ddpm_with_oracle()
    with pytest.raises(ValueError, match="ancestral"):
        m.sample(torch.zeros(1, 2, 64, 64), steps=10, sampler="ddpm")


@pytest.mark.parametrize("steps", [1, 5, 10])
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_indi_with_exact_model_recovers_target_on_its_path(steps, noise):
    m = _method("indi", noise=noise)
    x0 = _x0().float()
    y = torch.randn(1, 2, 64, 64)
    oracle = XOracle(x0)
    m.nets["net"] = oracle
    states = []
    out = m.sample(y, steps=steps, generator=torch.Generator().manual_seed(0),
                   callback=lambda t, x, xh: states.append((t, x.clone())))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    # Continuous t on the grid k/N, the same t the network is trained with.
    np.testing.assert_allclose(oracle.times, [k / steps for k in range(steps, 0, -1)])
    start = y[:, :1]
    first_noise = None
    for t, x in states[:-1]:
        off = (x - ((1 - t) * x0 + t * start)) / t  # = sigma * eps, constant along the path
        if first_noise is None:
            first_noise = off
        torch.testing.assert_close(off, first_noise, atol=1e-4, rtol=0)
        if noise == 0:
            assert off.abs().max() < 1e-5
        else:
            assert off.std().item() == pytest.approx(noise, rel=0.05)


def test_indi_training_path_and_loss():
    m = _method("indi", noise=0.0)
    x, y = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.tensor([0.0, 0.25, 1.0])
    xt = m.path(x, y, t)
    torch.testing.assert_close(xt[0], x[0])
    torch.testing.assert_close(xt[1], 0.75 * x[1] + 0.25 * y[1])
    torch.testing.assert_close(xt[2], y[2])
    m.nets["net"] = XOracle(x)
    # The exact model has zero loss whatever t is drawn.
    batch = {"input": torch.cat([y, torch.randn(3, 1, 8, 8)], 1), "target": x}
    assert m.loss(batch).item() == 0.0
    with pytest.raises(ValueError, match="start point"):
        InDI(tiny_unet(5, 3), in_channels=2, out_channels=3)


class ZeroDisc(nn.Module):
    """A discriminator that cannot tell: every patch logit is 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, t=None):
        return self.w * x[:, :1, ::8, ::8]


def test_pix2pix_losses_and_optimiser_settings():
    torch.manual_seed(0)
    m = _method("pix2pix")
    assert isinstance(m, Pix2Pix)
    opts = m.configure_optimizers(OptimConfig())
    for o in opts.values():
        assert o.param_groups[0]["lr"] == 2e-4 and tuple(o.param_groups[0]["betas"]) == (0.5, 0.999)
    assert [p for p, _ in m.phases()] == ["disc", "gen"]
    m.nets["disc"] = ZeroDisc()
    batch = {"input": torch.randn(2, 2, 32, 32), "target": torch.randn(2, 1, 32, 32)}
    d_loss = m.discriminator_loss(batch)
    assert d_loss.item() == pytest.approx(math.log(2), rel=1e-6)
    fake = m._fake.detach().clone()
    g_loss = m.loss(batch)  # reuses the generator output of the discriminator phase
    expected = math.log(2) + 100 * F.l1_loss(fake, batch["target"]).item()
    assert g_loss.item() == pytest.approx(expected, rel=1e-6)
    g_loss.backward()
    assert all(p.grad is not None for p in m.nets["gen"].parameters())
    out = m.sample(batch["input"])
    assert out.shape == (2, 1, 32, 32)


def test_diffusion_losses_backpropagate_and_samples_are_reproducible():
    torch.manual_seed(0)
    for name in ("ddpm", "indi"):
        m = _method(name, **({"noise": 0.1} if name == "indi" else {}))
        batch = {"input": torch.randn(2, 2, 16, 16), "target": torch.randn(2, 1, 16, 16)}
        m.loss(batch).backward()
        assert all(p.grad is not None for p in m.nets["net"].parameters())
        a = m.sample(batch["input"], steps=3, generator=torch.Generator().manual_seed(5))
        b = m.sample(batch["input"], steps=3, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b) and a.shape == (2, 1, 16, 16)


def test_method_is_a_module_whose_schedule_moves_with_it():
    m = _method("ddpm")
    assert isinstance(m, nn.Module)
    assert {"betas", "alphas_cumprod"} <= {name for name, _ in m.named_buffers()}
    # The schedule follows from the settings: checkpoints hold network weights only.
    assert not any(k.endswith(("betas", "alphas_cumprod")) for k in m.state_dict())
    m.to("meta")
    assert m.alphas_cumprod.device.type == "meta" and m.device.type == "meta"
    assert m.alphas_cumprod.dtype == torch.float64
    m.eval()
    assert not any(net.training for net in m.nets.values())
