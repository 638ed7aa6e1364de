"""``alchemy-obs synth`` through the real command-line entry point."""

from __future__ import annotations

import pytest

from alchemy_obs.cli import main
from alchemy_obs.sim.galaxy import load_galaxy


def test_synth_writes_loadable_cutouts_and_plot(tmp_path):
    out = tmp_path / "gal"
    png = tmp_path / "particles.png"
    rc = main(["synth", "--out", str(out), "--n-galaxies", "2", "--n-particles", "2000",
               "--set", "synth.seed=7", "--plot", str(png)])
    assert rc == 0
    paths = sorted(out.glob("cutout_*.hdf5"))
    assert [p.name for p in paths] == ["cutout_0.hdf5", "cutout_1.hdf5"]
    g = load_galaxy(paths[1])
    assert g.subhalo_id == 1 and len(g.gas) > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --set synth.seed=7 is honoured: a different seed gives a different galaxy.
    rc = main(["synth", "--out", str(tmp_path / "other"), "--n-galaxies", "1", "--n-particles", "2000"])
    assert rc == 0
    other = load_galaxy(tmp_path / "other" / "cutout_0.hdf5")
    assert other.gas.total_mass != load_galaxy(paths[0]).gas.total_mass


def test_synth_rejects_bad_option(tmp_path, capsys):
    rc = main(["synth", "--out", str(tmp_path), "--n-particles", "10"])
    assert rc == 2
    assert "--n-particles" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.hdf5"))


def test_synth_help_speaks_astronomy(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("IllustrisTNG cutout layout", "ckpc/h", "NFW", "--n-particles", "--seed"):
        assert phrase in text
