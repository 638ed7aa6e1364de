"""``pipeline``: maps, mocks, training and evaluation in one flow run.

    python -m alchemy_obs.flows.pipeline --config configs/flows/demo.yaml --experiment configs/experiments/indi_demo64.yaml
"""

from __future__ import annotations

import argparse

from prefect import flow

from alchemy_obs.maps.build import SOURCES
from alchemy_obs.flows.maps import build_maps
from alchemy_obs.flows.mocks import make_mocks
from alchemy_obs.flows.training import evaluate_translator, train_translator

__all__ = ["pipeline", "main"]


@flow(name="pipeline")
def pipeline(
    config: str | None = None,
    overrides: list[str] | None = None,
    experiment: str | None = None,
    experiment_overrides: list[str] | None = None,
    source: str = "synthetic",
    gpus: int = 0,
    inputs: list[str] | None = None,
    ids: list[int] | None = None,
) -> dict[str, str]:
    """Build the maps, add the mocks, train a translator and evaluate it.

    ``config`` drives the data stages, ``experiment`` the training (its ``train.store``
    should name the dataset the data stages write); ``source``, ``inputs`` and ``ids`` choose
    the galaxies as in :func:`alchemy_obs.flows.maps.build_maps`.
    """
    dataset = build_maps(config, overrides, source, inputs, ids)
    dataset = make_mocks(config, overrides, source, inputs, ids, build_missing_maps=False)
    result = {"dataset": dataset}
    if experiment:
        model = train_translator(experiment, experiment_overrides, gpus)
        result["model"] = model
        result["evaluation"] = evaluate_translator(model, experiment, experiment_overrides)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the alchemy-obs pipeline flow.")
    parser.add_argument("--config", help="data configuration (maps, mocks, flows)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--experiment", help="training configuration (configs/experiments/)")
    parser.add_argument("--experiment-set", dest="experiment_overrides", action="append",
                        default=[])
    parser.add_argument("--source", default="synthetic", choices=SOURCES)
    parser.add_argument("--inputs", nargs="*", default=None,
                        help="cutout files or folders (--source cutouts)")
    parser.add_argument("--ids", nargs="*", type=int, default=None,
                        help="subhalo ids (--source tng or snapshot)")
    parser.add_argument("--gpus", type=int, default=0)
    args = parser.parse_args(argv)
    print(pipeline(args.config, args.overrides, args.experiment, args.experiment_overrides,
                   args.source, args.gpus, args.inputs, args.ids))


if __name__ == "__main__":
    main()
