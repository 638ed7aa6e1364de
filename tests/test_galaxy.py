"""The Galaxy model: reading TNG-layout files, centring, wrapping, units, rotations, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from tng_layout import write_layout_file

from alchemy_obs.sim.galaxy import (
    Galaxy,
    GalaxyFileError,
    Particles,
    galaxy_from_arrays,
    load_galaxy,
    periodic_offset,
    shrinking_sphere_centre,
)

H = 0.6774
BOX = 75000.0


def _header(a: float = 1.0, box: float = BOX) -> dict:
    return {
        "BoxSize": box, "HubbleParam": H, "Time": a, "Redshift": 1 / a - 1, "Omega0": 0.3089,
        "OmegaBaryon": 0.0486, "MassTable": np.array([0, 0.001, 0, 0, 0, 0]),
    }


def _gas(coords: np.ndarray, **extra) -> dict:
    n = len(coords)
    fields = {
        "Coordinates": np.asarray(coords),
        "Velocities": np.zeros((n, 3), np.float32),
        "Masses": np.full(n, 1e-4, np.float32),
        "ParticleIDs": np.arange(n, dtype=np.uint64),
        "Density": np.full(n, 1e-3, np.float32),
        "InternalEnergy": np.full(n, 100.0, np.float32),
    }
    fields.update(extra)
    return fields


def test_periodic_offset_minimum_image():
    d = periodic_offset(np.array([[1.0, 74999.0, 37000.0]]), np.array([74999.5, 0.5, 0.0]), BOX)
    np.testing.assert_allclose(d, [[1.5, -1.5, 37000.0]])


def test_centring_is_float64_before_float32():
    # Two cells 0.0003 ckpc/h on either side of the box face x = 0 = BoxSize. In float32,
    # 74999.9997 rounds to 75000.0 (spacing 0.0078), which would merge them.
    coords = np.array([[BOX - 0.0003, 10.0, 10.0], [0.0004, 10.0, 10.0]], dtype=np.float64)
    g = galaxy_from_arrays(_header(a=0.5), {"PartType0": _gas(coords)}, subhalo_pos=[0.0, 10.0, 10.0])
    np.testing.assert_allclose(g.gas.coordinates[:, 0], [-0.0003 * 0.5 / H, 0.0004 * 0.5 / H], rtol=1e-6)
    assert g.gas.coordinates.dtype == np.float64


def test_galaxy_straddling_box_corner_recentres(tmp_path):
    # A cloud centred on the box corner: without wrapping it would span the whole box.
    path = write_layout_file(tmp_path / "cutout_7.hdf5", {0: 400, 1: 300, 4: 300, 5: 1},
                             box_size=BOX, a=0.5, centre=np.zeros(3))
    with h5py.File(path) as f:
        raw = f["PartType4/Coordinates"][:]
    assert np.ptp(raw[:, 0]) > BOX / 2  # the file really straddles the faces
    g = load_galaxy(path)
    assert g.subhalo_id == 7
    for part in (g.gas, g.dm, g.stars):
        assert np.abs(part.coordinates).max() < 2 * 15 * 0.5 / H * np.sqrt(3)
    # The uniform cube (+-15 ckpc/h) has no density peak, so the centre only has to be inside.
    c = np.mod(g.centre_ckpch + BOX / 2, BOX) - BOX / 2  # centre as a signed offset from 0
    assert np.all(np.abs(c) < 10.0)
    assert g.box_size_kpc == pytest.approx(BOX * 0.5 / H)


def test_shrinking_sphere_finds_dense_centre():
    rng = np.random.default_rng(1)
    true = np.array([120.0, 34990.0, 5.0])  # near two box faces of a 35000 box
    # Plummer sphere (scale 1) plus an offset diffuse cloud that drags the centre of mass.
    u = rng.random(5000)
    r = 1.0 / np.sqrt(u ** (-2 / 3) - 1)
    r = np.minimum(r, 50)
    v = rng.normal(size=(5000, 3))
    dense = true + r[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)
    diffuse = true + np.array([40.0, 0, 0]) + rng.uniform(-30, 30, (5000, 3))
    pos = np.mod(np.concatenate([dense, diffuse]), 35000.0)
    masses = np.ones(len(pos))
    com_error = np.linalg.norm(periodic_offset(np.average(periodic_offset(pos, true, 35000.0), axis=0,
                                                          weights=masses)[None], 0, 35000.0))
    assert com_error > 15  # a plain centre of mass is far off
    centre = shrinking_sphere_centre(pos, masses, 35000.0)
    assert np.linalg.norm(periodic_offset(centre[None], true, 35000.0)) < 0.3


def test_units_masses_velocities_and_dm_from_masstable(tmp_path):
    a = 0.5
    path = write_layout_file(tmp_path / "c.hdf5", {0: 50, 1: 40, 4: 30}, a=a)
    with h5py.File(path) as f:
        v_code = f["PartType0/Velocities"][:].astype(np.float64)
        m_code = f["PartType0/Masses"][:].astype(np.float64)
        rho_code = f["PartType0/Density"][:].astype(np.float64)
        b_code = f["PartType0/MagneticField"][:].astype(np.float64)
        x_h = f["PartType0/GFM_Metals"][:, 0]
    g = load_galaxy(path, subhalo_pos=[17500.0, 17500.0, 17500.0])
    np.testing.assert_allclose(g.gas.masses, m_code * 1e10 / H, rtol=1e-6)
    np.testing.assert_allclose(g.dm.masses, np.full(40, 5e-4 * 1e10 / H))
    np.testing.assert_allclose(g.gas.density, rho_code * 1e10 * H**2 / a**3, rtol=1e-6)
    np.testing.assert_allclose(g.gas.magnetic_field, b_code * 2.601905e-6 * H / a**2, rtol=1e-5)
    np.testing.assert_allclose(g.gas.hydrogen_fraction, x_h, rtol=1e-6)
    # Velocities are sqrt(a) * code, minus the mass-weighted bulk velocity of the inner 10 kpc.
    every = [g.gas, g.dm, g.stars]
    vel_phys = v_code * np.sqrt(a)
    shift = vel_phys[0] - g.gas.velocities[0]
    np.testing.assert_allclose(g.gas.velocities + shift, vel_phys, atol=1e-5)
    inner_momentum = sum(np.sum(p.masses[:, None] * p.velocities *
                                (np.linalg.norm(p.coordinates, axis=1) < 10)[:, None], axis=0) for p in every)
    np.testing.assert_allclose(inner_momentum, 0.0, atol=1e-3 * sum(p.total_mass for p in every))
    assert g.redshift == pytest.approx(1.0) and g.scale_factor == 0.5
    assert g.cosmology.H0.value == pytest.approx(100 * H)


def test_wind_particles_are_not_stars_and_default_hydrogen_fraction():
    coords = np.full((4, 3), 100.0) + np.arange(4)[:, None]
    stars = {
        "Coordinates": coords, "Velocities": np.zeros((4, 3)), "Masses": np.ones(4) * 1e-4,
        "ParticleIDs": np.arange(4), "GFM_StellarFormationTime": np.array([0.5, -0.2, 0.0, 0.9]),
    }
    g = galaxy_from_arrays(_header(), {"PartType0": _gas(coords), "PartType4": stars})
    np.testing.assert_array_equal(g.stars.ids, [0, 3])
    np.testing.assert_allclose(g.stars.formation_time, [0.5, 0.9])
    np.testing.assert_allclose(g.gas.hydrogen_fraction, 0.76)
    assert len(g.bh) == 0 and len(g.dm) == 0


def _disc(n: int = 2000, seed: int = 3) -> Galaxy:
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.5, 10, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    pos = np.column_stack([r * np.cos(phi), r * np.sin(phi), rng.normal(0, 0.2, n)]) * H + 500.0
    vel = np.column_stack([-200 * np.sin(phi), 200 * np.cos(phi), np.zeros(n)])
    stars = {"Coordinates": pos, "Velocities": vel, "Masses": np.full(n, 1e-5), "ParticleIDs": np.arange(n)}
    gas = _gas(pos, MagneticField=np.tile([1.0, 0.0, 0.0], (n, 1)))
    return galaxy_from_arrays(_header(), {"PartType0": gas, "PartType4": stars},
                              subhalo_pos=[500.0, 500.0, 500.0])


def test_rotation_moves_positions_velocities_and_field():
    g = _disc()
    quarter = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    r = g.rotated(quarter)
    np.testing.assert_allclose(r.stars.coordinates[:, 0], -g.stars.coordinates[:, 1])
    np.testing.assert_allclose(r.stars.velocities[:, 1], g.stars.velocities[:, 0])
    np.testing.assert_allclose(r.gas.magnetic_field[0], [0.0, 2.601905e-6 * H, 0.0], rtol=1e-5)
    assert g.half_mass_radius() == pytest.approx(r.half_mass_radius())
    with pytest.raises(ValueError, match="orthonormal"):
        g.rotated(np.eye(3) * 2)
    with pytest.raises(ValueError, match="reflection"):
        g.rotated(np.diag([1.0, 1.0, -1.0]))


def test_angular_momentum_axis_of_a_tilted_disc():
    g = _disc()
    tilt = np.array([[1, 0, 0], [0, np.cos(0.7), -np.sin(0.7)], [0, np.sin(0.7), np.cos(0.7)]])
    np.testing.assert_allclose(g.stellar_angular_momentum(), [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(g.rotated(tilt).stellar_angular_momentum(), tilt @ [0, 0, 1], atol=0.02)


def test_half_mass_radius_of_uniform_sphere():
    # A uniform sphere of radius R has half its mass inside R / 2^(1/3) = 0.7937 R.
    rng = np.random.default_rng(0)
    n = 40000
    v = rng.normal(size=(n, 3))
    pos = 20.0 * rng.random(n)[:, None] ** (1 / 3) * v / np.linalg.norm(v, axis=1, keepdims=True)
    g = galaxy_from_arrays({**_header(), "HubbleParam": 1.0}, {"PartType0": _gas(pos + 1000.0)},
                           subhalo_pos=[1000.0] * 3)
    assert g.half_mass_radius(("gas",)) == pytest.approx(20.0 / 2 ** (1 / 3), rel=0.01)


def test_particles_select_cuts_every_field():
    g = _disc(n=10)
    sub = g.gas.select(g.gas.ids >= 5)
    assert len(sub) == 5
    assert sub.magnetic_field.shape == (5, 3) and sub.density.shape == (5,)
    assert "n=5" in repr(sub)


def test_truncated_file_error_names_file(tmp_path):
    path = write_layout_file(tmp_path / "cutout_3.hdf5", {0: 2000, 1: 2000})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GalaxyFileError, match="cutout_3.hdf5.*(truncated|HDF5)"):
        load_galaxy(path)


def test_not_hdf5_error_names_file(tmp_path):
    path = tmp_path / "cutout_9.hdf5"
    path.write_text('{"detail": "Not found."}')
    with pytest.raises(GalaxyFileError, match="cutout_9.hdf5.*not a readable HDF5"):
        load_galaxy(path)


def test_missing_parttype0_error_names_file(tmp_path):
    path = write_layout_file(tmp_path / "cutout_4.hdf5", {0: 10, 1: 10})
    with h5py.File(path, "r+") as f:
        del f["PartType0"]
    with pytest.raises(GalaxyFileError, match=r"cutout_4.hdf5.*'PartType0'"):
        load_galaxy(path)


def test_missing_header_keys_error_names_keys(tmp_path):
    path = write_layout_file(tmp_path / "cutout_5.hdf5", {0: 10})
    with h5py.File(path, "r+") as f:
        del f["Header"].attrs["HubbleParam"]
        del f["Header"].attrs["Time"]
    with pytest.raises(GalaxyFileError, match=r"cutout_5.hdf5.*HubbleParam.*Time"):
        load_galaxy(path)
    with pytest.raises(GalaxyFileError, match="no such file"):
        load_galaxy(tmp_path / "absent.hdf5")


def test_dm_without_masses_needs_masstable(tmp_path):
    path = write_layout_file(tmp_path / "cutout_6.hdf5", {0: 10, 1: 10})
    with h5py.File(path, "r+") as f:
        f["Header"].attrs["MassTable"] = np.zeros(6)
    with pytest.raises(GalaxyFileError, match=r"cutout_6.hdf5.*PartType1.*MassTable\[1\]"):
        load_galaxy(path)


def test_particles_empty():
    p = Particles.empty()
    assert len(p) == 0 and p.ids.dtype == np.uint64


def test_extra_tng_fields_are_ignored(tmp_path):
    # Real cutouts carry many more fields (Potential, GFM_MetalsTagged, ...): not read, no error.
    path = write_layout_file(tmp_path / "cutout_8.hdf5", {0: 20, 1: 20})
    with h5py.File(path, "r+") as f:
        f["PartType0"].create_dataset("GFM_MetalsTagged", data=np.zeros((20, 6), np.float32))
        f["PartType1"].create_dataset("Potential", data=np.zeros(20, np.float32))
    g = load_galaxy(path)
    assert len(g.gas) == 20 and len(g.dm) == 20
