"""Gas physics formulas against hand-computed values, and smoothing lengths."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from astropy import units as u

from alchemy_obs.maps import smoothing
from alchemy_obs.physics import gas

# CGS constants written out so the expected values do not reuse the module's constants.
M_P = 1.67262192e-24  # g
K_B = 1.380649e-16  # erg/K
G_CGS = 6.6743e-8
MSUN_G = 1.98841e33
KPC_CM = 3.0856775814913673e21
PC_CM = KPC_CM / 1e3


def test_temperature_of_ionised_and_neutral_gas():
    # u = 100 (km/s)^2 = 1e12 erg/g, hydrogen ionised (x_e = 1), helium neutral,
    # X_H = 0.76: mu = 4 / (1 + 2.28 + 3.04) = 0.6329114; T = 2/3 * 1e12 * mu m_p / k_B.
    mu = 4 / (1 + 3 * 0.76 + 4 * 0.76 * 1.0)
    expected = 2 / 3 * 1e12 * mu * M_P / K_B
    assert expected == pytest.approx(5111.7, rel=1e-4)
    t = gas.temperature(np.array([100.0]), np.array([1.0]), 0.76)
    assert t[0] == pytest.approx(expected, rel=1e-6)
    # Neutral gas (x_e = 0): mu = 4 / (1 + 3 X_H) = 1.2195 for X_H = 0.76.
    t0 = gas.temperature(np.array([100.0]), np.array([0.0]))
    assert t0[0] == pytest.approx(2 / 3 * 1e12 * (4 / 3.28) * M_P / K_B, rel=1e-6)


def test_star_forming_cells_effective_or_cold():
    u_ = np.array([1000.0, 1000.0])
    xe = np.array([1.0, 1.0])
    sfr = np.array([0.0, 0.1])
    eff = gas.temperature(u_, xe, sfr=sfr)
    assert eff[0] == eff[1]
    cold = gas.temperature(u_, xe, sfr=sfr, star_forming="cold", cold_temperature=1e3)
    assert cold[0] == eff[0] and cold[1] == 1e3
    with pytest.raises(ValueError, match="sfr"):
        gas.temperature(u_, xe, star_forming="cold")


def test_hydrogen_number_density():
    # 1e7 Msun/kpc^3 of X_H = 0.76 gas: n_H = 0.76 * 1e7 * MSUN_G / KPC_CM^3 / m_p.
    expected = 0.76 * 1e7 * MSUN_G / KPC_CM**3 / M_P
    assert expected == pytest.approx(0.3075, rel=1e-3)
    n_h = gas.hydrogen_number_density(np.array([1e7]), 0.76)[0]
    assert n_h == pytest.approx(expected, rel=1e-6)


def test_rahmati_at_the_self_shielding_density_z0():
    # z = 0, FG09 (R13 Table 2): Gamma_UVB = 3.99e-14 s^-1, n_SSh = 7.7e-4 cm^-3.
    # At n_H = n_SSh: Gamma/Gamma_UVB = 0.98 * 2^-2.28 + 0.02 * 2^-0.84.
    n_h, temp = 7.7e-4, 1e4
    ratio = 0.98 * 2**-2.28 + 0.02 * 2**-0.84
    assert ratio == pytest.approx(0.212953, rel=1e-5)
    assert gas.rahmati_photoionisation_ratio(np.array([n_h]), 7.7e-4)[0] == pytest.approx(ratio)
    gamma = 3.99e-14 * ratio
    lam = 315614.0 / temp
    alpha = 1.269e-13 * lam**1.503 / (1 + (lam / 0.522) ** 0.47) ** 1.923
    assert alpha == pytest.approx(4.19e-13, rel=2e-3)  # the familiar case A value at 1e4 K
    coll = 1.17e-10 * math.sqrt(temp) * math.exp(-157809.0 / temp) / (1 + math.sqrt(0.1))
    # Equilibrium alpha (1-eta)^2 n = eta (Gamma + coll (1-eta) n), solved by bisection.
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        excess = alpha * (1 - mid) ** 2 * n_h - mid * (gamma + coll * (1 - mid) * n_h)
        lo, hi = (mid, hi) if excess > 0 else (lo, mid)
    eta = gas.rahmati_neutral_fraction(np.array([n_h]), 0.0, temp)[0]
    assert eta == pytest.approx(lo, rel=1e-9)
    assert eta == pytest.approx(0.0367, rel=2e-2)


def test_rahmati_limits_and_redshift_interpolation():
    # Dense gas is self-shielded (neutral); thin gas is photoionised: eta ~ alpha n / Gamma.
    eta = gas.rahmati_neutral_fraction(np.array([1e-7, 10.0]), 3.0)
    gamma_uvb, n_ssh = gas.uv_background(3.0)
    assert (gamma_uvb, n_ssh) == (5.53e-13, 5.0e-3)
    alpha = gas.case_a_recombination_rate(1e4)
    assert eta[0] == pytest.approx(alpha * 1e-7 / gamma_uvb, rel=1e-3)
    assert eta[1] > 0.99
    # Halfway between z = 0 and 1 of HM01: Gamma = (8.34e-14 + 7.39e-13) / 2.
    assert gas.uv_background(0.5, "HM01")[0] == pytest.approx(0.5 * (8.34e-14 + 7.39e-13))
    with pytest.raises(ValueError, match="UV background"):
        gas.uv_background(0.0, "XX")


def test_kmt_molecular_fraction_by_hand():
    # Sigma = 20 Msun/pc^2, Z' = 1: chi = 0.756 * 4.1, tau_c = 1.32,
    # s = ln(1 + 0.6 chi + 0.01 chi^2) / (0.6 tau_c), f = 1 - 0.75 s / (1 + 0.25 s).
    chi = 0.756 * 4.1
    s = math.log(1 + 0.6 * chi + 0.01 * chi**2) / (0.6 * 0.066 * 20)
    expected = 1 - 0.75 * s / (1 + 0.25 * s)
    assert expected == pytest.approx(0.2353, abs=1e-4)
    f = gas.kmt_molecular_fraction(np.array([20.0, 5.0, 1e4, 20.0]), np.array([1, 1, 1, 0.0]))
    assert f[0] == pytest.approx(expected, rel=1e-10)
    assert f[1] == 0.0  # s > 2: atomic
    assert f[2] > 0.99  # thick: molecular
    assert f[3] == 0.0  # no metals, no dust: no H2
    # Z' = 0.1: chi = 0.756 (1 + 3.1 * 0.1^0.365), Sigma = 100.
    chi = 0.756 * (1 + 3.1 * 0.1**0.365)
    s = math.log(1 + 0.6 * chi + 0.01 * chi**2) / (0.6 * 0.066 * 100 * 0.1)
    assert gas.kmt_molecular_fraction(np.array([100.0]), 0.1)[0] == pytest.approx(
        1 - 0.75 * s / (1 + 0.25 * s), rel=1e-10
    )


def test_column_density_estimates():
    # rho = 1e7 Msun/kpc^3, u = 1000 (km/s)^2: c_s^2 = 10/9 * 1e13 cm^2/s^2,
    # Sigma = rho c_s / sqrt(G rho), converted from g/cm^2 to Msun/pc^2.
    rho = 1e7 * MSUN_G / KPC_CM**3
    cs = math.sqrt(5 / 3 * 2 / 3 * 1e13)
    expected = rho * cs / math.sqrt(G_CGS * rho) * PC_CM**2 / MSUN_G
    got = gas.jeans_column_density(np.array([1e7]), np.array([1000.0]))[0]
    assert got == pytest.approx(expected, rel=1e-4)
    # Cell: m = 1e6 Msun, rho = 1e7 Msun/kpc^3 -> size 0.1^(1/3) kpc.
    size_pc = (1e6 / 1e7) ** (1 / 3) * 1e3
    assert gas.cell_column_density(np.array([1e7]), np.array([1e6]))[0] == pytest.approx(
        1e7 / 1e9 * size_pc, rel=1e-12
    )


def _gas(**kw):
    fields = dict(masses=None, density=None, internal_energy=None, electron_abundance=None,
                  neutral_hydrogen_abundance=None, magnetic_field=None, sfr=None,
                  metallicity=None, hydrogen_fraction=None, coordinates=None, hsml=None)
    fields.update(kw)
    return SimpleNamespace(**fields)


def test_hi_mass_following_vn18():
    # Cell 0: not star forming, uses NeutralHydrogenAbundance = 0.5 -> HI = 0.76 m 0.5.
    # Cell 1: star forming, n_H ~ 3 cm^-3 -> R13 neutral fraction, then KMT with Jeans Sigma.
    g = _gas(masses=np.array([1e6, 1e6]), density=np.array([1e7, 1e8]),
             internal_energy=np.array([100.0, 1000.0]), electron_abundance=np.array([1.0, 0.1]),
             neutral_hydrogen_abundance=np.array([0.5, 0.01]), sfr=np.array([0.0, 0.01]),
             metallicity=np.array([0.0127, 0.0127]), hydrogen_fraction=None)
    m_hi = gas.gas_hi_mass(g, redshift=0.0)
    assert m_hi.unit == u.Msun
    assert m_hi[0].value == pytest.approx(0.76 * 1e6 * 0.5, rel=1e-12)
    n_h = 0.76 * 1e8 * MSUN_G / KPC_CM**3 / M_P
    eta = gas.rahmati_neutral_fraction(np.array([n_h]), 0.0, 1e4)[0]
    sigma = gas.jeans_column_density(np.array([1e8]), np.array([1000.0]))[0]
    f_h2 = gas.kmt_molecular_fraction(np.array([sigma]), 1.0)[0]
    assert 0 < f_h2 < 1 and eta > 0.99
    assert m_hi[1].value == pytest.approx(0.76 * 1e6 * eta * (1 - f_h2), rel=1e-8)
    assert gas.hi_mass(np.array([2.0]), 0.75, np.array([0.5]), 0.2)[0] == pytest.approx(0.6)


def test_missing_metallicity_is_an_error_not_zero_h2():
    """Star-forming gas without metallicities used to get Z' = 0, hence no H2 at all."""
    g = _gas(masses=np.array([1e6]), density=np.array([1e8]), internal_energy=np.array([1000.0]),
             electron_abundance=np.array([0.1]), neutral_hydrogen_abundance=np.array([0.01]),
             sfr=np.array([0.01]))
    with pytest.raises(ValueError, match="metallicity"):
        gas.gas_hi_mass(g, redshift=0.0)
    # Without star formation no H2 is assigned, and metallicities are not needed.
    g.sfr = np.array([0.0])
    assert gas.gas_hi_mass(g, redshift=0.0)[0].value > 0


