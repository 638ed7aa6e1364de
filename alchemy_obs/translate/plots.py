"""Figures of the translators' results (matplotlib, Agg backend, written to files)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from alchemy_obs.translate import metrics  # noqa: E402

__all__ = ["triptych", "radial_profiles", "pixel_distributions", "sampling_trajectory"]


def _log_image(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    pos = x[x > 0]
    floor = np.percentile(pos, 1) if pos.size else 1.0
    return np.log10(np.maximum(x, floor))


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def triptych(
    inputs: Tensor, pred: Tensor, truth: Tensor, *, path: str | os.PathLike, n: int = 4,
    labels: Sequence[str] = ("input", "prediction", "truth"), units: Sequence[str] = ("", ""),
) -> Path:
    """Rows of input / prediction / truth maps (log10 colour scale; prediction and truth
    share limits)."""
    n = min(n, pred.shape[0])
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for i in range(n):
        a = _log_image(inputs[i].numpy())
        p, t = _log_image(pred[i].numpy()), _log_image(truth[i].numpy())
        lo, hi = np.percentile(t, [1, 99.9])
        for ax, img, lab, kw in (
            (axes[i, 0], a, f"{labels[0]} [log10 {units[0]}]", {}),
            (axes[i, 1], p, f"{labels[1]} [log10 {units[1]}]", {"vmin": lo, "vmax": hi}),
            (axes[i, 2], t, f"{labels[2]} [log10 {units[1]}]", {"vmin": lo, "vmax": hi}),
        ):
            im = ax.imshow(img, origin="lower", cmap="magma", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(lab, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def radial_profiles(
    pred: Tensor, truth: Tensor, path: str | os.PathLike, *, pixel_kpc: float | None = None,
    unit: str = "",
) -> Path:
    """Median radial profiles (16-84% bands) and the residual in dex per radius."""
    res = metrics.profile_residuals(pred, truth)
    r = res["radius"].numpy() * (pixel_kpc or 1.0)
    _, pp = metrics.radial_profile(pred)
    _, pt = metrics.radial_profile(truth)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    for prof, lab, c in ((pt, "truth", "k"), (pp, "prediction", "C1")):
        q = np.nanpercentile(prof.numpy(), [16, 50, 84], axis=0)
        ax.plot(r, q[1], color=c, label=lab)
        ax.fill_between(r, q[0], q[2], color=c, alpha=0.25)
    ax.set_yscale("log")
    ax.set_ylabel(f"azimuthal mean [{unit}]")
    ax.legend()
    axr.axhline(0, color="k", lw=0.8)
    axr.plot(r, res["median"].numpy(), color="C1")
    axr.fill_between(r, res["p16"].numpy(), res["p84"].numpy(), color="C1", alpha=0.25)
    axr.set_ylabel("log10(pred/true)")
    axr.set_xlabel("radius [kpc]" if pixel_kpc else "radius [pixel]")
    return _save(fig, path)


def pixel_distributions(
    pred: Tensor, truth: Tensor, path: str | os.PathLike, *, unit: str = "", bins: int = 60
) -> Path:
    """Histograms of log10 pixel values of prediction and truth ("abundance matching")."""
    p, t = pred.numpy().ravel(), truth.numpy().ravel()
    pos = np.concatenate([p[p > 0], t[t > 0]])
    edges = np.linspace(*np.log10(np.percentile(pos, [0.1, 100])), bins)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(np.log10(t[t > 0]), edges, histtype="step", color="k", label="truth", density=True)
    ax.hist(np.log10(p[p > 0]), edges, histtype="step", color="C1", label="prediction", density=True)
    ax.set_xlabel(f"log10 pixel value [{unit}]")
    ax.set_ylabel("density")
    ax.legend()
    return _save(fig, path)


def sampling_trajectory(
    method, condition: Tensor, path: str | os.PathLike, *, normalisation=None,
    target: str | None = None, steps: int | None = None, n_panels: int = 6, seed: int = 0,
) -> Path:
    """The state ``x_t`` of an iterative sampler at a few times t, for one condition."""
    frames: list[tuple[float, Tensor]] = []
    method.sample(condition[:1], steps=steps,
                  generator=torch.Generator(device=condition.device).manual_seed(seed),
                  callback=lambda t, x, x0: frames.append((t, x[0, 0].detach().cpu())))
    pick = np.unique(np.round(np.linspace(0, len(frames) - 1, n_panels)).astype(int))
    fig, axes = plt.subplots(1, len(pick), figsize=(2.4 * len(pick), 2.6), squeeze=False)
    for ax, i in zip(axes[0], pick):
        t, x = frames[i]
        img = normalisation.inverse(target, x).numpy() if normalisation is not None else x.numpy()
        ax.imshow(_log_image(img) if normalisation is not None else img, origin="lower",
                  cmap="magma")
        ax.set_title(f"t = {t:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)
