"""The output of ``infer`` lies on exactly the input's celestial grid, with masks preserved."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _infer_helpers import REAL_CUBE, gaussian_cube_data, gaussian_cube_header, make_model, write_cube
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from alchemy_obs.cli import main
from alchemy_obs.infer.pipeline import infer_file, load_translator
from alchemy_obs.infer.preprocess import galaxy_centre, model_grid
from alchemy_obs.observe.resample import reproject_map
from alchemy_obs.infer.read import parse_beam, read_observation
from alchemy_obs.skyimage import SkyImage
from alchemy_obs.translate.normalise import Normalisation


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "tiny", npix=16, pixel_kpc=2.0)


def _wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def assert_same_sky(out_header: fits.Header, in_header: fits.Header, shape: tuple[int, int]):
    """Every output pixel's world position equals the input's, through each one's header."""
    out_wcs = _wcs(out_header)
    in_wcs = _wcs(in_header).celestial
    assert out_wcs.naxis == 2
    y, x = np.indices(shape)
    world_out = out_wcs.pixel_to_world_values(x, y)
    world_in = in_wcs.pixel_to_world_values(x, y)
    np.testing.assert_allclose(world_out[0], world_in[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(world_out[1], world_in[1], rtol=0, atol=1e-10)
    assert out_wcs.celestial.world_axis_object_classes["celestial"][2] == \
        in_wcs.world_axis_object_classes["celestial"][2]  # same frame (FK5 J2000, ICRS...)


def test_real_things_cube_keeps_wcs_shape_and_mask(tmp_path, model_dir):
    if not REAL_CUBE.is_file():
        pytest.skip(f"{REAL_CUBE} is absent")
    rc = main(["infer", str(REAL_CUBE), "--model", str(model_dir), "--beam", "60",
               "--distance", "3.2", "--out", str(tmp_path)])
    assert rc == 0
    out = tmp_path / "hi_vla_things_ngc2403_regrid_dm.fits"
    in_header = fits.getheader(REAL_CUBE)
    raw = fits.getdata(REAL_CUBE)
    with fits.open(out) as hdul:
        header, data, uncert = hdul[0].header, hdul[0].data, hdul["UNCERT"].data
        assert hdul["UNCERT"].header["CTYPE1"] == "RA---SIN"
    assert data.shape == uncert.shape == raw.shape[1:]
    assert_same_sky(header, in_header, data.shape)
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2",
                "EPOCH"):
        assert header[key] == in_header[key]
    assert header["EQUINOX"] == 2000.0
    assert "CTYPE3" not in header and "NAXIS3" not in header
    masked = ~np.isfinite(raw).any(axis=0)
    assert masked.sum() > 800
    assert np.isnan(data[masked]).all()
    assert np.isfinite(data[~masked]).any()
    assert header["BUNIT"] == "solMass kpc-2"
    assert u.Unit(header["BUNIT"], format="fits") == u.Msun / u.kpc**2
    assert header["INFILE"] == REAL_CUBE.name
    assert header["INSHA256"] == "2e02f4a3116fdb22521bf10a2b8b385f6f0493eb994b1691c5d895632969e251"
    assert header["DISTANCE"] == 3.2 and header["DISTSRC"] == "option"
    assert header["INBMAJ"] == 60.0 and header["BEAMSRC"] == "option"


CASES = {
    "ncp_freq": dict(spectral="FREQ", projection="NCP"),
    "velo_hel": dict(spectral="VELO-HEL"),
    "vrad": dict(spectral="VRAD"),
    "vopt_stokes": dict(spectral="VOPT", stokes=True),
    "cd_matrix_rotated": dict(spectral="FREQ", CDELT1=None, CDELT2=None,
                              CD1_1=-1e-3, CD1_2=2e-4, CD2_1=2e-4, CD2_2=1e-3),
    "epoch_no_equinox": dict(spectral="FREQ", EQUINOX=None, EPOCH=1950.0, RADESYS="FK4"),
    "galactic": dict(spectral="FREQ", CTYPE1="GLON-CAR", CTYPE2="GLAT-CAR", RADESYS=None,
                     EQUINOX=None),
    "bmaj_minus_one": dict(spectral="FREQ", BMAJ=-1.0, BMIN=-1.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_awkward_headers_keep_wcs(tmp_path, model_dir, case):
    header = gaussian_cube_header(**CASES[case])
    path = write_cube(tmp_path / f"{case}.fits", header)
    in_header = fits.getheader(path)
    args = ["infer", str(path), "--model", str(model_dir), "--distance", "10",
            "--out", str(tmp_path / "out")]
    if case == "bmaj_minus_one":
        args += ["--beam", "12,10,30"]
    assert main(args) == 0
    out = tmp_path / "out" / f"{case}_dm.fits"
    header, data = fits.getheader(out), fits.getdata(out)
    assert data.shape == (in_header["NAXIS2"], in_header["NAXIS1"])
    assert_same_sky(header, in_header, data.shape)
    assert header["CTYPE1"] == in_header["CTYPE1"]  # NCP stays NCP, not SIN+PV
    assert not any(k.startswith(("CTYPE3", "CTYPE4", "NAXIS3")) for k in header)
    blank = ~np.isfinite(gaussian_cube_data(header=in_header)).reshape(
        -1, in_header["NAXIS2"], in_header["NAXIS1"]).any(axis=0)
    assert np.isnan(data[blank]).all()


def test_prediction_lands_on_the_model_footprint(tmp_path, model_dir):
    """A model whose output is a constant fills exactly its npix*pixel_kpc square on the sky
    (``coverage="centre"``; the tiled default is tested in test_infer_tiles.py)."""
    model = load_translator(model_dir)
    for p in model.method.nets["gen"].parameters():
        p.data.zero_()  # output 0 in normalised units everywhere
    constant = float(Normalisation.from_dict(model.card["normalisation"])
                     .inverse("dm", __import__("torch").zeros(1))[0])
    header = gaussian_cube_header(nx=60, ny=60, CDELT1=-2 / 3600, CDELT2=2 / 3600)
    data = gaussian_cube_data(header, blank_corner=False)
    path = write_cube(tmp_path / "big.fits", header, data)
    distance = 20 * u.Mpc
    result = infer_file(path, model, tmp_path / "out", distance=distance, centre="header")
    out = fits.getdata(result.output)
    finite = np.isfinite(out)
    np.testing.assert_allclose(out[finite], constant, rtol=1e-5)
    # 16 pixels of 2 kpc at 20 Mpc = 330 arcsec = 165 input pixels > field: all finite.
    assert finite.all()
    result = infer_file(path, model, tmp_path / "out2", distance=200 * u.Mpc, centre="header",
                        coverage="centre")
    out = fits.getdata(result.output)
    side_arcsec = np.degrees(32 / 200e3) * 3600  # 33.0 arcsec = 16.5 input pixels
    rows = np.isfinite(out).any(axis=1).sum()
    cols = np.isfinite(out).any(axis=0).sum()
    assert abs(rows - side_arcsec / 2) <= 1.5 and abs(cols - side_arcsec / 2) <= 1.5
    ys, xs = np.nonzero(np.isfinite(out))
    assert abs(xs.mean() - 29.5) < 0.6 and abs(ys.mean() - 29.5) < 0.6  # centred on CRVAL


def test_centre_and_round_trip_reprojection():
    """The flux-weighted centre is found, and sky -> model grid -> sky reproduces a smooth map."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [40.0, -20.0], [50.5, 50.5], [-2e-3, 2e-3]
    y, x = np.indices((100, 100))
    blob = np.exp(-0.5 * (((x - 60) / 8.0) ** 2 + ((y - 45) / 6.0) ** 2))
    exp_lon, exp_lat = w.pixel_to_world_values(60, 45)
    lon, lat = galaxy_centre(SkyImage(blob * u.cm**-2, w))
    assert lon == pytest.approx(float(exp_lon), abs=1e-6)
    assert lat == pytest.approx(float(exp_lat), abs=1e-6)
    # Noise over the whole field does not pull the centre towards the field's centre.
    noisy = blob + np.random.default_rng(3).normal(0, 0.02, blob.shape)
    lon_n, lat_n = galaxy_centre(SkyImage(noisy * u.cm**-2, w))
    assert lon_n == pytest.approx(float(exp_lon), abs=0.1 * 2e-3)  # 0.1 pixel
    assert lat_n == pytest.approx(float(exp_lat), abs=0.1 * 2e-3)
    assert galaxy_centre(SkyImage(noisy * u.cm**-2, w), "header") == (40.0, -20.0)
    grid = model_grid((lon, lat), w, pixel_kpc=0.5, npix=64, distance=10 * u.Mpc)
    assert grid.wcs.ctype[0] == "RA---SIN"
    assert abs(grid.wcs.cdelt[0]) == pytest.approx(np.degrees(0.5 / 1e4))
    on_grid = reproject_map(blob, w, grid, shape_out=(64, 64))
    gy, gx = np.indices((64, 64))
    px, py = w.world_to_pixel_values(*grid.pixel_to_world_values(gx, gy))
    analytic = np.exp(-0.5 * (((px - 60) / 8.0) ** 2 + ((py - 45) / 6.0) ** 2))
    inside_grid = np.isfinite(on_grid)
    assert inside_grid.mean() > 0.9
    # Model pixels 1.4x the input's: the anti-aliased resampling smooths by about an output
    # pixel, which lowers this blob's peak by 1.5 %.
    np.testing.assert_allclose(on_grid[inside_grid], analytic[inside_grid], atol=0.02)
    back = reproject_map(on_grid, grid, w, shape_out=(100, 100))
    inside = np.isfinite(back)
    assert inside.sum() > 500
    # The coarser model grid cannot hold the peak's curvature: 3 % lower after the round trip.
    np.testing.assert_allclose(back[inside], blob[inside], atol=0.035)


def test_moment0_image_input(tmp_path, model_dir):
    """A 2-D moment-0 map (Jy/beam km/s) is accepted and written on its own grid."""
    header = gaussian_cube_header()
    for key in ("CTYPE3", "CRVAL3", "CDELT3", "CRPIX3", "CUNIT3", "NAXIS3", "RESTFRQ"):
        del header[key]
    header["NAXIS"] = 2
    header["BUNIT"] = "JY/BEAM.KM/S"
    header["DISTANCE"] = (12.0, "Mpc")
    image = np.nan_to_num(gaussian_cube_data(header=gaussian_cube_header()).sum(0)) * 4.2
    image[:3, :3] = np.nan
    path = tmp_path / "mom0.fits"
    fits.PrimaryHDU(image.astype(np.float32), header).writeto(path)
    obs = read_observation(path, beam=parse_beam("12"))
    assert obs.cube is None and obs.image.shape == (20, 24)
    assert main(["infer", str(path), "--model", str(model_dir), "--out", str(tmp_path)]) == 0
    out = fits.getheader(tmp_path / "mom0_dm.fits")
    assert out["DISTANCE"] == 12.0 and out["DISTSRC"] == "header DISTANCE"
    assert np.isnan(fits.getdata(tmp_path / "mom0_dm.fits")[:3, :3]).all()
    assert_same_sky(out, header, (20, 24))


def test_continuum_image_with_degenerate_axes(tmp_path):
    """A CASA-style continuum image (RA, DEC, one FREQ plane, one STOKES plane)."""
    model = make_model(tmp_path / "cont", npix=16, pixel_kpc=2.0, inputs=("continuum",),
                       target="stars")
    header = gaussian_cube_header(nchan=1, stokes=True, CRVAL3=1.4e9, RESTFRQ=1.4e9,
                                  DISTANCE=25.0)
    data = gaussian_cube_data(header)
    path = write_cube(tmp_path / "continuum.fits", header, data)
    obs = read_observation(path)
    assert obs.cube is None and obs.image.shape == (20, 24)
    assert main(["infer", str(path), "--model", str(model), "--out", str(tmp_path)]) == 0
    out_header = fits.getheader(tmp_path / "continuum_stars.fits")
    out = fits.getdata(tmp_path / "continuum_stars.fits")
    assert out.shape == (20, 24)
    assert_same_sky(out_header, fits.getheader(path), out.shape)
    assert np.isnan(out[:4, :5]).all() and np.isfinite(out[4:, 5:]).all()
    assert out_header["DISTANCE"] == 25.0


def _mock_result(nchan: int = 10, npix: int = 32, vary_beams: bool = False):
    """An imaging result like the built-in simulator's, for the project's own FITS writer."""
    from radio_beam import Beams

    from alchemy_obs.observe.imaging import ImageResult

    freqs = (1.4134e9 - 5e4 * np.arange(nchan)) * u.Hz
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ"]
    w.wcs.crval = [150.0, -30.0, freqs[0].value]
    w.wcs.crpix = [npix / 2 + 0.5, npix / 2 + 0.5, 1.0]
    w.wcs.cdelt = [-3 / 3600, 3 / 3600, -5e4]
    w.wcs.cunit = ["deg", "deg", "Hz"]
    w.wcs.radesys = "ICRS"
    y, x = np.mgrid[0:npix, 0:npix] - (npix - 1) / 2
    disc = 2e-3 * np.exp(-np.hypot(x, 0.7 * y) / 5.0)
    line = np.exp(-0.5 * ((np.arange(nchan) - nchan / 2) / 2.0) ** 2)
    cube = (line[:, None, None] * disc[None]) * u.Jy / u.beam
    major = np.linspace(9, 13, nchan) if vary_beams else np.full(nchan, 10.0)
    beams = Beams(major=major * u.arcsec, minor=0.8 * major * u.arcsec, pa=np.zeros(nchan) * u.deg)
    return ImageResult(
        image=cube, model=cube.value * u.Jy, residual=0 * cube, dirty=cube,
        psf=np.zeros((nchan, 8, 8)), beams=beams, wcs=w,
        noise_rms=np.full(nchan, 1e-4) * u.Jy / u.beam, jvm_epsilon=np.ones(nchan),
        frequencies=freqs, meta={"weighting": "natural", "mode": "fast"},
    )


@pytest.mark.parametrize("vary_beams", [False, True])
def test_mock_fits_from_the_observe_writer(tmp_path, model_dir, vary_beams):
    """Files written by alchemy_obs.observe.fits (STOKES, FREQ, beams; BEAMS table if varying)."""
    from alchemy_obs.observe.fits import write_fits
    from alchemy_obs.physics.radio import HI_REST_FREQUENCY

    path = write_fits(_mock_result(vary_beams=vary_beams), tmp_path / "mock_hi_image.fits",
                      restfreq=HI_REST_FREQUENCY, object_name="synthetic 0")
    with fits.open(path) as hdul:
        assert ("BEAMS" in hdul) == vary_beams
        in_header = hdul[0].header
    obs = read_observation(path)
    assert obs.cube.shape == (10, 32, 32)
    assert obs.beam.major.to_value(u.arcsec) == pytest.approx(13.0 if vary_beams else 10.0,
                                                               rel=1e-4)
    assert main(["infer", str(path), "--model", str(model_dir), "--distance", "20",
                 "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "mock_hi_image_dm.fits"
    header, data = fits.getheader(out), fits.getdata(out)
    assert data.shape == (32, 32)
    assert_same_sky(header, in_header, data.shape)
    assert header["OBJECT"] == "synthetic 0" and header["TELESCOP"] == "SKA-MID"
    assert np.isfinite(data).all()


def test_spectral_axis_first(tmp_path, model_dir):
    """Axes stored as (FREQ, RA, DEC): celestial cards are renumbered to 1 and 2."""
    std = gaussian_cube_header()
    data = gaussian_cube_data(std)  # numpy (freq, dec, ra)
    h = fits.Header()
    for new, old in ((1, 3), (2, 1), (3, 2)):
        for key in ("CTYPE", "CRVAL", "CDELT", "CRPIX", "CUNIT"):
            h[f"{key}{new}"] = std[f"{key}{old}"]
    for key in ("RESTFRQ", "EQUINOX", "RADESYS", "BUNIT", "BMAJ", "BMIN", "BPA"):
        h[key] = std[key]
    path = tmp_path / "freq_first.fits"
    fits.PrimaryHDU(np.ascontiguousarray(np.transpose(data, (1, 2, 0))), h).writeto(path)
    obs = read_observation(path)
    assert obs.cube.shape == data.shape
    np.testing.assert_array_equal(obs.cube.unmasked_data[:].value, data)
    assert main(["infer", str(path), "--model", str(model_dir), "--distance", "10",
                 "--out", str(tmp_path)]) == 0
    out = fits.getheader(tmp_path / "freq_first_dm.fits")
    assert out["CTYPE1"] == "RA---SIN" and out["CTYPE2"] == "DEC--SIN"
    assert_same_sky(out, fits.getheader(path), data.shape[1:])


@pytest.mark.slow
def test_simulated_ska_mid_cube(tmp_path, model_dir):
    """A mock made by the observe stage (SKA-MID, fast mode): infer reads back its moment-0,
    column density and redshift exactly as observe computed them, and keeps its WCS."""
    from alchemy_obs.config import load_config
    from alchemy_obs.infer.preprocess import line_integral, to_domain
    from alchemy_obs.observe.fits import write_fits
    from alchemy_obs.observe.mock import make_mock
    from alchemy_obs.observe.sky import HISource, SkyGrid, SkyPlacement, SpectralAxis
    from alchemy_obs.physics.radio import HI_REST_FREQUENCY

    rng = np.random.default_rng(0)  # a lopsided rotating disc of HI particles
    n = 3000
    pos = rng.normal(0.0, 3.0, (n, 3)) * [1.0, 1.0, 0.15]
    pos[:, 0] += 2.0 * (pos[:, 1] > 0)
    vel = np.stack([-pos[:, 1] * 25, pos[:, 0] * 25, np.zeros(n)], 1)
    source = HISource(pos * u.kpc, vel * u.km / u.s, rng.uniform(1e5, 1e6, n) * u.Msun,
                      rng.uniform(0.3, 1.5, n) * u.kpc, np.full(n, 8000.0) * u.K)
    cfg = load_config(None, ["observe.noise=false", "observe.mode=fast",
                             "observe.hour_angle_start_h=-0.5", "observe.hour_angle_end_h=0.5",
                             "observe.dump_s=600"])
    m = make_mock(source, SkyPlacement(distance=20 * u.Mpc), SkyGrid(32, 1.0 * u.kpc),
                  observe=cfg.observe, spectral=SpectralAxis(12, 20 * u.km / u.s))
    path = write_fits(m.result, tmp_path / "mock_hi_image.fits", m.observation,
                      restfreq=HI_REST_FREQUENCY)
    sky = line_integral(read_observation(path))
    assert sky.redshift == pytest.approx(m.placement.observed_redshift, abs=1e-7)
    mom0 = m.moment0(pbcor=False)  # the written cube is the apparent brightness
    np.testing.assert_allclose(to_domain(sky, "hi_mom0").to_value(mom0.unit), mom0.value,
                               rtol=1e-6, atol=1e-6 * np.abs(mom0.value).max())
    nhi = m.column_density(pbcor=False)
    np.testing.assert_allclose(to_domain(sky, "hi_nhi").to_value(nhi.unit), nhi.value,
                               rtol=1e-6, atol=1e-6 * np.abs(nhi.value).max())
    assert main(["infer", str(path), "--model", str(model_dir), "--distance", "20",
                 "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "mock_hi_image_dm.fits"
    data = fits.getdata(out)
    # The 32 kpc model grid is centred on the (lopsided) disc, not on the 32 kpc field, so
    # an edge of the field lies outside it and stays blank.
    assert data.shape == (32, 32) and np.isfinite(data).mean() > 0.9
    assert_same_sky(fits.getheader(out), fits.getheader(path), data.shape)


def test_luminosity_distance_cards_become_angular_diameter_distances():
    from alchemy_obs.infer.preprocess import resolve_distance
    from alchemy_obs.physics.units import COSMOLOGY

    # Mocks write both: DISTANCE is D_A and wins.
    h = fits.Header()
    h["DISTANCE"] = (95.0, "[Mpc] angular-diameter distance")
    h["DISTLUM"] = (104.8, "[Mpc] luminosity distance")
    h["REDSHIFT"] = 0.05
    assert resolve_distance(h, None) == (95.0 * u.Mpc, "header DISTANCE")
    # A luminosity distance alone: D_A = D_L / (1 + z)^2 = 104.8 / 1.1025 = 95.06 Mpc.
    del h["DISTANCE"]
    d, source = resolve_distance(h, None)
    assert d.to_value(u.Mpc) == pytest.approx(104.8 / 1.05**2, rel=1e-12)
    assert source == "header DISTLUM (luminosity)"
    # A DISTANCE card that says it is a luminosity distance, redshift from the line.
    g = fits.Header()
    g["DISTANCE"] = (104.8, "luminosity distance [Mpc]")
    assert resolve_distance(g, 0.04)[0].to_value(u.Mpc) == pytest.approx(104.8 / 1.04**2)
    # No redshift anywhere: the redshift of D_L in the package cosmology (Planck 2018).
    z = 0.05
    g["DISTANCE"] = (COSMOLOGY.luminosity_distance(z).to_value(u.Mpc), "luminosity distance")
    d, _ = resolve_distance(g, None)
    assert d.to_value(u.Mpc) == pytest.approx(COSMOLOGY.angular_diameter_distance(z).to_value(u.Mpc),
                                              rel=1e-6)


def test_one_cosmology_for_mock_placements_and_inference():
    import inspect

    from astropy.cosmology import Planck18

    from alchemy_obs.infer.preprocess import resolve_distance
    from alchemy_obs.observe.sky import SkyPlacement
    from alchemy_obs.physics.units import COSMOLOGY

    assert COSMOLOGY is Planck18
    assert SkyPlacement(redshift=0.01).cosmology is COSMOLOGY
    assert inspect.signature(resolve_distance).parameters["cosmology"].default is COSMOLOGY
