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
    from alchemy_obs.observe.telescope import DishType

    ska = DishType("ska", 15 * u.m, {"2": 20 * u.K})
    expected = 2 * 1.380649e-23 * 20.0 / (np.pi * 7.5**2) / 1e-26  # Jy, T/eta = 20 K
    assert ska.sefd("2").to_value(u.Jy) == pytest.approx(expected, rel=1e-9)
    assert ska.sefd("2").to_value(u.Jy) == pytest.approx(312.5, rel=1e-3)
    # One value for the band: the same at every frequency.
    np.testing.assert_allclose(ska.sefd("2", [1.0, 1.5] * u.GHz).to_value(u.Jy), expected, rtol=1e-9)
    with pytest.raises(ValueError, match="band"):
        ska.sefd("5")
    # A tabulated band needs the frequency.
    with pytest.raises(ValueError, match="frequency"):
        Telescope.ska_mid("AA*").dish_types["ska"].sefd("2")


def _braun_2019_tsys_over_eta(nu_ghz, dish, band):
    """T_sys/eta_A (K) of Braun et al. (2019, arXiv:1912.12699), written out independently.

    Aperture efficiency: feed (0.92 or 0.80) - 0.04 |log10 nu|, Ruze loss of the primary and
    secondary surface errors (280/154 um SKA, 480/265 um MeerKAT; weights 0.89, 0.98) and
    diffraction 1 - 20 (lambda/D)^1.5. T_sys: receiver (SKA band 1: 15 + 30 (nu - 0.75)^2,
    band 2: 7.5 K; MeerKAT UHF: 11 - 4.5 (nu - 0.58), L: 7.5 + 6.8 |nu - 1.65|^1.5),
    spillover 3 K (SKA) or 4 K (MeerKAT), median Galactic sky 25.2 K (0.408/nu)^2.75,
    CMB 2.73 K and 1.3 K of atmosphere.
    """
    d, feed, eps_p, eps_s = {"ska": (15.0, 0.92, 280e-6, 154e-6),
                             "meerkat": (13.5, 0.80, 480e-6, 265e-6)}[dish]
    lam = 299792458.0 / (nu_ghz * 1e9)
    delta = 2 * np.sqrt(0.89 * eps_p**2 + 0.98 * eps_s**2)
    eta = ((feed - 0.04 * abs(np.log10(nu_ghz))) * np.exp(-(2 * np.pi * delta / lam) ** 2)
           * (1 - 20 * (lam / d) ** 1.5))
    if dish == "ska":
        t_rcv = 15 + 30 * (nu_ghz - 0.75) ** 2 if band == "1" else 7.5
    else:
        t_rcv = 11 - 4.5 * (nu_ghz - 0.58) if band == "1" else 7.5 + 6.8 * abs(nu_ghz - 1.65) ** 1.5
    spill = 3.0 if dish == "ska" else 4.0
    return (t_rcv + spill + 25.2 * (0.408 / nu_ghz) ** 2.75 + 2.73 + 1.3) / eta


def test_default_tsys_over_eta_follows_braun_2019():
    tel = Telescope.ska_mid("AA*")
    for name, dish in tel.dish_types.items():
        for band, (nodes, values) in dish.tsys_over_eta.items():
            expected = [_braun_2019_tsys_over_eta(f, name, band) for f in nodes.to_value(u.GHz)]
            np.testing.assert_allclose(values.to_value(u.K), expected, atol=0.051, err_msg=name + band)
    # At 1.4 GHz this is A_e/T_sys = 10.1 m^2/K per SKA dish and 6.3 m^2/K per MeerKAT dish.
    ska, mk = tel.dish_types["ska"], tel.dish_types["meerkat"]
    assert (ska.area / ska.tsys_over_eta_at("2", 1.4 * u.GHz)).value == pytest.approx(10.16, rel=0.01)
    assert (mk.area / mk.tsys_over_eta_at("2", 1.4 * u.GHz)).value == pytest.approx(6.34, rel=0.01)


