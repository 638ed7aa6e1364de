"""Mass-conserving SPH projection of particles onto a pixel grid (numba, CPU).

Each particle's projected kernel (support radius ``h``, see :mod:`alchemy_obs.maps.kernels`)
is **integrated over each pixel's area**, so a pixel receives ``weight * (kernel mass in the
pixel)`` and a map is a sum of weights per pixel. Three regimes, all exact in total:

* support inside one pixel: the whole weight goes to that pixel;
* support smaller than ``_H_CORNER`` pixels: pixel integrals are differences of the
  tabulated cumulative kernel :math:`C(a, b)` at the pixel corners; the corner values are
  shared by neighbouring pixels, so the sum over any block of pixels telescopes exactly to
  the kernel mass inside the block;
* larger supports: the pixel mean is :math:`F + \\nabla^2 F/24` (in pixel units) at the pixel
  centre, fourth-order accurate, evaluated from piecewise polynomials (no table look-ups, so
  the pixel loop vectorises); the central pixel(s), where :math:`F` has a :math:`u^2 \\ln u`
  term, get 3x3 Gauss points instead; then all are rescaled so the pixels sum to the kernel
  mass inside the map (from :math:`C`, exactly one for a kernel entirely inside).

Particles straddling the map edge therefore deposit exactly their inside part, and the total
of a map equals the summed weights of particles whose kernels lie inside it to round-off.

Particles are split among threads in interleaved chunks, each thread owning an image buffer
(no races); buffers are summed at the end. Accumulation is float64.

Image orientation: ``image[j, i]`` covers ``x`` in pixel ``i`` and ``y`` in pixel ``j``
(display with ``origin="lower"``).
"""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from numba import njit, prange

from alchemy_obs.maps.kernels import POLY_BREAKS, kernel_tables

__all__ = ["project_particles", "surface_density", "weighted_average"]

#: Support radius (pixels) from which the Laplacian-corrected pixel-centre rule is used.
_H_CORNER = 4.0
#: Pixels within this many of the particle's pixel use 3x3 Gauss points (large kernels);
#: from _H_FAR pixels on, only the particle's own pixel does.
_NEAR = 1
_H_FAR = 12.0
_GX, _GW = np.polynomial.legendre.leggauss(3)
_U0 = np.uint64(0)
_B1, _B2 = POLY_BREAKS[1], POLY_BREAKS[2]
_SEG_SCALE0 = 2.0 / POLY_BREAKS[1]
_SEG_SCALE1 = 2.0 / (POLY_BREAKS[2] - POLY_BREAKS[1])
_SEG_SCALE2 = 2.0 / (POLY_BREAKS[3] - POLY_BREAKS[2])
#: Reassociation lets LLVM vectorise the pixel loops; no finite-math assumptions are made.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(inline="always", fastmath=_FAST)
def _marg(marg, v):
    """C(1, v) for -1 < v < 1 from its tabulated half, using C(1, -v) = 1 - C(1, v)."""
    n = marg.size - 1
    f = abs(v) * n
    k = min(int(f), n - 1)
    t = f - k
    m = marg[k] + t * (marg[k + 1] - marg[k])
    return m if v >= 0.0 else 1.0 - m


@njit(inline="always", fastmath=_FAST)
def _cval(quad, marg, n, a, b):
    """Kernel mass with x/H < a and y/H < b (exact where a or b is outside (-1, 1)).

    Symmetry reduces (a, b) to the tabulated quadrant: C(-a, b) = C(1, b) - C(a, b).
    """
    if a <= -1.0 or b <= -1.0:
        return 0.0
    if a >= 1.0:
        return 1.0 if b >= 1.0 else _marg(marg, b)
    if b >= 1.0:
        return _marg(marg, a)
    fa = abs(a) * n
    fb = abs(b) * n
    ia = min(int(fa), n - 1)
    ib = min(int(fb), n - 1)
    ta = fa - ia
    tb = fb - ib
    q = ((1.0 - tb) * ((1.0 - ta) * quad[ib, ia] + ta * quad[ib, ia + 1])
         + tb * ((1.0 - ta) * quad[ib + 1, ia] + ta * quad[ib + 1, ia + 1]))
    if a >= 0.0:
        return q if b >= 0.0 else _marg(marg, a) - q
    if b >= 0.0:
        return _marg(marg, b) - q
    return _marg(marg, b) - _marg(marg, -a) + q


@njit(inline="always", fastmath=_FAST)
def _column_at(packed, q2, nproj):
    """Tabulated column kernel at s^2 = q2; q2 >= 1 reads the zero last row."""
    f = min(q2, 1.0) * nproj
    k = np.uint64(f)
    return packed[k, 0] + (f - k) * packed[k, 1]


@njit(inline="always", fastmath=_FAST)
def _h9(x, c0, c1, c2, c3, c4, c5, c6, c7, c8):
    return c0 + x * (c1 + x * (c2 + x * (c3 + x * (c4 + x * (
        c5 + x * (c6 + x * (c7 + x * c8)))))))


