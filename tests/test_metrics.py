"""Metrics on images with known answers: Gaussian blobs, shifted, rotated and scaled copies."""

from __future__ import annotations

import math

import pytest
import torch

from alchemy_obs.translate import metrics


def blob(n=64, cy=None, cx=None, sigma=4.0, flux=1.0):
    c = (n - 1) / 2
    cy = c if cy is None else cy
    cx = c if cx is None else cx
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                          indexing="ij")
    g = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    return (flux * g / g.sum())[None]


def test_mse_psnr_known_values():
    t = blob()
    p = t + 0.01
    assert metrics.mse(p, t).item() == pytest.approx(1e-4)
    r = (t.max() - t.min()).item()
    assert metrics.psnr(p, t).item() == pytest.approx(10 * math.log10(r**2 / 1e-4))
    assert metrics.psnr(p, t, data_range=1.0).item() == pytest.approx(40.0)


def test_ssim_known_values():
    t = blob()[None]  # (1, 1, H, W) accepted too
    assert metrics.ssim(t, t).item() == pytest.approx(1.0)
    # Constant maps a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (the structure term is 1).
    a, b, rng = 0.3, 0.5, 1.0
    pa, pb = torch.full((1, 32, 32), a), torch.full((1, 32, 32), b)
    c1 = (0.01 * rng) ** 2
    assert metrics.ssim(pa, pb, data_range=rng).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    noisy = t + 0.2 * t.max() * torch.randn_like(t)
    assert metrics.ssim(noisy, t).item() < 0.9


def test_radial_profile_of_gaussian_and_rotated_copy():
    t = blob(sigma=6.0, flux=1.0)
    r, prof = metrics.radial_profile(t)
    peak = t.max().item()
    # Annulus means of a Gaussian follow exp(-r^2 / 2 sigma^2) at the mean radius of the annulus.
    inner = slice(2, 16)
    expected = peak * torch.exp(-(r[inner] ** 2) / (2 * 36.0))
    torch.testing.assert_close(prof[0, inner], expected, rtol=0.05, atol=0)
    rot = torch.rot90(t, 1, dims=(-2, -1))
    res = metrics.profile_residuals(rot, t)
    assert res["mean_abs"].item() < 1e-10
    res2 = metrics.profile_residuals(2 * t, t)
    torch.testing.assert_close(res2["median"], torch.full_like(res2["median"], math.log10(2)))
    shifted = blob(sigma=6.0, cy=31.5 + 5)
    assert metrics.profile_residuals(shifted, t)["mean_abs"].item() > 0.1


def test_profile_band_over_batch():
    t = torch.cat([blob(), blob(), blob()])
    p = torch.cat([t[:1] * 1.0, t[1:2] * 10.0, t[2:] * 100.0])
    res = metrics.profile_residuals(p, t)
    torch.testing.assert_close(res["median"], torch.ones_like(res["median"]))
    assert (res["p16"] < res["median"]).all() and (res["p84"] > res["median"]).all()


def test_total_mass_ratio_and_centre_offset():
    t = blob(flux=3.0)
    assert metrics.total_mass_ratio(2.5 * t, t).item() == pytest.approx(2.5)
    shifted = blob(cy=31.5 + 3, cx=31.5 + 4, flux=3.0)
    assert metrics.total_mass_ratio(shifted, t).item() == pytest.approx(1.0, rel=1e-9)
    assert metrics.centre_offset(shifted, t).item() == pytest.approx(5.0, abs=1e-6)
    assert metrics.centre_offset(torch.rot90(t, 1, dims=(-2, -1)), t).item() == pytest.approx(0, abs=1e-9)


def test_power_spectrum_ratios():
    torch.manual_seed(0)
    t = blob(sigma=2.0) + 0.01 * torch.rand(1, 64, 64, dtype=torch.float64)
    k, ratio = metrics.power_ratio(3 * t, t)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 9.0))
    # Periodic shifts and 90-degree rotations leave |FFT|^2 in each |k| ring unchanged.
    _, r_shift = metrics.power_ratio(torch.roll(t, (5, -7), dims=(-2, -1)), t)
    torch.testing.assert_close(r_shift, torch.ones_like(r_shift))
    _, r_rot = metrics.power_ratio(torch.rot90(t, 1, dims=(-2, -1)), t)
    torch.testing.assert_close(r_rot, torch.ones_like(r_rot))
    assert k[0].item() == pytest.approx(1 / 64) and k[-1].item() == pytest.approx(0.5)
    # White noise has a flat spectrum at the variance level.
    noise = torch.randn(16, 64, 64, dtype=torch.float64)
    _, p = metrics.power_spectrum(noise)
    assert p.mean(0)[4:].mean().item() == pytest.approx(1.0, rel=0.05)


def test_asymmetry_known_answers():
    centred = blob(sigma=5.0, flux=1.0)
    assert metrics.asymmetry(centred).item() == pytest.approx(0.0, abs=1e-12)
    # A blob centred 1.5 pixels off the map centre is symmetric about its own centre, which
    # the half-pixel centre search finds.
    off = blob(sigma=5.0, cy=31.5 + 1.5, cx=31.5 - 1.0)
    assert metrics.asymmetry(off).item() == pytest.approx(0.0, abs=1e-8)  # tails leave the map
    # An extra compact source of flux f far from the centre: sum|I - I180| = 2 f.
    f = 0.1
    lump = blob(sigma=1.0, cy=50.0, cx=45.0, flux=f)
    a = metrics.asymmetry(centred + lump).item()
    assert a == pytest.approx(2 * f / (1 + f), rel=1e-6)


def test_clumpiness_known_answers():
    flat = torch.ones(1, 32, 32, dtype=torch.float64)
    assert metrics.clumpiness(flat).item() == pytest.approx(0.0, abs=1e-12)
    point = torch.zeros(1, 32, 32, dtype=torch.float64)
    point[0, 16, 16] = 5.0
    for box in (3, 5):
        assert metrics.clumpiness(point, box=box).item() == pytest.approx(1 - 1 / box**2)
    # A smooth Gaussian: the boxcar adds (k^2 - 1)/12 to the variance per axis, so
    # I - B_k(I) ~ -(k^2 - 1)/24 lap(I), whose positive part sums to (k^2 - 1)/(12 e sigma^2).
    sigma, k = 8.0, 5
    expected = (k**2 - 1) / (12 * math.e * sigma**2)
    assert metrics.clumpiness(blob(sigma=sigma), box=k).item() == pytest.approx(expected, rel=0.03)
    with pytest.raises(ValueError):
        metrics.clumpiness(point, box=4)


def test_summarise_identical_maps():
    t = torch.cat([blob(), blob(sigma=3.0, cy=33.0)])
    s = metrics.summarise(t, t)
    assert s["mse"] == 0 and s["ssim"] == pytest.approx(1.0)
    assert s["profile_abs_dex"] == 0 and s["mass_abs_dex"] == 0 and s["centre_offset_px"] == 0
    assert s["asymmetry_diff"] == 0 and s["clumpiness_diff"] == 0 and s["power_abs_dex"] == 0
