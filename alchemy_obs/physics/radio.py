"""Radio unit conversions: the 21 cm line and radio continuum from star formation.

This module is the project's single place for radio conversions. Every public function takes
and returns :class:`~astropy.units.Quantity` objects.

Conventions
-----------
* Velocities written ``km/s`` for line integrals are **rest-frame** velocity widths,
  :math:`dV = c\\,d\\nu_{\\rm obs}/\\nu_{\\rm obs}` with :math:`\\nu_{\\rm obs}` the observed
  frequency of the line centre, :math:`\\nu_0/(1+z)`. At :math:`z=0` this is the radio
  velocity width :math:`c\\,d\\nu/\\nu_0`.
* The HI mass-flux relation (Roberts 1975; Meyer et al. 2017, PASA 34, 52, eqs. 48-50)

  .. math:: M_{\\rm HI}/M_\\odot = \\frac{2.356\\times10^5}{1+z}
            \\left(\\frac{D_L}{\\rm Mpc}\\right)^2
            \\frac{\\int S\\,dV}{\\rm Jy\\,km\\,s^{-1}}
            = 2.356\\times10^5\\,\\frac{c}{\\nu_0}\\,D_L^2 \\int S\\,d\\nu_{\\rm obs},

  so that the frequency-integrated form does not depend on redshift.
* The column density (Wilson, Rohlfs & Hüttemeister, *Tools of Radio Astronomy*, eq. 12.19)
  :math:`N_{\\rm HI} = 1.823\\times10^{18}\\,{\\rm cm^{-2}}\\int T_b\\,dV/({\\rm K\\,km\\,s^{-1}})`
  holds in the source frame; with the specific intensity observed at redshift :math:`z`,
  :math:`\\int I_\\nu d\\nu` is dimmed by :math:`(1+z)^4`.
* Brightness temperatures are Rayleigh-Jeans, :math:`T_b = c^2 I_\\nu / (2 k \\nu^2)`, and a
  Gaussian beam has solid angle :math:`\\Omega = \\pi\\,\\theta_{\\rm maj}\\theta_{\\rm min}/(4\\ln 2)`.
"""

from __future__ import annotations

import numpy as np
from astropy import constants as const
from astropy import units as u

__all__ = [
    "HI_REST_FREQUENCY",
    "HI_MASS_COEFFICIENT",
    "NHI_COEFFICIENT",
    "hi_mass",
    "hi_line_flux",
    "hi_column_density",
    "hi_column_density_from_flux",
    "hi_surface_density",
    "frequency_integral_to_velocity_integral",
    "beam_solid_angle",
    "jy_per_beam_to_kelvin",
    "kelvin_to_jy_per_beam",
    "radio_velocity_to_frequency",
    "frequency_to_radio_velocity",
    "optical_velocity_to_frequency",
    "frequency_to_optical_velocity",
    "sfr_to_radio_luminosity",
    "luminosity_to_flux_density",
    "sfr_to_flux_density",
]

#: Rest frequency of the HI hyperfine transition.
HI_REST_FREQUENCY = 1420405751.768 * u.Hz

#: Coefficient of M_HI = C D^2 \int S dV (Msun per Mpc^2 Jy km/s).
HI_MASS_COEFFICIENT = 2.356e5 * u.Msun / (u.Mpc**2 * u.Jy * u.km / u.s)

#: Coefficient of N_HI = C \int T_b dV (cm^-2 per K km/s).
NHI_COEFFICIENT = 1.823e18 * u.cm**-2 / (u.K * u.km / u.s)

_LN2 = np.log(2.0)


def _rest_frame_width_to_observed_frequency(redshift: float) -> u.Quantity:
    """d nu_obs / dV for a rest-frame velocity width dV of a line at redshift z."""
    return HI_REST_FREQUENCY / ((1.0 + redshift) * const.c)


