"""Per-cell gas physics: temperature, neutral and molecular hydrogen, magnetic field, SFR.

Array functions take plain float arrays in the physical units of
:class:`alchemy_obs.sim.galaxy.Particles` (masses Msun, densities Msun/kpc^3, specific
internal energy (km/s)^2, B in Gauss, SFR Msun/yr) and return arrays in the units their
docstrings state. The ``gas_*`` conveniences take a gas ``Particles`` object (any object with
those attributes) and return :class:`~astropy.units.Quantity`.

Neutral hydrogen follows Villaescusa-Navarro et al. (2018, ApJ 866, 135; "VN18"):

1. cells that do not form stars keep the simulation's ``NeutralHydrogenAbundance`` (which in
   IllustrisTNG already includes the Rahmati et al. 2013 self-shielding at the cell's
   temperature);
2. star-forming cells, whose temperature is that of the sub-grid effective equation of
   state, are given the Rahmati et al. (2013, MNRAS 430, 2427; "R13") self-shielded
   equilibrium neutral fraction at :math:`T = 10^4` K with the redshift-dependent UV
   background;
3. the neutral hydrogen of star-forming cells is split into HI and H2 with the
   Krumholz, McKee & Tumlinson (2009, ApJ 693, 216; "KMT") model;

and :math:`M_{\\rm HI} = X_H\\,m\\,f_{\\rm neutral}\\,(1 - f_{\\rm H_2})`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from astropy import constants as const
from astropy import units as u

__all__ = [
    "GAMMA",
    "HYDROGEN_FRACTION",
    "SOLAR_METALLICITY",
    "UV_BACKGROUNDS",
    "mean_molecular_weight",
    "temperature",
    "hydrogen_number_density",
    "uv_background",
    "rahmati_photoionisation_ratio",
    "case_a_recombination_rate",
    "collisional_ionisation_rate",
    "rahmati_neutral_fraction",
    "jeans_column_density",
    "cell_column_density",
    "kmt_molecular_fraction",
    "neutral_fraction",
    "hi_mass",
    "hi_column_density",
    "hi_brightness_integral",
    "magnetic_field_strength",
    "line_of_sight_field",
    "gas_temperature",
    "gas_hi_mass",
    "gas_magnetic_field_strength",
    "gas_star_formation_rate",
]

#: Adiabatic index of the ideal monatomic gas of IllustrisTNG.
GAMMA = 5.0 / 3.0
#: Primordial hydrogen mass fraction (used where GFM_Metals is absent).
HYDROGEN_FRACTION = 0.76
#: Solar metal mass fraction (Asplund et al. 2009), as adopted by IllustrisTNG.
SOLAR_METALLICITY = 0.0127

_M_P_G = const.m_p.cgs.value
_K_B_CGS = const.k_B.cgs.value
_G_CGS = const.G.cgs.value
_KM2_S2_TO_CGS = 1e10
_MSUN_KPC3_TO_G_CM3 = (u.Msun / u.kpc**3).to(u.g / u.cm**3)
_G_CM2_TO_MSUN_PC2 = (u.g / u.cm**2).to(u.Msun / u.pc**2)

#: R13 Table 2: redshift, Gamma_UVB (s^-1), self-shielding density n_H,SSh (cm^-3) for the
#: UV backgrounds of Faucher-Giguere et al. (2009), Haardt & Madau (2001) and (2012).
UV_BACKGROUNDS: dict[str, np.ndarray] = {
    "FG09": np.array([
        [0.0, 3.99e-14, 7.7e-4], [1.0, 3.03e-13, 3.1e-3], [2.0, 6.00e-13, 5.1e-3],
        [3.0, 5.53e-13, 5.0e-3], [4.0, 4.31e-13, 4.4e-3], [5.0, 3.52e-13, 4.0e-3],
    ]),
    "HM01": np.array([
        [0.0, 8.34e-14, 1.1e-3], [1.0, 7.39e-13, 5.1e-3], [2.0, 1.50e-12, 8.7e-3],
        [3.0, 1.16e-12, 7.4e-3], [4.0, 7.92e-13, 5.8e-3], [5.0, 5.43e-13, 4.5e-3],
    ]),
    "HM12": np.array([
        [0.0, 2.27e-14, 5.1e-4], [1.0, 3.42e-13, 3.3e-3], [2.0, 8.98e-13, 6.1e-3],
        [3.0, 8.74e-13, 6.0e-3], [4.0, 6.14e-13, 4.7e-3], [5.0, 4.57e-13, 3.9e-3],
    ]),
}


def mean_molecular_weight(
    electron_abundance: np.ndarray, hydrogen_fraction: np.ndarray | float = HYDROGEN_FRACTION
) -> np.ndarray:
    """Mean molecular weight in proton masses, :math:`\\mu = 4/(1 + 3X_H + 4X_H x_e)`.

    For a hydrogen-helium gas with helium mass fraction :math:`1 - X_H` and electron
    abundance :math:`x_e = n_e/n_H` (IllustrisTNG FAQ; Springel et al. 2018).

    Parameters
    ----------
    electron_abundance : ndarray
        :math:`x_e = n_e/n_H`.
    hydrogen_fraction : ndarray or float
        Hydrogen mass fraction :math:`X_H`.

    Returns
    -------
    ndarray
        :math:`\\mu` (dimensionless, in units of :math:`m_p`).
    """
    x_h = np.asarray(hydrogen_fraction, dtype=np.float64)
    return 4.0 / (1.0 + 3.0 * x_h + 4.0 * x_h * np.asarray(electron_abundance, np.float64))


def temperature(
    internal_energy: np.ndarray,
    electron_abundance: np.ndarray,
    hydrogen_fraction: np.ndarray | float | None = None,
    *,
    sfr: np.ndarray | None = None,
    star_forming: Literal["effective", "cold"] = "effective",
    cold_temperature: float = 1.0e3,
) -> np.ndarray:
    """Gas temperature :math:`T = (\\gamma - 1)\\,u\\,\\mu m_p / k_B` in K.

    Star-forming cells (``sfr > 0``) follow the Springel & Hernquist (2003, MNRAS 339, 289)
    two-phase effective equation of state: their ``InternalEnergy`` is the mass-weighted
    mean of cold clouds (:math:`\\sim 10^3` K, holding most of the mass) and a hot ambient
    phase, so the formula gives an *effective* temperature (typically :math:`10^{4-5}` K),
    which is what IllustrisTNG reports. ``star_forming="effective"`` (default) keeps it,
    consistent with the simulation's pressure; ``"cold"`` assigns ``cold_temperature`` to
    those cells instead, closer to the gas that would emit or absorb, but a model choice
    that the simulation does not follow.

    Parameters
    ----------
    internal_energy : ndarray
        Specific internal energy :math:`u`, (km/s)^2.
    electron_abundance : ndarray
        :math:`n_e/n_H`.
    hydrogen_fraction : ndarray, float or None
        :math:`X_H`; None means 0.76.
    sfr : ndarray, optional
        Star formation rate (Msun/yr); needed for ``star_forming="cold"``.
    star_forming : {"effective", "cold"}
        Treatment of star-forming cells.
    cold_temperature : float
        Cold-phase temperature in K for ``star_forming="cold"``.

    Returns
    -------
    ndarray
        Temperature in K.
    """
    x_h = HYDROGEN_FRACTION if hydrogen_fraction is None else hydrogen_fraction
    mu = mean_molecular_weight(electron_abundance, x_h)
    temp = (GAMMA - 1.0) * np.asarray(internal_energy, np.float64) * _KM2_S2_TO_CGS
    temp = temp * mu * _M_P_G / _K_B_CGS
    if star_forming == "cold":
        if sfr is None:
            raise ValueError("star_forming='cold' needs the star formation rates (sfr)")
        temp = np.where(np.asarray(sfr) > 0, cold_temperature, temp)
    elif star_forming != "effective":
        raise ValueError(f"star_forming must be 'effective' or 'cold', got {star_forming!r}")
    return temp


def hydrogen_number_density(
    density: np.ndarray, hydrogen_fraction: np.ndarray | float = HYDROGEN_FRACTION
) -> np.ndarray:
    """Hydrogen number density :math:`n_H = X_H \\rho / m_p` in cm^-3.

    Parameters
    ----------
    density : ndarray
        Gas density, Msun/kpc^3 (physical).
    hydrogen_fraction : ndarray or float
        :math:`X_H`.

    Returns
    -------
    ndarray
        :math:`n_H` in cm^-3.
    """
    rho = np.asarray(density, np.float64) * _MSUN_KPC3_TO_G_CM3
    return np.asarray(hydrogen_fraction, np.float64) * rho / _M_P_G


def uv_background(redshift: float, uvb: str = "FG09") -> tuple[float, float]:
    """HI photoionisation rate of the UV background and the self-shielding density.

    Linear interpolation in redshift of R13 Table 2 (:data:`UV_BACKGROUNDS`); held at the
    z = 5 values beyond. ``FG09`` (Faucher-Giguere et al. 2009) is the background family
    IllustrisTNG uses (its 2011 update) and the default.

    Parameters
    ----------
    redshift : float
        Redshift, >= 0.
    uvb : {"FG09", "HM01", "HM12"}
        UV background model.

    Returns
    -------
    gamma_uvb : float
        :math:`\\Gamma_{\\rm UVB}` in s^-1.
    n_ssh : float
        :math:`n_{\\rm H,SSh}` in cm^-3.
    """
    if uvb not in UV_BACKGROUNDS:
        raise ValueError(
            f"unknown UV background {uvb!r}; choose one of {sorted(UV_BACKGROUNDS)}"
        )
    if redshift < 0:
        raise ValueError(f"redshift must be >= 0, got {redshift}")
    table = UV_BACKGROUNDS[uvb]
    z = min(float(redshift), table[-1, 0])
    gamma_uvb = float(np.interp(z, table[:, 0], table[:, 1]))
    return gamma_uvb, float(np.interp(z, table[:, 0], table[:, 2]))


def rahmati_photoionisation_ratio(n_h: np.ndarray, n_ssh: float) -> np.ndarray:
    """Self-shielded photoionisation rate over the background's, R13 eq. (14).

    .. math:: \\frac{\\Gamma_{\\rm phot}}{\\Gamma_{\\rm UVB}} = 0.98\\left[1 +
              \\left(\\frac{n_H}{n_{\\rm H,SSh}}\\right)^{1.64}\\right]^{-2.28}
              + 0.02\\left[1 + \\frac{n_H}{n_{\\rm H,SSh}}\\right]^{-0.84}

    Parameters
    ----------
    n_h : ndarray
        Hydrogen number density, cm^-3.
    n_ssh : float
        Self-shielding density, cm^-3 (:func:`uv_background`).

    Returns
    -------
    ndarray
        :math:`\\Gamma_{\\rm phot}/\\Gamma_{\\rm UVB}`.
    """
    x = np.asarray(n_h, np.float64) / n_ssh
    return 0.98 * (1.0 + x**1.64) ** -2.28 + 0.02 * (1.0 + x) ** -0.84


def case_a_recombination_rate(temperature: np.ndarray | float) -> np.ndarray:
    """Case A HII recombination rate (Hui & Gnedin 1997, MNRAS 292, 27; R13 eq. A3).

    .. math:: \\alpha_A = 1.269\\times10^{-13}\\,\\frac{\\lambda^{1.503}}
              {[1 + (\\lambda/0.522)^{0.47}]^{1.923}}\\ {\\rm cm^3\\,s^{-1}},
              \\quad \\lambda = 315614\\,{\\rm K}/T

    Parameters
    ----------
    temperature : ndarray or float
        K.

    Returns
    -------
    ndarray
        cm^3 s^-1.
    """
    lam = 315614.0 / np.asarray(temperature, np.float64)
    return 1.269e-13 * lam**1.503 / (1.0 + (lam / 0.522) ** 0.47) ** 1.923


def collisional_ionisation_rate(temperature: np.ndarray | float) -> np.ndarray:
    """HI collisional ionisation rate coefficient (Theuns et al. 1998; R13 eq. A6).

    .. math:: \\Lambda_T = 1.17\\times10^{-10}\\,\\frac{T^{1/2}\\,e^{-157809\\,{\\rm K}/T}}
              {1 + (T/10^5\\,{\\rm K})^{1/2}}\\ {\\rm cm^3\\,s^{-1}}

    Parameters
    ----------
    temperature : ndarray or float
        K.

    Returns
    -------
    ndarray
        cm^3 s^-1.
    """
    t = np.asarray(temperature, np.float64)
    return 1.17e-10 * np.sqrt(t) * np.exp(-157809.0 / t) / (1.0 + np.sqrt(t / 1e5))


def rahmati_neutral_fraction(
    n_h: np.ndarray, redshift: float, temperature: np.ndarray | float = 1.0e4, uvb: str = "FG09"
) -> np.ndarray:
    """Equilibrium neutral fraction with self-shielding, R13 Appendix A (eq. A8).

    Photoionisation (rate :math:`\\Gamma_{\\rm phot}`, eq. 14), collisional ionisation and
    case A recombination in equilibrium, with :math:`n_e = (1-\\eta) n_H` (hydrogen only):

    .. math:: \\alpha_A (1-\\eta)^2 n_H = \\eta\\,\\Gamma_{\\rm phot}
              + \\Lambda_T\\,\\eta(1-\\eta) n_H,

    whose physical root is :math:`\\eta = [B - \\sqrt{B^2 - 4AC}]/(2A)` with
    :math:`A = \\alpha_A + \\Lambda_T`,
    :math:`B = 2\\alpha_A + \\Gamma_{\\rm phot}/n_H + \\Lambda_T`, :math:`C = \\alpha_A`.

    Parameters
    ----------
    n_h : ndarray
        Hydrogen number density, cm^-3.
    redshift : float
        Redshift of the UV background.
    temperature : ndarray or float
        K (VN18 use :math:`10^4` K for star-forming cells).
    uvb : {"FG09", "HM01", "HM12"}
        UV background.

    Returns
    -------
    ndarray
        :math:`\\eta = n_{\\rm HI}/n_H` in [0, 1].
    """
    n_h = np.asarray(n_h, np.float64)
    gamma_uvb, n_ssh = uv_background(redshift, uvb)
    gamma_phot = gamma_uvb * rahmati_photoionisation_ratio(n_h, n_ssh)
    alpha = case_a_recombination_rate(temperature)
    lam = collisional_ionisation_rate(temperature)
    a = alpha + lam
    b = 2.0 * alpha + gamma_phot / n_h + lam
    # B - sqrt(B^2 - 4AC) loses all digits when 4AC << B^2 (highly ionised gas): use the
    # algebraically equal 2C / (B + sqrt(B^2 - 4AC)).
    eta = 2.0 * alpha / (b + np.sqrt(np.maximum(b * b - 4.0 * a * alpha, 0.0)))
    return np.clip(eta, 0.0, 1.0)


def jeans_column_density(density: np.ndarray, internal_energy: np.ndarray) -> np.ndarray:
    """Column density over a cell's Jeans length, :math:`\\Sigma = \\rho\\,c_s/\\sqrt{G\\rho}`.

    The local Jeans-length approximation of Schaye (2001, ApJ 559, 507), with
    :math:`c_s^2 = \\gamma(\\gamma-1)u`, the column a self-gravitating cloud in hydrostatic
    equilibrium presents (as used for the KMT model in VN18). For star-forming cells ``u`` is
    the effective equation-of-state energy, whose pressure supports the disc.

    Parameters
    ----------
    density : ndarray
        Msun/kpc^3.
    internal_energy : ndarray
        (km/s)^2.

    Returns
    -------
    ndarray
        :math:`\\Sigma` in Msun/pc^2.
    """
    rho = np.asarray(density, np.float64) * _MSUN_KPC3_TO_G_CM3
    u_cgs = np.asarray(internal_energy, np.float64) * _KM2_S2_TO_CGS
    cs = np.sqrt(GAMMA * (GAMMA - 1.0) * u_cgs)
    return rho * cs / np.sqrt(_G_CGS * rho) * _G_CM2_TO_MSUN_PC2


def cell_column_density(density: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Column density across a cell, :math:`\\Sigma = \\rho\\,V^{1/3}`, :math:`V = m/\\rho`.

    A resolution-dependent alternative to :func:`jeans_column_density`.

    Parameters
    ----------
    density : ndarray
        Msun/kpc^3.
    masses : ndarray
        Msun.

    Returns
    -------
    ndarray
        :math:`\\Sigma` in Msun/pc^2.
    """
    rho = np.asarray(density, np.float64)
    size_kpc = np.cbrt(np.asarray(masses, np.float64) / rho)
    return rho * size_kpc / 1e6


