"""Analytic tests of the pixel-integrated SPH projection (alchemy_obs.maps)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from scipy import integrate
from scipy.spatial.transform import Rotation

from alchemy_obs.maps.kernels import KERNELS, kernel_tables, projected_kernel
from alchemy_obs.maps.project import project_particles, surface_density, weighted_average


def _w3d(q: float, kernel: str) -> float:
    """3D kernels written out independently of the package (support radius 1)."""
    if q >= 1.0:
        return 0.0
    if kernel == "cubic_spline":
        return 8 / np.pi * (1 - 6 * q**2 + 6 * q**3 if q < 0.5 else 2 * (1 - q) ** 3)
    return 21 / (2 * np.pi) * (1 - q) ** 4 * (1 + 4 * q)


def _column(s: float, kernel: str) -> float:
    """Projected kernel by adaptive quadrature of the 3D formula above."""
    if s >= 1.0:
        return 0.0
    zmax = np.sqrt(1 - s * s)
    return 2 * integrate.quad(lambda z: _w3d(np.hypot(s, z), kernel), 0, zmax, limit=200)[0]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_normalisation_and_centre(kernel):
    # Central column values by hand: cubic spline 8/pi * 2 * [int_0^1/2 (1-6z^2+6z^3) dz
    # + int_1/2^1 2(1-z)^3 dz] = 16/pi * (3/8) = 6/pi; Wendland C2: 21/pi * 1/3 = 7/pi.
    expected = 6 / np.pi if kernel == "cubic_spline" else 7 / np.pi
    assert projected_kernel(np.array([0.0]), kernel)[0] == pytest.approx(expected, rel=1e-10)
    mass = integrate.quad(lambda s: 2 * np.pi * s * _column(s, kernel), 0, 1, limit=200)[0]
    assert mass == pytest.approx(1.0, rel=1e-7)
    tables = kernel_tables(kernel)
    assert tables.cumulative[-1, -1] == 1.0
    assert tables.cumulative_at(np.array(0.0), np.array(0.0)) == pytest.approx(0.25, abs=1e-12)


def _column_pixel_means(xc, yc, h_pix, npix, kernel, sub):
    """Pixel means of one unit-mass kernel's analytic column, sampled sub x sub per pixel."""
    s_grid = np.linspace(0, 1, 801)
    f_grid = np.array([_column(s, kernel) for s in s_grid])
    g = (np.arange(npix * sub) + 0.5) / sub
    xx, yy = np.meshgrid(g, g)
    col = np.interp(np.hypot(xx - xc, yy - yc) / h_pix, s_grid, f_grid, right=0.0) / h_pix**2
    return col.reshape(npix, sub, npix, sub).mean(axis=(1, 3))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("h_pix", [1.5, 3.0, 6.0, 20.0])
def test_single_kernel_matches_analytic_column(kernel, h_pix):
    npix = int(2 * h_pix) + 6
    xc, yc = npix / 2 + 0.237, npix / 2 - 0.113
    image = project_particles([xc], [yc], [h_pix], [1.0], (0, npix, 0, npix), npix, kernel)
    # Reference: pixel means of the analytic column from independent quadrature.
    reference = _column_pixel_means(xc, yc, h_pix, npix, kernel, sub=24)
    assert np.abs(image - reference).max() < 1e-3 * reference.max()
    assert image.sum() == pytest.approx(1.0, abs=1e-12)


