"""The dynamics check: rotation-curve readers, halo profiles, fits, projections and the
comparison of a dark-matter map with the haloes fitted to the galaxy's rotation curve.

Every number is compared with an independent one: analytic enclosed masses against a
numerical integral of the density, the projections against a direct double integral of
:math:`\\rho` along the line of sight, the fits against haloes of known parameters, the
reader against the file's own text, and the whole check against a synthetic galaxy whose
particles give both its true dark-matter map and its true rotation curve.
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import integrate

from alchemy_obs import AlchemyObsError
from alchemy_obs.dynamics import (
    NFW,
    Burkert,
    DynamicsError,
    PseudoIsothermal,
    RotationCurve,
    dynamics_check,
    fit_halo,
    map_enclosed_mass,
    read_mass_map,
    read_rotation_curve,
    read_sparc_rotmod,
)
from alchemy_obs.dynamics.fit import default_cosmology
from alchemy_obs.dynamics.haloes import G_KPC

KMS = u.km / u.s
DENSITY = u.Msun / u.kpc**3
SURFACE = u.Msun / u.kpc**2
RHO_C = default_cosmology().critical_density(0)


# --- haloes ---------------------------------------------------------------------------

def _numerical_mass(halo, r: float) -> float:
    return integrate.quad(lambda s: 4 * math.pi * s**2 * float(halo._density(s)), 0, r,
                          epsrel=1e-11, limit=200)[0]


def test_enclosed_masses_match_the_analytic_formulas():
    """NFW: 4 pi rho_s r_s^3 [ln(1+x) - x/(1+x)]; Burkert: pi rho_0 r_0^3 [2 ln(1+x) +
    ln(1+x^2) - 2 arctan x]; pseudo-isothermal: 4 pi rho_0 r_c^3 (x - arctan x), each
    also equal to the numerical integral of its density."""
    r = np.array([0.3, 2.0, 8.0, 40.0, 150.0])
    nfw = NFW(1e7 * DENSITY, 8.0 * u.kpc)
    bur = Burkert(3e7 * DENSITY, 4.0 * u.kpc)
    iso = PseudoIsothermal(5e7 * DENSITY, 2.0 * u.kpc)
    x = r / 8.0
    analytic = 4 * math.pi * 1e7 * 8.0**3 * (np.log(1 + x) - x / (1 + x))
    np.testing.assert_allclose(nfw.enclosed_mass(r * u.kpc).to_value(u.Msun), analytic, rtol=1e-12)
    x = r / 4.0
    analytic = math.pi * 3e7 * 4.0**3 * (2 * np.log(1 + x) + np.log(1 + x**2) - 2 * np.arctan(x))
    np.testing.assert_allclose(bur.enclosed_mass(r * u.kpc).to_value(u.Msun), analytic, rtol=1e-12)
    x = r / 2.0
    analytic = 4 * math.pi * 5e7 * 2.0**3 * (x - np.arctan(x))
    np.testing.assert_allclose(iso.enclosed_mass(r * u.kpc).to_value(u.Msun), analytic, rtol=1e-12)
    for halo in (nfw, bur, iso):
        numerical = [_numerical_mass(halo, v) for v in r]
        np.testing.assert_allclose(halo.enclosed_mass(r * u.kpc).to_value(u.Msun), numerical,
                                   rtol=1e-8)
        v = halo.circular_velocity(r * u.kpc).to_value(KMS)
        np.testing.assert_allclose(v**2, G_KPC * np.array(numerical) / r, rtol=1e-8)


def test_nfw_from_m200_has_that_mass_and_concentration():
    halo = NFW.from_m200(3e11 * u.Msun, 11.0, RHO_C)
    r200 = halo.r200(RHO_C)
    mean = halo.enclosed_mass(r200) / (4 / 3 * math.pi * r200**3)
    assert u.isclose(mean, 200 * RHO_C, rtol=1e-9)
    assert u.isclose(halo.m200(RHO_C), 3e11 * u.Msun, rtol=1e-9)
    assert halo.concentration(RHO_C) == pytest.approx(11.0, rel=1e-9)


def _direct_projected_mass(halo, big_r: float, half_depth: float, r_t: float) -> float:
    """Mass in the cylinder R < big_r, |z| < half_depth, r < r_t: the double integral of
    rho over R' and z, independent of the shell formula that the package uses."""
    def column(rp: float) -> float:
        z_max = min(half_depth, math.sqrt(max(r_t**2 - rp**2, 0.0)))
        if z_max <= 0:
            return 0.0
        f = lambda z: float(halo._density(math.hypot(rp, z)))  # noqa: E731
        knee = min(z_max, 20 * max(rp, 0.05))
        parts = [(0.0, knee)] + ([(knee, z_max)] if z_max > knee else [])
        return 2 * sum(integrate.quad(f, a, b, epsrel=1e-10, limit=400)[0] for a, b in parts)

    return integrate.quad(lambda rp: 2 * math.pi * rp * column(rp), 0.0, big_r,
                          epsrel=1e-8, limit=200)[0]