def kmt_molecular_fraction(
    surface_density: np.ndarray, metallicity: np.ndarray | float
) -> np.ndarray:
    """Molecular fraction of the neutral gas, KMT (Krumholz et al. 2009, eqs. 38-39, 93).

    .. math:: \\chi = 0.756\\,(1 + 3.1\\,Z'^{0.365}),\\quad
              \\tau_c = 0.066\\,\\frac{\\Sigma}{M_\\odot\\,{\\rm pc^{-2}}}\\,Z',\\quad
              s = \\frac{\\ln(1 + 0.6\\chi + 0.01\\chi^2)}{0.6\\,\\tau_c},

    .. math:: f_{\\rm H_2} = 1 - \\frac{0.75\\,s}{1 + 0.25\\,s}\\ (s < 2),\\qquad 0\\ (s \\ge 2),

    with :math:`Z' = Z/Z_\\odot` (as in VN18 and Diemer et al. 2018, ApJS 238, 33).

    Parameters
    ----------
    surface_density : ndarray
        Gas column density :math:`\\Sigma`, Msun/pc^2.
    metallicity : ndarray or float
        :math:`Z' = Z/Z_\\odot`.

    Returns
    -------
    ndarray
        :math:`f_{\\rm H_2}` in [0, 1); zero where :math:`Z'\\Sigma = 0`.
    """
    sigma = np.asarray(surface_density, np.float64)
    zp = np.broadcast_to(np.asarray(metallicity, np.float64), sigma.shape)
    chi = 0.756 * (1.0 + 3.1 * np.power(np.maximum(zp, 0.0), 0.365))
    tau = 0.066 * sigma * zp
    positive = tau > 0
    s = np.full(sigma.shape, np.inf)
    s[positive] = np.log(1.0 + 0.6 * chi[positive] + 0.01 * chi[positive] ** 2) / (
        0.6 * tau[positive]
    )
    return np.where(s < 2.0, 1.0 - 0.75 * s / (1.0 + 0.25 * np.minimum(s, 2.0)), 0.0)


