"""Reading real and awkward FITS cubes, and the moment-0 / unit physics, against hand values."""

from __future__ import annotations

import numpy as np
import pytest
from _infer_helpers import HI_GHZ, REAL_CUBE, gaussian_cube_data, gaussian_cube_header, write_cube
from astropy import units as u
from astropy.io import fits

from alchemy_obs.infer.errors import InferError
from alchemy_obs.infer.preprocess import line_integral, noise_mask, to_domain
from alchemy_obs.infer.read import identify_line, parse_beam, parse_bunit, read_observation

C_KMS = 299792.458


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("Jy/beam", u.Jy / u.beam), ("JY/BEAM", u.Jy / u.beam), ("Jy/Beam", u.Jy / u.beam),
        ("JY/BEAM ", u.Jy / u.beam), ("Jy beam-1", u.Jy / u.beam), ("JY/BM", u.Jy / u.beam),
        ("mJy/beam", 1e-3 * u.Jy / u.beam), ("K", u.K), ("Kelvin", u.K), ("mK", u.mK),
        ("JY/BEAM.KM/S", u.Jy / u.beam * u.km / u.s), ("Jy/beam*m/s", u.Jy / u.beam * u.m / u.s),
        ("K km/s", u.K * u.km / u.s), ("cm-2", u.cm**-2), ("Msun/pc2", u.Msun / u.pc**2),
    ],
)
def test_bunit_spellings(text, unit):
    parsed = parse_bunit(text)
    assert parsed is not None
    assert parsed.to(unit) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["", "counts", "ADU", "W/m2", "JY/PIXEL/FOO", "km/s", "KM/S",
                                  "km s-1"])
def test_unknown_bunit_is_none(text):
    assert parse_bunit(text) is None


def test_parse_beam():
    b = parse_beam("12,10,30")
    assert b.major.to_value(u.arcsec) == pytest.approx(12)
    assert b.minor.to_value(u.arcsec) == pytest.approx(10)
    assert b.pa.to_value(u.deg) == pytest.approx(30)
    assert parse_beam("0.5arcmin").minor.to_value(u.arcsec) == pytest.approx(30)
    assert parse_beam("10,20").major.to_value(u.arcsec) == pytest.approx(20)  # sorted
    for bad in ("", "-3", "a,b", "1,2,3,4"):
        with pytest.raises(ValueError, match="--beam"):
            parse_beam(bad)


def test_identify_lines():
    assert identify_line(115.2712 * u.GHz) == "CO(1-0)"
    assert identify_line(1420.40575 * u.MHz) == "HI 21 cm"
    assert identify_line(5 * u.GHz) is None


def test_real_things_cube():
    if not REAL_CUBE.is_file():
        pytest.skip(f"{REAL_CUBE} is absent")
    obs = read_observation(REAL_CUBE, beam=parse_beam("60"))
    raw = fits.getdata(REAL_CUBE)
    assert obs.cube.shape == raw.shape == (74, 41, 41)
    assert obs.unit == u.Jy / u.beam
    np.testing.assert_array_equal(obs.spatial_mask, np.isfinite(raw).any(axis=0))
    assert obs.celestial_cards["CTYPE1"] == "RA---SIN"
    assert obs.celestial_cards["EQUINOX"] == 2000.0  # from EPOCH
    assert obs.celestial_wcs.wcs.equinox == 2000.0
    sky = line_integral(obs)
    # Moment-0 by hand: VOPT channels of 5.29995 km/s; rest-frame width dV = dv_opt/(1+z).
    z = sky.redshift
    assert 120 < z * C_KMS < 145  # NGC 2403's systemic velocity is 133 km/s
    mom0 = to_domain(sky, "hi_mom0").to_value(u.Jy / u.beam * u.km / u.s)
    v = (9461.501210144 + 5299.953171873 * np.arange(74)) / 1e3
    dv_rest = np.gradient(v) / (1 + v / C_KMS) ** 2 * (1 + z)  # dnu = nu0 dv/c/(1+v/c)^2
    expected = np.nansum(raw * dv_rest[:, None, None], axis=0)
    expected[~np.isfinite(raw).any(axis=0)] = np.nan
    np.testing.assert_allclose(mom0, expected, rtol=1e-5, atol=1e-7)


