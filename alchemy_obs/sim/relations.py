"""Observed galaxy scaling relations (medians and scatters), with their sources.

Plain functions of logarithmic quantities (``log10`` of Msun, kpc, km/s, Msun/yr), used
both to draw the synthetic galaxies (:mod:`alchemy_obs.sim.synthetic`) and to check them
(:mod:`alchemy_obs.sim.population`):

* :func:`moster2013_stellar_mass`: stellar-to-halo mass, Moster, Naab & White (2013,
  MNRAS 428, 3121), z = 0, 0.15 dex scatter;
* :func:`wang2016_hi_diameter`: HI size-mass, Wang et al. (2016, MNRAS 460, 2143),
  0.06 dex;
* :func:`xgass_gas_fraction`: HI gas fractions of xGASS, Catinella et al. (2018, MNRAS
  476, 875);
* :func:`speagle2014_sfr`: star-forming main sequence, Speagle et al. (2014, ApJS 214,
  15), 0.2 dex;
* :func:`lelli2019_baryonic_mass`: baryonic Tully-Fisher relation, Lelli et al. (2019,
  MNRAS 484, 3267), ~0.1 dex;
* :func:`curti2020_oxygen_abundance`: mass-metallicity, Curti et al. (2020, MNRAS 491,
  944), 0.05-0.08 dex above :math:`10^{9.5}\\,M_\\odot`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SOLAR_OXYGEN_ABUNDANCE",
    "MOSTER2013_SCATTER",
    "WANG2016_SCATTER",
    "SPEAGLE2014_SCATTER",
    "LELLI2019_SCATTER",
    "XGASS_GAS_FRACTIONS",
    "CURTI2020_SCATTER",
    "moster2013_stellar_mass",
    "wang2016_hi_diameter",
    "xgass_gas_fraction",
    "xgass_gas_fraction_scatter",
    "speagle2014_sfr",
    "lelli2019_baryonic_mass",
    "curti2020_oxygen_abundance",
    "curti2020_scatter",
]

#: Solar oxygen abundance :math:`12+\log({\rm O/H})_\odot` (Asplund et al. 2009, ARA&A 47,
#: 481), the solar value of Curti et al. (2020).
SOLAR_OXYGEN_ABUNDANCE = 8.69
#: Scatter of :math:`\log M_*` at fixed halo mass adopted by Moster et al. (2013), dex.
MOSTER2013_SCATTER = 0.15
#: Scatter of the HI size-mass relation (Wang et al. 2016), dex.
WANG2016_SCATTER = 0.06
#: Width of the main sequence after deconvolving measurement errors (Speagle et al. 2014), dex.
SPEAGLE2014_SCATTER = 0.2
#: Scatter of the baryonic Tully-Fisher relation in mass (Lelli et al. 2016, ApJL 816, L14;
#: Lelli et al. 2019), dex.
LELLI2019_SCATTER = 0.1


#: xGASS (Catinella et al. 2018, MNRAS 476, 875) HI gas fractions of the representative
#: sample in bins of stellar mass, non-detections at their upper limits. Columns: bin
#: centre log M*/Msun, log of the weighted average of M_HI/M*, its error, the median
#: log M_HI/M*, the number of galaxies.
XGASS_GAS_FRACTIONS = np.array([
    [9.14, -0.242, 0.053, -0.092, 113],
    [9.44, -0.459, 0.067, -0.320, 92],
    [9.74, -0.748, 0.069, -0.656, 96],
    [10.07, -0.869, 0.042, -0.854, 214],
    [10.34, -1.175, 0.037, -1.278, 191],
    [10.65, -1.231, 0.036, -1.223, 189],
    [10.95, -1.475, 0.033, -1.707, 196],
    [11.20, -1.589, 0.044, -1.785, 86],
])

#: Curti et al. (2020) fig. 3: 1σ spread of 12+log(O/H) of the SDSS galaxies about the
#: median, at log M*/Msun (dex; the figure as digitised in SWIFTSIM's
#: velociraptor-comparison-data, Curti2020.txt).
CURTI2020_SCATTER = np.array([
    [7.50, 0.230], [7.95, 0.166], [8.40, 0.095], [9.00, 0.080], [9.45, 0.084],
    [9.90, 0.072], [10.35, 0.048], [10.80, 0.045], [11.40, 0.053],
])


def moster2013_stellar_mass(log_m200: np.ndarray | float) -> np.ndarray:
    """Moster, Naab & White (2013) stellar-to-halo mass relation at z = 0 (their eq. 2).

    :math:`M_*/M_{200} = 2N[(M_{200}/M_1)^{-\\beta} + (M_{200}/M_1)^{\\gamma}]^{-1}` with
    the z = 0 values of their Table 1, :math:`\\log M_1 = 11.590`, :math:`N = 0.0351`,
    :math:`\\beta = 1.376`, :math:`\\gamma = 0.608`.

    Parameters
    ----------
    log_m200 : array_like or float
        :math:`\\log_{10}` of the halo mass within 200 times the critical density, Msun.

    Returns
    -------
    ndarray
        :math:`\\log_{10} M_*`, Msun.
    """
    log_m200 = np.asarray(log_m200, np.float64)
    x = 10 ** (log_m200 - 11.590)
    return log_m200 + np.log10(2 * 0.0351 / (x**-1.376 + x**0.608))


def wang2016_hi_diameter(log_m_hi: np.ndarray | float) -> np.ndarray:
    """Wang et al. (2016) HI size-mass relation, :math:`\\log D_{\\rm HI} = 0.506\\log M_{\\rm HI} - 3.293`.

    Parameters
    ----------
    log_m_hi : array_like or float
        :math:`\\log_{10}` of the HI mass, Msun.

    Returns
    -------
    ndarray
        :math:`\\log_{10}` of the diameter at an HI surface density of 1 Msun/pc², kpc.
    """
    return 0.506 * np.asarray(log_m_hi, np.float64) - 3.293


def xgass_gas_fraction(log_mstar: np.ndarray | float) -> np.ndarray:
    """xGASS median HI gas fraction, interpolated between the bins of :data:`XGASS_GAS_FRACTIONS`.

    Parameters
    ----------
    log_mstar : array_like or float
        :math:`\\log_{10} M_*`, Msun.

    Returns
    -------
    ndarray
        Median :math:`\\log_{10} M_{\\rm HI}/M_*`; NaN outside the bin centres 9.14-11.2.
    """
    t = XGASS_GAS_FRACTIONS
    return np.interp(np.asarray(log_mstar, np.float64), t[:, 0], t[:, 3], left=np.nan, right=np.nan)


def xgass_gas_fraction_scatter(log_mstar: np.ndarray | float) -> np.ndarray:
    """1σ spread of the xGASS HI gas fractions at fixed stellar mass.

    Catinella et al. (2018) tabulate the error of each bin's average rather than the
    spread; the spread is taken as that error times :math:`\\sqrt{N}` (0.4-0.7 dex: the
    gas fractions of a stellar-mass-selected sample, HI-poor quiescent galaxies included,
    span two decades).

    Parameters
    ----------
    log_mstar : array_like or float
        :math:`\\log_{10} M_*`, Msun.

    Returns
    -------
    ndarray
        Spread of :math:`\\log_{10} M_{\\rm HI}/M_*`, dex (constant beyond the end bins).
    """
    t = XGASS_GAS_FRACTIONS
    return np.interp(np.asarray(log_mstar, np.float64), t[:, 0], t[:, 2] * np.sqrt(t[:, 4]))


def speagle2014_sfr(log_mstar: np.ndarray | float, t_gyr: np.ndarray | float) -> np.ndarray:
    """Speagle et al. (2014) star-forming main sequence (their best fit, Kroupa IMF).

    :math:`\\log{\\rm SFR} = (0.84 - 0.026\\,t)\\log M_* - (6.51 - 0.11\\,t)`, with
    :math:`t` the age of the universe in Gyr (fitted at :math:`\\log M_* \\approx 9.7-11.1`).

    Parameters
    ----------
    log_mstar : array_like or float
        :math:`\\log_{10} M_*`, Msun.
    t_gyr : array_like or float
        Age of the universe, Gyr.

    Returns
    -------
    ndarray
        :math:`\\log_{10}` SFR, Msun/yr.
    """
    t = np.asarray(t_gyr, np.float64)
    return (0.84 - 0.026 * t) * np.asarray(log_mstar, np.float64) - (6.51 - 0.11 * t)


def lelli2019_baryonic_mass(log_v_flat: np.ndarray | float) -> np.ndarray:
    """Lelli et al. (2019) baryonic Tully-Fisher relation of SPARC for :math:`V_{\\rm flat}`.

    :math:`\\log M_b = 3.85\\log V_{\\rm flat} + 1.99`, their fit for the mean velocity
    along the flat part of HI rotation curves, with :math:`M_b = M_* + 1.33\\,M_{\\rm HI}`
    and :math:`\\Upsilon_{[3.6]} = 0.5`.

    Parameters
    ----------
    log_v_flat : array_like or float
        :math:`\\log_{10} V_{\\rm flat}`, km/s.

    Returns
    -------
    ndarray
        :math:`\\log_{10} M_b`, Msun.
    """
    return 3.85 * np.asarray(log_v_flat, np.float64) + 1.99


def curti2020_oxygen_abundance(log_mstar: np.ndarray | float) -> np.ndarray:
    """Curti et al. (2020) mass-metallicity relation of SDSS galaxies on the :math:`T_e` scale.

    :math:`12+\\log({\\rm O/H}) = Z_0 - \\frac{\\gamma}{\\beta}\\log_{10}[1 + (M_*/M_0)^{-\\beta}]`
    with :math:`Z_0 = 8.793`, :math:`\\log M_0 = 10.02`, :math:`\\gamma = 0.28`,
    :math:`\\beta = 1.2` (their eq. 5; Chabrier IMF, solar value 8.69).

    Parameters
    ----------
    log_mstar : array_like or float
        :math:`\\log_{10} M_*`, Msun.

    Returns
    -------
    ndarray
        :math:`12+\\log_{10}({\\rm O/H})`.
    """
    x = 10 ** (np.asarray(log_mstar, np.float64) - 10.02)
    return 8.793 - 0.28 / 1.2 * np.log10(1 + x**-1.2)


def curti2020_scatter(log_mstar: np.ndarray | float) -> np.ndarray:
    """1σ spread of :math:`12+\\log({\\rm O/H})` at fixed stellar mass (Curti et al. 2020, fig. 3).

    Parameters
    ----------
    log_mstar : array_like or float
        :math:`\\log_{10} M_*`, Msun.

    Returns
    -------
    ndarray
        Spread, dex, interpolated in :data:`CURTI2020_SCATTER`.
    """
    t = CURTI2020_SCATTER
    return np.interp(np.asarray(log_mstar, np.float64), t[:, 0], t[:, 1])
