"""Imaging and CLEAN against analytic expectations; fast image-plane mode vs the visibility path."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from radio_beam import Beam

from alchemy_obs.config import TelescopeConfig
from alchemy_obs.observe.fast import ImagePlaneSimulator
from alchemy_obs.observe.imaging import (
    Imager,
    dirty_image,
    fit_beam,
    gaussian_kernel,
    hogbom,
    jvm_epsilon,
    predicted_rms,
    psf_image,
    restore,
)
from alchemy_obs.observe.interferometer import BuiltinSimulator, GridGeometry
from alchemy_obs.skyimage import SkyImage
from alchemy_obs.observe.telescope import Observation, Telescope

from _observe_helpers import asymmetric_source, sky_wcs

N = 128
CELL = 2.0  # arcsec


@pytest.fixture(scope="module")
def obs():
    tel = Telescope.from_config(TelescopeConfig(array="AA*", max_baseline_km=4))
    wcs = sky_wcs(N, CELL)
    return Observation.from_hour_angles(tel, SkyImage(np.zeros((N, N)) * u.Jy, wcs).phase_centre,
                                        (-2, 2) * u.hourangle, dump_time=1200 * u.s,
                                        freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)


def _apparent(obs, imager, vis, offsets, f):
    """Weighted mean primary beam of the baseline types (what the dirty image sees)."""
    w = imager.weights(vis)[:, 0]
    total = 0.0
    for pair, rows in obs.baseline_groups().items():
        total += w[rows].sum() * obs.baseline_beam(offsets, f, pair)
    return total / w.sum()


def test_point_source_right_pixel_and_peak():
    # A coarse grid (15") and the compact core, so that the source sits 11' out, where the
    # primary beams (FWHM ~ 1 deg at 1.4 GHz) attenuate it by ~10 %.
    cell = 15.0
    tel = Telescope.from_config(TelescopeConfig(array="AA*", max_baseline_km=0.7))
    wcs = sky_wcs(N, cell)
    img = np.zeros((N, N))
    y, x = 95, 20  # 11' east and 7.75' north of the phase centre
    img[y, x] = 0.5
    sky = SkyImage(img * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-2, 2) * u.hourangle, dump_time=1200 * u.s,
                                       freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)
    vis = BuiltinSimulator(seed=2).observe(sky, obs)
    imager = Imager(wcs, (N, N), weighting="briggs", robust=0.0, niter=300)
    res = imager.image(vis)
    restored = res.image.to_value(u.Jy / u.beam)[0]
    assert np.unravel_index(np.argmax(restored), restored.shape) == (y, x)
    offset = np.hypot(x - N / 2, y - N / 2) * cell * u.arcsec
    expected = 0.5 * _apparent(obs, imager, vis, offset, obs.frequencies[0])
    assert expected < 0.5 * 0.95  # the primary beam matters at this offset
    assert restored[y, x] == pytest.approx(expected, rel=0.01)
    # World coordinates of the image pixel are the sky's.
    c = res.wcs.celestial.pixel_to_world(x, y)
    assert c.separation(wcs.pixel_to_world(x, y)) < 1e-3 * u.arcsec


@pytest.mark.slow
def test_extended_asymmetric_source_clean(obs):
    wcs = sky_wcs(N, CELL)
    img = asymmetric_source(N)
    sky = SkyImage(img * u.Jy, wcs)
    vis = BuiltinSimulator(seed=3).observe(sky, obs)
    imager = Imager(wcs, (N, N), weighting="briggs", robust=0.0)  # automatic mask and threshold
    res = imager.image(vis)
    beam = res.beams[0]
    offs = GridGeometry.from_sky(sky).offsets() * u.rad
    apparent = img * _apparent(obs, imager, vis, offs, obs.frequencies[0])
    truth = restore(apparent, np.zeros_like(apparent), beam, cell=CELL * u.arcsec)
    restored = res.image.to_value(u.Jy / u.beam)[0]
    assert np.corrcoef(restored.ravel(), truth.ravel())[0, 1] >= 0.99
    beam_pix = (beam.sr / (CELL * u.arcsec) ** 2).decompose().value
    aperture = truth > 0.01 * truth.max()
    assert restored[aperture].sum() / beam_pix == pytest.approx(apparent.sum(), rel=0.03)
    # A 180-degree rotated truth does not pass.
    assert np.corrcoef(restored.ravel(), truth[::-1, ::-1].ravel())[0, 1] < 0.9


def test_shallow_clean_keeps_flux_with_jvm(obs):
    """After 5 components the JvM-rescaled image still measures the flux in an aperture."""
    wcs = sky_wcs(N, CELL)
    img = asymmetric_source(N)
    vis = BuiltinSimulator(noise=False).observe(SkyImage(img * u.Jy, wcs), obs)
    imager = Imager(wcs, (N, N), weighting="briggs", robust=0.0, niter=5, major_cycles=1, jvm=True,
                    gain=0.1)
    res = imager.image(vis, noise=False)
    beam = res.beams[0]
    beam_pix = (beam.sr / (CELL * u.arcsec) ** 2).decompose().value
    truth = restore(img, np.zeros_like(img), beam, cell=CELL * u.arcsec)
    aperture = truth > 0.01 * truth.max()
    expected = truth[aperture].sum() / beam_pix
    model, residual = res.model.to_value(u.Jy)[0], res.residual.to_value(u.Jy / u.beam)[0]
    assert model.sum() < 0.5 * img.sum()  # CLEAN really stopped early
    jvm = res.image.to_value(u.Jy / u.beam)[0][aperture].sum() / beam_pix
    plain = restore(model, residual, beam, cell=CELL * u.arcsec, epsilon=1.0)[aperture].sum() / beam_pix
    assert jvm == pytest.approx(expected, rel=0.02)
    assert abs(plain / expected - 1) > 0.04  # without the correction the flux is off


@pytest.mark.parametrize("weighting, robust", [("natural", 0.0), ("uniform", 0.0), ("briggs", 0.5)])
def test_empty_field_noise_matches_radiometer(obs, weighting, robust):
    wcs = sky_wcs(N, CELL)
    vis = BuiltinSimulator(seed=5).observe(SkyImage(np.zeros((N, N)) * u.Jy, wcs), obs)
    imager = Imager(wcs, (N, N), weighting=weighting, robust=robust)
    w = imager.weights(vis)
    dirty = dirty_image(vis, w, imager.geometry)[0]
    predicted = np.sqrt((w[:, 0] ** 2 * vis.sigma[:, 0] ** 2).sum()) / w[:, 0].sum()
    assert predicted == pytest.approx(predicted_rms(vis, w)[0])
    assert dirty.std() == pytest.approx(predicted, rel=0.10)


def _disc_sky(n: int, radius_pix: float) -> np.ndarray:
    """An exponential disc much larger than the beam (Jy/pixel), 1 Jy in all."""
    yy, xx = np.mgrid[:n, :n] - n / 2
    img = np.exp(-np.hypot(xx, yy + 3.0) / radius_pix) * (1 + 0.3 * np.cos(np.arctan2(yy, xx) * 2))
    return img / img.sum()


@pytest.mark.parametrize("weighting", ["natural", "briggs", "uniform"])
def test_default_clean_keeps_the_flux_of_extended_emission(obs, weighting):
    """Done-when (issue 12): a noiseless source 15 beams across keeps its flux in the
    restored image at default settings. Integrated here from the image and the beam, not by
    the package: sum(image) / beam area in pixels = the primary-beam-weighted sky flux."""
    wcs = sky_wcs(N, CELL)
    img = _disc_sky(N, 6.0)
    sky = SkyImage(img * u.Jy, wcs)
    vis = BuiltinSimulator(noise=False).observe(sky, obs)
    imager = Imager(wcs, (N, N), weighting=weighting)
    res = imager.image(vis, noise=False)
    beam = res.beams[0]
    beam_pix = np.pi * beam.major.to_value(u.arcsec) * beam.minor.to_value(u.arcsec) / (
        4 * np.log(2)) / CELL**2
    apparent = (img * _apparent(obs, imager, vis, GridGeometry.from_sky(sky).offsets() * u.rad,
                                obs.frequencies[0])).sum()
    restored = res.image.to_value(u.Jy / u.beam)[0].sum() / beam_pix
    # The residual left at the floor (3e-4 of the peak) is in Jy per *dirty* beam: divided by
    # the clean beam's area it counts ~3x too much under natural weighting (+1.7 % at a floor
    # of 1e-3), little under Briggs 0 (measured; 1e-4 brings natural to 0.1 %).
    assert restored == pytest.approx(apparent, rel=0.02 if weighting == "natural" else 0.005)
    # The restored image is model * beam + residual: no JvM rescaling by default.
    assert res.jvm_epsilon[0] == 1.0


@pytest.mark.parametrize("weighting, robust", [("natural", 0.0), ("briggs", 0.0), ("uniform", 0.0)])
def test_empty_field_image_rms_is_its_noise_header(obs, weighting, robust, tmp_path):
    """Done-when (issue 12): on an empty field the written restored image's rms is within 5 %
    of its NOISERMS, for natural, Briggs 0 and uniform weighting (built-in imager). With the
    JvM rescaling on, NOISERMS follows the rescaled image."""
    from astropy.io import fits

    from alchemy_obs.observe.fits import write_fits

    n = 256  # ~4000 independent beams: the rms is measured to ~1 %
    wcs = sky_wcs(n, CELL)
    vis = BuiltinSimulator(seed=11).observe(SkyImage(np.zeros((n, n)) * u.Jy, wcs), obs)
    for jvm in (False, True):
        res = Imager(wcs, (n, n), weighting=weighting, robust=robust, jvm=jvm).image(vis)
        path = write_fits(res, tmp_path / f"empty_{weighting}_{jvm}.fits")
        data, header = fits.getdata(path), fits.getheader(path)
        assert data.std() == pytest.approx(header["NOISERMS"], rel=0.05), (weighting, jvm)
    assert header["NOISERMS"] == pytest.approx(res.jvm_epsilon[0] * predicted_rms(
        vis, Imager(wcs, (n, n), weighting=weighting, robust=robust).weights(vis))[0], rel=1e-6)


def test_weighting_ranks_noise(obs):
    wcs = sky_wcs(N, CELL)
    vis = BuiltinSimulator(noise=False).predict(SkyImage(np.zeros((N, N)) * u.Jy, wcs), obs)
    rms = {wt: predicted_rms(vis, Imager(wcs, (N, N), weighting=wt, robust=0.0).weights(vis))[0]
           for wt in ("natural", "briggs", "uniform")}
    assert rms["natural"] < rms["briggs"] < rms["uniform"]
    # Natural weighting: sigma / sqrt(number of visibilities) for equal sigmas.
    ska = Imager(wcs, (N, N), weighting="natural").weights(vis)
    s = vis.sigma[:, 0][ska[:, 0] > 0]
    assert rms["natural"] == pytest.approx(1 / np.sqrt((1 / s**2).sum()), rel=1e-12)


def test_fit_beam_recovers_gaussian():
    truth = Beam(major=9 * u.arcsec, minor=5 * u.arcsec, pa=30 * u.deg)
    psf = gaussian_kernel(truth, 1 * u.arcsec, (128, 128))
    fit = fit_beam(psf, 1 * u.arcsec)
    assert fit.major.to_value(u.arcsec) == pytest.approx(9, rel=1e-3)
    assert fit.minor.to_value(u.arcsec) == pytest.approx(5, rel=1e-3)
    assert fit.pa.to_value(u.deg) == pytest.approx(30, abs=0.1)
    # PA is east of north: a PA = 0 beam is elongated along the rows (north), PA = 90 along -x.
    ns = gaussian_kernel(Beam(9 * u.arcsec, 3 * u.arcsec, 0 * u.deg), 1 * u.arcsec, (64, 64))
    assert ns[32 + 4, 32] > ns[32, 32 + 4]
    assert jvm_epsilon(psf, fit, 1 * u.arcsec) == pytest.approx(1.0, rel=1e-3)


def test_hogbom_recovers_point_fluxes():
    beam = Beam(6 * u.arcsec, 4 * u.arcsec, 20 * u.deg)
    psf = gaussian_kernel(beam, 1 * u.arcsec, (128, 128))
    sky = np.zeros((64, 64))
    sky[20, 30], sky[40, 12] = 1.0, -0.4
    from alchemy_obs.observe.imaging import PSFConvolver

    dirty = PSFConvolver(psf, (64, 64))(sky)
    model, residual, n = hogbom(dirty, psf, gain=0.2, threshold=1e-4, niter=2000)
    assert np.abs(residual).max() <= 1e-4
    assert model.sum() == pytest.approx(0.6, abs=1e-3)
    assert model[18:23, 28:33].sum() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.slow
def test_fast_mode_matches_visibility_path(obs):
    wcs = sky_wcs(N, CELL)
    img = asymmetric_source(N)
    sky = SkyImage(img * u.Jy, wcs)
    imager = Imager(wcs, (N, N), weighting="briggs", robust=0.0)
    fast = ImagePlaneSimulator(obs, imager, noise=False, seed=1)
    vis = BuiltinSimulator(noise=False).observe(sky, obs)
    full = dirty_image(vis, imager.weights(vis), imager.geometry)[0]
    quick = fast.dirty(sky)[0]
    assert np.corrcoef(full.ravel(), quick.ravel())[0, 1] >= 0.995
    # Noise: same rms (mean of 3 realisations each), and the radiometer prediction.
    empty = SkyImage(np.zeros((N, N)) * u.Jy, wcs)
    fast.noise = True
    rms_fast = np.mean([fast.dirty(empty)[0].std() for _ in range(3)])
    sim = BuiltinSimulator(seed=7)
    rms_full = np.mean([dirty_image(v, imager.weights(v), imager.geometry)[0].std()
                        for v in (sim.observe(empty, obs) for _ in range(3))])
    assert rms_fast == pytest.approx(rms_full, rel=0.05)
    assert rms_fast == pytest.approx(fast.rms[0], rel=0.05)
    # The noise is correlated like the visibility path's: similar lag-1 autocorrelation.
    nf = fast.dirty(empty)[0]
    nv = dirty_image(v := sim.observe(empty, obs), imager.weights(v), imager.geometry)[0]
    lag = [np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] for a in (nf, nv)]
    assert lag[0] == pytest.approx(lag[1], abs=0.05)
    # The fast path's CLEAN result is a full ImageResult with a beam.
    result = fast.observe(sky, obs)
    assert result.beams[0].major > 0 * u.arcsec


def test_image_grid_coarser_than_sky(obs):
    """Baselines the coarser image grid cannot sample are cut; the source keeps position and flux."""
    wcs = sky_wcs(N, CELL)
    img = np.zeros((N, N))
    img[80, 40] = 0.3  # 48" east, 32" north
    vis = BuiltinSimulator(noise=False).observe(SkyImage(img * u.Jy, wcs), obs)
    coarse = sky_wcs(64, 2 * CELL)
    imager = Imager(coarse, (64, 64), weighting="natural", niter=200)
    w = imager.weights(vis)
    assert 0 < (w == 0).sum() < w.size  # some long baselines dropped, most kept
    res = imager.image(vis)
    restored = res.image.to_value(u.Jy / u.beam)[0]
    y, x = np.unravel_index(np.argmax(restored), restored.shape)
    assert (y, x) == (40, 20)  # the same sky position on the 4" grid
    assert restored[y, x] == pytest.approx(0.3, rel=0.01)


def test_natural_noise_is_the_textbook_array_sensitivity():
    """Homogeneous array, natural weighting: sigma = SEFD / sqrt(n_pol N (N-1) dnu t_total)."""
    tel = Telescope.ska_mid("AA1")  # 8 SKA dishes
    wcs = sky_wcs(N, 4.0)
    sky = SkyImage(np.zeros((N, N)) * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-1, 1) * u.hourangle, dump_time=60 * u.s,
                                       freq_start=1.4 * u.GHz, channel_width=200 * u.kHz, n_channels=1)
    vis = BuiltinSimulator(seed=11).observe(sky, obs)  # 28 baselines x 119 dumps
    assert not vis.flag.any()
    sefd = tel.dish_types["ska"].sefd("2", 1.4 * u.GHz).to_value(u.Jy)
    t_total = obs.n_times * 60.0
    textbook = sefd / np.sqrt(2 * 8 * 7 * 200e3 * t_total)
    imager = Imager(wcs, (N, N), weighting="natural")
    w = imager.weights(vis)
    assert predicted_rms(vis, w)[0] == pytest.approx(textbook, rel=1e-9)
    assert dirty_image(vis, w, imager.geometry)[0].std() == pytest.approx(textbook, rel=0.10)


def test_beam_position_angle_from_a_linear_array():
    """Dishes on a north-east line, snapshot at the zenith: uv along NE, so the synthesised
    beam is long along NW-SE, BPA = -45 deg (east of north)."""
    from astropy.coordinates import EarthLocation

    from alchemy_obs.observe.telescope import DishType

    d = np.array([0, 37, 110, 230, 480, 900, 1500.0])
    enu = np.vstack([np.stack([d, d, 0 * d], 1), [[-60, 60, 0], [60, -60, 0], [-150, 150, 0]]])
    n = len(enu)
    loc = EarthLocation.from_geodetic(21.443803 * u.deg, -30.712925 * u.deg, 1053 * u.m)
    tel = Telescope("line", np.array([f"A{i}" for i in range(n)]), np.array(["ska"] * n), enu, loc,
                    {"ska": DishType("ska", 15 * u.m, {"2": 20 * u.K})})
    wcs = sky_wcs(N, CELL, dec=-30.712925)
    sky = SkyImage(np.zeros((N, N)) * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-0.05, 0.05) * u.hourangle,
                                       dump_time=300 * u.s,
                                       freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)
    vis = BuiltinSimulator(noise=False).predict(sky, obs)
    imager = Imager(wcs, (N, N), weighting="natural")
    psf = psf_image(vis, imager.weights(vis), imager.geometry)[0]
    beam = fit_beam(psf, CELL * u.arcsec)
    assert beam.major > 5 * beam.minor
    assert beam.pa.to_value(u.deg) == pytest.approx(-45, abs=3)
    # Directly on the PSF: north-west of the peak (x decreases to the east) stays bright.
    c = N  # PSF peak at (N, N) on the doubled grid
    assert psf[c + 10, c + 10] > 0.8 > 0.3 > psf[c + 10, c - 10]