def _hi_cube_header(**extra):
    # Band centred on the HI rest frequency, so z ~ 0 and textbook formulas apply.
    return gaussian_cube_header(spectral="FREQ", CRVAL3=HI_GHZ * 1e9 + 6 * 2e4, CDELT3=-2e4,
                                **extra)


def test_column_density_against_textbook(tmp_path):
    h = _hi_cube_header()
    data = gaussian_cube_data(h, blank_corner=False)
    obs = read_observation(write_cube(tmp_path / "c.fits", h, data))
    nhi = to_domain(line_integral(obs), "hi_nhi").to_value(u.cm**-2)
    # Condon & Ransom: T_b = 1.222e6 S[Jy/beam] / (nu[GHz]^2 bmaj["] bmin["]); then
    # N_HI = 1.823e18 sum(T_b dv) with dv = c dnu / nu0.
    dv = C_KMS * 2e4 / (HI_GHZ * 1e9)
    tb = 1.222e6 * data / (HI_GHZ**2 * 12 * 10)
    expected = 1.823e18 * tb.sum(axis=0) * dv
    np.testing.assert_allclose(nhi, expected, rtol=2e-4)
    sigma = to_domain(line_integral(obs), "hi").to_value(u.Msun / u.pc**2)
    np.testing.assert_allclose(sigma, expected / 1.2478e20, rtol=1e-3)  # 1 Msun/pc2 of HI


def _beams_table(major, minor):
    n = len(major)
    return fits.BinTableHDU.from_columns([  # the CASA layout
        fits.Column("BMAJ", "E", unit="arcsec", array=major),
        fits.Column("BMIN", "E", unit="arcsec", array=minor),
        fits.Column("BPA", "E", unit="deg", array=np.zeros(n)),
        fits.Column("CHAN", "J", array=np.arange(n)),
        fits.Column("POL", "J", array=np.zeros(n)),
    ], name="BEAMS")


def test_kelvin_cube_with_per_channel_beams(tmp_path):
    """Brightness temperatures add across channels whatever the beams: no conversion."""
    h = _hi_cube_header(BUNIT="K", BMAJ=None, BMIN=None, BPA=None)
    data = gaussian_cube_data(h, peak=20.0, blank_corner=False)
    major = np.linspace(10, 20, h["NAXIS3"])
    obs = read_observation(write_cube(tmp_path / "kb.fits", h, data,
                                      extra_hdus=[_beams_table(major, 0.8 * major)]))
    nhi = to_domain(line_integral(obs), "hi_nhi").to_value(u.cm**-2)
    dv = C_KMS * 2e4 / (HI_GHZ * 1e9)
    np.testing.assert_allclose(nhi, 1.823e18 * data.sum(axis=0) * dv, rtol=2e-4)


def test_kelvin_cube_needs_no_beam(tmp_path):
    h = _hi_cube_header(BUNIT="K", BMAJ=None, BMIN=None, BPA=None)
    data = gaussian_cube_data(h, peak=20.0, blank_corner=False)
    obs = read_observation(write_cube(tmp_path / "k.fits", h, data))
    assert obs.beam is None
    nhi = to_domain(line_integral(obs), "hi_nhi").to_value(u.cm**-2)
    dv = C_KMS * 2e4 / (HI_GHZ * 1e9)
    np.testing.assert_allclose(nhi, 1.823e18 * data.sum(axis=0) * dv, rtol=2e-4)
    with pytest.raises(InferError, match="needs the beam"):
        to_domain(line_integral(obs), "hi_mom0")