def neutral_fraction(
    density: np.ndarray,
    sfr: np.ndarray,
    redshift: float,
    *,
    neutral_hydrogen_abundance: np.ndarray | None = None,
    temperature: np.ndarray | None = None,
    hydrogen_fraction: np.ndarray | float = HYDROGEN_FRACTION,
    uvb: str = "FG09",
    star_forming_temperature: float = 1.0e4,
) -> np.ndarray:
    """Neutral hydrogen fraction :math:`n_{\\rm HI+H_2}/n_H` of each cell, VN18.

    Non-star-forming cells use the simulation's ``NeutralHydrogenAbundance``; where it is
    absent they get :func:`rahmati_neutral_fraction` at their own ``temperature``.
    Star-forming cells get :func:`rahmati_neutral_fraction` at
    ``star_forming_temperature`` (:math:`10^4` K).

    Parameters
    ----------
    density : ndarray
        Msun/kpc^3.
    sfr : ndarray
        Msun/yr; cells with ``sfr > 0`` are star forming.
    redshift : float
        Redshift of the UV background.
    neutral_hydrogen_abundance : ndarray, optional
        Simulation's :math:`n_{\\rm HI}/n_H`.
    temperature : ndarray, optional
        K; needed when ``neutral_hydrogen_abundance`` is None.
    hydrogen_fraction : ndarray or float
        :math:`X_H`.
    uvb : {"FG09", "HM01", "HM12"}
        UV background.
    star_forming_temperature : float
        Temperature of star-forming gas for R13, K.

    Returns
    -------
    ndarray
        Neutral fraction in [0, 1].
    """
    n_h = hydrogen_number_density(density, hydrogen_fraction)
    star_forming = np.asarray(sfr) > 0
    if neutral_hydrogen_abundance is not None:
        eta = np.array(neutral_hydrogen_abundance, dtype=np.float64)
    elif temperature is not None:
        eta = rahmati_neutral_fraction(n_h, redshift, temperature, uvb)
    else:
        raise ValueError(
            "need neutral_hydrogen_abundance or temperature for non-star-forming cells"
        )
    if star_forming.any():
        eta[star_forming] = rahmati_neutral_fraction(
            n_h[star_forming], redshift, star_forming_temperature, uvb
        )
    return eta