@pytest.mark.parametrize("halo", [NFW(1e7 * DENSITY, 8.0 * u.kpc),
                                  Burkert(3e7 * DENSITY, 4.0 * u.kpc),
                                  PseudoIsothermal(5e7 * DENSITY, 2.0 * u.kpc)],
                         ids=["nfw", "burkert", "iso"])
@pytest.mark.parametrize("depth", [None, 30.0], ids=["whole", "slab30"])
def test_projection_matches_a_direct_line_of_sight_integral(halo, depth):
    """Cylinders inside and beyond the slab's half-depth and up to past the truncation."""
    r_t = 120.0
    radii = np.array([1.0, 10.0, 25.0, 130.0])
    got = halo.projected_mass(radii * u.kpc, depth=None if depth is None else depth * u.kpc,
                              truncation=r_t * u.kpc).to_value(u.Msun)
    half = math.inf if depth is None else depth / 2
    direct = [_direct_projected_mass(halo, r, half, r_t) for r in radii]
    np.testing.assert_allclose(got, direct, rtol=1e-3)
    # Past the truncation radius the whole sphere (or its slab) is inside the cylinder.
    if depth is None:
        assert got[-1] == pytest.approx(_numerical_mass(halo, r_t), rel=1e-8)


def test_surface_density_matches_a_direct_integral():
    halo = Burkert(3e7 * DENSITY, 4.0 * u.kpc)
    radii = np.array([0.5, 5.0, 20.0])
    got = halo.surface_density(radii * u.kpc, depth=40 * u.kpc, truncation=100 * u.kpc)
    direct = [2 * integrate.quad(lambda z: float(halo._density(math.hypot(r, z))), 0, 20.0,
                                 epsrel=1e-11)[0] for r in radii]
    np.testing.assert_allclose(got.to_value(SURFACE), direct, rtol=1e-6)


# --- rotation curves and fits ---------------------------------------------------------