def test_uniform_sphere_column_density():
    # A uniform sphere of density rho: Sigma(r) = 2 rho sqrt(R^2 - r^2). Particles sit on
    # lattice columns in (x, y), evenly along each chord in z, each column holding exactly
    # rho * spacing^2 * chord (a lattice in z would quantise the chord lengths).
    radius, spacing, per_column, rho = 1.0, 0.04, 16, 5.0
    g = np.arange(-radius + spacing / 2, radius, spacing)
    gx, gy = (a.ravel() for a in np.meshgrid(g, g))
    keep = gx**2 + gy**2 < radius**2
    gx, gy = gx[keep], gy[keep]
    chord = 2 * np.sqrt(radius**2 - gx**2 - gy**2)
    x = np.repeat(gx, per_column)
    y = np.repeat(gy, per_column)
    m = np.repeat(rho * spacing**2 * chord / per_column, per_column)
    npix = 96
    image = project_particles(x, y, 2.5 * spacing, m, (-1.2, 1.2, -1.2, 1.2), npix)
    pix = 2.4 / npix
    centres = -1.2 + (np.arange(npix) + 0.5) * pix
    cx, cy = np.meshgrid(centres, centres)
    r = np.hypot(cx, cy)
    expected = 2 * rho * np.sqrt(np.clip(radius**2 - r**2, 0, None))
    sigma = image / pix**2
    core = r < 0.8 * radius
    np.testing.assert_allclose(sigma[core], expected[core], rtol=0.01)
    assert image.sum() == pytest.approx(m.sum(), rel=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("h_pix", [0.01, 0.1, 0.5, 1.0, 3.9, 4.1, 10.0, 50.0])
def test_mass_conserved_for_kernels_inside(kernel, h_pix):
    rng = np.random.default_rng(int(h_pix * 100))
    npix = 128
    n = 300 if h_pix < 20 else 20
    margin = h_pix + 1e-9
    x = rng.uniform(margin, npix - margin, n)
    y = rng.uniform(margin, npix - margin, n)
    m = rng.uniform(0.5, 2.0, n)
    image = project_particles(x, y, np.full(n, h_pix), m, (0, npix, 0, npix), npix, kernel)
    assert abs(image.sum() - m.sum()) / m.sum() < 1e-6
    assert image.min() >= 0.0


@pytest.mark.parametrize("h_pix", [0.3, 2.0, 3.9])
def test_edge_particles_deposit_exactly_their_inside_part(h_pix):
    # A map cut out of a larger one (same pixel grid) must equal the larger map's pixels:
    # kernels straddling the cut contribute exactly their inside part.
    rng = np.random.default_rng(3)
    n = 200
    x = rng.uniform(-10, 74, n)
    y = rng.uniform(-10, 74, n)
    h = h_pix * rng.uniform(0.5, 1.0, n)
    m = rng.uniform(0.5, 2.0, n)
    big = project_particles(x, y, h, m, (-40, 104, -40, 104), 144)
    small = project_particles(x, y, h, m, (0, 64, 0, 64), 64)
    np.testing.assert_allclose(small, big[40:104, 40:104], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("h_pix", [2.5, 8.0, 30.0])
def test_large_kernel_cut_by_map_edge_keeps_inside_mass(kernel, h_pix):
    # Inside fraction of a kernel whose centre lies d inside the left edge. The mass beyond
    # a line at distance d of the projected kernel is the 3D kernel's mass beyond a plane:
    # int_d^1 dx 2 pi int_x^1 W(q) q dq = 2 pi int_d^1 W(q) q (q - d) dq.
    for d in (0.3 * h_pix, 0.8 * h_pix):
        u = d / h_pix
        beyond = 2 * np.pi * integrate.quad(lambda q: _w3d(q, kernel) * q * (q - u), u, 1,
                                            points=[0.5], epsabs=1e-13)[0]
        npix = int(4 * h_pix) + 4
        image = project_particles([d], [npix / 2 + 0.3], [h_pix], [1.0], (0, npix, 0, npix),
                                  npix, kernel)
        # The 2D table (513^2 nodes, bilinear) sets this to a few 1e-6.
        assert image.sum() == pytest.approx(1.0 - beyond, abs=1e-5)


@pytest.mark.parametrize("h_pix", [1.5, 2.0, 5.0, 12.0])
def test_centroid_at_true_subpixel_position(h_pix):
    # A compact particle resolved by a few pixels has its centroid at its true sub-pixel
    # position. (A kernel inside a single pixel carries no sub-pixel information once
    # integrated over pixels: it lands whole in its pixel, tested below.)
    rng = np.random.default_rng(7)
    npix = 48
    centres = np.arange(npix) + 0.5
    for _ in range(20):
        xc, yc = rng.uniform(18, 30, 2)
        image = project_particles([xc], [yc], [h_pix], [1.0], (0, npix, 0, npix), npix)
        assert abs((image.sum(axis=0) * centres).sum() - xc) < 0.01
        assert abs((image.sum(axis=1) * centres).sum() - yc) < 0.01


def test_tiny_particle_lands_whole_in_its_pixel():
    image = project_particles([3.3], [5.7], [0.01], [2.5], (0, 8, 0, 8), 8)
    assert image[5, 3] == 2.5
    assert image.sum() == 2.5


def test_total_mass_invariant_under_rotation():
    rng = np.random.default_rng(11)
    pos = rng.normal(0, 1.0, (2000, 3))
    h = np.exp(rng.normal(np.log(0.1), 1.0, 2000))
    m = rng.uniform(0.5, 2.0, 2000)
    totals = []
    for rot in Rotation.random(4, random_state=5):
        p = rot.apply(pos)
        totals.append(project_particles(p[:, 0], p[:, 1], h, m, (-20, 20, -20, 20), 96).sum())
    np.testing.assert_allclose(totals, m.sum(), rtol=1e-12)


def test_maps_are_bit_identical_for_any_thread_count(monkeypatch):
    import numba

    from alchemy_obs.maps import deposit

    # Small bands, so that these 3000 particles fill all 16 and threads share them.
    monkeypatch.setattr(deposit, "_PARTICLES_PER_BAND", 100)
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 10, (2, 3000))
    h = rng.lognormal(-1.0, 1.0, 3000)
    m = rng.uniform(0.5, 2.0, 3000)
    before = numba.get_num_threads()
    images = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            images.append(project_particles(x, y, h, m, (0, 10, 0, 10), 64))
    finally:
        numba.set_num_threads(before)
    for image in images[1:]:
        np.testing.assert_array_equal(image, images[0])


def test_band_counts_are_powers_of_two_set_by_the_input():
    from alchemy_obs.maps import deposit

    # 99 934 particles (the benchmark's 1e5 set): 8 bands, which 2, 4 or 8 threads share
    # evenly (a count like 15 would leave one of 2 threads idle a fifteenth of the time).
    counts = {n: deposit._n_bands(n) for n in (0, 10_000, 20_000, 99_934, 10**5, 10**8)}
    assert counts == {0: 1, 10_000: 1, 20_000: 2, 99_934: 8, 10**5: 16, 10**8: 16}


def test_first_bad_value_is_reported_whatever_chunk_holds_it(monkeypatch):
    from alchemy_obs.maps import deposit

    # 3000 particles in 16 chunks, each sorted by its own thread: the error must still
    # name the first bad value of the input, not the first one a thread happened to see.
    monkeypatch.setattr(deposit, "_PARTICLES_PER_BAND", 100)
    rng = np.random.default_rng(9)
    x, y = rng.uniform(0, 10, (2, 3000))
    h = rng.uniform(0.1, 1.0, 3000)
    x[2990] = np.nan  # chunk 15
    h[1500] = np.inf  # chunk 8
    with pytest.raises(ValueError, match="h contains non-finite"):
        project_particles(x, y, h, np.ones(3000), (0, 10, 0, 10), 32)
    h[40] = -1.0  # chunk 0
    with pytest.raises(ValueError, match="h must be >= 0"):
        project_particles(x, y, h, np.ones(3000), (0, 10, 0, 10), 32)


def test_reused_workspaces_leave_nothing_behind():
    # The sorted particles and the band buffers are kept between calls: a map made after
    # a larger one (more bands, more weights, another grid) must not see its leftovers.
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 10, (2, 2000))
    h = rng.uniform(0.05, 2.0, 2000)
    m = rng.uniform(0.5, 2.0, 2000)
    first = project_particles(x, y, h, m, (0, 10, 0, 10), 48)
    big = rng.uniform(0, 10, (2, 60_000))
    project_particles(big[0], big[1], 0.5, np.stack([np.ones(60_000)] * 3),
                      (0, 10, 0, 10), 96)
    np.testing.assert_array_equal(project_particles(x, y, h, m, (0, 10, 0, 10), 48), first)


