"""Logging of the command line: -v raises only the package's loggers, -q silences INFO, a
log file keeps the detail, and progress bars stay out of non-terminal output."""

import logging

from alchemy_obs.cli import main


def test_quiet_run_with_log_file(tmp_path, capsys):
    log = tmp_path / "run.log"
    assert main(["synth", "--out", str(tmp_path / "s"), "--n-galaxies", "1", "--n-particles",
                 "2000", "-q", "--log-file", str(log)]) == 0
    err = capsys.readouterr().err
    assert "INFO" not in err
    assert "synthetic galaxies" not in err  # no progress bar: stderr is not a terminal
    text = log.read_text()
    assert "INFO alchemy_obs.sim.cli: 1 synthetic cutouts" in text
    assert "\r" not in text


def test_verbose_raises_only_the_package_loggers(tmp_path, capsys):
    assert main(["config", "-v", "--section", "seed"]) == 0
    assert logging.getLogger("alchemy_obs.maps").getEffectiveLevel() == logging.DEBUG
    for other in ("numba", "matplotlib", "h5py", "urllib3"):
        assert logging.getLogger(other).getEffectiveLevel() >= logging.WARNING, other
