r"""IllustrisTNG code units to physical units: the project's single place for them.

TNG (AREPO) snapshots and cutouts store comoving quantities in code units with explicit
factors of the scale factor :math:`a` (header ``Time``) and the reduced Hubble constant
:math:`h` (header ``HubbleParam``). Following the TNG data specification
(https://www.tng-project.org/data/docs/specifications/):

* ``Coordinates``, ``SubfindHsml``, ``BoxSize`` (ckpc/h): :math:`x\,a/h` kpc;
* ``Masses``, ``MassTable``, ``BH_Mass`` (:math:`10^{10} M_\odot/h`): :math:`m\,10^{10}/h` Msun;
* ``Velocities`` (km :math:`\sqrt{a}`/s): :math:`v\sqrt{a}` km/s, peculiar;
* ``Density`` (:math:`10^{10}M_\odot/h` per (ckpc/h)³): :math:`\rho\,10^{10}h^2/a^3` Msun/kpc³;
* ``InternalEnergy`` ((km/s)²) and ``StarFormationRate`` (Msun/yr): unchanged;
* ``MagneticField`` (:math:`(h/a^2)\sqrt{P_{\rm unit}}`): :math:`B\,(h/a^2)\sqrt{P_{\rm unit}}` G.

The magnetic field unit uses :math:`P_{\rm unit} = M_{\rm unit}/(L_{\rm unit}\,t_{\rm unit}^2)`
in cgs with :math:`t_{\rm unit} = L_{\rm unit}/v_{\rm unit}`, taken from the header's
``UnitMass_in_g``, ``UnitLength_in_cm`` and ``UnitVelocity_in_cm_per_s`` (the factors of
:math:`h` in the unit definitions are the explicit :math:`h` above). This is the conversion to Gauss given by the TNG
specification; no further factor :math:`\sqrt{4\pi}` enters. One code unit at
:math:`a=h=1` is :math:`2.6\times10^{-6}` G.

Functions take plain arrays (or scalars) in code units with ``a`` and ``h`` and return float64
arrays in the physical unit named in their docstring; each ``*_factor`` function returns the
multiplicative factor so that the inverse conversion (used by the synthetic cutout writer)
is a division by the same number.

The module also holds :data:`COSMOLOGY`, the package's one cosmology for observations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from astropy.cosmology import Planck18
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "COSMOLOGY",
    "TNG_UNIT_LENGTH_CM",
    "TNG_UNIT_MASS_G",
    "TNG_UNIT_VELOCITY_CM_S",
    "CodeUnits",
    "length_factor",
    "mass_factor",
    "velocity_factor",
    "density_factor",
    "unit_pressure_cgs",
    "magnetic_field_factor",
    "length_to_kpc",
    "mass_to_msun",
    "velocity_to_km_s",
    "density_to_msun_kpc3",
    "magnetic_field_to_gauss",
]

#: The package's cosmology for observations, Planck 2018 (Planck Collaboration 2020, A&A 641,
#: A6; astropy's ``Planck18``): redshift-distance relations of real galaxies in ``infer`` and
#: of mock placements given without a cosmology. A simulated galaxy keeps its simulation's
#: own cosmology (from its header; Planck 2015 for IllustrisTNG), which set its redshift and
#: ages, so mocks of it use that one. Distances follow one convention everywhere: *luminosity*
#: distance for fluxes, *angular-diameter* distance :math:`D_A = D_L/(1+z)^2` for angles.
COSMOLOGY = Planck18

#: TNG unit length: 1 kpc in cm (header ``UnitLength_in_cm``).
TNG_UNIT_LENGTH_CM = 3.085678e21
#: TNG unit mass: 1e10 Msun in g (header ``UnitMass_in_g``).
TNG_UNIT_MASS_G = 1.989e43
#: TNG unit velocity: 1 km/s in cm/s (header ``UnitVelocity_in_cm_per_s``).
TNG_UNIT_VELOCITY_CM_S = 1.0e5

_MSUN_PER_CODE_MASS = 1.0e10  # the Msun in TNG's unit mass, up to the explicit 1/h


def length_factor(a: float, h: float) -> float:
    """Physical kpc per comoving code length (ckpc/h): :math:`a/h`."""
    return a / h


def mass_factor(h: float) -> float:
    """Msun per code mass (1e10 Msun/h): :math:`10^{10}/h`."""
    return _MSUN_PER_CODE_MASS / h


def velocity_factor(a: float) -> float:
    """Peculiar km/s per code velocity (km sqrt(a)/s): :math:`\\sqrt{a}`."""
    return math.sqrt(a)


def density_factor(a: float, h: float) -> float:
    """Physical Msun/kpc^3 per code density (1e10 Msun/h per (ckpc/h)^3): :math:`10^{10}h^2/a^3`."""
    return _MSUN_PER_CODE_MASS * h**2 / a**3


def unit_pressure_cgs(
    unit_length_cm: float = TNG_UNIT_LENGTH_CM,
    unit_mass_g: float = TNG_UNIT_MASS_G,
    unit_velocity_cm_s: float = TNG_UNIT_VELOCITY_CM_S,
) -> float:
    """Code unit of pressure in erg/cm^3: :math:`M/(L\\,t^2)` with :math:`t = L/v`."""
    unit_time_s = unit_length_cm / unit_velocity_cm_s
    return unit_mass_g / unit_length_cm / unit_time_s**2


def magnetic_field_factor(
    a: float,
    h: float,
    unit_length_cm: float = TNG_UNIT_LENGTH_CM,
    unit_mass_g: float = TNG_UNIT_MASS_G,
    unit_velocity_cm_s: float = TNG_UNIT_VELOCITY_CM_S,
) -> float:
    """Physical Gauss per code magnetic field: :math:`(h/a^2)\\sqrt{P_{\\rm unit}}` (no 4 pi)."""
    return h / a**2 * math.sqrt(unit_pressure_cgs(unit_length_cm, unit_mass_g, unit_velocity_cm_s))


def length_to_kpc(x: ArrayLike, a: float, h: float) -> NDArray[np.float64]:
    """Comoving ckpc/h (``Coordinates``, ``SubfindHsml``, ``BoxSize``) to physical kpc."""
    return np.asarray(x, dtype=np.float64) * length_factor(a, h)


def mass_to_msun(m: ArrayLike, h: float) -> NDArray[np.float64]:
    """Code mass 1e10 Msun/h (``Masses``, ``MassTable``, ``BH_Mass``) to Msun."""
    return np.asarray(m, dtype=np.float64) * mass_factor(h)


def velocity_to_km_s(v: ArrayLike, a: float) -> NDArray[np.float64]:
    """Code velocity km sqrt(a)/s (particle ``Velocities``) to peculiar km/s."""
    return np.asarray(v, dtype=np.float64) * velocity_factor(a)


def density_to_msun_kpc3(rho: ArrayLike, a: float, h: float) -> NDArray[np.float64]:
    """Comoving code density (gas ``Density``) to physical Msun/kpc^3."""
    return np.asarray(rho, dtype=np.float64) * density_factor(a, h)


def magnetic_field_to_gauss(
    b: ArrayLike,
    a: float,
    h: float,
    unit_length_cm: float = TNG_UNIT_LENGTH_CM,
    unit_mass_g: float = TNG_UNIT_MASS_G,
    unit_velocity_cm_s: float = TNG_UNIT_VELOCITY_CM_S,
) -> NDArray[np.float64]:
    """Code magnetic field (gas ``MagneticField``) to physical Gauss."""
    factor = magnetic_field_factor(a, h, unit_length_cm, unit_mass_g, unit_velocity_cm_s)
    return np.asarray(b, dtype=np.float64) * factor


@dataclass(frozen=True)
class CodeUnits:
    """The conversion state of one snapshot: scale factor, Hubble parameter, unit system.

    Parameters
    ----------
    a : float
        Scale factor (header ``Time``).
    h : float
        Reduced Hubble constant (header ``HubbleParam``).
    unit_length_cm, unit_mass_g, unit_velocity_cm_s : float
        Header unit attributes; the TNG values when a file lacks them.
    """

    a: float
    h: float
    unit_length_cm: float = TNG_UNIT_LENGTH_CM
    unit_mass_g: float = TNG_UNIT_MASS_G
    unit_velocity_cm_s: float = TNG_UNIT_VELOCITY_CM_S

    @classmethod
    def from_header(cls, attrs: Mapping[str, object]) -> CodeUnits:
        """Read ``Time``, ``HubbleParam`` and the unit attributes from a header mapping."""
        return cls(
            a=float(attrs["Time"]),  # type: ignore[arg-type]
            h=float(attrs["HubbleParam"]),  # type: ignore[arg-type]
            unit_length_cm=float(attrs.get("UnitLength_in_cm", TNG_UNIT_LENGTH_CM)),  # type: ignore[arg-type]
            unit_mass_g=float(attrs.get("UnitMass_in_g", TNG_UNIT_MASS_G)),  # type: ignore[arg-type]
            unit_velocity_cm_s=float(
                attrs.get("UnitVelocity_in_cm_per_s", TNG_UNIT_VELOCITY_CM_S)  # type: ignore[arg-type]
            ),
        )

    @property
    def length(self) -> float:
        """kpc per ckpc/h."""
        return length_factor(self.a, self.h)

    @property
    def mass(self) -> float:
        """Msun per 1e10 Msun/h."""
        return mass_factor(self.h)

    @property
    def velocity(self) -> float:
        """km/s per km sqrt(a)/s."""
        return velocity_factor(self.a)

    @property
    def density(self) -> float:
        """Msun/kpc^3 per code density."""
        return density_factor(self.a, self.h)

    @property
    def magnetic_field(self) -> float:
        """Gauss per code magnetic field."""
        return magnetic_field_factor(
            self.a, self.h, self.unit_length_cm, self.unit_mass_g, self.unit_velocity_cm_s
        )
