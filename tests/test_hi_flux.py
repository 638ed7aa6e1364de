"""Done-when of issue 12: a mock HI cube keeps the particles' HI mass, at default settings.

The test integrates the written FITS cube itself (sum over pixels and channels divided by the
restoring beam's area in pixels, times the channel width) and converts the particles' HI mass
to a line flux with the textbook formula, not with the package's integrator:
:math:`\\int S\\,d\\nu = \\tfrac{3}{4} h\\nu_0 A_{10} M_{\\rm HI} / (m_{\\rm H}\\,4\\pi D_L^2)`.
Galaxies with circular velocities from ~90 to ~250 km/s are seen face-on, at 60 degrees and
edge-on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy import constants as const
from astropy import units as u
from astropy.io import fits

from alchemy_obs.config import load_config
from alchemy_obs.maps.geometry import face_on_matrix, map_extent
from alchemy_obs.maps.render import galaxy_field
from alchemy_obs.observe.fits import write_mock_products
from alchemy_obs.observe.mock import mock_view_maps
from alchemy_obs.observe.sky import BandTruncationWarning, HISource
from alchemy_obs.sim.galaxy import load_galaxy
from alchemy_obs.sim.synthetic import make_synthetic_cutout

A10 = 2.8843e-15 / u.s  # Einstein coefficient of the 21 cm line
NU0 = 1420.405751768 * u.MHz
#: Synthetic galaxies (seed 7, no companion) and their peak circular velocity (km/s),
#: sqrt(G M(<r) / r) of all particles between 2 and 25 kpc.
GALAXIES = {7: 85, 2: 151, 9: 244}
G = 4.30091e-6  # kpc (km/s)^2 / Msun


def _v_max(galaxy) -> float:
    parts = (galaxy.gas, galaxy.stars, galaxy.dm)
    r = np.linalg.norm(np.concatenate([p.coordinates for p in parts]), axis=1)
    m = np.concatenate([p.masses for p in parts])
    order = np.argsort(r)
    r, enclosed = r[order], np.cumsum(m[order])
    sel = (r > 2) & (r < 25)
    return float(np.sqrt(G * enclosed[sel] / r[sel]).max())


def _inclined(galaxy, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return tilt @ face_on_matrix(galaxy.stellar_angular_momentum())


def _fits_line_flux(path) -> u.Quantity:
    """Sum of the restored cube divided by its primary-beam response (``*_pb.fits``), over
    the beam area in pixels, times the channel width: what an astronomer does."""
    pb = fits.getdata(str(path).replace("_image.fits", "_pb.fits"))
    data, h = fits.getdata(path) / pb, fits.getheader(path)
    beam_pix = np.pi * h["BMAJ"] * h["BMIN"] / (4 * np.log(2)) / abs(h["CDELT1"] * h["CDELT2"])
    return float(np.nansum(data) / beam_pix * abs(h["CDELT3"])) * u.Jy * u.Hz


def _expected_line_flux(hi_mass: u.Quantity, luminosity_distance: u.Quantity) -> u.Quantity:
    atoms = (hi_mass / (const.m_p + const.m_e)).decompose()
    energy = 0.75 * const.h * NU0 * A10 * atoms  # 3/4 of the atoms in the upper level
    return (energy / (4 * np.pi * luminosity_distance**2)).to(u.Jy * u.Hz)


def _mock(tmp_path, gid, inclination, overrides):
    path = make_synthetic_cutout(tmp_path / f"cutout_{gid}.hdf5", gid, 6000, 7, merger_fraction=0.0)
    galaxy = load_galaxy(path)
    cfg = load_config(None, ["mock.products=[hi]", *overrides])
    rotation = _inclined(galaxy, inclination)
    extent = map_extent(galaxy_field(galaxy, cfg.maps)[0]).value
    with warnings.catch_warnings():
        warnings.simplefilter("error", BandTruncationWarning)  # the default band is whole
        _, mocks = mock_view_maps(galaxy, rotation, extent, map_npix=cfg.mock.npix, mock=cfg.mock,
                                  observe=cfg.observe,
                                  maps=cfg.maps)
    stem = f"g{gid}_i{inclination:.0f}"
    write_mock_products(mocks, tmp_path, stem, object_name=stem)
    source = HISource.from_galaxy(galaxy, rotation, gas_factor=cfg.maps.gas_hsml_factor,
                                  uvb=cfg.maps.uvb, column=cfg.maps.kmt_column)
    xy = source.positions.to_value(u.kpc)[:, :2]
    in_field = ((xy[:, 0] >= extent[0]) & (xy[:, 0] < extent[1])
                & (xy[:, 1] >= extent[2]) & (xy[:, 1] < extent[3]))
    header = fits.getheader(tmp_path / f"{stem}_hi_image.fits")
    expected = _expected_line_flux(source.hi_mass.sum(), header["DISTLUM"] * u.Mpc)
    return galaxy, tmp_path / f"{stem}_hi_image.fits", expected, in_field.mean()


def test_hand_formula_matches_the_sky_cube(tmp_path):
    """The textbook conversion of the test agrees with the written sky model (Jy/pixel)."""
    _, image, expected, _ = _mock(tmp_path, 2, 60.0, ["observe.mode=fast", "observe.noise=false",
                                                      "mock.npix=64"])
    sky = image.with_name(image.name.replace("_image", "_sky"))
    data, h = fits.getdata(sky), fits.getheader(sky)
    flux = float(data.sum() * abs(h["CDELT3"])) * u.Jy * u.Hz
    # HI of the particles outside the field (<= 1 %, issue 12) is missing from the cube.
    assert flux.value == pytest.approx(expected.value, rel=0.012)


@pytest.mark.slow
@pytest.mark.parametrize("gid", list(GALAXIES))
def test_restored_cube_keeps_the_hi_mass(tmp_path, gid):
    """Noise off, defaults otherwise except the fast image-plane mode (the same CLEAN as the
    visibility path, imaged in the image plane): within 2 % at 0, 60 and 90 degrees."""
    for inclination in (0.0, 60.0, 90.0):
        galaxy, image, expected, _ = _mock(tmp_path, gid, inclination,
                                           ["observe.mode=fast", "observe.noise=false"])
        assert _v_max(galaxy) == pytest.approx(GALAXIES[gid], abs=3)
        measured = _fits_line_flux(image)
        assert measured.value == pytest.approx(expected.value, rel=0.02), (gid, inclination)


@pytest.mark.slow
def test_default_visibility_path_keeps_the_hi_mass(tmp_path):
    """All defaults (visibility path, 128^2, Briggs 0, automatic band) but the noise, for the
    fastest rotator edge-on: the widest line of the set."""
    _, image, expected, _ = _mock(tmp_path, 9, 90.0, ["observe.noise=false"])
    assert _fits_line_flux(image).value == pytest.approx(expected.value, rel=0.02)


@pytest.mark.slow
def test_noisy_cube_keeps_the_hi_mass_within_the_noise(tmp_path):
    """With noise: within 2 % plus three times the noise of the integral. That noise is at
    most sigma * sqrt(pixels / beam pixels) per channel (the field's independent beams),
    times the channel width and the square root of the number of channels."""
    _, image, expected, _ = _mock(tmp_path, 2, 60.0, ["observe.mode=fast"])
    h = fits.getheader(image)
    beam_pix = np.pi * h["BMAJ"] * h["BMIN"] / (4 * np.log(2)) / abs(h["CDELT1"] * h["CDELT2"])
    npix, nchan = h["NAXIS1"] * h["NAXIS2"], h["NAXIS3"]
    noise = h["NOISERMS"] * np.sqrt(npix / beam_pix) * abs(h["CDELT3"]) * np.sqrt(nchan)
    measured = _fits_line_flux(image).value
    assert abs(measured - expected.value) <= 0.02 * expected.value + 3 * noise
