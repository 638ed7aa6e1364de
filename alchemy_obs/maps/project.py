"""Mass-conserving SPH projection of particles onto a pixel grid.

Each particle's projected kernel is integrated over each pixel's area (exact in total, see
:mod:`alchemy_obs.maps.deposit`, which holds the numba deposit shared with the HI cubes of
:mod:`alchemy_obs.observe.sky`), so a map is a sum of weights per pixel and its total equals
the summed weights of particles whose kernels lie inside it to round-off.

Image orientation: ``image[j, i]`` covers ``x`` in pixel ``i`` and ``y`` in pixel ``j``
(display with ``origin="lower"``).
"""

from __future__ import annotations

import numpy as np
from astropy import units as u

from alchemy_obs.maps.deposit import H_LEVEL, deposit_map
from alchemy_obs.maps.kernels import kernel_tables

__all__ = ["project_particles", "surface_density", "weighted_average"]


def _plain(values) -> np.ndarray:
    return np.require(values, dtype=np.float64, requirements=["C", "W"])


def _grid_shape(npix: int | tuple[int, int]) -> tuple[int, int]:
    """(ny, nx) from an int or a (ny, nx) tuple."""
    if np.ndim(npix) == 0:
        ny = nx = int(npix)
    else:
        ny, nx = (int(v) for v in npix)
    if nx < 1 or ny < 1:
        raise ValueError(f"npix must be positive, got {npix!r}")
    return ny, nx


def project_particles(
    x: np.ndarray,
    y: np.ndarray,
    h: np.ndarray,
    weights: np.ndarray,
    extent: tuple[float, float, float, float],
    npix: int | tuple[int, int],
    kernel: str = "cubic_spline",
    *,
    z: np.ndarray | None = None,
    zrange: tuple[float, float] | None = None,
    exact: bool = False,
) -> np.ndarray:
    """Sum of particle weights per pixel with pixel-integrated SPH kernels.

    Kernels up to :data:`~alchemy_obs.maps.deposit.H_LEVEL` (10) pixels in support radius
    are integrated over the map's pixels; wider ones over the pixels of the coarser level of
    an image pyramid where they span 5 to 10 pixels, whose sum is prolonged to the map
    conserving each coarse pixel's total (see :mod:`alchemy_obs.maps.deposit`). The cost per
    particle is then bounded whatever the kernel, and a wide kernel's pixels lie within
    0.4 % (L1) of their exact integrals.

    Parameters
    ----------
    x, y : ndarray, shape (N,)
        Positions in the image plane.
    h : ndarray, shape (N,) or float
        Kernel support radii (same length unit); zero means a point particle.
    weights : ndarray, shape (N,) or (K, N)
        Quantities to deposit (e.g. mass, or mass and mass * T at once).
    extent : (xmin, xmax, ymin, ymax)
        Map bounds in the same length unit.
    npix : int or (ny, nx)
        Number of pixels per side, or the output shape.
    kernel : {"cubic_spline", "wendland_c2"}
        SPH kernel.
    z : ndarray, shape (N,), optional
        Line-of-sight positions; needed with ``zrange``.
    zrange : (zmin, zmax), optional
        Line-of-sight slab. Each weight is multiplied by the fraction of its kernel's mass
        inside the slab (exact in mass); the kernel keeps its full projected shape, which
        differs from a sharp cut only for particles crossing the slab faces.
    exact : bool
        Integrate every kernel over the map's own pixels (the reference the pyramid is
        measured against), at a cost that grows with the kernel's area in pixels.

    Returns
    -------
    ndarray, shape (ny, nx) or (K, ny, nx)
        float64 sums of weights per pixel; ``image[j, i]`` is x-pixel ``i``, y-pixel ``j``.
    """
    ny, nx = _grid_shape(npix)
    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with max > min, got {extent}")
    # One array type (C-contiguous, writable float64) so numba compiles a single signature.
    x = _plain(x).ravel()
    y = _plain(y).ravel()
    n = x.size
    h = np.full(n, float(h)) if np.ndim(h) == 0 else _plain(h).ravel()
    w = np.asarray(weights, dtype=np.float64)
    single = w.ndim == 1
    w = _plain(np.atleast_2d(w))
    if y.size != n or h.size != n or w.shape[1] != n:
        raise ValueError(f"x, y, h and weights must have the same length, got {n}, {y.size}, "
                         f"{h.size}, {w.shape[1]}")
    tables = kernel_tables(kernel)
    if zrange is not None:
        if z is None:
            raise ValueError("zrange needs the line-of-sight positions z")
        frac = tables.slab_fraction(np.asarray(z, dtype=np.float64), h, *zrange)
        # NaN fractions (from bad h) are kept so that deposit_map reports them.
        keep = ~(frac <= 0)
        x, y, h = x[keep], y[keep], h[keep]
        w = _plain(w[:, keep] * frac[keep])
    image = deposit_map(x, y, h, w, (xmin, xmax, ymin, ymax), (ny, nx), tables,
                        h_level=np.inf if exact else H_LEVEL)
    return image[0] if single else image


