"""Synthetic disc galaxies written in the exact IllustrisTNG cutout layout.

Each galaxy is drawn from a seeded generator (``numpy.random.default_rng((seed, index))``)
so a file is reproducible from ``(seed, index, n_particles)`` alone. The model, in physical
units and then converted to TNG code units with :mod:`alchemy_obs.physics.units`:

* **Dark matter**: an NFW halo truncated at :math:`R_{200}` with the Dutton & Macciò (2014)
  concentration-mass relation (0.11 dex scatter), plus a handful of Plummer subhaloes on
  orbits at :math:`0.2-0.9\\,R_{200}`; isotropic velocities from the spherical Jeans
  equation in the total potential (also for the bulge).
* **Stars**: stellar mass from the Moster et al. (2013) stellar-to-halo mass relation
  (0.15 dex scatter); an exponential disc (sech² vertical profile) whose scale length
  follows the halo spin (Mo, Mao & White 1998) and grows inside-out with formation time,
  plus a Hernquist bulge. Formation times from a delayed-tau star formation history, a
  metallicity that follows the gas gradient and decreases with age; a few wind particles
  (``GFM_StellarFormationTime <= 0``) above and below the disc.
* **Gas**: an atomic exponential disc with a near-universal central surface density (so
  gas-rich galaxies have large discs, Wang et al. 2016) and HI fractions falling with
  stellar mass as in xGASS (Catinella et al. 2018), plus a molecular exponential disc
  with the stellar scale length whose mass is the Speagle et al. (2014) main-sequence SFR
  times a depletion time (so star formation rises with redshift); a hydrostatic, flaring
  scale height, logarithmic spiral
  arms and lognormal density fluctuations; a hot :math:`\\beta`-model halo at the virial
  temperature. Star-forming cells (:math:`n_H > 0.1\\,{\\rm cm^{-3}}`) sit on a polytropic
  effective equation of state and form stars as in TNG, :math:`\\dot M_* = (1-\\beta)\\,x\\,m/t_*`
  (cold-cloud mass fraction :math:`x \\approx 0.9`, :math:`\\beta = 0.1`) with
  :math:`t_* = 2.2\\,{\\rm Gyr}\\,(\\rho/\\rho_{\\rm th})^{-1/2}`: the volumetric
  Schmidt law :math:`\\dot\\rho_* \\propto \\rho^{1.5}` calibrated to Kennicutt (1998). Neutral fractions follow a self-shielding curve (high in cold dense
  gas, :math:`\\sim10^{-6}` in the hot halo); electron abundances follow.
* **Kinematics**: the discs rotate at the circular velocity in their plane, where the
  exponential discs pull with their own potential (Freeman 1970) and the other components
  with their spherically averaged enclosed mass; with asymmetric drift (Jeans equation)
  and dispersions (isothermal-sheet :math:`\\sigma_z`), the gas with turbulence of
  ~10 km/s. Halo, bulge, hot gas and subhalo orbits use the spherical enclosed mass.
* **Magnetic field**: an ordered disc field along spiral arms (pitch angle 10-30 degrees)
  plus a divergence-free Kolmogorov-like turbulent field (a sum of random Fourier modes),
  both scaling as :math:`\\rho^{1/2}`, a few μG in the disc.
* **Black hole**: one particle at the centre, mass from the Kormendy & Ho (2013)
  :math:`M_{BH}-M_{\\rm bulge}` relation, at least TNG's seed mass.
* **Metals**: a negative radial gradient whose value at the star-forming radius follows
  the Curti et al. (2020) mass-metallicity relation (0.07 dex scatter).
* Sometimes (``merger_fraction``) a **merging companion** with mass ratio 0.1-0.4 falls in.

The relations come from :mod:`alchemy_obs.sim.relations`; whether the written particles
follow them is checked by :mod:`alchemy_obs.sim.population`
(``alchemy-obs synth --population-check``).

Particle numbers are set by the caller; 40 % go to dark matter, 30 % each to gas and stars
(the companion takes its mass share), so per-type particle masses differ as in a zoom
simulation, while all dark matter particles share one mass (``MassTable[1]``). The
galaxy is placed at a random position of a TNG-sized periodic box, in a third of the
cases within a few ckpc/h of a box face so that readers must wrap periodically.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from astropy.cosmology import FlatLambdaCDM
from scipy import special
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from alchemy_obs.config import SynthConfig
from alchemy_obs.physics import units
from alchemy_obs.physics.gas import HYDROGEN_FRACTION
from alchemy_obs.sim.relations import (
    MOSTER2013_SCATTER,
    SOLAR_OXYGEN_ABUNDANCE,
    SPEAGLE2014_SCATTER,
    curti2020_oxygen_abundance,
    moster2013_stellar_mass,
    speagle2014_sfr,
)

__all__ = [
    "TNG_COSMOLOGY",
    "tng_cosmology",
    "GalaxyParameters",
    "draw_parameters",
    "make_synthetic_cutout",
    "write_synthetic_cutouts",
    "is_valid_cutout",
]

log = logging.getLogger(__name__)

#: Planck 2015 cosmology of IllustrisTNG.
TNG_COSMOLOGY = {"h": 0.6774, "Omega0": 0.3089, "OmegaLambda": 0.6911, "OmegaBaryon": 0.0486}
#: TNG full snapshots and their redshifts.
_SNAPSHOTS = {99: 0.0, 91: 0.1, 84: 0.2, 78: 0.3, 72: 0.4, 67: 0.5, 59: 0.7, 50: 1.0}
#: TNG50 and TNG100 box sides in ckpc/h.
_BOXES = (35000.0, 75000.0)

G = 4.30091e-6  # kpc (km/s)^2 / Msun
_K_B = 1.380649e-16  # erg/K
_M_P = 1.67262192e-24  # g
_MSUN_KPC3_TO_G_CM3 = 1.98841e33 / (3.0856776e21) ** 3
_Z_SUN = 0.0127  # TNG's solar metallicity
_N_H_SF = 0.1  # cm^-3, star-formation threshold of the TNG model
_T_STAR_0_GYR = 2.2  # Springel & Hernquist (2003) star formation timescale at threshold
# Springel & Hernquist (2003, "SH03") two-phase ISM: mass fraction of massive stars that die
# at once (Salpeter IMF), cloud evaporation A0, supernova and cold-cloud temperatures.
_SH03_BETA = 0.1
_SH03_A0 = 1000.0
_SH03_T_SN = 1e8  # K
_SH03_T_CLOUD = 1e3  # K
# Mass fractions of the metals in GFM_Metals[2:9] (C, N, O, Ne, Mg, Si, Fe) and the rest,
# solar proportions (Asplund et al. 2009).
_METAL_MIX = np.array([0.178, 0.052, 0.431, 0.094, 0.053, 0.050, 0.096, 0.046])
_GAMMA = 5.0 / 3.0
# log(M_atomic/M*) = slope (log M* - 10) + norm: the xGASS median HI fractions (Catinella et
# al. 2018) once the HI model's ionised and molecular shares are taken off.
_ATOMIC_SLOPE = -0.8
_ATOMIC_NORM = -0.6
# Depletion time M_gas/SFR of the dense (molecular) gas disc under the Springel & Hernquist
# (2003) law at the synthetic discs' densities, Gyr: 0.3 Gyr puts the galaxies on the main
# sequence (alchemy-obs synth --population-check). Observed molecular depletion times are
# 1-2 Gyr (Leroy et al. 2008; Saintonge et al. 2017), so these molecular discs are 3-6
# times lighter than real ones: the thin synthetic layers are denser than TNG's coarse-
# grained ISM, on which the law was calibrated.
_T_DEPLETION_GYR = 0.3
# Radius, in disc scale lengths, at which the gas metallicity is that of the mass-metallicity
# relation: about the SFR-weighted radius of the star-forming gas.
_MZR_RADIUS_RD = 1.2
# 1-sigma spread of the gas-phase metallicity at fixed stellar mass, dex (Curti et al. 2020).
_MZR_SCATTER = 0.07


@dataclass(frozen=True)
class GalaxyParameters:
    """The drawn properties of one synthetic galaxy (physical units: Msun, kpc, km/s, μG)."""

    snapshot: int
    redshift: float
    box_size: float
    m200: float
    concentration: float
    stellar_mass: float
    bulge_fraction: float
    disc_scale_length: float
    cold_gas_mass: float
    molecular_fraction: float
    hot_gas_mass: float
    gas_central_surface_density: float
    spiral_arms: int
    pitch_angle_deg: float
    arm_amplitude: float
    b0_microgauss: float
    turbulent_ratio: float
    central_metallicity: float
    metallicity_gradient_dex_per_kpc: float
    tau_sfh_gyr: float
    merger: bool
    merger_mass_ratio: float


@functools.lru_cache(maxsize=1)
def tng_cosmology() -> FlatLambdaCDM:
    """The TNG (Planck 2015) cosmology as an astropy object."""
    return FlatLambdaCDM(
        H0=100 * TNG_COSMOLOGY["h"], Om0=TNG_COSMOLOGY["Omega0"], Ob0=TNG_COSMOLOGY["OmegaBaryon"]
    )


def _concentration(m200: float, z: float, h: float) -> float:
    """Dutton & Macciò (2014) c200(M200, z) for NFW haloes in Planck cosmology."""
    b = -0.101 + 0.026 * z
    a = 0.520 + (0.905 - 0.520) * math.exp(-0.617 * z**1.21)
    return 10 ** (a + b * math.log10(m200 * h / 1e12))


def draw_parameters(rng: np.random.Generator, merger_fraction: float) -> GalaxyParameters:
    """Draw one galaxy's global properties from scaling relations with scatter.

    Halo mass is log-uniform in :math:`10^{11}-10^{12.6}\\,M_\\odot`; concentration,
    stellar mass (the z=0 Moster et al. 2013 relation, used at all redshifts), bulge
    fraction, disc size (halo spin), atomic gas (xGASS HI fractions), molecular gas (the
    Speagle et al. 2014 main-sequence SFR at the galaxy's cosmic time times a depletion
    time), hot gas, spiral structure, magnetic field strength, metallicity (Curti et al.
    2020) and star formation history follow from it with scatter.

    Parameters
    ----------
    rng : numpy.random.Generator
        The galaxy's random stream.
    merger_fraction : float
        Probability of a merging companion.

    Returns
    -------
    GalaxyParameters
    """
    h = TNG_COSMOLOGY["h"]
    cosmo = tng_cosmology()
    snapshot = int(rng.choice(list(_SNAPSHOTS)))
    z = _SNAPSHOTS[snapshot]
    m200 = 10 ** rng.uniform(11.0, 12.6)
    conc = _concentration(m200, z, h) * 10 ** rng.normal(0, 0.11)
    log_ms = float(moster2013_stellar_mass(math.log10(m200))) + rng.normal(0, MOSTER2013_SCATTER)
    mstar = 10**log_ms
    bulge = float(np.clip(0.1 + 0.25 * (log_ms - 10.0) + rng.normal(0, 0.1), 0.02, 0.7))
    r200 = _r200(m200, cosmo, z)
    spin = 0.035 * math.exp(rng.normal(0, 0.4))
    # Mo, Mao & White (1998) R_d = lambda R200 / sqrt(2), lowered by 40 % for the disc's
    # smaller specific angular momentum: 3 kpc for a Milky Way halo.
    rd = float(np.clip(0.6 * spin / math.sqrt(2) * r200, 0.7, 7.0))
    # Atomic gas (HI + helium): HI gas fractions falling with stellar mass as the xGASS
    # medians (Catinella et al. 2018), measured through the HI model of physics.gas.
    atomic = mstar * 10 ** (_ATOMIC_SLOPE * (log_ms - 10.0) + _ATOMIC_NORM + rng.normal(0, 0.25))
    f_b = TNG_COSMOLOGY["OmegaBaryon"] / TNG_COSMOLOGY["Omega0"]
    hot_share = rng.uniform(0.1, 0.5)
    box_size = float(rng.choice(_BOXES))
    sigma0 = rng.uniform(0.8e7, 2.5e7)
    arms = int(rng.choice([2, 2, 3, 4]))
    pitch = rng.uniform(10.0, 30.0)
    arm_amplitude = rng.uniform(0.2, 0.7)
    b0 = rng.uniform(15.0, 45.0)
    turbulent_ratio = rng.uniform(0.5, 1.5)
    z_scatter = rng.normal(0, _MZR_SCATTER)
    gradient = -rng.uniform(0.1, 0.3) / rd
    # Gas-phase metallicity where the star-forming gas is on the Curti et al. (2020)
    # mass-metallicity relation.
    oxygen = float(curti2020_oxygen_abundance(log_ms)) + z_scatter - gradient * _MZR_RADIUS_RD * rd
    central_z = _Z_SUN * 10 ** (oxygen - SOLAR_OXYGEN_ABUNDANCE)
    tau_sfh = rng.uniform(2.0, 10.0)
    merger = bool(rng.random() < merger_fraction)
    merger_ratio = rng.uniform(0.1, 0.4)
    # Molecular gas: the main-sequence SFR (Speagle et al. 2014) at this cosmic time times
    # the depletion time, so that the star formation rate rises with redshift as observed.
    t_now = cosmo.age(z).to_value("Gyr")
    sfr_ms = 10 ** float(speagle2014_sfr(log_ms, t_now) + rng.normal(0, SPEAGLE2014_SCATTER))
    molecular = sfr_ms * _T_DEPLETION_GYR * 1e9
    cold = atomic + molecular
    hot = max(hot_share * (f_b * m200 - mstar - cold), 0.05 * cold)
    return GalaxyParameters(
        snapshot=snapshot,
        redshift=z,
        box_size=box_size,
        m200=m200,
        concentration=conc,
        stellar_mass=mstar,
        bulge_fraction=bulge,
        disc_scale_length=rd,
        cold_gas_mass=cold,
        molecular_fraction=molecular / cold,
        hot_gas_mass=hot,
        gas_central_surface_density=sigma0,
        spiral_arms=arms,
        pitch_angle_deg=pitch,
        arm_amplitude=arm_amplitude,
        b0_microgauss=b0,
        turbulent_ratio=turbulent_ratio,
        central_metallicity=central_z,
        metallicity_gradient_dex_per_kpc=gradient,
        tau_sfh_gyr=tau_sfh,
        merger=merger,
        merger_mass_ratio=merger_ratio,
    )


def _r200(m200: float, cosmo: FlatLambdaCDM, z: float) -> float:
    """Radius (kpc) inside which the mean density is 200 times critical."""
    rho_c = cosmo.critical_density(z).to_value("Msun/kpc3")
    return (3 * m200 / (4 * math.pi * 200 * rho_c)) ** (1 / 3)


def _sample_cdf(rng: np.random.Generator, n: int, x: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Inverse-transform samples of a tabulated, monotonic cumulative distribution."""
    cdf = cdf / cdf[-1]
    return np.interp(rng.random(n), cdf, x)


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _nfw_m(x: np.ndarray) -> np.ndarray:
    return np.log1p(x) - x / (1 + x)