def hi_mass(flux_integral: u.Quantity, distance: u.Quantity, redshift: float = 0.0) -> u.Quantity:
    """HI mass from an integrated 21 cm line flux.

    Parameters
    ----------
    flux_integral : Quantity
        Either :math:`\\int S\\,dV` (flux density times rest-frame velocity, e.g. Jy km/s) or
        :math:`\\int S\\,d\\nu_{\\rm obs}` (flux density times observed frequency, e.g. Jy Hz).
    distance : Quantity
        Luminosity distance (at :math:`z \\ll 1` the distance).
    redshift : float
        Redshift of the source; only used for a velocity-integrated flux.

    Returns
    -------
    Quantity
        HI mass in solar masses, :math:`M = 2.356\\times10^5 D_L^2 \\int S\\,dV/(1+z)`.

    References
    ----------
    Roberts (1975), in *Galaxies and the Universe*, p. 309; Meyer et al. (2017), PASA 34, 52.
    """
    flux_integral = u.Quantity(flux_integral)
    if flux_integral.unit.is_equivalent(u.Jy * u.Hz):
        flux_integral = flux_integral * const.c / HI_REST_FREQUENCY
    elif flux_integral.unit.is_equivalent(u.Jy * u.km / u.s):
        flux_integral = flux_integral / (1.0 + redshift)
    else:
        raise u.UnitsError(
            f"flux_integral must be in Jy km/s or Jy Hz, got {flux_integral.unit}"
        )
    return (HI_MASS_COEFFICIENT * distance**2 * flux_integral).to(u.Msun)


def hi_line_flux(mass: u.Quantity, distance: u.Quantity) -> u.Quantity:
    """Frequency-integrated 21 cm flux :math:`\\int S\\,d\\nu_{\\rm obs}` of an HI mass.

    Inverse of :func:`hi_mass` in its redshift-independent frequency form.

    Parameters
    ----------
    mass : Quantity
        HI mass.
    distance : Quantity
        Luminosity distance.

    Returns
    -------
    Quantity
        Integrated flux in Jy Hz.
    """
    return (mass / (HI_MASS_COEFFICIENT * distance**2) * HI_REST_FREQUENCY / const.c).to(
        u.Jy * u.Hz
    )


def hi_column_density(brightness_integral: u.Quantity) -> u.Quantity:
    """HI column density of optically thin gas, :math:`N = 1.823\\times10^{18}\\int T_b\\,dV`.

    Parameters
    ----------
    brightness_integral : Quantity
        Source-frame :math:`\\int T_b\\,dV` (K km/s).

    Returns
    -------
    Quantity
        Column density in cm^-2.
    """
    return (NHI_COEFFICIENT * brightness_integral).to(u.cm**-2)


def beam_solid_angle(major: u.Quantity, minor: u.Quantity) -> u.Quantity:
    """Solid angle of an elliptical Gaussian beam, :math:`\\pi\\,\\theta_{\\rm maj}\\theta_{\\rm min}/(4\\ln 2)`.

    Parameters
    ----------
    major, minor : Quantity
        Full widths at half maximum (angles).

    Returns
    -------
    Quantity
        Solid angle in sr.
    """
    return (np.pi * major * minor / (4.0 * _LN2)).to(u.sr)


def jy_per_beam_to_kelvin(
    surface_brightness: u.Quantity, frequency: u.Quantity, major: u.Quantity, minor: u.Quantity
) -> u.Quantity:
    """Rayleigh-Jeans brightness temperature of a surface brightness in Jy/beam.

    :math:`T_b = c^2 S / (2 k \\nu^2 \\Omega_{\\rm beam})`.

    Parameters
    ----------
    surface_brightness : Quantity
        Jy/beam (any flux-density unit per beam; ``u.beam`` is accepted and dropped).
    frequency : Quantity
        Observed frequency.
    major, minor : Quantity
        Beam FWHMs.

    Returns
    -------
    Quantity
        Brightness temperature in K.
    """
    flux = _strip_beam(surface_brightness)
    omega = beam_solid_angle(major, minor)
    return (const.c**2 * flux / (2.0 * const.k_B * frequency**2 * omega) * u.sr).to(u.K)