def _extent_in(extent: u.Quantity, unit: u.UnitBase) -> tuple[float, float, float, float]:
    values = u.Quantity(extent).to_value(unit)
    if np.shape(values) != (4,):
        raise ValueError(f"extent must hold 4 values (xmin, xmax, ymin, ymax), got {extent}")
    return tuple(float(v) for v in values)


def surface_density(
    x: u.Quantity,
    y: u.Quantity,
    h: u.Quantity,
    mass: u.Quantity,
    extent: u.Quantity,
    npix: int | tuple[int, int],
    kernel: str = "cubic_spline",
    *,
    z: u.Quantity | None = None,
    zrange: u.Quantity | None = None,
) -> u.Quantity:
    """Projected surface density (e.g. Msun/kpc^2) of a particle set.

    Parameters
    ----------
    x, y, h : Quantity
        Image-plane positions and kernel support radii (lengths).
    mass : Quantity
        Per-particle amount to project (a mass, or e.g. a SFR in Msun/yr).
    extent : Quantity, shape (4,)
        (xmin, xmax, ymin, ymax).
    npix : int or (ny, nx)
        Grid size.
    kernel : {"cubic_spline", "wendland_c2"}
        SPH kernel.
    z : Quantity, optional
        Line-of-sight positions, needed with ``zrange``.
    zrange : Quantity, shape (2,), optional
        Line-of-sight slab, see :func:`project_particles`.

    Returns
    -------
    Quantity, shape (ny, nx)
        ``mass.unit / length**2``; pixels no kernel reaches are 0 (a true zero density).
    """
    unit = x.unit
    ext = _extent_in(extent, unit)
    ny, nx = _grid_shape(npix)
    pixel_area = (ext[1] - ext[0]) / nx * (ext[3] - ext[2]) / ny
    image = project_particles(
        x.to_value(unit), y.to_value(unit), u.Quantity(h).to_value(unit), mass.value, ext,
        (ny, nx), kernel,
        z=None if z is None else z.to_value(unit),
        zrange=None if zrange is None else tuple(u.Quantity(zrange).to_value(unit)),
    )
    return image / pixel_area * (mass.unit / unit**2)


def weighted_average(
    x: u.Quantity,
    y: u.Quantity,
    h: u.Quantity,
    quantity: u.Quantity,
    weight: u.Quantity,
    extent: u.Quantity,
    npix: int | tuple[int, int],
    kernel: str = "cubic_spline",
    *,
    z: u.Quantity | None = None,
    zrange: u.Quantity | None = None,
) -> tuple[u.Quantity, np.ndarray]:
    """Weighted line-of-sight average :math:`\\sum w q / \\sum w` per pixel.

    Both sums are projected in one pass with the same kernels (e.g. ``weight`` = mass for a
    mass-weighted temperature, or mass/density = volume for a volume-weighted field).

    Parameters
    ----------
    x, y, h : Quantity
        Image-plane positions and kernel support radii (lengths).
    quantity : Quantity, shape (N,)
        Per-particle value to average.
    weight : Quantity, shape (N,)
        Per-particle non-negative weight.
    extent : Quantity, shape (4,)
        (xmin, xmax, ymin, ymax).
    npix : int or (ny, nx)
        Grid size.
    kernel : {"cubic_spline", "wendland_c2"}
        SPH kernel.
    z, zrange : Quantity, optional
        Line-of-sight slab, see :func:`project_particles`.

    Returns
    -------
    average : Quantity, shape (ny, nx)
        In ``quantity.unit``; NaN where no weight reaches the pixel.
    covered : ndarray of bool, shape (ny, nx)
        True where the summed weight is positive.
    """
    unit = x.unit
    wv = u.Quantity(weight).value
    if np.any(wv < 0):
        raise ValueError("weights of a weighted average must be >= 0")
    qv = u.Quantity(quantity).value
    sums = project_particles(
        x.to_value(unit), y.to_value(unit), u.Quantity(h).to_value(unit),
        np.stack([wv, wv * qv]), _extent_in(extent, unit), npix, kernel,
        z=None if z is None else z.to_value(unit),
        zrange=None if zrange is None else tuple(u.Quantity(zrange).to_value(unit)),
    )
    covered = sums[0] > 0
    average = np.full(sums[0].shape, np.nan)
    average[covered] = sums[1][covered] / sums[0][covered]
    return average * u.Quantity(quantity).unit, covered
