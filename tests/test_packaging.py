"""What a pip-installed package needs: shipped configs, models and flow deployments found
from the package itself, and declared as package data so that ``pip install .`` installs them.

``.ci/run`` checks the same on a real non-editable install from a clean copy of the repository
(``.ci/installed_package.sh``); these tests catch the cheap mistakes first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from alchemy_obs.config import ConfigError, load_config
from alchemy_obs.shipped import CONFIGS, MODELS, PACKAGE_DIR, PREFECT_YAML, config_path

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path("configs/flows/demo.yaml") == CONFIGS / "flows" / "demo.yaml"
    assert load_config("configs/flows/demo.yaml").synth.n_galaxies == 4  # the shipped file's value
    # A file of the same name in the working directory is the user's and wins.
    (tmp_path / "configs" / "flows").mkdir(parents=True)
    (tmp_path / "configs" / "flows" / "demo.yaml").write_text("synth: {n_galaxies: 7}\n")
    assert load_config("configs/flows/demo.yaml").synth.n_galaxies == 7
    # Only configs/<name> is looked up in the package; other missing paths stay errors.
    with pytest.raises(ConfigError, match="flows/demo.yaml: cannot read"):
        load_config("flows/demo.yaml")
    with pytest.raises(ConfigError, match="configs/nope.yaml: cannot read"):
        load_config("configs/nope.yaml")


def test_shipped_files_are_declared_package_data():
    """Every subpackage is listed, and every shipped config, model file and the Prefect
    deployments match a package-data pattern of pyproject.toml (else ``pip install .``
    silently leaves them out)."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = {name: REPO / folder for name, folder in setuptools["package-dir"].items()}
    source.setdefault("alchemy_obs", REPO / "alchemy_obs")
    subpackages = {".".join(p.parent.relative_to(REPO).parts)
                   for p in (REPO / "alchemy_obs").rglob("__init__.py")}
    assert subpackages | set(setuptools["package-dir"]) == set(setuptools["packages"])
    declared = {p for name, patterns in setuptools["package-data"].items()
                for pattern in patterns for p in source[name].glob(pattern) if p.is_file()}
    shipped = {p for folder in (CONFIGS, MODELS) for p in folder.rglob("*")
               if p.is_file() and p.suffix != ".pyc"}
    shipped.add(PREFECT_YAML)
    assert (MODELS / "registry.yaml") in shipped and (CONFIGS / "pipeline.yaml") in shipped
    assert not shipped - declared, f"not package data: {sorted(shipped - declared)}"


def test_prefect_yaml_entrypoints_are_module_paths_of_installed_flows(tmp_path, monkeypatch):
    """The shipped deployments name flows by module path (no source file needed) and
    configurations that resolve from any folder."""
    pytest.importorskip("prefect")
    from prefect.flows import Flow, load_flow_from_entrypoint

    monkeypatch.chdir(tmp_path)
    deployments = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    assert {d["name"] for d in deployments} == {"make-mocks", "train-translator"}
    for d in deployments:
        entrypoint = d["entrypoint"]
        assert ":" not in entrypoint and entrypoint.startswith("alchemy_obs.flows.")
        flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        assert isinstance(flow, Flow) and flow.name == d["name"]
        assert config_path(d["parameters"]["config"]).is_file()


def test_python_m_alchemy_obs_flows_prints_the_shipped_prefect_yaml():
    import subprocess

    pytest.importorskip("prefect")
    out = subprocess.run([sys.executable, "-m", "alchemy_obs.flows"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert Path(out.strip()) == PREFECT_YAML
