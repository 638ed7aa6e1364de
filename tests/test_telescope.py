"""SKA-MID layout, sensitivity, primary beam and Earth-rotation uvw against analytic values."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import constants as const
from astropy import units as u
from astropy.coordinates import SkyCoord

from alchemy_obs.config import TelescopeConfig
from alchemy_obs.shipped import CONFIGS
from alchemy_obs.observe.telescope import Observation, Telescope, read_layout


@pytest.mark.parametrize(
    "array, n_meerkat, n_ska", [("AA0.5", 0, 4), ("AA1", 0, 8), ("AA2", 0, 64), ("AA*", 64, 80), ("AA4", 64, 133)]
)
def test_staged_arrays(array, n_meerkat, n_ska):
    tel = Telescope.ska_mid(array)
    assert (tel.dish_type == "meerkat").sum() == n_meerkat
    assert (tel.dish_type == "ska").sum() == n_ska
    assert set(np.unique(tel.diameters.to_value(u.m))) <= {13.5, 15.0}


def test_arrays_are_nested():
    t = read_layout()
    order = ["AA0.5", "AA1", "AA2", "AA*", "AA4"]
    for small, big in zip(order, order[1:]):
        assert np.all(t[big][t[small]]), f"{small} not inside {big}"


def test_sefd_radiometer_formula():
    tel = Telescope.ska_mid("AA*")
    ska = tel.dish_types["ska"]
    expected = 2 * 1.380649e-23 * 20.0 / (np.pi * 7.5**2) / 1e-26  # Jy, T/eta = 20 K
    assert ska.sefd("2").to_value(u.Jy) == pytest.approx(expected, rel=1e-9)
    assert ska.sefd("2").to_value(u.Jy) == pytest.approx(312.5, rel=1e-3)
    with pytest.raises(ValueError, match="band"):
        ska.sefd("5")


def test_primary_beam_half_power_at_half_fwhm():
    tel = Telescope.ska_mid("AA1")
    f = 1.4 * u.GHz
    fwhm = 1.2 * (const.c / f / (15 * u.m)).decompose() * u.rad
    assert tel.primary_beam(fwhm / 2, f, "ska") == pytest.approx(0.5, rel=1e-12)
    assert tel.primary_beam(0 * u.rad, f, "ska") == 1.0


def test_east_west_baseline_traces_ellipse():
    """An east-west baseline L: u = L cos H, v = L sin(dec) sin H, w = -L cos(dec) sin H."""
    from alchemy_obs.observe.telescope import DishType
    from astropy.coordinates import EarthLocation

    L = 1000.0
    loc = EarthLocation.from_geodetic(21.44 * u.deg, -30.71 * u.deg, 1000 * u.m)
    tel = Telescope("EW", np.array(["a", "b"]), np.array(["ska", "ska"]),
                    np.array([[0, 0, 0], [L, 0, 0]]), loc,
                    {"ska": DishType("ska", 15 * u.m, {"2": 20 * u.K})})
    dec = -40 * u.deg
    obs = Observation.from_hour_angles(tel, SkyCoord(30 * u.deg, dec), (-3, 3) * u.hourangle,
                                       900 * u.s, 1.4 * u.GHz, 1 * u.MHz, 1)
    h = obs.hour_angles().to_value(u.rad)
    uvw = obs.uvw()
    d = dec.to_value(u.rad)
    np.testing.assert_allclose(uvw[:, 0], L * np.cos(h), atol=1e-6)
    np.testing.assert_allclose(uvw[:, 1], L * np.sin(d) * np.sin(h), atol=1e-6)
    np.testing.assert_allclose(uvw[:, 2], -L * np.cos(d) * np.sin(h), atol=1e-6)
    # The track is centred on transit: first and last dumps at -3 h + dt/2 and +3 h - dt/2.
    dt_h = 900 / 3600 * 1.0027379
    assert obs.hour_angles()[0].to_value(u.hourangle) == pytest.approx(-3 + dt_h / 2, abs=2e-3)
    assert obs.n_times == 23


def test_uvw_preserves_baseline_length():
    tel = Telescope.ska_mid("AA2")
    obs = Observation.from_hour_angles(tel, SkyCoord(10 * u.deg, -50 * u.deg), (-1, 1) * u.hourangle,
                                       1800 * u.s, 1.0 * u.GHz, 1 * u.MHz, 1)
    i, j = tel.baselines()
    b = np.linalg.norm(tel.enu[j] - tel.enu[i], axis=1)
    uvw = obs.uvw().reshape(obs.n_times, -1, 3)
    np.testing.assert_allclose(np.linalg.norm(uvw, axis=2), np.broadcast_to(b, uvw.shape[:2]), rtol=1e-12)


def test_itrf_keeps_distances_and_reference():
    tel = Telescope.ska_mid("AA1")
    xyz = tel.itrf()
    i, j = tel.baselines()
    np.testing.assert_allclose(np.linalg.norm(xyz[j] - xyz[i], axis=1),
                               np.linalg.norm(tel.enu[j] - tel.enu[i], axis=1), rtol=1e-9)
    ref = np.array([c.to_value(u.m) for c in tel.location.to_geocentric()])
    assert np.linalg.norm(xyz.mean(0) - ref) < 2000


def test_radiometer_sigma_per_visibility():
    tel = Telescope.ska_mid("AA*")
    obs = Observation.from_hour_angles(tel, SkyCoord(150 * u.deg, -30 * u.deg), (-0.5, 0.5) * u.hourangle,
                                       600 * u.s, 1.4 * u.GHz, 100 * u.kHz, 1)
    a1, a2, _ = obs.rows()
    sefd = tel.sefd("2").to_value(u.Jy)
    k = np.flatnonzero((tel.dish_type[a1] == "meerkat") & (tel.dish_type[a2] == "ska"))[0]
    expected = np.sqrt(sefd[a1[k]] * sefd[a2[k]]) / np.sqrt(2 * 1e5 * 600) / np.sqrt(2)
    assert obs.sigma()[k] == pytest.approx(expected, rel=1e-12)


def test_channels_outside_band_rejected():
    tel = Telescope.ska_mid("AA1")
    with pytest.raises(ValueError, match="band 2"):
        Observation.from_hour_angles(tel, SkyCoord(0 * u.deg, -30 * u.deg), (-1, 1) * u.hourangle,
                                     600 * u.s, 1.75 * u.GHz, 10 * u.MHz, 4, band="2")
    Observation.from_hour_angles(tel, SkyCoord(0 * u.deg, -30 * u.deg), (-1, 1) * u.hourangle,
                                 600 * u.s, 0.5 * u.GHz, 10 * u.MHz, 4, band="1")


def test_config_overrides_dish_and_array():
    cfg = TelescopeConfig(array="AA0.5", dishes={"ska": {"diameter_m": 15.0, "tsys_over_eta_k": {"2": 40.0}},
                                                 "meerkat": {"diameter_m": 13.5, "tsys_over_eta_k": {"2": 22.0}}})
    tel = Telescope.from_config(cfg)
    assert tel.n_antennas == 4
    assert tel.sefd("2")[0].to_value(u.Jy) == pytest.approx(625.0, rel=1e-3)


def test_bad_layout_names_file(tmp_path):
    bad = tmp_path / "layout.txt"
    bad.write_text("A ska 0 0 0 1\n")
    with pytest.raises(ValueError, match="layout.txt"):
        read_layout(bad)


def test_telescope_yaml_files_load_and_default_mirrors_config():
    from alchemy_obs.config import ObserveConfig, load_config

    folder = CONFIGS / "telescopes"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for f in files:
        cfg = load_config(f)
        Telescope.from_config(cfg.observe.telescope)
    assert load_config(folder / "ska_mid_aastar.yaml").observe == ObserveConfig()
    assert Telescope.from_config(load_config(folder / "ska_mid_aa4.yaml").observe.telescope).n_antennas == 197
