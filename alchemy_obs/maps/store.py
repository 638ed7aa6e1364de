"""The HDF5 map dataset: per-galaxy shards, the joined virtual dataset, splits and a reader.

Layout (the same in a shard and in the joined ``dataset.h5``)::

    /maps/<domain>   float32 (n_views, npix, npix), chunks (1, npix, npix), lossless filter,
                     attribute ``units`` (astropy unit string)
    /meta/<column>   one entry per view (see META_COLUMNS); ``split`` only in the dataset
    attrs            npix, domains, code_version, config_hash, cosmology (JSON)

Each galaxy is written to its own shard ``shards/galaxy_<id>.h5`` by whichever process
renders it; a shard appears only complete, because it is written to a temporary file in the
same folder and moved into place with :func:`os.replace`. :func:`join_shards` then writes a
small ``dataset.h5`` whose ``/maps`` are HDF5 virtual datasets pointing at the shards by
*relative* path (no map data are copied, and the folder can be moved as a whole) and whose
``/meta`` holds the concatenated metadata with the train/val/test split of every view.
Splits are assigned per galaxy, so no galaxy is ever in two splits.

Empty pixels: surface densities are 0 where no kernel reaches (no mass there); averages
weighted by mass or volume are NaN where the weight is 0, because they are undefined there.
Consumers decide how to fill NaN (see :meth:`MapStore.read`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np

from alchemy_obs import __version__
from alchemy_obs.atomic import temporary_beside
from alchemy_obs.errors import AlchemyObsError

__all__ = [
    "SPLITS",
    "META_COLUMNS",
    "StoreError",
    "shard_path",
    "write_shard",
    "read_shard",
    "shard_views",
    "write_domain",
    "assign_splits",
    "join_shards",
    "MapStore",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")

# column -> (dtype, trailing shape); every column has one row per view.
META_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "galaxy_id": ("int64", ()),
    "subhalo_id": ("int64", ()),  # -1 where the source has none (synthetic galaxies)
    "snapshot": ("int32", ()),  # -1 where the source has none
    "redshift": ("float64", ()),
    "view": ("S16", ()),
    "rotation": ("float64", (3, 3)),  # x_view = rotation @ x_sim
    "pixel_kpc": ("float64", ()),
    "extent_kpc": ("float64", (4,)),  # xmin, xmax, ymin, ymax in the rotated frame
    "r_hi_kpc": ("float64", ()),  # face-on HI radius at 1 Msun/pc^2 (NaN: no disc plane)
    "n_gas": ("int64", ()),  # particles of each type that entered the view
    "n_stars": ("int64", ()),
    "n_dm": ("int64", ()),
}


class StoreError(AlchemyObsError, RuntimeError):
    """A shard or dataset file is missing, unreadable or inconsistent; names the file."""


def shard_path(out_dir: str | os.PathLike, galaxy_id: int) -> Path:
    """Where the shard of galaxy ``galaxy_id`` lives inside a dataset folder."""
    return Path(out_dir) / "shards" / f"galaxy_{int(galaxy_id)}.h5"


@contextlib.contextmanager
def _atomic_h5(path: Path, template: Path | None = None):
    """Yield an open h5py file that replaces ``path`` only if the block succeeds.

    With ``template`` the temporary file starts as a copy of it (for in-place additions).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    os.close(fd)
    try:
        if template is not None:
            shutil.copyfile(template, tmp)
        with h5py.File(tmp, "r+" if template is not None else "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _filter_kwargs(compression: str) -> dict:
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    raise ValueError(f"unknown compression {compression!r}; use 'gzip' or 'lzf'")


def _create_map(group: h5py.Group, name: str, data: np.ndarray, unit: str, compression: str):
    npix_y, npix_x = data.shape[1:]
    ds = group.create_dataset(
        name, data=data.astype(np.float32), chunks=(1, npix_y, npix_x),
        **_filter_kwargs(compression),
    )
    ds.attrs["units"] = unit


def _check_domain_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid domain name {name!r}")


def write_shard(
    path: str | os.PathLike,
    maps: Mapping[str, u.Quantity],
    meta: Mapping[str, np.ndarray],
    *,
    config_hash: str,
    cosmology: str,
    compression: str = "gzip",
) -> Path:
    """Write (atomically) the shard of one galaxy.

    Parameters
    ----------
    path : path-like
        Destination, usually :func:`shard_path`; replaced only when the write succeeded.
    maps : mapping of str to Quantity
        Domain name -> (n_views, npix, npix) map stack with units.
    meta : mapping of str to array
        Every column of :data:`META_COLUMNS`, one row per view.
    config_hash : str
        Hash of the settings that change map values; shards of one dataset must agree.
    cosmology : str
        JSON description of the cosmology.
    compression : {"gzip", "lzf"}
        Lossless filter of the map chunks.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not maps:
        raise ValueError(f"{path}: no maps to write")
    n_views = len(meta["view"])
    shapes = {name: q.shape for name, q in maps.items()}
    if len({s for s in shapes.values()}) != 1:
        raise ValueError(f"{path}: maps differ in shape: {shapes}")
    shape = next(iter(shapes.values()))
    if len(shape) != 3 or shape[0] != n_views or shape[1] != shape[2]:
        raise ValueError(f"{path}: maps must be (n_views={n_views}, npix, npix), got {shape}")
    missing = set(META_COLUMNS) - set(meta)
    if missing:
        raise ValueError(f"{path}: metadata lacks columns {sorted(missing)}")
    with _atomic_h5(path) as f:
        g = f.create_group("maps")
        for name, q in maps.items():
            _check_domain_name(name)
            q = u.Quantity(q)
            _create_map(g, name, q.value, q.unit.to_string(), compression)
        m = f.create_group("meta")
        for col, (dtype, tail) in META_COLUMNS.items():
            arr = np.asarray(meta[col]).astype(dtype)
            if arr.shape != (n_views, *tail):
                raise ValueError(f"{path}: meta/{col} has shape {arr.shape}, "
                                 f"expected {(n_views, *tail)}")
            m.create_dataset(col, data=arr)
        f.attrs["npix"] = shape[1]
        f.attrs["domains"] = list(maps)
        f.attrs["code_version"] = __version__
        f.attrs["config_hash"] = config_hash
        f.attrs["cosmology"] = cosmology
    return path


def _read_meta(group: h5py.Group) -> dict[str, np.ndarray]:
    return {name: ds[()] for name, ds in group.items()}


def read_shard(
    path: str | os.PathLike,
) -> tuple[dict[str, u.Quantity], dict[str, np.ndarray], dict]:
    """Read a whole shard into memory: ``(maps, meta, attrs)``.

    Raises
    ------
    StoreError
        If the file cannot be read as a shard.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            maps = {}
            for name in map(str, f.attrs["domains"]):
                ds = f["maps"][name]
                maps[name] = u.Quantity(ds[()], u.Unit(ds.attrs["units"]), copy=False)
            return maps, _read_meta(f["meta"]), dict(f.attrs)
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(f"{path}: not a readable map shard ({exc})") from None


def shard_views(
    path: str | os.PathLike, config_hash: str, domains: Iterable[str]
) -> list[str] | None:
    """Views already present and valid in a shard, or ``None`` if it must be rewritten.

    A shard is reusable when it opens, was written with the same ``config_hash``, holds every
    requested domain, and its map and metadata lengths agree. A missing shard gives ``[]``.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("config_hash") != config_hash:
                log.info("%s: written with other settings; it will be rewritten", path)
                return None
            views = [v.decode() for v in f["meta/view"][()]]
            for name in domains:
                ds = f["maps"].get(name)
                if ds is None or ds.shape[0] != len(views):
                    log.info("%s: domain %r missing or incomplete; rewriting", path, name)
                    return None
            return views
    except (OSError, KeyError) as exc:
        log.warning("%s: unreadable shard (%s); it will be rewritten", path, exc)
        return None


def write_domain(
    path: str | os.PathLike, domain: str, data: u.Quantity, *, overwrite: bool = False,
    compression: str = "gzip",
) -> Path:
    """Add one domain (for example a mock observation) to every view of an existing shard.

    The shard is copied to a temporary file, extended and moved back atomically, so readers
    never see a half-written domain. Rerun :func:`join_shards` afterwards to expose the new
    domain in ``dataset.h5``.

    Parameters
    ----------
    path : path-like
        The shard.
    domain : str
        New domain name, e.g. ``"hi_mom0"``.
    data : Quantity
        (n_views, npix, npix) maps in the shard's view order (``meta/view``), with units.
    overwrite : bool
        Replace the domain if the shard already has it.
    compression : {"gzip", "lzf"}

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    _check_domain_name(domain)
    data = u.Quantity(data)
    try:
        with h5py.File(path, "r") as f:
            expected = (len(f["meta/view"]), int(f.attrs["npix"]), int(f.attrs["npix"]))
            exists = domain in f["maps"]
    except (OSError, KeyError) as exc:
        raise StoreError(f"{path}: not a readable map shard ({exc})") from None
    if data.shape != expected:
        raise ValueError(f"{path}: {domain} must have shape (n_views, npix, npix) = "
                         f"{expected}, got {data.shape}")
    if exists and not overwrite:
        raise StoreError(f"{path}: domain {domain!r} exists; pass overwrite=True to replace it")
    with _atomic_h5(path, template=path) as f:
        if exists:
            del f["maps"][domain]
        _create_map(f["maps"], domain, data.value, data.unit.to_string(), compression)
        if not exists:
            f.attrs["domains"] = [*(str(d) for d in f.attrs["domains"]), domain]
    return path


def _split_rank(galaxy_id: int, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{int(galaxy_id)}".encode()).hexdigest()


def assign_splits(
    galaxy_ids: Iterable[int], fractions: Mapping[str, float], seed: int = 0
) -> dict[int, str]:
    """Assign each galaxy to one split.

    Galaxies are ordered by a hash of ``(seed, galaxy_id)`` (deterministic, independent of
    input order, uncorrelated with mass or id) and cut into consecutive blocks whose sizes
    follow ``fractions`` by the largest-remainder rule; every split with a positive fraction
    receives at least one galaxy when there are enough galaxies.

    Parameters
    ----------
    galaxy_ids : iterable of int
    fractions : mapping
        ``{"train": f, "val": f, "test": f}``, summing to 1; missing splits count as 0.
    seed : int

    Returns
    -------
    dict
        galaxy id -> split name.
    """
    ids = sorted({int(g) for g in galaxy_ids}, key=lambda g: _split_rank(g, seed))
    n = len(ids)
    frac = np.array([float(fractions.get(s, 0.0)) for s in SPLITS])
    if np.any(frac < 0) or not np.isclose(frac.sum(), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    exact = frac * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    positive = np.flatnonzero(frac > 0)
    if n >= len(positive):
        for k in positive:
            if counts[k] == 0:
                counts[np.argmax(counts)] -= 1
                counts[k] = 1
    names = np.repeat(np.array(SPLITS), counts)
    return dict(zip(ids, names.tolist()))


def join_shards(
    shard_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    split_fractions: Mapping[str, float] | None = None,
    split_seed: int = 0,
) -> Path:
    """Join shards into one dataset file without copying map data.

    Parameters
    ----------
    shard_paths : sequence of path-like
        Shards to join, in the order their views should appear.
    out : path-like
        The dataset file (written atomically). Shards are referenced relative to its folder.
    split_fractions : mapping, optional
        Fractions of galaxies per split; default 0.8/0.1/0.1.
    split_seed : int
        Seed of the split hash.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    StoreError
        If a shard is unreadable, shards disagree on npix or settings, or a galaxy appears in
        two shards.
    """
    out = Path(out)
    if not shard_paths:
        raise StoreError(f"{out}: no shards to join")
    fractions = split_fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    infos = []
    for p in map(Path, shard_paths):
        try:
            with h5py.File(p, "r") as f:
                infos.append({
                    "path": p,
                    "meta": _read_meta(f["meta"]),
                    "attrs": dict(f.attrs),
                    # attrs["domains"] keeps the written order; HDF5 groups iterate sorted.
                    "maps": {str(n): (f["maps"][n].shape, f["maps"][n].attrs["units"])
                             for n in f.attrs["domains"]},
                })
        except (OSError, KeyError) as exc:
            raise StoreError(f"{p}: not a readable map shard ({exc})") from None
    first = infos[0]
    for info in infos[1:]:
        for key in ("npix", "config_hash", "cosmology"):
            if info["attrs"][key] != first["attrs"][key]:
                raise StoreError(f"{info['path']}: {key}={info['attrs'][key]!r} differs from "
                                 f"{first['path']} ({first['attrs'][key]!r})")
    owner: dict[int, Path] = {}
    for info in infos:
        for g in np.unique(info["meta"]["galaxy_id"]):
            if int(g) in owner:
                raise StoreError(f"galaxy {g} is in both {owner[int(g)]} and {info['path']}")
            owner[int(g)] = info["path"]
    domains = [d for d in first["maps"] if all(d in i["maps"] for i in infos)]
    partial = sorted({d for i in infos for d in i["maps"]} - set(domains))
    if partial:
        log.warning("domains %s are not in every shard and are left out of %s", partial, out)
    for d in domains:
        units = {i["maps"][d][1] for i in infos}
        if len(units) != 1:
            raise StoreError(f"domain {d!r} has different units across shards: {units}")

    meta = {c: np.concatenate([i["meta"][c] for i in infos]) for c in META_COLUMNS}
    split_of = assign_splits(meta["galaxy_id"], fractions, split_seed)
    meta["split"] = np.array([split_of[int(g)] for g in meta["galaxy_id"]], dtype="S5")
    n_total = len(meta["view"])
    npix = int(first["attrs"]["npix"])

    with _atomic_h5(out) as f:
        g = f.create_group("maps")
        for d in domains:
            layout = h5py.VirtualLayout(shape=(n_total, npix, npix), dtype=np.float32)
            start = 0
            for info in infos:
                shape = info["maps"][d][0]
                rel = os.path.relpath(info["path"].resolve(), out.resolve().parent)
                layout[start:start + shape[0]] = h5py.VirtualSource(rel, f"maps/{d}", shape=shape)
                start += shape[0]
            ds = g.create_virtual_dataset(d, layout, fillvalue=np.nan)
            ds.attrs["units"] = first["maps"][d][1]
        m = f.create_group("meta")
        for col, arr in meta.items():
            m.create_dataset(col, data=arr)
        f.attrs["npix"] = npix
        f.attrs["domains"] = domains
        f.attrs["code_version"] = __version__
        f.attrs["config_hash"] = first["attrs"]["config_hash"]
        f.attrs["cosmology"] = first["attrs"]["cosmology"]
        f.attrs["split_fractions"] = json.dumps(dict(fractions))
        f.attrs["split_seed"] = split_seed
    counts = {s: int(np.sum(meta["split"] == s.encode())) for s in SPLITS}
    log.info("joined %d shards (%d views) into %s; views per split %s",
             len(infos), n_total, out, counts)
    return out


class MapStore:
    """Read paired maps from a dataset (or a single shard).

    Parameters
    ----------
    path : path-like
        ``dataset.h5`` written by :func:`join_shards`, or one shard.

    Notes
    -----
    The HDF5 file is opened lazily and reopened in a new process, so a ``MapStore`` can be
    handed to PyTorch ``DataLoader`` workers.

    Examples
    --------
    >>> store = MapStore("maps/dataset.h5")                    # doctest: +SKIP
    >>> i = store.indices("train")[0]                          # doctest: +SKIP
    >>> pair = store.read(i, ["hi", "dm"])                     # doctest: +SKIP
    >>> pair["hi"].shape == (store.npix, store.npix)           # doctest: +SKIP
    True
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no such dataset file")
        try:
            with h5py.File(self.path, "r") as f:
                self.npix: int = int(f.attrs["npix"])
                self.domains: list[str] = [str(d) for d in f.attrs["domains"]]
                self.attrs: dict = dict(f.attrs)
                self._units = {d: u.Unit(f["maps"][d].attrs["units"]) for d in self.domains}
                meta = _read_meta(f["meta"])
                missing = sorted({
                    src.file_name for d in self.domains if f["maps"][d].is_virtual
                    for src in f["maps"][d].virtual_sources()
                    if not (self.path.parent / src.file_name).is_file()
                })
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"{self.path}: not a readable map dataset ({exc})") from None
        if missing:
            # HDF5 would silently read the fill value (NaN) from absent shards.
            raise StoreError(f"{self.path}: shard file(s) missing beside it: {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}")
        self.meta: dict[str, np.ndarray] = {
            k: (v.astype(str) if v.dtype.kind == "S" else v) for k, v in meta.items()
        }
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.meta["view"])

    def __repr__(self) -> str:
        return f"MapStore({str(self.path)!r}, views={len(self)}, npix={self.npix}, " \
               f"domains={self.domains})"

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def close(self) -> None:
        """Close the file handle (reads reopen it)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> MapStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def units(self, domain: str) -> u.UnitBase:
        """The astropy unit of ``domain``."""
        self._check(domain)
        return self._units[domain]

    def indices(self, split: str) -> np.ndarray:
        """Indices of the views in ``split`` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        if "split" not in self.meta:
            raise StoreError(f"{self.path}: has no splits (a shard? join it with join_shards)")
        return np.flatnonzero(self.meta["split"] == split)

    def _check(self, domain: str) -> None:
        if domain not in self._units:
            raise KeyError(f"{self.path}: no domain {domain!r}; available: {self.domains}")

    def read(self, i: int, domains: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The maps of view ``i`` for ``domains`` (default: all), as float32 arrays.

        Map values are in :meth:`units` of each domain; weighted averages are NaN where no
        particle contributes (surface densities are 0 there).
        """
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"view {i} out of range for {len(self)} views")
        names = self.domains if domains is None else list(domains)
        for d in names:
            self._check(d)
        f = self._handle()
        return {d: f["maps"][d][i] for d in names}