def test_several_weights_in_one_pass():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 10, (2, 500))
    h = rng.uniform(0.01, 3, 500)
    m, q = rng.uniform(0.5, 2.0, (2, 500))
    both = project_particles(x, y, h, np.stack([m, m * q]), (0, 10, 0, 10), 40)
    one = project_particles(x, y, h, m * q, (0, 10, 0, 10), 40)
    np.testing.assert_allclose(both[1], one, rtol=1e-12, atol=1e-14)
    assert both.shape == (2, 40, 40)


def test_slab_takes_the_kernel_fraction_along_the_line_of_sight():
    kernel = "cubic_spline"
    tables = kernel_tables(kernel)
    # A kernel cut through its centre has half its mass on each side.
    frac = tables.slab_fraction(np.array([0.0]), np.array([1.0]), 0.0, 5.0)
    assert frac[0] == pytest.approx(0.5, abs=1e-12)
    # Fraction above z/H = 1/2, from the 3D formula by hand-checkable quadrature.
    above = integrate.dblquad(lambda r, z: 2 * np.pi * r * _w3d(np.hypot(r, z), kernel),
                              0.5, 1.0, 0.0, lambda z: np.sqrt(max(1 - z * z, 0.0)))[0]
    frac = tables.slab_fraction(np.array([0.0]), np.array([1.0]), 0.5, 5.0)
    assert frac[0] == pytest.approx(above, abs=1e-6)
    image = project_particles([0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], (-2, 2, -2, 2),
                              16, z=np.array([0.0, 10.0]), zrange=(0.0, 5.0))
    assert image.sum() == pytest.approx(0.5, abs=1e-12)


