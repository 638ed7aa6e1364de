"""Score SDEs: closed-form marginals, samplers and likelihoods driven by exact Gaussian scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from translate_helpers import tiny_unet

from alchemy_obs.translate.likelihood import bits_per_dim, log_likelihood, map_log_likelihood
from alchemy_obs.translate.methods import ScoreSDE
from alchemy_obs.translate.methods.sde import VESDE, VPSDE, sample_ode, sample_pc
from alchemy_obs.translate.normalise import DomainScaling


def _sde_method(**settings) -> ScoreSDE:
    """A score SDE on a one-channel condition and target, from plain keywords."""
    return ScoreSDE(tiny_unet(2, 1), in_channels=1, out_channels=1, **settings)


class Gaussian:
    """``x_0 ~ N(mu, U diag(lam) U^T)`` and its exact marginals and scores under an SDE."""

    def __init__(self, sde, mu: torch.Tensor, lam: torch.Tensor, u: torch.Tensor | None = None):
        self.sde, self.mu, self.lam = sde, mu.double(), lam.double()
        self.u = u.double() if u is not None else None

    def _var_t(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.sde.marginal(t.double())
        return m, m[:, None] ** 2 * self.lam + s[:, None] ** 2  # eigenvalues of Sigma_t

    def _rot(self, x):  # to the eigenbasis
        return x if self.u is None else x @ self.u

    def _unrot(self, y):
        return y if self.u is None else y @ self.u.T

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, var = self._var_t(t)
        d = self._rot(x.double() - m[:, None] * self.mu)
        return self._unrot(-d / var).to(x.dtype)

    def logp(self, x: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, dtype=torch.float64)
        m, var = self._var_t(tt)
        d = self._rot(x.double() - m[:, None] * self.mu)
        return -0.5 * (d**2 / var + torch.log(2 * math.pi * var)).sum(1)

    def sample(self, n: int, t: float, gen: torch.Generator) -> torch.Tensor:
        tt = torch.full((n,), t, dtype=torch.float64)
        m, var = self._var_t(tt)
        z = torch.randn(n, self.mu.numel(), generator=gen, dtype=torch.float64)
        return m[:, None] * self.mu + self._unrot(z * var.sqrt())


@pytest.mark.parametrize("sde", [VPSDE(0.1, 20.0), VESDE(0.01, 50.0)], ids=["vp", "ve"])
def test_forward_sde_simulation_matches_closed_form_marginals(sde):
    """Euler-Maruyama on the forward SDE from a point mass reproduces m(t) x0 and s(t)^2."""
    gen = torch.Generator().manual_seed(0)
    n, steps, x0 = 40_000, 500, 1.5
    x = torch.full((n,), x0, dtype=torch.float64)
    if isinstance(sde, VESDE):  # Song's VE marginal includes the sigma_min perturbation
        x = x + sde.sigma_min * torch.randn(n, generator=gen, dtype=torch.float64)
    checkpoints = {125: None, 250: None, 500: None}
    dt = 1.0 / steps
    for i in range(steps):
        t = torch.full((n,), (i + 0.5) * dt, dtype=torch.float64)  # midpoint in time
        f, g = sde.drift_diffusion(x, t)
        x = x + f * dt + g * math.sqrt(dt) * torch.randn(n, generator=gen, dtype=torch.float64)
        if i + 1 in checkpoints:
            checkpoints[i + 1] = (x.mean().item(), x.var().item())
    for k, (mean, var) in checkpoints.items():
        t = torch.tensor([k * dt], dtype=torch.float64)
        m, s = sde.marginal(t)
        # Closed forms written out independently of the implementation:
        if isinstance(sde, VPSDE):
            log_m = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
            assert m.item() == pytest.approx(math.exp(log_m.item()), rel=1e-12)
            assert s.item() ** 2 == pytest.approx(1 - math.exp(2 * log_m.item()), rel=1e-12)
        else:
            assert s.item() == pytest.approx(0.01 * 5000 ** t.item(), rel=1e-12)
        se = s.item() / math.sqrt(n)
        assert mean == pytest.approx(m.item() * x0, abs=5 * se + 1e-3 * abs(m.item() * x0))
        assert var == pytest.approx(s.item() ** 2, rel=0.025)  # 3.5 standard errors


@pytest.mark.parametrize(("kind", "steps"), [("vp", 200), ("ve", 400)])
def test_pc_sampler_with_exact_score_recovers_gaussian(kind, steps):
    sde = VPSDE(0.1, 20.0) if kind == "vp" else VESDE(0.01, 50.0)
    mu, sig = 2.0, 0.5
    # Image-like dimension: the corrector's step size uses ||z|| / ||score|| per sample,
    # which only concentrates in many dimensions. Its Langevin step inflates the variance
    # by about snr^2 (1% at snr = 0.1).
    dims = 1024
    target = Gaussian(sde, torch.full((dims,), mu), torch.full((dims,), sig**2))
    gen = torch.Generator().manual_seed(1)
    n = 100
    x = sde.prior_std() * torch.randn(n, dims, generator=gen, dtype=torch.float64)
    out = sample_pc(sde, target.score, x, steps=steps, t_min=1e-3, corrector_steps=1,
                    snr=0.1, generator=gen)
    m, s = sde.marginal(torch.tensor([1e-3], dtype=torch.float64))
    mean_true = m.item() * mu
    var_true = m.item() ** 2 * sig**2 + s.item() ** 2
    mean, var = out.mean().item(), out.var().item()
    print(f"{kind} PC: mean {mean:.4f} (true {mean_true:.4f}), var {var:.4f} (true {var_true:.4f})")
    assert mean == pytest.approx(mean_true, rel=0.02)
    assert var == pytest.approx(var_true, rel=0.02)


def test_ode_sampler_with_exact_score_recovers_gaussian():
    sde = VPSDE(0.1, 20.0)
    target = Gaussian(sde, torch.full((8,), -1.0), torch.full((8,), 0.3**2))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20_000, 8, generator=gen, dtype=torch.float64)
    out = sample_ode(sde, target.score, x, steps=200, t_min=1e-3)
    m, s = sde.marginal(torch.tensor([1e-3], dtype=torch.float64))
    assert out.mean().item() == pytest.approx(-m.item(), rel=0.02)
    assert out.var().item() == pytest.approx(m.item() ** 2 * 0.09 + s.item() ** 2, rel=0.02)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_probability_flow_likelihood_of_gaussian_matches_analytic(kind):
    """Diagonal covariance: the Rademacher Hutchinson estimate is exact, so only the ODE errs."""
    sde = VPSDE(0.1, 20.0) if kind == "vp" else VESDE(0.01, 50.0)
    gen = torch.Generator().manual_seed(3)
    dims = 32
    lam = torch.linspace(0.2, 2.0, dims) ** 2
    target = Gaussian(sde, torch.linspace(-1, 1, dims), lam)
    x = target.sample(6, 1e-5, gen)
    res = log_likelihood(sde, target.score, x, t_min=1e-5, probe="rademacher", generator=gen)
    exact = target.logp(x, 1e-5)
    print(f"{kind} logp {res.logp.numpy().round(3)} exact {exact.numpy().round(3)} nfe {res.nfe}")
    np.testing.assert_allclose(res.logp.numpy(), exact.numpy(), rtol=0.01)


def test_hutchinson_on_correlated_gaussian_is_unbiased():
    """Correlated covariance: per-probe estimates scatter, their mean matches within 1%."""
    sde = VPSDE(0.1, 20.0)
    gen = torch.Generator().manual_seed(4)
    dims = 24
    q, _ = torch.linalg.qr(torch.randn(dims, dims, generator=gen, dtype=torch.float64))
    lam = torch.logspace(-1, 0.5, dims, dtype=torch.float64)
    target = Gaussian(sde, torch.zeros(dims), lam, q)
    x1 = target.sample(1, 1e-5, gen)
    exact = target.logp(x1, 1e-5).item()
    x = x1.repeat(2048, 1)  # one image, 2048 independent probes
    for probe in ("rademacher", "gaussian"):
        res = log_likelihood(sde, target.score, x, t_min=1e-5, probe=probe, generator=gen)
        est = res.logp
        print(f"{probe}: mean {est.mean():.3f} +- {est.std() / 2048**0.5:.3f}, exact {exact:.3f}")
        assert est.std() > 1e-3  # the probe matters off the diagonal
        assert est.mean().item() == pytest.approx(exact, rel=0.01)


def test_bits_per_dim_and_physical_jacobian():
    assert bits_per_dim(torch.tensor([-math.log(2) * 100]), 100).item() == pytest.approx(1.0)
    sc = DomainScaling("dm", log=True, floor=1e5, median=7.0, iqr=0.5)
    x = torch.tensor([[1e6, 1e8], [1e3, 3e7]], dtype=torch.float64)
    # Numerical derivative of z = (log10 x - median) / iqr, in float64.
    xn = x.numpy()
    h = 1e-6 * xn
    num = ((np.log10(xn + h) - np.log10(xn - h)) / 0.5) / (2 * h)
    jac = sc.log_abs_det_jacobian(x)
    above = xn > sc.floor
    np.testing.assert_allclose(jac.numpy()[above], np.log(num[above]), rtol=1e-6)
    assert jac[1, 0].item() == pytest.approx(-math.log(1e5 * math.log(10) * 0.5))  # at floor
    assert jac[0, 0].item() == pytest.approx(-math.log(1e6 * math.log(10) * 0.5))
    lin = DomainScaling("t", log=False, floor=1.0, median=0.0, iqr=4.0)
    assert lin.log_abs_det_jacobian(x).unique().item() == pytest.approx(-math.log(4.0))


def test_score_sde_method_loss_sample_and_likelihood():
    torch.manual_seed(0)
    method = _sde_method(sample_steps=3, corrector_steps=1)
    batch = {"input": torch.randn(2, 1, 8, 8), "target": torch.randn(2, 1, 8, 8)}
    loss = method.loss(batch)
    loss.backward()
    assert loss.item() > 0 and all(
        p.grad is not None for p in method.nets["net"].parameters() if p.requires_grad)
    method.eval()
    cond = torch.randn(2, 1, 8, 8)
    for sampler in ("pc", "em", "ode"):
        a = method.sample(cond, generator=torch.Generator().manual_seed(5), sampler=sampler)
        b = method.sample(cond, generator=torch.Generator().manual_seed(5), sampler=sampler)
        assert a.shape == (2, 1, 8, 8) and torch.isfinite(a).all() and torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown SDE sampler"):
        method.sample(cond, sampler="heun")
    sc = DomainScaling("dm", log=True, floor=1e5, median=7.0, iqr=0.5)
    phys = 10 ** (7.0 + 0.5 * torch.randn(2, 1, 8, 8, dtype=torch.float64))
    method.settings.rtol = method.settings.atol = 1e-3
    out = map_log_likelihood(method, cond, phys, scaling=sc)
    jac = sc.log_abs_det_jacobian(phys).flatten(1).sum(1)
    assert torch.allclose(out["logp_physical"], out["logp"] + jac)
    assert torch.allclose(out["nats_per_pixel_physical"], -(out["logp"] + jac) / 64)
    assert torch.isfinite(out["bits_per_dim"]).all()


def test_snr_weighted_loss_is_the_larger_of_noise_and_clean_map_errors():
    """With weight max(s^2/m^2, 1) each map's loss is max(noise error, clean-map error)."""
    torch.manual_seed(0)
    method = _sde_method(prediction="noise", snr_weight_cap=1e12)
    x0, cond = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    torch.manual_seed(1)
    loss = method.loss({"input": cond, "target": x0})
    torch.manual_seed(1)  # the same draws of t and z as inside loss()
    t = method.settings.t_min + (1 - method.settings.t_min) * torch.rand(6)
    z = torch.randn_like(x0)
    m, s = method.sde.marginal(t)
    m, s = m.view(-1, 1, 1, 1), s.view(-1, 1, 1, 1)
    xt = m * x0 + s * z
    with torch.no_grad():
        eps = method.predict_noise(xt, cond, t)
    noise_err = ((eps - z) ** 2).flatten(1).mean(1)
    clean_err = (((xt - s * eps) / m - x0) ** 2).flatten(1).mean(1)
    assert loss.item() == pytest.approx(torch.maximum(noise_err, clean_err).mean().item(), rel=1e-4)


