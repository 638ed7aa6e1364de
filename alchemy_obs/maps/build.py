"""Building a dataset: galaxy sources -> one shard per galaxy -> the joined ``dataset.h5``.

A :class:`GalaxySource` names a galaxy and knows how to load it. :func:`build_shard` renders
the views a galaxy's shard still lacks and rewrites the shard atomically; a rerun therefore
skips finished galaxies and finished views without loading their particles.
:func:`build_dataset` runs it over many sources (in parallel processes if asked), reports
failures without stopping, and joins the shards.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import astropy.units as u
import numpy as np

from alchemy_obs.campaign import CampaignReport, Submit, run_campaign
from alchemy_obs.config import MapsConfig, SynthConfig, TNGConfig, config_hash
from alchemy_obs.maps.geometry import galaxy_views
from alchemy_obs.maps.render import cosmology_json, render_views
from alchemy_obs.maps.store import (
    META_COLUMNS,
    MapStore,
    join_shards,
    read_shard,
    shard_path,
    shard_views,
    write_shard,
)
from alchemy_obs.sim.galaxy import Galaxy

__all__ = ["GalaxySource", "BuildReport", "maps_hash", "view_names", "build_shard",
           "build_dataset", "SOURCES", "galaxy_sources", "cutout_sources", "tng_sources",
           "snapshot_sources"]

log = logging.getLogger(__name__)

# MapsConfig fields that change the values of a view's maps; the others (which views, splits,
# compression, output folder) do not invalidate shards already written.
_VALUE_FIELDS = (
    "npix", "fov_hi_fraction", "fov_stellar_r_half", "pixel_kpc", "slab_kpc", "kernel", "seed",
    "gas_hsml_factor", "knn_neighbours", "star_neighbours", "sf_temperature", "uvb", "kmt_column",
)


@dataclass(frozen=True)
class GalaxySource:
    """A galaxy to map: its dataset id, a label for messages and a picklable loader.

    Attributes
    ----------
    galaxy_id : int
        Id in the dataset (the subhalo id where there is one); names the shard.
    label : str
        Where it comes from (a file path, ``"TNG50-1 snapshot 99 subhalo 123"``).
    load : callable
        ``load() -> Galaxy``; must be picklable (a module-level function or a
        :func:`functools.partial` of one) for parallel builds.
    """

    galaxy_id: int
    label: str
    load: Callable[[], Galaxy]


@dataclass
class BuildReport(CampaignReport):
    """What :func:`build_dataset` did, with the views of each split of the joined dataset."""

    split_counts: dict[str, int] = field(default_factory=dict)


def maps_hash(config: MapsConfig) -> str:
    """Hash of the settings that change map values (stored as ``config_hash``).

    The other fields are reset to their defaults before hashing, so that asking for more
    views or another output folder keeps the shards already written valid.
    """
    return config_hash(MapsConfig(**config.model_dump(include=set(_VALUE_FIELDS))))


def view_names(config: MapsConfig) -> list[str]:
    """Names of the views configured for every galaxy, in shard order."""
    names = [f"random{k}" for k in range(config.n_random_views)]
    return names + ["faceon"] * config.face_on + ["edgeon"] * config.edge_on


def _galaxy_meta(galaxy: Galaxy, galaxy_id: int) -> dict:
    return {
        "galaxy_id": galaxy_id,
        "subhalo_id": -1 if galaxy.subhalo_id is None else galaxy.subhalo_id,
        "snapshot": -1 if galaxy.snapshot is None else galaxy.snapshot,
        "redshift": galaxy.redshift,
    }


def build_shard(source: GalaxySource, out_dir: str | os.PathLike, config: MapsConfig) -> bool:
    """Render the views missing from one galaxy's shard and (re)write it atomically.

    Parameters
    ----------
    source : GalaxySource
    out_dir : path-like
        Dataset folder; the shard is ``out_dir/shards/galaxy_<id>.h5``.
    config : MapsConfig

    Returns
    -------
    bool
        True if the shard was written, False if it already held every view.
    """
    path = shard_path(out_dir, source.galaxy_id)
    chash = maps_hash(config)
    wanted = view_names(config)
    if not wanted:
        raise ValueError("no views configured (n_random_views=0, face_on and edge_on false)")
    have = shard_views(path, chash, config.domains)
    if have is not None and set(wanted) <= set(have):
        return False
    galaxy = source.load()
    needs_axis = config.face_on or config.edge_on
    views = galaxy_views(
        galaxy.stellar_angular_momentum() if needs_axis else None, source.galaxy_id,
        n_random=config.n_random_views, face_on=config.face_on, edge_on=config.edge_on,
        seed=config.seed,
    )
    old_maps, old_meta = {}, {}
    if have:
        old_maps, old_meta, _ = read_shard(path)
        dropped = [d for d in old_maps if d not in config.domains]
        if dropped:
            # New views cannot carry domains added later (mock observations): rerun those.
            log.warning("%s: gains views; domains %s are dropped and must be written again",
                        path, dropped)
    keep = [i for i, v in enumerate(have or []) if v in wanted]
    todo = [v for v in views if v.name not in set(have or [])]
    rendered = render_views(galaxy, todo, config)

    rows = [dict(_galaxy_meta(galaxy, source.galaxy_id), **meta) for _, meta in rendered]
    meta, maps = {}, {}
    for col in META_COLUMNS:
        new = np.array([row[col] for row in rows])
        if keep:
            old = old_meta[col][keep]
            new = np.concatenate([old.astype(str) if old.dtype.kind == "S" else old, new])
        meta[col] = new
    for d in config.domains:
        new = u.Quantity([m[d] for m, _ in rendered])
        maps[d] = np.concatenate([old_maps[d][keep].to(new.unit), new]) if keep else new
    write_shard(path, maps, meta, config_hash=chash, cosmology=cosmology_json(galaxy),
                compression=config.compression)
    return True


def _init_worker(threads: int) -> None:
    import numba

    numba.set_num_threads(threads)


def build_dataset(
    sources: Sequence[GalaxySource],
    out_dir: str | os.PathLike,
    config: MapsConfig,
    *,
    workers: int = 1,
    submit: Submit | None = None,
    progress: bool = True,
) -> BuildReport:
    """Build (or complete) the dataset of ``sources`` in ``out_dir``.

    A galaxy that fails (unreadable file, missing field, ...) is logged with its label and
    skipped; the others go on. The shards of all galaxies that succeeded are joined into
    ``out_dir/dataset.h5``.

    Parameters
    ----------
    sources : sequence of GalaxySource
        Galaxies; their ids must be unique.
    out_dir : path-like
    config : MapsConfig
    workers : int
        Processes rendering shards in parallel (1: in this process).
    submit : callable, optional
        Runs each galaxy's :func:`build_shard` instead (a Prefect task's ``submit``, see
        :func:`~alchemy_obs.campaign.run_campaign`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    BuildReport
    """
    out_dir = Path(out_dir)
    ids = [s.galaxy_id for s in sources]
    dupes = sorted({g for g in ids if ids.count(g) > 1})
    if dupes:
        raise ValueError(f"galaxy ids {dupes} occur more than once in the inputs "
                         "(same subhalo id from two snapshots?)")
    # The cores are shared out between the workers' projection threads.
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    report = run_campaign(
        sources, partial(build_shard, out_dir=out_dir, config=config), report=BuildReport(),
        workers=workers, initializer=_init_worker, initargs=(threads,), submit=submit,
        desc="maps", progress=progress,
    )
    if report.done:
        report.dataset = join_shards(
            [shard_path(out_dir, g) for g in report.done], out_dir / "dataset.h5",
            split_fractions=config.split_fractions, split_seed=config.split_seed,
        )
        store = MapStore(report.dataset)
        report.split_counts = {s: len(store.indices(s)) for s in ("train", "val", "test")}
    return report


def _load_cutout(path: Path) -> Galaxy:
    from alchemy_obs.sim.galaxy import load_galaxy

    # A subhalo document saved beside the cutout (web API or `tng snapshot`) gives the
    # catalogue centre and snapshot; without it the galaxy is centred by shrinking spheres.
    doc = path.with_suffix(".json")
    if doc.is_file():
        info = json.loads(doc.read_text())
        pos = [float(info["pos_x"]), float(info["pos_y"]), float(info["pos_z"])]
        snap = info.get("snap")
        return load_galaxy(path, subhalo_pos=pos, snapshot=None if snap is None else int(snap))
    return load_galaxy(path)


def _load_tng(tng_config, subhalo_id: int, snapshot: int | None) -> Galaxy:
    from alchemy_obs.sim.tng import TNGClient

    galaxy = TNGClient(tng_config).load_galaxy(subhalo_id, snapshot)
    galaxy.snapshot = tng_config.snapshot if snapshot is None else snapshot
    return galaxy


def _load_snapshot(folder: Path, snapshot: int, subhalo_id: int) -> Galaxy:
    from alchemy_obs.sim.snapshot import load_subhalo

    return load_subhalo(folder, snapshot, subhalo_id)


def cutout_sources(paths: Sequence[str | os.PathLike]) -> list[GalaxySource]:
    """Sources for TNG-layout cutout files; the id is the ``<id>`` of ``cutout_<id>.hdf5``.

    Files not named that way are numbered by their position in ``paths``.
    """
    sources = []
    for k, p in enumerate(map(Path, paths)):
        stem = p.stem.removeprefix("cutout_")
        gid = int(stem) if p.stem.startswith("cutout_") and stem.isdigit() else k
        sources.append(GalaxySource(gid, str(p), partial(_load_cutout, p)))
    return sources


def tng_sources(tng_config, ids: Sequence[int], snapshot: int | None = None) -> list[GalaxySource]:
    """Sources for subhaloes fetched through the TNG web API (cached cutouts are reused)."""
    snap = tng_config.snapshot if snapshot is None else snapshot
    return [
        GalaxySource(int(i), f"{tng_config.simulation} snapshot {snap} subhalo {i}",
                     partial(_load_tng, tng_config, int(i), snap))
        for i in ids
    ]


def snapshot_sources(
    folder: str | os.PathLike, snapshot: int, ids: Sequence[int]
) -> list[GalaxySource]:
    """Sources for subhaloes read from a local simulation output folder."""
    return [
        GalaxySource(int(i), f"{folder} snapshot {snapshot} subhalo {i}",
                     partial(_load_snapshot, Path(folder), snapshot, int(i)))
        for i in ids
    ]


#: Where galaxies come from (:func:`galaxy_sources`).
SOURCES = ("synthetic", "cutouts", "tng", "snapshot")


def galaxy_sources(
    source: str, *, inputs: Sequence[str | os.PathLike] | None = None,
    ids: Sequence[int] | None = None, synth: SynthConfig, tng: TNGConfig,
) -> list[GalaxySource]:
    """The galaxies of a campaign, as ``alchemy-obs maps --source`` and the flows choose them.

    Parameters
    ----------
    source : {"synthetic", "cutouts", "tng", "snapshot"}
        Synthetic galaxies (written first, or kept where already complete), TNG-layout
        cutout files, subhaloes through the TNG web API, or subhaloes of a local snapshot
        (``tng.snapshot_dir``).
    inputs : sequence of path-like, optional
        ``cutouts``: cutout files, or folders of ``*.hdf5`` cutouts.
    ids : sequence of int, optional
        ``tng`` and ``snapshot``: subhalo ids.
    synth, tng : SynthConfig, TNGConfig
        The synthetic galaxies; the simulation, snapshot and API settings.

    Returns
    -------
    list of GalaxySource
    """
    if source == "synthetic":
        from alchemy_obs.sim.synthetic import write_synthetic_cutouts

        return cutout_sources(write_synthetic_cutouts(synth))
    if source == "cutouts":
        paths = []
        for p in map(Path, inputs or []):
            paths.extend(sorted(p.glob("*.hdf5")) if p.is_dir() else [p])
        if not paths:
            raise ValueError(f"{', '.join(map(str, inputs or [])) or 'no inputs'}: "
                             "no *.hdf5 cutout files")
        return cutout_sources(paths)
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: use {', '.join(SOURCES)}")
    if not ids:
        raise ValueError(f"--source {source} needs --ids")
    if source == "tng":
        return tng_sources(tng, ids)
    if tng.snapshot_dir is None:
        raise ValueError("--source snapshot needs tng.snapshot_dir (--set tng.snapshot_dir=...)")
    return snapshot_sources(tng.snapshot_dir, tng.snapshot, ids)
