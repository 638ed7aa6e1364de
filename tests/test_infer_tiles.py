"""``infer`` predicts over all the emission: overlapping model fields blended without seams.

The translator here is a stand-in whose output is an affine function of its input, pixel
by pixel (``dm = 1e7 (a N_HI / 1e20 + b)``): every field then predicts the same value at a
given sky position, so a blended mosaic must equal one big field's prediction exactly, and
any seam, gap or misplaced field shows as a difference.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from alchemy_obs.cli import main
from alchemy_obs.infer import pipeline, tiles
from alchemy_obs.infer.pipeline import Translator, infer_file
from alchemy_obs.infer.preprocess import model_grid
from alchemy_obs.translate.normalise import DomainScaling, Normalisation

A, B = 2.0, 0.5  # the stand-in: z_out = A z_in + B in normalised units
NHI_SCALE, DM_SCALE = 1e20, 1e7
PEAK = 5e20  # cm^-2
DISTANCE = 10 * u.Mpc
PIXEL_KPC = 0.4


class AffineStandIn:
    """A deterministic 'method' with the interface ``predict`` calls."""

    stochastic = False
    device = torch.device("cpu")

    def sample(self, condition, steps=None, generator=None):
        return A * condition + B


def stand_in(npix: int) -> Translator:
    """A translator of ``npix x npix`` fields of ``PIXEL_KPC``; linear normalisations."""
    norm = Normalisation({
        "hi_nhi": DomainScaling("hi_nhi", False, 0.0, 0.0, NHI_SCALE),
        "dm": DomainScaling("dm", False, 0.0, 0.0, DM_SCALE),
    })
    card = {"inputs": ["hi_nhi"], "target": "dm", "method": "affine stand-in",
            "units": {"hi_nhi": "1 / cm2", "dm": "solMass / kpc2"},
            "normalisation": norm.to_dict(), "npix": npix, "pixel_kpc": PIXEL_KPC}
    return Translator(AffineStandIn(), card, f"stand-in-{npix}", "test")


def expected(nhi: np.ndarray) -> np.ndarray:
    """The stand-in's prediction in Msun/kpc^2 (no data counts as empty sky, as in ``predict``)."""
    return DM_SCALE * (A * np.nan_to_num(nhi) / NHI_SCALE + B)


def column_density_image(path, nx=80, ny=64, semi=(30.0, 22.0)):
    """A smooth disc (zero, with zero slope, beyond an ellipse) on a 4 arcsec SIN grid."""
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, nx, ny
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 30.0
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 + 0.5
    h["CDELT1"], h["CDELT2"] = -4.0 / 3600, 4.0 / 3600
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["RADESYS"], h["EQUINOX"] = "FK5", 2000.0
    h["BUNIT"] = "cm-2"
    h["BMAJ"], h["BMIN"], h["BPA"] = 8 / 3600, 8 / 3600, 0.0
    h["DISTANCE"] = (DISTANCE.to_value(u.Mpc), "Mpc")
    y, x = np.indices((ny, nx))
    r2 = ((x - nx / 2 + 0.5) / semi[0]) ** 2 + ((y - ny / 2 + 0.5) / semi[1]) ** 2
    image = np.where(r2 < 1, PEAK * (1 - r2) ** 2, 0.0)
    fits.PrimaryHDU(image.astype(np.float32), h).writeto(path)
    return path, image, image != 0


def _wcs(header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).celestial


