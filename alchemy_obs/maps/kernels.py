"""SPH kernels, their line-of-sight projections and the tables used for pixel integration.

Convention
----------
Every kernel here has **compact support radius** :math:`H`: :math:`W(r, H) = 0` for
:math:`r \\ge H`. :math:`H` is what this package calls the smoothing length (``h``), the same
convention as the ``SubfindHsml`` field of IllustrisTNG (radius of the sphere holding the
nearest neighbours). With :math:`q = r/H`:

* cubic spline (M4; Monaghan & Lattanzio 1985, A&A 149, 135, in the Gadget normalisation of
  Springel 2005, MNRAS 364, 1105, eq. 4):

  .. math:: W = \\frac{8}{\\pi H^3}\\begin{cases} 1 - 6q^2 + 6q^3 & 0 \\le q < 1/2 \\\\
            2 (1-q)^3 & 1/2 \\le q < 1 \\end{cases}

* Wendland C2 in 3D (Wendland 1995; Dehnen & Aly 2012, MNRAS 425, 1068, Table 1):

  .. math:: W = \\frac{21}{2\\pi H^3} (1-q)^4 (1+4q)

Both integrate to one over the sphere of radius :math:`H`.

Projections
-----------
The projected (column) kernel :math:`F(s) = \\int W(\\sqrt{R^2+z^2})\\,dz` with
:math:`s = R/H` is tabulated once per kernel (Gauss-Legendre in :math:`z`, split where the
cubic spline changes branch) as a function of :math:`s^2`, renormalised so that
:math:`\\int F\\,2\\pi s\\,ds = 1` to machine precision. Its Laplacian :math:`\\nabla^2 F`
is tabulated beside it: the mean of :math:`F` over a square pixel of side :math:`d` is
:math:`F + (d^2/24)\\nabla^2 F + O(d^4)`, which lets a large particle be pixel-integrated
to fourth order with one evaluation per pixel. For that evaluation both are also fitted by
piecewise polynomials in :math:`s^2` (no look-ups, so the pixel loop vectorises).

The cumulative table :math:`C(a, b) = \\int_{-1}^{a}\\int_{-1}^{b} F\\,dy\\,dx` (in units
of :math:`H`) gives the exact kernel mass in any axis-aligned rectangle by four look-ups:
this is how particles not much larger than a pixel are integrated over pixels, and how the
part of any kernel inside the map is obtained. :math:`P_{\\rm cum}(\\zeta)` is the kernel
mass below :math:`z/H = \\zeta` (for line-of-sight slabs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "KERNELS",
    "KernelTables",
    "kernel_3d",
    "projected_kernel",
    "kernel_tables",
]

#: Names of the supported kernels (the values accepted by ``kernel=`` everywhere).
KERNELS = ("cubic_spline", "wendland_c2")

#: Number of intervals of the 1D tables in s^2 (projected kernel and its Laplacian).
_N_PROJ = 2048
#: Number of intervals per axis of the cumulative 2D table C(a, b) on [-1, 1]^2.
_N_CUM = 512
#: Segment bounds in s^2 of the polynomial form of the column kernel (narrow near s = 0,
#: where F has a s^4 ln s term).
POLY_BREAKS = (0.0, 0.05, 0.3, 1.0)
_POLY_DEGREE = 8
#: Number of intervals of the cumulative line-of-sight table on [-1, 1].
_N_LOS = 4096


def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    return kernel


def kernel_3d(q: np.ndarray, kernel: str = "cubic_spline") -> np.ndarray:
    """3D kernel :math:`W(q)` for support radius :math:`H = 1` (multiply by :math:`H^{-3}`).

    Parameters
    ----------
    q : ndarray
        Distance in units of the support radius.
    kernel : {"cubic_spline", "wendland_c2"}
        Kernel name.

    Returns
    -------
    ndarray
        Kernel values; zero for ``q >= 1``.
    """
    _check_kernel(kernel)
    q = np.abs(np.asarray(q, dtype=np.float64))
    out = np.zeros_like(q)
    if kernel == "cubic_spline":
        inner = q < 0.5
        outer = (q >= 0.5) & (q < 1.0)
        out[inner] = 1.0 - 6.0 * q[inner] ** 2 + 6.0 * q[inner] ** 3
        out[outer] = 2.0 * (1.0 - q[outer]) ** 3
        return out * (8.0 / np.pi)
    inside = q < 1.0
    out[inside] = (1.0 - q[inside]) ** 4 * (1.0 + 4.0 * q[inside])
    return out * (21.0 / (2.0 * np.pi))


def _integrate_column(s: np.ndarray, kernel: str, n_gauss: int = 64) -> np.ndarray:
    """Unnormalised :math:`F(s) = 2\\int_0^{\\sqrt{1-s^2}} W(\\sqrt{s^2+z^2})dz`, H = 1."""
    nodes, weights = np.polynomial.legendre.leggauss(n_gauss)
    s = np.asarray(s, dtype=np.float64)
    zmax = np.sqrt(np.clip(1.0 - s**2, 0.0, None))
    # Split at the cubic spline's branch point q = 1/2 so each piece is a smooth polynomial
    # in q; Wendland needs no split but the same code serves it.
    zb = np.sqrt(np.clip(0.25 - s**2, 0.0, None)) if kernel == "cubic_spline" else 0.5 * zmax
    total = np.zeros_like(s)
    for lo, hi in ((np.zeros_like(s), zb), (zb, zmax)):
        half = 0.5 * (hi - lo)
        z = lo[:, None] + half[:, None] * (nodes[None, :] + 1.0)
        q = np.sqrt(s[:, None] ** 2 + z**2)
        total += half * (kernel_3d(q, kernel) * weights[None, :]).sum(axis=1)
    return 2.0 * total


def projected_kernel(s: np.ndarray, kernel: str = "cubic_spline") -> np.ndarray:
    """Line-of-sight projected kernel :math:`F(s)` for :math:`H = 1` (multiply by :math:`H^{-2}`).

    Computed by Gauss-Legendre quadrature (not from the tables), so it serves as the
    analytic reference in tests. :math:`\\int_0^1 F(s)\\,2\\pi s\\,ds = 1`.

    Parameters
    ----------
    s : ndarray
        Projected distance in units of the support radius.
    kernel : {"cubic_spline", "wendland_c2"}
        Kernel name.

    Returns
    -------
    ndarray
        Column kernel values, zero for ``s >= 1``.
    """
    _check_kernel(kernel)
    s = np.abs(np.atleast_1d(np.asarray(s, dtype=np.float64)))
    out = np.zeros_like(s)
    inside = s < 1.0
    out[inside] = _integrate_column(s[inside], kernel)
    return out


@dataclass(frozen=True)
class KernelTables:
    """Tables of one kernel, as plain float64 arrays for the numba projection.

    Attributes
    ----------
    kernel : str
        Kernel name.
    column : ndarray, shape (_N_PROJ + 2,)
        :math:`F` at :math:`s^2 = k/N` (one padding zero at the end), H = 1.
    laplacian : ndarray, shape (_N_PROJ + 2,)
        :math:`\\nabla^2 F` on the same nodes.
    cumulative : ndarray, shape (_N_CUM + 1, _N_CUM + 1)
        :math:`C(a, b)` on nodes :math:`-1 + 2k/N` of each axis; ``C[-1, -1] == 1``.
    quadrant : ndarray, shape (_N_CUM // 2 + 1, _N_CUM // 2 + 1)
        :math:`C` on the nodes with :math:`a, b \\ge 0` (the rest follows by symmetry; a
        quarter of the memory keeps the look-ups in cache).
    marginal : ndarray, shape (_N_CUM // 2 + 1,)
        :math:`C(1, b)` on the nodes with :math:`b \\ge 0`.
    packed : ndarray, shape (_N_PROJ + 1, 2)
        Rows :math:`(F_k, F_{k+1} - F_k)` for linear interpolation in one cache line; the
        last row is zero.
    poly : ndarray, shape (2, 3, 9)
        Degree-8 polynomials of :math:`F` (``poly[0]``) and :math:`\\nabla^2 F` (``poly[1]``)
        on the :math:`s^2` segments of :data:`POLY_BREAKS`, in the local variable
        :math:`x = 2(s^2 - a)/(b - a) - 1`, lowest order first; :math:`F` matches the
        table to a few :math:`10^{-6}` of :math:`F(0)`. They evaluate without look-ups, so
        pixel loops vectorise.
    los_cumulative : ndarray, shape (_N_LOS + 1,)
        Kernel mass fraction below :math:`z/H = -1 + 2k/N`.
    """

    kernel: str
    column: np.ndarray
    laplacian: np.ndarray
    cumulative: np.ndarray
    quadrant: np.ndarray
    marginal: np.ndarray
    packed: np.ndarray
    poly: np.ndarray
    los_cumulative: np.ndarray

    def cumulative_at(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Bilinear look-up of :math:`C(a, b)`, with arguments clipped to [-1, 1]."""
        n = self.cumulative.shape[0] - 1
        fa = (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * n
        fb = (np.clip(b, -1.0, 1.0) + 1.0) * 0.5 * n
        ia = np.minimum(fa.astype(np.int64), n - 1)
        ib = np.minimum(fb.astype(np.int64), n - 1)
        ta, tb = fa - ia, fb - ib
        c = self.cumulative
        return ((1 - ta) * ((1 - tb) * c[ia, ib] + tb * c[ia, ib + 1])
                + ta * ((1 - tb) * c[ia + 1, ib] + tb * c[ia + 1, ib + 1]))

    def slab_fraction(self, z: np.ndarray, h: np.ndarray, zmin: float, zmax: float) -> np.ndarray:
        """Fraction of each kernel's mass with :math:`z_{\\min} \\le z' < z_{\\max}`.

        Parameters
        ----------
        z, h : ndarray
            Line-of-sight positions and support radii (same length unit as the bounds).
        zmin, zmax : float
            Slab bounds.

        Returns
        -------
        ndarray
            Fractions in [0, 1]; a particle with ``h == 0`` counts fully where
            ``zmin <= z < zmax``.
        """
        z = np.asarray(z, dtype=np.float64)
        h = np.asarray(h, dtype=np.float64)
        grid = np.linspace(-1.0, 1.0, self.los_cumulative.size)
        safe = np.where(h > 0, h, 1.0)
        hi = np.interp(np.clip((zmax - z) / safe, -1, 1), grid, self.los_cumulative)
        lo = np.interp(np.clip((zmin - z) / safe, -1, 1), grid, self.los_cumulative)
        point = ((z >= zmin) & (z < zmax)).astype(np.float64)
        return np.where(h > 0, hi - lo, point)


def _column_and_laplacian(kernel: str) -> tuple[np.ndarray, np.ndarray, float]:
    """F and its Laplacian on s^2 nodes, plus the normalisation of the quadrature."""
    u_nodes = np.linspace(0.0, 1.0, _N_PROJ + 1)
    s = np.sqrt(u_nodes)
    column = _integrate_column(s, kernel)
    column[-1] = 0.0
    # Normalisation: integral of F over the unit disc (= 1 analytically); dividing by the
    # numerical value removes the quadrature's residual so the tables integrate to one.
    nodes, weights = np.polynomial.legendre.leggauss(200)
    rs = 0.5 * (nodes + 1.0)
    norm = float(np.sum(0.5 * weights * _integrate_column(rs, kernel) * 2 * np.pi * rs))
    column /= norm
    # In u = s^2 the 2D Laplacian of a radial function is 4 (u F'' + F') (derivatives in u).
    du = u_nodes[1] - u_nodes[0]
    d1 = np.gradient(column, du, edge_order=2)
    d2 = np.gradient(d1, du, edge_order=2)
    laplacian = 4.0 * (u_nodes * d2 + d1)
    laplacian[-1] = 0.0
    pad = np.zeros(1)
    return np.concatenate([column, pad]), np.concatenate([laplacian, pad]), norm


def _cumulative_2d(kernel: str, norm: float) -> np.ndarray:
    """C(a, b) on a (_N_CUM+1)^2 node grid from 4x4 Gauss points per table cell."""
    n = _N_CUM
    edges = np.linspace(-1.0, 1.0, n + 1)
    width = edges[1] - edges[0]
    g, gw = np.polynomial.legendre.leggauss(4)
    centres = 0.5 * (edges[:-1] + edges[1:])
    pts = (centres[:, None] + 0.5 * width * g[None, :]).ravel()  # (n*4,)
    wts = np.tile(0.5 * width * gw, n)
    # F on the tensor grid of Gauss points; evaluated through an accurate 1D table in s.
    s_tab = np.linspace(0.0, 1.0, 20001)
    f_tab = _integrate_column(s_tab, kernel) / norm
    f_tab[-1] = 0.0
    r = np.hypot(pts[:, None], pts[None, :])
    f = np.interp(r, s_tab, f_tab, right=0.0) * wts[:, None] * wts[None, :]
    cells = f.reshape(n, 4, n, 4).sum(axis=(1, 3))
    cum = np.zeros((n + 1, n + 1))
    cum[1:, 1:] = cells.cumsum(axis=0).cumsum(axis=1)
    return cum / cum[-1, -1]


def _los_cumulative(kernel: str) -> np.ndarray:
    """Mass fraction below z/H on [-1, 1]: P(zeta) = 2 pi int_{|zeta|}^1 W(q) q dq."""
    zeta = np.linspace(-1.0, 1.0, _N_LOS + 1)
    nodes, weights = np.polynomial.legendre.leggauss(64)
    a = np.abs(zeta)
    half = 0.5 * (1.0 - a)
    q = a[:, None] + half[:, None] * (nodes[None, :] + 1.0)
    dens = 2 * np.pi * half * (kernel_3d(q, kernel) * q * weights[None, :]).sum(axis=1)
    # Cumulative by the trapezoid rule on a fine grid, then forced to end exactly at one.
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(zeta))])
    return cum / cum[-1]


