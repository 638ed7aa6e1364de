"""Build the released model set and the results table of the training docs, from scratch.

HI column density seen by a mock SKA-MID (``hi_nhi``) -> dark matter, stars, gas,
temperature and magnetic field, on synthetic galaxies through the same path as the demo: ``alchemy-obs synth`` -> ``maps`` -> ``mock
--dataset``, with ``configs/experiments/model_set.yaml``. Every method of the table
(pix2pix, DDPM with DDIM sampling, InDI, the score SDE and DiM) is trained on the same views
and scored on the same held-out galaxies, next to the mean-map and per-pixel regression
baselines. The released model of each target is its best run on the validation galaxies,
among the table's methods and the lever runs that read the same input (the test galaxies
only score it).

Usage (from anywhere; intermediate files go to ``build/model_set/`` of the repository)::

    python models/build_model_set.py data                 # 60 galaxies x 6 views, ~4 CPU-min
    python models/build_model_set.py train [--targets dm ...] [--methods pix2pix ...]
    python models/build_model_set.py score                # held-out metrics of every run
    python models/build_model_set.py train --levers       # one change at a time
    python models/build_model_set.py score --levers
    python models/build_model_set.py publish              # models/hi2<target>, registry
    python models/build_model_set.py table                # docs/_static/model_set/*.csv
    python models/build_model_set.py all                  # all of these, levers included

Every stage resumes: cutouts, shards, mock domains, checkpoints and scores already made are
kept. ``--device cuda`` trains on a GPU (the configurations are the CPU ones). The table's
CPU-minutes are the training processes' user + system time (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/experiments/model_set.yaml"
BUILD = ROOT / "build" / "model_set"
STORE = BUILD / "maps" / "dataset.h5"
TABLE = ROOT / "docs" / "_static" / "model_set"

#: Inputs of each target. Every released model reads the mock HI alone, the one input that
#: ``alchemy-obs infer`` takes from a real cube; ``LEVERS`` measures what the 1.4 GHz
#: continuum adds for the gas phases.
TARGETS: dict[str, list[str]] = {t: ["hi_nhi"] for t in ("dm", "stars", "gas", "temperature",
                                                         "bfield")}

#: Overrides of the configuration's ``train`` section per method. Every method uses the
#: same small U-Net (DiM its Mamba), the same batch and 1000 optimiser steps; the diffusion
#: methods get the sampler settings of their own demo configurations.
METHODS: dict[str, list[str]] = {
    "pix2pix": [],
    "ddpm": ["train.method.name=ddpm", "train.method.ddpm.sampler=ddim",
             "train.method.ddpm.sample_steps=50", "train.method.ddpm.prediction=v",
             "train.optim.betas=[0.9,0.999]", "train.optim.ema_decay=0.995", "train.steps=1000",
             "train.optim.lr=0.0005"],
    "indi": ["train.method.name=indi", "train.method.indi.sample_steps=10",
             "train.optim.betas=[0.9,0.999]", "train.optim.ema_decay=0.995", "train.steps=1000",
             "train.optim.lr=0.0005"],
    "sde": ["train.method.name=sde", "train.method.sde.sample_steps=100",
            "train.optim.betas=[0.9,0.999]", "train.optim.ema_decay=0.995", "train.steps=1000",
            "train.optim.lr=0.0005"],
    # DiM is the slowest on a CPU (0.8 steps/s with 4x4 patches): 8x8 patches (64 tokens)
    # keep it within the hour of its five targets.
    "dim": ["train.network.kind=dim", "train.network.dim.patch_size=8",
            "train.network.dim.dim=64", "train.network.dim.depth=4",
            "train.method.name=ddpm", "train.method.ddpm.sampler=ddim",
            "train.method.ddpm.sample_steps=50", "train.method.ddpm.prediction=v",
            "train.method.ddpm.schedule=linear",
            "train.optim.betas=[0.9,0.999]", "train.optim.ema_decay=0.995", "train.steps=1000",
            "train.optim.lr=0.0005"],
}


def cli(*args: str) -> None:
    """Run ``alchemy-obs`` with this interpreter, one thread, from the repository root."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run([sys.executable, "-m", "alchemy_obs.cli", *args], cwd=ROOT, env=env,
                   check=True)


