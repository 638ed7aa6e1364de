"""Posterior sampling: summaries and interval coverage against known answers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm as normal

from alchemy_obs.translate.methods.base import Method, randn
from alchemy_obs.translate.methods.sde import VPSDE, sample_pc
from alchemy_obs.translate.normalise import DomainScaling
from alchemy_obs.translate.posterior import (
    calibration,
    draw_samples,
    interval_coverage,
    rank_coverage,
    sample_posterior,
)


class GaussianPosterior(Method):
    """A translator whose posterior is known: ``target | c ~ N(c, sigma^2)`` per pixel.

    Sampling runs the real predictor-corrector sampler with the exact score of that
    Gaussian, so the test exercises the sampling path, not a shortcut.
    """

    name = "gaussian"

    def __init__(self, sigma: float) -> None:
        super().__init__({"net": torch.nn.Linear(1, 1)}, in_channels=1, out_channels=1)
        self.sigma = sigma
        self.sde = VPSDE()

    @classmethod
    def from_config(cls, *args):  # pragma: no cover - not built from configs
        raise NotImplementedError

    def loss(self, batch):  # pragma: no cover - never trained
        raise NotImplementedError

    def sample(self, condition, steps=None, generator=None, callback=None):
        def score(x, t):
            m, s = self.sde.marginal(t)
            m, s = m.view(-1, 1, 1, 1), s.view(-1, 1, 1, 1)
            return -(x - m * condition) / (m**2 * self.sigma**2 + s**2)

        x = randn(tuple(condition.shape), generator, condition.device)
        return sample_pc(self.sde, score, x, steps=steps or 100, t_min=1e-4, corrector_steps=1,
                         snr=0.1, generator=generator)


def test_interval_coverage_of_exact_quantiles():
    # Samples 0..99 and truths on a grid: central 68% interval [q16, q84] = [15.84, 83.16].
    samples = torch.arange(100.0).view(100, 1, 1, 1, 1).expand(100, 1, 1, 1, 200)
    truth = torch.linspace(-0.25, 99.25, 200).view(1, 1, 1, 200)
    cov = interval_coverage(samples, truth, (0.68, 0.95))
    inside68 = ((truth >= 15.84) & (truth <= 83.16)).double().mean().item()
    inside95 = ((truth >= 2.475) & (truth <= 96.525)).double().mean().item()
    assert cov[0.68] == pytest.approx(inside68, abs=1e-12)
    assert cov[0.95] == pytest.approx(inside95, abs=1e-12)
    with pytest.raises(ValueError, match="interval level"):
        interval_coverage(samples, truth, (1.2,))


def test_posterior_maps_and_calibration_of_a_known_posterior():
    sigma = 0.3
    method = GaussianPosterior(sigma)
    gen = torch.Generator().manual_seed(0)
    cond = torch.randn(4, 1, 8, 8, generator=gen)
    sc = DomainScaling("dm", log=True, floor=1e-3, median=6.0, iqr=0.5)
    summary = sample_posterior(method, cond, n_samples=400, percentiles=(16, 50, 84),
                               scaling=sc, steps=200, generator=gen, batch_size=400,
                               keep_samples=True)
    # Normalised posterior N(c, sigma^2) -> physical 10^(6 + 0.5 z): log-normal with
    # ln-scale sigma_ln = 0.5 ln(10) sigma; its mean and percentiles are analytic.
    mu_ln = (6.0 + 0.5 * cond.double()) * math.log(10)
    s_ln = 0.5 * math.log(10) * sigma
    median = torch.exp(mu_ln)
    mean = torch.exp(mu_ln + s_ln**2 / 2)
    std = mean * math.sqrt(math.exp(s_ln**2) - 1)
    n = 400
    assert torch.allclose(summary.percentiles[50.0], median, rtol=4 * 1.25 * s_ln / math.sqrt(n) + 0.01)
    assert (summary.mean / mean).mean().item() == pytest.approx(1.0, abs=0.01)
    assert (summary.std / std).mean().item() == pytest.approx(1.0, abs=0.03)
    p84 = torch.exp(mu_ln + normal.ppf(0.84) * s_ln)
    assert (summary.percentiles[84.0] / p84).mean().item() == pytest.approx(1.0, abs=0.01)
    assert summary.samples.shape == (400, 4, 1, 8, 8)
    # Held-out truths drawn from the same posterior are covered at the nominal rates.
    truth = cond + sigma * torch.randn(cond.shape, generator=gen)
    cov = interval_coverage(summary.samples, truth)
    print(f"known posterior: coverage 68% -> {cov[0.68]:.3f}, 95% -> {cov[0.95]:.3f}")
    assert cov[0.68] == pytest.approx(0.68, abs=0.06)  # 256 pixels: binomial sd 0.03
    assert cov[0.95] == pytest.approx(0.95, abs=0.04)
    # A posterior that is too narrow is flagged as over-confident.
    narrow = GaussianPosterior(sigma / 3)
    cov_n = calibration(narrow, cond, truth, n_samples=100, steps=60, generator=gen, batch_size=400)
    assert cov_n[0.68] < 0.45 and cov_n[0.95] < 0.7


def test_rank_coverage_is_unbiased_for_few_samples():
    """With 16 samples from the true posterior, quantile intervals under-cover; ranks do not."""
    gen = torch.Generator().manual_seed(1)
    n = 16
    samples = torch.randn(n, 1, 1, 200, 500, generator=gen, dtype=torch.float64)
    truth = torch.randn(1, 1, 200, 500, generator=gen, dtype=torch.float64)
    ranked = rank_coverage(samples, truth)
    quantile = interval_coverage(samples, truth)
    # 1e5 pixels: binomial sd below 0.0015.
    assert ranked[0.68] == pytest.approx(0.68, abs=0.006)
    assert ranked[0.95] == pytest.approx(0.95, abs=0.004)
    assert quantile[0.95] < 0.87 and quantile[0.68] < 0.62
    # Each rank cell 0..n holds one truth: the coverage is exactly the level.
    grid = torch.arange(float(n)).view(n, 1, 1, 1, 1).expand(n, 1, 1, 1, n + 1)
    cells = (torch.arange(float(n + 1)) - 0.5).view(1, 1, 1, n + 1)
    assert rank_coverage(grid, cells, (0.5,))[0.5] == pytest.approx(0.5, abs=1e-12)
    # A zero-width posterior that misses the truth covers nothing; one that hits it, q.
    same = torch.zeros(n, 1, 1, 1, 2, dtype=torch.float64)
    assert rank_coverage(same, torch.tensor([[[[1.0, 2.0]]]]))[0.68] == 0.0
    assert rank_coverage(same, torch.zeros(1, 1, 1, 2))[0.68] == pytest.approx(0.68)
    with pytest.raises(ValueError, match="interval level"):
        rank_coverage(samples, truth, (0.0,))


def test_draw_samples_shape_and_validation():
    method = GaussianPosterior(0.1)
    cond = torch.zeros(3, 1, 4, 4)
    s = draw_samples(method, cond, 5, steps=5, batch_size=4)
    assert s.shape == (5, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="at least one"):
        draw_samples(method, cond, 0)
