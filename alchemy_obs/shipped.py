"""Files shipped inside the installed package: configurations, models, Prefect deployments.

They live in the package folder itself (``alchemy_obs/configs``, ``alchemy_obs/models``,
``alchemy_obs/flows/prefect.yaml``) and are installed with it as package data, so they are
found the same way from a source checkout, an editable install (``pip install -e .``) and a
plain one (``pip install .``), from any working directory. Nothing here looks at the layout
of a repository.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_DIR", "CONFIGS", "MODELS", "PREFECT_YAML", "config_path"]

#: The folder of the imported ``alchemy_obs`` package.
PACKAGE_DIR = Path(__file__).resolve().parent
#: Shipped YAML configurations (``configs/...`` on the command line, see :func:`config_path`).
CONFIGS = PACKAGE_DIR / "configs"
#: Shipped translators and their ``registry.yaml``.
MODELS = PACKAGE_DIR / "models"
#: Prefect deployments of the flows (``prefect deploy --prefect-file``).
PREFECT_YAML = PACKAGE_DIR / "flows" / "prefect.yaml"


def config_path(path: str | os.PathLike) -> Path:
    """The configuration file a ``--config`` path names.

    A path that exists is used as given. A relative ``configs/<name>`` that does not exist
    in the working directory names the shipped configuration ``<name>``
    (:data:`CONFIGS`), so ``--config configs/flows/demo.yaml`` works from any directory of
    an installed package. Anything else is returned unchanged (and fails when read).

    Parameters
    ----------
    path : path-like
        As given by the user.

    Returns
    -------
    Path
    """
    given = Path(path)
    if given.exists() or given.is_absolute() or given.parts[:1] != ("configs",):
        return given
    shipped = CONFIGS.joinpath(*given.parts[1:])
    return shipped if shipped.is_file() else given
