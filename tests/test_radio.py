"""Radio conversions against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u

from alchemy_obs.physics import radio

NU0 = 1420405751.768  # Hz
C_KMS = 299792.458


def test_rest_frequency():
    assert radio.HI_REST_FREQUENCY.to_value(u.Hz) == NU0


def test_hi_mass_velocity_form():
    # 1 Jy km/s at 10 Mpc: 2.356e5 * 100 = 2.356e7 Msun.
    m = radio.hi_mass(1 * u.Jy * u.km / u.s, 10 * u.Mpc)
    assert m.unit == u.Msun
    assert m.value == pytest.approx(2.356e7, rel=1e-12)
    # At z = 0.1 the rest-frame velocity integral picks up 1/(1+z).
    m = radio.hi_mass(1 * u.Jy * u.km / u.s, 100 * u.Mpc, redshift=0.1)
    assert m.value == pytest.approx(2.356e9 / 1.1, rel=1e-12)


def test_hi_mass_frequency_form_matches_velocity_form():
    # 1 km/s of radio velocity at nu0 is nu0/c = 4737.95 Hz.
    flux_hz = 1 * u.Jy * (NU0 / C_KMS) * u.Hz
    assert radio.hi_mass(flux_hz, 10 * u.Mpc).value == pytest.approx(2.356e7, rel=1e-12)
    # Frequency form is redshift independent: 2.356e5 * c/nu0 = 49.73 Msun / (Mpc^2 Jy Hz).
    assert radio.hi_mass(1 * u.Jy * u.Hz, 1 * u.Mpc, redshift=0.5).value == pytest.approx(
        2.356e5 * C_KMS / NU0, rel=1e-12
    )
    assert 2.356e5 * C_KMS / NU0 == pytest.approx(49.73, abs=0.01)


def test_hi_line_flux_inverts_hi_mass():
    s = radio.hi_line_flux(1e9 * u.Msun, 20 * u.Mpc)
    assert s.unit == u.Jy * u.Hz
    assert s.value == pytest.approx(1e9 / (2.356e5 * 400) * NU0 / C_KMS, rel=1e-12)
    assert radio.hi_mass(s, 20 * u.Mpc).value == pytest.approx(1e9, rel=1e-12)


def test_hi_mass_rejects_wrong_units():
    with pytest.raises(u.UnitsError, match="Jy km/s"):
        radio.hi_mass(1 * u.Jy, 10 * u.Mpc)


def test_column_density_from_brightness():
    assert radio.hi_column_density(1 * u.K * u.km / u.s).to_value(u.cm**-2) == pytest.approx(
        1.823e18
    )


def test_beam_solid_angle():
    omega = radio.beam_solid_angle(1 * u.arcsec, 1 * u.arcsec)
    # pi / (4 ln 2) = 1.1331 arcsec^2
    assert omega.to_value(u.arcsec**2) == pytest.approx(1.13309, rel=1e-5)


def test_jy_per_beam_to_kelvin_textbook_value():
    # T = 1.222e3 S[mJy] / (nu[GHz]^2 bmaj bmin [arcsec]): 1 Jy/beam at 1.4 GHz, 1" beam.
    t = radio.jy_per_beam_to_kelvin(1 * u.Jy / u.beam, 1.4 * u.GHz, 1 * u.arcsec, 1 * u.arcsec)
    assert t.unit == u.K
    assert t.value == pytest.approx(1.222e6 / 1.96, rel=1e-3)
    back = radio.kelvin_to_jy_per_beam(t, 1.4 * u.GHz, 1 * u.arcsec, 1 * u.arcsec)
    assert back.to_value(u.Jy / u.beam) == pytest.approx(1.0, rel=1e-12)


def test_jy_per_beam_to_kelvin_matches_astropy_equivalency():
    beam = radio.beam_solid_angle(30 * u.arcsec, 20 * u.arcsec)
    expected = (1 * u.Jy / beam).to(u.K, u.brightness_temperature(1.2 * u.GHz))
    t = radio.jy_per_beam_to_kelvin(1 * u.Jy, 1.2 * u.GHz, 30 * u.arcsec, 20 * u.arcsec)
    assert t.value == pytest.approx(expected.value, rel=1e-10)


def test_column_density_from_flux_textbook_value():
    # N_HI = 1.104e21 cm^-2 S[mJy/beam km/s] / (bmaj bmin [arcsec^2]) at z = 0.
    n = radio.hi_column_density_from_flux(
        1 * u.mJy / u.beam * u.km / u.s, 1 * u.arcsec, 1 * u.arcsec
    )
    assert n.to_value(u.cm**-2) == pytest.approx(1.104e21, rel=1e-3)
    n2 = radio.hi_column_density_from_flux(
        1 * u.mJy / u.beam * u.km / u.s, 20 * u.arcsec, 10 * u.arcsec
    )
    assert n2.to_value(u.cm**-2) == pytest.approx(1.104e21 / 200, rel=1e-3)


def test_column_density_from_flux_redshift_dimming():
    # In frequency units the (1+z)^4 Tolman dimming is the only change.
    s = 1 * u.mJy / u.beam * u.Hz
    n0 = radio.hi_column_density_from_flux(s, 10 * u.arcsec, 10 * u.arcsec)
    n1 = radio.hi_column_density_from_flux(s, 10 * u.arcsec, 10 * u.arcsec, redshift=1.0)
    assert (n1 / n0).value == pytest.approx(16.0, rel=1e-12)
    # A rest-frame velocity width spans 1/(1+z) as many observed Hz, so 2^3 in km/s units.
    v = 1 * u.mJy / u.beam * u.km / u.s
    r = radio.hi_column_density_from_flux(v, 10 * u.arcsec, 10 * u.arcsec, redshift=1.0) / (
        radio.hi_column_density_from_flux(v, 10 * u.arcsec, 10 * u.arcsec)
    )
    assert r.value == pytest.approx(8.0, rel=1e-12)


def test_velocity_frequency_conversions():
    v = 1000 * u.km / u.s
    assert radio.radio_velocity_to_frequency(v).to_value(u.Hz) == pytest.approx(
        1415667788.1739726, rel=1e-13
    )
    assert radio.optical_velocity_to_frequency(v).to_value(u.Hz) == pytest.approx(
        1415683539.7776713, rel=1e-13
    )
    f = 1.4 * u.GHz
    assert radio.frequency_to_radio_velocity(f).to_value(u.km / u.s) == pytest.approx(
        4306.8612417627755, rel=1e-12
    )
    assert radio.frequency_to_optical_velocity(f).to_value(u.km / u.s) == pytest.approx(
        4369.636057047516, rel=1e-12
    )
    vv = np.linspace(-500, 3000, 5) * u.km / u.s
    assert np.allclose(
        radio.frequency_to_radio_velocity(radio.radio_velocity_to_frequency(vv)).value, vv.value
    )
    # Same as astropy's doppler equivalencies.
    expected = vv.to(u.Hz, u.doppler_radio(radio.HI_REST_FREQUENCY))
    assert np.allclose(radio.radio_velocity_to_frequency(vv).value, expected.value, rtol=1e-13)


def test_murphy_2011_at_1p4ghz():
    # 1e27 [2.18 * 1.4^-0.1 + 15.1 * 1.4^-0.8] erg/s/Hz = 1.3644e28 erg/s/Hz = 1.3644e21 W/Hz
    lum = radio.sfr_to_radio_luminosity(1 * u.Msun / u.yr)
    assert lum.unit == u.W / u.Hz
    assert lum.value == pytest.approx(1.3644381264999833e21, rel=1e-10)
    # Free-free only: Murphy et al. eq. 11, SFR = 4.6e-28 L  ->  L = 2.17e27 erg/s/Hz at 1 GHz.
    ff = radio.sfr_to_radio_luminosity(1 * u.Msun / u.yr, 1 * u.GHz) - 1e27 * 15.1 * u.erg / u.s / u.Hz
    assert ff.to_value(u.erg / u.s / u.Hz) == pytest.approx(1 / 4.6e-28, rel=0.01)
    # Linear in SFR.
    assert radio.sfr_to_radio_luminosity(3 * u.Msun / u.yr).value == pytest.approx(3 * lum.value)


def test_luminosity_to_flux_density():
    # 1e22 W/Hz at 10 Mpc: 1e22 / (4 pi (3.0857e23 m)^2) = 0.83577 Jy.
    s = radio.luminosity_to_flux_density(1e22 * u.W / u.Hz, 10 * u.Mpc)
    assert s.unit == u.Jy
    assert s.value == pytest.approx(0.8357743635931361, rel=1e-6)
    # Power-law K-correction: (1+z)^(1+alpha) = 2^0.2 at z=1, alpha=-0.8.
    sk = radio.luminosity_to_flux_density(1e22 * u.W / u.Hz, 10 * u.Mpc, 1.0, spectral_index=-0.8)
    assert (sk / s).value == pytest.approx(2**0.2, rel=1e-12)


def test_sfr_to_flux_density_k_correction():
    # At z=1, 1.4 GHz observed is 2.8 GHz emitted; S = (1+z) L(2.8 GHz) / (4 pi D_L^2).
    s = radio.sfr_to_flux_density(1 * u.Msun / u.yr, 1.4 * u.GHz, 10 * u.Mpc, redshift=1.0)
    l_emit = 8.592697776915891e27 * 1e-7  # W/Hz
    assert s.to_value(u.Jy) == pytest.approx(2 * l_emit / 1e22 * 0.8357743635931361, rel=1e-6)


def test_column_density_constant_is_per_mjy():
    """1 Jy/beam km/s in a 10" x 10" beam is 1.104e24 / 100 cm^-2 (1.104e21 per mJy/beam)."""
    nhi = radio.hi_column_density_from_flux(1.0 * u.Jy / u.beam * u.km / u.s, 10 * u.arcsec,
                                            10 * u.arcsec)
    assert nhi.to_value(u.cm**-2) == pytest.approx(1.104e22, rel=2e-3)