def test_surface_density_and_weighted_average_quantities():
    x = np.array([0.0, 0.5]) * u.kpc
    y = np.array([0.0, 0.0]) * u.kpc
    h = np.array([0.4, 0.4]) * u.kpc
    m = np.array([1e6, 3e6]) * u.Msun
    extent = [-2, 2, -2, 2] * u.kpc
    sigma = surface_density(x, y, h, m, extent, 32)
    assert sigma.unit == u.Msun / u.kpc**2
    pixel_area = (4 / 32) ** 2 * u.kpc**2
    assert (sigma.sum() * pixel_area).to_value(u.Msun) == pytest.approx(4e6, rel=1e-12)
    temp = np.array([1e4, 1e4]) * u.K
    avg, covered = weighted_average(x, y, h, temp, m, extent, 32)
    assert avg.unit == u.K
    assert covered.any() and not covered.all()
    np.testing.assert_allclose(avg[covered].value, 1e4, rtol=1e-12)
    assert np.all(np.isnan(avg[~covered]))
    # Where only particle 1 reaches, the average is its value; overlaps mix by mass.
    temp2 = np.array([1e3, 1e5]) * u.K
    avg2, _ = weighted_average(x, y, h, temp2, m, extent, 32)
    vals = avg2[covered].value
    assert vals.min() == pytest.approx(1e3) and vals.max() == pytest.approx(1e5)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="extent"):
        project_particles([0.0], [0.0], [1.0], [1.0], (1, 0, 0, 1), 8)
    with pytest.raises(ValueError, match="h must be"):
        project_particles([0.0], [0.0], [-1.0], [1.0], (0, 1, 0, 1), 8)
    with pytest.raises(ValueError, match="non-finite"):
        project_particles([np.nan], [0.0], [1.0], [1.0], (0, 1, 0, 1), 8)
    with pytest.raises(ValueError, match="unknown kernel"):
        project_particles([0.0], [0.0], [1.0], [1.0], (0, 1, 0, 1), 8, kernel="gauss")


# The image pyramid: kernels wider than deposit.H_LEVEL pixels are integrated over the pixels
# of a coarser level and prolonged to the map.


def _antiderivative_means(f_int, edges):
    """Cell integrals of a 1D function from its antiderivative at the cell edges."""
    return np.diff(f_int(edges))