class _MassModel:
    """Enclosed mass of all components, for circular velocities.

    :meth:`vcirc` is the spherical :math:`\\sqrt{GM(<r)/r}` (halo, bulge and hot gas
    orbits, the Jeans equation); :meth:`vcirc_plane` is the circular velocity in the disc
    plane, where the exponential discs added with :meth:`add_disc` pull with their own
    (non-spherical) potential.
    """

    def __init__(self, r_max: float):
        self.r = np.geomspace(1e-3, r_max, 600)
        self.m = np.zeros_like(self.r)
        self.discs: list[tuple[float, float]] = []

    def add(self, enclosed: np.ndarray) -> None:
        self.m += enclosed

    def add_disc(self, mass: float, scale_length: float) -> None:
        """Add an exponential disc: its enclosed mass and its in-plane potential."""
        x = self.r / scale_length
        self.m += mass * (1 - (1 + x) * np.exp(-x))
        self.discs.append((mass, scale_length))

    def vcirc(self, r: np.ndarray) -> np.ndarray:
        m = np.interp(r, self.r, self.m)
        return np.sqrt(G * m / np.maximum(r, 1e-3))

    def vcirc_plane(self, big_r: np.ndarray) -> np.ndarray:
        """Circular velocity in the plane of the discs, km/s.

        Each exponential disc contributes the razor-thin disc's
        :math:`V^2 = 4\\pi G\\Sigma_0 R_d\\,y^2[I_0(y)K_0(y) - I_1(y)K_1(y)]`,
        :math:`y = R/2R_d` (Freeman 1970, ApJ 160, 811; Binney & Tremaine 2008, eq. 2.165),
        the other components their spherical :math:`GM(<r)/r`. Between 2 and 6 scale
        lengths a disc pulls 15-30 % harder in :math:`V^2` than the same mass arranged
        spherically, and the disc plane is where the gas of an HI rotation curve orbits.
        """
        big_r = np.maximum(np.asarray(big_r, np.float64), 1e-3)
        v2 = G * np.interp(big_r, self.r, self.m) / big_r
        for mass, rd in self.discs:
            x = big_r / rd
            y = 0.5 * x
            # i0e * k0e = I0 K0: the exponentially scaled functions do not overflow far out.
            bessel = special.i0e(y) * special.k0e(y) - special.i1e(y) * special.k1e(y)
            thin = 2 * G * mass / rd * y**2 * bessel
            v2 += thin - G * mass * (1 - (1 + x) * np.exp(-x)) / big_r
        return np.sqrt(np.maximum(v2, 0.0))

    def jeans_dispersion(self, density: np.ndarray, r: np.ndarray) -> np.ndarray:
        """1-D velocity dispersion of an isotropic tracer in this potential, km/s.

        Solves the spherical Jeans equation, :math:`\\rho\\sigma^2(r) = \\int_r^\\infty
        \\rho\\,G M(r')/r'^2\\,dr'`, for a tracer with density profile ``density``
        tabulated on the model's radial grid; evaluated at radii ``r``.
        """
        integrand = density * G * self.m / self.r**2
        segments = 0.5 * (integrand[1:] + integrand[:-1]) * np.diff(self.r)
        outside = np.concatenate([np.cumsum(segments[::-1])[::-1], [0.0]])
        sigma2 = outside / np.maximum(density, 1e-300)
        return np.sqrt(np.interp(r, self.r, sigma2))