def kelvin_to_jy_per_beam(
    temperature: u.Quantity, frequency: u.Quantity, major: u.Quantity, minor: u.Quantity
) -> u.Quantity:
    """Surface brightness in Jy/beam of a Rayleigh-Jeans brightness temperature.

    Inverse of :func:`jy_per_beam_to_kelvin`.

    Parameters
    ----------
    temperature : Quantity
        Brightness temperature.
    frequency : Quantity
        Observed frequency.
    major, minor : Quantity
        Beam FWHMs.

    Returns
    -------
    Quantity
        Jy/beam (unit ``Jy / beam``).
    """
    omega = beam_solid_angle(major, minor)
    flux = 2.0 * const.k_B * frequency**2 * temperature * omega / (const.c**2 * u.sr)
    return flux.to(u.Jy) / u.beam


def _strip_beam(value: u.Quantity) -> u.Quantity:
    value = u.Quantity(value)
    if u.beam in value.unit.bases:
        value = value * u.beam
    return value


def hi_column_density_from_flux(
    flux_integral: u.Quantity,
    major: u.Quantity,
    minor: u.Quantity,
    redshift: float = 0.0,
) -> u.Quantity:
    """HI column density from a moment-0 surface brightness in Jy/beam.

    The observed line-integrated intensity :math:`\\int I_\\nu d\\nu_{\\rm obs}` is converted to
    the source frame by :math:`(1+z)^4` (Tolman dimming of :math:`I_\\nu/\\nu^3`) and to a
    Rayleigh-Jeans :math:`\\int T_b\\,dV` at the rest frequency, then
    :math:`N = 1.823\\times10^{18}\\int T_b\\,dV`. At :math:`z=0` this is the familiar
    :math:`N = 1.104\\times10^{21}\\,{\\rm cm^{-2}}\\,S/(\\theta_{\\rm maj}\\theta_{\\rm min})`
    (S in mJy/beam km/s, beam in arcsec; :math:`1.104\\times10^{24}` for S in Jy/beam km/s).

    Parameters
    ----------
    flux_integral : Quantity
        :math:`\\int S\\,dV` in Jy/beam km/s (rest-frame velocity) or
        :math:`\\int S\\,d\\nu_{\\rm obs}` in Jy/beam Hz.
    major, minor : Quantity
        Beam FWHMs.
    redshift : float
        Source redshift.

    Returns
    -------
    Quantity
        Column density in cm^-2.
    """
    flux = _strip_beam(flux_integral)
    if flux.unit.is_equivalent(u.Jy * u.km / u.s):
        flux = flux * _rest_frame_width_to_observed_frequency(redshift)
    elif not flux.unit.is_equivalent(u.Jy * u.Hz):
        raise u.UnitsError(f"flux_integral must be in Jy/beam km/s or Jy/beam Hz, got {flux.unit}")
    intensity_obs = flux / beam_solid_angle(major, minor)
    intensity_rest = intensity_obs * (1.0 + redshift) ** 4
    # Rayleigh-Jeans at the rest frequency, d nu_rest = nu_0 dV / c.
    tb_dv = intensity_rest * const.c**3 / (2.0 * const.k_B * HI_REST_FREQUENCY**3) * u.sr
    return hi_column_density(tb_dv.to(u.K * u.km / u.s))


def hi_surface_density(column_density: u.Quantity) -> u.Quantity:
    """HI mass surface density of a column density, :math:`\\Sigma = m_{\\rm H} N_{\\rm HI}`.

    Parameters
    ----------
    column_density : Quantity
        HI column density (cm^-2).

    Returns
    -------
    Quantity
        Surface density in Msun/kpc^2 (:math:`10^{20}` cm^-2 is 0.80 Msun/pc^2).
    """
    return (column_density * (const.m_p + const.m_e)).to(u.Msun / u.kpc**2)


