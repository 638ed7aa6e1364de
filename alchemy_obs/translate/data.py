"""Paired map datasets over the HDF5 store, with physically valid augmentations.

:class:`PairedMapDataset` reads one view at a time through
:class:`~alchemy_obs.maps.store.MapStore` (which opens the HDF5 file lazily in each
process), so ``DataLoader`` workers stream maps from disk and the file is never loaded into
memory. Items are normalised with a :class:`~alchemy_obs.translate.normalise.Normalisation`
fitted on the training split (:func:`fit_normalisation`).

Augmentations are the 8 symmetries of the square (identity, 3 rotations by 90 degrees, and
those composed with a flip). A projected map seen from the other side, or rotated in the sky
plane, is as valid a view of the galaxy as the original, and input and target receive the
same transform so the pair stays physically consistent. Arbitrary-angle rotations are not
used because they interpolate (and so smooth) pixel values.

Empty pixels (NaN in weighted-average domains) are treated as zero signal by the
normalisation (see :mod:`alchemy_obs.translate.normalise`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from alchemy_obs.maps.store import MapStore
from alchemy_obs.translate.normalise import Normalisation, fit_domain_scaling

__all__ = ["PairedMapDataset", "EpochBatchSampler", "dihedral", "fit_normalisation"]


def dihedral(x: Tensor, k: int) -> Tensor:
    """Apply symmetry ``k`` (0..7) of the square to the last two axes of ``x``.

    ``k % 4`` quarter turns, followed by a left-right flip when ``k >= 4``.
    """
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def fit_normalisation(
    store: MapStore, domains: Sequence[str], split: str = "train", *, max_maps: int = 256,
    seed: int = 0,
) -> Normalisation:
    """Fit the scaling of each domain on (up to ``max_maps``) views of ``split``.

    The subset is drawn with a fixed seed, so every process of a distributed run fits the
    same normalisation without communicating.
    """
    idx = store.indices(split)
    if len(idx) == 0:
        raise ValueError(f"{store.path}: split {split!r} is empty; cannot fit normalisation")
    if len(idx) > max_maps:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_maps, replace=False))
    scalings = {}
    for d in dict.fromkeys(domains):
        scalings[d] = fit_domain_scaling(d, (store.read(i, [d])[d] for i in idx))
    return Normalisation(scalings)


class PairedMapDataset(Dataset):
    """(input domains, target domain) pairs of one split of a map store.

    Parameters
    ----------
    store_path : path-like or MapStore
        Dataset written by ``alchemy-obs maps`` (see :mod:`alchemy_obs.maps.store`).
    inputs : sequence of str
        Input domains, stacked as channels in this order.
    target : str
        Target domain.
    split : {"train", "val", "test"}
    normalisation : Normalisation, optional
        Fitted on the training split when omitted.
    augment : bool
        Apply a random symmetry of the square to each pair (the same to input and target).
        The symmetry can also be chosen by indexing with ``(i, k)``, which is what
        :class:`EpochBatchSampler` does to make augmentation reproducible across workers and
        resumes.

    Items are dicts with ``"input"`` (C_in, H, W), ``"target"`` (1, H, W) float32 tensors
    (normalised) and ``"index"`` (the view's index in the store).
    """

    def __init__(
        self, store_path: str | os.PathLike | MapStore, inputs: Sequence[str], target: str = "dm",
        *,
        split: str = "train", normalisation: Normalisation | None = None, augment: bool = False,
    ) -> None:
        self.store = store_path if isinstance(store_path, MapStore) else MapStore(store_path)
        self.inputs = list(inputs)
        self.target = target
        for d in [*self.inputs, target]:
            self.store.units(d)  # raises KeyError naming the file and the available domains
        self.split = split
        self.views = self.store.indices(split)
        if len(self.views) == 0:
            raise ValueError(f"{self.store.path}: split {split!r} has no views")
        self.normalisation = normalisation or fit_normalisation(self.store, [*self.inputs, target])
        self.augment = augment

    def __len__(self) -> int:
        return len(self.views)

    @property
    def npix(self) -> int:
        return self.store.npix

    def physical(self, item: int) -> dict[str, np.ndarray]:
        """The raw maps (physical units) of item ``item`` of this split."""
        return self.store.read(self.views[item], [*self.inputs, self.target])

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Tensor]:
        if isinstance(item, tuple):
            item, k = item
        else:
            k = int(torch.randint(0, 8, ())) if self.augment else 0
        maps = self.physical(item)
        norm = self.normalisation
        x = torch.stack([norm.forward(d, maps[d]) for d in self.inputs])
        y = norm.forward(self.target, maps[self.target])[None]
        if k:
            x, y = dihedral(x, k), dihedral(y, k)
        return {"input": x.contiguous(), "target": y.contiguous(),
                "index": torch.tensor(int(self.views[item]))}


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Deterministic shuffled batches of ``(item, symmetry)`` for one epoch and one rank.

    The permutation and the symmetries depend only on ``(seed, epoch)``; rank ``r`` of ``w``
    takes every ``w``-th batch-sized slice, so a run restarted at step ``s`` sees exactly the
    batches it would have seen (``start`` skips batches already done in this epoch).

    Parameters
    ----------
    n : int
        Dataset length.
    batch_size : int
        Per-rank batch size; incomplete batches are dropped.
    seed, epoch : int
    augment : bool
        Draw a symmetry per item (else 0).
    rank, world_size : int
    start : int
        Batches of this epoch to skip.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, *, epoch: int, augment: bool,
        rank: int = 0, world_size: int = 1, start: int = 0,
    ) -> None:
        self.n, self.batch_size = n, batch_size
        self.seed, self.epoch, self.augment = seed, epoch, augment
        self.rank, self.world_size, self.start = rank, world_size, start
        if self.batches_per_epoch(n, batch_size, world_size) == 0:
            raise ValueError(
                f"{n} training views cannot fill one batch of {batch_size} x {world_size} processes"
            )

    @staticmethod
    def batches_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
        return n // (batch_size * world_size)

    def __len__(self) -> int:
        return self.batches_per_epoch(self.n, self.batch_size, self.world_size) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(self.n)
        ks = rng.integers(0, 8, self.n) if self.augment else np.zeros(self.n, dtype=int)
        global_batch = self.batch_size * self.world_size
        for b in range(self.start, self.batches_per_epoch(self.n, self.batch_size, self.world_size)):
            lo = b * global_batch + self.rank * self.batch_size
            sel = perm[lo : lo + self.batch_size]
            yield [(int(i), int(ks[i])) for i in sel]
