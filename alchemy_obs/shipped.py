"""Files shipped with the package: configurations, models, Prefect deployments.

In the source tree they are the top-level folders ``configs/``, ``models/`` and ``flows/``;
``pip install .`` installs them inside the package (``alchemy_obs/configs``,
``alchemy_obs/models``, ``alchemy_obs/flows``; see ``[tool.setuptools.package-dir]`` in
``pyproject.toml``). An editable install and a source checkout read them where they are. So
they are found the same way from any working directory, installed either way.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_DIR", "CONFIGS", "MODELS", "PREFECT_YAML", "config_path"]

#: The folder of the imported ``alchemy_obs`` package.
PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    """``name`` inside an installed package, else beside the package in the source tree."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


#: Shipped YAML configurations (``configs/...`` on the command line, see :func:`config_path`).
CONFIGS = _shipped("configs")
#: Shipped translators and their ``registry.yaml``.
MODELS = _shipped("models")
#: Prefect deployments of the flows (``prefect deploy --prefect-file``).
PREFECT_YAML = _shipped("flows") / "prefect.yaml"


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
