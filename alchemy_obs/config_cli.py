"""``alchemy-obs config``: print the configuration a command would run with.

The defaults, overlaid by ``--config`` and every ``--set``, validated and printed as YAML
(secrets masked), so what a run will do can be read before it starts, and saved as a
starting point::

    alchemy-obs config --set maps.npix=256 > my_run.yaml
    alchemy-obs config --section observe.imaging
"""

from __future__ import annotations

import argparse

import yaml

from alchemy_obs.config import Config
from alchemy_obs.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[1].replace("\n", " ")
    parser.add_argument("--section", default=None, metavar="KEY",
                        help="print only this section, e.g. observe or observe.imaging")


def run(args: argparse.Namespace, config: Config) -> int:
    tree = config.model_dump(mode="json")
    if args.section:
        for part in args.section.split("."):
            if not isinstance(tree, dict) or part not in tree:
                raise UsageError(f"--section {args.section}: no such section")
            tree = tree[part]
        tree = {args.section: tree}
    print(yaml.safe_dump(tree, sort_keys=False, default_flow_style=False), end="")
    return 0
