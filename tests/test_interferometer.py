"""Degridding conventions against a direct Fourier sum, and radiometer noise."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u

from alchemy_obs.observe.interferometer import BuiltinSimulator, Simulator
from alchemy_obs.skyimage import SkyImage
from alchemy_obs.observe.telescope import Observation, Telescope

from _observe_helpers import asymmetric_source, direction_cosines, sky_wcs

C = 299792458.0


def _dft(img, wcs, obs):
    """Direct Fourier sum of a Jy/pixel image with the baseline primary beams applied."""
    ys, xs = np.nonzero(img)
    l, m, n = direction_cosines(wcs, xs, ys)
    offs = np.arcsin(np.hypot(l, m)) * u.rad
    uvw = obs.uvw()
    out = np.zeros((len(uvw), len(obs.frequencies)), complex)
    groups = obs.baseline_groups()
    for c, f in enumerate(obs.frequencies):
        for pair, rows in groups.items():
            beam = obs.baseline_beam(offs, f, pair)
            phase = uvw[rows] @ np.stack([l, m, n - 1]) * (f.to_value(u.Hz) / C)
            out[rows, c] = np.exp(-2j * np.pi * phase) @ (img[ys, xs] * beam)
    return out


@pytest.fixture(scope="module")
def setup():
    n = 64
    wcs = sky_wcs(n, 3.0, crpix=(30.0, 35.0))  # phase centre off the array centre on purpose
    img = asymmetric_source(n)
    tel = Telescope.ska_mid("AA*")
    # 6 MeerKAT + 8 SKA dishes within 3 km: all three beam pairs, baselines the 3" grid samples.
    ska = np.flatnonzero((tel.dish_type == "ska") & (np.hypot(*tel.enu[:, :2].T) < 3000))
    keep = np.r_[0:6, ska[:8]]
    tel = Telescope(tel.name, tel.antenna_names[keep], tel.dish_type[keep], tel.enu[keep],
                    tel.location, tel.dish_types)
    sky = SkyImage(img * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-3, 3) * u.hourangle, dump_time=3600 * u.s,
                                       freq_start=1.2 * u.GHz, channel_width=50 * u.MHz, n_channels=2)
    return img, wcs, sky, obs


def test_degridding_matches_direct_fourier_sum(setup):
    img, wcs, sky, obs = setup
    vis = BuiltinSimulator(epsilon=1e-10, noise=False).predict(sky, obs)
    ref = _dft(img, wcs, obs)
    ok = ~vis.flag
    assert ok.sum() > 0.9 * ok.size
    err = np.abs(vis.data - ref)[ok].max() / np.abs(ref[ok]).max()
    assert err < 1e-8


def test_image_rotated_by_180_degrees_fails(setup):
    img, wcs, sky, obs = setup
    flipped = SkyImage(img[::-1, ::-1] * u.Jy, wcs)
    vis = BuiltinSimulator(epsilon=1e-10, noise=False).predict(flipped, obs)
    ref = _dft(img, wcs, obs)
    ok = ~vis.flag
    assert np.abs(vis.data - ref)[ok].max() / np.abs(ref[ok]).max() > 0.1


def test_builtin_is_a_simulator():
    assert isinstance(BuiltinSimulator(), Simulator)


def test_noise_follows_radiometer_equation(setup):
    _, wcs, _, obs = setup
    empty = SkyImage(np.zeros((64, 64)) * u.Jy, wcs)
    vis = BuiltinSimulator(seed=1).observe(empty, obs)
    ok = ~vis.flag
    z = vis.data[ok] / vis.sigma[ok]
    # ~1.8k complex samples: std of each part within 5 % (5 sigma of the estimator).
    assert np.std(z.real) == pytest.approx(1.0, rel=0.05)
    assert np.std(z.imag) == pytest.approx(1.0, rel=0.05)
    assert abs(np.mean(z.real * z.imag)) < 0.1


def test_sky_checks(setup):
    _, _, _, obs = setup
    wcs = sky_wcs(64, 3.0)
    with pytest.raises(ValueError, match="Jy per pixel"):
        BuiltinSimulator().predict(SkyImage(np.zeros((64, 64)) * u.K, wcs), obs)
    bad = sky_wcs(64, 3.0)
    bad.wcs.cdelt = [3 / 3600, 3 / 3600]
    with pytest.raises(ValueError, match="RA increasing to the left"):
        BuiltinSimulator().predict(SkyImage(np.zeros((64, 64)) * u.Jy, bad), obs)
    with pytest.raises(ValueError, match="even"):
        BuiltinSimulator().predict(SkyImage(np.zeros((63, 63)) * u.Jy, wcs), obs)
    with pytest.raises(ValueError, match="2-D or 3-D"):
        SkyImage(np.zeros(64) * u.Jy, wcs)


def test_pointing_mismatch_is_an_error(setup):
    _, _, _, obs = setup
    other = SkyImage(np.zeros((64, 64)) * u.Jy, sky_wcs(64, 3.0, ra=151.0))
    with pytest.raises(ValueError, match="phase centre"):
        BuiltinSimulator().predict(other, obs)


def test_source_below_elevation_limit():
    """Dec +60 never rises above 15 deg at latitude -30.7: every row flagged -> clear error."""
    wcs = sky_wcs(64, 3.0, dec=60.0)
    sky = SkyImage(np.zeros((64, 64)) * u.Jy, wcs)
    obs = Observation.from_hour_angles(Telescope.ska_mid("AA1"), sky.phase_centre, (-1, 1) * u.hourangle,
                                       dump_time=1800 * u.s, freq_start=1.4 * u.GHz,
                                       channel_width=1 * u.MHz, n_channels=1)
    assert obs.elevations().max() < 0 * u.deg
    with pytest.raises(ValueError, match="every visibility is flagged"):
        BuiltinSimulator().predict(sky, obs)
    # Dec -30 at hour angle 0 transits at the zenith.
    zen = Observation.from_hour_angles(Telescope.ska_mid("AA1"), SkyImage(np.zeros((64, 64)) * u.Jy,
                                       sky_wcs(64, 3.0, dec=-30.712925)).phase_centre,
                                       (-0.1, 0.1) * u.hourangle, dump_time=60 * u.s,
                                       freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)
    assert zen.elevations().max().to_value(u.deg) == pytest.approx(90, abs=0.5)


def test_observation_of_a_track_with_a_start_utc():
    from alchemy_obs.observe.telescope import Track

    track = Track(start_utc="2028-03-01T20:00:00", dump_time=600 * u.s)
    obs = Observation.from_track(track, sky_wcs(64, 3.0).celestial.pixel_to_world(32, 32),
                                 telescope=Telescope.ska_mid("AA1"))
    assert obs.times[0].isot == "2028-03-01T20:05:00.000"
    assert obs.n_times == 11  # 2 sidereal hours = 7180 s -> 11 full 600 s dumps
    assert obs.frequencies[0] == 1.4e9 * u.Hz