@dataclass(frozen=True)
class Run:
    """One training run: a cell of the results table, or a lever measured against one."""

    target: str
    method: str
    inputs: tuple[str, ...] = ("hi_nhi",)
    extra: tuple[str, ...] = ()
    lever: str = ""

    @property
    def name(self) -> str:
        return f"{self.method}_{self.target}" + (f"_{self.lever}" if self.lever else "")

    @property
    def out(self) -> Path:
        return BUILD / "runs" / self.name

    def overrides(self, device: str) -> list[str]:
        # out_dir relative to the repository, cli's working directory: no local path in cards
        sets = [f"train.data.target={self.target}", f"train.data.inputs=[{','.join(self.inputs)}]",
                f"train.out_dir={self.out.relative_to(ROOT)}", f"device={device}",
                *METHODS[self.method], *self.extra]
        return [arg for s in sets for arg in ("--set", s)]


TABLE_RUNS = [Run(t, m, tuple(i)) for m in METHODS for t, i in TARGETS.items()]

#: What single changes to the released pix2pix recipe buy (docs/training.rst, "Levers").
LEVERS = [
    Run("dm", "pix2pix", extra=("train.steps=3000",), lever="3000steps"),
    Run("dm", "pix2pix", extra=("train.data.augment=false",), lever="noaugment"),
    Run("dm", "pix2pix", extra=("train.network.base_channels=16",), lever="width16"),
    Run("gas", "pix2pix", inputs=("hi_nhi", "continuum"), lever="continuum"),
]


def stage_data() -> None:
    cli("synth", "--config", CONFIG)
    cli("maps", "--config", CONFIG, "--input", str(BUILD / "synthetic"))
    cli("mock", "--config", CONFIG, "--dataset", str(BUILD / "maps"),
        "--input", str(BUILD / "synthetic"))


def stage_train(runs: list[Run], device: str) -> None:
    """Train (or resume) each run; record its CPU time beside the model."""
    for run in runs:
        if (run.out / "model" / "card.json").is_file():
            continue
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli("train", "--config", CONFIG, "--no-progress", *run.overrides(device))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        # A resumed run adds the time of this process to what earlier ones recorded.
        log = run.out / "cpu_seconds.json"
        spent = json.loads(log.read_text())["cpu_s"] if log.is_file() else 0.0
        log.write_text(json.dumps({"cpu_s": spent + cpu}))


def _count_calls(method) -> list[int]:
    """Count forward passes of the method's denoiser / generator (its network evaluations)."""
    calls = [0]
    net = method.nets[next(iter(method.nets))]

    def hook(*_):
        calls[0] += 1

    net.register_forward_hook(hook)
    return calls


def score_run(run: Run) -> dict:
    """Held-out (test) and validation metrics of one run, with its cost."""
    import torch

    from alchemy_obs.translate.checkpoint import load_model
    from alchemy_obs.translate.evaluate import evaluate_method
    from alchemy_obs.translate.normalise import Normalisation

    method, card = load_model(run.out / "model", device="cpu")
    norm = Normalisation.from_dict(card["normalisation"])
    calls = _count_calls(method)
    with torch.no_grad():
        method.sample(torch.zeros(1, len(card["inputs"]), card["npix"], card["npix"]))
    nfe = calls[0]
    scores = {split: evaluate_method(method, STORE, card["inputs"], target=run.target,
                                     normalisation=norm, split=split)["summary"]
              for split in ("val", "test")}
    cpu = json.loads((run.out / "cpu_seconds.json").read_text())["cpu_s"]
    return {"target": run.target, "method": run.method, "lever": run.lever, "inputs": card["inputs"],
            "steps": card["step"], "train_cpu_min": cpu / 60, "nfe_per_map": nfe, **scores}


