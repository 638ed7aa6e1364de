"""``alchemy-obs synth``: write synthetic galaxies as IllustrisTNG-layout cutout files."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from alchemy_obs.config import Config

log = logging.getLogger(__name__)

#: Galaxies written for ``--population-check`` unless ``--n-galaxies`` says otherwise.
POPULATION_GALAXIES = 100

DESCRIPTION = """\
Write synthetic disc galaxies as HDF5 files in the IllustrisTNG cutout layout
(Header + PartType0/1/4/5, code units ckpc/h, 1e10 Msun/h, km sqrt(a)/s), one file
cutout_<i>.hdf5 per galaxy. Each galaxy has an NFW dark halo with subhaloes, an
exponential stellar disc and bulge, a gas disc with spiral arms and a hot halo,
Kennicutt-Schmidt star formation, a magnetic field and sometimes a merging companion;
halo mass, size, gas fraction and inclination differ from galaxy to galaxy. Galaxy i is
reproducible from (seed, i). Files already complete are kept, so an interrupted run
resumes. Defaults come from the 'synth' section of the configuration.

--population-check PNG measures every written galaxy from its particles (M200, stellar
mass, HI mass and diameter, SFR, V_flat, gas metallicity), prints the median offset from
six observed scaling relations per mass bin (Moster+13, Wang+16, xGASS, Speagle+14,
Lelli+19, Curti+20) against their scatter, and plots the galaxies over the relations.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``alchemy-obs synth`` (each overrides the ``synth`` config section)."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: synth.out_dir, 'synthetic')")
    parser.add_argument("--n-galaxies", type=int, default=None, metavar="N",
                        help="number of galaxies to write (default: synth.n_galaxies)")
    parser.add_argument("--n-particles", type=int, default=None, metavar="N",
                        help="approximate particles per galaxy, all types together, "
                             "1e3 to 5e6 (default: synth.n_particles)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed; galaxy i uses the stream (seed, i) (default: synth.seed)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="also draw face-on gas/star/dark-matter maps of all galaxies into PNG")
    parser.add_argument("--population-check", type=Path, default=None, metavar="PNG",
                        help="also compare the galaxies with observed scaling relations: print "
                             "the median offsets per mass bin and plot them into PNG "
                             f"(--n-galaxies then defaults to {POPULATION_GALAXIES})")


def run(args: argparse.Namespace, config: Config) -> int:
    """Write the cutouts; returns 0 on success."""
    from alchemy_obs.cli_checks import check_output_file, check_output_folder
    from alchemy_obs.sim.synthetic import write_synthetic_cutouts

    # Checked before the galaxies are made, not after minutes of work.
    if args.out is not None:
        check_output_folder(args.out, "--out")
    if args.plot is not None:
        check_output_file(args.plot, "--plot")

    options = {"out_dir": "--out", "n_galaxies": "--n-galaxies", "n_particles": "--n-particles", "seed": "--seed"}
    update = {key: getattr(args, opt[2:].replace("-", "_")) for key, opt in options.items()}
    update = {key: value for key, value in update.items() if value is not None}
    if args.population_check is not None:
        update.setdefault("n_galaxies", POPULATION_GALAXIES)
    try:
        synth = config.synth.model_validate({**config.synth.model_dump(), **update})
    except ValidationError as exc:
        for err in exc.errors():
            option = options.get(str(err["loc"][0]), str(err["loc"][0]))
            print(f"alchemy-obs synth: {option}: {err['msg']}", file=sys.stderr)
        return 2
    paths = write_synthetic_cutouts(synth)
    log.info("%d synthetic cutouts in %s", len(paths), Path(synth.out_dir).resolve())
    if args.plot is not None:
        from alchemy_obs.sim.plots import plot_particles

        log.info("particle maps: %s", plot_particles(paths, args.plot))
    if args.population_check is not None:
        from alchemy_obs.sim import population

        props = population.measure_cutouts(paths)
        checks = population.check_population(props)
        print(population.format_checks(checks))
        outside = sum(not c.inside for c in checks)
        log.info("%d of %d bins outside the observed scatter; figure: %s", outside, len(checks),
                 population.plot_population(props, args.population_check, checks))
    return 0
