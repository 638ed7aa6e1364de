"""Beam matching: an observation sharper than the model's training beam is smoothed to it,
a much coarser one is refused, and the output says which beam the model saw."""

from __future__ import annotations

import numpy as np
import pytest
from _infer_helpers import gaussian_cube_header, make_model, write_cube
from astropy import units as u
from astropy.io import fits

from alchemy_obs.cli import main
from alchemy_obs.infer.pipeline import infer_file, load_translator

DISTANCE = 10 * u.Mpc
#: 24" at 10 Mpc: the training beam of the test model, twice the cube's 12" beam.
TRAINING_KPC = (24 * u.arcsec).to_value(u.rad) * DISTANCE.to_value(u.kpc)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "tiny", npix=16, pixel_kpc=2.0)


def _point_source_cube(path, beam_arcsec: float = 12.0):
    """A 64x64 cube of 4" pixels, one unresolved source at pixel (32, 32) seen through a
    circular ``beam_arcsec`` beam, 1 Jy/beam at the peak of the middle channel."""
    n, nchan = 64, 8
    h = gaussian_cube_header(nx=n, ny=n, nchan=nchan, CRPIX1=33.0, CRPIX2=33.0,
                             BMAJ=beam_arcsec / 3600, BMIN=beam_arcsec / 3600, BPA=0.0)
    y, x = np.mgrid[0:n, 0:n]
    sigma_px = beam_arcsec / 4.0 / np.sqrt(8 * np.log(2))
    image = np.exp(-0.5 * ((x - 32) ** 2 + (y - 32) ** 2) / sigma_px**2)
    spectrum = np.exp(-0.5 * ((np.arange(nchan) - 3.5) / 1.5) ** 2)
    return write_cube(path, h, (spectrum[:, None, None] * image[None]).astype(np.float32))


def test_finer_beam_is_smoothed_to_the_training_beam(tmp_path, model_dir):
    """12" input, 24" training beam: the column-density peak of a point source drops by the
    beam-area ratio (1/4) and the output header carries the 24" beam."""
    model = load_translator(model_dir)
    cube = _point_source_cube(tmp_path / "point.fits")
    unmatched = infer_file(cube, model, tmp_path / "a", distance=DISTANCE, mask_sigma=None)
    model.beam_fwhm_kpc = TRAINING_KPC
    matched = infer_file(cube, model, tmp_path / "b", distance=DISTANCE, mask_sigma=None)
    assert unmatched.beam.major.to_value(u.arcsec) == pytest.approx(12.0)
    assert matched.beam.major.to_value(u.arcsec) == pytest.approx(24.0, rel=1e-6)
    assert matched.beam.minor.to_value(u.arcsec) == pytest.approx(24.0, rel=1e-6)
    ratio = np.nanmax(matched.observable.value) / np.nanmax(unmatched.observable.value)
    assert ratio == pytest.approx((12.0 / 24.0) ** 2, rel=0.02)
    # Smoothing moves no flux: the column density integrates to the same total.
    total = np.nansum(matched.observable.value) / np.nansum(unmatched.observable.value)
    assert total == pytest.approx(1.0, rel=0.01)
    header = fits.getheader(matched.output)
    assert header["BMAJ"] * 3600 == pytest.approx(24.0, rel=1e-6)
    assert header["BMIN"] * 3600 == pytest.approx(24.0, rel=1e-6)
    assert header["BPA"] == pytest.approx(0.0, abs=1e-6)
    assert header["INBMAJ"] == pytest.approx(12.0)
    history = " ".join(str(h) for h in header["HISTORY"])
    assert 'input smoothed from 12"x12"' in history and "24" in history
    assert fits.getheader(unmatched.output)["BMAJ"] * 3600 == pytest.approx(12.0)


def test_coarser_beam_is_refused_beyond_the_tolerance(tmp_path, model_dir, capsys):
    """A 48" beam is 2x the 24" training beam: refused (default tolerance 1.5), accepted
    unsmoothed once infer.beam_tolerance allows it."""
    from alchemy_obs.translate.checkpoint import load_model, save_model

    method, card = load_model(model_dir, device="cpu")
    card["beam_fwhm_kpc"] = TRAINING_KPC
    folder = save_model(tmp_path / "beamed", method, card)
    cube = _point_source_cube(tmp_path / "coarse.fits", beam_arcsec=48.0)
    args = ["infer", str(cube), "--model", str(folder), "--distance", "10",
            "--out", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{cube}: the beam (48\"x48\"" in err and "2.00x coarser than the model's" in err
    assert "infer.beam_tolerance = 1.5" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert main([*args, "--set", "infer.beam_tolerance=2.1"]) == 0
    header = fits.getheader(tmp_path / "out" / "coarse_dm.fits")
    assert header["BMAJ"] * 3600 == pytest.approx(48.0)
    assert "used as it is" in " ".join(str(h) for h in header["HISTORY"])


def test_smoothing_kernel_has_the_beam_shape_and_orientation():
    """A point (0.1" beam) smoothed to 20"x8" at PA 30 deg (east of north) on an RA axis that
    runs west with the pixel index: second moments give back the beam; a per-beam map keeps
    its point-source peak."""
    from astropy.wcs import WCS
    from radio_beam import Beam

    from alchemy_obs.infer.preprocess import convolve_to
    from alchemy_obs.skyimage import SkyImage

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    w.wcs.crpix, w.wcs.crval = [65, 65], [150, 30]
    image = np.zeros((129, 129))
    image[64, 64] = 1.0
    goal = Beam(20 * u.arcsec, 8 * u.arcsec, 30 * u.deg)
    out = convolve_to(SkyImage(u.Quantity(image, u.K), w, beam=Beam(0.1 * u.arcsec)), goal)
    assert out.beam == goal
    y, x = np.mgrid[0:129, 0:129]
    east, north, weight = -(x - 64.0), y - 64.0, out.data.value / out.data.value.sum()
    cov = [[np.sum(weight * east * east), np.sum(weight * east * north)],
           [np.sum(weight * east * north), np.sum(weight * north * north)]]
    values, vectors = np.linalg.eigh(cov)
    fwhm = np.sqrt(values[::-1]) * np.sqrt(8 * np.log(2))
    np.testing.assert_allclose(fwhm, [20.0, 8.0], rtol=1e-3)
    major = vectors[:, 1]
    assert np.degrees(np.arctan2(major[0], major[1])) % 180 == pytest.approx(30.0, abs=0.1)
    # In Jy/beam a point source's peak is its flux, whatever the beam.
    small = Beam(6 * u.arcsec)
    sigma = 6.0 / np.sqrt(8 * np.log(2))
    point = np.exp(-0.5 * ((x - 64.0) ** 2 + (y - 64.0) ** 2) / sigma**2)
    per_beam = convolve_to(SkyImage(u.Quantity(point, u.Jy / u.beam), w, beam=small), Beam(18 * u.arcsec))
    assert per_beam.data.value.max() == pytest.approx(1.0, rel=2e-3)