def test_hi_column_and_brightness():
    # 1 Msun/pc^2 of HI = 1.98841e33 g / (3.0857e18 cm)^2 / m_H = 1.2486e20 cm^-2.
    n = gas.hi_column_density(1.0 * u.Msun / u.pc**2)
    expected = MSUN_G / PC_CM**2 / (M_P + 9.1093837e-28)
    assert n.to_value(u.cm**-2) == pytest.approx(expected, rel=1e-6)
    tb = gas.hi_brightness_integral(1.0 * u.Msun / u.pc**2)
    assert tb.to_value(u.K * u.km / u.s) == pytest.approx(expected / 1.823e18, rel=1e-6)


def test_magnetic_field_helpers():
    b = np.array([[3e-6, 4e-6, 0.0], [1e-6, 2e-6, 3e-6]])
    np.testing.assert_allclose(gas.magnetic_field_strength(b), [5e-6, math.sqrt(14) * 1e-6])
    np.testing.assert_allclose(gas.line_of_sight_field(b), [0.0, 3e-6])
    np.testing.assert_allclose(gas.line_of_sight_field(b, [1, 1, 0]),
                               [7e-6 / math.sqrt(2), 3e-6 / math.sqrt(2)])
    g = _gas(magnetic_field=b, sfr=np.array([0.0, 0.5]))
    assert gas.gas_magnetic_field_strength(g).unit == u.G
    assert gas.gas_star_formation_rate(g).unit == u.Msun / u.yr
    with pytest.raises(ValueError, match="magnetic_field"):
        gas.gas_magnetic_field_strength(_gas())


