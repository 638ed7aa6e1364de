"""Map making end to end: rendering physics checks, shard building, the CLI and the plot."""

from __future__ import annotations

import astropy.units as u
import h5py
import numpy as np
import pytest
from astropy.cosmology import FlatLambdaCDM

from alchemy_obs.cli import main
from alchemy_obs.config import MapsConfig
from alchemy_obs.maps.build import build_dataset, cutout_sources
from alchemy_obs.maps.domains import DOMAINS, get_domains
from alchemy_obs.maps.geometry import face_on_matrix, galaxy_views, random_rotations
from alchemy_obs.maps.render import render_view, render_views
from alchemy_obs.maps.store import MapStore, shard_path
from alchemy_obs.physics.gas import gas_hi_mass, gas_temperature
from alchemy_obs.sim.galaxy import Galaxy, Particles

GAUSS_PER_UG = 1e-6


def particles(pos, mass, **fields) -> Particles:
    pos = np.atleast_2d(np.asarray(pos, float))
    n = len(pos)
    return Particles(coordinates=pos, velocities=np.zeros((n, 3)),
                     masses=np.broadcast_to(np.asarray(mass, float), (n,)).copy(),
                     ids=np.arange(n, dtype=np.uint64), **fields)


def gas_cells(pos, mass, u_int, b_gauss, rho=1e7) -> Particles:
    pos = np.atleast_2d(np.asarray(pos, float))
    n = len(pos)
    return particles(
        pos, mass, density=np.full(n, rho), internal_energy=np.broadcast_to(u_int, (n,)).copy(),
        electron_abundance=np.full(n, 1.16), neutral_hydrogen_abundance=np.zeros(n),
        magnetic_field=np.broadcast_to(np.asarray(b_gauss, float), (n, 3)).copy(),
        sfr=np.zeros(n), metallicity=np.full(n, 0.01), hydrogen_fraction=np.full(n, 0.76),
    )


def toy_galaxy(gas: Particles, stars: Particles | None = None, dm: Particles | None = None):
    stars = stars or particles([[1.0, 0, 0], [-1.0, 0, 0]], 1e8, hsml=np.full(2, 0.5))
    stars.velocities = np.array([[0, 100.0, 0], [0, -100.0, 0]])  # L along +z
    dm = dm or particles([[0, 0, 0]], 1e9, hsml=np.array([2.0]))
    return Galaxy(gas=gas, dm=dm, stars=stars, bh=Particles.empty(), redshift=0.0,
                  scale_factor=1.0, hubble_param=0.6774,
                  cosmology=FlatLambdaCDM(H0=67.74, Om0=0.3089, Ob0=0.0486),
                  box_size_kpc=5e4, centre_ckpch=np.zeros(3), subhalo_id=None, source="toy")


def test_registry_units_and_errors():
    assert DOMAINS["dm"].unit == u.Msun / u.kpc**2
    assert DOMAINS["sfr"].unit == u.Msun / u.yr / u.kpc**2
    assert DOMAINS["temperature"].unit == u.K and DOMAINS["bfield"].unit == u.uG
    assert {d.name for d in get_domains(["hi", "gas"])} == {"hi", "gas"}
    with pytest.raises(ValueError, match="unknown map domain"):
        get_domains(["hi", "co"])


