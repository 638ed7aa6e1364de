"""``alchemy-obs infer`` end to end: registry names and checksums, targets, posterior samples."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml
from _infer_helpers import make_model, write_cube
from astropy.io import fits

from alchemy_obs.cli import main
from alchemy_obs.infer.pipeline import load_translator
from alchemy_obs.infer.registry import (
    REGISTRY_FORMAT,
    RegistryError,
    load_registry,
    register_model,
    resolve,
)
from alchemy_obs.translate.checkpoint import sha256_file


@pytest.fixture()
def registry(tmp_path):
    folder = make_model(tmp_path / "models" / "tiny-hi2dm", npix=16, pixel_kpc=2.0)
    path = tmp_path / "models" / "registry.yaml"
    entry = register_model(folder, "tiny-hi2dm", path, version="3", description="test model",
                           demonstration=True, beam_fwhm_kpc=1.0)
    assert entry.sha256 == sha256_file(folder / "model.safetensors")
    return path


def test_registry_file_format(registry):
    tree = yaml.safe_load(registry.read_text())
    assert tree["format"] == REGISTRY_FORMAT
    entry = tree["models"]["tiny-hi2dm"]
    assert entry["path"] == "tiny-hi2dm"
    assert entry["method"] == "pix2pix" and entry["inputs"] == ["hi_nhi"] and entry["target"] == "dm"
    assert entry["npix"] == 16 and entry["pixel_kpc"] == 2.0
    assert set(entry["normalisation"]) == {"hi_nhi", "dm"}
    assert len(entry["sha256"]) == 64 and entry["demonstration"] is True
    assert load_registry(registry).models["tiny-hi2dm"].version == "3"
    assert resolve("unknown", registry) is None


def test_default_registry_is_the_installed_packages(tmp_path, monkeypatch, capsys):
    """The shipped models are found from the imported package: run from a folder outside
    the repository, the default registry is the package's shipped one (``alchemy_obs.shipped``:
    inside an installed package, beside it in a source tree), and every shipped model
    resolves by name (checksums verified) for ``infer`` and ``evaluate`` alike."""
    from alchemy_obs.config import load_config
    from alchemy_obs.infer.registry import registry_file
    from alchemy_obs.shipped import MODELS
    from alchemy_obs.translate.checkpoint import resolve_model

    monkeypatch.delenv("ALCHEMY_OBS_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config(None).infer.registry is None
    assert registry_file() == MODELS / "registry.yaml"
    registry = load_registry()
    assert "hi2dm" in registry.models
    for name in registry.models:
        folder, _ = resolve(name)
        assert folder.resolve().parent == MODELS
        assert resolve_model(name).resolve() == folder.resolve()
    assert main(["models"]) == 0
    assert str(MODELS / "registry.yaml") in capsys.readouterr().out
    # A registry the user names is read from where it is named, not looked up elsewhere.
    assert load_registry("models/registry.yaml").models == {}


def test_infer_by_registry_name(tmp_path, registry, caplog):
    cube = write_cube(tmp_path / "cube.fits")
    rc = main(["infer", str(cube), "--model", "tiny-hi2dm", "--target", "dm", "--distance", "10",
               "--out", str(tmp_path / "out"), "--set", f"infer.registry={registry}", "--plot"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cube_dm.fits", "cube_dm.png"]
    assert (tmp_path / "out" / "cube_dm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = fits.getheader(tmp_path / "out" / "cube_dm.fits")
    assert header["MODEL"] == "tiny-hi2dm" and header["MODELVER"] == "3"
    assert header["DEMOMODL"] is True
    assert header["MODELSHA"] == yaml.safe_load(registry.read_text())["models"]["tiny-hi2dm"]["sha256"]
    # 12"x10" at 10 Mpc is 0.53 kpc, finer than the (made-up) training beam of 1 kpc.
    assert "input smoothed from 12\"x10\"" in caplog.text
    assert header["BMAJ"] == pytest.approx(1.0 / 10e3 * 180 / np.pi, rel=1e-6)


def test_corrupt_weights_are_refused(tmp_path, registry, capsys):
    weights = registry.parent / "tiny-hi2dm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="does not match the registry"):
        resolve("tiny-hi2dm", registry)
    cube = write_cube(tmp_path / "cube.fits")
    rc = main(["infer", str(cube), "--model", "tiny-hi2dm", "--distance", "10",
               "--out", str(tmp_path / "out"), "--set", f"infer.registry={registry}"])
    assert rc == 2
    assert "does not match the registry" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_registry_and_card_must_agree(tmp_path, registry):
    tree = yaml.safe_load(registry.read_text())
    tree["models"]["tiny-hi2dm"]["pixel_kpc"] = 1.0
    registry.write_text(yaml.safe_dump(tree))
    with pytest.raises(RegistryError, match="pixel_kpc differs"):
        resolve("tiny-hi2dm", registry)


def test_invalid_registry_file(tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_text("format: alchemy-obs-registry/1\nmodels:\n  x: {path: x}\n")
    with pytest.raises(RegistryError, match=r"registry.yaml: .*method"):
        load_registry(bad)


def test_unknown_model_names_the_registry_searched(tmp_path, registry, monkeypatch):
    from alchemy_obs.infer.errors import InferError

    # A relative registry path is easy to get wrong: say which file was searched, as an
    # absolute path.
    monkeypatch.chdir(tmp_path)
    searched = re.escape(str(tmp_path / "mine" / "registry.yaml"))
    with pytest.raises(InferError, match=f"no-such-model: .*no model of that name in {searched}"):
        load_translator("no-such-model", "mine/registry.yaml")


def test_wrong_target_is_refused(tmp_path, registry, capsys):
    """Once, before any file is read: a usage error, not one failure per file."""
    cube = write_cube(tmp_path / "cube.fits")
    rc = main(["infer", str(cube), str(cube), "--model", "tiny-hi2dm", "--target", "stars",
               "--distance", "10", "--out", str(tmp_path / "out"),
               "--set", f"infer.registry={registry}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("predicts 'dm'") == 1 and "--target stars" in err
    assert not (tmp_path / "out").exists()


def test_posterior_samples_give_mean_and_std(tmp_path):
    # InDI with a noisy start is stochastic and stays finite untrained (unlike a DDPM).
    model = make_model(tmp_path / "indi", npix=16, pixel_kpc=2.0, method="indi",
                       method_options={"indi": {"noise": 0.5}})
    cube = write_cube(tmp_path / "cube.fits")
    rc = main(["infer", str(cube), "--model", str(model), "--samples", "3", "--steps", "3",
               "--distance", "10", "--out", str(tmp_path / "out")])
    assert rc == 0
    with fits.open(tmp_path / "out" / "cube_dm.fits") as hdul:
        mean, std = hdul[0].data, hdul["UNCERT"].data
        assert hdul[0].header["NSAMPLES"] == 3 and hdul[0].header["NSTEPS"] == 3
    finite = np.isfinite(mean)
    assert finite.any()
    np.testing.assert_array_equal(np.isfinite(std), finite)
    assert (std[finite] > 0).all()  # independent diffusion samples differ


def test_deterministic_model_writes_no_uncertainty(tmp_path, caplog):
    """pix2pix asked for 4 samples: identical samples must not become an UNCERT of zeros."""
    model = make_model(tmp_path / "p2p", npix=16, pixel_kpc=2.0)
    cube = write_cube(tmp_path / "cube.fits")
    rc = main(["infer", str(cube), "--model", str(model), "--samples", "4",
               "--distance", "10", "--out", str(tmp_path / "out")])
    assert rc == 0
    with fits.open(tmp_path / "out" / "cube_dm.fits") as hdul:
        assert hdul[0].header["NSAMPLES"] == 1
        assert np.isnan(hdul["UNCERT"].data).all()
    assert "deterministic" in caplog.text


def test_single_sample_uncertainty_is_undefined(tmp_path):
    model = make_model(tmp_path / "p2p", npix=16, pixel_kpc=2.0)
    translator = load_translator(model)
    assert translator.version == "unregistered"
    cube = write_cube(tmp_path / "cube.fits")
    assert main(["infer", str(cube), "--model", str(model), "--distance", "10",
                 "--out", str(tmp_path / "out")]) == 0
    with fits.open(tmp_path / "out" / "cube_dm.fits") as hdul:
        assert np.isnan(hdul["UNCERT"].data).all()
        assert "one sample" in str(hdul["UNCERT"].header["COMMENT"])


def test_batch_progress_and_summary(tmp_path, capsys, monkeypatch):
    """A summary always; the progress bar only on a terminal (not in a log file)."""
    import sys

    model = make_model(tmp_path / "p2p", npix=16, pixel_kpc=2.0)
    cubes = [write_cube(tmp_path / f"c{i}.fits") for i in range(3)]
    args = ["infer", *map(str, cubes), "--model", str(model), "--distance", "10",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "3 succeeded, 0 failed" in err
    assert "3/3" not in err  # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*args, "--overwrite"]) == 0
    assert "3/3" in capsys.readouterr().err  # tqdm progress bar
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "c0_dm.fits", "c1_dm.fits", "c2_dm.fits"]


def test_distance_from_hubble_flow(tmp_path, capsys):
    """Without --distance a cube at cz ~ 1500 km/s gets the Planck18 angular-diameter distance."""
    from astropy.cosmology import Planck18

    model = make_model(tmp_path / "p2p", npix=16, pixel_kpc=2.0)
    cube = write_cube(tmp_path / "cube.fits")
    assert main(["infer", str(cube), "--model", str(model), "--out", str(tmp_path / "out")]) == 0
    header = fits.getheader(tmp_path / "out" / "cube_dm.fits")
    z = float(header["DISTSRC"].split("z=")[1].split()[0])
    assert 1400 < z * 299792.458 < 1600
    assert header["DISTANCE"] == pytest.approx(Planck18.angular_diameter_distance(z).value,
                                               rel=1e-4)


def test_target_without_model_uses_the_best_shipped_model(tmp_path, monkeypatch, caplog):
    """``--target dm`` alone: the shipped registry's best dark-matter model, named in the log
    and in the output header."""
    import logging

    from alchemy_obs.infer.registry import best_model

    monkeypatch.delenv("ALCHEMY_OBS_MODELS", raising=False)
    name, entry = best_model("dm")
    assert entry.target == "dm" and name == "hi2dm"  # the released dm model (the demo model is gone)
    assert best_model("no-such-domain") is None
    cube = write_cube(tmp_path / "cube.fits")
    with caplog.at_level(logging.INFO, logger="alchemy_obs"):
        rc = main(["infer", str(cube), "--target", "dm", "--distance", "10",
                   "--out", str(tmp_path / "out")])
    assert rc == 0
    assert f"--target dm: using model {name}" in caplog.text
    assert fits.getheader(tmp_path / "out" / "cube_dm.fits")["MODEL"] == name


def test_best_model_ranking(tmp_path, capsys):
    """Science models before demonstration ones, then the smaller held-out profile error."""
    from alchemy_obs.infer.registry import best_model

    path = tmp_path / "models" / "registry.yaml"
    for i, (name, demo, dex) in enumerate([("demo-good", True, 0.05), ("sci-poor", False, 0.3),
                                           ("sci-good", False, 0.1), ("sci-none", False, None),
                                           ("stars", False, 0.01)]):
        folder = make_model(tmp_path / "models" / name, target="stars" if name == "stars" else "dm",
                            seed=i)
        register_model(folder, name, path, demonstration=demo)
        tree = yaml.safe_load(path.read_text())
        if dex is not None:
            tree["models"][name]["metrics"] = {"model": {"profile_abs_dex": dex}}
        path.write_text(yaml.safe_dump(tree))
    assert best_model("dm", path)[0] == "sci-good"
    assert best_model("stars", path)[0] == "stars"
    rc = main(["infer", str(tmp_path / "x.fits"), "--target", "gas",
               "--set", f"infer.registry={path}"])
    assert rc == 2
    assert "no registered model predicts 'gas'" in capsys.readouterr().err


def test_no_mask_option(tmp_path, capsys):
    """--no-mask restores the unmasked moment-0 (another output: other settings)."""
    model = make_model(tmp_path / "p2p", npix=16, pixel_kpc=2.0)
    cube = write_cube(tmp_path / "cube.fits")
    base = ["infer", str(cube), "--model", str(model), "--distance", "10"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--no-mask", "--out", str(tmp_path / "b")]) == 0
    a, b = (fits.getheader(tmp_path / d / "cube_dm.fits")["SETTINGS"] for d in "ab")
    assert a != b
    capsys.readouterr()
    assert main([*base, "--no-mask", "--mask-sigma", "3"]) == 2
    assert "--no-mask and --mask-sigma exclude each other" in capsys.readouterr().err
