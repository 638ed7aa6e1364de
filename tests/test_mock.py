"""Mock observations end to end: sky model -> SKA-MID -> images, FITS, dataset domains."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.convolution import convolve_fft

from alchemy_obs.config import MapsConfig, MockConfig, load_config
from alchemy_obs.observe.mock import ContinuumMock, HIMock, make_mock, map_wcs
from alchemy_obs.observe.resample import reproject_map
from alchemy_obs.observe.sky import (
    ContinuumModel,
    ContinuumSource,
    HISource,
    SkyGrid,
    SkyPlacement,
    SpectralAxis,
)
from alchemy_obs.physics import radio

# A short AA* track without noise and a deep CLEAN: fast, and the images are then a pure
# function of the sky and the restoring beam.
NOISELESS = [
    "observe.noise=false", "observe.mode=fast", "observe.hour_angle_start_h=-0.5",
    "observe.hour_angle_end_h=0.5", "observe.dump_s=600", "observe.imaging.threshold_sigma=0.01",
    "observe.imaging.niter=20000", "observe.imaging.major_cycles=10",
]


def _disc(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.0, 3.0, (n, 3))
    pos[:, 2] *= 0.15
    pos[:, 0] += 2.0 * (pos[:, 1] > 0)  # asymmetric, so a flipped image would not match
    vel = np.stack([-pos[:, 1] * 25, pos[:, 0] * 25, np.zeros(n)], 1)
    return HISource(pos * u.kpc, vel * u.km / u.s, rng.uniform(1e5, 1e6, n) * u.Msun,
                    rng.uniform(0.3, 1.5, n) * u.kpc, np.full(n, 8000.0) * u.K)


def _beam_convolved(image_per_pixel: np.ndarray, beam, pixel: u.Quantity) -> np.ndarray:
    """Jy/pixel (or anything per pixel) -> per beam, convolved with the restoring beam."""
    kernel = beam.as_kernel(pixel)
    per_beam = (beam.sr / pixel**2).decompose().value
    return convolve_fft(image_per_pixel, kernel, normalize_kernel=False) * per_beam


def _need_gas_physics():
    # HI masses, temperatures and smoothing lengths of TNG gas come from the maps stage.
    pytest.importorskip("alchemy_obs.physics.gas", reason="alchemy_obs.physics.gas not built yet")
    pytest.importorskip("alchemy_obs.maps.smoothing", reason="alchemy_obs.maps.smoothing not built yet")


@pytest.fixture(scope="module")
def hi_mock():
    cfg = load_config(None, NOISELESS)
    place = SkyPlacement(distance=20 * u.Mpc)
    grid = SkyGrid(64, 0.5 * u.kpc)
    m = make_mock(_disc(), place, grid, observe=cfg.observe, spectral=SpectralAxis(24, 15 * u.km / u.s))
    assert isinstance(m, HIMock) and not hasattr(m, "continuum")
    return m, grid, place


def test_hi_moment0_matches_sky_convolved_with_beam(hi_mock):
    m, grid, place = hi_mock
    mom0 = m.moment0()
    assert mom0.unit.is_equivalent(u.Jy / u.beam * u.km / u.s)
    width_kms = 15.0 * (1 + place.observed_redshift)  # radio-velocity width -> rest frame
    sky_mom0 = m.sky.data.sum(axis=0).to_value(u.Jy) * width_kms
    ref = _beam_convolved(sky_mom0, m.beam, grid.pixel_angle(place))
    got = mom0.to_value(u.Jy / u.beam * u.km / u.s)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] >= 0.98
    # Flux scale after a deep CLEAN: total within 5%.
    assert got.sum() / ref.sum() == pytest.approx(1.0, abs=0.05)
    # A 180-degree flipped sky must not match as well.
    assert np.corrcoef(ref[::-1, ::-1].ravel(), got.ravel())[0, 1] < 0.98


def test_hi_column_density_consistent_with_moment0(hi_mock):
    m, _, place = hi_mock
    beam = m.beam
    mom0 = m.moment0().to_value(u.Jy / u.beam * u.km / u.s)
    nhi = m.column_density().to_value(u.cm**-2)
    # N = 1.104e21 S[mJy/beam km/s] / (bmaj bmin [arcsec]) at the source (rest-frame dV),
    # times (1+z)^3 for surface-brightness dimming of I_nu dnu expressed per rest km/s.
    z = place.observed_redshift
    ab = beam.major.to_value(u.arcsec) * beam.minor.to_value(u.arcsec)
    expected = 1.104e21 * mom0 * 1e3 / ab * (1 + z) ** 3
    peak = np.argmax(mom0)
    assert nhi.ravel()[peak] == pytest.approx(expected.ravel()[peak], rel=2e-3)


def test_fits_opens_in_spectral_cube_with_beam(hi_mock, tmp_path):
    from spectral_cube import SpectralCube

    from alchemy_obs.observe.fits import write_fits

    m, _, _ = hi_mock
    path = write_fits(m.result, tmp_path / "hi.fits", m.observation, restfreq=radio.HI_REST_FREQUENCY)
    cube = SpectralCube.read(path)
    beam = cube.beam if hasattr(cube, "beam") else cube.beams.largest_beam()
    assert beam.major.to_value(u.arcsec) == pytest.approx(m.beam.major.to_value(u.arcsec), rel=0.01)
    assert cube.unit == u.Jy / u.beam
    assert cube.shape == (24, 64, 64)
    nu = cube.spectral_axis.to_value(u.Hz)
    assert np.allclose(np.sort(nu), np.sort(m.sky.frequencies.to_value(u.Hz)), rtol=1e-10)
    mom0 = cube.with_spectral_unit(u.km / u.s, velocity_convention="radio",
                                   rest_value=radio.HI_REST_FREQUENCY).moment0()
    ours = m.moment0().to_value(u.Jy / u.beam * u.km / u.s) / (1 + m.placement.observed_redshift)
    assert np.nanmax(np.abs(mom0.value)) == pytest.approx(np.max(np.abs(ours)), rel=1e-3)


def test_continuum_mock_flux():
    cfg = load_config(None, NOISELESS)
    rng = np.random.default_rng(1)
    n = 400
    pos = rng.normal(0.0, 2.0, (n, 3))
    src = ContinuumSource(pos * u.kpc, rng.uniform(0, 0.01, n) * u.Msun / u.yr,
                          np.full(n, 0.5) * u.kpc)
    place = SkyPlacement(distance=20 * u.Mpc)
    grid = SkyGrid(64, 0.5 * u.kpc)
    m = make_mock(src, place, grid, observe=cfg.observe,
                  continuum=ContinuumModel(diffusion_length=0.5 * u.kpc))
    # A continuum mock has no moments: it is its own type.
    assert isinstance(m, ContinuumMock) and not hasattr(m, "moment0")
    assert m.result.image.shape == (1, 64, 64)
    img = m.continuum()
    assert img.unit == u.Jy / u.beam
    ref = _beam_convolved(m.sky.data.to_value(u.Jy), m.beam, grid.pixel_angle(place))
    assert np.corrcoef(ref.ravel(), img.value.ravel())[0, 1] >= 0.98
    # Observed with the continuum bandwidth (one channel of 100 MHz).
    assert m.observation.channel_width.to_value(u.MHz) == pytest.approx(100.0)


def test_map_wcs_and_reprojection_place_pixels():
    place = SkyPlacement(distance=20 * u.Mpc)
    grid = SkyGrid(32, 1.0 * u.kpc)
    sky = grid.celestial_wcs(place)
    # Same grid described as a map extent: reprojection is the identity.
    same = map_wcs(place, (-16, 16, -16, 16), 32)
    img = np.zeros((32, 32))
    img[20, 7] = 1.0
    out = reproject_map(img, sky, same, shape_out=(32, 32))
    assert np.nanargmax(out) == 20 * 32 + 7
    assert np.nanmax(out) == pytest.approx(1.0, rel=1e-6)
    # A finer, off-centre map whose pixel (14, 34) is centred on (x, y) = (-8.5, 4.5) kpc,
    # the centre of sky pixel (7, 20): the peak lands there.
    smooth = np.exp(-((np.arange(32)[None, :] - 7) ** 2 + (np.arange(32)[:, None] - 20) ** 2) / 8.0)
    fine = map_wcs(place, (-12.125, 3.875, -4.125, 11.875), 64)
    out = reproject_map(smooth, sky, fine, shape_out=(64, 64))
    row, col = np.unravel_index(np.nanargmax(out), out.shape)
    assert (col, row) == (14, 34)
    assert np.nanmax(out) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.slow
def test_mock_of_galaxy_matches_maps_hi(tmp_path):
    """Done-when: moment 0 of the mock vs the maps' HI map convolved with the beam."""
    _need_gas_physics()
    from alchemy_obs.maps.render import render_view
    from alchemy_obs.observe.mock import mock_view_maps
    from alchemy_obs.sim.galaxy import load_galaxy
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    path = make_synthetic_cutout(tmp_path / "cutout_0.hdf5", 0, 20_000, 7)
    galaxy = load_galaxy(path)
    maps_cfg = MapsConfig(npix=64, pixel_kpc=0.625, domains=["hi"])
    rotation = np.eye(3)
    maps, meta = render_view(galaxy, rotation, maps_cfg)
    cfg = load_config(None, NOISELESS + ["mock.npix=64", "mock.n_channels=48",
                                         "mock.channel_width_kms=10", "mock.products=[hi]"])
    mock_maps, mocks = mock_view_maps(galaxy, rotation, meta["extent_kpc"], map_npix=64, mock=cfg.mock,
                                      observe=cfg.observe, maps=maps_cfg)
    m = mocks["hi"]
    # The whole line is inside the band: the cube holds the HI mass of the field.
    place = m.placement
    flux = m.sky.data.sum().to_value(u.Jy) * 10.0 * u.Jy * u.km / u.s
    in_field = (maps["hi"].sum() * (meta["pixel_kpc"] * u.kpc) ** 2).to_value(u.Msun)
    assert radio.hi_mass(flux, place.luminosity_distance).to_value(u.Msun) == pytest.approx(
        in_field, rel=0.01)
    pixel = place.kpc_to_angle(meta["pixel_kpc"] * u.kpc).to(u.arcsec)
    ref = _beam_convolved(maps["hi"].value, m.beam, pixel)
    got = mock_maps["hi_mom0"].value
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] >= 0.98
    # Column density: N_HI of the mock against Sigma_HI / m_H at the same resolution.
    nhi_ref = (ref / (m.beam.sr / pixel**2).decompose().value * u.Msun / u.kpc**2 / (1.6735575e-24 * u.g))
    bright = ref > 0.3 * ref.max()
    ratio = mock_maps["hi_nhi"].value[bright] / nhi_ref.to_value(u.cm**-2)[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert MockConfig().products == ["hi", "continuum"]
    assert math.isfinite(float(np.nanmax(got)))


@pytest.mark.slow
def test_cli_galaxy_fits_and_dataset_domains(tmp_path):
    """``alchemy-obs mock``: one galaxy to FITS, then the mock domains of a map dataset."""
    _need_gas_physics()
    from astropy.io import fits

    from alchemy_obs.cli import main
    from alchemy_obs.maps.build import build_dataset, cutout_sources
    from alchemy_obs.maps.store import MapStore
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    cutouts = tmp_path / "cutouts"
    cutouts.mkdir()
    path = make_synthetic_cutout(cutouts / "cutout_3.hdf5", 3, 5_000, 11)
    small = NOISELESS + ["mock.npix=32", "mock.n_channels=24", "mock.channel_width_kms=20",
                         "maps.npix=32", "maps.pixel_kpc=1.25"]
    sets = [a for s in small for a in ("--set", s)]
    assert main(["mock", "--galaxy", str(path), "--out", str(tmp_path / "fits"), *sets]) == 0
    cube = fits.open(tmp_path / "fits" / "cutout_3_faceon_hi_image.fits")[0]
    assert cube.header["BUNIT"] == "Jy/beam" and cube.data.shape == (1, 24, 32, 32)
    nhi = fits.open(tmp_path / "fits" / "cutout_3_faceon_hi_nhi.fits")[0]
    assert nhi.header["BUNIT"] == "cm-2" and np.nanmax(nhi.data) > 1e18
    # The same command again: up to date, nothing rewritten; other settings: refused.
    stamps = {f: f.stat().st_mtime_ns for f in (tmp_path / "fits").iterdir()}
    assert main(["mock", "--galaxy", str(path), "--out", str(tmp_path / "fits"), *sets]) == 0
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "fits").iterdir()} == stamps
    other = [*sets, "--set", "mock.channel_width_kms=25"]
    assert main(["mock", "--galaxy", str(path), "--out", str(tmp_path / "fits"), *other]) == 2

    cfg = load_config(None, small)
    maps_cfg = cfg.maps.model_copy(update={"domains": ["hi", "sfr"], "n_random_views": 0})
    report = build_dataset(cutout_sources([path]), tmp_path / "maps", maps_cfg, progress=False)
    assert report.dataset is not None
    assert main(["mock", "--dataset", str(tmp_path / "maps"), "--input", str(cutouts), *sets]) == 0
    store = MapStore(tmp_path / "maps" / "dataset.h5")
    assert {"hi_mom0", "hi_nhi", "continuum"} <= set(store.domains)
    assert store.units("hi_nhi") == u.cm**-2
    views = store.read(0, ["hi", "hi_mom0"])
    assert np.corrcoef(np.nan_to_num(views["hi"]).ravel(),
                       np.nan_to_num(views["hi_mom0"]).ravel())[0, 1] > 0.8
    # A second run finds the domains in place and skips the galaxy.
    assert main(["mock", "--dataset", str(tmp_path / "maps"), "--input", str(cutouts), *sets]) == 0


@pytest.mark.slow
def test_demo_mock_stage(tmp_path):
    _need_gas_physics()
    from alchemy_obs.demo import _stage_mock

    cfg = load_config(None, ["synth.n_galaxies=1", "synth.n_particles=5000", "mock.npix=32",
                             "mock.n_channels=16", "mock.channel_width_kms=20",
                             "observe.hour_angle_start_h=-0.5", "observe.hour_angle_end_h=0.5",
                             "observe.dump_s=600"])
    _stage_mock(cfg, tmp_path)
    assert (tmp_path / "mock.png").stat().st_size > 10_000
    # 4 planes, PSF, primary beam and sky model per product, and the HI moment-0 and
    # column-density maps.
    assert len(list((tmp_path / "mocks").glob("cutout_0_faceon_*.fits"))) == 16
