"""MeasurementSet writer (python-casacore) and WSClean as an alternative imager."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u

from alchemy_obs.config import TelescopeConfig
from alchemy_obs.observe.imaging import Imager, dirty_image
from alchemy_obs.observe.interferometer import BuiltinSimulator
from alchemy_obs.skyimage import SkyImage
from alchemy_obs.observe.telescope import Observation, Telescope

from _observe_helpers import asymmetric_source, sky_wcs

ct = pytest.importorskip("casacore.tables", reason="python-casacore is not installed")

N = 128
CELL = 2.0


@pytest.fixture(scope="module")
def vis():
    tel = Telescope.from_config(TelescopeConfig(array="AA*", max_baseline_km=2))
    wcs = sky_wcs(N, CELL)
    img = asymmetric_source(N)
    img[96, 30] = 1.0  # bright point 68" east, 64" north
    sky = SkyImage(img * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-2, 2) * u.hourangle, dump_time=1800 * u.s,
                                       freq_start=1.40 * u.GHz, channel_width=1 * u.MHz, n_channels=2)
    return BuiltinSimulator(noise=False).observe(sky, obs), wcs, img


def test_ms_round_trip(vis, tmp_path):
    from alchemy_obs.observe.measurement_set import read_ms_data, write_ms

    v, _, _ = vis
    path = write_ms(v, tmp_path / "mock.ms")
    back = read_ms_data(path)
    np.testing.assert_allclose(back["data"][:, :, 0], v.data, atol=1e-6)
    np.testing.assert_allclose(back["data"][:, :, 1], v.data, atol=1e-6)
    np.testing.assert_array_equal(back["uvw"], v.uvw)
    np.testing.assert_allclose(back["chan_freq"], v.freq_hz)
    with ct.table(f"{path}::ANTENNA", ack=False) as t:
        assert t.nrows() == v.observation.telescope.n_antennas
        np.testing.assert_allclose(t.getcol("POSITION"), v.observation.telescope.itrf())
    with ct.table(f"{path}::FIELD", ack=False) as t:
        ra, dec = t.getcol("PHASE_DIR")[0, 0]
        assert np.rad2deg(ra) == pytest.approx(150.0, abs=1e-5)
        assert np.rad2deg(dec) == pytest.approx(-30.0, abs=1e-5)
    with ct.table(f"{path}::POLARIZATION", ack=False) as t:
        assert list(t.getcol("CORR_TYPE")[0]) == [9, 12]
    with pytest.raises(FileExistsError):
        write_ms(v, path)


@pytest.mark.slow
def test_wsclean_images_like_builtin(vis, tmp_path):
    """One WSClean run (shallow CLEAN, natural weighting) against the built-in imager."""
    from alchemy_obs.observe.wsclean import WSCleanImager, wsclean_available

    if wsclean_available() is None:
        pytest.skip("wsclean is not on the PATH (apt-get install wsclean)")
    v, wcs, img = vis
    ws = WSCleanImager(wcs, (N, N), weighting="natural", niter=60, mgain=0.5).image(v, workdir=tmp_path)
    builtin = Imager(wcs, (N, N), weighting="natural")
    ours = dirty_image(v, builtin.weights(v), builtin.geometry)
    for c in range(2):
        d = ws.dirty.value[c]
        assert d[96, 30] == d[88:105, 22:39].max()  # the point is where it should be
        assert np.corrcoef(d.ravel(), ours[c].ravel())[0, 1] > 0.999
        # The same sky rotated by 180 degrees would not match.
        assert np.corrcoef(d.ravel(), ours[c][::-1, ::-1].ravel())[0, 1] < 0.8
    # 60 components at gain 0.1 clean 99.8 % of the 1 Jy point: the restored peak is its flux
    # (plus the extended source's contribution under the beam, as in the dirty image).
    assert ws.model.value[0].sum() > 0.9
    assert ws.image.value[0][96, 30] == pytest.approx(ours[0][96, 30], rel=0.03)


def _wsclean_or_skip():
    from alchemy_obs.observe.wsclean import wsclean_available

    if wsclean_available() is None:
        pytest.skip("wsclean is not on the PATH (apt-get install wsclean)")


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["natural", "briggs", "uniform"])
def test_wsclean_empty_field_rms_is_its_noise_header(weighting, tmp_path):
    """Done-when (issue 12): the WSClean route writes NOISERMS equal to the rms of the
    restored image it writes, on an empty field, for each weighting."""
    from astropy.io import fits

    from alchemy_obs.observe.fits import write_fits
    from alchemy_obs.observe.wsclean import WSCleanImager

    _wsclean_or_skip()
    n = 256
    tel = Telescope.from_config(TelescopeConfig(array="AA*", max_baseline_km=4))
    wcs = sky_wcs(n, 2.0)
    sky = SkyImage(np.zeros((n, n)) * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-2, 2) * u.hourangle, dump_time=1200 * u.s,
                                       freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)
    v = BuiltinSimulator(seed=11).observe(sky, obs)
    res = WSCleanImager(wcs, (n, n), weighting=weighting).image(v, workdir=tmp_path)
    path = write_fits(res, tmp_path / "empty.fits")
    assert fits.getdata(path).std() == pytest.approx(fits.getheader(path)["NOISERMS"], rel=0.05)


@pytest.mark.slow
def test_wsclean_keeps_the_flux_of_extended_emission(tmp_path):
    """A noiseless source 15 beams across, imaged by WSClean at default settings."""
    from alchemy_obs.observe.wsclean import WSCleanImager

    _wsclean_or_skip()
    tel = Telescope.from_config(TelescopeConfig(array="AA*", max_baseline_km=4))
    wcs = sky_wcs(N, 2.0)
    yy, xx = np.mgrid[:N, :N] - N / 2
    img = np.exp(-np.hypot(xx, yy + 3.0) / 6.0)
    img /= img.sum()
    sky = SkyImage(img * u.Jy, wcs)
    obs = Observation.from_hour_angles(tel, sky.phase_centre, (-2, 2) * u.hourangle, dump_time=1200 * u.s,
                                       freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)
    v = BuiltinSimulator(noise=False).observe(sky, obs)
    res = WSCleanImager(wcs, (N, N), weighting="briggs").image(v, workdir=tmp_path, noise=False)
    beam = res.beams[0]
    beam_pix = np.pi * beam.major.to_value(u.arcsec) * beam.minor.to_value(u.arcsec) / (
        4 * np.log(2)) / 2.0**2
    restored = res.image.to_value(u.Jy / u.beam)[0].sum() / beam_pix
    # The primary beam attenuates this compact source by < 0.1 %.
    assert restored == pytest.approx(1.0, rel=0.01)