def hi_mass(
    masses: np.ndarray,
    hydrogen_fraction: np.ndarray | float,
    neutral: np.ndarray,
    molecular: np.ndarray | float = 0.0,
) -> np.ndarray:
    """HI mass per cell, :math:`M_{\\rm HI} = X_H\\,m\\,f_{\\rm neutral}(1 - f_{\\rm H_2})` (VN18).

    Parameters
    ----------
    masses : ndarray
        Cell masses, Msun.
    hydrogen_fraction : ndarray or float
        :math:`X_H`.
    neutral : ndarray
        Neutral fraction :math:`n_{\\rm HI+H_2}/n_H`.
    molecular : ndarray or float
        Molecular fraction of the neutral hydrogen.

    Returns
    -------
    ndarray
        Msun.
    """
    return (np.asarray(masses, np.float64) * np.asarray(hydrogen_fraction, np.float64)
            * np.asarray(neutral, np.float64) * (1.0 - np.asarray(molecular, np.float64)))


def hi_column_density(surface_density: u.Quantity) -> u.Quantity:
    """HI column density :math:`N_{\\rm HI} = \\Sigma_{\\rm HI}/m_{\\rm H}` (cm^-2).

    Parameters
    ----------
    surface_density : Quantity
        HI mass surface density (e.g. Msun/kpc^2).

    Returns
    -------
    Quantity
        cm^-2.
    """
    return (surface_density / (const.m_p + const.m_e)).to(u.cm**-2)