def test_gas_smoothing_length_is_a_multiple_of_the_cell_radius():
    # m = 4/3 pi Msun, rho = 1 Msun/kpc^3 -> cell radius 1 kpc.
    h = smoothing.gas_smoothing_length(np.array([4 / 3 * np.pi]), np.array([1.0]))
    assert h[0] == pytest.approx(2.5, rel=1e-12)
    with pytest.raises(ValueError):
        smoothing.gas_smoothing_length(np.array([1.0]), np.array([0.0]))


def test_knn_smoothing_length_on_a_lattice():
    # On a unit cubic lattice the 6 nearest neighbours sit at distance 1, the next 12 at
    # sqrt(2): k = 6 gives 1 and k = 18 gives sqrt(2) for an interior point.
    g = np.arange(5.0)
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    centre = np.flatnonzero((pos == 2).all(axis=1))[0]
    assert smoothing.knn_smoothing_length(pos, k=6)[centre] == pytest.approx(1.0)
    assert smoothing.knn_smoothing_length(pos, k=18)[centre] == pytest.approx(math.sqrt(2))
    assert smoothing.knn_smoothing_length(pos[:1]).tolist() == [0.0]


def test_knn_smoothing_length_does_not_depend_on_threads():
    # Maps must be bit-reproducible across thread counts: each query is independent.
    pos = np.random.default_rng(1).normal(size=(20_000, 3))
    np.testing.assert_array_equal(smoothing.knn_smoothing_length(pos, 32, workers=1),
                                  smoothing.knn_smoothing_length(pos, 32, workers=4))


def test_smoothing_length_dispatch():
    stars = _gas(coordinates=np.random.default_rng(0).normal(size=(100, 3)), masses=np.ones(100))
    assert smoothing.smoothing_length(stars, k=8).shape == (100,)
    stars.hsml = np.full(100, 0.3)
    assert np.all(smoothing.smoothing_length(stars) == 0.3)
    # Stars ignore SubfindHsml (a dark-matter length) for their own k-th neighbour distance.
    np.testing.assert_array_equal(smoothing.smoothing_length(stars, k=8, stars=True),
                                  smoothing.knn_smoothing_length(stars.coordinates, k=8))
    cells = _gas(masses=np.array([4 / 3 * np.pi]), density=np.array([1.0]))
    assert smoothing.smoothing_length(cells, gas_factor=2.0)[0] == pytest.approx(2.0)