def _polynomials(column: np.ndarray, laplacian: np.ndarray) -> np.ndarray:
    """Least-squares Chebyshev fits of F and its Laplacian per s^2 segment, as monomials."""
    u_nodes = np.linspace(0.0, 1.0, column.size)
    out = np.zeros((2, len(POLY_BREAKS) - 1, _POLY_DEGREE + 1))
    for k, (a, b) in enumerate(zip(POLY_BREAKS[:-1], POLY_BREAKS[1:])):
        sel = (u_nodes >= a) & (u_nodes <= b)
        x = 2.0 * (u_nodes[sel] - a) / (b - a) - 1.0
        for j, values in enumerate((column, laplacian)):
            cheb = np.polynomial.chebyshev.chebfit(x, values[sel], _POLY_DEGREE)
            out[j, k] = np.polynomial.chebyshev.cheb2poly(cheb)
    return out


@lru_cache(maxsize=None)
def kernel_tables(kernel: str = "cubic_spline") -> KernelTables:
    """Tables of ``kernel`` for the projection (computed once per process, ~0.3 s).

    Parameters
    ----------
    kernel : {"cubic_spline", "wendland_c2"}
        Kernel name.

    Returns
    -------
    KernelTables
        Read-only tables.
    """
    _check_kernel(kernel)
    column, laplacian, norm = _column_and_laplacian(kernel)
    cumulative = _cumulative_2d(kernel, norm)
    los = _los_cumulative(kernel)
    half = _N_CUM // 2
    packed = np.zeros((_N_PROJ + 1, 2))
    packed[:, 0] = column[:-1]
    packed[:, 1] = column[1:] - column[:-1]
    tables = KernelTables(
        kernel=kernel,
        column=column,
        laplacian=laplacian,
        cumulative=cumulative,
        quadrant=np.ascontiguousarray(cumulative[half:, half:]),
        # From the same table as the quadrant, so corner differences telescope exactly.
        marginal=np.ascontiguousarray(cumulative[-1, half:]),
        packed=packed,
        poly=_polynomials(column[:-1], laplacian[:-1]),
        los_cumulative=los,
    )
    for arr in (tables.column, tables.laplacian, tables.cumulative, tables.quadrant,
                tables.marginal, tables.packed, tables.poly, tables.los_cumulative):
        arr.setflags(write=False)
    return tables
