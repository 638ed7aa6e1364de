"""One resampling rule for training inputs and inference inputs (issue 12, item 5)."""

import numpy as np
import pytest
from astropy import units as u

from alchemy_obs.config import MapsConfig, load_config
from alchemy_obs.infer import pipeline, preprocess
from alchemy_obs.infer.read import read_observation
from alchemy_obs.observe import mock as mock_module
from alchemy_obs.observe.resample import pixel_scale, reproject_map, sky_grid

NOISELESS = [
    "observe.noise=false", "observe.mode=fast", "observe.hour_angle_start_h=-0.5",
    "observe.hour_angle_end_h=0.5", "observe.dump_s=600", "mock.products=[hi]",
    "mock.npix=48", "mock.n_channels=40", "mock.channel_width_kms=10",
]


def test_mock_stage_and_infer_call_the_same_resampler():
    """Neither stage keeps a resampler of its own: both name the one in observe.resample."""
    assert mock_module.reproject_map is reproject_map
    assert pipeline.reproject_map is reproject_map
    assert not hasattr(preprocess, "reproject_map")


def test_grid_onto_itself_is_the_identity():
    rng = np.random.default_rng(0)
    data = rng.lognormal(0.0, 2.0, (3, 40, 40))
    w = sky_grid((150.0, 2.0), 3.0 * u.arcsec, 40)
    out = reproject_map(data, w, w, shape_out=(40, 40))
    # WCS round trips place pixel centres to ~1e-10 px; steep lognormal gradients make that 1e-7.
    np.testing.assert_allclose(out, data, rtol=1e-6)
    assert pixel_scale(w).to_value(u.arcsec) == pytest.approx(3.0)


def test_downsampling_is_anti_aliased_and_blanks_are_left_out():
    """A checkerboard has no power a coarser grid can hold: interpolation would alias it
    into stripes, the adaptive resampling averages it to its mean. A blanked block is left
    out of the mean instead of spreading NaN."""
    w_in = sky_grid((10.0, -30.0), 1.0 * u.arcsec, 64)
    w_out = sky_grid((10.0, -30.0), 2.5 * u.arcsec, 20)
    y, x = np.indices((64, 64))
    board = 1.0 + 0.5 * (-1.0) ** (x + y)
    board[30:34, 30:34] = np.nan
    out = reproject_map(board, w_in, w_out, shape_out=(20, 20))
    inner = out[2:-2, 2:-2]
    assert np.isfinite(inner).all()
    np.testing.assert_allclose(inner, 1.0, atol=0.03)


@pytest.mark.slow
def test_mock_map_through_infer_preprocessing_returns_training_input(tmp_path):
    """Done-when (issue 12): a mock map passed through the inference preprocessing on its
    own grid returns the training input to 1e-6 relative. The mock's FITS products are read
    back by infer's reader, converted to the model's input domain and laid on the model grid
    of the training view (same centre, pixel size and size); that must be the dataset's map."""
    from alchemy_obs.observe.fits import write_mock_products
    from alchemy_obs.sim.galaxy import load_galaxy
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    galaxy = load_galaxy(make_synthetic_cutout(tmp_path / "cutout_0.hdf5", 0, 20_000, 7))
    cfg = load_config(None, NOISELESS)
    npix, half = 32, 20.0
    extent = (-half, half, -half, half)
    maps, mocks = mock_module.mock_view_maps(galaxy, np.eye(3), extent, map_npix=npix, mock=cfg.mock,
                                             observe=cfg.observe, maps=MapsConfig(domains=["hi"]))
    write_mock_products(mocks, tmp_path, "g0", object_name="galaxy 0")
    placement = mocks["hi"].placement
    centre = (placement.ra.to_value(u.deg), placement.dec.to_value(u.deg))
    for domain, product in (("hi_nhi", "nhi"), ("hi_mom0", "mom0")):
        path = tmp_path / f"g0_hi_{product}.fits"
        obs = read_observation(path)
        observable = preprocess.to_domain(preprocess.line_integral(obs), domain, path)
        grid = preprocess.model_grid(centre, obs.celestial_wcs, 2 * half / npix, npix=npix,
                                     distance=placement.angular_diameter_distance)
        model_input = reproject_map(observable.value, obs.celestial_wcs, grid, shape_out=(npix, npix))
        training = maps[domain].value
        assert np.isfinite(training).all()
        scale = np.abs(training).max()
        # float32 FITS: 6e-8 relative rounding of each value.
        np.testing.assert_allclose(model_input / scale, training / scale, atol=1e-6, rtol=0,
                                   err_msg=domain)