@njit(inline="always", fastmath=_FAST)
def _column_row(c, da2, db2, lo, hi, out):
    """Column kernel polynomials ``c`` at s^2 = da2[e] + db2, e in [lo, hi), into ``out``.

    The three segments are all evaluated and one selected, without branches or table
    look-ups; coefficients sit in locals (no aliasing with ``out``) and indices are unsigned
    (no negative-index wraparound), so the loop vectorises. Returns the sum.
    """
    (c00, c01, c02, c03, c04,
     c05, c06, c07, c08) = c[0]
    (c10, c11, c12, c13, c14,
     c15, c16, c17, c18) = c[1]
    (c20, c21, c22, c23, c24,
     c25, c26, c27, c28) = c[2]
    total = 0.0
    for e in range(np.uint64(lo), np.uint64(hi)):
        q2 = da2[e] + db2
        x0 = q2 * _SEG_SCALE0 - 1.0
        x1 = (q2 - _B1) * _SEG_SCALE1 - 1.0
        x2 = (q2 - _B2) * _SEG_SCALE2 - 1.0
        v0 = _h9(x0, c00, c01, c02, c03, c04, c05, c06, c07, c08)
        v1 = _h9(x1, c10, c11, c12, c13, c14, c15, c16, c17, c18)
        v2 = _h9(x2, c20, c21, c22, c23, c24, c25, c26, c27, c28)
        v = v2 if q2 >= _B2 else (v1 if q2 >= _B1 else v0)
        v = max(v, 0.0) if q2 < 1.0 else 0.0
        out[e] = v
        total += v
    return total


@njit(inline="always", fastmath=_FAST)
def _deposit_row(img, w, p, nw, row, start, vals, count, scale):
    for k in range(nw):
        wk = w[k, p] * scale
        target = img[k, row, start:start + count]
        for e in range(_U0, np.uint64(count)):
            target[e] += wk * vals[e]


