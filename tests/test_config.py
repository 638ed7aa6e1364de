"""configs/pipeline.yaml and the configuration loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alchemy_obs.config import Config, ConfigError, load_config
from alchemy_obs.shipped import CONFIGS

PIPELINE = CONFIGS / "pipeline.yaml"


def test_pipeline_yaml_validates_and_mirrors_defaults():
    loaded = load_config(PIPELINE)
    sections = yaml.safe_load(PIPELINE.read_text())
    assert "synth" in sections
    defaults = Config()
    for key in sections:
        assert getattr(loaded, key) == getattr(defaults, key), f"configs/pipeline.yaml: {key} != defaults"


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("synth:\n  n_galaxy: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'synth\.n_galaxy'"):
        load_config(path)


def test_invalid_value_names_key_and_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("synth:\n  n_particles: 10\n")
    with pytest.raises(ConfigError, match=r"small\.yaml.*synth\.n_particles"):
        load_config(path)


def test_overrides_apply_on_top_of_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("synth:\n  n_galaxies: 3\n  seed: 1\n")
    cfg = load_config(path, ["synth.seed=9", "synth.out_dir=/tmp/x"])
    assert (cfg.synth.n_galaxies, cfg.synth.seed, str(cfg.synth.out_dir)) == (3, 9, "/tmp/x")
    with pytest.raises(ConfigError, match="unknown key 'synth.nope'"):
        load_config(path, ["synth.nope=1"])


def test_every_setting_is_documented():
    """The configuration reference is built from these descriptions: none may be missing."""
    from alchemy_obs.config import config_fields

    keys = [key for key, _, _ in config_fields()]
    assert len(keys) > 150 and "observe.imaging.weighting" in keys
    assert "observe.telescope.dishes.<name>.sefd_jy" in keys or any(
        k.startswith("observe.telescope.dishes.<name>.") for k in keys)
    missing = [key for key, field, _ in config_fields() if not (field.description or "").strip()]
    assert not missing, f"settings without a description: {missing}"


def test_config_command_prints_valid_yaml(capsys):
    import yaml

    from alchemy_obs.cli import main

    assert main(["config", "--set", "maps.npix=96", "--set", "tng.api_key=SECRET123"]) == 0
    out = capsys.readouterr().out
    assert "SECRET123" not in out
    tree = yaml.safe_load(out)
    assert tree["maps"]["npix"] == 96
    from alchemy_obs.config import Config

    Config.model_validate({k: v for k, v in tree.items() if k != "tng"})