def hi_brightness_integral(surface_density: u.Quantity) -> u.Quantity:
    """Velocity-integrated 21 cm brightness :math:`\\int T_b\\,dv` of an HI column.

    :math:`N_{\\rm HI} = 1.823\\times10^{18}\\,{\\rm cm^{-2}} \\int T_b\\,dv/({\\rm K\\,km\\,s^{-1}})`.

    Optically thin emission (the conversion lives in :mod:`alchemy_obs.physics.radio`).

    Parameters
    ----------
    surface_density : Quantity
        HI mass surface density.

    Returns
    -------
    Quantity
        K km/s.
    """
    from alchemy_obs.physics.radio import NHI_COEFFICIENT

    return (hi_column_density(surface_density) / NHI_COEFFICIENT).to(u.K * u.km / u.s)


def magnetic_field_strength(field: np.ndarray) -> np.ndarray:
    """Field strength :math:`|B|` of (N, 3) vectors (same unit as ``field``, e.g. Gauss)."""
    return np.linalg.norm(np.asarray(field, np.float64), axis=-1)


def line_of_sight_field(field: np.ndarray, direction: np.ndarray | None = None) -> np.ndarray:
    """Component of (N, 3) vectors along a unit direction (default +z, the projection axis).

    Parameters
    ----------
    field : ndarray, shape (N, 3)
        Vectors in the frame of the map (after rotation).
    direction : ndarray, shape (3,), optional
        Line-of-sight direction; normalised here.

    Returns
    -------
    ndarray, shape (N,)
        :math:`\\mathbf{B}\\cdot\\hat n`, the sign convention of Faraday rotation
        (positive towards the observer along ``direction``).
    """
    n = np.array([0.0, 0.0, 1.0]) if direction is None else np.asarray(direction, np.float64)
    norm = np.linalg.norm(n)
    if norm == 0:
        raise ValueError("line-of-sight direction must be non-zero")
    return np.asarray(field, np.float64) @ (n / norm)


