"""The demonstration model shipped in ``models/`` (built by its ``build_demo_model.sh``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from alchemy_obs.cli import main
from alchemy_obs.demo import DEMO_MODEL
from alchemy_obs.infer.registry import load_registry, resolve
from alchemy_obs.shipped import MODELS
from alchemy_obs.translate.checkpoint import load_model, sha256_file

REGISTRY = MODELS / "registry.yaml"


@pytest.fixture(scope="module")
def entry():
    registry = load_registry(REGISTRY)
    assert DEMO_MODEL in registry.models, f"{DEMO_MODEL} is not registered in {REGISTRY}"
    return registry.models[DEMO_MODEL]


@pytest.fixture(scope="module")
def folder(entry) -> Path:
    return (REGISTRY.parent / entry.path).resolve()


def test_registry_entry_matches_the_shipped_files(entry, folder):
    weights = folder / "model.safetensors"
    assert sha256_file(weights) == entry.sha256
    card = json.loads((folder / "card.json").read_text())
    assert card["weights_sha256"] == entry.sha256
    assert resolve(DEMO_MODEL, REGISTRY)[0] == folder  # checksum and card agreement verified
    assert entry.demonstration and card["demonstration"]
    assert "NOT A SCIENCE RESULT" in (folder / "README.md").read_text()
    assert (entry.method, entry.inputs, entry.target, entry.npix) == ("pix2pix", ["hi_nhi"], "dm", 64)
    assert entry.metrics == card["metrics"] and entry.beam_fwhm_kpc > 0
    # Shipped files stay small and are not hidden from git by .gitignore.
    size = sum(p.stat().st_size for p in REGISTRY.parent.rglob("*") if p.is_file())
    assert size < 10 * 2**20


def test_load_model_gives_a_working_translator(folder):
    method, card = load_model(folder, device="cpu")
    assert card["units"] == {"hi_nhi": "1 / cm2", "dm": "solMass / kpc2"}
    with torch.no_grad():
        out = method.sample(torch.zeros(2, 1, 64, 64))
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()


def test_beats_the_baselines_on_the_held_out_test_views(entry, folder):
    """Recorded test metrics beat both baselines, and re-scoring the shipped test views
    reproduces them (so they were not typed in)."""
    from alchemy_obs.translate.evaluate import evaluate_method
    from alchemy_obs.translate.normalise import Normalisation

    m = entry.metrics
    assert m["split"] == "test" and m["n_maps"] >= 6
    for name, base in m["baselines"].items():
        for key in ("profile_abs_dex", "mass_abs_dex"):
            assert m["model"][key] < base[key], f"{DEMO_MODEL} loses to {name} on {key}"
    method, card = load_model(folder, device="cpu")
    res = evaluate_method(method, folder / "test_views" / "dataset.h5", card["inputs"],
                          target=card["target"],
                          normalisation=Normalisation.from_dict(card["normalisation"]), split="test")
    assert res["pred"].shape[0] == m["n_maps"]
    for key in ("profile_abs_dex", "mass_abs_dex", "ssim", "psnr"):
        assert res["summary"][key] == pytest.approx(m["model"][key], rel=1e-3, abs=1e-5)


@pytest.fixture(scope="module")
def mock_cube(tmp_path_factory, entry) -> Path:
    """An SKA-MID HI cube of a held-out synthetic galaxy (fewer particles), written by the
    observe stage's API with the demonstration model's mock set-up (fast mode, 20 Mpc)."""
    from alchemy_obs.config import load_config
    from alchemy_obs.observe.cli import mock_galaxy
    from alchemy_obs.observe.fits import write_mock_products
    from alchemy_obs.sim.synthetic import make_synthetic_cutout

    tmp = tmp_path_factory.mktemp("demo_mock")
    gid = entry.training_data["test_galaxies"][0]
    cutout = tmp / f"cutout_{gid}.hdf5"
    make_synthetic_cutout(cutout, gid, 6000, seed=entry.training_data["synth_seed"])
    cfg = load_config(None, ["mock.npix=48", "mock.n_channels=24", "mock.channel_width_kms=12",
                             "mock.products=[hi]", "observe.mode=fast", "maps.npix=64",
                             "maps.pixel_kpc=0.75"])
    label, mocks = mock_galaxy(cutout, cfg, "faceon")
    write_mock_products(mocks, tmp, "galaxy_faceon", object_name=label)
    return tmp / "galaxy_faceon_hi_image.fits"


@pytest.mark.slow
def test_infer_on_a_mock_cube_keeps_the_celestial_wcs(mock_cube, tmp_path):
    out_dir = tmp_path / "out"
    assert main(["infer", "--set", f"infer.registry={REGISTRY}", "--set", "device=cpu",
                 str(mock_cube), "--model", DEMO_MODEL, "--out", str(out_dir), "--plot"]) == 0
    out = out_dir / "galaxy_faceon_hi_image_dm.fits"
    with fits.open(out) as hdul:
        data, header = hdul[0].data, hdul[0].header
    in_header = fits.getheader(mock_cube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w_in, w_out = WCS(in_header).celestial, WCS(header)
    assert w_out.naxis == 2 and data.shape == (in_header["NAXIS2"], in_header["NAXIS1"])
    y, x = np.indices(data.shape)
    for a, b in zip(w_out.pixel_to_world_values(x, y), w_in.pixel_to_world_values(x, y)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    assert header["DEMOMODL"] is True and u.Unit(header["BUNIT"]) == u.Msun / u.kpc**2
    assert out.with_suffix(".png").is_file()
    # Dark matter is centrally concentrated: the predicted map peaks on the galaxy (the mock's
    # pointing centre) within a few 0.75 kpc model pixels, i.e. the grids line up.
    finite = np.where(np.isfinite(data), data, -np.inf)
    peak = np.unravel_index(np.argmax(finite), data.shape)
    centre = w_in.world_to_pixel_values(in_header["CRVAL1"], in_header["CRVAL2"])
    pixel_kpc = 48.0 / in_header["NAXIS1"]
    offset_kpc = np.hypot(peak[1] - centre[0], peak[0] - centre[1]) * pixel_kpc
    assert offset_kpc < 3.0


@pytest.mark.slow
def test_demo_infer_stage_uses_the_shipped_model(mock_cube, tmp_path):
    """The demo's last stage: the mock cube in <out>/mocks -> <out>/inferred FITS + PNG."""
    import shutil

    from alchemy_obs.config import load_config
    from alchemy_obs.demo import STAGES

    (tmp_path / "mocks").mkdir()
    shutil.copy(mock_cube, tmp_path / "mocks" / mock_cube.name)
    name, stage = STAGES[-1]
    assert "infer" in name
    stage(load_config(None, ["device=cpu"]), tmp_path)  # the default registry: the package's
    out = tmp_path / "inferred" / f"{mock_cube.stem}_dm.fits"
    assert fits.getheader(out)["MODEL"] == DEMO_MODEL
    assert out.with_suffix(".png").is_file()
