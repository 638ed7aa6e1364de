"""Sky models: flux and mass conservation, line profiles, velocities, geometry, continuum."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import Planck15
from scipy.special import erf

from alchemy_obs.maps.kernels import projected_kernel
from alchemy_obs.maps.project import project_particles
from alchemy_obs.observe.sky import (
    ContinuumModel,
    ContinuumSource,
    HISource,
    LineModel,
    SkyGrid,
    SkyPlacement,
    SpectralAxis,
    continuum_image,
    hi_cube,
    thermal_sigma,
)
from alchemy_obs.physics import radio

C_KMS = 299792.458
NU0 = 1420405751.768


def _disc(n=3000, seed=0, temperature=8000.0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.0, 4.0, (n, 3))
    pos[:, 2] *= 0.15
    # Solid-body-ish rotation in the x-y plane plus dispersion.
    vel = np.stack([-pos[:, 1] * 20, pos[:, 0] * 20, np.zeros(n)], 1) + rng.normal(0, 10, (n, 3))
    return HISource(
        positions=pos * u.kpc,
        velocities=vel * u.km / u.s,
        hi_mass=rng.uniform(1e4, 1e5, n) * u.Msun,
        smoothing_length=rng.uniform(0.2, 2.5, n) * u.kpc,
        temperature=np.full(n, temperature) * u.K,
    )


def _single(x=0.0, y=0.0, z=0.0, vz=0.0, h=0.0, t=1e4, m=1e6):
    return HISource(
        positions=[[x, y, z]] * u.kpc,
        velocities=[[0.0, 0.0, vz]] * u.km / u.s,
        hi_mass=[m] * u.Msun,
        smoothing_length=[h] * u.kpc,
        temperature=[t] * u.K,
    )


def test_thermal_sigma_hand_value():
    # sqrt(k 1e4 K / m_H) = sqrt(1.380649e-23 * 1e4 / 1.6735e-27) m/s = 9.083 km/s
    assert thermal_sigma(1e4 * u.K).to_value(u.km / u.s) == pytest.approx(9.083, abs=2e-3)
    assert LineModel(turbulent_sigma=5 * u.km / u.s).sigma(1e4 * u.K).value == pytest.approx(
        math.hypot(9.0828, 5.0), rel=1e-4
    )


def test_placement_distances():
    p = SkyPlacement(distance=10 * u.Mpc, cosmology=Planck15)
    # Planck15: H0 = 67.74, so z ~ D H0 / c = 0.00226 at 10 Mpc.
    assert p.z == pytest.approx(10 * 67.74 / C_KMS, rel=2e-3)
    assert p.angular_diameter_distance.to_value(u.Mpc) == pytest.approx(10 / (1 + p.z) ** 2)
    q = SkyPlacement(redshift=0.1, cosmology=Planck15)
    assert q.luminosity_distance.to_value(u.Mpc) == pytest.approx(
        Planck15.luminosity_distance(0.1).to_value(u.Mpc)
    )
    v = SkyPlacement(redshift=0.01, peculiar_velocity=300 * u.km / u.s)
    assert v.observed_redshift == pytest.approx(1.01 * (1 + 300 / C_KMS) - 1)
    assert v.line_frequency.to_value(u.Hz) == pytest.approx(NU0 / (1 + v.observed_redshift))
    with pytest.raises(ValueError, match="exactly one"):
        SkyPlacement(redshift=0.1, distance=10 * u.Mpc)


@pytest.mark.parametrize("ctype", ["FREQ", "VRAD"])
@pytest.mark.parametrize("redshift", [0.002, 0.05])
def test_cube_recovers_hi_mass(ctype, redshift):
    src = _disc()
    place = SkyPlacement(redshift=redshift, dec=-45 * u.deg)
    grid = SkyGrid(96, 0.6 * u.kpc)
    spec = SpectralAxis(96, 6 * u.km / u.s, ctype=ctype)
    cube = hi_cube(src, place, grid, spec)
    assert cube.data.unit == u.Jy and cube.data.shape == (96, 96, 96)
    # M_HI = 2.356e5 D_L^2 sum(S dv) with dv the radio-velocity channel width.
    s_dv = cube.data.sum() * 6 * u.km / u.s
    m = radio.hi_mass(s_dv * (1 + place.z), place.luminosity_distance, redshift=place.z)
    assert m.to_value(u.Msun) / src.hi_mass.sum().value == pytest.approx(1.0, abs=5e-3)
    by_hand = 2.356e5 * place.luminosity_distance.to_value(u.Mpc) ** 2 * s_dv.to_value(
        u.Jy * u.km / u.s
    )
    assert by_hand / src.hi_mass.sum().value == pytest.approx(1.0, abs=5e-3)


def test_point_particle_spectrum_is_channel_integrated_gaussian():
    place = SkyPlacement(redshift=0.01)
    spec = SpectralAxis(40, 2 * u.km / u.s, ctype="FREQ")
    cube = hi_cube(_single(t=1e4), place, SkyGrid(8, 1 * u.kpc), spec, LineModel(n_sigma=6))
    spectrum = cube.data.sum(axis=(1, 2)).to_value(u.Jy)
    width = NU0 * 2 / C_KMS
    nu_line = NU0 / 1.01
    sigma = nu_line * 9.0828 / C_KMS
    edges = cube.frequencies.to_value(u.Hz)[0] - width / 2 + width * np.arange(41)
    frac = 0.5 * np.diff(erf((edges - nu_line) / (math.sqrt(2) * sigma)))
    total = radio.hi_line_flux(1e6 * u.Msun, place.luminosity_distance).to_value(u.Jy * u.Hz)
    assert np.allclose(spectrum, total * frac / width, rtol=2e-4, atol=1e-9 * spectrum.max())
    # All flux in the single pixel holding the centre (point particle).
    img = cube.data.sum(axis=0).value
    assert img[4, 4] == pytest.approx(img.sum())


def test_channel_fractions_cdf_table_matches_erf():
    # The channel fractions come from an interpolated normal CDF table; it must agree with
    # the erf to 1e-12 everywhere (also far outside the table range) and be exact at 0.
    import numba

    from alchemy_obs.observe.sky import _cdf_at, _gaussian_cdf_table

    @numba.njit
    def cdf(table, t):
        out = np.empty_like(t)
        for i in range(t.size):
            out[i] = _cdf_at(table, t[i])
        return out

    table = _gaussian_cdf_table()
    t = np.concatenate([np.random.default_rng(1).uniform(-9, 9, 20000), [-30.0, 0.0, 30.0]])
    expected = 0.5 * (1 + erf(t / math.sqrt(2)))
    assert np.abs(cdf(table, t) - expected).max() < 1e-12
    assert cdf(table, np.array([0.0]))[0] == 0.5


def test_line_of_sight_velocity_and_hubble_flow_signs():
    place = SkyPlacement(redshift=0.01)
    spec = SpectralAxis(200, 2 * u.km / u.s, ctype="VRAD")

    def centre_velocity(src):
        cube = hi_cube(src, place, SkyGrid(8, 1 * u.kpc), spec)
        s = cube.data.sum(axis=(1, 2)).value
        v = radio.frequency_to_radio_velocity(cube.frequencies).to_value(u.km / u.s)
        return (s * v).sum() / s.sum()

    v0 = centre_velocity(_single())
    # z' points to the observer: v_z' = +100 km/s approaches, radio velocity lower by
    # 100 km/s * nu_sys / nu0 (velocities compose as (1+z)(1+v/c)).
    assert centre_velocity(_single(vz=100.0)) - v0 == pytest.approx(-100 / 1.01, rel=1e-3)
    # 1 Mpc behind the centre recedes with the Hubble flow H(z) * 1 Mpc.
    hz = place.cosmology.H(0.01).to_value(u.km / u.s / u.Mpc)
    assert centre_velocity(_single(z=-1000.0)) - v0 == pytest.approx(hz / 1.01, rel=1e-3)


def test_pixel_position_and_orientation():
    place = SkyPlacement(distance=20 * u.Mpc, ra=150 * u.deg, dec=-30 * u.deg)
    grid = SkyGrid(64, 0.5 * u.kpc)
    cube = hi_cube(_single(x=6.1, y=-3.1, m=1e7), place, grid, SpectralAxis(32, 5 * u.km / u.s))
    img = cube.data.sum(axis=0).value
    row, col = np.unravel_index(np.argmax(img), img.shape)
    # x' = +6.1 kpc is 12.2 pixels to the right of the centre (pixel edge 32): column 44.
    assert (row, col) == (32 - 7, 32 + 12)
    world = cube.wcs.celestial.pixel_to_world(col, row)
    d_a = place.angular_diameter_distance.to_value(u.kpc)
    # +x' is West (RA decreases), +y' is North.
    dra = (world.ra.deg - 150) * math.cos(math.radians(-30)) * 3600
    ddec = (world.dec.deg + 30) * 3600
    pix = 0.5 / d_a * 206264.806
    assert dra == pytest.approx(-(12.5 - 0.0) * pix, rel=2e-3)
    assert ddec == pytest.approx(-(6.5) * pix, rel=2e-3)


def test_spatial_deposit_matches_maps_projection():
    src = _disc(n=2000, seed=3)
    place = SkyPlacement(distance=15 * u.Mpc)
    grid = SkyGrid(80, 0.4 * u.kpc)
    cube = hi_cube(src, place, grid, SpectralAxis(160, 4 * u.km / u.s))
    mom0 = cube.data.sum(axis=0).value
    xyz = src.positions.to_value(u.kpc)
    ref = project_particles(xyz[:, 0], xyz[:, 1], src.smoothing_length.to_value(u.kpc),
                            src.hi_mass.value, (-16, 16, -16, 16), 80)
    ref = ref / ref.sum() * mom0.sum()
    # Same pixel integration as the maps (corner table, pixel-centre rule for large kernels).
    assert np.abs(mom0 - ref).max() < 1e-4 * mom0.max()


def _pixel_integrals(px, py, h, npix):
    """Column kernel integrated over each pixel (pixel units): 8x8 cells of 4x4 Gauss points.

    F comes from a fine table in s of the direct line-of-sight quadrature, independent of
    the tables and rules of maps.kernels.
    """
    s_tab = np.linspace(0.0, 1.0, 20001)
    f_tab = projected_kernel(s_tab)
    g, w = np.polynomial.legendre.leggauss(4)
    t = ((np.arange(8)[:, None] + 0.5 + 0.5 * g[None, :]) / 8).ravel()
    pts = (np.arange(npix)[:, None] + t[None, :]).ravel()
    wts = np.tile(np.tile(w / 16, 8), npix)
    s = np.hypot((pts[None, :] - px) / h, (pts[:, None] - py) / h)
    f = np.interp(s, s_tab, f_tab, right=0.0) / h**2 * wts[None, :] * wts[:, None]
    return f.reshape(npix, t.size, npix, t.size).sum(axis=(1, 3))


@pytest.mark.parametrize(("h_pix", "frac", "tol"), [
    (2.5, (0.6, 0.1), 1e-4),   # corner differences of the cumulative table
    (6.0, (0.3, 0.8), 5e-4),   # pixel-centre rule, Gauss points in the central pixels
    (13.0, (0.2, 0.4), 5e-4),  # above the maps' H_LEVEL, alone: on the cube's own pixels
])
def test_pixel_weights_match_direct_pixel_integrals(h_pix, frac, tol):
    npix = 32
    pixel = 0.25
    src = HISource([[frac[0] * pixel, frac[1] * pixel, 0.0]] * u.kpc, [[0.0, 0.0, 0.0]] * u.km / u.s,
                   [1e6] * u.Msun, [h_pix * pixel] * u.kpc, [1e4] * u.K)
    cube = hi_cube(src, SkyPlacement(redshift=0.01), SkyGrid(npix, pixel * u.kpc),
                   SpectralAxis(16, 5 * u.km / u.s))
    img = cube.data.sum(axis=0).value
    ref = _pixel_integrals(npix / 2 + frac[0], npix / 2 + frac[1], h_pix, npix)
    assert ref.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.abs(img / img.sum() - ref).max() < tol * ref.max()


def test_cube_does_not_depend_on_particle_order():
    # Particles are deposited in raster order of their pixel; the input order, including
    # particles off the grid, must not matter beyond round-off.
    src = _disc(n=1500, seed=4)
    far = HISource(
        positions=np.vstack([src.positions.value, [[40.0, 0, 0], [0, -40.0, 0], [9.0, 9.0, 0]]]) * u.kpc,
        velocities=np.vstack([src.velocities.value, np.zeros((3, 3))]) * u.km / u.s,
        hi_mass=np.concatenate([src.hi_mass.value, [1e5, 1e5, 1e5]]) * u.Msun,
        smoothing_length=np.concatenate([src.smoothing_length.value, [1.0, 1.0, 3.0]]) * u.kpc,
        temperature=np.concatenate([src.temperature.value, [8000.0] * 3]) * u.K,
    )
    perm = np.random.default_rng(0).permutation(len(far.hi_mass))
    shuffled = HISource(far.positions[perm], far.velocities[perm], far.hi_mass[perm],
                        far.smoothing_length[perm], far.temperature[perm])
    place = SkyPlacement(distance=12 * u.Mpc)
    grid = SkyGrid(48, 0.4 * u.kpc)
    spec = SpectralAxis(64, 5 * u.km / u.s)
    a = hi_cube(far, place, grid, spec).data.value
    b = hi_cube(shuffled, place, grid, spec).data.value
    assert np.abs(a - b).max() <= 1e-12 * a.max()
    # The particles at 40 kpc lie off the 19.2 kpc field: nothing of them is deposited.
    c = hi_cube(src, place, grid, spec).data.value
    inner = hi_cube(HISource(far.positions[-1:], far.velocities[-1:], far.hi_mass[-1:],
                             far.smoothing_length[-1:], far.temperature[-1:]), place, grid, spec)
    assert np.abs(a - c - inner.data.value).max() <= 1e-12 * a.max()


def test_truncation_keeps_flux_and_band_edge_cuts_it():
    place = SkyPlacement(redshift=0.01)
    spec = SpectralAxis(30, 2 * u.km / u.s, ctype="FREQ")
    grid = SkyGrid(8, 1 * u.kpc)
    total = radio.hi_line_flux(1e6 * u.Msun, place.luminosity_distance).to_value(u.Jy * u.Hz)
    width = NU0 * 2 / C_KMS
    narrow = hi_cube(_single(), place, grid, spec, LineModel(n_sigma=1.0))
    assert narrow.data.sum().value * width == pytest.approx(total, rel=1e-12)
    assert np.count_nonzero(narrow.data.sum(axis=(1, 2)).value) <= 11
    # Line centred on the lower band edge: half of the flux is outside the cube.
    edge = SpectralAxis(30, 2 * u.km / u.s, centre=place.line_frequency + 15 * width * u.Hz)
    half = hi_cube(_single(), place, grid, edge)
    assert half.data.sum().value * width == pytest.approx(0.5 * total, rel=1e-6)


def test_spectral_wcs():
    place = SkyPlacement(redshift=0.01)
    grid = SkyGrid(8, 1 * u.kpc)
    f = hi_cube(_single(), place, grid, SpectralAxis(10, 100 * u.kHz, ctype="FREQ"))
    nu = f.wcs.spectral.pixel_to_world(np.arange(10))
    assert np.allclose(nu.to_value(u.Hz), f.frequencies.value)
    assert np.all(np.diff(f.frequencies.value) > 0)
    assert f.wcs.wcs.restfrq == NU0
    v = hi_cube(_single(), place, grid, SpectralAxis(10, 5 * u.km / u.s, ctype="VRAD"))
    vel = v.wcs.spectral.pixel_to_world(np.arange(10))
    expected = radio.frequency_to_radio_velocity(v.frequencies)
    assert np.allclose(vel.to_value(u.km / u.s), expected.value, rtol=1e-9)
    assert np.diff(vel.to_value(u.km / u.s)) == pytest.approx(np.full(9, 5.0))


def test_continuum_total_flux_and_diffusion():
    rng = np.random.default_rng(2)
    n = 500
    pos = rng.normal(0, 2.0, (n, 3))
    sfr = rng.uniform(0, 0.01, n)
    src = ContinuumSource(pos * u.kpc, sfr * u.Msun / u.yr, np.full(n, 0.5) * u.kpc)
    place = SkyPlacement(redshift=0.02)
    grid = SkyGrid(128, 0.25 * u.kpc)
    img = continuum_image(src, place, grid, ContinuumModel(diffusion_length=0 * u.kpc))
    expected = radio.sfr_to_flux_density(sfr.sum() * u.Msun / u.yr, 1.4 * u.GHz,
                                         place.luminosity_distance, 0.02)
    assert img.data.sum().to_value(u.Jy) == pytest.approx(expected.to_value(u.Jy), rel=1e-4)
    smooth = continuum_image(src, place, grid, ContinuumModel(diffusion_length=1.5 * u.kpc))
    assert smooth.data.sum().value == pytest.approx(img.data.sum().value, rel=1e-4)

    def variance(a):
        yy, xx = np.indices(a.shape)
        w = a / a.sum()
        mx = (w * xx).sum()
        return (w * (xx - mx) ** 2).sum()

    # Gaussian smoothing adds sigma^2 = (1.5 / 0.25)^2 = 36 pixel^2 to the variance.
    assert variance(smooth.data.value) - variance(img.data.value) == pytest.approx(36.0, rel=0.02)


def test_uniform_sheet_column_density():
    # A face-on sheet of Sigma_HI = 5 Msun/pc^2 must give N_HI = Sigma / m_H = 6.24e20 cm^-2
    # when each pixel's line flux is read as a surface brightness (pixel-sized beam).
    spacing = 0.25
    g = np.arange(-10, 10, spacing) + spacing / 2
    xx, yy = np.meshgrid(g, g)
    n = xx.size
    m = 5e6 * spacing**2  # Msun per particle: 5 Msun/pc^2 * (250 pc)^2
    src = HISource(
        positions=np.stack([xx.ravel(), yy.ravel(), np.zeros(n)], 1) * u.kpc,
        velocities=np.zeros((n, 3)) * u.km / u.s,
        hi_mass=np.full(n, m) * u.Msun,
        smoothing_length=np.full(n, 2 * spacing) * u.kpc,
        temperature=np.full(n, 1e4) * u.K,
    )
    place = SkyPlacement(redshift=0.005)
    grid = SkyGrid(40, 0.5 * u.kpc)
    cube = hi_cube(src, place, grid, SpectralAxis(16, 5 * u.km / u.s))
    width_hz = NU0 * 5 / C_KMS
    pix = grid.pixel_angle(place)
    fwhm = pix * math.sqrt(4 * math.log(2) / math.pi)  # Gaussian beam of one pixel's area
    mom0 = cube.data.sum(axis=0).to_value(u.Jy) * width_hz * u.Jy / u.beam * u.Hz
    nhi = radio.hi_column_density_from_flux(mom0, fwhm, fwhm, redshift=place.z)
    inner = nhi[10:30, 10:30].to_value(u.cm**-2)
    # 5 Msun/pc^2 / m_H, with m_H = 1.6735e-24 g and 1 Msun/pc^2 = 2.0890e-4 g/cm^2
    assert np.median(inner) == pytest.approx(5 * 2.0890e-4 / 1.6735e-24, rel=3e-3)
    assert inner.std() / inner.mean() < 0.01


def test_sources_from_galaxy(tmp_path):
    from alchemy_obs.physics import gas as gas_physics
    from alchemy_obs.sim.galaxy import load_galaxy
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    galaxy = load_galaxy(make_synthetic_cutout(tmp_path / "cutout_1.hdf5", 1, 4000, 5))
    rot = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # 90 degrees about x
    src = HISource.from_galaxy(galaxy, rot)
    m_hi = gas_physics.gas_hi_mass(galaxy.gas, galaxy.redshift).to_value(u.Msun)
    keep = m_hi > 0
    assert src.hi_mass.sum().value == pytest.approx(m_hi.sum(), rel=1e-12)
    assert np.allclose(src.positions.value, galaxy.gas.coordinates[keep] @ rot.T)
    assert np.allclose(src.velocities.value, galaxy.gas.velocities[keep] @ rot.T)
    sf = galaxy.gas.sfr[keep] > 0
    assert np.all(src.temperature.value[sf] == 1e4)
    cont = ContinuumSource.from_galaxy(galaxy, rot)
    assert cont.sfr.sum().value == pytest.approx(galaxy.gas.sfr.sum(), rel=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="ctype"):
        SpectralAxis(8, 5 * u.km / u.s, ctype="VOPT")
    with pytest.raises(ValueError, match="channel_width"):
        SpectralAxis(8, -5 * u.km / u.s)
    with pytest.raises(u.UnitsError, match="pixel_size"):
        SkyGrid(32, 1 * u.Jy)
    with pytest.raises(ValueError, match="redshift must be > 0"):
        SkyPlacement(redshift=0.0)
    with pytest.raises(ValueError, match=r"positions must have shape \(2, 3\)"):
        HISource([[0, 0, 0]] * u.kpc, [[0, 0, 0], [0, 0, 0]] * u.km / u.s, [1, 1] * u.Msun,
                 [1, 1] * u.kpc, [1e4, 1e4] * u.K)
    with pytest.raises(ValueError, match="n_sigma"):
        LineModel(n_sigma=0)
    with pytest.raises(ValueError, match="positions has non-finite"):
        HISource([[np.nan, 0, 0]] * u.kpc, [[0, 0, 0]] * u.km / u.s, [1] * u.Msun, [1] * u.kpc,
                 [1e4] * u.K)
    with pytest.raises(ValueError, match="smoothing_length must be >= 0"):
        HISource([[0, 0, 0]] * u.kpc, [[0, 0, 0]] * u.km / u.s, [1] * u.Msun, [-1] * u.kpc,
                 [1e4] * u.K)


def test_default_cosmic_ray_smoothing_is_a_few_hundred_pc():
    """Murphy et al. (2006, 2008): cosmic-ray electrons diffuse a few hundred pc (0.1-1 kpc)
    from their star-forming regions. The default kernel, measured from the image of one
    compact star-forming region, has a FWHM in that range (it was 2.35 kpc)."""
    src = ContinuumSource(np.zeros((1, 3)) * u.kpc, [0.1] * u.Msun / u.yr, [0.05] * u.kpc)
    place = SkyPlacement(distance=20 * u.Mpc)
    grid = SkyGrid(64, 0.1 * u.kpc)
    img = continuum_image(src, place, grid, ContinuumModel()).data.value
    yy, xx = np.indices(img.shape)
    w = img / img.sum()
    sigma_kpc = np.sqrt((w * (xx - (w * xx).sum()) ** 2).sum()) * 0.1
    assert 0.1 <= np.sqrt(8 * np.log(2)) * sigma_kpc <= 1.0


def _wide_kernels(h_pix, copies, npix=96, pixel=0.25):
    """``copies`` coincident particles of 1e6 Msun in all, support ``h_pix`` pixels: moment 0,
    spectrum and cube of :func:`hi_cube`, the flux it should hold, and the maps' arguments."""
    place = SkyPlacement(redshift=0.01)
    one = _single(x=0.13, y=-0.41, h=h_pix * pixel, m=1e6 / copies)
    src = HISource(*(np.repeat(getattr(one, k), copies, axis=0) for k in (
        "positions", "velocities", "hi_mass", "smoothing_length", "temperature")))
    data = hi_cube(src, place, SkyGrid(npix, pixel * u.kpc),
                   SpectralAxis(24, 4 * u.km / u.s)).data.value
    total = radio.hi_line_flux(1e6 * u.Msun, place.luminosity_distance).to_value(u.Jy * u.Hz)
    px, py = npix / 2 + 0.13 / pixel, npix / 2 - 0.41 / pixel
    return data, total / (NU0 * 4 / C_KMS), ([px], [py], [h_pix], [1.0], (0, npix, 0, npix), npix)


