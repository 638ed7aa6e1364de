"""Ordinary mistakes give one line on stderr, exit status 2, no traceback and no stray files.

Each case is a mistake a new user makes in the first hour (issue 17). The command runs in
an empty folder; afterwards that folder holds exactly what the test put there.
"""

import os
from pathlib import Path

import pytest

from alchemy_obs import AlchemyObsError, UsageError
from alchemy_obs.cli import main


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    (tmp_path / "a_folder").mkdir()
    return tmp_path


MISTAKES = {
    "train without a dataset": (["train", "--no-progress"], "maps/dataset.h5"),
    "evaluate an unknown model": (["evaluate", "nonexistent-model"], "nonexistent-model"),
    "synth into a file": (["synth", "--out", "a_file.txt", "--n-galaxies", "1"], "--out"),
    "synth plot into a folder": (["synth", "--out", "s", "--n-galaxies", "1", "--plot", "a_folder"],
                                 "--plot"),
    "maps from cutouts without input": (["maps", "--source", "cutouts"], "--input"),
    "maps with no workers": (["maps", "--workers", "0"], "--workers"),
    "mock of a folder": (["mock", "--galaxy", "a_folder"], "--galaxy"),
    "comma list in --set": (["maps", "--set", "maps.domains=dm,stars"], "[dm,stars]"),
    "misspelt config key": (["maps", "--set", "maps.npixx=64"], "maps.npix"),
    "beam in the wrong form": (["infer", "x.fits", "--model", "hi2dm", "--beam", "10x10"],
                               "BMAJ[,BMIN[,BPA]]"),
    "distance that is not a length": (["infer", "x.fits", "--model", "hi2dm",
                                       "--distance", "3.2Jy"], "--distance"),
    "infer into a file": (["infer", "x.fits", "--model", "hi2dm", "--out", "a_file.txt"],
                          "--out"),
    "target the model does not predict": (["infer", "x.fits", "--model", "hi2dm",
                                           "--target", "stars"], "predicts 'dm'"),
    "dynamics check of a missing map": (["dynamics-check", "x.fits", "--curve", "c.dat"],
                                        "x.fits"),
    "mass-to-light outside its range": (["dynamics-check", "a_file.txt", "--curve",
                                         "a_file.txt", "--ml-disk", "0.9"], "--ml-disk"),
    "unknown halo": (["dynamics-check", "a_file.txt", "--curve", "a_file.txt", "--haloes",
                      "nfw,einasto"], "--haloes"),
    "dynamics check of a text file": (["dynamics-check", "a_file.txt", "--curve", "a_file.txt"],
                                      "a_file.txt: not a readable FITS file"),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_gives_one_line(name, workdir, capsys):
    argv, needle = MISTAKES[name]
    before = _listing(workdir)
    status = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (status, err)
    assert "Traceback" not in err + out
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"alchemy-obs {argv[0]}: ")
    assert needle in lines[0]
    assert _listing(workdir) == before


def test_distance_accepts_a_unit(workdir, capsys):
    """`--distance 3.2Mpc` passes the option check (the file is what fails, per file)."""
    assert main(["infer", "x.fits", "--model", "hi2dm", "--distance", "3.2Mpc"]) == 1
    err = capsys.readouterr().err
    assert "--distance" not in err and "x.fits" in err


def test_verbose_shows_the_traceback(workdir, capsys):
    assert main(["train", "--no-progress", "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_package_errors_share_a_base_class():
    from alchemy_obs.config import ConfigError
    from alchemy_obs.infer.errors import InferError
    from alchemy_obs.infer.registry import RegistryError
    from alchemy_obs.maps.store import StoreError
    from alchemy_obs.sim.galaxy import GalaxyFileError
    from alchemy_obs.sim.snapshot import SnapshotError
    from alchemy_obs.sim.tng import TNGError

    for cls in (ConfigError, InferError, RegistryError, StoreError, GalaxyFileError,
                SnapshotError, TNGError, UsageError):
        assert issubclass(cls, AlchemyObsError), cls


def test_written_products_follow_the_umask(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the product gets the umask's mode."""
    import numpy as np
    from astropy.io import fits

    from alchemy_obs.observe.fits import write_hdulist

    old = os.umask(0o022)
    try:
        path = write_hdulist(fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2)))]), tmp_path / "a.fits")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_model_names_resolve_alike_and_typos_get_a_suggestion(workdir, capsys):
    """`evaluate` finds the shipped model by name from any folder, as `infer` does, and a
    misspelt name is answered with the closest registered one; `models` lists them."""
    from alchemy_obs.translate.checkpoint import resolve_model

    assert (resolve_model("hi2dm") / "card.json").is_file()
    for argv in (["evaluate", "hi2mm"], ["infer", "x.fits", "--model", "hi2mm"]):
        assert main(argv) == 2
        assert "did you mean 'hi2dm'" in capsys.readouterr().err
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "hi2dm" in out and "hi_nhi -> dm" in out and "demonstration" in out