def test_averages_are_weighted_and_empty_pixels_flagged():
    # Two co-located cells: the map must be the mass-weighted mean of their values wherever
    # they reach, NaN where nothing reaches; surface densities are 0 there instead.
    gas = gas_cells([[0, 0, 0], [0, 0, 0]], [1e6, 3e6], [100.0, 1000.0], [0, 0, 2e-6])
    # Same m/rho, hence the same smoothing length: the two kernels cover the same pixels.
    gas.density = np.array([1e7, 3e7])
    gas.magnetic_field = np.array([[0, 0, 2e-6], [0, 0, 6e-6]])
    galaxy = toy_galaxy(gas)
    config = MapsConfig(npix=33, pixel_kpc=20.0 / 33, domains=["gas", "temperature", "bfield",
                                                                "bfield_vw", "bfield_los"])
    maps, meta = render_view(galaxy, np.eye(3), config)
    t = gas_temperature(gas).to_value(u.K)
    covered = maps["gas"].value > 0
    assert covered.sum() > 1 and not covered.all()
    t_mean = (1e6 * t[0] + 3e6 * t[1]) / 4e6
    np.testing.assert_allclose(maps["temperature"].value[covered], t_mean, rtol=1e-10)
    assert np.isnan(maps["temperature"].value[~covered]).all()
    assert np.all(maps["gas"].value[~covered] == 0)
    np.testing.assert_allclose(maps["bfield"].to_value(u.uG)[covered], (2 + 3 * 6) / 4, rtol=1e-10)
    # Equal volumes m/rho: the volume-weighted mean is the plain mean.
    np.testing.assert_allclose(maps["bfield_vw"].value[covered], 4.0, rtol=1e-10)
    np.testing.assert_allclose(maps["bfield_los"].value[covered], 5.0, rtol=1e-10)
    # Seen from the side the field lies in the sky plane: no line-of-sight component.
    side = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    maps, _ = render_view(galaxy, side, config)
    assert np.nanmax(np.abs(maps["bfield_los"].value)) < 1e-12
    np.testing.assert_allclose(np.nanmax(maps["bfield"].value), 5.0, rtol=1e-10)
    assert meta["n_gas"] == 2 and meta["n_stars"] == 2 and meta["n_dm"] == 1


def test_surface_density_conserves_mass_and_rotation_invariant():
    rng = np.random.default_rng(3)
    pos = rng.normal(0, 2.0, (3000, 3))
    gas = gas_cells(pos, 1e5, 50.0, [1e-6, 0, 0])
    dm = particles(rng.normal(0, 3.0, (2000, 3)), 1e6, hsml=rng.uniform(0.05, 3.0, 2000))
    galaxy = toy_galaxy(gas, dm=dm)
    # A field of view far larger than every kernel: all mass lands in the map.
    gas.sfr = rng.uniform(0, 1e-3, 3000)
    gas.sfr[::2] = 0
    config = MapsConfig(npix=48, pixel_kpc=80.0 / 48, domains=["dm", "gas", "stars", "hi", "sfr"],
                        n_random_views=3)
    views = galaxy_views(None, 1, n_random=3, face_on=False, edge_on=False)
    pixel_area = (80.0 / 48) ** 2
    expected = {"dm": dm.masses.sum(), "gas": gas.masses.sum(),
                "stars": galaxy.stars.masses.sum(),
                "hi": gas_hi_mass(gas, galaxy.redshift).to_value(u.Msun).sum(),
                "sfr": gas.sfr.sum()}
    assert 0 < expected["hi"] < expected["gas"]
    for maps, meta in render_views(galaxy, views, config):
        for name, total in expected.items():
            assert maps[name].value.sum() * pixel_area == pytest.approx(total, rel=1e-6)
        assert maps["sfr"].unit == u.Msun / u.yr / u.kpc**2
        assert meta["pixel_kpc"] == pytest.approx(80.0 / 48)
        np.testing.assert_allclose(meta["extent_kpc"], [-40, 40, -40, 40])


