"""A corpus of bad inputs: one clear line per file, a non-zero exit, and no partial output."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from _infer_helpers import gaussian_cube_data, gaussian_cube_header, make_model, write_cube
from astropy.io import fits

from alchemy_obs.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "tiny", npix=16, pixel_kpc=2.0)


def _bad_corpus(folder):
    """file name -> (writer, text the one-line error must contain)."""
    folder.mkdir()
    cases = {}

    def add(name, expected, header=None, data=None, raw=None):
        path = folder / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            fits.PrimaryHDU(data, header=header).writeto(path)
        cases[path] = expected

    add("no_wcs.fits", "no celestial WCS", data=np.ones((10, 10), np.float32))
    add("spectrum.fits", "1-D data",
        header=fits.Header({"CTYPE1": "FREQ", "CRVAL1": 1.4e9, "CDELT1": 1e4, "CRPIX1": 1,
                            "BUNIT": "Jy"}),
        data=np.ones(64, np.float32))
    h = gaussian_cube_header()
    add("all_nan.fits", "all data values are blank", header=h,
        data=np.full((h["NAXIS3"], h["NAXIS2"], h["NAXIS1"]), np.nan, np.float32))
    h = gaussian_cube_header(BMAJ=-1.0, BMIN=-1.0)
    add("bmaj_minus_one.fits", "invalid beam in the header (BMAJ=-1.0", header=h,
        data=gaussian_cube_data(h))
    h = gaussian_cube_header(CRVAL3=115.2712018e9 - 6 * 2e5, CDELT3=2e5, RESTFRQ=115.2712018e9)
    add("co.fits", "CO(1-0) at 115.271 GHz, not the HI 21 cm line", header=h,
        data=gaussian_cube_data(h))
    h = gaussian_cube_header(CRVAL3=230.538e9, CDELT3=2e5, RESTFRQ=None)
    add("co21_no_restfrq.fits", "(it matches CO(2-1))", header=h, data=gaussian_cube_data(h))
    h = fits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "CRVAL1": 10.0, "CRVAL2": 5.0,
                     "CDELT1": -1e-3, "CDELT2": 1e-3, "CRPIX1": 5, "CRPIX2": 5,
                     "BUNIT": "K km/s", "RESTFRQ": 115.2712018e9})
    add("co_moment0.fits", "CO(1-0) at 115.271 GHz", header=h, data=np.ones((10, 10), np.float32))
    h = gaussian_cube_header(BUNIT="Jy/pixel")
    add("clean_model.fits", "BUNIT 'Jy/pixel' is a sky model or CLEAN-component image", header=h,
        data=gaussian_cube_data(h))
    h = gaussian_cube_header(BUNIT="counts")
    add("unknown_bunit.fits", "unknown or missing BUNIT 'counts'", header=h,
        data=gaussian_cube_data(h))
    good = write_cube(folder / "for_truncation.fits")
    add("truncated.fits", "truncated file", raw=good.read_bytes()[:2880 + 1000])
    good.unlink()
    add("not_fits.fits", "not a readable FITS file", raw=b"SIMPLE = nonsense\n" * 10)
    return cases


def test_bad_input_corpus(tmp_path, model_dir, capsys):
    cases = _bad_corpus(tmp_path / "bad")
    good = write_cube(tmp_path / "good.fits")
    out = tmp_path / "out"
    inputs = [str(p) for p in cases] + [str(good)]
    rc = main(["infer", *inputs, "--model", str(model_dir), "--distance", "10", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    error_lines = [line for line in err.splitlines() if line.startswith("alchemy-obs infer: /")]
    assert len(error_lines) == len(cases)
    for path, expected in cases.items():
        mine = [line for line in error_lines if line.startswith(f"alchemy-obs infer: {path}: ")]
        assert len(mine) == 1, (path, err)
        assert expected in mine[0], (expected, mine[0])
    assert f"1 succeeded, {len(cases)} failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["good_dm.fits"]  # nothing partial


def test_missing_beam_error_says_what_to_do(tmp_path, model_dir, capsys):
    h = gaussian_cube_header(BMAJ=None, BMIN=None, BPA=None)
    path = write_cube(tmp_path / "nobeam.fits", h)
    rc = main(["infer", str(path), "--model", str(model_dir), "--distance", "10",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{path}: no beam in the header" in err and "--beam BMAJ[,BMIN[,BPA]]" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_output_needs_overwrite_and_input_is_never_replaced(tmp_path, model_dir, capsys):
    path = write_cube(tmp_path / "cube.fits")
    before = path.read_bytes()
    args = ["infer", str(path), "--model", str(model_dir), "--distance", "10",
            "--out", str(tmp_path)]
    assert main(args) == 0
    out = tmp_path / "cube_dm.fits"
    first = out.read_bytes()
    capsys.readouterr()
    # The same command again (an interrupted batch rerun): the output is up to date.
    assert main(args) == 0
    assert "0 succeeded, 1 up to date, 0 failed" in capsys.readouterr().err
    assert out.read_bytes() == first
    # Other options would give another map: refused without --overwrite.
    assert main([*args[:-4], "--distance", "11", "--out", str(tmp_path)]) == 1
    assert "output exists (from another input, model or settings); pass --overwrite" in \
        capsys.readouterr().err
    assert out.read_bytes() == first
    assert main([*args, "--overwrite"]) == 0
    assert path.read_bytes() == before
    # An input named like another input's output is protected even with --overwrite.
    twin = write_cube(tmp_path / "cube_dm.fits")
    twin_bytes = twin.read_bytes()
    assert main(["infer", str(path), str(twin), "--model", str(model_dir), "--distance", "10",
                 "--out", str(tmp_path), "--overwrite"]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert twin.read_bytes() == twin_bytes


def test_output_folder_is_a_file(tmp_path, model_dir, capsys):
    path = write_cube(tmp_path / "cube.fits")
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    rc = main(["infer", str(path), "--model", str(model_dir), "--distance", "10",
               "--out", str(blocker)])
    assert rc == 2  # refused before the cube is read
    assert "--out" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_failed_final_rename_leaves_no_partial_file(tmp_path, model_dir, capsys, monkeypatch):
    """The last step of the atomic write fails (as on a read-only or full disk).

    Tests run as root, for whom permission bits do not make a folder read-only, so the
    failure is injected at ``os.replace``: the temporary file must be gone afterwards.
    """
    path = write_cube(tmp_path / "cube.fits")
    out = tmp_path / "out"
    out.mkdir()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    rc = main(["infer", str(path), "--model", str(model_dir), "--distance", "10",
               "--out", str(out)])
    monkeypatch.undo()
    assert rc == 1
    assert "cannot write the output (Permission denied)" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def _immutable(folder) -> bool:
    """Make ``folder`` immutable (``chattr +i`` stops even root); False where unsupported."""
    if shutil.which("chattr") is None:
        return False
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        return False
    try:
        (folder / "probe").touch()
    except OSError:
        return True
    (folder / "probe").unlink()
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    return False


def test_really_read_only_output_folder(tmp_path, model_dir, capsys):
    path = write_cube(tmp_path / "cube.fits")
    out = tmp_path / "ro"
    out.mkdir()
    if not _immutable(out):
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        rc = main(["infer", str(path), "--model", str(model_dir), "--distance", "10",
                   "--out", str(out)])
        assert rc == 1
        err = capsys.readouterr().err
        assert f"{out / 'cube_dm.fits'}: cannot write the output" in err
        assert list(out.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)


def test_usage_errors(tmp_path, model_dir, capsys):
    path = write_cube(tmp_path / "cube.fits")
    assert main(["infer", str(path), "--model", str(model_dir), "--beam", "x"]) == 2
    assert "--beam 'x'" in capsys.readouterr().err
    assert main(["infer", str(path), "--model", str(tmp_path / "nope")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert main(["infer", str(path)]) == 2
    assert "--model: required" in capsys.readouterr().err
    assert main(["infer", str(path), "--model", str(model_dir), "--distance", "-1"]) == 2
    assert main(["infer", str(path), "--model", str(model_dir), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err


def _error_lines(err: str) -> list[str]:
    """The per-file error lines of ``alchemy-obs infer`` (the summary line left out)."""
    return [line for line in err.splitlines()
            if line.startswith("alchemy-obs infer: ") and " succeeded" not in line]


def test_wsrt_cube_with_hz_spelling_and_beam_option(tmp_path, model_dir, capsys):
    """WSRT writes ``CUNIT3 = 'HZ'`` and ``BMAJ = -1``: with --beam the cube is used."""
    h = gaussian_cube_header(CUNIT3="HZ", BMAJ=-1.0, BMIN=-1.0, BPA=0.0, TELESCOP="WSRT")
    path = write_cube(tmp_path / "wsrt.fits", h)
    args = ["infer", str(path), "--model", str(model_dir), "--distance", "10",
            "--out", str(tmp_path / "out")]
    assert main(args) == 1  # BMAJ = -1 without --beam: refused, naming the option
    assert "--beam" in _error_lines(capsys.readouterr().err)[0]
    assert main([*args, "--beam", "12,10,30"]) == 0, capsys.readouterr().err
    header = fits.getheader(tmp_path / "out" / "wsrt_dm.fits")
    assert header["INBMAJ"] == 12.0 and header["BEAMSRC"] == "option"


def test_nan_spectral_reference_is_refused(tmp_path, model_dir, capsys):
    """``CRVAL3 = NaN``: astropy would read it as 0 Hz (a -248 km/s axis) and say nothing."""
    h = gaussian_cube_header()
    path = write_cube(tmp_path / "nan_crval3.fits", h)
    raw = bytearray(path.read_bytes())
    card = fits.Card("CRVAL3", h["CRVAL3"]).image.encode()
    start = raw.index(card)
    raw[start:start + 80] = ("CRVAL3  = " + "NaN".rjust(20)).ljust(80).encode()
    path.write_bytes(bytes(raw))
    out = tmp_path / "out"
    rc = main(["infer", str(path), "--model", str(model_dir), "--distance", "10",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1  # a file that fails; 2 is kept for usage errors found before any file
    lines = _error_lines(err)
    assert lines == [f"alchemy-obs infer: {path}: CRVAL3 = NaN is not a finite number: the "
                     "WCS of this file is corrupt (its axis cannot be located); fix the header"]
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
