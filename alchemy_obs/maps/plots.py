"""Quick-look figures of a map dataset: a grid of every domain for a few views."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colors, patheffects
from matplotlib.figure import Figure

from alchemy_obs.maps.store import MapStore

__all__ = ["plot_views"]

# Domains whose values change sign get a symmetric-log scale instead of a log scale.
_SIGNED = {"bfield_los"}


def _nice_length(span: float) -> float:
    """A round length (1, 2 or 5 x 10^k) close to a quarter of ``span``."""
    target = span / 4
    base = 10 ** np.floor(np.log10(target))
    return float(max(m * base for m in (1, 2, 5) if m * base <= target))


def _norm(stack: np.ndarray, signed: bool) -> colors.Normalize:
    finite = stack[np.isfinite(stack)]
    if signed:
        big = np.percentile(np.abs(finite), 99.5) if finite.size else 1.0
        big = big if big > 0 else 1.0
        nonzero = np.abs(finite[finite != 0])
        small = np.percentile(nonzero, 20) if nonzero.size else big / 100
        return colors.SymLogNorm(linthresh=min(small, big / 10), vmin=-big, vmax=big)
    positive = finite[finite > 0]
    if positive.size == 0:
        return colors.Normalize(0, 1)
    hi = np.percentile(positive, 99.8)
    lo = max(np.percentile(positive, 1), hi * 1e-5)
    return colors.LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)


def plot_views(
    store: MapStore | str | os.PathLike,
    indices: Sequence[int],
    out: str | os.PathLike,
    domains: Sequence[str] | None = None,
) -> Path:
    """Save a PNG grid: one row per view, one column per domain.

    Every column shares one logarithmic colour scale (symmetric-logarithmic for signed
    domains such as ``bfield_los``) with the unit on its colour bar; NaN pixels (undefined
    averages) and zero pixels are grey. Each panel carries a scale bar in kpc.

    Parameters
    ----------
    store : MapStore or path-like
        The dataset (or a shard).
    indices : sequence of int
        Views to show, one per row.
    out : path-like
        PNG file to write (replaced atomically).
    domains : sequence of str, optional
        Columns; default every domain of the store.

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(store, MapStore):
        store = MapStore(store)
    names = list(store.domains if domains is None else domains)
    indices = [int(i) for i in indices]
    if not indices or not names:
        raise ValueError("plot_views needs at least one view and one domain")
    data = {d: np.stack([store.read(i, [d])[d] for i in indices]) for d in names}
    nrow, ncol = len(indices), len(names)
    fig = Figure(figsize=(2.3 * ncol, 2.35 * nrow + 0.3), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for c, d in enumerate(names):
        signed = d in _SIGNED
        norm = _norm(data[d], signed)
        cmap = matplotlib.colormaps["RdBu_r" if signed else "inferno"].with_extremes(bad="0.75")
        for r, i in enumerate(indices):
            ax = axes[r, c]
            ext = store.meta["extent_kpc"][i]
            img = np.ma.masked_invalid(data[d][r])
            if not signed:
                img = np.ma.masked_less_equal(img, 0)
            im = ax.imshow(img, origin="lower", extent=tuple(ext), norm=norm, cmap=cmap,
                           interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            bar = _nice_length(ext[1] - ext[0])
            x0 = ext[0] + 0.06 * (ext[1] - ext[0])
            y0 = ext[2] + 0.07 * (ext[3] - ext[2])
            # A dark outline keeps the white bar legible on bright and dark maps alike.
            outline = [patheffects.withStroke(linewidth=3, foreground="black")]
            ax.plot([x0, x0 + bar], [y0, y0], color="white", lw=2, solid_capstyle="butt",
                    path_effects=outline)
            ax.text(x0 + bar / 2, y0 + 0.03 * (ext[3] - ext[2]), f"{bar:g} kpc", color="white",
                    ha="center", va="bottom", fontsize=7, path_effects=outline)
            if r == 0:
                ax.set_title(d, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"galaxy {store.meta['galaxy_id'][i]}\n{store.meta['view'][i]}",
                              fontsize=8)
            cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
            cb.ax.tick_params(labelsize=6)
            cb.set_label(store.units(d).to_string("latex_inline"), fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)
    return out