def _baryons(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An exponential-disc-like stellar curve (at M/L = 1), a gas curve with a central hole
    (negative: it pulls outwards) and a small bulge, in km/s."""
    v_disk = 110 * np.sqrt(r / 3.0) * np.exp(-r / 6.0) + 20
    v_gas = 30 * np.tanh((r - 1.0) / 2.0)
    v_bulge = 40 * np.exp(-r / 1.5)
    return v_gas, v_disk, v_bulge


def _curve_of(halo, ml_disk: float = 0.5, ml_bulge: float = 0.7) -> RotationCurve:
    r = np.geomspace(0.5, 25.0, 30)
    v_gas, v_disk, v_bulge = _baryons(r)
    v_h2 = halo.circular_velocity(r * u.kpc).to_value(KMS) ** 2
    v_obs = np.sqrt(v_h2 + v_gas * np.abs(v_gas) + ml_disk * v_disk**2 + ml_bulge * v_bulge**2)
    return RotationCurve(r * u.kpc, v_obs * KMS, 0.03 * v_obs * KMS, v_gas * KMS,
                         v_disk * KMS, v_bulge * KMS, 5.0 * u.Mpc, "analytic")


def test_fits_recover_known_nfw_and_burkert_haloes():
    """Noise-free curves with baryons under them: parameters back to 2 %."""
    nfw = NFW.from_m200(2e11 * u.Msun, 12.0, RHO_C)
    fit = fit_halo(_curve_of(nfw), "nfw", ml_disk=0.5, ml_bulge=0.7)
    assert fit.parameters["m200"].to_value(u.Msun) == pytest.approx(2e11, rel=0.02)
    assert fit.parameters["c"].to_value(u.one) == pytest.approx(12.0, rel=0.02)
    assert fit.chi2 < 1e-6 and fit.dof == 28

    bur = Burkert(4e7 * DENSITY, 5.0 * u.kpc)
    fit = fit_halo(_curve_of(bur), "burkert", ml_disk=0.5, ml_bulge=0.7)
    assert fit.parameters["rho0"].to_value(DENSITY) == pytest.approx(4e7, rel=0.02)
    assert fit.parameters["r0"].to_value(u.kpc) == pytest.approx(5.0, rel=0.02)
    assert fit.m200.to_value(u.Msun) == pytest.approx(bur.m200(RHO_C).to_value(u.Msun), rel=0.02)

    iso = PseudoIsothermal(6e7 * DENSITY, 1.5 * u.kpc)
    fit = fit_halo(_curve_of(iso), "iso")
    assert fit.parameters["rc"].to_value(u.kpc) == pytest.approx(1.5, rel=0.02)


def test_fit_at_the_wrong_mass_to_light_ratio_is_biased_the_right_way():
    """More disc leaves less room for the halo: the band of the check is ordered."""
    curve = _curve_of(NFW.from_m200(2e11 * u.Msun, 12.0, RHO_C), ml_disk=0.5)
    light = fit_halo(curve, "nfw", ml_disk=0.3).halo.enclosed_mass(10 * u.kpc)
    heavy = fit_halo(curve, "nfw", ml_disk=0.7).halo.enclosed_mass(10 * u.kpc)
    assert light > heavy


def test_sparc_reader_on_the_real_ngc2403_file(shared_data):
    path = shared_data / "real" / "NGC2403_rotmod.dat"
    curve = read_sparc_rotmod(path)
    assert curve.distance == 3.16 * u.Mpc
    assert curve.radius.size == 73 and curve.name == "NGC2403_rotmod.dat"
    # First, 27th and last rows as the file writes them.
    for i, row in ((0, (0.16, 24.50, 2.83, 0.00, 23.21, 0.00)),
                   (26, (2.78, 98.20, 1.60, 9.95, 103.80, 0.00)),
                   (72, (20.87, 134.00, 3.12, 39.87, 45.97, 0.00))):
        got = (curve.radius[i].to_value(u.kpc), curve.v_obs[i].to_value(KMS),
               curve.v_err[i].to_value(KMS), curve.v_gas[i].to_value(KMS),
               curve.v_disk[i].to_value(KMS), curve.v_bulge[i].to_value(KMS))
        assert got == pytest.approx(row, abs=1e-9)
    v_dm2 = curve.dm_velocity_squared(0.5, 0.7)[72].to_value(KMS**2)
    assert v_dm2 == pytest.approx(134.0**2 - 39.87**2 - 0.5 * 45.97**2, rel=1e-12)
    assert read_rotation_curve(path).radius.size == 73


def test_csv_reader_keeps_the_sign_of_a_gas_hole(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text("# distance = 8.5 Mpc\nr,v,err,v_gas,v_disk\n"
                    "1.0,50,2,-5,40\n2.0,80,2,10,60\n3.0,90,3,15,62\n")
    curve = read_rotation_curve(path)
    assert curve.distance == 8.5 * u.Mpc
    assert curve.v_bulge.to_value(KMS).tolist() == [0, 0, 0]
    bar2 = curve.baryon_velocity_squared(0.5, 0.7).to_value(KMS**2)
    np.testing.assert_allclose(bar2, [-25 + 0.5 * 1600, 100 + 0.5 * 3600, 225 + 0.5 * 62**2])
    # Distance: radii scale as D, baryonic V^2 = GM/r as D (M from fluxes goes as D^2).
    far = curve.at_distance(17.0 * u.Mpc)
    np.testing.assert_allclose(far.radius.to_value(u.kpc), [2, 4, 6])
    np.testing.assert_allclose(far.baryon_velocity_squared(0.5, 0.7).to_value(KMS**2), 2 * bar2)
    np.testing.assert_allclose(far.v_obs.to_value(KMS), [50, 80, 90])


@pytest.mark.parametrize("text, needle", [
    ("r,v,err,v_disk\n1,2,3,4\n2,3,4,5\n3,4,5,6\n", "no v_gas column"),
    ("r,v,err,v_gas,v_disk\n1,2,3,4,5\n2,3,x,5,6\n3,4,5,6,7\n", "row 3"),
    ("r,v,err,v_gas,v_disk\n1,2,3,4,5\n3,3,4,5,6\n2,4,5,6,7\n", "increasing"),
    ("r,v,err,v_gas,v_disk\n1,2,0,4,5\n2,3,4,5,6\n3,4,5,6,7\n", "error must be > 0"),
])
def test_csv_reader_errors_name_the_file_and_problem(tmp_path, text, needle):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DynamicsError, match=needle) as info:
        read_rotation_curve(path)
    assert isinstance(info.value, AlchemyObsError)
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)


# --- maps ------------------------------------------------------------------------------

def _sky_map(path, data, pixel_kpc: float, distance_mpc: float, **cards):
    """A square map on a TAN grid centred between its middle pixels, in Msun/kpc^2."""
    n = data.shape[0]
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 30.0]
    wcs.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    step = math.degrees(pixel_kpc / (distance_mpc * 1e3))
    wcs.wcs.cdelt = [-step, step]
    header = wcs.to_header()
    header["BUNIT"] = "solMass kpc-2"
    header["DISTANCE"] = distance_mpc
    header.update(cards)
    fits.PrimaryHDU(np.asarray(data, np.float32), header).writeto(path)
    return path


def test_map_mass_in_cylinders_is_exact_for_a_uniform_map(tmp_path):
    """pi R^2 Sigma to 0.3 % for cylinders of 3 to 15 pixels; beyond the edge: no mass."""
    path = _sky_map(tmp_path / "flat.fits", np.full((32, 32), 2e7), 0.5, 10.0)
    m = read_mass_map(path, centre="header")
    got = map_enclosed_mass(m, [1.5, 4.0, 7.5, 9.0] * u.kpc)
    np.testing.assert_allclose(got.mass.to_value(u.Msun)[:3],
                               math.pi * np.array([1.5, 4.0, 7.5]) ** 2 * 2e7, rtol=3e-3)
    assert got.edge.to_value(u.kpc) == pytest.approx(8.0, rel=1e-4)
    assert got.status.tolist() == ["ok", "ok", "ok", "outside map"]
    assert np.isnan(got.mass[3])


def test_masked_radii_are_reported_not_filled(tmp_path):
    """A blank pixel at 6 kpc: cylinders that reach it are 'masked' with NaN mass and the
    mass on the rest kept apart; smaller ones are untouched."""
    data = np.full((32, 32), 2e7)
    data[16, 16 + 12] = np.nan  # 12.5 pixels = 6.25 kpc east of the centre
    path = _sky_map(tmp_path / "holed.fits", data, 0.5, 10.0)
    m = read_mass_map(path, centre="header")
    got = map_enclosed_mass(m, [3.0, 5.5, 7.0] * u.kpc)
    assert got.status.tolist() == ["ok", "ok", "masked"]
    assert np.isnan(got.mass[2]) and np.isfinite(got.mass[:2]).all()
    assert got.masked_fraction[2] == pytest.approx(0.25 / (math.pi * 49), rel=0.05)
    assert got.covered_mass[2].to_value(u.Msun) == pytest.approx(
        (math.pi * 49 - 0.25) * 2e7, rel=3e-3)

    curve = _curve_of(NFW.from_m200(2e11 * u.Msun, 12.0, RHO_C))
    check = dynamics_check(m, curve, radius=[3.0, 7.0] * u.kpc, haloes=("nfw",))
    table = check.table()
    assert table["status"].tolist() == ["ok", "masked"]
    assert np.isnan(table["m_pred"][1]) and np.isnan(table["dex_nfw"][1])
    assert np.isfinite(table["m_nfw"]).all()
    assert "masked" in check.summary().splitlines()[-1]


def test_check_projects_through_the_slab_and_moves_the_curve_to_the_map(tmp_path):
    """A slab depth reaches the projection (less mass than the whole halo), and a curve
    at 5 Mpc is moved to the map's 10 Mpc before the fit (radii double)."""
    path = _sky_map(tmp_path / "flat.fits", np.full((32, 32), 2e7), 0.5, 10.0)
    m = read_mass_map(path, centre="header")
    curve = _curve_of(NFW.from_m200(2e11 * u.Msun, 12.0, RHO_C))
    radii = [3.0, 6.0] * u.kpc
    whole = dynamics_check(m, curve, radius=radii, haloes=("nfw",))
    slab = dynamics_check(m, curve, radius=radii, haloes=("nfw",), depth=20 * u.kpc)
    assert whole.curve.distance == 10 * u.Mpc
    np.testing.assert_allclose(whole.curve.radius.to_value(u.kpc),
                               2 * curve.radius.to_value(u.kpc))
    fit = slab.fits["nfw"]["nominal"]
    np.testing.assert_allclose(
        slab.dynamical["nfw"][0].to_value(u.Msun),
        fit.halo.projected_mass(radii, depth=20 * u.kpc, truncation=fit.r200).to_value(u.Msun))
    assert np.all(slab.dynamical["nfw"][0] < whole.dynamical["nfw"][0])
    assert "slab of 20 kpc" in slab.table().meta["line_of_sight"]


@pytest.mark.parametrize("bunit, needle", [("Jy/beam", "not a surface density"),
                                           (None, "no BUNIT")])
def test_map_reader_refuses_other_units(tmp_path, bunit, needle):
    path = _sky_map(tmp_path / "m.fits", np.ones((8, 8)), 1.0, 10.0)
    with fits.open(path, mode="update") as hdul:
        if bunit is None:
            del hdul[0].header["BUNIT"]
        else:
            hdul[0].header["BUNIT"] = bunit
    with pytest.raises(DynamicsError, match=needle):
        read_mass_map(path)


# --- the check against a galaxy whose truth is known ------------------------------------

@pytest.fixture(scope="module")
def synthetic_truth(tmp_path_factory):
    """A synthetic galaxy's true dark-matter map on a sky WCS, its true rotation curve
    from the particles (v_c^2 = G M(<r) / r, split into dark matter, gas and stars) and
    its true projected dark-matter mass, counted from the particles.

    The map is the one the maps stage renders from the particles, placed directly on a
    sky grid at 10 Mpc: running it through mock HI and ``infer`` first would test the
    translator, not this check, and take minutes.
    """
    from alchemy_obs.config import MapsConfig
    from alchemy_obs.maps.render import render_view
    from alchemy_obs.sim.galaxy import load_galaxy
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    root = tmp_path_factory.mktemp("truth")
    # No merging companion: a second halo in the field is not in the rotation curve.
    galaxy = load_galaxy(make_synthetic_cutout(root / "cutout_3.hdf5", 3, 40000, 3,
                                               merger_fraction=0.0))
    npix, pixel_kpc = 64, 1.0
    maps, _ = render_view(galaxy, np.eye(3), MapsConfig(npix=npix, pixel_kpc=pixel_kpc,
                                                         domains=["dm"]))
    path = _sky_map(root / "true_dm.fits", maps["dm"].to_value(SURFACE), pixel_kpc, 10.0,
                    CENLON=150.0, CENLAT=30.0)

    r = np.geomspace(1.0, 30.0, 25)

    def v_circ(particles):
        d = np.linalg.norm(particles.coordinates, axis=1)
        return np.sqrt(G_KPC * np.array([particles.masses[d < x].sum() for x in r]) / r)

    v_dm, v_gas, v_star = v_circ(galaxy.dm), v_circ(galaxy.gas), v_circ(galaxy.stars)
    v_obs = np.sqrt(v_dm**2 + v_gas**2 + v_star**2)
    curve_path = root / "curve.csv"
    rows = "\n".join(",".join(f"{x:.8g}" for x in row)
                     for row in zip(r, v_obs, 0.03 * v_obs, v_gas, v_star))
    curve_path.write_text(f"# distance = 10 Mpc\nr,v,err,v_gas,v_disk\n{rows}\n")
    radii = np.array([5.0, 10.0, 20.0, 30.0])
    projected = np.hypot(galaxy.dm.coordinates[:, 0], galaxy.dm.coordinates[:, 1])
    true_mass = np.array([galaxy.dm.masses[projected < x].sum() for x in radii])
    return path, curve_path, radii * u.kpc, true_mass * u.Msun, galaxy.redshift


def test_check_recovers_a_synthetic_galaxys_true_projected_mass(synthetic_truth):
    """The true map against its own rotation curve: the NFW fit (the synthetic halo is an
    NFW) projected through the whole halo gives the true projected mass, and the map's,
    within 5 % from 5 to 30 kpc."""
    path, curve_path, radii, true_mass, redshift = synthetic_truth
    check = dynamics_check(read_mass_map(path), read_rotation_curve(curve_path), radius=radii,
                           haloes=("nfw",), ml_disk=1.0, ml_disk_range=(1.0, 1.0),
                           redshift=redshift)
    assert check.enclosed.status.tolist() == ["ok"] * 4
    np.testing.assert_allclose(check.dynamical["nfw"][0].to_value(u.Msun),
                               true_mass.to_value(u.Msun), rtol=0.05)
    np.testing.assert_allclose(check.enclosed.mass.to_value(u.Msun),
                               true_mass.to_value(u.Msun), rtol=0.05)
    assert np.all(np.abs(check.offset_dex("nfw")) < math.log10(1.05))


def test_command_writes_the_table_and_figure(synthetic_truth, tmp_path, capsys):
    """``alchemy-obs dynamics-check``: the table holds the library's numbers and the
    mass-to-light band brackets the nominal fit."""
    from astropy.table import QTable

    from alchemy_obs.cli import main

    path, curve_path, radii, _, _ = synthetic_truth
    out = tmp_path / "out"
    status = main(["dynamics-check", str(path), "--curve", str(curve_path), "--out", str(out),
                   "--radii", "5,10,40", "--haloes", "nfw,burkert", "--ml-disk", "1",
                   "--ml-range", "0.8,1.2", "-q"])
    assert status == 0
    assert "NFW" in capsys.readouterr().out
    table = QTable.read(out / "true_dm_dynamics.ecsv")
    assert (out / "true_dm_dynamics.png").stat().st_size > 10_000
    assert table["status"].tolist() == ["ok", "ok", "outside map"]
    assert table["beyond_curve"].tolist() == [False, False, True]
    check = dynamics_check(read_mass_map(path), read_rotation_curve(curve_path),
                           radius=[5.0, 10.0, 40.0] * u.kpc, ml_disk=1.0,
                           ml_disk_range=(0.8, 1.2))
    np.testing.assert_allclose(table["m_nfw"][:2].to_value(u.Msun),
                               check.dynamical["nfw"][0, :2].to_value(u.Msun), rtol=1e-5)
    for model in ("nfw", "burkert"):
        assert np.all(table[f"m_{model}_lo"] <= table[f"m_{model}"])
        assert np.all(table[f"m_{model}"] <= table[f"m_{model}_hi"])
    assert table.meta["fits"]["nfw"]["high"]["ml_disk"] == 1.2


def test_command_refuses_a_map_that_is_not_a_mass(tmp_path, capsys):
    from alchemy_obs.cli import main

    path = _sky_map(tmp_path / "hi.fits", np.ones((8, 8)), 1.0, 10.0, BUNIT="Jy/beam")
    curve = tmp_path / "c.csv"
    curve.write_text("r,v,err,v_gas,v_disk\n1,2,3,4,5\n2,3,4,5,6\n3,4,5,6,7\n")
    status = main(["dynamics-check", str(path), "--curve", str(curve), "--out",
                   str(tmp_path / "o")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1 and "hi.fits" in err[0] and "Jy/beam" in err[0]
    assert not (tmp_path / "o").exists()


class _TrueMapOracle:
    """A 'translator' that ignores its input and returns the galaxy's true dark-matter map
    on the model grid: infer's grid, resampling and header handling are then all that
    stands between the truth and the check.

    The model grid is centred on the cube's reference position (``centre="header"``), where
    the mock put the galaxy's centre. Cylinder masses about that centre do not depend on
    the map's orientation on the sky, so the oracle need not know it.
    """

    stochastic = False

    def __init__(self, dm_normalised):
        import torch

        self.device = torch.device("cpu")
        self.truth = torch.as_tensor(dm_normalised, dtype=torch.float32)[None, None]

    def sample(self, condition, steps=None, generator=None):
        return self.truth.expand(condition.shape[0], 1, *self.truth.shape[-2:]).clone()


@pytest.mark.slow
def test_oracle_through_the_mock_cube_and_infer_recovers_the_true_mass(synthetic_truth, tmp_path):
    """The galaxy's own mock HI cube (SKA-MID, fast mode, 10 Mpc, noise off) through
    ``infer`` with the translator replaced by the true map, then the check with the true
    rotation curve: the predicted mass in cylinders of 5-30 kpc is the true projected mass
    within 5 %."""
    from alchemy_obs.config import MapsConfig, load_config
    from alchemy_obs.infer.pipeline import Translator, infer_file
    from alchemy_obs.maps.geometry import face_on_matrix
    from alchemy_obs.maps.render import render_view
    from alchemy_obs.observe.fits import write_mock_products
    from alchemy_obs.observe.mock import mock_view_maps
    from alchemy_obs.sim.galaxy import load_galaxy
    from alchemy_obs.translate.normalise import DomainScaling, Normalisation

    _, curve_path, radii, true_mass, redshift = synthetic_truth
    galaxy = load_galaxy(curve_path.parent / "cutout_3.hdf5")
    rotation = face_on_matrix(galaxy.stellar_angular_momentum())
    cfg = load_config(None, ["mock.products=[hi]", "mock.distance_mpc=10", "mock.npix=96",
                             "observe.mode=fast", "observe.noise=false"])
    half = 40.0
    _, mocks = mock_view_maps(galaxy, rotation, (-half, half, -half, half), map_npix=cfg.mock.npix,
                              mock=cfg.mock, observe=cfg.observe, maps=cfg.maps)
    write_mock_products(mocks, tmp_path, "g3", object_name="g3")
    cube = tmp_path / "g3_hi_image.fits"

    npix, pixel_kpc, scale = 80, 1.0, 1e7
    maps, _ = render_view(galaxy, rotation, MapsConfig(npix=npix, pixel_kpc=pixel_kpc,
                                                       domains=["dm"]))
    norm = Normalisation({"hi_nhi": DomainScaling("hi_nhi", False, 0.0, 0.0, 1e20),
                          "dm": DomainScaling("dm", False, 0.0, 0.0, scale)})
    card = {"inputs": ["hi_nhi"], "target": "dm", "method": "true-map oracle",
            "units": {"hi_nhi": "1 / cm2", "dm": "solMass / kpc2"},
            "normalisation": norm.to_dict(), "npix": npix, "pixel_kpc": pixel_kpc}
    oracle = Translator(_TrueMapOracle(maps["dm"].to_value(SURFACE) / scale), card,
                        "oracle", "test")
    result = infer_file(cube, oracle, tmp_path / "inferred", centre="header", coverage="centre")

    check = dynamics_check(read_mass_map(result.output), read_rotation_curve(curve_path),
                           radius=radii, haloes=("nfw",), ml_disk=1.0,
                           ml_disk_range=(1.0, 1.0), redshift=redshift)
    assert check.enclosed.status.tolist() == ["ok"] * len(radii)
    np.testing.assert_allclose(check.enclosed.mass.to_value(u.Msun),
                               true_mass.to_value(u.Msun), rtol=0.05)
    assert np.all(np.abs(check.offset_dex("nfw")) < math.log10(1.05))