def _require(gas: Any, *names: str) -> None:
    missing = [n for n in names if getattr(gas, n, None) is None]
    if missing:
        raise ValueError(f"gas particles lack {', '.join(missing)}")


def _x_h(gas: Any) -> np.ndarray | float:
    return HYDROGEN_FRACTION if gas.hydrogen_fraction is None else gas.hydrogen_fraction


def gas_temperature(
    gas: Any, star_forming: Literal["effective", "cold"] = "effective",
    cold_temperature: float = 1.0e3,
) -> u.Quantity:
    """Temperature of gas ``Particles`` (see :func:`temperature`), Quantity in K."""
    _require(gas, "internal_energy", "electron_abundance")
    if star_forming == "cold":
        _require(gas, "sfr")
    return temperature(gas.internal_energy, gas.electron_abundance, _x_h(gas), sfr=gas.sfr,
                       star_forming=star_forming, cold_temperature=cold_temperature) * u.K


def gas_hi_mass(
    gas: Any,
    redshift: float,
    *,
    uvb: str = "FG09",
    column: Literal["jeans", "cell"] = "jeans",
    solar_metallicity: float = SOLAR_METALLICITY,
) -> u.Quantity:
    """HI mass of each gas cell following VN18 (R13 self-shielding + KMT), Quantity in Msun.

    H2 is assigned only to star-forming cells (the only ones dense and cold enough in the
    model), with :math:`\\Sigma` from :func:`jeans_column_density` (``column="jeans"``,
    default) or :func:`cell_column_density` (``"cell"``) and :math:`Z' = Z/Z_\\odot`.

    Parameters
    ----------
    gas : Particles
        Gas cells with masses, density, internal_energy, electron_abundance, sfr,
        metallicity (needed where any cell forms stars) and neutral_hydrogen_abundance
        (optional).
    redshift : float
        Snapshot redshift.
    uvb : {"FG09", "HM01", "HM12"}
        UV background.
    column : {"jeans", "cell"}
        Column density estimate for KMT.
    solar_metallicity : float
        :math:`Z_\\odot` (mass fraction).

    Returns
    -------
    Quantity
        Msun per cell.
    """
    _require(gas, "masses", "density", "sfr")
    temp = None
    if gas.neutral_hydrogen_abundance is None:
        temp = gas_temperature(gas).value
    x_h = _x_h(gas)
    neutral = neutral_fraction(gas.density, gas.sfr, redshift,
                               neutral_hydrogen_abundance=gas.neutral_hydrogen_abundance,
                               temperature=temp, hydrogen_fraction=x_h, uvb=uvb)
    molecular = np.zeros_like(neutral)
    sf = np.asarray(gas.sfr) > 0
    if sf.any():
        if column == "jeans":
            _require(gas, "internal_energy")
            sigma = jeans_column_density(gas.density[sf], gas.internal_energy[sf])
        elif column == "cell":
            sigma = cell_column_density(gas.density[sf], gas.masses[sf])
        else:
            raise ValueError(f"column must be 'jeans' or 'cell', got {column!r}")
        # Without metallicities KMT would see Z' = 0 and assign no H2 at all, silently
        # turning every star-forming cell's molecular gas into HI.
        if gas.metallicity is None:
            raise ValueError("gas particles lack metallicity (GFM_Metallicity), which the KMT "
                             "H2 fraction of the star-forming cells needs")
        metal = np.asarray(gas.metallicity)[sf]
        molecular[sf] = kmt_molecular_fraction(sigma, metal / solar_metallicity)
    return hi_mass(gas.masses, x_h, neutral, molecular) * u.Msun


def gas_magnetic_field_strength(gas: Any) -> u.Quantity:
    """:math:`|B|` of gas cells, Quantity in Gauss."""
    _require(gas, "magnetic_field")
    return magnetic_field_strength(gas.magnetic_field) * u.G


def gas_star_formation_rate(gas: Any) -> u.Quantity:
    """Instantaneous SFR of gas cells (the weight of SFR surface density maps), Msun/yr."""
    _require(gas, "sfr")
    sfr = np.asarray(gas.sfr, np.float64)
    if np.any(sfr < 0):
        raise ValueError("gas star formation rates must be >= 0")
    return sfr * u.Msun / u.yr