def test_field_of_view_follows_the_hi_and_slab_cuts():
    # Two equal cold cells: the field's half-side is the 3D radius of the farther one, which
    # reaches the 99% HI mass fraction (the stellar term, 3 x 1 kpc, is smaller).
    gas = gas_cells([[0, 0, 0], [0, 0, 30.0]], 1e6, 100.0, [0, 0, 1e-6], rho=1e9)
    gas.neutral_hydrogen_abundance[:] = 1.0
    galaxy = toy_galaxy(gas)
    maps, meta = render_view(galaxy, np.eye(3), MapsConfig(npix=16, domains=["gas"]))
    np.testing.assert_allclose(meta["extent_kpc"], [-30, 30, -30, 30])
    assert meta["pixel_kpc"] == pytest.approx(60 / 16)
    # Face-on (L along +z) both cells sit at R = 0: the first 0.5 kpc annulus holds
    # 2 x 0.76e6 Msun of HI over 0.785e6 pc^2, above 1 Msun/pc^2, so R_HI is its outer edge.
    assert meta["r_hi_kpc"] == pytest.approx(0.5)
    full, _ = render_view(galaxy, np.eye(3), MapsConfig(npix=16, pixel_kpc=10 / 16,
                                                         domains=["gas"]))
    slab, m2 = render_view(galaxy, np.eye(3), MapsConfig(npix=16, pixel_kpc=10 / 16,
                                                         slab_kpc=10.0, domains=["gas"]))
    area = (10.0 / 16) ** 2
    assert full["gas"].value.sum() * area == pytest.approx(2e6, rel=1e-6)
    assert slab["gas"].value.sum() * area == pytest.approx(1e6, rel=1e-6)
    assert m2["n_gas"] == 1


def test_fixed_pixel_scale_gives_npix_times_scale():
    gas = gas_cells([[0, 0, 0], [0, 0, 30.0]], 1e6, 100.0, [0, 0, 1e-6], rho=1e9)
    for npix, scale in ((64, 0.75), (33, 0.3), (128, 1.1)):
        _, meta = render_view(toy_galaxy(gas), np.eye(3),
                              MapsConfig(npix=npix, pixel_kpc=scale, domains=["gas"]))
        half = 0.5 * npix * scale
        assert meta["extent_kpc"].tolist() == [-half, half, -half, half]
        assert meta["pixel_kpc"] == pytest.approx(scale, rel=1e-15)


def test_stars_are_smoothed_at_stellar_resolution(monkeypatch):
    # Stars on a unit cubic lattice carrying a dark-matter SubfindHsml of 5 kpc: the stellar
    # kernel must be the distance to the k-th nearest star (1 for k = 6, sqrt(2) for k = 18
    # at an interior star), while the dark matter keeps its SubfindHsml.
    from alchemy_obs.maps import render

    g = np.arange(-2.0, 3.0)
    lattice = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    dm = particles([[0, 0, 0], [1.0, 0, 0]], 1e9, hsml=np.array([2.0, 3.0]))
    galaxy = toy_galaxy(gas_cells([[0, 0, 0]], 1e6, 100.0, [0, 0, 1e-6]), dm=dm,
                        stars=particles(lattice, 1e6, hsml=np.full(len(lattice), 5.0)))
    galaxy.stars.velocities = np.cross([0, 0, 1.0], lattice)  # rotation about +z
    lengths = []

    def spy(x, y, h, *args, **kwargs):
        lengths.append(np.array(h))
        return project(x, y, h, *args, **kwargs)

    project = render.project_particles
    monkeypatch.setattr(render, "project_particles", spy)
    centre = np.flatnonzero((lattice == 0).all(axis=1))[0]
    for k, expected in ((6, 1.0), (18, np.sqrt(2))):
        lengths.clear()
        render_view(galaxy, np.eye(3), MapsConfig(npix=16, pixel_kpc=1.0, star_neighbours=k,
                                                  domains=["stars", "dm"]))
        h_stars, h_dm = lengths
        assert len(h_stars) == len(lattice)
        assert h_stars[centre] == pytest.approx(expected, rel=1e-12)
        assert h_dm.tolist() == [2.0, 3.0]