def baseline_scores(target: str) -> dict:
    import torch

    from alchemy_obs.translate import metrics
    from alchemy_obs.translate.data import PairedMapDataset
    from alchemy_obs.translate.evaluate import Baselines

    inputs = TARGETS[target]
    train = PairedMapDataset(STORE, inputs, target, split="train")  # the trainer's normalisation
    norm, fitted = train.normalisation, Baselines.fit(train)
    out = {}
    for split in ("val", "test"):
        ds = PairedMapDataset(STORE, inputs, target, split=split, normalisation=norm)
        truth = torch.stack([torch.as_tensor(ds.physical(i)[target]) for i in range(len(ds))])
        out[split] = {name: metrics.summarise(pred, truth)
                      for name, pred in fitted.predict(ds).items()}
    return out


def stage_score(runs: list[Run]) -> dict:
    path = BUILD / "scores.json"
    scores = json.loads(path.read_text()) if path.is_file() else {"runs": {}, "baselines": {}}
    for run in runs:
        if run.target not in scores["baselines"]:
            scores["baselines"][run.target] = baseline_scores(run.target)
        if (run.out / "model" / "card.json").is_file() and run.name not in scores["runs"]:
            scores["runs"][run.name] = score_run(run)
            print(run.name, json.dumps(scores["runs"][run.name]["test"]), flush=True)
        path.write_text(json.dumps(scores, indent=1))
    return scores


TEST_VIEWS = "model_set_test_views"


def _beam_kpc() -> float:
    """Restoring beam (FWHM, kpc) of the training mocks, from one written with the same set-up."""
    from astropy import units as u
    from astropy.io import fits

    from alchemy_obs.config import load_config

    mocks = BUILD / "mocks"
    fits_file = mocks / "cutout_0_faceon_hi_mom0.fits"
    if not fits_file.is_file():
        cli("mock", "--config", CONFIG, "--galaxy", str(BUILD / "synthetic" / "cutout_0.hdf5"),
            "--view", "faceon", "--out", str(mocks), "--overwrite")
    distance = load_config(ROOT / CONFIG).mock.distance_mpc * u.Mpc
    return float((fits.getheader(fits_file)["BMAJ"] * u.deg).to_value(u.rad)
                 * distance.to_value(u.kpc))


def _write_test_views(models: Path, galaxies: list[int]) -> Path:
    """The held-out galaxies' views (the HI input and every target), shared by the set."""
    from alchemy_obs.maps.store import join_shards, read_shard, shard_path, write_shard

    folder = models / TEST_VIEWS
    domains = sorted({d for inputs in TARGETS.values() for d in inputs} | set(TARGETS))
    shards = []
    for gid in galaxies:
        maps, meta, attrs = read_shard(shard_path(STORE.parent, gid))
        shards.append(write_shard(shard_path(folder, gid), {d: maps[d] for d in domains}, meta,
                                  config_hash=str(attrs["config_hash"]),
                                  cosmology=str(attrs["cosmology"])))
    join_shards(shards, folder / "dataset.h5", split_fractions={"test": 1.0})
    return folder


def _readme(name: str, card: dict, table: list[str]) -> str:
    td, target = card["training_data"], card["target"]
    nfe = card["nfe_per_map"]
    lines = [
        f"# {name}: HI -> {target}, trained on synthetic galaxies", "",
        card["description"], "",
        f"- method: {card['method']} ({nfe} network evaluation{'s' * (nfe != 1)} per map), "
        f"chosen among {', '.join(card['selection']['validation'])} by the validation galaxies' "
        "profile + mass error; weights `model.safetensors` (sha256 in `models/registry.yaml`)",
        f"- maps: {card['npix']}x{card['npix']} pixels of {card['pixel_kpc']:g} kpc; training "
        f"beam FWHM {card['beam_fwhm_kpc']:.3g} kpc (SKA-MID {td['mock']['telescope']}, "
        f"{td['mock']['mode']} mode, {td['mock']['distance_mpc']:g} Mpc)",
        f"- data: {td['n_galaxies']} synthetic galaxies (seed {td['synth_seed']}) x 6 views, "
        f"split by galaxy, views per split {td['views_per_split']}; the "
        f"{card['metrics']['n_maps']} test views of galaxies {td['test_galaxies']} ship in "
        f"`../{TEST_VIEWS}/`, the fitted baselines in `baselines.safetensors`",
        f"- training: {card['step']} steps, {card['train_cpu_min']:.1f} CPU-minutes (one thread)",
        "", "Held-out test galaxies (lower is better except SSIM):", "", *table, "",
        "Rebuild: `python models/build_model_set.py all` (configuration "
        "`configs/experiments/model_set.yaml`); the results of every method are in the "
        "training docs.", "",
    ]
    return "\n".join(lines)


