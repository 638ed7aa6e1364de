"""Quick-look figure of an ``infer`` result: the observation with the prediction overlaid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

__all__ = ["plot_overlay"]


#: How each model input domain is named on a colour bar.
_INPUT_LABELS = {"hi_nhi": r"$N_{\rm HI}$", "hi_mom0": "HI moment 0",
                 "hi": r"$\Sigma_{\rm HI}$", "continuum": "continuum"}


def plot_overlay(
    observed: u.Quantity, observed_wcs: WCS, prediction: str | os.PathLike, *,
    png: str | os.PathLike, title: str = "", domain: str = "", beam=None,
) -> Path:
    """Observed map in colour with the predicted map's contours, and the prediction alone.

    Both panels use WCSAxes; the contours are placed through the prediction's own header
    (``transform=ax.get_transform(wcs)``), so a misplaced prediction would show. Pixels
    without a prediction (outside every predicted model field, or blank in the input) are
    grey, the edge of the predicted region is dashed on the observation, and a file made by a
    demonstration model says so on the figure.

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
    domain : str
        The model's input domain (labels the colour bar).
    beam : radio_beam.Beam, optional
        The observation's beam, drawn in the observation panel.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from alchemy_obs.observe.skyplot import draw_beam, draw_scale_bar, label_sky_axes

    with fits.open(prediction) as hdul:
        header = hdul[0].header
        pred = np.asarray(hdul[0].data, dtype=float)
        pred_wcs = WCS(header)
    unit = u.Unit(header.get("BUNIT", ""))
    target = header.get("TARGET", "prediction")
    fig = plt.figure(figsize=(12, 4.8))
    ax1 = fig.add_subplot(1, 2, 1, projection=observed_wcs)
    im = ax1.imshow(observed.value, origin="lower", cmap="Blues")
    name = _INPUT_LABELS.get(domain, "observed")
    fig.colorbar(im, ax=ax1, label=f"{name} [{observed.unit.to_string('latex_inline')}]")
    finite = pred[np.isfinite(pred)]
    if finite.size and np.ptp(finite) > 0:
        levels = np.unique(np.percentile(finite, [50, 75, 90, 97]))
        ax1.contour(pred, levels=levels, colors="C3", linewidths=1,
                    transform=ax1.get_transform(pred_wcs))
        ax1.contour(np.isfinite(pred).astype(float), levels=[0.5], colors="0.3",
                    linewidths=0.8, linestyles="--", transform=ax1.get_transform(pred_wcs))
    ax1.set_title(f"observation, {target} contours")
    if beam is not None:
        draw_beam(ax1, beam, color="k")
    ax2 = fig.add_subplot(1, 2, 2, projection=pred_wcs)
    positive = finite[finite > 0]
    norm = (LogNorm(positive.min(), positive.max())
            if positive.size and positive.min() < positive.max() else None)
    cmap = plt.get_cmap("magma").with_extremes(bad="0.8")
    im2 = ax2.imshow(pred, origin="lower", cmap=cmap, norm=norm)
    fig.colorbar(im2, ax=ax2, label=f"{target} [{unit.to_string('latex_inline')}]")
    ax2.set_title(f"predicted {target} (grey: not predicted)")
    if header.get("DISTANCE"):
        draw_scale_bar(ax2, header["DISTANCE"] * u.Mpc)
    for ax in (ax1, ax2):
        label_sky_axes(ax)
        ax.coords[0].set_ticks(number=4)
    fig.subplots_adjust(wspace=0.55)
    if header.get("DEMOMODL"):
        fig.text(0.5, 0.005, "DEMONSTRATION MODEL trained on synthetic galaxies: not a science result",
                 ha="center", va="bottom", color="C3", fontsize=11, fontweight="bold")
    if title:
        fig.suptitle(title)
    png = Path(png)
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png