def frequency_integral_to_velocity_integral(
    integral: u.Quantity, redshift: float = 0.0
) -> u.Quantity:
    """Convert a line integral over observed frequency to one over rest-frame velocity.

    With the module's convention :math:`dV = c\\,d\\nu_{\\rm obs}/\\nu_{\\rm obs}` and
    :math:`\\nu_{\\rm obs} = \\nu_0/(1+z)`, :math:`\\int X\\,dV = c(1+z)/\\nu_0 \\int X\\,d\\nu_{\\rm obs}`.

    Parameters
    ----------
    integral : Quantity
        :math:`\\int X\\,d\\nu_{\\rm obs}` (e.g. Jy/beam Hz or K Hz).
    redshift : float
        Redshift of the line.

    Returns
    -------
    Quantity
        :math:`\\int X\\,dV`, in Jy/beam km/s, K km/s or Jy km/s when ``X`` is one of those.
    """
    velocity_integral = u.Quantity(integral) / _rest_frame_width_to_observed_frequency(redshift)
    for unit in (u.Jy / u.beam * u.km / u.s, u.K * u.km / u.s, u.Jy * u.km / u.s):
        if velocity_integral.unit.is_equivalent(unit):
            return velocity_integral.to(unit)
    return velocity_integral


def radio_velocity_to_frequency(
    velocity: u.Quantity, rest_frequency: u.Quantity = HI_REST_FREQUENCY
) -> u.Quantity:
    """Frequency of a radio-convention velocity, :math:`\\nu = \\nu_0 (1 - v/c)`."""
    return (rest_frequency * (1.0 - velocity / const.c)).to(u.Hz)


def frequency_to_radio_velocity(
    frequency: u.Quantity, rest_frequency: u.Quantity = HI_REST_FREQUENCY
) -> u.Quantity:
    """Radio-convention velocity of a frequency, :math:`v = c (1 - \\nu/\\nu_0)`."""
    return (const.c * (1.0 - frequency / rest_frequency)).to(u.km / u.s)


def optical_velocity_to_frequency(
    velocity: u.Quantity, rest_frequency: u.Quantity = HI_REST_FREQUENCY
) -> u.Quantity:
    """Frequency of an optical-convention velocity, :math:`\\nu = \\nu_0 / (1 + v/c)`."""
    return (rest_frequency / (1.0 + velocity / const.c)).to(u.Hz)


def frequency_to_optical_velocity(
    frequency: u.Quantity, rest_frequency: u.Quantity = HI_REST_FREQUENCY
) -> u.Quantity:
    """Optical-convention velocity of a frequency, :math:`v = c (\\nu_0/\\nu - 1)`."""
    return (const.c * (rest_frequency / frequency - 1.0)).to(u.km / u.s)


