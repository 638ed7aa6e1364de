"""Builders shared by the infer tests: a tiny real translator and FITS files of every kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from alchemy_obs.config import TrainConfig
from alchemy_obs.translate.checkpoint import save_model
from alchemy_obs.translate.methods import build_method
from alchemy_obs.translate.normalise import Normalisation, fit_domain_scaling

REAL_CUBE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / (
    "hi_vla_things_ngc2403_regrid.fits"
)
HI_GHZ = 1.420405751768


def make_model(
    folder: Path, npix: int = 16, pixel_kpc: float = 2.0, inputs=("hi_nhi",), target: str = "dm",
    method: str = "pix2pix", seed: int = 0, method_options: dict | None = None,
) -> Path:
    """A small untrained translator saved through the real checkpoint API.

    Weights are random (seeded): the tests check geometry, units and bookkeeping, which do
    not depend on what the network learnt.
    """
    import torch

    torch.manual_seed(seed)
    cfg = TrainConfig.model_validate({
        "data": {"inputs": list(inputs), "target": target},
        "network": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [],
                    "groups": 4, "attention_gates": False},
        "method": {"name": method, **(method_options or {})},
    })
    m = build_method(cfg.method, cfg.network, in_channels=len(inputs), out_channels=1)
    rng = np.random.default_rng(seed)
    units = {"hi_nhi": "1 / cm2", "hi_mom0": "Jy km / (beam s)", "hi": "solMass / kpc2",
             "continuum": "Jy / beam", "dm": "solMass / kpc2", "stars": "solMass / kpc2"}
    scales = {"hi_nhi": 1e20, "hi_mom0": 0.1, "hi": 1e6, "continuum": 1e-3, "dm": 1e7,
              "stars": 1e7}
    norm = Normalisation({d: fit_domain_scaling(d, [rng.lognormal(0, 1, (npix, npix)) * scales[d]])
                          for d in [*inputs, target]})
    card = {
        "config": cfg.model_dump(mode="json"), "inputs": list(inputs), "target": target,
        "in_channels": len(inputs), "out_channels": 1,
        "units": {d: units[d] for d in [*inputs, target]},
        "normalisation": norm.to_dict(), "npix": npix, "pixel_kpc": pixel_kpc,
        "training_data": {"store": "test fixture: random weights"}, "metrics": {}, "step": 0,
    }
    return save_model(folder, m, card)


def gaussian_cube_header(
    nx: int = 24, ny: int = 20, nchan: int = 12, spectral: str = "FREQ", projection: str = "SIN",
    stokes: bool = False, **extra,
) -> fits.Header:
    """Header of a small HI cube centred on (150, 30) deg with the chosen spectral axis."""
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = -32
    naxis = 4 if stokes else 3
    h["NAXIS"] = naxis
    h["NAXIS1"], h["NAXIS2"], h["NAXIS3"] = nx, ny, nchan
    if stokes:
        h["NAXIS4"] = 1
    h["CTYPE1"], h["CTYPE2"] = f"RA---{projection}", f"DEC--{projection}"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 30.0
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 + 0.5
    h["CDELT1"], h["CDELT2"] = -4.0 / 3600, 4.0 / 3600
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    if spectral == "FREQ":
        h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CUNIT3"] = "FREQ", 1.4134e9, -2.0e4, "Hz"
    elif spectral == "VELO-HEL":
        h["CTYPE3"], h["CRVAL3"], h["CDELT3"] = "VELO-HEL", 1.5e6, 4.2e3
    elif spectral == "VRAD":
        h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CUNIT3"] = "VRAD", 1500.0, 4.2, "km/s"
    elif spectral == "VOPT":
        h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CUNIT3"] = "VOPT", 1.5e6, 4.2e3, "m/s"
    else:
        raise ValueError(spectral)
    h["CRPIX3"] = 1.0
    if spectral in ("FREQ", "VRAD"):
        h["RESTFRQ"] = HI_GHZ * 1e9
    if stokes:
        h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    h["EQUINOX"] = 2000.0
    h["RADESYS"] = "FK5"
    h["BUNIT"] = "Jy/beam"
    h["BMAJ"], h["BMIN"], h["BPA"] = 12 / 3600, 10 / 3600, 30.0
    for k, v in extra.items():
        if v is None:
            h.remove(k, ignore_missing=True)
        else:
            h[k] = v
    return h


def gaussian_cube_data(header: fits.Header, peak: float = 0.01, blank_corner: bool = True) -> np.ndarray:
    """A Gaussian disc, constant along the spectrum, with a blank (NaN) corner."""
    nx, ny, nchan = header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]
    y, x = np.mgrid[0:ny, 0:nx]
    disc = peak * np.exp(-0.5 * (((x - nx / 2 + 0.5) / 4) ** 2 + ((y - ny / 2 + 0.5) / 3) ** 2))
    spectrum = np.exp(-0.5 * ((np.arange(nchan) - nchan / 2) / 2.0) ** 2)
    data = (spectrum[:, None, None] * disc[None]).astype(np.float32)
    if blank_corner:
        data[:, :4, :5] = np.nan
    if header["NAXIS"] == 4:
        data = data[None]
    return data


def write_cube(path: Path, header: fits.Header | None = None, data: np.ndarray | None = None,
               extra_hdus=()) -> Path:
    """Write a cube (defaults: :func:`gaussian_cube_header` and :func:`gaussian_cube_data`)."""
    header = gaussian_cube_header() if header is None else header
    data = gaussian_cube_data(header) if data is None else data
    hdu = fits.PrimaryHDU(data, header=header)
    fits.HDUList([hdu, *extra_hdus]).writeto(path, overwrite=True)
    return path