@dataclass
class _Structure:
    """Derived sizes, masses, particle numbers and mass model of one galaxy (kpc, Msun)."""

    p: GalaxyParameters
    scale: float
    m200: float
    r200: float
    m_dm_total: float
    m_dm: float
    mstar: float
    mcold: float
    mmol: float
    mhot: float
    rd: float
    rg: float
    rmol: float
    a_bulge: float
    t_now: float
    n_dm: int
    n_disc: int
    n_bulge: int
    n_wind: int
    n_cold: int
    n_hot: int
    model: _MassModel
    r_core: float
    beta: float
    hot_cdf: np.ndarray

    def sigma_disc(self, big_r: np.ndarray) -> np.ndarray:
        """Surface density of the stellar disc, Msun/kpc^2."""
        m = self.mstar * (1 - self.p.bulge_fraction)
        return m / (2 * math.pi * self.rd**2) * np.exp(-big_r / self.rd)

    def _sigma_atomic(self, big_r: np.ndarray) -> np.ndarray:
        m = self.mcold - self.mmol
        return m / (2 * math.pi * self.rg**2) * np.exp(-big_r / self.rg)

    def _sigma_molecular(self, big_r: np.ndarray) -> np.ndarray:
        return self.mmol / (2 * math.pi * self.rmol**2) * np.exp(-big_r / self.rmol)

    def sigma_gas(self, big_r: np.ndarray) -> np.ndarray:
        """Surface density of the cold gas disc (atomic plus molecular), Msun/kpc^2."""
        return self._sigma_atomic(big_r) + self._sigma_molecular(big_r)

    def gas_log_slope(self, big_r: np.ndarray) -> np.ndarray:
        """:math:`-d\\ln\\Sigma_{\\rm gas}/d\\ln R` of the cold gas disc."""
        atomic, molecular = self._sigma_atomic(big_r), self._sigma_molecular(big_r)
        return big_r * (atomic / self.rg + molecular / self.rmol) / np.maximum(atomic + molecular, 1e-300)

    def gas_metallicity(self, big_r: np.ndarray) -> np.ndarray:
        """Gas-phase metal mass fraction of the disc at radius R (kpc)."""
        slope = self.p.metallicity_gradient_dex_per_kpc / self.scale ** (1 / 3)
        return self.p.central_metallicity * 10 ** (slope * big_r)


