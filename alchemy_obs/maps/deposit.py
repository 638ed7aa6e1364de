"""Pixel-integrated SPH kernel deposit (numba, CPU): the one implementation behind maps and cubes.

Each particle's projected kernel (support radius ``h``, see :mod:`alchemy_obs.maps.kernels`)
is **integrated over each pixel's area**, so a pixel receives ``weight * (kernel mass in the
pixel)``. :func:`pixel_weights` computes one particle's pixel weights; :func:`deposit_map` sums
weights per pixel for many particles (:func:`alchemy_obs.maps.project.project_particles`),
and :func:`alchemy_obs.observe.sky.hi_cube` spreads the same pixel weights over channels.
Three regimes, all exact in total:

* support inside one pixel: the whole weight goes to that pixel;
* support smaller than ``_H_CORNER`` pixels: pixel integrals are differences of the
  tabulated cumulative kernel :math:`C(a, b)` at the pixel corners; the corner values are
  shared by neighbouring pixels, so the sum over any block of pixels telescopes exactly to
  the kernel mass inside the block;
* larger supports: the pixel mean is :math:`F + \\nabla^2 F/24` (in pixel units) at the pixel
  centre, fourth-order accurate, evaluated in float32 from piecewise polynomials over the
  kernel's box of pixels as one flat array (no table look-ups, so the loops vectorise); the
  central pixel(s), where :math:`F` has a :math:`u^2 \\ln u` term, get 3x3 Gauss points
  instead; then all are rescaled, in float64, so the pixels sum to the kernel mass inside
  the map (from :math:`C`, exactly one for a kernel entirely inside).

Particles straddling the map edge therefore deposit exactly their inside part, and the total
of a map equals the summed weights of particles whose kernels lie inside it to round-off.

Wide kernels go through an image pyramid (:func:`deposit_map`), so that no particle costs
more than a few hundred pixels: a kernel with support radius above :data:`H_LEVEL` (10)
pixels is integrated, as above, over the pixels of the level ``L`` (pixels ``2**L`` times
the map's) on which it spans ``H_LEVEL / 2`` to ``H_LEVEL`` pixels. From the coarsest level
down, the sum so far is prolonged to the next finer level and that level's own map added.
The prolongation (:func:`prolong`) splits each pixel in two along one axis and then the
other, giving each half the integral of the degree-6 polynomial through the means of the
seven pixels around it: exact for such polynomials, and exactly the pixel's mass between the
two halves (to round-off), clamped so that both keep its sign. A prolonged kernel is within
0.4 % (L1) of its exact pixel integrals and the map's mass is unchanged. Each level's grid
holds the finer one and ``_MARGIN`` of its own pixels beyond it; its origin is the map's,
so a kernel cut by the left or bottom map edge keeps exactly its inside part, and by the
right or top edge too when the map's side is a multiple of ``2**L`` pixels (otherwise the
coarse pixel straddling that edge is split by the prolongation, not by the kernel).

The map is cut into bands of image rows holding about equal work, and the particles are
grouped by band (a counting sort that keeps input order within a band); each band has its
own float64 buffer covering its rows and the reach of its kernels (no races, and small
enough to stay in cache), processed by one thread. The buffers are summed in band order at
the end.

Image orientation: ``image[j, i]`` covers ``x`` in pixel ``i`` and ``y`` in pixel ``j``
(display with ``origin="lower"``).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit, prange

from alchemy_obs.maps.kernels import POLY_BREAKS, KernelTables

__all__ = ["FASTMATH", "H_LEVEL", "add_prolonged", "coarser_grid", "deposit_map",
           "kernel_box_size", "pixel_weights", "polynomial_segments", "prolong",
           "pyramid_levels", "weights_scratch"]

#: Support radius (pixels) from which the Laplacian-corrected pixel-centre rule is used.
_H_CORNER = 4.0
#: Kernels spanning at most this many pixel edges per axis take all their corners at once
#: (no row loop); beyond, row by row is faster.
_SMALL = 5
#: Pixels within this many of the particle's pixel use 3x3 Gauss points (large kernels);
#: from _H_FAR pixels on, only the particle's own pixel does.
_NEAR = 1
_H_FAR = 12.0
#: Kernels with support radii above this many pixels go to a coarser level of the pyramid,
#: where they span more than half as many pixels. 10 keeps each prolonged kernel within
#: 0.4 % (L1) of its exact pixel integrals (just above 5 pixels on its level; 0.02 % at 10):
#: ``python benchmarks/projection.py --levels``.
H_LEVEL = 10.0
#: Each coarser level reaches this many of its pixels beyond the next finer one on every
#: side: the reach of the prolongation's stencil.
_MARGIN = 3
_GX, _GW = np.polynomial.legendre.leggauss(3)
_U0 = np.uint64(0)
_BREAKS = np.array(POLY_BREAKS)
#: Reassociation lets LLVM vectorise the pixel loops; no finite-math assumptions are made.
#: Without it the projection is 1.8x slower. The price: numba re-optimises the code it
#: reloads from its cache, so a process that compiled the projection and one that loaded
#: it may differ in the last bit of a few pixels.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(inline="always", fastmath=FASTMATH)
def _axis(v, marg, n):
    """One axis of a corner of the cumulative table C, folded onto the tabulated quadrant.

    Returns (outside below, v < 0, sign of v, C(1, |v|), table index and fraction of |v|),
    with |v| clipped to 1. With these, C(a, b) is branch-free (see :func:`_corner`).
    """
    f = min(abs(v), 1.0) * n
    # Unsigned indices: no negative-index wraparound code in the table reads.
    k = np.uint64(min(int(f), n - 1))
    t = f - k
    neg = 1.0 if v < 0.0 else 0.0
    # (1 - t) A + t B, not A + t (B - A): exact at t = 0 and t = 1.
    m = (1.0 - t) * marg[k] + t * marg[k + np.uint64(1)]
    return v <= -1.0, neg, 1.0 - 2.0 * neg, m, k, t


@njit(inline="always", fastmath=FASTMATH)
def _corner(quad, zero_a, neg_a, sign_a, m_a, ka, ta, zero_b, neg_b, sign_b, m_b, kb, tb):
    """C(a, b), the kernel mass with x/H < a and y/H < b, from the two axes' fold data.

    Symmetry reduces (a, b) to the quadrant Q(|a|, |b|): with M(b) = C(1, b),
    C(a, b) = [a < 0] M(b) + sign(a) ([b < 0] C(1, |a|) + sign(b) Q(|a|, |b|)).
    """
    ka1 = ka + np.uint64(1)
    kb1 = kb + np.uint64(1)
    q = ((1.0 - tb) * ((1.0 - ta) * quad[kb, ka] + ta * quad[kb, ka1])
         + tb * ((1.0 - ta) * quad[kb1, ka] + ta * quad[kb1, ka1]))
    full_b = neg_b + sign_b * m_b
    c = neg_a * full_b + sign_a * (neg_b * m_a + sign_b * q)
    return 0.0 if zero_a or zero_b else c


@njit(inline="always", fastmath=FASTMATH)
def _cval(quad, marg, n, a, b):
    """Kernel mass with x/H < a and y/H < b (exact where a or b is outside (-1, 1))."""
    za, na, sa, ma, ka, ta = _axis(a, marg, n)
    zb, nb, sb, mb, kb, tb = _axis(b, marg, n)
    return _corner(quad, za, na, sa, ma, ka, ta, zb, nb, sb, mb, kb, tb)


@njit(inline="always", fastmath=FASTMATH)
def _column_at(packed, q2, nproj):
    """Tabulated column kernel at s^2 = q2; q2 >= 1 reads the zero last row."""
    f = min(q2, 1.0) * nproj
    k = np.uint64(f)
    return packed[k, 0] + (f - k) * packed[k, 1]


@njit(inline="always", fastmath=FASTMATH)
def _h9(x, c0, c1, c2, c3, c4, c5, c6, c7, c8):
    # Estrin's scheme: half the dependency depth of Horner's, so the pixel loop is not
    # bound by the latency of one long chain.
    x2 = x * x
    x4 = x2 * x2
    low = (c0 + c1 * x) + (c2 + c3 * x) * x2
    high = (c4 + c5 * x) + (c6 + c7 * x) * x2
    return low + (high + c8 * x4) * x4


@njit(inline="always", fastmath=FASTMATH)
def _fill_outer(c, scale, offset, q2, n, out):
    """out[i] = outer polynomial segment ``c`` (float32) at s^2 = q2[i] < 1, else 0.

    Coefficients sit in locals (no aliasing with ``out``), indices are unsigned (no
    negative-index wraparound) and no array views are made (each costs reference counting),
    so the loop vectorises, eight pixels per instruction.
    """
    (c0, c1, c2, c3, c4, c5, c6, c7, c8) = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                                            c[8])
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for i in range(_U0, np.uint64(n)):
        s2 = q2[i]
        v = max(_h9(s2 * scale - offset, c0, c1, c2, c3, c4, c5, c6, c7, c8), zero)
        out[i] = v if s2 < one else zero


@njit(inline="always", fastmath=FASTMATH)
def _fill_inner(c, scale, offset, top, q2, lo, hi, out):
    """out[i] = polynomial segment ``c`` at s^2 = q2[i] where q2[i] < top, lo <= i < hi."""
    (c0, c1, c2, c3, c4, c5, c6, c7, c8) = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                                            c[8])
    for i in range(np.uint64(lo), np.uint64(hi)):
        s2 = q2[i]
        v = _h9(s2 * scale - offset, c0, c1, c2, c3, c4, c5, c6, c7, c8)
        out[i] = v if s2 < top else out[i]


@njit(inline="always", fastmath=FASTMATH)
def _deposit_row(img, part, i, nw, row, start, vals, at, count, scale):
    """img[k, row, start + e] += weight_k * scale * vals[at + e] for e < count."""
    s = np.uint64(start)
    a = np.uint64(at)
    for k in range(nw):
        wk = part[i, 4 + k] * scale
        for e in range(_U0, np.uint64(count)):
            img[k, row, s + e] += wk * vals[a + e]


@njit(inline="always")
def _in_pixels(x, y, h, p, xmin, ymin, inv_dx, inv_dy):
    """Particle ``p``'s position and support radii in pixel units."""
    return (x[p] - xmin) * inv_dx, (y[p] - ymin) * inv_dy, h[p] * inv_dx, h[p] * inv_dy


