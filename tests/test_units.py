"""TNG code units -> physical units, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alchemy_obs.physics import units


def test_comoving_length_at_z1():
    # z = 1 -> a = 0.5; 1000 ckpc/h with h = 0.6774 is 500 / 0.6774 = 738.1163 kpc.
    x = units.length_to_kpc(np.array([1000.0, -2.0]), a=0.5, h=0.6774)
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, [738.116327, -1.476232654], rtol=1e-8)


def test_mass_unit():
    # 1e10 Msun/h with h = 0.6774 is 1.476232654e10 Msun.
    np.testing.assert_allclose(units.mass_to_msun(1.0, 0.6774), 1.476232654e10, rtol=1e-9)
    np.testing.assert_allclose(units.mass_to_msun(np.float32(0.5), 1.0), 5e9, rtol=1e-12)


def test_velocity_and_density():
    # km sqrt(a)/s at a = 0.25: 100 -> 50 km/s.
    np.testing.assert_allclose(units.velocity_to_km_s([100.0], 0.25), [50.0])
    # 1 code density at a = 0.5, h = 0.7: 1e10 * 0.49 / 0.125 = 3.92e10 Msun/kpc^3.
    np.testing.assert_allclose(units.density_to_msun_kpc3(1.0, 0.5, 0.7), 3.92e10, rtol=1e-12)


def test_magnetic_field_unit():
    # UnitTime = 3.085678e21 / 1e5 = 3.085678e16 s;
    # UnitPressure = 1.989e43 / 3.085678e21 / (3.085678e16)^2 = 6.76991e-12 erg/cm^3;
    # sqrt = 2.601905e-6 G at a = h = 1 (no 4 pi).
    assert units.unit_pressure_cgs() == pytest.approx(6.76991e-12, rel=1e-5)
    np.testing.assert_allclose(units.magnetic_field_to_gauss(1.0, 1.0, 1.0), 2.601905e-6, rtol=1e-6)
    # h / a^2 = 0.7 / 0.25 = 2.8 at a = 0.5, h = 0.7.
    np.testing.assert_allclose(units.magnetic_field_to_gauss([[1.0, 0, -2.0]], 0.5, 0.7),
                               [[7.285334e-6, 0.0, -1.4570668e-5]], rtol=1e-6)


def test_code_units_from_header_and_inverse():
    cu = units.CodeUnits.from_header({"Time": 0.5, "HubbleParam": 0.6774})
    assert cu.length == pytest.approx(0.5 / 0.6774)
    assert cu.velocity == pytest.approx(math.sqrt(0.5))
    assert cu.magnetic_field == pytest.approx(units.magnetic_field_factor(0.5, 0.6774))
    x = np.array([3.0, 7.5])
    np.testing.assert_allclose(units.length_to_kpc(x, 0.5, 0.6774) / cu.length, x)
