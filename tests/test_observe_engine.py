"""The MockObserver driver: parts (or a configuration) in, FITS-ready ImageResult out."""

from __future__ import annotations

from functools import partial

import pytest
from astropy import units as u

from alchemy_obs.config import load_config
from alchemy_obs.observe.engine import MockObserver
from alchemy_obs.observe.fast import ImagePlaneMode
from alchemy_obs.observe.fits import write_fits
from alchemy_obs.observe.imaging import Imager
from alchemy_obs.observe.interferometer import BuiltinSimulator
from alchemy_obs.observe.telescope import Telescope
from alchemy_obs.skyimage import SkyImage

from _observe_helpers import asymmetric_source, sky_wcs

N = 64


def _config(mode):
    return load_config(None, [
        f"observe.mode={mode}", "observe.telescope.max_baseline_km=1.5", "observe.dump_s=1800",
        "observe.hour_angle_start_h=-1", "observe.hour_angle_end_h=1", "observe.imaging.niter=200",
    ]).observe


@pytest.mark.parametrize("mode", ["fast", "visibility"])
def test_observer_on_a_sky_like_object(mode, tmp_path):
    img = asymmetric_source(N)
    sky = SkyImage(img * u.Jy, sky_wcs(N, 4.0), frequencies=[1.3e9] * u.Hz)
    observer = MockObserver.from_config(_config(mode))
    result = observer.observe(sky)
    assert result.image.shape == (1, N, N)
    assert result.frequencies[0] == 1.3e9 * u.Hz
    assert observer.last_observation.n_times == 3
    beam_pix = (result.beams[0].sr / (4 * u.arcsec) ** 2).decompose().value
    # Most of the flux is recovered even with this small array and shallow CLEAN.
    assert result.image.value[0].sum() / beam_pix == pytest.approx(img.sum(), rel=0.15)
    path = write_fits(result, tmp_path / f"{mode}.fits", observer.last_observation)
    assert path.exists()


def test_fast_mode_caches_per_setup():
    observer = MockObserver.from_config(_config("fast"))
    sky = SkyImage(data=asymmetric_source(N) * u.Jy, wcs=sky_wcs(N, 4.0))
    observer.observe(sky)
    observer.observe(SkyImage(data=2 * asymmetric_source(N) * u.Jy, wcs=sky_wcs(N, 4.0)))
    assert len(observer.simulator.cache) == 1
    observer.observe(SkyImage(data=asymmetric_source(N) * u.Jy, wcs=sky_wcs(N, 4.0, ra=10.0)))
    assert len(observer.simulator.cache) == 2


def test_observer_takes_an_explicit_observation():
    from alchemy_obs.observe.telescope import Observation

    cfg = _config("visibility")
    observer = MockObserver.from_config(cfg)
    sky = SkyImage(data=asymmetric_source(N) * u.Jy, wcs=sky_wcs(N, 4.0))
    obs = Observation.from_track(observer.track, sky.phase_centre, [1.2e9] * u.Hz,
                                 channel_width=2 * u.MHz, telescope=observer.telescope)
    result = observer.observe(sky, obs)
    assert observer.last_observation is obs
    assert result.frequencies[0] == 1.2e9 * u.Hz


@pytest.mark.parametrize("fast", [True, False])
def test_observer_composed_of_parts_without_configuration(fast):
    telescope = Telescope.ska_mid("AA0.5")
    simulator = ImagePlaneMode(noise=False) if fast else BuiltinSimulator(noise=False)
    observer = MockObserver(telescope=telescope, simulator=simulator,
                            imager=partial(Imager, niter=200, gain=0.2))
    sky = SkyImage(data=asymmetric_source(N) * u.Jy, wcs=sky_wcs(N, 4.0),
                   frequencies=[1.3e9] * u.Hz)
    result = observer.observe(sky)
    assert result.image.shape == (1, N, N) and result.frequencies[0] == 1.3e9 * u.Hz
    assert observer.last_observation.telescope is telescope
    assert observer.imager_for(sky).gain == 0.2


def test_from_config_chooses_the_parts():
    cfg = _config("visibility")
    observer = MockObserver.from_config(cfg)
    assert isinstance(observer.simulator, BuiltinSimulator) and observer.imager.func is Imager
    assert observer.imager.keywords["gain"] == cfg.imaging.gain and not observer.centred_grid
    assert isinstance(MockObserver.from_config(_config("fast")).simulator, ImagePlaneMode)
    wsclean = MockObserver.from_config(cfg.model_copy(update={
        "imaging": cfg.imaging.model_copy(update={"imager": "wsclean"})}))
    from alchemy_obs.observe.wsclean import WSCleanImager

    assert wsclean.imager.func is WSCleanImager and wsclean.centred_grid


def test_observation_for_takes_a_track_without_configuration():
    from alchemy_obs.observe.engine import observation_for
    from alchemy_obs.observe.telescope import Track

    sky = SkyImage(asymmetric_source(N) * u.Jy, sky_wcs(N, 4.0), frequencies=[1.3e9] * u.Hz)
    track = Track(hour_angles=[-0.5, 0.5] * u.hourangle, dump_time=600 * u.s)
    obs = observation_for(sky, telescope=Telescope.ska_mid("AA0.5"), track=track,
                          channel_width=5 * u.MHz)
    # One sidereal hour is 3590 s of UTC: five whole 600 s dumps.
    assert obs.n_times == 5 and obs.channel_width == 5 * u.MHz
    assert obs.frequencies[0] == 1.3e9 * u.Hz
    assert obs.phase_centre.separation(sky.phase_centre) < 1e-9 * u.deg