@njit(inline="always")
def _row_of(px, py, hx, hy, nx, ny):
    """Image row of a particle (clipped to the map), or -1 if its kernel is off the map."""
    # Kernels entirely off the map are dropped before any integer conversion.
    if px + hx < 0.0 or px - hx >= nx or py + hy < 0.0 or py - hy >= ny:
        return -1
    return min(max(int(math.floor(py)), 0), ny - 1)


@njit(inline="always")
def _level_of(hx, hy, h_level):
    """Pyramid level of a kernel with support radii ``hx, hy`` in map pixels.

    The smallest level ``L`` with ``min(hx, hy) / 2**L <= h_level``: on it the kernel spans
    more than ``h_level / 2`` pixels (the prolongation's accuracy) and at most ``h_level``
    (its cost).
    """
    m = min(hx, hy)
    level = 0
    while m > h_level:
        m *= 0.5
        level += 1
    return level


@njit(parallel=True, cache=True)
def _sort_into_bands(x, y, h, w, xmin, ymin, inv_dx, inv_dy, nx, ny, nbands, space, level,
                     h_level):
    """Particles of pyramid ``level`` touching the map, in pixel units, grouped by band.

    Returns a status (0, or the code of the first bad input: 1, 2, 3 non-finite x, y, h;
    4 negative h), ``part`` (rows ``px, py, hx, hy, weights...`` grouped by band, in
    ``space``), the first particle of each band (``nbands + 1`` entries) and each band's
    image rows ``[row_lo, row_hi)``, which include the reach of its kernels, the
    largest ``h`` among them, and the indices (in input order) of the particles touching the
    map whose level is above ``level`` (the map is that level's grid; the support radii in
    the finest map's pixels are ``2**level`` times these). Bands hold about equal work ((hx + 1)(hy + 1) per particle),
    so threads stay balanced.

    A parallel counting sort over ``nbands`` contiguous chunks of the input: each chunk
    counts its rows; the bands are cut from the row totals; then each chunk scatters its
    particles after those of the chunks before it, so every band holds its particles in
    input order, as a serial pass would put them. The chunks are set by the input alone,
    like the bands, so the per-chunk work sums (and with them the band limits) do not
    depend on the number of threads. Sorting by band rather than by row writes a few
    streams instead of one per row, and a band's buffer stays in cache whatever the order
    within it.
    """
    n = x.size
    nw = w.shape[0]
    nchunks = nbands
    count = np.zeros((nchunks, ny), np.int64)
    work = np.zeros((nchunks, ny))
    top = np.full((nchunks, ny), ny, np.int64)
    bottom = np.zeros((nchunks, ny), np.int64)
    status = np.zeros(nchunks, np.int64)
    hmax = np.zeros(nchunks)
    n_up = np.zeros(nchunks + 1, np.int64)
    # Exact: a power of two, so level-0 support radii are recovered bit for bit.
    to_finest = 2.0**level
    first = np.zeros(nbands + 1, np.int64)
    row_lo = np.zeros(nbands, np.int64)
    row_hi = np.zeros(nbands, np.int64)
    for c in prange(nchunks):
        for p in range(c * n // nchunks, (c + 1) * n // nchunks):
            if not math.isfinite(x[p]):
                status[c] = 1
                break
            if not math.isfinite(y[p]):
                status[c] = 2
                break
            if not math.isfinite(h[p]):
                status[c] = 3
                break
            if h[p] < 0.0:
                status[c] = 4
                break
            px, py, hx, hy = _in_pixels(x, y, h, p, xmin, ymin, inv_dx, inv_dy)
            r = _row_of(px, py, hx, hy, nx, ny)
            if r < 0:
                continue
            if _level_of(hx * to_finest, hy * to_finest, h_level) > level:
                n_up[c + 1] += 1
                continue
            count[c, r] += 1
            hmax[c] = max(hmax[c], h[p])
            work[c, r] += (min(hx, nx) + 1.0) * (min(hy, ny) + 1.0)
            top[c, r] = min(top[c, r], max(int(math.floor(py - hy)), 0))
            bottom[c, r] = max(bottom[c, r],
                               min(int(math.floor(min(py + hy, ny + 0.5))), ny - 1) + 1)
    for c in range(nchunks):
        # The first chunk with a bad value holds the first bad value of the input.
        if status[c]:
            return (status[c], np.empty((0, 4 + nw)), first, row_lo, row_hi, 0.0,
                    np.empty(0, np.int64))
    # Row totals, summed in chunk order.
    row_count = np.zeros(ny, np.int64)
    row_work = np.zeros(ny)
    row_top = np.full(ny, ny, np.int64)
    row_bottom = np.zeros(ny, np.int64)
    for r in range(ny):
        for c in range(nchunks):
            row_count[r] += count[c, r]
            row_work[r] += work[c, r]
            row_top[r] = min(row_top[r], top[c, r])
            row_bottom[r] = max(row_bottom[r], bottom[c, r])
    total = row_work.sum()
    band_end = np.zeros(nbands, np.int64)
    r = 0
    done = 0.0
    for b in range(nbands):
        lo, hi = ny, 0
        # A row joins the band if most of its work falls below the band's share (no bias
        # towards the first bands, which one thread takes together).
        while r < ny and (done + 0.5 * row_work[r] < total * (b + 1) / nbands
                          or b == nbands - 1):
            done += row_work[r]
            first[b + 1] += row_count[r]
            if row_count[r] > 0:
                lo = min(lo, row_top[r])
                hi = max(hi, row_bottom[r])
            r += 1
        row_lo[b] = lo
        row_hi[b] = max(hi, lo)
        band_end[b] = r
    for b in range(nbands):
        first[b + 1] += first[b]
    # fill[c, b]: where chunk c's next particle of band b goes.
    band_of_row = np.empty(ny, np.int64)
    fill = np.empty((nchunks, nbands), np.int64)
    r = 0
    for b in range(nbands):
        at = first[b]
        for c in range(nchunks):
            fill[c, b] = at
            for rr in range(r, band_end[b]):
                at += count[c, rr]
        for rr in range(r, band_end[b]):
            band_of_row[rr] = b
        r = band_end[b]
    part = space[:first[nbands] * (4 + nw)].reshape((first[nbands], 4 + nw))
    for c in range(nchunks):
        n_up[c + 1] += n_up[c]
    up = np.empty(n_up[nchunks], np.int64)
    # The rows are computed again rather than stored: less memory traffic.
    for c in prange(nchunks):
        for p in range(c * n // nchunks, (c + 1) * n // nchunks):
            px, py, hx, hy = _in_pixels(x, y, h, p, xmin, ymin, inv_dx, inv_dy)
            r = _row_of(px, py, hx, hy, nx, ny)
            if r < 0:
                continue
            if _level_of(hx * to_finest, hy * to_finest, h_level) > level:
                up[n_up[c]] = p
                n_up[c] += 1
                continue
            b = band_of_row[r]
            i = fill[c, b]
            fill[c, b] += 1
            part[i, 0] = px
            part[i, 1] = py
            part[i, 2] = hx
            part[i, 3] = hy
            for k in range(nw):
                part[i, 4 + k] = w[k, p]
    return 0, part, first, row_lo, row_hi, hmax.max(), up



@njit(cache=True)
def polynomial_segments(poly):
    """Scale, offset and upper bound in s^2 of each polynomial segment, in float32.

    Segment k of the polynomials takes x = s^2 * scale_k - offset_k.
    """
    nseg = poly.shape[1]
    seg_scale = np.empty(nseg, np.float32)
    seg_offset = np.empty(nseg, np.float32)
    seg_top = np.empty(nseg, np.float32)
    for k in range(nseg):
        seg_scale[k] = 2.0 / (_BREAKS[k + 1] - _BREAKS[k])
        seg_offset[k] = 2.0 * _BREAKS[k] / (_BREAKS[k + 1] - _BREAKS[k]) + 1.0
        seg_top[k] = _BREAKS[k + 1]
    return seg_scale, seg_offset, seg_top


@njit(inline="always")
def kernel_box_size(hx_max, hy_max, nx, ny):
    """Pixels of the largest kernel's box (support radii in pixels), at most the map's."""
    return ((min(int(2.0 * hx_max) + 3, nx + 2) + 1)
            * (min(int(2.0 * hy_max) + 3, ny + 2) + 1))


@njit(inline="always")
def weights_scratch(nx, ny, box_size, poly):
    """Work arrays of :func:`pixel_weights` for one thread: row-sized, and kernel-box-sized."""
    return (np.empty(nx + 2), np.empty(nx + 2), np.empty(nx + 2, np.bool_),
            np.empty(nx + 2), np.empty(nx + 2), np.empty(nx + 2), np.empty(nx + 2, np.uint64),
            np.empty(nx + 2), np.empty(nx + 2), np.empty((_SMALL + 2, _SMALL + 2)),
            np.empty((2 * _NEAR + 1) * _GX.size), np.empty((2 * _NEAR + 1) * _GX.size),
            np.empty(nx + 2, np.float32), np.empty(ny + 2, np.float32),
            np.empty(box_size, np.float32), np.empty(box_size, np.float32),
            np.empty((poly.shape[1], poly.shape[2]), np.float32), np.empty(box_size))


@njit(inline="always", fastmath=FASTMATH)
def pixel_weights(px, py, hx, hy, nx, ny, packed, poly, quad, marg, seg_scale, seg_offset,
             seg_top, scratch):
    """Kernel mass in each map pixel of one particle's box (pixel i spans [i, i + 1)).

    Returns ``(ia0, jb0, mx, my, scale, wide)``: the box's first column and row and its
    size on the map (``mx == 0`` if no pixel is reached), and where its row-major weights
    are: ``scale * box32`` (float32) if ``wide``, else ``box64`` (float64, ``scale == 1``),
    the last two arrays of ``scratch``.
    """
    (cur, prev, col_zero, col_neg, col_sign, col_m, col_k, col_t, col_full, grid, gauss_a2,
     gauss_b2, da2, dbs, q2, box, coef, box64) = scratch
    nq = quad.shape[0] - 1
    nproj = packed.shape[0] - 1
    nseg = poly.shape[1]
    i0 = int(math.floor(max(px - hx, -1.0)))
    i1 = int(math.floor(min(px + hx, nx + 0.5)))
    j0 = int(math.floor(max(py - hy, -1.0)))
    j1 = int(math.floor(min(py + hy, ny + 0.5)))
    ia0 = max(i0, 0)
    ia1 = min(i1, nx - 1)
    jb0 = max(j0, 0)
    jb1 = min(j1, ny - 1)
    mx = ia1 - ia0 + 1
    my = jb1 - jb0 + 1
    if mx <= 0 or my <= 0:
        return 0, 0, 0, 0, 1.0, False
    if i0 == i1 and j0 == j1:
        box64[0] = 1.0
        return ia0, jb0, 1, 1, 1.0, False
    ncx = i1 - i0
    ncy = j1 - j0
    if ncx <= _SMALL and ncy <= _SMALL:
        # A few pixels: grid[i, j] is C at the i-th pixel edge in x and j-th in y,
        # 0 below the support and a marginal (1 at the top right) above it; the
        # pixels are differences of four of them.
        for i in range(1, ncx + 1):
            (col_zero[i], col_neg[i], col_sign[i], col_m[i], col_k[i],
             col_t[i]) = _axis((i0 + i - px) / hx, marg, nq)
            grid[i, ncy + 1] = col_neg[i] + col_sign[i] * col_m[i]
            grid[i, 0] = 0.0
        for j in range(1, ncy + 1):
            zb, nb, sb, mb, kb, tb = _axis((j0 + j - py) / hy, marg, nq)
            grid[ncx + 1, j] = nb + sb * mb
            grid[0, j] = 0.0
            for i in range(1, ncx + 1):
                grid[i, j] = _corner(quad, col_zero[i], col_neg[i], col_sign[i],
                                     col_m[i], col_k[i], col_t[i], zb, nb, sb, mb, kb,
                                     tb)
        grid[0, 0] = 0.0
        grid[0, ncy + 1] = 0.0
        grid[ncx + 1, 0] = 0.0
        grid[ncx + 1, ncy + 1] = 1.0
        for jj in range(jb0, jb1 + 1):
            j = jj - j0
            for ii in range(ia0, ia1 + 1):
                i = ii - i0
                # Clamp round-off negatives (~1e-16) where the kernel is absent.
                box64[(jj - jb0) * mx + ii - ia0] = max(
                    grid[i + 1, j + 1] - grid[i, j + 1] - grid[i + 1, j] + grid[i, j], 0.0)
        return ia0, jb0, mx, my, 1.0, False
    if hx < _H_CORNER or hy < _H_CORNER:
        ihx = 1.0 / hx
        ihy = 1.0 / hy
        # Pixel integrals from the cumulative table at shared corners. Corners
        # beyond the support are 0 (left, below) or a marginal (right, above);
        # only the others read the 2D table. Column data are computed once.
        for e in range(mx + 1):
            (col_zero[e], col_neg[e], col_sign[e], col_m[e], col_k[e],
             col_t[e]) = _axis((ia0 + e - px) * ihx, marg, nq)
            col_full[e] = col_neg[e] + col_sign[e] * col_m[e]
        e0 = 1 if col_zero[0] else 0
        e1 = mx if (ia0 + mx - px) * ihx >= 1.0 else mx + 1
        for e in range(mx + 1):
            prev[e] = 0.0
        lower = prev
        upper = cur
        for l in range(-1, my):
            b = (jb0 + l + 1 - py) * ihy
            if b <= -1.0:
                # Rows below the support (only ever the one under the box) hold nothing.
                for e in range(max(l, 0) * mx, (l + 1) * mx):
                    box64[e] = 0.0
                continue
            if b >= 1.0:
                for e in range(mx + 1):
                    upper[e] = col_full[e]
            else:
                zb, nb, sb, mb, kb, tb = _axis(b, marg, nq)
                upper[0] = 0.0
                upper[mx] = nb + sb * mb
                for e in range(e0, e1):
                    upper[e] = _corner(quad, False, col_neg[e], col_sign[e],
                                       col_m[e], col_k[e], col_t[e], False, nb, sb, mb,
                                       kb, tb)
            if l >= 0:
                at = l * mx
                for e in range(mx):
                    # Clamp round-off negatives (~1e-16) where the kernel is absent.
                    box64[at + e] = max(upper[e + 1] - upper[e] - lower[e + 1] + lower[e],
                                        0.0)
            lower, upper = upper, lower
        return ia0, jb0, mx, my, 1.0, False
    # Large kernel: pixel mean = F + lap F / 24 (pixel units) at the pixel centre,
    # in float32 (the rescaling below restores the mass to float64 accuracy).
    lapc = (1.0 / (hx * hx) + 1.0 / (hy * hy)) / 48.0
    for k in range(nseg):
        for j in range(poly.shape[2]):
            coef[k, j] = poly[0, k, j] + lapc * poly[1, k, j]
    # The box of pixels is evaluated as one flat array (long vector loops, no work
    # per row): q2 = s^2 at the pixel centres, then the outer polynomial segment
    # everywhere and each inner one over the rows it reaches.
    pxr = px - ia0
    ihx = 1.0 / hx
    for e in range(mx):
        da = (e + 0.5 - pxr) * ihx
        da2[e] = da * da
    for l in range(my):
        db = (jb0 + l + 0.5 - py) / hy
        db2 = np.float32(db * db)
        dbs[l] = db2
        at = np.uint64(l * mx)
        for e in range(_U0, np.uint64(mx)):
            q2[at + e] = da2[e] + db2
    npx = mx * my
    _fill_outer(coef[nseg - 1], seg_scale[nseg - 1], seg_offset[nseg - 1], q2, npx, box)
    for k in range(nseg - 2, -1, -1):
        l0 = 0
        while l0 < my and dbs[l0] >= seg_top[k]:
            l0 += 1
        l1 = my
        while l1 > l0 and dbs[l1 - 1] >= seg_top[k]:
            l1 -= 1
        if l0 >= l1:
            break
        _fill_inner(coef[k], seg_scale[k], seg_offset[k], seg_top[k], q2, l0 * mx, l1 * mx,
                    box)
    # The column kernel has a u^2 ln u term at its centre where the Taylor rule
    # fails: the central pixels get 3x3 Gauss-Legendre points instead.
    ic = int(math.floor(px))
    jc = int(math.floor(py))
    near = _NEAR if min(hx, hy) < _H_FAR else 0
    ng = _GX.size
    i_lo = max(ic - near, ia0)
    i_hi = min(ic + near, ia1) + 1
    j_lo = max(jc - near, jb0)
    j_hi = min(jc + near, jb1) + 1
    ihy = 1.0 / hy
    for ii in range(i_lo, i_hi):
        for g in range(ng):
            aa = (ii + 0.5 + 0.5 * _GX[g] - px) * ihx
            gauss_a2[(ii - i_lo) * ng + g] = aa * aa
    for jj in range(j_lo, j_hi):
        for g in range(ng):
            bb = (jj + 0.5 + 0.5 * _GX[g] - py) * ihy
            gauss_b2[(jj - j_lo) * ng + g] = bb * bb
    for jj in range(j_lo, j_hi):
        for ii in range(i_lo, i_hi):
            v = 0.0
            for gy in range(ng):
                b2 = gauss_b2[(jj - j_lo) * ng + gy]
                row_sum = 0.0
                for gx in range(ng):
                    row_sum += _GW[gx] * _column_at(
                        packed, gauss_a2[(ii - i_lo) * ng + gx] + b2, nproj)
                v += _GW[gy] * row_sum
            box[(jj - jb0) * mx + ii - ia0] = 0.25 * v
    # The sum of the float32 values as deposited, in float64, so that the rescaled
    # deposit carries exactly the kernel mass inside the map.
    total = 0.0
    for i in range(_U0, np.uint64(npx)):
        total += box[i]
    if total <= 0.0:
        return 0, 0, 0, 0, 1.0, False
    inside = 1.0
    if ia0 != i0 or ia1 != i1 or jb0 != j0 or jb1 != j1:
        a0 = (ia0 - px) / hx
        a1 = (ia1 + 1 - px) / hx
        b0 = (jb0 - py) / hy
        b1 = (jb1 + 1 - py) / hy
        inside = (_cval(quad, marg, nq, a1, b1) - _cval(quad, marg, nq, a0, b1)
                  - _cval(quad, marg, nq, a1, b0) + _cval(quad, marg, nq, a0, b0))
    return ia0, jb0, mx, my, inside / total, True


# Without the runtime's reference counting (no arrays are made here; the work arrays come
# from the caller): numba counts references to the ~20 arrays that pixel_weights is handed
# on every call, about 100 ns per particle, as much as all the weights of a kernel inside
# one pixel (see observe.sky._deposit_cube, which does the same).
@njit(cache=True, fastmath=FASTMATH, _nrt=False)
def _project_band(part, p0, p1, img, r0, nw, nx, ny, packed, poly, quad, marg, seg_scale,
                  seg_offset, seg_top, scratch):
    """Add particles ``p0`` to ``p1`` of ``part`` to ``img``, one band's buffer from row ``r0``."""
    box32 = scratch[-3]
    box64 = scratch[-1]
    for p in range(p0, p1):
        ia0, jb0, mx, my, scale, wide = pixel_weights(
            part[p, 0], part[p, 1], part[p, 2], part[p, 3], nx, ny, packed, poly, quad,
            marg, seg_scale, seg_offset, seg_top, scratch)
        if wide:
            for l in range(my):
                _deposit_row(img, part, p, nw, jb0 + l - r0, ia0, box32, l * mx, mx, scale)
        else:
            for l in range(my):
                _deposit_row(img, part, p, nw, jb0 + l - r0, ia0, box64, l * mx, mx, scale)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _project(part, first, row_lo, row_hi, hmax, inv_dx, inv_dy, nw, nx, ny, packed, poly,
             quad, marg, buffers):
    nbands = first.size - 1
    seg_scale, seg_offset, seg_top = polynomial_segments(poly)
    offset = np.zeros(nbands + 1, np.int64)
    for b in range(nbands):
        offset[b + 1] = offset[b] + nw * (row_hi[b] - row_lo[b]) * nx
    # Scratch boxes as large as the largest kernel's pixel box, not the map.
    box_size = kernel_box_size(hmax * inv_dx, hmax * inv_dy, nx, ny)
    for b in prange(nbands):
        band_rows = row_hi[b] - row_lo[b]
        img = buffers[offset[b]:offset[b + 1]].reshape((nw, band_rows, nx))
        img[:] = 0.0
        _project_band(part, first[b], first[b + 1], img, row_lo[b], nw, nx, ny, packed, poly,
                      quad, marg, seg_scale, seg_offset, seg_top,
                      weights_scratch(nx, ny, box_size, poly))
    # Each image row sums the bands covering it in band order, whatever the threads.
    result = np.empty((nw, ny, nx))
    for j in prange(ny):
        covered = False
        for b in range(nbands):
            if row_lo[b] <= j < row_hi[b]:
                band_rows = row_hi[b] - row_lo[b]
                img = buffers[offset[b]:offset[b + 1]].reshape((nw, band_rows, nx))
                for k in range(nw):
                    if covered:
                        result[k, j] += img[k, j - row_lo[b]]
                    else:
                        result[k, j] = img[k, j - row_lo[b]]
                covered = True
        if not covered:
            result[:, j] = 0.0
    return result


# The map is cut into bands of rows, each with its own image buffer (rows of the band plus
# the reach of its kernels), summed in band order at the end: the largest power of two of
# at most one band per _PARTICLES_PER_BAND input particles, and at most _N_BUFFERS. The
# number depends on the input only, not on numba's thread count, so that a map is the same
# to the last bit whatever the threads (one process's thread pool or numba threads); it
# also bounds the threads a projection can use. A power of two shares out evenly over 2, 4
# or 8 threads (3 bands on 2 threads would leave one idle a third of the time). Fewer bands
# for small inputs keep the buffers' overlap cheap.
_N_BUFFERS = 16
_PARTICLES_PER_BAND = 6_250


def _n_bands(n: int) -> int:
    """Number of row bands for ``n`` particles (a power of two, 1 to _N_BUFFERS)."""
    bands = 1
    while bands * 2 <= min(_N_BUFFERS, n // _PARTICLES_PER_BAND):
        bands *= 2
    return bands


#: Per-thread workspaces (the sorted particles, the band buffers), kept between calls up to
#: this many float64 values (256 MB) each: fresh memory costs a page fault per 4 kB page on
#: first touch, as much as the sorting itself for 1e6 particles.
_WORKSPACE_MAX = 2**25
_workspaces = threading.local()


def _workspace(name: str, size: int) -> np.ndarray:
    """A float64 array of at least ``size`` values, reused by later calls in this thread."""
    space = getattr(_workspaces, name, None)
    if space is not None and space.size >= size:
        return space
    space = np.empty(size)
    if size <= _WORKSPACE_MAX:
        setattr(_workspaces, name, space)
    return space





@njit(inline="always")
def _cell(v, base, stride, i, n):
    """Cell ``i`` of a line of ``n`` cells of the flat array ``v``; zero beyond the line."""
    return v[base + i * stride] if 0 <= i < n else 0.0


@njit(inline="always")
def _half_split(v, base, stride, i, n):
    """Mass moved from the lower to the upper half of cell ``i`` of a line of ``n`` cells.

    The half-cell integrals of the degree-6 polynomial with the means of cells ``i - 3 ..
    i + 3`` (zero beyond the line); clamped to half the cell's mass, so that both halves
    keep the cell's sign (a positive deposit gives no negative pixel).
    """
    d = (201.0 * (_cell(v, base, stride, i + 1, n) - _cell(v, base, stride, i - 1, n))
         - 44.0 * (_cell(v, base, stride, i + 2, n) - _cell(v, base, stride, i - 2, n))
         + 5.0 * (_cell(v, base, stride, i + 3, n) - _cell(v, base, stride, i - 3, n))) / 2048.0
    limit = 0.5 * abs(v[base + i * stride])
    return min(max(d, -limit), limit)


@njit(parallel=True, cache=True)
def _prolong(coarse):
    """Each pixel of ``coarse`` (K, ny, nx, C) split into 2 x 2 that sum to it (to round-off).

    One axis at a time, each cell's mass is shared between its halves as the integrals of
    the polynomial through the cell means around it (sixth order where the image is
    smooth); the last axis (channels of a cube, or one) is carried along. Every output
    value is computed from its own inputs alone, so the result does not depend on the
    threads.
    """
    nw, ny, nx, nc = coarse.shape
    src = coarse.reshape(-1)
    half = np.empty((nw, ny, 2 * nx, nc))
    flat = half.reshape(-1)
    for r in prange(nw * ny):
        base = r * nx * nc
        for i in range(nx):
            lower = base * 2 + 2 * i * nc
            for c in range(nc):
                d = _half_split(src, base + c, nc, i, nx)
                m = 0.5 * src[base + i * nc + c]
                flat[lower + c] = m - d
                flat[lower + nc + c] = m + d
    fine = np.empty((nw, 2 * ny, 2 * nx, nc))
    out = fine.reshape(-1)
    line = 2 * nx * nc
    for r in prange(nw * ny):
        k = r // ny
        j = r % ny
        plane = k * ny * line
        below = (k * 2 * ny + 2 * j) * line
        for e in range(line):
            d = _half_split(flat, plane + e, line, j, ny)
            m = 0.5 * flat[plane + j * line + e]
            out[below + e] = m - d
            out[below + line + e] = m + d
    return fine


def prolong(image: np.ndarray) -> np.ndarray:
    """``image`` (K, ny, nx) or (K, ny, nx, C) on a grid of pixels half as wide per axis.

    Each pixel's value is split among its 2 x 2 children (see :func:`_prolong`); their sum
    is the pixel's value to round-off, and each child has the pixel's sign.
    """
    if image.ndim == 3:
        return _prolong(np.ascontiguousarray(image)[..., None])[..., 0]
    return _prolong(np.ascontiguousarray(image))


def pyramid_levels(hx: np.ndarray, hy: np.ndarray, h_level: float = H_LEVEL) -> np.ndarray:
    """Pyramid level of each kernel from its support radii in map pixels.

    The rule of :func:`deposit_map`: the smallest ``L`` with ``min(hx, hy) / 2**L <= h_level``
    (the same halvings, so the same levels).
    """
    m = np.minimum(hx, hy).astype(np.float64)
    level = np.zeros(m.shape, np.int64)
    above = np.flatnonzero(m > h_level)
    while above.size:
        m[above] *= 0.5
        level[above] += 1
        above = above[m[above] > h_level]
    return level


def coarser_grid(bounds: tuple[int, int, int, int], level: int) -> tuple[int, int, int, int]:
    """Bounds ``(x0, x1, y0, y1)`` in map pixels of level ``level``'s grid, from the finer one's.

    Whole pixels of the level (``2**level`` map pixels, aligned with the map's origin)
    covering the finer grid and ``_MARGIN`` more of them on every side.
    """
    f = 2**level
    x0, x1, y0, y1 = bounds
    return (f * (x0 // f - _MARGIN), f * (-(-x1 // f) + _MARGIN),
            f * (y0 // f - _MARGIN), f * (-(-y1 // f) + _MARGIN))


def add_prolonged(own: np.ndarray, at: tuple[int, int], total: np.ndarray,
                  total_at: tuple[int, int], level: int) -> np.ndarray:
    """One level's own deposit plus the prolonged sum of the levels above it.

    ``own`` is on level ``level`` with its lower corner at ``at`` (map pixels); ``total`` is
    on the next coarser level with its lower corner at ``total_at``. The result is on
    ``own``'s grid.
    """
    f = 2**level
    i0, j0 = (at[0] - total_at[0]) // f, (at[1] - total_at[1]) // f
    return own + prolong(total)[:, j0:j0 + own.shape[1], i0:i0 + own.shape[2]]


def deposit_map(x: np.ndarray, y: np.ndarray, h: np.ndarray, w: np.ndarray,
                extent: tuple[float, float, float, float], shape: tuple[int, int],
                tables: KernelTables, *, h_level: float = H_LEVEL) -> np.ndarray:
    """Sum of particle weights per pixel with pixel-integrated kernels.

    Parameters
    ----------
    x, y, h : ndarray, shape (N,)
        C-contiguous float64 positions and support radii (``h >= 0``).
    w : ndarray, shape (K, N)
        C-contiguous float64 weights.
    extent : (xmin, xmax, ymin, ymax)
        Map bounds, ``max > min``.
    shape : (ny, nx)
        Map shape.
    tables : KernelTables
        Kernel tables.
    h_level : float
        Kernels with support radii above this many pixels are deposited on the level of
        the image pyramid where they span ``h_level / 2`` to ``h_level`` pixels; ``inf``
        deposits every kernel on the map's own pixels.

    Returns
    -------
    ndarray, shape (K, ny, nx)
        float64 sums of weights per pixel.

    Raises
    ------
    ValueError
        For a non-finite ``x``, ``y`` or ``h``, or a negative ``h`` (the first in input
        order).
    """
    ny, nx = shape
    xmin, xmax, ymin, ymax = extent
    inv_dx, inv_dy = nx / (xmax - xmin), ny / (ymax - ymin)
    image, up = _deposit_level(x, y, h, w, xmin, ymin, inv_dx, inv_dy, nx, ny, 0, tables,
                               h_level)
    # The pyramid: level L has pixels 2**L times the map's; its grid (bounds in map pixels)
    # holds the next finer one and _MARGIN of its pixels around it.
    levels = [(image, (0, 0))]
    bounds = (0, nx, 0, ny)
    while up.size:
        x, y, h, w = x[up], y[up], h[up], w[:, up]
        level = len(levels)
        f = 2**level
        bounds = coarser_grid(bounds, level)
        x0, x1, y0, y1 = bounds
        coarse, up = _deposit_level(x, y, h, w, xmin + x0 / inv_dx, ymin + y0 / inv_dy,
                                    inv_dx / f, inv_dy / f, (x1 - x0) // f, (y1 - y0) // f,
                                    level, tables, h_level)
        levels.append((coarse, (x0, y0)))
    # Coarsest to finest: prolong the sum so far, keep the next level's grid, add its own.
    total, total_at = levels[-1]
    for level in range(len(levels) - 2, -1, -1):
        own, at = levels[level]
        total, total_at = add_prolonged(own, at, total, total_at, level), at
    return total


def _deposit_level(x, y, h, w, xmin, ymin, inv_dx, inv_dy, nx, ny, level, tables, h_level):
    """Map of the particles of one pyramid level, and the indices of those above it."""
    nw = w.shape[0]
    status, part, first, row_lo, row_hi, hmax, up = _sort_into_bands(
        x, y, h, w, xmin, ymin, inv_dx, inv_dy, nx, ny, _n_bands(x.size),
        _workspace("particles", x.size * (4 + nw)), level, h_level)
    if status == 4:
        raise ValueError("smoothing lengths h must be >= 0")
    if status:
        raise ValueError(f"{'xyh'[status - 1]} contains non-finite values")
    buffers = _workspace("bands", nw * nx * int((row_hi - row_lo).sum()))
    image = _project(part, first, row_lo, row_hi, hmax, inv_dx, inv_dy, nw, nx, ny,
                     tables.packed, tables.poly, tables.quadrant, tables.marginal, buffers)
    return image, up