def _structure(
    rng: np.random.Generator,
    p: GalaxyParameters,
    n_particles: int,
    scale: float,
    m_dm: float | None,
    cosmo: FlatLambdaCDM,
    with_halo_gas: bool,
) -> _Structure:
    z = p.redshift
    m200 = p.m200 * scale
    r200 = _r200(m200, cosmo, z)
    f_b = TNG_COSMOLOGY["OmegaBaryon"] / TNG_COSMOLOGY["Omega0"]
    m_dm_total = (1 - f_b) * m200
    mstar = p.stellar_mass * scale
    mcold = p.cold_gas_mass * scale
    mmol = mcold * p.molecular_fraction
    mhot = p.hot_gas_mass * scale if with_halo_gas else 0.0
    rd = p.disc_scale_length * scale ** (1 / 3)
    # Atomic gas discs have nearly universal central surface densities (8-25 Msun/pc^2; cf.
    # the HI size-mass relation, Wang et al. 2016), so gas-rich galaxies have large discs;
    # molecular gas follows the stars (Leroy et al. 2008: H2 scale length ~ stellar R_d).
    rg = max(math.sqrt((mcold - mmol) / (2 * math.pi * p.gas_central_surface_density)), 1.2 * rd)
    rmol = rd
    a_bulge = 0.2 * rd

    n_dm = max(int(round((0.4 * n_particles) if m_dm is None else (m_dm_total / m_dm))), 32)
    m_dm = m_dm_total / n_dm if m_dm is None else m_dm
    n_star = max(int(round(0.3 * n_particles)), 32)
    n_gas = max(int(round(0.3 * n_particles)), 32)
    cold_share = max(0.6, mcold / (mcold + mhot)) if mhot > 0 else 1.0
    n_cold = max(int(round(cold_share * n_gas)), 16)
    n_wind = max(int(round(0.01 * n_star)), 1)
    n_bulge = int(round(p.bulge_fraction * (n_star - n_wind)))

    model = _MassModel(3 * r200)
    r = model.r
    rs = r200 / p.concentration
    model.add(m_dm_total * _nfw_m(np.minimum(r, r200) / rs) / _nfw_m(p.concentration))
    model.add(mstar * p.bulge_fraction * r**2 / (r + a_bulge) ** 2)
    model.add_disc(mstar * (1 - p.bulge_fraction), rd)
    model.add_disc(mcold - mmol, rg)
    model.add_disc(mmol, rmol)
    # Hot beta-model halo between half the gas disc scale length and R200.
    r_core = rng.uniform(0.05, 0.15) * r200
    beta = rng.uniform(0.5, 0.75)
    shell = np.where((r > 0.5 * rg) & (r < r200), r**2 * (1 + (r / r_core) ** 2) ** (-1.5 * beta), 0.0)
    hot_cdf = np.concatenate([[0.0], np.cumsum(0.5 * (shell[1:] + shell[:-1]) * np.diff(r))])
    if mhot > 0:
        model.add(mhot * hot_cdf / hot_cdf[-1])
    return _Structure(
        p=p, scale=scale, m200=m200, r200=r200, m_dm_total=m_dm_total, m_dm=m_dm, mstar=mstar, mcold=mcold,
        mmol=mmol, mhot=mhot, rd=rd, rg=rg, rmol=rmol, a_bulge=a_bulge, t_now=cosmo.age(z).to_value("Gyr"),
        n_dm=n_dm,
        n_disc=n_star - n_wind - n_bulge, n_bulge=n_bulge, n_wind=n_wind, n_cold=n_cold,
        n_hot=n_gas - n_cold if mhot > 0 else 0, model=model, r_core=r_core, beta=beta,
        hot_cdf=hot_cdf,
    )


def _dark_matter(rng: np.random.Generator, s: _Structure) -> dict[str, np.ndarray]:
    """Truncated NFW halo plus Plummer subhaloes on circular orbits."""
    n_sub = int(min(rng.poisson(4), 10))
    sub_frac = 10 ** rng.uniform(-3.0, -1.7, n_sub)
    n_in_sub = np.maximum((sub_frac * s.n_dm).astype(int), 8)
    n_main = s.n_dm - int(n_in_sub.sum())
    c = s.p.concentration
    x = np.linspace(0, c, 2000)
    r = s.r200 / c * _sample_cdf(rng, n_main, x, _nfw_m(x))
    pos = [r[:, None] * _unit_vectors(rng, n_main)]
    # Isotropic velocities in equilibrium with the total potential (the NFW profile is
    # continued beyond R200, whose surrounding matter confines the halo).
    xg = s.model.r * c / s.r200
    sigma = s.model.jeans_dispersion(1.0 / (xg * (1 + xg) ** 2), r)
    vel = [rng.normal(size=(n_main, 3)) * sigma[:, None]]
    for ns in n_in_sub:
        msub = ns * s.m_dm
        centre = s.r200 * rng.uniform(0.2, 0.9) * _unit_vectors(rng, 1)[0]
        a_pl = 0.6 * (msub / 1e9) ** (1 / 3)  # kpc; dense enough to survive near the host
        v_orbit = s.model.vcirc(np.array([np.linalg.norm(centre)]))[0]
        direction = np.cross(centre, _unit_vectors(rng, 1)[0])
        direction /= np.linalg.norm(direction)
        sub_pos, sub_vel = _plummer_sphere(rng, ns, msub, a_pl)
        pos.append(centre + sub_pos)
        vel.append(v_orbit * direction + sub_vel)
    return {"pos": np.concatenate(pos), "vel": np.concatenate(vel)}