def _assert_every_pixel_keeps_the_spectrum(data):
    moment0 = data.sum(axis=0)
    spectrum = data.sum(axis=(1, 2))
    lit = moment0 > 1e-6 * moment0.max()
    profile = data[:, lit] / moment0[lit]
    np.testing.assert_allclose(profile, np.broadcast_to((spectrum / spectrum.sum())[:, None],
                                                        profile.shape), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("h_pix", [12.0, 31.0])
def test_few_wide_kernels_are_integrated_exactly_over_the_cube_pixels(h_pix):
    # Wider than the maps' H_LEVEL, but prolonging the whole cube would cost more than
    # depositing one kernel on its 24^2 to 62^2 pixels: the kernel is integrated exactly
    # over the cube's own pixels (the maps' exact=True map), and keeps its flux.
    data, flux, args = _wide_kernels(h_pix, 1)
    assert data.sum() == pytest.approx(flux, rel=1e-12)
    moment0 = data.sum(axis=0)
    np.testing.assert_allclose(moment0 / moment0.sum(), project_particles(*args, exact=True),
                               rtol=0, atol=1e-12 * moment0.max() / moment0.sum())
    _assert_every_pixel_keeps_the_spectrum(data)


@pytest.mark.parametrize("h_pix", [12.0, 31.0])
def test_many_wide_kernels_go_through_the_pyramid_of_the_maps(h_pix):
    # 600 such kernels cost more pixels times channels than _PROLONG_COST times the
    # 96^2 x 24 cube: they are deposited on a coarser level and prolonged channel by
    # channel. The flux is kept, the moment-0 map is the maps' pyramid map (within 0.5 %,
    # L1, of the exact pixel integrals), and every pixel keeps the particles' spectrum (the
    # prolongation scales with each channel's weight).
    data, flux, args = _wide_kernels(h_pix, 600)
    assert data.sum() == pytest.approx(flux, rel=1e-12)
    moment0 = data.sum(axis=0)
    exact = project_particles(*args, exact=True)
    assert np.abs(moment0 / moment0.sum() - exact).sum() < 5e-3
    # The same deposit as the maps: their pyramid map, not the exact one, to round-off.
    np.testing.assert_allclose(moment0 / moment0.sum(), project_particles(*args), rtol=0,
                               atol=1e-12 * exact.max())
    assert np.abs(moment0 / moment0.sum() - exact).max() > 1e-9 * exact.max()
    _assert_every_pixel_keeps_the_spectrum(data)