def test_spectral_axis_types_agree(tmp_path):
    """The same sky on FREQ, VRAD, VOPT and VELO-HEL axes gives the same moment-0."""
    f0 = 1.4134e9
    results = {}
    for kind in ("FREQ", "VRAD", "VOPT", "VELO-HEL"):
        h = gaussian_cube_header(spectral=kind)
        if kind == "VRAD":  # exactly the FREQ channels: v = c (1 - nu/nu0)
            h["CRVAL3"] = C_KMS * (1 - f0 / (HI_GHZ * 1e9))
            h["CDELT3"] = C_KMS * 2e4 / (HI_GHZ * 1e9)
        elif kind in ("VOPT", "VELO-HEL"):
            # Linear in optical velocity is not linear in frequency: match the FREQ channels
            # at the band centre (channel 7), so the widths agree to second order.
            fc = f0 - 6 * 2e4
            vo = C_KMS * (HI_GHZ * 1e9 / fc - 1)
            dvo = C_KMS * HI_GHZ * 1e9 * 2e4 / fc**2
            h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = vo * 1e3, dvo * 1e3, 7.0
            if kind == "VOPT":
                h["CUNIT3"] = "m/s"
        obs = read_observation(write_cube(tmp_path / f"{kind}.fits", h))
        results[kind] = to_domain(line_integral(obs), "hi_nhi").to_value(u.cm**-2)
    np.testing.assert_allclose(results["VRAD"], results["FREQ"], rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(results["VOPT"], results["FREQ"], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(results["VELO-HEL"], results["VOPT"], rtol=1e-9, equal_nan=True)


def test_stokes_axis_dropped(tmp_path):
    plain = read_observation(write_cube(tmp_path / "p.fits"))
    h = gaussian_cube_header(stokes=True)
    withs = read_observation(write_cube(tmp_path / "s.fits", h))
    assert withs.cube.shape == plain.cube.shape
    np.testing.assert_array_equal(withs.cube.unmasked_data[:].value,
                                  plain.cube.unmasked_data[:].value)


def test_per_channel_beams(tmp_path):
    """Beams growing along the band; S_i scaled with the beam area so that T_b is constant."""
    h = _hi_cube_header()
    n = h["NAXIS3"]
    major = np.linspace(10, 20, n)
    minor = 0.8 * major
    t_b = 5.0  # K everywhere on a 3x3 patch, all channels
    data = np.zeros((n, h["NAXIS2"], h["NAXIS1"]), np.float32)
    s = t_b * (HI_GHZ**2 * major * minor) / 1.222e6  # Jy/beam per channel
    data[:, 8:11, 10:13] = s[:, None, None]
    table = _beams_table(major, minor)
    for key in ("BMAJ", "BMIN", "BPA"):
        del h[key]
    path = write_cube(tmp_path / "beams.fits", h, data, extra_hdus=[table])
    obs = read_observation(path)
    assert obs.beam.major.to_value(u.arcsec) == pytest.approx(20, rel=1e-3)  # common beam
    nhi = to_domain(line_integral(obs), "hi_nhi").to_value(u.cm**-2)
    dv = C_KMS * 2e4 / (HI_GHZ * 1e9)
    assert nhi[9, 11] == pytest.approx(1.823e18 * t_b * n * dv, rel=1e-3)
    assert nhi[0, 0] == 0.0


def test_bmaj_minus_one_with_beam_option(tmp_path):
    path = write_cube(tmp_path / "m1.fits", gaussian_cube_header(BMAJ=-1.0, BMIN=-1.0))
    with pytest.raises(InferError, match=r"invalid beam .*BMAJ=-1.*--beam"):
        read_observation(path)
    obs = read_observation(path, beam=parse_beam("15,12"))
    assert obs.beam.major.to_value(u.arcsec) == pytest.approx(15)


def test_aips_history_beam(tmp_path):
    h = gaussian_cube_header(BMAJ=None, BMIN=None, BPA=None)
    h.add_history("AIPS   CLEAN BMAJ=  4.1667E-03 BMIN=  3.3333E-03 BPA=  45.00")
    obs = read_observation(write_cube(tmp_path / "aips.fits", h))
    assert obs.beam.major.to_value(u.arcsec) == pytest.approx(15, rel=1e-3)


def test_blank_keyword_on_integer_cube(tmp_path):
    h = gaussian_cube_header()
    values = np.nan_to_num(gaussian_cube_data(h, blank_corner=False))
    ints = np.round(values / 1e-6).astype(np.int16)
    ints[:, 15:, 18:] = -32768
    h["BITPIX"] = 16
    h["BSCALE"], h["BZERO"], h["BLANK"] = 1e-6, 0.0, -32768
    path = tmp_path / "int.fits"
    hdu = fits.PrimaryHDU(ints, header=h)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 1e-6, 0.0, -32768
    hdu.writeto(path, output_verify="silentfix")
    raw = fits.open(path, do_not_scale_image_data=True)[0].data
    assert raw.dtype.kind == "i" and (raw == -32768).any()
    obs = read_observation(path)
    mask = obs.spatial_mask
    assert not mask[15:, 18:].any() and mask[:15].all()
    data = obs.cube.unmasked_data[:].value
    np.testing.assert_allclose(data[:, :15, :18], ints[:, :15, :18] * 1e-6, rtol=1e-12)


def test_blank_keyword_on_float_image(tmp_path):
    """BLANK is for integers only, but some writers put it on float data: honoured."""
    h = gaussian_cube_header()
    data = np.nan_to_num(gaussian_cube_data(h, blank_corner=False))
    data[:, :3, :] = -32768.0
    h["BLANK"] = -32768
    obs = read_observation(write_cube(tmp_path / "fb.fits", h, data))
    assert not obs.spatial_mask[:3].any() and obs.spatial_mask[3:].all()


def test_noise_mask_keeps_source_and_drops_noise():
    rng = np.random.default_rng(1)
    cube = rng.normal(0, 1.0, (32, 40, 40))
    cube[12:20, 15:25, 15:25] += 3.0  # a 3-sigma-per-voxel source, coherent over many voxels
    keep = noise_mask(cube, threshold=4.0)
    assert keep[13:19, 17:23, 17:23].mean() > 0.95
    assert keep[:, :8, :8].mean() < 0.001


def test_noise_masked_moment0(tmp_path):
    # A field wide enough that its corner lies beyond the mask's smoothing and growth.
    h = _hi_cube_header(NAXIS1=48, NAXIS2=40, CRPIX1=24.5, CRPIX2=20.5)
    rng = np.random.default_rng(2)
    clean = gaussian_cube_data(h, peak=0.05, blank_corner=False)
    noisy = clean + rng.normal(0, 0.002, clean.shape).astype(np.float32)
    obs = read_observation(write_cube(tmp_path / "n.fits", h, noisy))
    masked = line_integral(obs, mask_sigma=4.0).data.value
    unmasked = line_integral(obs).data.value
    assert masked[0, 0] == 0.0 and unmasked[0, 0] != 0.0  # noise far from the galaxy dropped
    centre = np.unravel_index(np.argmax(clean.sum(0)), clean.shape[1:])
    truth = clean.sum(axis=0)[centre] * 2e4
    assert masked[centre] == pytest.approx(truth, rel=0.1)


def test_radio_helpers_used_by_infer():
    """The two conversions infer added to physics.radio, against hand values."""
    from alchemy_obs.physics.radio import (
        frequency_integral_to_velocity_integral,
        hi_surface_density,
    )

    # 1e20 H atoms/cm^2 x 1.6735e-24 g = 1.6735e-4 g/cm^2; 1 Msun/pc^2 = 2.0890e-4 g/cm^2.
    sigma = hi_surface_density(1e20 * u.cm**-2).to_value(u.Msun / u.pc**2)
    assert sigma == pytest.approx(1.6735e-4 / 2.0890e-4, rel=1e-3)
    # 1 MHz of the HI line is c / nu0 = 211.06 km/s at z = 0, (1+z) times more at z.
    v = frequency_integral_to_velocity_integral(1 * u.Jy / u.beam * u.MHz)
    assert v.unit == u.Jy / u.beam * u.km / u.s
    assert v.value == pytest.approx(C_KMS / (HI_GHZ * 1e3), rel=1e-9)
    vz = frequency_integral_to_velocity_integral(2 * u.K * u.MHz, redshift=0.1)
    assert vz.to_value(u.K * u.km / u.s) == pytest.approx(2 * 1.1 * C_KMS / (HI_GHZ * 1e3))


def test_gzipped_cube(tmp_path):
    import gzip

    plain = write_cube(tmp_path / "c.fits")
    packed = tmp_path / "c.fits.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    obs = read_observation(packed)
    np.testing.assert_array_equal(obs.cube.unmasked_data[:].value,
                                  read_observation(plain).cube.unmasked_data[:].value)
    cut = tmp_path / "cut.fits.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(InferError, match=r"cut\.fits\.gz: "):
        read_observation(cut)


def test_hi_mom0_is_put_on_the_training_beam():
    from astropy.wcs import WCS
    from radio_beam import Beam

    from alchemy_obs.infer.preprocess import training_beam
    from alchemy_obs.skyimage import SkyImage

    wcs = WCS(naxis=2)
    train = Beam(major=10 * u.arcsec, minor=10 * u.arcsec)
    # 1 Jy/beam km/s in a 20" x 10" beam is the surface brightness of 0.5 Jy per 10" beam.
    obs = SkyImage(np.ones((2, 2)) * u.Jy / u.beam * u.km / u.s, wcs,
                   beam=Beam(major=20 * u.arcsec, minor=10 * u.arcsec))
    np.testing.assert_allclose(to_domain(obs, "hi_mom0", training_beam=train).value, 0.5, rtol=1e-12)
    # The same beam as the training mocks (a mock read back): unchanged; no training beam:
    # per the observation's beam, as before.
    same = SkyImage(obs.data, wcs, beam=train)
    np.testing.assert_allclose(to_domain(same, "hi_mom0", training_beam=train).value, 1.0, rtol=1e-12)
    np.testing.assert_allclose(to_domain(obs, "hi_mom0").value, 1.0, rtol=1e-12)
    # Brightness temperature needs no observation beam then: T = 1.222e6 S / (nu^2 bmaj bmin)
    # (S in Jy/beam, nu in GHz, arcsec), so 1 K km/s at 1.4204 GHz in a 10" beam is
    # 2.0176 * 100 / 1.222e6 = 1.651e-4 Jy/beam km/s.
    kelvin = SkyImage(np.ones((2, 2)) * u.K * u.km / u.s, wcs)
    np.testing.assert_allclose(to_domain(kelvin, "hi_mom0", training_beam=train).value,
                               1.4204058**2 * 100 / 1.222e6, rtol=1e-3)
    # The training beam comes from the model card.
    card = {"training_data": {"mock": {"beam_arcsec": [12.0, 9.0]}}}
    beam = training_beam(card)
    assert (beam.major.to_value(u.arcsec), beam.minor.to_value(u.arcsec)) == pytest.approx((12.0, 9.0))
    assert training_beam({"training_data": {}}) is None


def test_masked_moment0_of_noise_plus_one_source(tmp_path):
    """Pure Gaussian noise (sigma 1 per voxel) and one Gaussian source peaking at 5 sigma:
    the default mask (4 sigma after smoothing by 2 beams x 3 channels, grown by a beam)
    keeps the source's flux and none of the noise far from it."""
    from alchemy_obs.config import InferConfig

    assert InferConfig().mask_sigma == 4.0  # the masked moment-0 is the default
    nx = ny = 64
    nchan = 40
    h = gaussian_cube_header(nx=nx, ny=ny, nchan=nchan)  # beam 12"x10" on 4" pixels
    y, x = np.mgrid[0:ny, 0:nx]
    disc = np.exp(-0.5 * (((x - 31.5) / 4.0) ** 2 + ((y - 31.5) / 4.0) ** 2))
    spectrum = np.exp(-0.5 * ((np.arange(nchan) - 20) / 3.0) ** 2)
    clean = (5.0 * spectrum[:, None, None] * disc[None]).astype(np.float32)
    noise = np.random.default_rng(5).normal(0, 1.0, clean.shape).astype(np.float32)
    obs = read_observation(write_cube(tmp_path / "noisy.fits", h, clean + noise))
    masked = line_integral(obs, mask_sigma=4.0).data.to_value(u.Jy / u.beam * u.Hz)
    unmasked = line_integral(obs).data.to_value(u.Jy / u.beam * u.Hz)
    truth = clean.sum() * 2e4  # 20 kHz channels
    assert masked.sum() == pytest.approx(truth, rel=0.05)
    off = np.hypot(x - 31.5, y - 31.5) > 20  # 5 source sigmas away
    assert np.std(masked[off]) * 5 < np.std(unmasked[off])