def test_band_1_noise_follows_the_system_temperature_at_0p6_and_0p9_ghz():
    # By hand (Braun et al. 2019 model, SKA dish):
    # 0.6 GHz: T_sys = 15.68 (receiver) + 3 (spill) + 8.73 (Galaxy) + 2.73 + 1.3 = 31.44 K,
    #          eta = 0.9111 * 0.99994 * 0.8784 = 0.8003 -> T_sys/eta = 39.3 K;
    # 0.9 GHz: T_sys = 15.68 + 3 + 2.86 + 2.73 + 1.3 = 25.57 K,
    #          eta = 0.9182 * 0.99987 * 0.9338 = 0.8573 -> T_sys/eta = 29.8 K.
    # SEFD = 2 k (T/eta) / (pi 7.5^2 m^2): 614.1 and 465.6 Jy (one 28 K before: 437.5 Jy).
    # Stokes I noise per part of an SKA-SKA visibility, 100 kHz, 600 s, two polarisations:
    # SEFD / sqrt(2 * 1e5 * 600) / sqrt(2) = 0.03964 and 0.03006 Jy.
    tel = Telescope.ska_mid("AA2")
    obs = Observation.from_hour_angles(tel, SkyCoord(150 * u.deg, -30 * u.deg), (-0.2, 0.2) * u.hourangle,
                                       dump_time=600 * u.s, freq_start=0.6 * u.GHz,
                                       channel_width=100 * u.kHz, n_channels=1, band="1")
    obs.frequencies = [0.6, 0.9] * u.GHz
    sigma = obs.sigma()
    assert sigma.shape == (obs.n_times * obs.n_baselines, 2)
    np.testing.assert_allclose(sigma[0], [0.03964, 0.03006], rtol=1e-3)
    np.testing.assert_allclose(tel.sefd("1", 0.6 * u.GHz)[0].to_value(u.Jy), 614.1, rtol=1e-3)


def test_meerkat_dishes_have_no_receiver_below_0p58_ghz():
    tel = Telescope.ska_mid("AA*")
    obs = Observation.from_hour_angles(tel, SkyCoord(0 * u.deg, -30 * u.deg), (-0.2, 0.2) * u.hourangle,
                                       dump_time=600 * u.s, freq_start=0.5 * u.GHz,
                                       channel_width=1 * u.MHz, n_channels=1, band="1")
    with pytest.raises(ValueError, match="meerkat.*0.58"):
        obs.sigma()
    # The SKA dishes alone (AA2) observe there.
    assert np.all(np.isfinite(Telescope.ska_mid("AA2").sefd("1", 0.5 * u.GHz)))


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
                                       dump_time=900 * u.s, freq_start=1.4 * u.GHz,
                                       channel_width=1 * u.MHz, n_channels=1)
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
                                       dump_time=1800 * u.s, freq_start=1.0 * u.GHz,
                                       channel_width=1 * u.MHz, n_channels=1)
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
                                       dump_time=600 * u.s, freq_start=1.4 * u.GHz,
                                       channel_width=100 * u.kHz, n_channels=1)
    a1, a2, _ = obs.rows()
    sefd = tel.sefd("2", 1.4 * u.GHz)[:, 0].to_value(u.Jy)
    k = np.flatnonzero((tel.dish_type[a1] == "meerkat") & (tel.dish_type[a2] == "ska"))[0]
    expected = np.sqrt(sefd[a1[k]] * sefd[a2[k]]) / np.sqrt(2 * 1e5 * 600) / np.sqrt(2)
    assert obs.sigma()[k, 0] == pytest.approx(expected, rel=1e-12)


def test_channels_outside_band_rejected():
    tel = Telescope.ska_mid("AA1")
    with pytest.raises(ValueError, match="band 2"):
        Observation.from_hour_angles(tel, SkyCoord(0 * u.deg, -30 * u.deg), (-1, 1) * u.hourangle,
                                     dump_time=600 * u.s, freq_start=1.75 * u.GHz,
                                     channel_width=10 * u.MHz, n_channels=4, band="2")
    Observation.from_hour_angles(tel, SkyCoord(0 * u.deg, -30 * u.deg), (-1, 1) * u.hourangle,
                                 dump_time=600 * u.s, freq_start=0.5 * u.GHz,
                                 channel_width=10 * u.MHz, n_channels=4, band="1")


def test_config_overrides_dish_and_array():
    cfg = TelescopeConfig(array="AA0.5", dishes={"ska": {"diameter_m": 15.0, "tsys_over_eta_k": {"2": 40.0}},
                                                 "meerkat": {"diameter_m": 13.5,
                                                             "tsys_over_eta_k": {"2": 22.0}}})
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
