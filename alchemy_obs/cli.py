"""The ``alchemy-obs`` command line.

Each sub-command lives in the module of the stage it drives and exposes two functions,
``add_arguments(parser)`` and ``run(args, config) -> int``. Modules are imported only when
their command runs, so ``alchemy-obs synth`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from tqdm import tqdm

from alchemy_obs import __version__
from alchemy_obs.config import ConfigError, load_config
from alchemy_obs.errors import AlchemyObsError

# name -> (module, one-line help shown by ``alchemy-obs --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("alchemy_obs.sim.cli", "write synthetic galaxies in the IllustrisTNG cutout layout"),
    "tng": ("alchemy_obs.sim.tng_cli", "search IllustrisTNG subhaloes and download cutouts"),
    "maps": ("alchemy_obs.maps.cli", "project galaxies into the paired-map HDF5 dataset"),
    "mock": ("alchemy_obs.observe.cli", "SKA-MID mock HI and continuum observations (FITS or dataset)"),
    "infer": ("alchemy_obs.infer.cli", "turn real FITS cubes and images into physical maps"),
    "demo": ("alchemy_obs.demo", "run the whole pipeline on built-in synthetic galaxies"),
    "train": ("alchemy_obs.translate.cli", "train a map-to-map translator (pix2pix, DDPM, InDI, score SDE; U-Net or DiM)"),
    "evaluate": ("alchemy_obs.translate.evaluate", "score a trained translator and plot its maps"),
    "dynamics-check": ("alchemy_obs.dynamics.cli", "check a predicted dark-matter map against the galaxy's rotation curve"),
    "models": ("alchemy_obs.infer.models_cli", "list the registered translators and their held-out errors"),
    "config": ("alchemy_obs.config_cli", "print the effective configuration (defaults, --config, --set)"),
}

# An override each command actually reads, for its --set help.
_SET_EXAMPLES = {"synth": "synth.n_galaxies=10", "tng": "tng.simulation=TNG50-1",
                 "maps": "maps.npix=256", "mock": "observe.noise=false",
                 "infer": "infer.samples=8", "demo": "synth.n_galaxies=10",
                 "train": "train.steps=2000", "evaluate": "seed=1", "dynamics-check": "dynamics.ml_bulge=0.6", "models": "infer.registry=my.yaml",
                 "config": "observe.imaging.weighting=natural"}

log = logging.getLogger("alchemy_obs")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported to add its options."""
    parser = argparse.ArgumentParser(
        prog="alchemy-obs",
        description=(
            "Paired IllustrisTNG galaxy maps, SKA-MID mock observations, and generative "
            "models that translate between them."
        ),
    )
    parser.add_argument("--version", action="version", version=f"alchemy-obs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--config", metavar="YAML", default=None,
            help="configuration file (see configs/); defaults are used without one",
        )
        p.add_argument(
            "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
            help=f"override one configuration value, e.g. --set {_SET_EXAMPLES.get(name, 'seed=1')} "
                 "(repeatable; a list is written [a,b])",
        )
        loud = p.add_mutually_exclusive_group()
        loud.add_argument("-v", "--verbose", action="store_true",
                          help="log alchemy-obs debugging detail, and show tracebacks of errors")
        loud.add_argument("-q", "--quiet", action="store_true",
                          help="log warnings and errors only")
        p.add_argument("--log-file", metavar="PATH", default=None,
                       help="also write the log (with debugging detail) to PATH")
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def _one_line(exc: BaseException) -> str:
    """The message of an error as one line: the file first for file-system errors."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ConsoleHandler(logging.StreamHandler):
    """Log lines go through ``tqdm.write``: they print above the progress bars, not through them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 -- logging must never raise
            self.handleError(record)


def _configure_logging(verbose: bool, quiet: bool, log_file: str | None) -> None:
    """Third-party libraries log at WARNING and above; only the package's loggers say more.

    Progress bars (``tqdm(disable=None)``) are drawn only when stderr is a terminal: in a
    file or a batch system's log their carriage-return updates would be thousands of lines.
    """
    console = _ConsoleHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(to_file)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_alchemy_obs", False)]:
        root.removeHandler(old)  # a second main() in one process (tests, notebooks)
        old.close()
    for handler in handlers:
        handler._alchemy_obs = True
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("alchemy_obs", "flows"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose or log_file else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``alchemy-obs`` console script; returns the exit status.

    Exit status: 0 on success, 1 when some items of a batch failed (each reported on its
    own line), 2 when the command cannot run at all (bad option or configuration, a missing
    or unusable file: one line ``alchemy-obs COMMAND: problem`` on stderr, with the
    traceback only under ``-v``), 130 when interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if a in COMMANDS), None))
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet, args.log_file)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"alchemy-obs {args.command}: {line}", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args, config) or 0)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (AlchemyObsError, OSError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"alchemy-obs {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