class _Recorder(torch.nn.Module):
    """A fixed random 'network' that records what it is given."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, inp, t):
        self.seen.append(inp)
        return torch.sin(3.0 * inp[:, :1]) + inp[:, 1:2] * t.view(-1, 1, 1, 1)


def _edm_setup(kind: str, sigma_data: float):
    method = _sde_method(sde=kind, sigma_data=sigma_data)
    method.nets["net"] = _Recorder()
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(5, 1, 8, 8, generator=gen, dtype=torch.float64)
    cond = torch.randn(5, 1, 8, 8, generator=gen, dtype=torch.float64)
    t = torch.tensor([1e-3, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    m, s = method.sde.marginal(t)
    xt = m.view(-1, 1, 1, 1) * x0 + s.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=gen,
                                                                       dtype=torch.float64)
    return method, x0, cond, t, xt


@pytest.mark.parametrize(("kind", "sigma_data"), [("vp", 0.7), ("ve", 0.7), ("ve", 1.0)])
def test_edm_preconditioning_matches_karras_formulas(kind, sigma_data):
    """x0 = c_skip x + c_out F(c_in x) on the rescaled x = x_t / m with sigma = s / m (Karras
    et al. 2022, table 1); the score is Tweedie's (m x0 - x_t) / s^2."""
    method, _, cond, t, xt = _edm_setup(kind, sigma_data)
    x0_hat, z_hat = method.predict(xt, cond, t)
    m, s = (v.view(-1, 1, 1, 1) for v in method.sde.marginal(t))
    sigma, sd = s / m, sigma_data
    x = xt / m
    c_in = 1 / torch.sqrt(sigma**2 + sd**2)
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
    torch.testing.assert_close(method.nets["net"].seen[0][:, :1], c_in * x)
    f = method.nets["net"](torch.cat([c_in * x, cond], 1), t)
    torch.testing.assert_close(x0_hat, c_skip * x + c_out * f)
    torch.testing.assert_close(method.score_fn(cond)(xt, t), (m * x0_hat - xt) / s**2)
    torch.testing.assert_close(z_hat, (xt - m * x0_hat) / s)


