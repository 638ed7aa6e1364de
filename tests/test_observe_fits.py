"""FITS output opens in spectral-cube with the right beam(s) and WCS."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from spectral_cube import SpectralCube, VaryingResolutionSpectralCube

from alchemy_obs.config import TelescopeConfig
from alchemy_obs.observe.fast import ImagePlaneSimulator
from alchemy_obs.observe.fits import write_fits
from alchemy_obs.observe.imaging import Imager
from alchemy_obs.skyimage import SkyImage
from alchemy_obs.observe.telescope import Observation, Telescope

from _observe_helpers import asymmetric_source, sky_wcs

N = 64
HI = 1420405751.768 * u.Hz


def _result(freqs_hz):
    wcs = sky_wcs(N, 4.0, freqs_hz=freqs_hz)
    img = asymmetric_source(N)
    sky = SkyImage(np.stack([img] * len(freqs_hz)) * u.Jy, wcs)
    tel = Telescope.from_config(TelescopeConfig(array="AA*", max_baseline_km=1.5))
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-1, 1) * u.hourangle, dump_time=1800 * u.s,
                                       freq_start=freqs_hz[0] * u.Hz,
                                       channel_width=(freqs_hz[1] - freqs_hz[0]) * u.Hz,
                                       n_channels=len(freqs_hz))
    fast = ImagePlaneSimulator(obs, Imager(wcs, (N, N), niter=200), seed=0)
    return fast.observe(sky), obs, img


@pytest.mark.filterwarnings("ignore:Cube is a Stokes cube")
def test_cube_with_varying_beams_opens_in_spectral_cube(tmp_path):
    freqs = np.array([1.20e9, 1.30e9, 1.40e9])  # 15 % apart: the beam shrinks with frequency
    result, obs, _ = _result(freqs)
    path = write_fits(result, tmp_path / "mock.fits", obs, restfreq=HI, object_name="g1")
    cube = SpectralCube.read(path)
    assert isinstance(cube, VaryingResolutionSpectralCube)
    assert cube.unit == u.Jy / u.beam
    np.testing.assert_allclose(cube.spectral_axis.to_value(u.Hz), freqs)
    for k in range(3):
        assert cube.beams[k].major.to_value(u.arcsec) == pytest.approx(
            result.beams[k].major.to_value(u.arcsec), rel=1e-5)
        assert cube.beams[k].pa.to_value(u.deg) == pytest.approx(result.beams[k].pa.to_value(u.deg), abs=1e-4)
    assert cube.beams[0].major > cube.beams[2].major
    np.testing.assert_allclose(cube.filled_data[:].value, result.image.value, rtol=1e-6, atol=1e-7)
    hdr = fits.getheader(path)
    assert hdr["CTYPE1"] == "RA---SIN" and hdr["CTYPE2"] == "DEC--SIN"
    assert hdr["CTYPE3"] == "FREQ" and hdr["CTYPE4"] == "STOKES"
    assert hdr["BUNIT"] == "Jy/beam" and hdr["TELESCOP"] == "SKA-MID"
    assert hdr["RESTFRQ"] == pytest.approx(HI.value)
    assert hdr["SPECSYS"] == "TOPOCENT"
    bary = write_fits(result, tmp_path / "bary.fits", obs, specsys="BARYCENT")
    assert fits.getheader(bary)["SPECSYS"] == "BARYCENT"
    assert hdr["NANTENNA"] == obs.telescope.n_antennas
    assert hdr["BMAJ"] == pytest.approx(result.beams[0].major.to_value(u.deg), rel=1e-6)
    # World coordinates of the phase centre survive the round trip.
    c = cube.wcs.celestial.pixel_to_world(N / 2, N / 2)
    assert c.separation(obs.phase_centre) < 1e-6 * u.arcsec


@pytest.mark.filterwarnings("ignore:Cube is a Stokes cube")
def test_single_channel_image_has_one_beam(tmp_path):
    result, obs, _ = _result(np.array([1.4e9, 1.401e9]))
    single = type(result)(result.image[:1], result.model[:1], result.residual[:1], result.dirty[:1],
                          result.psf[:1], result.beams[:1], result.wcs, result.noise_rms[:1],
                          result.jvm_epsilon[:1], result.frequencies[:1], result.meta)
    path = write_fits(single, tmp_path / "img.fits", obs)
    cube = SpectralCube.read(path)
    assert cube.beam.major.to_value(u.arcsec) == pytest.approx(single.beams[0].major.to_value(u.arcsec), rel=1e-6)
    assert len(fits.open(path)) == 1  # no BEAMS table when there is one beam
    with pytest.raises(FileExistsError):
        write_fits(single, path, obs)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_mock_products_carry_provenance_and_go_back_through_infer(tmp_path, capsys):
    """`alchemy-obs mock --galaxy` writes a PSF and provenance cards, and its cube and moment
    map go through `alchemy-obs infer` without --distance (the DISTANCE card is used)."""
    from alchemy_obs.cli import main
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    cutout = make_synthetic_cutout(tmp_path / "cutout_0.hdf5", 0, 6000, 7)
    out = tmp_path / "mocks"
    opts = ["--set", "mock.npix=48", "--set", "mock.n_channels=24", "--set",
            "mock.channel_width_kms=12", "--set", "mock.products=[hi]", "--set",
            "observe.mode=fast", "--set", "maps.pixel_kpc=0.09375"]  # 512 px: 48 kpc
    assert main(["mock", "--galaxy", str(cutout), "--out", str(out), *opts]) == 0
    capsys.readouterr()
    cube, mom0, psf = (out / f"cutout_0_faceon_hi_{p}.fits" for p in ("image", "mom0", "psf"))
    headers = {p: fits.getheader(p) for p in (cube, mom0, psf)}
    for path, header in headers.items():
        for key in ("DATE", "SWVERS", "SETTINGS", "SEED", "DISTANCE", "DISTLUM", "REDSHIFT"):
            assert key in header, (path.name, key)
        assert header["SIMULATD"] is True and header["OBJECT"] == "cutout_0"
        assert any("alchemy-obs" in h for h in header["HISTORY"])
        assert header["SPECSYS"] == headers[cube]["SPECSYS"]
    # D_A = D_L / (1 + z)^2 for the same redshift.
    h = headers[cube]
    assert h["DISTANCE"] == pytest.approx(h["DISTLUM"] / (1 + h["REDSHIFT"]) ** 2, rel=1e-6)
    beam = fits.getdata(psf)[0]
    assert beam.shape == fits.getdata(cube)[0].shape
    peak = np.unravel_index(np.argmax(beam[0]), beam[0].shape)
    assert beam[0][peak] == pytest.approx(1.0, abs=1e-3)
    # A rerun with other settings and without --overwrite is refused before any work,
    # naming the flag (the same settings are up to date: tests/test_mock.py).
    other = [*opts, "--set", "observe.seed=1"]
    assert main(["mock", "--galaxy", str(cutout), "--out", str(out), *other]) == 2
    assert "--overwrite" in capsys.readouterr().err
    inferred = tmp_path / "inferred"
    assert main(["infer", str(cube), str(mom0), "--model", "hi2dm", "--out", str(inferred)]) == 0
    for path in (cube, mom0):
        result = fits.getheader(inferred / f"{path.stem}_dm.fits")
        assert result["DISTSRC"] == "header DISTANCE"
        assert result["DISTANCE"] == pytest.approx(h["DISTANCE"], rel=1e-6)