@njit(parallel=True, cache=True, fastmath=_FAST)
def _project(x, y, h, w, xmin, ymin, dx, dy, nx, ny, packed, poly, quad, marg, nchunks):
    n = x.size
    nw = w.shape[0]
    nq = quad.shape[0] - 1
    nproj = packed.shape[0] - 1
    inv_dx = 1.0 / dx
    inv_dy = 1.0 / dy
    out = np.zeros((nchunks, nw, ny, nx))
    for c in prange(nchunks):
        img = out[c]
        ex = np.empty(nx + 2)
        prev = np.empty(nx + 2)
        cur = np.empty(nx + 2)
        diff = np.empty(nx + 2)
        da2 = np.empty(nx + 2)
        box = np.empty(ny * nx)
        coef = np.empty((poly.shape[1], poly.shape[2]))
        rlo = np.empty(ny + 2, np.int64)
        rhi = np.empty(ny + 2, np.int64)
        for p in range(c, n, nchunks):
            px = (x[p] - xmin) * inv_dx
            py = (y[p] - ymin) * inv_dy
            hx = h[p] * inv_dx
            hy = h[p] * inv_dy
            # Reject kernels entirely off the map before any integer conversion.
            if px + hx < 0.0 or px - hx >= nx or py + hy < 0.0 or py - hy >= ny:
                continue
            i0 = int(math.floor(max(px - hx, -1.0)))
            i1 = int(math.floor(min(px + hx, nx + 0.5)))
            j0 = int(math.floor(max(py - hy, -1.0)))
            j1 = int(math.floor(min(py + hy, ny + 0.5)))
            if i0 == i1 and j0 == j1:
                if 0 <= i0 < nx and 0 <= j0 < ny:
                    for k in range(nw):
                        img[k, j0, i0] += w[k, p]
                continue
            ia0 = max(i0, 0)
            ia1 = min(i1, nx - 1)
            jb0 = max(j0, 0)
            jb1 = min(j1, ny - 1)
            mx = ia1 - ia0 + 1
            my = jb1 - jb0 + 1
            if hx < _H_CORNER or hy < _H_CORNER:
                ihx = 1.0 / hx
                ihy = 1.0 / hy
                # Pixel integrals from the cumulative table at shared corners.
                for e in range(mx + 1):
                    ex[e] = (ia0 + e - px) * ihx
                b = (jb0 - py) * ihy
                for e in range(mx + 1):
                    prev[e] = _cval(quad, marg, nq, ex[e], b)
                for l in range(my):
                    b = (jb0 + l + 1 - py) * ihy
                    for e in range(mx + 1):
                        cur[e] = _cval(quad, marg, nq, ex[e], b)
                    for e in range(mx):
                        # Clamp round-off negatives (~1e-16) where the kernel is absent.
                        diff[e] = max(cur[e + 1] - cur[e] - prev[e + 1] + prev[e], 0.0)
                    _deposit_row(img, w, p, nw, jb0 + l, ia0, diff, mx, 1.0)
                    for e in range(mx + 1):
                        prev[e] = cur[e]
                continue
            # Large kernel: pixel mean = F + lap F / 24 (pixel units) at the pixel centre.
            lapc = (1.0 / (hx * hx) + 1.0 / (hy * hy)) / 48.0
            for k in range(poly.shape[1]):
                for j in range(poly.shape[2]):
                    coef[k, j] = poly[0, k, j] + lapc * poly[1, k, j]
            for e in range(mx):
                da = (ia0 + e + 0.5 - px) / hx
                da2[e] = da * da
            total = 0.0
            for l in range(my):
                db = (jb0 + l + 0.5 - py) / hy
                db2 = db * db
                # Only pixel centres inside the support circle carry kernel: the row's
                # range [lo, hi) is evaluated and later deposited.
                lo, hi = 0, 0
                if db2 < 1.0:
                    half = hx * math.sqrt(1.0 - db2)
                    lo = max(int(math.floor(px - half - 0.5)) - ia0, 0)
                    hi = max(min(int(math.ceil(px + half - 0.5)) - ia0 + 1, mx), lo)
                rlo[l] = lo
                rhi[l] = hi
                total += _column_row(coef, da2, db2, lo, hi, box[l * mx:(l + 1) * mx])
            # The column kernel has a u^2 ln u term at its centre where the Taylor rule
            # fails: the central pixels get 3x3 Gauss-Legendre points instead.
            ic = int(math.floor(px))
            jc = int(math.floor(py))
            near = _NEAR if min(hx, hy) < _H_FAR else 0
            for jj in range(max(jc - near, jb0), min(jc + near, jb1) + 1):
                for ii in range(max(ic - near, ia0), min(ic + near, ia1) + 1):
                    v = 0.0
                    for gy in range(_GX.size):
                        bb = (jj + 0.5 + 0.5 * _GX[gy] - py) / hy
                        for gx in range(_GX.size):
                            aa = (ii + 0.5 + 0.5 * _GX[gx] - px) / hx
                            v += 0.25 * _GW[gx] * _GW[gy] * _column_at(
                                packed, aa * aa + bb * bb, nproj)
                    l = jj - jb0
                    e = ii - ia0
                    if rlo[l] >= rhi[l]:
                        rlo[l] = e
                        rhi[l] = e + 1
                        box[l * mx + e] = 0.0
                    while e < rlo[l]:
                        rlo[l] -= 1
                        box[l * mx + rlo[l]] = 0.0
                    while e >= rhi[l]:
                        box[l * mx + rhi[l]] = 0.0
                        rhi[l] += 1
                    total += v - box[l * mx + e]
                    box[l * mx + e] = v
            if total <= 0.0:
                continue
            inside = 1.0
            if ia0 != i0 or ia1 != i1 or jb0 != j0 or jb1 != j1:
                a0 = (ia0 - px) / hx
                a1 = (ia1 + 1 - px) / hx
                b0 = (jb0 - py) / hy
                b1 = (jb1 + 1 - py) / hy
                inside = (_cval(quad, marg, nq, a1, b1) - _cval(quad, marg, nq, a0, b1)
                          - _cval(quad, marg, nq, a1, b0) + _cval(quad, marg, nq, a0, b0))
            scale = inside / total
            for l in range(my):
                lo = rlo[l]
                _deposit_row(img, w, p, nw, jb0 + l, ia0 + lo,
                             box[l * mx + lo:l * mx + rhi[l]], rhi[l] - lo, scale)
    result = np.zeros((nw, ny, nx))
    for c in range(nchunks):
        result += out[c]
    return result


# Particles go round-robin into this many image buffers, summed in a fixed order at the
# end. The number is fixed, not numba's thread count, so that a map is the same to the last
# bit whatever the threads (a thread pool, Dask workers, another machine); it also bounds the
# threads a projection can use.
_N_BUFFERS = 16


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
) -> np.ndarray:
    """Sum of particle weights per pixel with pixel-integrated SPH kernels.

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
    h = _plain(np.broadcast_to(np.asarray(h, dtype=np.float64), (n,)))
    w = np.asarray(weights, dtype=np.float64)
    single = w.ndim == 1
    w = _plain(np.atleast_2d(w))
    if y.size != n or w.shape[1] != n:
        raise ValueError(
            f"x, y and weights must have the same length, got {n}, {y.size}, {w.shape[1]}"
        )
    for name, arr in (("x", x), ("y", y), ("h", h)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite values")
    if np.any(h < 0):
        raise ValueError("smoothing lengths h must be >= 0")
    tables = kernel_tables(kernel)
    if zrange is not None:
        if z is None:
            raise ValueError("zrange needs the line-of-sight positions z")
        frac = tables.slab_fraction(np.asarray(z, dtype=np.float64), h, *zrange)
        keep = frac > 0
        x, y, h = x[keep], y[keep], h[keep]
        w = _plain(w[:, keep] * frac[keep])
    image = _project(
        x, y, h, w, xmin, ymin, (xmax - xmin) / nx, (ymax - ymin) / ny, nx, ny,
        tables.packed, tables.poly, tables.quadrant, tables.marginal,
        max(1, min(_N_BUFFERS, x.size)),
    )
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
