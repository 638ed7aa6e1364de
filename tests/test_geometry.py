"""Viewing geometry: uniform rotations, face-on/edge-on matrices, field of view."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from scipy import stats

from alchemy_obs.maps.geometry import (
    edge_on_matrix,
    enclosing_radius,
    face_on_matrix,
    field_of_view,
    fixed_field_of_view,
    galaxy_views,
    hi_radius,
    map_extent,
    random_rotations,
)


def test_random_rotations_are_proper_and_orthonormal():
    r = random_rotations(1000, 1)
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_random_rotations_are_uniform_on_the_sphere():
    n = 20_000
    r = random_rotations(n, 123)
    # The line of sight in the simulation frame is the third row: R.T @ z.
    los = r[:, 2, :]
    cos_theta = los[:, 2]
    phi = np.arctan2(los[:, 1], los[:, 0])
    # Uniform on the sphere: cos(theta) ~ U(-1, 1) (mean 0, variance 1/3), phi ~ U(-pi, pi).
    assert abs(cos_theta.mean()) < 4 / np.sqrt(3 * n)
    assert abs(cos_theta.var() - 1 / 3) < 4 * np.sqrt(4 / 45 / n)
    assert stats.kstest(cos_theta, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert stats.kstest(phi, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    # Haar measure on SO(3): the rotation angle has density (1 - cos w) / pi on [0, pi].
    angle = np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1))
    cdf = lambda w: (w - np.sin(w)) / np.pi  # noqa: E731
    assert stats.kstest(angle, cdf).pvalue > 1e-3


def test_uniform_euler_angles_would_fail_the_same_test():
    # The check above has power: the naive "uniform Euler angles" scheme is rejected.
    rng = np.random.default_rng(5)
    theta = rng.uniform(0, np.pi, 20_000)
    assert stats.kstest(np.cos(theta), stats.uniform(-1, 2).cdf).pvalue < 1e-6


def test_random_rotations_are_reproducible_per_seed():
    np.testing.assert_array_equal(random_rotations(3, (0, 7)), random_rotations(3, (0, 7)))
    assert not np.allclose(random_rotations(3, (0, 7)), random_rotations(3, (0, 8)))


@pytest.mark.parametrize("L", [(0, 0, 1), (1, 2, 3), (-5, 0.1, 0), (0, 0, -2), (1, 0, 0)])
def test_face_on_and_edge_on(L):
    L = np.asarray(L, float)
    lhat = L / np.linalg.norm(L)
    for matrix in (face_on_matrix(L), edge_on_matrix(L)):
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(matrix) == pytest.approx(1.0)
    np.testing.assert_allclose(face_on_matrix(L) @ lhat, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(edge_on_matrix(L) @ lhat, [0, 1, 0], atol=1e-12)


def test_face_on_of_a_rotating_disc_is_round_and_edge_on_is_thin():
    rng = np.random.default_rng(0)
    n = 5000
    r = rng.uniform(0, 10, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    disc = np.column_stack([r * np.cos(phi), r * np.sin(phi), rng.normal(0, 0.1, n)])
    tilt = random_rotations(1, 3)[0]
    pos = disc @ tilt.T
    L = tilt @ np.array([0.0, 0.0, 1.0])
    face = pos @ face_on_matrix(L).T
    edge = pos @ edge_on_matrix(L).T
    assert np.std(face[:, 2]) < 0.11 and np.std(face[:, 0]) > 3
    assert np.std(edge[:, 1]) < 0.11 and np.std(edge[:, 0]) > 3 and np.std(edge[:, 2]) > 3


def test_zero_angular_momentum_is_an_error():
    with pytest.raises(ValueError, match="zero"):
        face_on_matrix([0, 0, 0])


def test_galaxy_views_names_and_seeding():
    views = galaxy_views(np.array([0, 1.0, 0]), 4, n_random=2, seed=9)
    assert [v.name for v in views] == ["random0", "random1", "faceon", "edgeon"]
    again = galaxy_views(np.array([0, 1.0, 0]), 4, n_random=2, seed=9)
    np.testing.assert_array_equal(views[1].matrix, again[1].matrix)
    other = galaxy_views(None, 5, n_random=2, face_on=False, edge_on=False, seed=9)
    assert not np.allclose(views[0].matrix, other[0].matrix)
    with pytest.raises(ValueError, match="angular momentum"):
        galaxy_views(None, 4)


def test_field_of_view_and_extent():
    # The half-side is the larger of the HI extent and 3 stellar half-mass radii.
    assert field_of_view(10 * u.kpc, 2 * u.kpc) == 20 * u.kpc
    assert field_of_view(1 * u.kpc, 2 * u.kpc) == 12 * u.kpc
    assert field_of_view(1 * u.kpc, 2 * u.kpc, stellar_multiple=1) == 4 * u.kpc
    assert field_of_view(3000 * u.pc, 0 * u.kpc).unit == u.kpc
    assert fixed_field_of_view(64, 0.75 * u.kpc) == 48 * u.kpc
    assert fixed_field_of_view(100, 300 * u.pc) == 30 * u.kpc
    np.testing.assert_allclose(map_extent(6 * u.kpc).to_value(u.kpc), [-3, 3, -3, 3])
    with pytest.raises(ValueError, match="no HI"):
        field_of_view(0 * u.kpc, 0 * u.kpc)
    with pytest.raises(ValueError):
        fixed_field_of_view(0, 1 * u.kpc)


def test_enclosing_radius_leaves_at_most_the_rest_outside():
    r = np.array([4.0, 1.0, 3.0, 2.0]) * u.kpc
    w = np.ones(4)
    assert enclosing_radius(r, w, 0.5) == 2 * u.kpc
    assert enclosing_radius(r, w, 0.75) == 3 * u.kpc
    assert enclosing_radius(r, w, 0.99) == 4 * u.kpc
    # One heavy particle: the radius is its own, never interpolated below it.
    assert enclosing_radius(r, np.array([99.0, 1.0, 0.0, 0.0]), 0.9) == 4 * u.kpc
    assert enclosing_radius(r, np.zeros(4), 0.99) == 0 * u.kpc
    with pytest.raises(ValueError):
        enclosing_radius(r, w, 0.0)


def test_hi_radius_of_an_exponential_disc():
    # Sigma = Sigma0 exp(-R/Rd) reaches 1 Msun/pc^2 at Rd ln(Sigma0 / 1 Msun/pc^2)
    # = 3 ln 10 = 6.908 kpc. Equal-mass cells at the quantiles of the enclosed-mass profile
    # M(<R)/M = 1 - (1 + R/Rd) exp(-R/Rd) sample it without noise.
    sigma0, rd, n = 10.0 * u.Msun / u.pc**2, 3.0, 400_000
    grid = np.linspace(0, 40 * rd, 400_001)
    cdf = 1 - (1 + grid / rd) * np.exp(-grid / rd)
    radii = np.interp((np.arange(n) + 0.5) / n, cdf, grid) * u.kpc
    m = np.full(n, (2 * np.pi * sigma0 * (rd * u.kpc) ** 2).to_value(u.Msun) / n) * u.Msun
    exact = rd * np.log(10.0)
    # R_HI is the outer edge of the last annulus whose mean is >= 1 Msun/pc^2.
    assert hi_radius(radii, m) == 7.0 * u.kpc
    # A companion of 2e8 Msun at R = 30 kpc (2 Msun/pc^2 averaged over its annulus) and a
    # central hole (the inner 2 kpc emptied) leave R_HI of the disc unchanged; without the
    # disc the companion's annulus is the HI edge.
    hole = radii.to_value(u.kpc) > 2
    companion = (np.append(radii[hole], 30.2 * u.kpc), np.append(m[hole], 2e8 * u.Msun))
    assert hi_radius(*companion) == 7.0 * u.kpc
    assert hi_radius([30.2] * u.kpc, [2e8] * u.Msun) == 30.5 * u.kpc
    # A gap of one 0.5 kpc annulus (noise) inside the disc does not end it, a wider one does.
    gap = (radii.to_value(u.kpc) < 5) | (radii.to_value(u.kpc) > 5.5)
    assert hi_radius(radii[gap], m[gap]) == 7.0 * u.kpc
    assert hi_radius(radii[gap], m[gap], max_gap=0.4 * u.kpc) == 5.0 * u.kpc
    fine = hi_radius(radii, m, bin_width=0.05 * u.kpc).to_value(u.kpc)
    assert abs(fine - exact) <= 0.05
    assert hi_radius(radii, m, threshold=20 * u.Msun / u.pc**2) == 0 * u.kpc
    assert hi_radius(np.zeros(0) * u.kpc, np.zeros(0) * u.Msun) == 0 * u.kpc


def test_fields_hold_the_hi_of_synthetic_galaxies(tmp_path):
    """At default settings at most 1% of each galaxy's HI mass lies outside its map in the
    face-on, edge-on and a random view, counted from particle positions (not the projector);
    the field spread is far narrower than the old 2 x baryonic half-mass radius rule."""
    from alchemy_obs.config import MapsConfig
    from alchemy_obs.maps.render import galaxy_field
    from alchemy_obs.physics.gas import gas_hi_mass
    from alchemy_obs.sim.galaxy import load_galaxy
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    config = MapsConfig()
    new, old, outside = [], [], []
    for i in range(24):
        galaxy = load_galaxy(make_synthetic_cutout(tmp_path / f"cutout_{i}.hdf5", i, 3000, 5))
        half = 0.5 * galaxy_field(galaxy, config)[0].to_value(u.kpc)
        new.append(2 * half)
        old.append(2 * galaxy.half_mass_radius(("gas", "stars")))
        m_hi = gas_hi_mass(galaxy.gas, galaxy.redshift).to_value(u.Msun)
        for view in galaxy_views(galaxy.stellar_angular_momentum(), i, n_random=1):
            xy = galaxy.gas.coordinates @ view.matrix[:2].T
            out = np.any(np.abs(xy) >= half, axis=1)
            outside.append(m_hi[out].sum() / m_hi.sum())
    assert len(outside) == 72 and max(outside) <= 0.01
    print(f"field side kpc: new min {min(new):.1f} median {np.median(new):.1f} max "
          f"{max(new):.1f}; old min {min(old):.1f} median {np.median(old):.1f} max "
          f"{max(old):.1f}; max HI fraction outside {max(outside):.4f}")
    assert max(new) / min(new) < 0.5 * max(old) / min(old)