def stage_publish(targets: list[str]) -> None:
    """Release each target's best run (by validation error) as ``models/hi2<target>``."""
    from safetensors.torch import save_file

    from alchemy_obs.config import load_config
    from alchemy_obs.infer.registry import register_model
    from alchemy_obs.maps.domains import DOMAINS
    from alchemy_obs.maps.store import MapStore
    from alchemy_obs.shipped import MODELS
    from alchemy_obs.translate.checkpoint import load_model, save_model
    from alchemy_obs.translate.data import PairedMapDataset
    from alchemy_obs.translate.evaluate import Baselines

    scores = json.loads((BUILD / "scores.json").read_text())
    cfg = load_config(ROOT / CONFIG)
    store = MapStore(STORE)
    test_galaxies = sorted({int(g) for g in store.meta["galaxy_id"][store.indices("test")]})
    beam = _beam_kpc()
    _write_test_views(MODELS, test_galaxies)
    for target in targets:
        # Candidates: every method of the table and every lever run that reads the released
        # input (the continuum lever does not: infer has only the HI cube). The validation
        # galaxies choose; the test galaxies only score the choice.
        runs = {k: r for k, r in scores["runs"].items() if r["target"] == target
                and r["inputs"] == TARGETS[target]}
        if not runs:
            continue
        best = min(runs.values(), key=lambda r: r["val"]["profile_abs_dex"] + r["val"]["mass_abs_dex"])
        recipe = best["method"] + (f" ({best['lever']})" if best["lever"] else "")
        name, folder = f"hi2{target}", MODELS / f"hi2{target}"
        method, card = load_model(Run(target, best["method"], lever=best["lever"]).out / "model",
                                  device="cpu")
        base = scores["baselines"][target]["test"]
        card.update(
            demonstration=True,
            description=(f"HI column density (SKA-MID mock) -> {DOMAINS[target].description}, "
                         f"{recipe} trained on synthetic galaxies (alchemy-obs synth), "
                         "not IllustrisTNG: check it on real galaxies before trusting it "
                         "(alchemy-obs dynamics-check)."),
            beam_fwhm_kpc=round(beam, 4), nfe_per_map=best["nfe_per_map"],
            train_cpu_min=round(best["train_cpu_min"], 2),
            selection={"rule": "smallest validation profile + mass error",
                       "validation": {run: {k: r["val"][k] for k in
                                            ("profile_abs_dex", "mass_abs_dex")}
                                      for run, r in runs.items()}},
            training_data={
                **card["training_data"],
                "store": f"{STORE.relative_to(ROOT)} (rebuilt by models/build_model_set.py)",
                "config": CONFIG, "source": "synthetic galaxies (alchemy-obs synth), not IllustrisTNG",
                "synth_seed": cfg.synth.seed, "n_galaxies": cfg.synth.n_galaxies,
                "views_per_split": {s: int(len(store.indices(s))) for s in ("train", "val", "test")},
                "test_galaxies": test_galaxies, "test_views": f"../{TEST_VIEWS}/dataset.h5",
                "field_kpc": cfg.maps.npix * cfg.maps.pixel_kpc,
                "mock": {"telescope": cfg.observe.telescope.array, "mode": cfg.observe.mode,
                         "distance_mpc": cfg.mock.distance_mpc,
                         "channel_width_kms": cfg.mock.channel_width_kms},
            },
            metrics={"split": "test", "n_maps": int(len(store.indices("test"))),
                     "n_galaxies": len(test_galaxies), "model": best["test"],
                     "baselines": {"mean_map": base["mean map"],
                                   "pixel_regression": base["pixel regression"]}},
        )
        save_model(folder, method, card)
        train = PairedMapDataset(STORE, card["inputs"], target, split="train")
        save_file({k: v.contiguous() for k, v in Baselines.fit(train).state_dict().items()},
                  str(folder / "baselines.safetensors"))
        entry = register_model(folder, name, MODELS / "registry.yaml", version="1",
                               description=card["description"], demonstration=True,
                               beam_fwhm_kpc=card["beam_fwhm_kpc"])
        rows = [(f"{recipe} (this model)", best["test"]),
                ("mean training map", base["mean map"]),
                ("per-pixel linear regression", base["pixel regression"])]
        table = ["| predictor | radial profile mean abs dex | map total abs dex | SSIM | power spectrum abs dex |",
                 "|---|---|---|---|---|"]
        table += [f"| {label} | {m['profile_abs_dex']:.3f} | {m['mass_abs_dex']:.3f} | "
                  f"{m['ssim']:.3f} | {m['power_abs_dex']:.3f} |" for label, m in rows]
        (folder / "README.md").write_text(_readme(name, card, table))
        print(f"{name}: {recipe}, sha256 {entry.sha256}")
        print("\n".join(table))