def sfr_to_radio_luminosity(
    sfr: u.Quantity,
    frequency: u.Quantity = 1.4 * u.GHz,
    electron_temperature: u.Quantity = 1e4 * u.K,
    synchrotron_index: float = -0.8,
    free_free_index: float = -0.1,
) -> u.Quantity:
    """Rest-frame radio spectral luminosity of star formation (Murphy et al. 2011).

    Free-free plus synchrotron (Murphy et al. 2011, ApJ 737, 67, eqs. 11, 14, 15; Kroupa IMF):

    .. math::
        L_\\nu = 10^{27}\\,\\frac{\\rm SFR}{M_\\odot\\,{\\rm yr^{-1}}}
        \\left[2.18\\left(\\frac{T_e}{10^4\\,{\\rm K}}\\right)^{0.45}
        \\left(\\frac{\\nu}{\\rm GHz}\\right)^{\\alpha_{\\rm ff}}
        + 15.1\\left(\\frac{\\nu}{\\rm GHz}\\right)^{\\alpha_{\\rm syn}}\\right]
        \\ {\\rm erg\\,s^{-1}\\,Hz^{-1}},

    with :math:`\\alpha_{\\rm ff} = -0.1` and :math:`\\alpha_{\\rm syn} \\approx -0.8`
    (Murphy et al. use -0.85). At 1.4 GHz and :math:`T_e = 10^4` K, 1 Msun/yr gives
    :math:`1.36\\times10^{28}` erg/s/Hz, 85% of it synchrotron.

    Parameters
    ----------
    sfr : Quantity
        Star formation rate (mass per time).
    frequency : Quantity
        Rest-frame frequency.
    electron_temperature : Quantity
        Electron temperature of the HII regions.
    synchrotron_index, free_free_index : float
        Spectral indices :math:`S \\propto \\nu^\\alpha`.

    Returns
    -------
    Quantity
        Spectral luminosity in W/Hz.
    """
    nu = (frequency / u.GHz).to_value(u.one)
    te = (electron_temperature / (1e4 * u.K)).to_value(u.one)
    coeff = 2.18 * te**0.45 * nu**free_free_index + 15.1 * nu**synchrotron_index
    rate = (sfr / (u.Msun / u.yr)).to_value(u.one)
    return (1e27 * rate * coeff * u.erg / u.s / u.Hz).to(u.W / u.Hz)


def luminosity_to_flux_density(
    luminosity: u.Quantity,
    luminosity_distance: u.Quantity,
    redshift: float = 0.0,
    spectral_index: float | None = None,
) -> u.Quantity:
    """Observed flux density of a spectral luminosity, with the K-correction.

    :math:`S_{\\nu} = (1+z)\\,L_{(1+z)\\nu} / (4\\pi D_L^2)`. If ``luminosity`` is given at the
    rest-frame frequency :math:`(1+z)\\nu` pass ``spectral_index=None``; if it is given at the
    *observed* frequency :math:`\\nu` of a power law :math:`L \\propto \\nu^\\alpha`, pass
    :math:`\\alpha` and :math:`S_\\nu = (1+z)^{1+\\alpha} L_\\nu / (4\\pi D_L^2)`.

    Parameters
    ----------
    luminosity : Quantity
        Spectral luminosity (power per frequency).
    luminosity_distance : Quantity
        Luminosity distance.
    redshift : float
        Source redshift.
    spectral_index : float or None
        Power-law index used to move the luminosity to the rest-frame frequency.

    Returns
    -------
    Quantity
        Flux density in Jy.
    """
    k = 1.0 + redshift if spectral_index is None else (1.0 + redshift) ** (1.0 + spectral_index)
    return (k * luminosity / (4.0 * np.pi * luminosity_distance**2)).to(u.Jy)


def sfr_to_flux_density(
    sfr: u.Quantity,
    frequency: u.Quantity,
    luminosity_distance: u.Quantity,
    redshift: float = 0.0,
    electron_temperature: u.Quantity = 1e4 * u.K,
    synchrotron_index: float = -0.8,
    free_free_index: float = -0.1,
) -> u.Quantity:
    """Observed radio continuum flux density of star formation at an observed frequency.

    The Murphy et al. (2011) luminosity (:func:`sfr_to_radio_luminosity`) is evaluated at the
    emitted frequency :math:`(1+z)\\nu_{\\rm obs}` and converted with
    :func:`luminosity_to_flux_density`, which is the exact K-correction of both components.

    Parameters
    ----------
    sfr : Quantity
        Star formation rate.
    frequency : Quantity
        Observed frequency.
    luminosity_distance : Quantity
        Luminosity distance.
    redshift : float
        Source redshift.
    electron_temperature : Quantity
        HII-region electron temperature.
    synchrotron_index, free_free_index : float
        Spectral indices.

    Returns
    -------
    Quantity
        Flux density in Jy.
    """
    lum = sfr_to_radio_luminosity(
        sfr, frequency * (1.0 + redshift), electron_temperature, synchrotron_index, free_free_index
    )
    return luminosity_to_flux_density(lum, luminosity_distance, redshift)