def test_prolongation_is_exact_for_polynomials_up_to_degree_six():
    from alchemy_obs.maps.deposit import prolong

    # Cell integrals of p(x) q(y) on a coarse grid of unit cells; prolonged, each half cell
    # must hold the exact integral of p q over it (the split is the integral of the degree-6
    # polynomial through seven cell means), away from the zero padding at the border.
    def p_int(t):  # p = 1e5 + t^6 - 12 t^3
        return 1e5 * t + t**7 / 7 - 3 * t**4

    def q_int(t):  # q = 4e3 + t^4 + 2 t
        return 4e3 * t + t**5 / 5 + t**2

    n = 16
    coarse = np.outer(_antiderivative_means(q_int, np.arange(n + 1.0) - 8),
                      _antiderivative_means(p_int, np.arange(n + 1.0) - 8))
    fine = prolong(coarse[None])[0]
    half = np.arange(2 * n + 1) / 2.0 - 8
    exact = np.outer(_antiderivative_means(q_int, half), _antiderivative_means(p_int, half))
    inner = slice(6, 2 * n - 6)
    np.testing.assert_allclose(fine[inner, inner], exact[inner, inner], rtol=1e-12)


def test_prolongation_keeps_each_coarse_sum_and_sign():
    from alchemy_obs.maps.deposit import prolong

    rng = np.random.default_rng(8)
    coarse = rng.lognormal(0.0, 2.0, (2, 24, 20))
    coarse[:, 5:9, 3:12] = 0.0  # sharp edges, where the limiter acts
    coarse[1] *= -1.0  # a negative weight (e.g. a velocity) keeps its sign too
    fine = prolong(coarse)
    blocks = fine.reshape(2, 24, 2, 20, 2).sum(axis=(2, 4))
    np.testing.assert_allclose(blocks, coarse, rtol=1e-14, atol=0)
    assert fine[0].min() >= 0.0 and fine[1].max() <= 0.0
    assert np.all(fine.reshape(2, 24, 2, 20, 2)[:, 5:9, :, 3:12] == 0.0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("h_pix", [10.2, 14.0, 20.5, 33.0, 50.0])
def test_pyramid_conserves_mass_and_stays_close_to_the_exact_map(kernel, h_pix):
    # Kernels just above H_LEVEL * 2**L span the fewest pixels on their level: the worst
    # cases of the level rule. Sparse particles, so each kernel's error counts in full.
    rng = np.random.default_rng(int(h_pix * 10))
    npix = 160
    n = 40
    x = rng.uniform(h_pix, npix - h_pix, n)
    y = rng.uniform(h_pix, npix - h_pix, n)
    m = rng.uniform(0.5, 2.0, n)
    args = (x, y, np.full(n, h_pix), m, (0, npix, 0, npix), npix, kernel)
    image = project_particles(*args)
    exact = project_particles(*args, exact=True)
    assert abs(image.sum() - m.sum()) / m.sum() < 1e-12
    assert np.abs(image - exact).sum() / m.sum() < 5e-3
    assert image.min() >= 0.0


@pytest.mark.parametrize("h_pix", [21.0, 50.0])
def test_pyramid_kernel_matches_analytic_column(h_pix):
    # The prolonged map of one kernel against pixel means of the analytic column profile.
    kernel = "cubic_spline"
    npix = int(2 * h_pix) + 12
    xc, yc = npix / 2 + 0.37, npix / 2 - 0.21
    image = project_particles([xc], [yc], [h_pix], [1.0], (0, npix, 0, npix), npix, kernel)
    reference = _column_pixel_means(xc, yc, h_pix, npix, kernel, sub=8)
    assert np.abs(image - reference).sum() < 5e-3
    assert np.abs(image - reference).max() < 5e-3 * reference.max()
    assert image.sum() == pytest.approx(1.0, abs=1e-12)


def test_pyramid_maps_are_bit_identical_for_any_thread_count(monkeypatch):
    import numba

    from alchemy_obs.maps import deposit

    monkeypatch.setattr(deposit, "_PARTICLES_PER_BAND", 100)
    rng = np.random.default_rng(6)
    x, y = rng.uniform(0, 10, (2, 3000))
    h = np.exp(rng.uniform(np.log(0.01), np.log(8.0), 3000))  # up to 100 pixels
    m = rng.uniform(0.5, 2.0, (2, 3000))
    before = numba.get_num_threads()
    if before < 2:
        pytest.skip("needs two numba threads")
    images = []
    try:
        for threads in (1, before):
            numba.set_num_threads(threads)
            images.append(project_particles(x, y, h, m, (0, 10, 0, 10), (128, 120)))
    finally:
        numba.set_num_threads(before)
    for image in images[1:]:
        np.testing.assert_array_equal(image, images[0])