def test_face_on_view_is_face_on():
    gas = gas_cells([[0, 0, 0]], 1e6, 100.0, [0, 0, 1e-6])
    galaxy = toy_galaxy(gas)
    tilt = random_rotations(1, 11)[0]
    tilted = galaxy.rotated(tilt)
    views = galaxy_views(tilted.stellar_angular_momentum(), 0, n_random=0)
    np.testing.assert_allclose(views[0].matrix @ tilt @ [0, 0, 1.0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(face_on_matrix(tilted.stellar_angular_momentum()),
                               views[0].matrix)


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory):
    from alchemy_obs.config import SynthConfig
    from alchemy_obs.sim.synthetic import write_synthetic_cutouts

    folder = tmp_path_factory.mktemp("cutouts")
    paths = write_synthetic_cutouts(SynthConfig(n_galaxies=3, n_particles=3000, seed=5,
                                                out_dir=folder))
    (folder / "cutout_99.hdf5").write_bytes(b"not an hdf5 file")
    return folder, paths


@pytest.mark.slow
def test_cli_builds_reports_failures_and_resumes(cutouts, tmp_path, capsys):
    folder, paths = cutouts
    out = tmp_path / "ds"
    argv = ["maps", "--source", "cutouts", "--input", str(folder), "--out", str(out),
            "--set", "maps.npix=24"]
    assert main(argv + ["--plot", str(tmp_path / "grid.png")]) == 1  # the broken file fails
    captured = capsys.readouterr()
    assert "cutout_99.hdf5" in captured.err and "3 galaxies written" in captured.out
    store = MapStore(out / "dataset.h5")
    assert len(store) == 9 and store.npix == 24
    assert set(store.meta["view"]) == {"random0", "faceon", "edgeon"}
    assert store.domains == MapsConfig().domains
    assert (tmp_path / "grid.png").stat().st_size > 10_000
    for split in ("train", "val", "test"):
        galaxies = set(store.meta["galaxy_id"][store.indices(split)])
        others = set(store.meta["galaxy_id"]) - galaxies
        assert not galaxies & others
    before = shard_path(out, 0).stat().st_mtime_ns
    random0 = store.read(int(np.flatnonzero(store.meta["view"] == "random0")[0]))

    # Rerun: nothing rendered again.
    assert main(argv) == 1
    assert "0 galaxies written, 3 already complete" in capsys.readouterr().out
    assert shard_path(out, 0).stat().st_mtime_ns == before

    # One more random view per galaxy: only that view is rendered; the others are kept.
    assert main(argv + ["--set", "maps.n_random_views=2"]) == 1
    store = MapStore(out / "dataset.h5")
    assert len(store) == 12
    with h5py.File(shard_path(out, 0), "r") as f:
        assert [v.decode() for v in f["meta/view"]] == ["random0", "faceon", "edgeon", "random1"]
    again = store.read(int(np.flatnonzero(store.meta["view"] == "random0")[0]))
    for d in store.domains:
        np.testing.assert_array_equal(again[d], random0[d])

    # Other map settings: refused before any work, not a silent rewrite of every shard.
    stamp = shard_path(out, 0).stat().st_mtime_ns
    assert main(argv + ["--set", "maps.npix=32"]) == 2
    err = capsys.readouterr().err
    assert "other map settings" in err and "--overwrite" in err
    assert shard_path(out, 0).stat().st_mtime_ns == stamp
    assert main(argv + ["--set", "maps.npix=32", "--overwrite"]) == 1  # the broken file again
    assert MapStore(out / "dataset.h5").npix == 32


@pytest.mark.slow
def test_build_dataset_in_parallel_processes(cutouts, tmp_path):
    _, paths = cutouts
    config = MapsConfig(npix=16, domains=["gas", "hi", "temperature"], face_on=False,
                        edge_on=False)
    parallel = build_dataset(cutout_sources(paths[:2]), tmp_path / "b", config, workers=2,
                             progress=False)
    assert sorted(parallel.written) == [0, 1] and not parallel.failed
    serial = build_dataset(cutout_sources(paths[:2]), tmp_path / "a", config, progress=False)
    a, b = MapStore(serial.dataset), MapStore(parallel.dataset)
    assert len(a) == len(b) == 2
    for i in range(len(a)):
        j = int(np.flatnonzero(b.meta["galaxy_id"] == a.meta["galaxy_id"][i])[0])
        for d in a.domains:
            # Thread buffers are summed in a thread-count dependent order: equal to round-off.
            np.testing.assert_allclose(a.read(i)[d], b.read(j)[d], rtol=1e-6)


def test_cli_input_errors(tmp_path, capsys):
    assert main(["maps", "--source", "cutouts", "--input", str(tmp_path)]) == 2
    assert "no *.hdf5" in capsys.readouterr().err
    assert main(["maps", "--source", "tng"]) == 2
    assert "--ids" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_stage_writes_dataset_and_plot(tmp_path):
    from alchemy_obs.config import load_config
    from alchemy_obs.demo import STAGES

    stage = dict(STAGES)["physical maps dataset"]
    config = load_config(None, ["synth.n_galaxies=3", "synth.n_particles=1000", "maps.npix=16"])
    stage(config, tmp_path)
    store = MapStore(tmp_path / "maps" / "dataset.h5")
    assert len(store) == 9 and store.npix == 16
    assert sorted(len(store.indices(s)) for s in ("train", "val", "test")) == [3, 3, 3]
    assert (tmp_path / "maps.png").stat().st_size > 10_000


@pytest.mark.network
@pytest.mark.slow
def test_cli_tng_source_against_a_local_fake_api(tmp_path, monkeypatch, capsys):
    from fake_tng_server import FakeTNGServer

    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    key = "maps-test-key-0123456789"
    served = {sid: make_synthetic_cutout(tmp_path / "served" / f"cutout_{sid}.hdf5", i, 1500,
                                         seed=3)
              for i, sid in enumerate((5, 8))}
    monkeypatch.setenv("TNG_API_KEY", key)
    with FakeTNGServer(served, key) as server:
        argv = ["maps", "--source", "tng", "--ids", "5", "8", "404", "--out", str(tmp_path / "ds"),
                "--set", f"tng.base_url={server.base_url}",
                "--set", f"tng.cache_dir={tmp_path / 'cache'}", "--set", "tng.retries=0",
                "--set", "maps.npix=16", "--set", "maps.domains=[gas, hi]"]
        assert main(argv) == 1  # subhalo 404 does not exist: reported, not fatal
    err = capsys.readouterr().err
    assert "subhalo 404" in err and key not in err
    store = MapStore(tmp_path / "ds" / "dataset.h5")
    assert sorted(set(store.meta["subhalo_id"])) == [5, 8]
    assert set(store.meta["snapshot"]) == {99}
    assert store.domains == ["gas", "hi"]


def test_cutout_sources_use_the_saved_subhalo_document(cutouts, tmp_path):
    import json
    import shutil

    _, paths = cutouts
    copy = tmp_path / "cutout_42.hdf5"
    shutil.copy(paths[1], copy)
    with h5py.File(copy, "r") as f:
        box = float(f["Header"].attrs["BoxSize"])
    # The catalogue centre, deliberately offset from the galaxy by 1 ckpc/h along x.
    plain = cutout_sources([paths[1]])[0].load()
    pos = plain.centre_ckpch + np.array([1.0, 0, 0])
    copy.with_suffix(".json").write_text(json.dumps(
        {"id": 42, "snap": 50, "pos_x": pos[0] % box, "pos_y": pos[1], "pos_z": pos[2]}))
    (source,) = cutout_sources([copy])
    galaxy = source.load()
    assert source.galaxy_id == 42 and galaxy.snapshot == 50 and galaxy.subhalo_id == 42
    np.testing.assert_allclose(galaxy.centre_ckpch, pos % box)


def test_maps_hash_tracks_only_value_changing_settings():
    from alchemy_obs.maps.build import maps_hash

    base = maps_hash(MapsConfig())
    assert base == maps_hash(MapsConfig(n_random_views=4, edge_on=False, out_dir="elsewhere",
                                        split_seed=3, compression="lzf"))
    for change in ({"npix": 256}, {"kernel": "wendland_c2"}, {"slab_kpc": 5.0},
                   {"uvb": "HM12"}, {"sf_temperature": "cold"}, {"seed": 1}):
        assert maps_hash(MapsConfig(**change)) != base, change
