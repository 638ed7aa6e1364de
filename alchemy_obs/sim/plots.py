"""Quick-look pictures of galaxies' particles (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from scipy import ndimage  # noqa: E402

from alchemy_obs.sim.galaxy import Galaxy, load_galaxy  # noqa: E402

__all__ = ["plot_particles", "save_png"]

#: Standard deviation (pixels) of the Gaussian that smooths the particle histograms.
SMOOTH_PIXELS = 1.5

_COLUMNS = (("gas", "gas", "viridis"), ("stars", "stars", "magma"), ("dm", "dark matter", "cividis"))


def _face_on(galaxy: Galaxy) -> Galaxy:
    """The galaxy rotated so that its stellar angular momentum points along +z."""
    z = galaxy.stellar_angular_momentum()
    trial = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(trial, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return galaxy.rotated(np.vstack([x, y, z]))


def plot_particles(
    paths: Sequence[str | os.PathLike],
    png: str | os.PathLike,
    half_width_kpc: float | None = None,
    npix: int = 64,
) -> Path:
    """Face-on surface density maps of gas, stars and dark matter, one row per galaxy.

    Each map is a mass histogram of the particles smoothed by a Gaussian of
    :data:`SMOOTH_PIXELS` pixels: a quick look at the particles as written, not the SPH
    projection of the map stage.

    Parameters
    ----------
    paths : sequence of path-like
        TNG-layout cutout files, read with :func:`~alchemy_obs.sim.galaxy.load_galaxy`.
    png : path-like
        Output image (written atomically).
    half_width_kpc : float, optional
        Half the side of each panel; by default five stellar half-mass radii per galaxy.
    npix : int
        Pixels per side of the mass histograms.

    Returns
    -------
    pathlib.Path
        The PNG file.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("plot_particles needs at least one cutout file")
    fig, axes = plt.subplots(
        len(paths), len(_COLUMNS), figsize=(3.2 * len(_COLUMNS), 3.0 * len(paths)), squeeze=False
    )
    for row, path in zip(axes, paths):
        galaxy = _face_on(load_galaxy(path))
        half = half_width_kpc or max(10.0, 5.0 * galaxy.half_mass_radius(("stars",)))
        edges = np.linspace(-half, half, npix + 1)
        pixel_area = (edges[1] - edges[0]) ** 2
        for ax, (kind, title, cmap) in zip(row, _COLUMNS):
            part = getattr(galaxy, kind)
            sigma, _, _ = np.histogram2d(
                part.coordinates[:, 0], part.coordinates[:, 1], bins=(edges, edges), weights=part.masses
            )
            # A few particles per pixel make a bare histogram salt-and-pepper noise; a
            # Gaussian of SMOOTH_PIXELS keeps the mass and shows the structure.
            sigma = ndimage.gaussian_filter(sigma / pixel_area, SMOOTH_PIXELS, mode="constant")
            positive = sigma[sigma > 0]
            if positive.size:
                image = ax.imshow(
                    np.where(sigma > 0, sigma, np.nan).T,
                    origin="lower",
                    extent=(-half, half, -half, half),
                    cmap=cmap,
                    norm=LogNorm(vmin=max(positive.min(), positive.max() * 1e-3), vmax=positive.max()),
                )
                fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label=r"$\Sigma$ [M$_\odot$ kpc$^{-2}$]")
            ax.set_title(f"{Path(path).stem}: {title}", fontsize=9)
            ax.set_xlabel("x [kpc]")
            ax.set_ylabel("y [kpc]")
    fig.tight_layout()
    return save_png(fig, png, dpi=80)


def save_png(fig: plt.Figure, png: str | os.PathLike, dpi: int = 80) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file, then rename) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    png : path-like
        Output file; its folder is created.
    dpi : int
        Resolution.

    Returns
    -------
    pathlib.Path
        The PNG file.
    """
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, png)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return png
