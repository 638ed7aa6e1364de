"""``alchemy-obs models``: the registered translators, what they need and how well they do."""

from __future__ import annotations

import argparse

from alchemy_obs.config import Config

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=None, metavar="YAML",
                        help="registry file (default: infer.registry, the installed models)")


def _dex(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "-" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace, config: Config) -> int:
    """Print one row per registered model: name, method, inputs -> target, pixel, and the
    held-out profile / total-mass errors (dex) of the model and of its two baselines."""
    from alchemy_obs.infer.registry import load_registry, registry_file

    path = registry_file(args.registry or config.infer.registry)
    models = load_registry(path).models
    print(f"registry: {path.resolve()} ({len(models)} models)")
    if not models:
        return 0
    print(f"{'name':<18} {'method':<8} {'inputs -> target':<22} {'pixel':>9}  "
          f"{'profile / mass error, dex: model | regression | mean map':<56} note")
    for name, entry in models.items():
        m = entry.metrics.get("model", {})
        base = entry.metrics.get("baselines", {})
        reg, mean = base.get("pixel_regression", {}), base.get("mean_map", {})
        errors = (f"{_dex(m, 'profile_abs_dex')}/{_dex(m, 'mass_abs_dex')} | "
                  f"{_dex(reg, 'profile_abs_dex')}/{_dex(reg, 'mass_abs_dex')} | "
                  f"{_dex(mean, 'profile_abs_dex')}/{_dex(mean, 'mass_abs_dex')}")
        note = "demonstration: not a science result" if entry.demonstration else ""
        flow = f"{','.join(entry.inputs)} -> {entry.target}"
        print(f"{name:<18} {entry.method:<8} {flow:<22} {entry.pixel_kpc:>5.2f} kpc  "
              f"{errors:<56} {note}")
    return 0