def _plummer_sphere(
    rng: np.random.Generator, n: int, mass: float, a: float, r_max: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (kpc) and isotropic velocities (km/s) of a Plummer sphere about the origin.

    Radii invert :math:`M(<r)/M = r^3/(r^2 + a^2)^{3/2}`, held at ``r_max`` scale radii. Each
    velocity component is Gaussian with the isotropic Jeans dispersion at the particle's
    radius, :math:`\\sigma^2(r) = GM/(6\\sqrt{r^2 + a^2})` (the isotropic Plummer model;
    Dejonghe 1987, MNRAS 224, 13), so that the mass-weighted
    :math:`\\langle v^2\\rangle = 3\\pi GM/(32a)` satisfies the virial theorem
    :math:`2K + W = 0` with :math:`W = -3\\pi GM^2/(32a)`. (One global dispersion
    :math:`GM/(6a)`, the central value, made the sphere 30 % too hot in
    :math:`\\sqrt{\\langle v^2\\rangle}`.)
    """
    r = np.minimum(a / np.sqrt(rng.random(n) ** (-2 / 3) - 1), r_max * a)
    pos = r[:, None] * _unit_vectors(rng, n)
    sigma = np.sqrt(G * mass / (6 * np.sqrt(r**2 + a**2)))
    return pos, rng.normal(size=(n, 3)) * sigma[:, None]


def _stars(rng: np.random.Generator, s: _Structure, cosmo: FlatLambdaCDM) -> dict[str, np.ndarray]:
    """Inside-out exponential disc, Hernquist bulge and a few wind particles."""
    p, rd, t_now = s.p, s.rd, s.t_now
    t_grid = np.linspace(0.0, t_now, 400)
    t_form = _sample_cdf(rng, s.n_disc, t_grid, np.cumsum(t_grid * np.exp(-t_grid / p.tau_sfh_gyr)))
    age = t_now - t_form
    # Inside-out growth: the scale length of a stellar generation grows with its birth time.
    big_r = np.minimum(rng.gamma(2.0, 1.0, s.n_disc) * rd * (0.5 + 0.5 * t_form / t_now) / 0.75, 8 * rd)
    # Young stars still trace the gas spiral arms; old ones are mixed.
    phi = _spiral_phases(rng, big_r, p.arm_amplitude * (0.15 + 0.85 * np.exp(-age / 0.5)), p, rd)
    z0 = 0.12 * rd * (0.5 + age / t_now)  # older stars in a thicker disc
    zz = z0 * np.arctanh(np.clip(2 * rng.random(s.n_disc) - 1, -0.9999, 0.9999))
    pos_disc = np.column_stack([big_r * np.cos(phi), big_r * np.sin(phi), zz])
    sig_z = np.sqrt(math.pi * G * s.sigma_disc(big_r) * z0)  # isothermal sheet
    sig_r = 1.8 * sig_z
    # Jeans equation with sigma_R^2 ~ exp(-R/R_d) and sigma_phi^2 = sigma_R^2 / 2.
    v_c = s.model.vcirc_plane(big_r)
    v_phi = np.sqrt(np.maximum(v_c**2 + sig_r**2 * (0.5 - 2 * big_r / rd), 0.0))
    vel_disc = _cylindrical_velocities(rng, phi, v_phi, sig_r, sig_r / math.sqrt(2), sig_z)

    sq = np.sqrt(0.95 * rng.random(s.n_bulge))  # Hernquist M(<r) = M r^2/(r+a)^2, 95 % of it
    r_b = s.a_bulge * sq / (1 - sq)
    pos_bulge = r_b[:, None] * _unit_vectors(rng, s.n_bulge)
    grid = s.model.r
    sigma_bulge = s.model.jeans_dispersion(1.0 / (grid * (grid + s.a_bulge) ** 3), r_b)  # Hernquist
    vel_bulge = rng.normal(size=(s.n_bulge, 3)) * sigma_bulge[:, None]
    t_bulge = rng.uniform(0.3, 0.35 * t_now, s.n_bulge)

    r_w = rng.gamma(2.0, 1.0, s.n_wind) * rd
    phi_w = rng.uniform(0, 2 * math.pi, s.n_wind)
    z_w = rng.choice([-1.0, 1.0], s.n_wind) * rng.uniform(0.5, 10.0, s.n_wind)
    pos_wind = np.column_stack([r_w * np.cos(phi_w), r_w * np.sin(phi_w), z_w])
    vel_wind = _cylindrical_velocities(rng, phi_w, s.model.vcirc(r_w), 10.0, 10.0, 10.0)
    vel_wind[:, 2] += np.sign(z_w) * rng.uniform(200.0, 600.0, s.n_wind)

    n_real = s.n_disc + s.n_bulge
    mass = rng.uniform(0.6, 1.4, n_real)  # stellar mass loss spreads particle masses
    mass *= s.mstar / mass.sum()
    a_of_t = _scale_factor_at_time(cosmo)
    a_now = 1 / (1 + p.redshift)
    return {
        "pos": np.concatenate([pos_disc, pos_bulge, pos_wind]),
        "vel": np.concatenate([vel_disc, vel_bulge, vel_wind]),
        "mass": np.concatenate([mass, np.full(s.n_wind, s.mstar / n_real)]),
        # Wind particles carry GFM_StellarFormationTime <= 0.
        "a_form": np.concatenate([a_of_t(t_form), a_of_t(t_bulge), -rng.uniform(0.05, 1.0, s.n_wind) * a_now]),
        "Z": np.concatenate([
            s.gas_metallicity(big_r) * 10 ** (-0.5 * age / t_now + rng.normal(0, 0.1, s.n_disc)),
            p.central_metallicity * 10 ** (0.1 + rng.normal(0, 0.15, s.n_bulge)),
            s.gas_metallicity(r_w),
        ]),
    }


def _gas(rng: np.random.Generator, s: _Structure) -> dict[str, np.ndarray]:
    """Cold disc with spiral arms and a hot halo: positions, velocities, masses, densities."""
    p, rd, n_cold, n_hot = s.p, s.rd, s.n_cold, s.n_hot
    # Each cell belongs to the atomic or the molecular exponential with its mass share.
    scale_length = np.where(rng.random(n_cold) < p.molecular_fraction, s.rmol, s.rg)
    big_r = np.minimum(rng.gamma(2.0, 1.0, n_cold), 7.0) * scale_length
    phi = _spiral_phases(rng, big_r, np.full(n_cold, p.arm_amplitude), p, rd)
    # Hydrostatic scale height h = sigma_eff^2 / (pi G Sigma_tot) of a self-gravitating
    # layer; sigma_eff includes the effective-EOS pressure of the star-forming ISM.
    sigma_eff = rng.uniform(10.0, 16.0)
    h_g = np.clip(sigma_eff**2 / (math.pi * G * (s.sigma_gas(big_r) + s.sigma_disc(big_r))), 0.08, 2.0)
    h_centre = np.clip(sigma_eff**2 / (math.pi * G * (s.sigma_gas(0.0) + s.sigma_disc(0.0))), 0.08, 2.0)
    zz = h_g * np.arctanh(np.clip(2 * rng.random(n_cold) - 1, -0.999, 0.999))
    pos_cold = np.column_stack([big_r * np.cos(phi), big_r * np.sin(phi), zz])
    arm = 1 + p.arm_amplitude * np.cos(p.spiral_arms * (phi - _arm_phase(big_r, p, rd)))
    clumping = np.exp(rng.normal(-0.06, 0.35, n_cold))  # lognormal turbulent density contrast
    rho_cold = s.sigma_gas(big_r) / (2 * h_g) / np.cosh(zz / h_g) ** 2 * arm * clumping
    sig_gas = rng.uniform(7.0, 14.0)
    # Pressure support lowers rotation: v_phi^2 = V_c^2 - sigma^2 * 2 (-dln Sigma/dln R).
    v_c = s.model.vcirc_plane(big_r)
    v_phi = np.sqrt(np.maximum(v_c**2 - sig_gas**2 * 2 * s.gas_log_slope(big_r), 0.0))
    vel_cold = _cylindrical_velocities(rng, phi, v_phi, sig_gas, sig_gas, sig_gas)

    r_hot = _sample_cdf(rng, n_hot, s.model.r, s.hot_cdf)
    pos_hot = r_hot[:, None] * _unit_vectors(rng, n_hot)
    v_hot = s.model.vcirc(r_hot)
    phi_hot = np.arctan2(pos_hot[:, 1], pos_hot[:, 0])
    vel_hot = _cylindrical_velocities(rng, phi_hot, 0.3 * v_hot, 0.6 * v_hot, 0.6 * v_hot, 0.6 * v_hot)
    rho_hot = s.mhot / (4 * math.pi * s.hot_cdf[-1]) * (1 + (r_hot / s.r_core) ** 2) ** (-1.5 * s.beta)
    v200 = math.sqrt(G * s.m200 / s.r200)
    t_vir = 0.59 * _M_P * (v200 * 1e5) ** 2 / (2 * _K_B)
    t_hot = t_vir * rng.uniform(0.7, 1.3) * (1 + r_hot / s.r_core) ** -0.15

    cold_mass = rng.uniform(0.5, 1.5, n_cold)  # refinement keeps cells within 2x of target
    cold_mass *= s.mcold / cold_mass.sum()
    return {
        "pos": np.concatenate([pos_cold, pos_hot]),
        "vel": np.concatenate([vel_cold, vel_hot]),
        "mass": np.concatenate([cold_mass, np.full(n_hot, s.mhot / max(n_hot, 1))]),
        "rho": np.concatenate([rho_cold, rho_hot]),
        "Z": np.concatenate([
            s.gas_metallicity(big_r) * 10 ** rng.normal(0, 0.05, n_cold),
            np.full(n_hot, _Z_SUN * rng.uniform(0.05, 0.3)),
        ]),
        "T_hot": np.concatenate([np.full(n_cold, np.nan), t_hot]),
        "disc": np.concatenate([np.ones(n_cold, bool), np.zeros(n_hot, bool)]),
        "rho_disc0": np.full(n_cold + n_hot, s.sigma_gas(0.0) / (2 * h_centre)),
    }


def _black_hole(rng: np.random.Generator, s: _Structure) -> dict[str, np.ndarray]:
    """One central black hole on the Kormendy & Ho (2013) M_BH - M_bulge relation."""
    m_bulge = max(s.mstar * s.p.bulge_fraction, 1e8)
    # Never below TNG's seed mass of 8e5 Msun/h.
    m_bh = max(0.49e9 * (m_bulge / 1e11) ** 1.16 * 10 ** rng.normal(0, 0.28), 8e5 / TNG_COSMOLOGY["h"])
    return {
        "pos": rng.normal(0, 0.01, (1, 3)),
        "vel": rng.normal(0, 5.0, (1, 3)),
        "mass": np.array([1.02 * m_bh]),  # dynamical mass includes the accretion reservoir
        "bh_mass": np.array([m_bh]),
    }


def _disc_galaxy(
    rng: np.random.Generator,
    p: GalaxyParameters,
    n_particles: int,
    scale: float,
    m_dm: float | None,
    cosmo: FlatLambdaCDM,
    with_halo_gas: bool,
) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """Particles of one galaxy in its own frame (disc in the x-y plane), physical units.

    ``scale`` multiplies all masses (companions); ``m_dm`` fixes the DM particle mass so
    that a companion shares ``MassTable[1]`` with the main galaxy. Returns the particle
    dictionaries and the DM particle mass.
    """
    s = _structure(rng, p, n_particles, scale, m_dm, cosmo, with_halo_gas)
    gas = _gas(rng, s)
    gas.update(_gas_thermodynamics(rng, gas))
    gas["B"] = _magnetic_field(rng, p, gas)
    parts = {"dm": _dark_matter(rng, s), "stars": _stars(rng, s, cosmo), "gas": gas, "bh": _black_hole(rng, s)}
    return parts, s.m_dm


def _arm_phase(big_r: np.ndarray, p: GalaxyParameters, rd: float) -> np.ndarray:
    """Azimuth of a logarithmic spiral arm at radius R: ln(R/R_d)/tan(pitch)."""
    return np.log(np.maximum(big_r, 1e-3) / rd) / math.tan(math.radians(p.pitch_angle_deg))


def _spiral_phases(
    rng: np.random.Generator, big_r: np.ndarray, amp: np.ndarray, p: GalaxyParameters, rd: float
) -> np.ndarray:
    """Azimuths distributed as 1 + A cos(m (phi - phi_arm(R))) by rejection sampling."""
    n = big_r.size
    phi = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        trial = rng.uniform(0, 2 * math.pi, todo.size)
        dens = 1 + amp[todo] * np.cos(p.spiral_arms * (trial - _arm_phase(big_r[todo], p, rd)))
        ok = rng.random(todo.size) * (1 + amp[todo]) < dens
        phi[todo[ok]] = trial[ok]
        todo = todo[~ok]
    return phi


def _cylindrical_velocities(
    rng: np.random.Generator,
    phi: np.ndarray,
    v_phi: np.ndarray | float,
    sig_r: np.ndarray | float,
    sig_phi: np.ndarray | float,
    sig_z: np.ndarray | float,
) -> np.ndarray:
    n = phi.size
    vr = rng.normal(size=n) * sig_r
    vp = v_phi + rng.normal(size=n) * sig_phi
    vz = rng.normal(size=n) * sig_z
    cos, sin = np.cos(phi), np.sin(phi)
    return np.column_stack([vr * cos - vp * sin, vr * sin + vp * cos, vz])


def _scale_factor_at_time(cosmo: FlatLambdaCDM) -> Callable[[np.ndarray], np.ndarray]:
    """Interpolator from cosmic time since the Big Bang (Gyr) to the scale factor."""
    a = np.geomspace(0.02, 1.0, 300)
    t = cosmo.age(1 / a - 1).to_value("Gyr")
    return lambda t_gyr: np.interp(t_gyr, t, a)


def helium_fraction(metallicity: np.ndarray) -> np.ndarray:
    """Helium mass fraction :math:`Y = Y_p + (\\Delta Y/\\Delta Z)\\,Z` of gas of metallicity Z.

    Primordial :math:`Y_p = 0.2485` and :math:`\\Delta Y/\\Delta Z = 1.7` (Jimenez et al.
    2003, Science 299, 1552): metal-free gas has the primordial fraction, solar gas
    (Z = 0.0127) 0.270.
    """
    return 0.2485 + 1.7 * np.asarray(metallicity)


def cold_cloud_fraction(density_ratio: np.ndarray) -> np.ndarray:
    """Mass fraction in cold clouds of star-forming gas on the SH03 effective EOS.

    The equilibrium of the two phases (SH03, section 3) gives
    :math:`x = 1 + 1/(2y) - \\sqrt{1/y + 1/(4y^2)}`, the root of :math:`y(1-x)^2 = x`, with
    :math:`y \\propto t_*\\,\\Lambda_{\\rm net}/\\rho \\propto \\rho^{1/2}` for a fixed cooling
    function of the hot phase (its temperature rises with density, where the primordial
    cooling function changes slowly). At the threshold, continuity of the effective EOS fixes
    :math:`x_{\\rm th} = 1 + (A_0 + 1)(u_c - u_4)/u_{\\rm SN}` (SH03, section 5.1): 0.905 for
    :math:`A_0 = 1000`, :math:`T_{\\rm SN} = 10^8` K, 1000 K clouds (neutral) and
    :math:`u_4` of ionised gas at :math:`10^4` K.

    Parameters
    ----------
    density_ratio : ndarray
        :math:`\\rho/\\rho_{\\rm th}` (>= 1 for star-forming gas).

    Returns
    -------
    ndarray
        Cold cloud mass fraction :math:`x`, 0.905 at the threshold, rising towards 1.
    """
    mu_ionised = 4.0 / (8.0 - 5.0 * (1.0 - HYDROGEN_FRACTION))
    mu_neutral = 4.0 / (1.0 + 3.0 * HYDROGEN_FRACTION)
    # Specific energies in units of k_B / ((gamma - 1) m_p): T / mu.
    u_c, u_4, u_sn = _SH03_T_CLOUD / mu_neutral, 1e4 / mu_ionised, _SH03_T_SN / mu_ionised
    x_th = 1.0 + (_SH03_A0 + 1.0) * (u_c - u_4) / u_sn
    y = x_th / (1.0 - x_th) ** 2 * np.sqrt(np.asarray(density_ratio, np.float64))
    return 1.0 + 1.0 / (2.0 * y) - np.sqrt(1.0 / y + 1.0 / (4.0 * y * y))


def _gas_thermodynamics(
    rng: np.random.Generator, gas: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Temperatures, ionisation state, SFR and internal energy of the gas cells."""
    z_met = gas["Z"]
    helium = helium_fraction(z_met)
    x_h = 1.0 - helium - z_met
    rho_cgs = gas["rho"] * _MSUN_KPC3_TO_G_CM3
    n_h = x_h * rho_cgs / _M_P
    disc = gas["disc"]
    sf = disc & (n_h > _N_H_SF)
    # Warm ISM ~1e4 K, slightly warmer at low density; SF cells on the effective EOS.
    t = np.where(disc, 1e4 * np.clip((n_h / 0.01) ** -0.15, 0.6, 2.0) * 10 ** rng.normal(0, 0.05, n_h.size), gas["T_hot"])
    t = np.where(sf, 1e4 * (n_h / _N_H_SF) ** (1 / 3), t)
    # Self-shielding (Rahmati et al. 2013 shape) against the UV background.
    n_ss = 6e-3
    shield = 0.98 * (1 + (n_h / n_ss) ** 2) ** -1
    x_hi = np.where(disc, np.clip(1.0 - shield - 2e-3, 1e-4, 0.995), 10 ** rng.uniform(-6.5, -5.5, n_h.size))
    x_hi = np.where(sf, np.clip(x_hi * 0.92, 1e-4, 1.0), x_hi)
    y_ratio = helium / (4 * x_h)
    x_e = np.where(disc, (1 - x_hi) * (1 + y_ratio), 1 - x_hi + 2 * y_ratio)
    mu = 4.0 / (1 + 3 * x_h + 4 * x_h * x_e)
    u = _K_B * t / ((_GAMMA - 1) * mu * _M_P) / 1e10  # (km/s)^2
    rho_th = _N_H_SF * _M_P / x_h / _MSUN_KPC3_TO_G_CM3
    t_star_yr = _T_STAR_0_GYR * 1e9 * np.sqrt(rho_th / gas["rho"])
    # Only the cold clouds (mass fraction x) form stars, and the fraction beta of what they
    # form dies at once: SFR = (1 - beta) x m / t* (SH03, as in TNG).
    cold = cold_cloud_fraction(np.where(sf, gas["rho"] / rho_th, 1.0))
    sfr = np.where(sf, (1.0 - _SH03_BETA) * cold * gas["mass"] / t_star_yr, 0.0)
    metals = np.empty((n_h.size, 10))
    metals[:, 0] = x_h
    metals[:, 1] = helium
    metals[:, 2:] = z_met[:, None] * _METAL_MIX[None, :]
    return {"u": u, "x_e": x_e, "x_hi": x_hi, "sfr": sfr, "metals": metals}


def _magnetic_field(rng: np.random.Generator, p: GalaxyParameters, gas: dict[str, np.ndarray]) -> np.ndarray:
    """Ordered spiral disc field plus solenoidal turbulent field, Gauss.

    The strength scales as :math:`\\rho^{0.5}` in the disc (equipartition with turbulence)
    from ``b0`` at the central disc density, 15-45 uG, so that the mass-weighted disc field is
    5-15 uG, as the total fields of nearby spirals (about 10 uG on average, Beck 2015,
    A&ARv 24, 4), and as :math:`\\rho^{0.4}` in the hot halo, 0.1-1 uG between 20 and
    100 kpc as in the Auriga MHD haloes (Pakmor et al. 2017, MNRAS 469, 3185).
    """
    pos = gas["pos"]
    n = pos.shape[0]
    slope = np.where(gas["disc"], 0.5, 0.4)
    strength = p.b0_microgauss * 1e-6 * np.clip(gas["rho"] / gas["rho_disc0"], 1e-8, 50.0) ** slope
    phi = np.arctan2(pos[:, 1], pos[:, 0])
    pitch = math.radians(p.pitch_angle_deg)
    b_r, b_phi = -math.sin(pitch), math.cos(pitch)
    ordered = np.column_stack([
        b_r * np.cos(phi) - b_phi * np.sin(phi),
        b_r * np.sin(phi) + b_phi * np.cos(phi),
        np.zeros(n),
    ]) * np.where(gas["disc"], 1.0, 0.1)[:, None]
    # Random Fourier modes with amplitude ⟂ k are divergence-free; Kolmogorov-like spectrum.
    n_modes = 48
    k_mag = 2 * math.pi / np.geomspace(0.5, 30.0, n_modes)  # 1/kpc
    k_dir = _unit_vectors(rng, n_modes)
    k_vec = k_mag[:, None] * k_dir
    e = np.cross(k_dir, _unit_vectors(rng, n_modes))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    amp = k_mag ** (-1 / 3)
    amp *= math.sqrt(2.0 / np.sum(amp**2))
    phases = rng.uniform(0, 2 * math.pi, n_modes)
    turbulent = np.cos(pos @ k_vec.T + phases) @ (amp[:, None] * e)
    return strength[:, None] * (ordered + p.turbulent_ratio * turbulent)


def _build(
    rng: np.random.Generator, n_particles: int, merger_fraction: float
) -> tuple[GalaxyParameters, dict[str, dict[str, np.ndarray]], float]:
    """All particles of one synthetic cutout, physical units, galaxy at the origin."""
    p = draw_parameters(rng, merger_fraction)
    cosmo = tng_cosmology()
    share = p.merger_mass_ratio / (1 + p.merger_mass_ratio) if p.merger else 0.0
    main, m_dm = _disc_galaxy(rng, p, int(round(n_particles * (1 - share))), 1.0, None, cosmo, True)
    parts = [main]
    if p.merger:
        q = p.merger_mass_ratio
        comp, _ = _disc_galaxy(rng, p, int(round(n_particles * share)), q, m_dm, cosmo, False)
        rot = Rotation.random(random_state=rng).as_matrix()
        distance = rng.uniform(20.0, 60.0)
        offset = distance * _unit_vectors(rng, 1)[0]
        approach = -offset / distance * rng.uniform(100.0, 250.0)
        tangential = np.cross(offset, _unit_vectors(rng, 1)[0])
        tangential *= rng.uniform(50.0, 150.0) / np.linalg.norm(tangential)
        # The companion's halo is stripped down to its tidal radius, about half the distance.
        keep = np.linalg.norm(comp["dm"]["pos"], axis=1) < 0.5 * distance
        comp["dm"] = {k: v[keep] for k, v in comp["dm"].items()}
        for d in comp.values():
            d["pos"] = d["pos"] @ rot.T + offset
            d["vel"] = d["vel"] @ rot.T + approach + tangential
        comp["gas"]["B"] = comp["gas"]["B"] @ rot.T
        parts.append(comp)

    merged = {
        kind: {key: np.concatenate([block[kind][key] for block in parts]) for key in parts[0][kind]}
        for kind in ("gas", "dm", "stars", "bh")
    }
    # A random orientation of the whole system: the disc's inclination to the box axes.
    rot = Rotation.random(random_state=rng).as_matrix()
    for d in merged.values():
        d["pos"] = d["pos"] @ rot.T
        d["vel"] = d["vel"] @ rot.T
    merged["gas"]["B"] = merged["gas"]["B"] @ rot.T
    return p, merged, m_dm


def make_synthetic_cutout(
    path: str | os.PathLike,
    galaxy_index: int,
    n_particles: int,
    seed: int,
    merger_fraction: float = 0.25,
) -> Path:
    """Write one synthetic galaxy as a TNG-layout cutout HDF5 file (atomically).

    Parameters
    ----------
    path : path-like
        Output file, conventionally ``cutout_<galaxy_index>.hdf5``.
    galaxy_index : int
        Index of the galaxy; with ``seed`` it fixes the random stream ``(seed, galaxy_index)``.
    n_particles : int
        Approximate total number of particles (all types).
    seed : int
        Seed of the random generator.
    merger_fraction : float
        Probability that the galaxy has a merging companion.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    rng = np.random.default_rng((seed, galaxy_index))
    p, parts, m_dm = _build(rng, n_particles, merger_fraction)
    h = TNG_COSMOLOGY["h"]
    a = 1.0 / (1.0 + p.redshift)
    cu = units.CodeUnits(a=a, h=h)
    box = p.box_size

    centre = rng.uniform(0, box, 3)
    if rng.random() < 1 / 3:
        axis = rng.integers(3)
        centre[axis] = np.mod(rng.uniform(-5.0, 5.0), box)
    bulk = rng.normal(0.0, 150.0, 3)

    def coords(pos: np.ndarray) -> np.ndarray:
        x = np.mod(centre + pos / cu.length, box)
        # np.mod of a tiny negative number rounds to box itself; TNG positions lie in [0, box).
        return np.where(x >= box, 0.0, x)

    def vels(vel: np.ndarray) -> np.ndarray:
        return ((vel + bulk) / cu.velocity).astype(np.float32)

    gas, dm, stars, bh = parts["gas"], parts["dm"], parts["stars"], parts["bh"]
    n = {0: len(gas["mass"]), 1: len(dm["pos"]), 4: len(stars["mass"]), 5: len(bh["mass"])}
    id_base = int(rng.integers(10**8, 10**10))
    ids = {}
    start = id_base
    for t in (0, 1, 4, 5):
        ids[t] = np.arange(start, start + n[t], dtype=np.uint64)
        start += n[t]

    f32 = np.float32
    dm_code_hsml = _subfind_hsml(coords(dm["pos"]), [coords(dm["pos"]), coords(stars["pos"])], box)
    groups = {
        "PartType0": {
            "Coordinates": coords(gas["pos"]),
            "Velocities": vels(gas["vel"]),
            "Masses": (gas["mass"] / cu.mass).astype(f32),
            "Density": (gas["rho"] / cu.density).astype(f32),
            "InternalEnergy": gas["u"].astype(f32),
            "ElectronAbundance": gas["x_e"].astype(f32),
            "NeutralHydrogenAbundance": gas["x_hi"].astype(f32),
            "MagneticField": (gas["B"] / cu.magnetic_field).astype(f32),
            "StarFormationRate": gas["sfr"].astype(f32),
            "GFM_Metallicity": gas["Z"].astype(f32),
            "GFM_Metals": gas["metals"].astype(f32),
            "ParticleIDs": ids[0],
        },
        "PartType1": {
            "Coordinates": coords(dm["pos"]),
            "Velocities": vels(dm["vel"]),
            "ParticleIDs": ids[1],
            "SubfindHsml": dm_code_hsml[0].astype(f32),
        },
        "PartType4": {
            "Coordinates": coords(stars["pos"]),
            "Velocities": vels(stars["vel"]),
            "Masses": (stars["mass"] / cu.mass).astype(f32),
            "GFM_StellarFormationTime": stars["a_form"].astype(f32),
            "GFM_Metallicity": stars["Z"].astype(f32),
            "ParticleIDs": ids[4],
            "SubfindHsml": dm_code_hsml[1].astype(f32),
        },
        "PartType5": {
            "Coordinates": coords(bh["pos"]),
            "Velocities": vels(bh["vel"]),
            "Masses": (bh["mass"] / cu.mass).astype(f32),
            "BH_Mass": (bh["bh_mass"] / cu.mass).astype(f32),
            "ParticleIDs": ids[5],
        },
    }
    numpart = np.zeros(6, dtype=np.int64)
    for t, count in n.items():
        numpart[t] = count
    mass_table = np.zeros(6)
    mass_table[1] = m_dm / cu.mass
    header = {
        "BoxSize": np.float64(box),
        "HubbleParam": np.float64(h),
        "Omega0": np.float64(TNG_COSMOLOGY["Omega0"]),
        "OmegaLambda": np.float64(TNG_COSMOLOGY["OmegaLambda"]),
        "OmegaBaryon": np.float64(TNG_COSMOLOGY["OmegaBaryon"]),
        "Time": np.float64(a),
        "Redshift": np.float64(p.redshift),
        "MassTable": mass_table,
        "NumPart_ThisFile": numpart.astype(np.int32),
        "NumPart_Total": numpart.astype(np.uint32),
        "NumPart_Total_HighWord": np.zeros(6, dtype=np.uint32),
        "NumFilesPerSnapshot": np.int32(1),
        "UnitLength_in_cm": np.float64(units.TNG_UNIT_LENGTH_CM),
        "UnitMass_in_g": np.float64(units.TNG_UNIT_MASS_G),
        "UnitVelocity_in_cm_per_s": np.float64(units.TNG_UNIT_VELOCITY_CM_S),
    }
    _write_atomic(path, header, groups)
    return path


def _subfind_hsml(dm_pos: np.ndarray, targets: list[np.ndarray], box: float, k: int = 64) -> list[np.ndarray]:
    """Radius enclosing the ``k`` nearest DM particles around each target (ckpc/h)."""
    tree = cKDTree(dm_pos, boxsize=box)
    k = min(k, len(dm_pos))
    return [tree.query(t, k=[k])[0][:, 0] for t in targets]


def _write_atomic(path: Path, header: dict, groups: dict[str, dict[str, np.ndarray]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            hdr = f.create_group("Header")
            for key, value in header.items():
                hdr.attrs[key] = value
            for name, fields in groups.items():
                g = f.create_group(name)
                for field, data in fields.items():
                    g.create_dataset(field, data=data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_valid_cutout(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete TNG-layout cutout (readable, counts match the header)."""
    try:
        with h5py.File(path, "r") as f:
            numpart = f["Header"].attrs["NumPart_ThisFile"]
            for t in (0, 1, 4, 5):
                if numpart[t]:
                    coords = f[f"PartType{t}/Coordinates"]
                    # Reading the last row fails on a file cut short after its metadata.
                    if coords.shape[0] != numpart[t] or not np.all(np.isfinite(coords[-1])):
                        return False
            return "PartType0" in f
    except (OSError, KeyError):
        return False


def write_synthetic_cutouts(config: SynthConfig) -> list[Path]:
    """Write ``config.n_galaxies`` synthetic cutouts ``cutout_<i>.hdf5`` into ``config.out_dir``.

    Files that already exist and are complete are kept, so an interrupted run resumes.

    Parameters
    ----------
    config : SynthConfig
        Number of galaxies, particles per galaxy, seed, output folder, merger fraction.

    Returns
    -------
    list of pathlib.Path
        All cutout files, in galaxy order.
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(config.n_galaxies), desc="synthetic galaxies", unit="galaxy", disable=None):
        path = out / f"cutout_{i}.hdf5"
        if path.exists() and is_valid_cutout(path):
            log.debug("keeping existing %s", path)
        else:
            make_synthetic_cutout(path, i, config.n_particles, config.seed, config.merger_fraction)
        paths.append(path)
    return paths
