"""The registry of physical domains: which particles, which quantity, which weighting, units.

Three kinds of map are made from per-particle values :math:`q_i`, weights and kernels
:math:`W_i` integrated over a pixel of area :math:`A`:

* ``"sum"`` (surface densities): :math:`\\Sigma = \\sum_i q_i W_i / A`, with :math:`q_i` an
  amount per particle (mass, HI mass, star formation rate). Pixels no kernel reaches are 0:
  there is genuinely nothing there.
* ``"mass"`` and ``"volume"`` (line-of-sight averages): :math:`\\bar q = \\sum_i w_i q_i W_i
  / \\sum_i w_i W_i` with :math:`w_i = m_i` or :math:`w_i = V_i = m_i / \\rho_i`. Pixels with
  no weight are NaN (undefined), never a silent 0.

The magnetic field is stored in microgauss (the natural scale of galactic fields; float32
holds it without loss). ``bfield_los`` is the mass-weighted component along ``+z'``, towards
the observer (see :mod:`alchemy_obs.maps.geometry`), so its sign follows the rotation
measure convention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import astropy.units as u
import numpy as np

from alchemy_obs.physics import gas as gas_physics
from alchemy_obs.sim.galaxy import Galaxy, Particles

__all__ = ["Domain", "DOMAINS", "GasPhysics", "get_domains"]

_GAUSS_TO_UG = (1 * u.G).to_value(u.uG)


@dataclass(frozen=True)
class GasPhysics:
    """The gas-physics choices behind the HI and temperature maps.

    Attributes
    ----------
    uvb : {"FG09", "HM01", "HM12"}
        UV background of the Rahmati et al. (2013) self-shielding.
    kmt_column : {"jeans", "cell"}
        Column density of star-forming cells for the KMT H2 fraction.
    sf_temperature : {"effective", "cold"}
        Temperature of star-forming cells.
    """

    uvb: str = "FG09"
    kmt_column: str = "jeans"
    sf_temperature: str = "effective"


@dataclass(frozen=True)
class Domain:
    """How one domain's map is made.

    Attributes
    ----------
    name : str
        Dataset name of the domain.
    particle_type : {"gas", "stars", "dm"}
        The :class:`~alchemy_obs.sim.galaxy.Galaxy` attribute holding its particles.
    weighting : {"sum", "mass", "volume"}
        Surface density, mass-weighted or volume-weighted line-of-sight average.
    unit : astropy.units.UnitBase
        Unit of the map.
    value : callable
        ``value(particles, galaxy, physics) -> ndarray``: per-particle amount in
        ``unit * kpc**2`` (``"sum"``) or per-particle value in ``unit`` (averages), computed
        in the view's rotated frame with the :class:`GasPhysics` choices ``physics``.
    description : str
        One line for plots and documentation.
    """

    name: str
    particle_type: Literal["gas", "stars", "dm"]
    weighting: Literal["sum", "mass", "volume"]
    unit: u.UnitBase
    value: Callable[[Particles, Galaxy, GasPhysics], np.ndarray]
    description: str


def _mass(p: Particles, g: Galaxy, c: GasPhysics) -> np.ndarray:
    return p.masses


def _require(p: Particles, field: str, domain: str) -> np.ndarray:
    value = getattr(p, field)
    if value is None:
        raise ValueError(f"domain {domain!r} needs the gas field {field!r}, absent from the input")
    return value


def _hi_mass(p: Particles, g: Galaxy, c: GasPhysics) -> np.ndarray:
    m_hi = gas_physics.gas_hi_mass(p, g.redshift, uvb=c.uvb, column=c.kmt_column)
    return m_hi.to_value(u.Msun)


def _temperature(p: Particles, g: Galaxy, c: GasPhysics) -> np.ndarray:
    return gas_physics.gas_temperature(p, star_forming=c.sf_temperature).to_value(u.K)


def _sfr(p: Particles, g: Galaxy, c: GasPhysics) -> np.ndarray:
    return _require(p, "sfr", "sfr")


def _b_magnitude(p: Particles, g: Galaxy, c: GasPhysics) -> np.ndarray:
    field = _require(p, "magnetic_field", "bfield")
    return gas_physics.magnetic_field_strength(field) * _GAUSS_TO_UG


def _b_line_of_sight(p: Particles, g: Galaxy, c: GasPhysics) -> np.ndarray:
    # Particles are in the view frame: +z' points to the observer.
    field = _require(p, "magnetic_field", "bfield_los")
    return gas_physics.line_of_sight_field(field) * _GAUSS_TO_UG


_SIGMA = u.Msun / u.kpc**2

#: Every domain this package can project, by name.
DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain("dm", "dm", "sum", _SIGMA, _mass, "dark matter surface density"),
        Domain("stars", "stars", "sum", _SIGMA, _mass, "stellar surface density"),
        Domain("gas", "gas", "sum", _SIGMA, _mass, "gas surface density"),
        Domain("hi", "gas", "sum", _SIGMA, _hi_mass, "HI surface density"),
        Domain("temperature", "gas", "mass", u.K, _temperature, "mass-weighted gas temperature"),
        Domain("bfield", "gas", "mass", u.uG, _b_magnitude, "mass-weighted |B|"),
        Domain("bfield_vw", "gas", "volume", u.uG, _b_magnitude, "volume-weighted |B|"),
        Domain("bfield_los", "gas", "mass", u.uG, _b_line_of_sight,
               "mass-weighted B along the line of sight (+ towards the observer)"),
        Domain("sfr", "gas", "sum", u.Msun / u.yr / u.kpc**2, _sfr,
               "star formation rate surface density"),
    )
}


def get_domains(names: Iterable[str]) -> list[Domain]:
    """The :class:`Domain` objects for ``names``, in order.

    Raises
    ------
    ValueError
        If a name is unknown; the message lists the known domains.
    """
    names = list(names)
    unknown = [n for n in names if n not in DOMAINS]
    if unknown:
        raise ValueError(f"unknown map domain(s) {unknown}; known: {sorted(DOMAINS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"domain list has duplicates: {names}")
    return [DOMAINS[n] for n in names]
