"""Quick-look figure of an ``infer`` result: the observation with the prediction overlaid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

__all__ = ["plot_overlay"]


def plot_overlay(
    observed: u.Quantity, observed_wcs: WCS, prediction: str | os.PathLike,
    png: str | os.PathLike, title: str = "",
) -> Path:
    """Observed map in colour with the predicted map's contours, and the prediction alone.

    Both panels use WCSAxes; the contours are placed through the prediction's own header
    (``transform=ax.get_transform(wcs)``), so a misplaced prediction would show.

    Parameters
    ----------
    observed : Quantity
        2-D map on ``observed_wcs`` (e.g. the column density that went into the model).
    observed_wcs : astropy.wcs.WCS
        Its celestial WCS.
    prediction : path-like
        Output FITS of ``infer``.
    png : path-like
        Figure to write.
    title : str
        Figure title.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with fits.open(prediction) as hdul:
        pred = np.asarray(hdul[0].data, dtype=float)
        pred_wcs = WCS(hdul[0].header)
        unit = hdul[0].header.get("BUNIT", "")
        target = hdul[0].header.get("TARGET", "prediction")
    fig = plt.figure(figsize=(12, 4.8))
    ax1 = fig.add_subplot(1, 2, 1, projection=observed_wcs)
    im = ax1.imshow(observed.value, origin="lower", cmap="Blues")
    fig.colorbar(im, ax=ax1, label=f"observed [{observed.unit.to_string()}]")
    finite = pred[np.isfinite(pred)]
    if finite.size and np.ptp(finite) > 0:
        levels = np.unique(np.percentile(finite, [50, 75, 90, 97]))
        ax1.contour(pred, levels=levels, colors="C3", linewidths=1,
                    transform=ax1.get_transform(pred_wcs))
    ax1.set_title(f"observation, {target} contours")
    ax2 = fig.add_subplot(1, 2, 2, projection=pred_wcs)
    positive = finite[finite > 0]
    if positive.size and positive.min() < positive.max():
        from matplotlib.colors import LogNorm

        norm = LogNorm(positive.min(), positive.max())
    else:
        norm = None
    im2 = ax2.imshow(pred, origin="lower", cmap="magma", norm=norm)
    fig.colorbar(im2, ax=ax2, label=f"{target} [{unit}]")
    ax2.set_title(f"predicted {target}")
    for ax in (ax1, ax2):
        ax.coords[0].set_axislabel("RA" if "RA" in observed_wcs.wcs.ctype[0] else "lon")
        ax.coords[1].set_axislabel("Dec" if "DEC" in observed_wcs.wcs.ctype[1] else "lat")
    fig.subplots_adjust(wspace=0.55)
    if title:
        fig.suptitle(title)
    png = Path(png)
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png