def test_windows_sum_to_one_half_a_field_apart():
    """The sin^2 windows of fields npix/2 apart are a partition of unity, and smooth."""
    n = 16
    w = tiles.blend_window(n)
    total = np.zeros((4 * n, 4 * n))
    for y0 in range(0, 3 * n + 1, n // 2):
        for x0 in range(0, 3 * n + 1, n // 2):
            total[y0:y0 + n, x0:x0 + n] += w
    # Every pixel at least half a field from the lattice's border is under four fields.
    np.testing.assert_allclose(total[n // 2:-n // 2, n // 2:-n // 2], 1.0, rtol=0, atol=1e-12)
    assert w.min() > 0 and w.max() <= 1
    assert w[0, 0] == pytest.approx(np.sin(np.pi / (2 * n)) ** 4)  # 1 % x 1 % at a corner
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-15)


def test_blended_fields_equal_one_big_field_and_fade_smoothly():
    """Function level: fields over an emission map that overflows the central one."""
    npix = 16
    sky = model_grid((150.0, 30.0), None, PIXEL_KPC, npix=96, distance=DISTANCE)  # sky pixels = model's
    sky.pixel_shape = (96, 96)
    support = np.zeros((96, 96), dtype=bool)
    support[20:70, 10:85] = True  # 75 x 50 pixels: about 5 x 3 fields
    central = model_grid((150.0, 30.0), sky, PIXEL_KPC, npix=npix, distance=DISTANCE)
    plan = tiles.plan_tiles(support, sky, central, pixel=PIXEL_KPC * u.kpc)
    assert plan.step == 8 and plan.ntiles > 10 and plan.origins[0] != (0, 0)
    yy, xx = np.indices(plan.shape)
    smooth = PEAK * (1 + np.sin(xx / 7.0) * np.cos(yy / 5.0))
    pointwise = lambda field: (expected(field), None)  # noqa: E731
    mean, std = tiles.blend_tiles(plan, smooth, pointwise)
    assert std is None
    covered = np.isfinite(mean)
    # One big field over the whole mosaic: the same values, fields' edges included.
    np.testing.assert_allclose(mean[covered], expected(smooth)[covered], rtol=1e-12)
    for y0, x0 in plan.origins:  # the first and last row and column of every field
        for cut in ((y0, slice(x0, x0 + npix)), (y0 + npix - 1, slice(x0, x0 + npix)),
                    (slice(y0, y0 + npix), x0), (slice(y0, y0 + npix), x0 + npix - 1)):
            np.testing.assert_allclose(mean[cut], expected(smooth)[cut], rtol=1e-12)
    # Every emission pixel lands inside the mosaic, with its interpolation stencil.
    px, py = plan.grid.world_to_pixel_values(*sky.pixel_to_world_values(*np.nonzero(support)[::-1]))
    ix, iy = np.floor(px).astype(int), np.floor(py).astype(int)
    assert covered[iy, ix].all() and covered[iy + 1, ix + 1].all()
    # A posterior spread blends with the same weights: equal spreads stay equal.
    _, spread = tiles.blend_tiles(plan, smooth, lambda f: (expected(f), np.full(f.shape, 3.0)))
    np.testing.assert_allclose(spread[covered], 3.0, rtol=1e-12)
    assert np.isnan(spread[~covered]).all()
    # Fields predicting 0 and 1 alternately (a checkerboard: abutting fields would jump by
    # 1) fade into each other: where four fields overlap no step between neighbouring
    # pixels exceeds the window's slope, pi/npix.
    parity = iter([((y // plan.step) + (x // plan.step)) % 2 for y, x in plan.origins])
    checker, _ = tiles.blend_tiles(plan, smooth,
                                   lambda f: (np.full(f.shape, float(next(parity))), None))
    y0, y1, x0, x1 = plan.bounds()
    inner = checker[y0 + npix // 2:y1 - npix // 2, x0 + npix // 2:x1 - npix // 2]
    assert np.isfinite(inner).all() and inner.size > 4 * npix**2
    assert inner.min() < 0.1 and inner.max() > 0.9
    jump = max(np.abs(np.diff(inner, axis=0)).max(), np.abs(np.diff(inner, axis=1)).max())
    assert jump <= np.pi / npix * 1.001


def test_whole_emission_predicted_without_seams(tmp_path):
    """End to end: an image whose emission overflows the 6.4 kpc field is predicted on every
    emission pixel, equal to one big field's output, and to the function of the input."""
    path, image, support = column_density_image(tmp_path / "disc.fits")
    small, big = stand_in(16), stand_in(64)  # 6.4 kpc and 25.6 kpc fields, same pixels
    tiled = infer_file(path, small, tmp_path / "tiled")
    single = infer_file(path, big, tmp_path / "big", coverage="centre")
    assert tiled.tiles > 1 and single.tiles == 1
    out, header = fits.getdata(tiled.output), fits.getheader(tiled.output)
    ref = fits.getdata(single.output)
    assert np.isfinite(out[support]).all()  # every emission pixel predicted
    finite = np.isfinite(out)
    assert np.isfinite(ref[finite]).all()
    # Seamless: where the fields' blend exists it is the big field's value to float32 precision.
    np.testing.assert_allclose(out[finite], ref[finite], rtol=1e-6)
    # And the stand-in's function of the input, to the accuracy of the resampling round trip
    # (model pixels 2 sky pixels wide smooth the disc's curvature by < 2 % of its peak).
    err = np.abs(out[support] - expected(image)[support])
    assert err.max() < 0.02 * (expected(image).max() - expected(0.0))
    # Same pixel scale in every field: the header says so and the big-field match needs it.
    assert header["PIXKPC"] == PIXEL_KPC


def test_region_cards(tmp_path):
    """The header says which region was predicted, in model pixels and kpc."""
    path, image, support = column_density_image(tmp_path / "disc.fits")
    result = infer_file(path, stand_in(16), tmp_path / "out")
    header = fits.getheader(result.output)
    sky = _wcs(fits.getheader(path))
    central = model_grid((header["CENLON"], header["CENLAT"]), sky, PIXEL_KPC, npix=16, distance=DISTANCE)
    plan = tiles.plan_tiles(support, sky, central, pixel=PIXEL_KPC * u.kpc)
    y0, y1, x0, x1 = plan.bounds()
    assert header["COVERAGE"] == "emission"
    assert header["NTILES"] == plan.ntiles == result.tiles > 1
    assert header["TILENPIX"] == 16 and header["TILESTEP"] == 8 and header["TILEOVLP"] == 0.5
    assert (header["PREDNX"], header["PREDNY"]) == (x1 - x0, y1 - y0)
    assert header["PREDXKPC"] == pytest.approx(header["PREDNX"] * PIXEL_KPC)
    assert header["PREDYKPC"] == pytest.approx(header["PREDNY"] * PIXEL_KPC)
    lon, lat = plan.grid.pixel_to_world_values((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2)
    assert header["PREDLON"] == pytest.approx(float(lon), abs=1e-9)
    assert header["PREDLAT"] == pytest.approx(float(lat), abs=1e-9)
    out = fits.getdata(result.output)
    assert header["PREDNPIX"] == np.isfinite(out).sum()
    assert header["EMISPIX"] == 1.0 and header["EMISFLUX"] == 1.0 == result.emission_fraction
    history = "".join(header["HISTORY"])
    assert (f"predicted {plan.ntiles} model field(s) of 16 px, 8 px apart, blended by sin^2 "
            f"windows over {header['PREDXKPC']:.4g} x {header['PREDYKPC']:.4g} kpc") in history
    assert "100.0% of the masked moment-0 flux predicted" in history


def test_emission_inside_one_field_is_unchanged(tmp_path):
    """A galaxy that fits the central field: one field, the output of ``coverage="centre"``."""
    path, image, support = column_density_image(tmp_path / "disc.fits", semi=(6.0, 5.0))
    model = stand_in(16)
    default = infer_file(path, model, tmp_path / "a")
    centre = infer_file(path, model, tmp_path / "b", coverage="centre")
    assert default.tiles == centre.tiles == 1
    a, b = fits.getdata(default.output), fits.getdata(centre.output)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[np.isfinite(a)], b[np.isfinite(b)])
    assert np.isfinite(a[support]).all()
    header = fits.getheader(default.output)
    assert header["NTILES"] == 1 and (header["PREDNX"], header["PREDNY"]) == (16, 16)
    assert header["PREDXKPC"] == pytest.approx(6.4)
    assert header["PREDLON"] == pytest.approx(header["CENLON"], abs=1e-9)


def test_cli_coverage_centre_keeps_the_central_field(tmp_path, monkeypatch):
    """``--coverage centre`` predicts the one central field; the default covers the emission."""
    path, image, support = column_density_image(tmp_path / "disc.fits")
    monkeypatch.setattr(pipeline, "load_translator", lambda *a, **k: stand_in(16))
    assert main(["infer", str(path), "--model", "x", "--out", str(tmp_path / "all")]) == 0
    assert main(["infer", str(path), "--model", "x", "--coverage", "centre",
                 "--out", str(tmp_path / "one")]) == 0
    everything = fits.open(tmp_path / "all" / "disc_dm.fits")[0]
    central = fits.open(tmp_path / "one" / "disc_dm.fits")[0]
    assert everything.header["COVERAGE"] == "emission" and everything.header["NTILES"] > 1
    assert central.header["COVERAGE"] == "centre" and central.header["NTILES"] == 1
    assert (central.header["PREDNX"], central.header["PREDXKPC"]) == (16, pytest.approx(6.4))
    assert central.header["EMISFLUX"] < 0.9 and central.header["EMISPIX"] < 0.7
    predicted = np.isfinite(central.data)
    assert not predicted[support].all() and np.isfinite(everything.data[support]).all()
    # The central field: 6.4 kpc = 132 arcsec = 33 sky pixels, centred on the disc.
    assert abs(predicted.any(axis=0).sum() - 33) <= 2 and abs(predicted.any(axis=1).sum() - 33) <= 2
    # Inside it the two agree; its outermost half model pixel (one sky pixel) is extrapolated
    # from its edge in a single-field run, interpolated from the next field in a tiled one.
    from scipy.ndimage import binary_erosion

    inside = binary_erosion(predicted, iterations=2)
    np.testing.assert_allclose(central.data[inside], everything.data[inside], rtol=1e-6)
    assert main(["infer", str(path), "--model", "x", "--tile-overlap", "1.5",
                 "--out", str(tmp_path / "bad")]) == 2


def test_emission_mask_support_of_a_noisy_cube(tmp_path):
    """A cube with noise: every pixel of the masked moment-0 support gets a prediction."""
    from _infer_helpers import gaussian_cube_header

    from alchemy_obs.infer import preprocess
    from alchemy_obs.infer.read import read_observation

    header = gaussian_cube_header(nx=72, ny=60, nchan=16, DISTANCE=(DISTANCE.value, "Mpc"))
    rng = np.random.default_rng(1)
    y, x = np.indices((60, 72))
    disc = 0.02 * np.exp(-0.5 * (((x - 36) / 14.0) ** 2 + ((y - 30) / 10.0) ** 2))
    line = np.exp(-0.5 * ((np.arange(16) - 8) / 2.5) ** 2)
    data = (line[:, None, None] * disc + rng.normal(0, 1e-3, (16, 60, 72))).astype(np.float32)
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    result = infer_file(path, stand_in(16), tmp_path / "out")
    sky = preprocess.line_integral(read_observation(path), mask_sigma=preprocess.MASK_SIGMA)
    support = tiles.emission_support(sky)
    assert 500 < support.sum() < support.size  # the mask found the disc, not the noise
    out = fits.getdata(result.output)
    assert result.tiles > 1 and np.isfinite(out[support]).all()
    assert fits.getheader(result.output)["EMISFLUX"] == 1.0


def test_empty_and_overflowing_plans():
    """No emission: the central field; too many fields: refused in one line naming the file."""
    sky = model_grid((150.0, 30.0), None, PIXEL_KPC, npix=400, distance=DISTANCE)
    sky.pixel_shape = (400, 400)
    central = model_grid((150.0, 30.0), sky, PIXEL_KPC, npix=16, distance=DISTANCE)
    empty = tiles.plan_tiles(np.zeros((400, 400), bool), sky, central, pixel=PIXEL_KPC * u.kpc)
    assert empty.ntiles == 1 and empty.shape == (16, 16)
    tiny = model_grid((150.0, 30.0), sky, PIXEL_KPC, npix=4, distance=DISTANCE)
    from alchemy_obs.infer.errors import InferError

    with pytest.raises(InferError, match="big.fits: the emission spans .* model fields"):
        tiles.plan_tiles(np.ones((400, 400), bool), sky, tiny, pixel=PIXEL_KPC * u.kpc, path="big.fits")


def test_real_things_cube_coverage(tmp_path):
    """NGC 2403 (THINGS): its HI fits a 48 kpc field at 3.2 Mpc; placed at 6.4 Mpc it
    overflows it, and the fields cover all of it where the central field alone does not."""
    from _infer_helpers import REAL_CUBE

    from alchemy_obs.infer.read import parse_beam

    if not REAL_CUBE.is_file():
        pytest.skip(f"{REAL_CUBE} is absent")
    model = stand_in(64)  # the demonstration model's grid: 64 pixels of 0.75 kpc
    model.card["pixel_kpc"] = 0.75
    beam = parse_beam("60")
    near = infer_file(REAL_CUBE, model, tmp_path / "a", beam=beam, distance=3.2 * u.Mpc)
    assert near.tiles == 1 and near.emission_fraction == 1.0
    far = infer_file(REAL_CUBE, model, tmp_path / "b", beam=beam, distance=6.4 * u.Mpc)
    centre = infer_file(REAL_CUBE, model, tmp_path / "c", beam=beam, distance=6.4 * u.Mpc,
                        coverage="centre")
    assert far.tiles > 1 and far.emission_fraction == 1.0
    assert centre.tiles == 1 and centre.emission_fraction < 0.99
    header = fits.getheader(far.output)
    assert header["EMISPIX"] == 1.0 and fits.getheader(centre.output)["EMISPIX"] < 0.85
    assert header["PREDXKPC"] > 48 and header["PREDYKPC"] > 48


class NoisyStandIn(AffineStandIn):
    """The affine stand-in plus unit Gaussian noise per sample: a 'diffusion' model."""

    stochastic = True

    def sample(self, condition, steps=None, generator=None):
        noise = torch.randn(condition.shape, generator=generator, device=condition.device)
        return A * condition + B + noise


def test_posterior_spread_of_every_field_reaches_the_output(tmp_path):
    """With samples, the UNCERT extension holds the blended spread on all the emission."""
    path, image, support = column_density_image(tmp_path / "disc.fits")
    model = stand_in(16)
    model.method = NoisyStandIn()
    result = infer_file(path, model, tmp_path / "out", samples=8)
    assert result.tiles > 1
    with fits.open(result.output) as hdul:
        std = hdul["UNCERT"].data
    assert np.isfinite(std[support]).all()
    # Unit noise in normalised units is DM_SCALE in Msun/kpc^2; eight samples' standard
    # deviation, averaged over fields and interpolated, stays within 40 % of it.
    assert 0.6 * DM_SCALE < np.median(std[support]) < 1.4 * DM_SCALE
