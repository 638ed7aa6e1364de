"""Spherical dark-matter haloes: density, enclosed mass, circular velocity and projections.

Three profiles, each a characteristic density :math:`\\rho` times a shape of
:math:`x = r / r_s`:

* **NFW** (Navarro, Frenk & White 1996, ApJ 462, 563):
  :math:`\\rho_s / [x (1 + x)^2]`, enclosed mass
  :math:`4\\pi\\rho_s r_s^3 [\\ln(1 + x) - x / (1 + x)]`.
* **Burkert** (Burkert 1995, ApJ 447, L25): :math:`\\rho_0 / [(1 + x)(1 + x^2)]`, enclosed
  mass :math:`\\pi\\rho_0 r_0^3 [2\\ln(1 + x) + \\ln(1 + x^2) - 2\\arctan x]`.
* **Pseudo-isothermal** (e.g. Begeman, Broeils & Sanders 1991, MNRAS 249, 523):
  :math:`\\rho_0 / (1 + x^2)`, enclosed mass :math:`4\\pi\\rho_0 r_c^3 (x - \\arctan x)`.

:math:`M_{200}` and :math:`r_{200}` are defined by a mean enclosed density of 200 times the
critical density.

Projections are along a line of sight through the halo truncated at a radius
:math:`r_t` (the training maps project the particles of a cutout, whose halo ends near
:math:`r_{200}`) and, optionally, limited to a slab :math:`|z| < L/2` centred on the
galaxy (``maps.slab_kpc``). The mass inside a cylinder of radius :math:`R` uses
Archimedes' hat-box theorem: a zone of a sphere between two parallel planes has an area
proportional to its height, so the fraction of the shell of radius :math:`r` inside the
cylinder and the slab is

.. math:: f(r) = \\frac{\\max\\left[0,\\ \\min(L/2, r) - \\sqrt{\\max(r^2 - R^2, 0)}\\right]}{r}

and :math:`M_{\\rm cyl}(<R) = \\int_0^{r_t} 4\\pi r^2 \\rho(r) f(r)\\,dr`, a one-dimensional
integral (made smooth at :math:`r = R` by :math:`r^2 = R^2 + s^2`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import astropy.units as u
import numpy as np
from astropy.constants import G as _G
from scipy import integrate, optimize

from alchemy_obs.dynamics.rotmod import DynamicsError

__all__ = ["G_KPC", "Halo", "NFW", "Burkert", "PseudoIsothermal", "HALO_MODELS"]

#: Newton's constant in kpc (km/s)^2 / Msun.
G_KPC = _G.to_value(u.kpc * u.km**2 / u.s**2 / u.Msun)

_DENSITY = u.Msun / u.kpc**3
_QUAD = {"epsabs": 0.0, "epsrel": 1e-10, "limit": 200}


class Halo(ABC):
    """A spherical halo :math:`\\rho(r) = \\rho\\,\\mathrm{shape}(r / r_s)`.

    Parameters
    ----------
    density : Quantity
        Characteristic density :math:`\\rho_s` or :math:`\\rho_0` (mass / length³).
    radius : Quantity
        Scale or core radius :math:`r_s`, :math:`r_0` or :math:`r_c` (length).
    """

    #: Short name used in tables and on the command line.
    name: ClassVar[str]
    #: Label in figures.
    label: ClassVar[str]

    def __init__(self, density: u.Quantity, radius: u.Quantity) -> None:
        self._rho = float(density.to_value(_DENSITY))
        self._rs = float(radius.to_value(u.kpc))
        if not (self._rho > 0 and self._rs > 0 and math.isfinite(self._rho * self._rs)):
            raise DynamicsError(f"{type(self).__name__}: density and radius must be positive and finite")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(density={self._rho:.4g} Msun/kpc3, radius={self._rs:.4g} kpc)"

    @property
    def density_scale(self) -> u.Quantity:
        """Characteristic density (Msun/kpc³)."""
        return self._rho * _DENSITY

    @property
    def radius_scale(self) -> u.Quantity:
        """Scale or core radius (kpc)."""
        return self._rs * u.kpc

    @staticmethod
    @abstractmethod
    def _shape(x: np.ndarray) -> np.ndarray:
        """Density over the characteristic density at :math:`x = r / r_s`."""

    @staticmethod
    @abstractmethod
    def _mass_shape(x: np.ndarray) -> np.ndarray:
        """Enclosed mass over :math:`4\\pi\\rho r_s^3` at :math:`x = r / r_s`."""

    # Float versions in Msun, kpc, km/s: the fits and projections call these many times.
    def _density(self, r: np.ndarray | float) -> np.ndarray:
        return self._rho * self._shape(np.asarray(r, dtype=np.float64) / self._rs)

    def _mass(self, r: np.ndarray | float) -> np.ndarray:
        x = np.asarray(r, dtype=np.float64) / self._rs
        return 4 * math.pi * self._rho * self._rs**3 * self._mass_shape(x)

    def density(self, r: u.Quantity) -> u.Quantity:
        """Density :math:`\\rho(r)` (Msun/kpc³) at radii ``r``."""
        return self._density(r.to_value(u.kpc)) * _DENSITY

    def enclosed_mass(self, r: u.Quantity) -> u.Quantity:
        """Mass inside the sphere of radius ``r`` (Msun)."""
        return self._mass(r.to_value(u.kpc)) * u.Msun

    def circular_velocity(self, r: u.Quantity) -> u.Quantity:
        """:math:`V = \\sqrt{G M(<r) / r}` (km/s)."""
        rk = r.to_value(u.kpc)
        return np.sqrt(G_KPC * self._mass(rk) / rk) * u.km / u.s

    def r200(self, critical_density: u.Quantity) -> u.Quantity:
        """Radius inside which the mean density is 200 times ``critical_density`` (kpc)."""
        rho_c = critical_density.to_value(_DENSITY)
        excess = lambda lnr: math.log(  # noqa: E731
            3 * float(self._mass(math.exp(lnr))) / (4 * math.pi * math.exp(3 * lnr)) / (200 * rho_c))
        lo, hi = math.log(1e-4 * self._rs), math.log(1e4 * self._rs)
        if excess(lo) < 0 or excess(hi) > 0:
            raise DynamicsError(f"{self!r}: r200 lies outside 1e-4..1e4 scale radii")
        return math.exp(optimize.brentq(excess, lo, hi, xtol=1e-12)) * u.kpc

    def m200(self, critical_density: u.Quantity) -> u.Quantity:
        """Mass inside :math:`r_{200}` (Msun)."""
        return self.enclosed_mass(self.r200(critical_density))

    def _projected_mass(self, big_r: float, half_depth: float, r_t: float) -> float:
        if big_r <= 0:
            return 0.0
        r_in = min(big_r, r_t)
        # Shells inside the cylinder (r < R): the fraction min(h, r)/r lies in the slab.
        if half_depth >= r_in:
            inner = float(self._mass(r_in))
        else:
            inner = float(self._mass(half_depth)) + integrate.quad(
                lambda r: 4 * math.pi * r * self._density(r) * half_depth,
                half_depth, r_in, **_QUAD)[0]
        if big_r >= r_t:
            return inner
        # Shells outside it, r^2 = R^2 + s^2: f r^2 dr = (min(h, r) - s) s ds, smooth at s = 0.
        r_max = min(r_t, math.hypot(big_r, half_depth))
        s_max = math.sqrt(max(r_max**2 - big_r**2, 0.0))

        def integrand(s: float) -> float:
            r = math.hypot(big_r, s)
            # r - s = R^2 / (r + s): no cancellation far out.
            height = big_r**2 / (r + s) if r <= half_depth else half_depth - s
            return 4 * math.pi * float(self._density(r)) * height * s

        edges = [0.0]
        if half_depth > big_r and math.sqrt(half_depth**2 - big_r**2) < s_max:
            edges.append(math.sqrt(half_depth**2 - big_r**2))
        scale = 10 * max(big_r, self._rs)
        if s_max > scale and edges[-1] < scale:
            edges.append(scale)  # quad's infinite-range transform fares better beyond the core
        edges.append(s_max)
        outer = sum(integrate.quad(integrand, a, b, **_QUAD)[0]
                    for a, b in zip(edges[:-1], edges[1:]) if b > a)
        return inner + outer

    def projected_mass(
        self, radius: u.Quantity, *, depth: u.Quantity | None = None,
        truncation: u.Quantity | None = None,
    ) -> u.Quantity:
        """Mass inside cylinders of radius ``radius`` along a line of sight (Msun).

        Parameters
        ----------
        radius : Quantity
            Projected radii :math:`R` (length).
        depth : Quantity, optional
            Full line-of-sight length :math:`L` of a slab centred on the halo; ``None``: the
            whole column.
        truncation : Quantity, optional
            Radius :math:`r_t` where the halo ends; ``None``: it does not (the NFW and
            pseudo-isothermal masses then grow without bound only with :math:`R`).

        Returns
        -------
        Quantity
            :math:`M_{\\rm cyl}(<R)`, same shape as ``radius``.
        """
        h = math.inf if depth is None else 0.5 * float(depth.to_value(u.kpc))
        r_t = math.inf if truncation is None else float(truncation.to_value(u.kpc))
        rk = np.asarray(radius.to_value(u.kpc), dtype=np.float64)
        out = np.array([self._projected_mass(float(r), h, r_t) for r in rk.ravel()])
        return out.reshape(rk.shape) * u.Msun

    def surface_density(
        self, radius: u.Quantity, *, depth: u.Quantity | None = None,
        truncation: u.Quantity | None = None,
    ) -> u.Quantity:
        """Projected density :math:`\\Sigma(R) = \\int\\rho\\,dz` along the line of sight.

        Parameters
        ----------
        radius : Quantity
            Projected radii :math:`R` (length); :math:`R = 0` diverges for NFW.
        depth, truncation : Quantity, optional
            As in :meth:`projected_mass`.

        Returns
        -------
        Quantity
            Msun/kpc², same shape as ``radius``.
        """
        h = math.inf if depth is None else 0.5 * float(depth.to_value(u.kpc))
        r_t = math.inf if truncation is None else float(truncation.to_value(u.kpc))
        rk = np.asarray(radius.to_value(u.kpc), dtype=np.float64)
        out = np.zeros(rk.size)
        for i, big_r in enumerate(rk.ravel()):
            z_max = min(h, math.sqrt(r_t**2 - big_r**2) if big_r < r_t else 0.0)
            if z_max <= 0:
                continue
            column = lambda z, R=big_r: float(self._density(math.hypot(R, z)))  # noqa: E731
            knee = 10 * max(big_r, self._rs)
            parts = [(0.0, min(knee, z_max))] + ([(knee, z_max)] if z_max > knee else [])
            out[i] = 2 * sum(integrate.quad(column, a, b, **_QUAD)[0] for a, b in parts)
        return out.reshape(rk.shape) * u.Msun / u.kpc**2


class NFW(Halo):
    """Navarro-Frenk-White halo; ``density`` is :math:`\\rho_s`, ``radius`` :math:`r_s`."""

    name = "nfw"
    label = "NFW"

    @staticmethod
    def _shape(x):
        return 1.0 / (x * (1.0 + x) ** 2)

    @staticmethod
    def _mass_shape(x):
        return np.log1p(x) - x / (1.0 + x)

    @classmethod
    def from_m200(cls, m200: u.Quantity, concentration: float,
                  critical_density: u.Quantity) -> NFW:
        """The NFW halo of mass :math:`M_{200}` and concentration :math:`c = r_{200}/r_s`.

        Parameters
        ----------
        m200 : Quantity
            Mass inside :math:`r_{200}`.
        concentration : float
            :math:`c`.
        critical_density : Quantity
            :math:`\\rho_{\\rm crit}` of the epoch (e.g. ``cosmology.critical_density(0)``).

        Returns
        -------
        NFW
        """
        m = float(m200.to_value(u.Msun))
        rho_c = float(critical_density.to_value(_DENSITY))
        r200 = (3 * m / (4 * math.pi * 200 * rho_c)) ** (1 / 3)
        rs = r200 / concentration
        rho_s = m / (4 * math.pi * rs**3 * float(cls._mass_shape(concentration)))
        return cls(rho_s * _DENSITY, rs * u.kpc)

    def concentration(self, critical_density: u.Quantity) -> float:
        """:math:`c = r_{200} / r_s`."""
        return float(self.r200(critical_density).to_value(u.kpc) / self._rs)


class Burkert(Halo):
    """Burkert (1995) cored halo; ``density`` is :math:`\\rho_0`, ``radius`` :math:`r_0`."""

    name = "burkert"
    label = "Burkert"

    @staticmethod
    def _shape(x):
        return 1.0 / ((1.0 + x) * (1.0 + x**2))

    @staticmethod
    def _mass_shape(x):
        return 0.25 * (2 * np.log1p(x) + np.log1p(x**2) - 2 * np.arctan(x))


class PseudoIsothermal(Halo):
    """Pseudo-isothermal sphere; ``density`` is :math:`\\rho_0`, ``radius`` :math:`r_c`."""

    name = "iso"
    label = "pseudo-isothermal"

    @staticmethod
    def _shape(x):
        return 1.0 / (1.0 + x**2)

    @staticmethod
    def _mass_shape(x):
        return x - np.arctan(x)


#: Command-line name -> halo class.
HALO_MODELS: dict[str, type[Halo]] = {cls.name: cls for cls in (NFW, Burkert, PseudoIsothermal)}