def test_edm_on_vp_with_unit_sigma_data_is_v_prediction():
    """For m^2 + s^2 = 1 and sigma_data = 1 the network sees x_t itself and x0 = m x_t + s F."""
    method, _, cond, t, xt = _edm_setup("vp", 1.0)
    x0_hat, _ = method.predict(xt, cond, t)
    torch.testing.assert_close(method.nets["net"].seen[0][:, :1], xt)
    m, s = (v.view(-1, 1, 1, 1) for v in method.sde.marginal(t))
    torch.testing.assert_close(x0_hat, m * xt + s * method.nets["net"](torch.cat([xt, cond], 1), t))


def test_edm_loss_is_the_error_of_the_network_output():
    """Weight 1 / c_out^2: the loss is |F - (x0 - c_skip x) / c_out|^2, of unit scale."""
    torch.manual_seed(0)
    method = _sde_method(sigma_data=0.7)
    x0, cond = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    torch.manual_seed(1)
    loss = method.loss({"input": cond, "target": x0})
    torch.manual_seed(1)
    t = method.settings.t_min + (1 - method.settings.t_min) * torch.rand(6)
    z = torch.randn_like(x0)
    m, s = (v.view(-1, 1, 1, 1) for v in method.sde.marginal(t))
    sigma, sd = s / m, 0.7
    x = (m * x0 + s * z) / m
    with torch.no_grad():
        f = method.nets["net"](torch.cat([x / torch.sqrt(sigma**2 + sd**2), cond], 1), t)
    target = (x0 - sd**2 / (sigma**2 + sd**2) * x) / (sigma * sd / torch.sqrt(sigma**2 + sd**2))
    assert loss.item() == pytest.approx(((f - target) ** 2).mean().item(), rel=1e-4)


def test_snr_weighting_needs_noise_prediction():
    with pytest.raises(ValueError, match="prediction = 'noise'"):
        _sde_method(snr_weight_cap=10.0)