def stage_table() -> None:
    """The docs' results table: one row per target and predictor, held-out test galaxies."""
    scores = json.loads((BUILD / "scores.json").read_text())
    TABLE.mkdir(parents=True, exist_ok=True)
    header = ["target", "predictor", "profile (dex)", "mass (dex)", "SSIM", "power (dex)",
              "train CPU-min", "network evaluations per map"]
    rows = []
    for target in TARGETS:
        for method in METHODS:
            r = scores["runs"].get(f"{method}_{target}")
            if r is None:
                rows.append([target, method, *["not run"] * 6])
                continue
            t = r["test"]
            rows.append([target, method, f"{t['profile_abs_dex']:.3f}", f"{t['mass_abs_dex']:.3f}",
                         f"{t['ssim']:.3f}", f"{t['power_abs_dex']:.3f}",
                         f"{r['train_cpu_min']:.1f}", str(r["nfe_per_map"])])
        for label, key in (("mean map", "mean map"), ("pixel regression", "pixel regression")):
            b = scores["baselines"].get(target, {}).get("test", {}).get(key)
            if b is not None:
                rows.append([target, label, f"{b['profile_abs_dex']:.3f}",
                             f"{b['mass_abs_dex']:.3f}", f"{b['ssim']:.3f}",
                             f"{b['power_abs_dex']:.3f}", "0", "0"])
    levers = []
    for run in LEVERS:
        ref, r = scores["runs"].get(f"pix2pix_{run.target}"), scores["runs"].get(run.name)
        if ref is None or r is None:
            continue
        levers.append([run.target, run.lever, *(f"{x[k]:.3f}" for x in (ref["test"], r["test"])
                                                for k in ("profile_abs_dex", "mass_abs_dex")),
                       f"{r['train_cpu_min']:.1f}"])
    for name, table in (("results.csv", [header, *rows]),
                        ("levers.csv", [["target", "lever", "profile before (dex)",
                                         "mass before (dex)", "profile after (dex)",
                                         "mass after (dex)", "train CPU-min"], *levers])):
        with open(TABLE / name, "w", newline="") as f:
            csv.writer(f).writerows(table)
        print((TABLE / name).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["data", "train", "score", "publish", "table", "all"])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--levers", action="store_true",
                        help="train and score the lever runs instead of the table's")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    # ``all`` trains the levers too: they are candidates for release (stage_publish)
    pool = TABLE_RUNS + LEVERS if args.stage == "all" else LEVERS if args.levers else TABLE_RUNS
    runs = [r for r in pool if r.target in args.targets and r.method in args.methods]
    stages = ["data", "train", "score", "publish", "table"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "data":
            stage_data()
        elif stage == "train":
            stage_train(runs, args.device)
        elif stage == "score":
            stage_score(runs)
        elif stage == "publish":
            stage_publish(args.targets)
        elif stage == "table":
            stage_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
