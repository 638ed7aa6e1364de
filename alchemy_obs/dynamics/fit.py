"""Least-squares fits of dark-matter haloes to the dark-matter part of a rotation curve.

The halo's circular velocity :math:`V_h` is fitted to the dark-matter curve
:math:`V_{\\rm DM}^2 = V_{\\rm obs}^2 - V_{\\rm bar}^2` with the baryons fixed by the
mass-to-light ratios (:meth:`~alchemy_obs.dynamics.rotmod.RotationCurve.dm_velocity_squared`).
The residuals are :math:`(\\sqrt{V_h^2 + V_{\\rm bar}^2} - V_{\\rm obs}) / \\delta V_{\\rm obs}`:
the misfit of :math:`V_{\\rm DM}` with its error propagated from the observed one, written so
that it stays defined where the baryons alone exceed the observed curve
(:math:`V_{\\rm DM}^2 < 0`), as in the SPARC halo fits of Li et al. (2020, ApJS 247, 31).

Parameters are fitted in log10, inside wide bounds, with :func:`scipy.optimize.least_squares`
started from the best point of a coarse grid, so the result does not depend on a starting
guess. NFW is parametrised by :math:`(M_{200}, c)` relative to 200 times the critical
density of the cosmology, the cored haloes by their central density and core radius.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.cosmology import Cosmology
from scipy import optimize

from alchemy_obs.dynamics.haloes import G_KPC, HALO_MODELS, NFW, Halo
from alchemy_obs.dynamics.rotmod import DynamicsError, RotationCurve

__all__ = ["HaloFit", "fit_halo", "default_cosmology"]

_KMS = u.km / u.s
_DENSITY = u.Msun / u.kpc**3

#: Fitted parameters (log10) of each model: name, unit, bounds, coarse starting grid.
_PARAMETERS = {
    "nfw": (("m200", u.Msun, (8.0, 15.0), np.arange(9.0, 13.51, 0.25)),
            ("c", u.one, (0.0, 2.0), np.arange(0.2, 1.81, 0.1))),
    "burkert": (("rho0", _DENSITY, (3.0, 11.0), np.arange(5.0, 10.01, 0.25)),
                ("r0", u.kpc, (-2.0, 2.5), np.arange(-1.0, 2.01, 0.125))),
    "iso": (("rho0", _DENSITY, (3.0, 11.0), np.arange(5.0, 10.01, 0.25)),
            ("rc", u.kpc, (-2.0, 2.5), np.arange(-1.5, 2.01, 0.125))),
}


def default_cosmology() -> Cosmology:
    """The cosmology of the training galaxies (IllustrisTNG, Planck 2015), in which their
    haloes' :math:`M_{200}` are defined."""
    from alchemy_obs.sim.synthetic import tng_cosmology

    return tng_cosmology()


@dataclass(frozen=True)
class HaloFit:
    """A halo fitted to a rotation curve.

    Attributes
    ----------
    model : str
        ``"nfw"``, ``"burkert"`` or ``"iso"``.
    halo : Halo
        The best-fitting halo.
    ml_disk, ml_bulge : float
        Mass-to-light ratios the baryons were fixed at.
    parameters : dict of str to Quantity
        Best-fitting parameters (``m200``, ``c`` for NFW; ``rho0``, ``r0`` or ``rc`` for the
        cored haloes).
    log_errors : dict of str to float
        1-sigma errors of their log10, from the Jacobian at the optimum (NaN if singular).
    chi2 : float
        Sum of squared residuals.
    dof : int
        Radii minus fitted parameters.
    r200 : Quantity
        Radius where the halo's mean density is 200 times critical (kpc).
    m200 : Quantity
        Mass inside it (Msun).
    """

    model: str
    halo: Halo
    ml_disk: float
    ml_bulge: float
    parameters: dict[str, u.Quantity]
    log_errors: dict[str, float]
    chi2: float
    dof: int
    r200: u.Quantity
    m200: u.Quantity
    critical_density: u.Quantity = field(repr=False, default=None)

    @property
    def reduced_chi2(self) -> float:
        """:math:`\\chi^2 / \\nu`."""
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    def summary(self) -> str:
        """One line: model, mass-to-light, parameters with errors, :math:`\\chi^2_\\nu`."""
        parts = []
        for name, value in self.parameters.items():
            err = self.log_errors.get(name, math.nan)
            unit = "" if value.unit == u.one else f" {value.unit.to_string()}"
            parts.append(f"{name} = {value.value:.3g}{unit} (+-{err:.2f} dex)")
        if "m200" not in self.parameters:
            parts.append(f"M200 = {self.m200.to_value(u.Msun):.3g} solMass")
        return (f"{self.halo.label}, Y_disk={self.ml_disk:g}: {', '.join(parts)}, "
                f"chi2/nu = {self.chi2:.1f}/{self.dof}")


def _halo(model: str, p: np.ndarray, rho_c: float) -> Halo:
    if model == "nfw":
        return NFW.from_m200(10 ** p[0] * u.Msun, float(10 ** p[1]), rho_c * _DENSITY)
    return HALO_MODELS[model](10 ** p[0] * _DENSITY, 10 ** p[1] * u.kpc)


def fit_halo(
    curve: RotationCurve,
    model: str = "nfw",
    *,
    ml_disk: float = 0.5,
    ml_bulge: float = 0.7,
    cosmology: Cosmology | None = None,
    redshift: float = 0.0,
) -> HaloFit:
    """Fit a halo to the dark-matter part of a rotation curve.

    Parameters
    ----------
    curve : RotationCurve
        Observed curve and baryonic mass model.
    model : str
        ``"nfw"``, ``"burkert"`` or ``"iso"`` (pseudo-isothermal).
    ml_disk, ml_bulge : float
        Stellar mass-to-light ratios of disc and bulge (Msun/Lsun at the band of the mass
        model; 0.5 and 0.7 at 3.6 um in SPARC).
    cosmology : astropy.cosmology.Cosmology, optional
        Defines the critical density of :math:`M_{200}`; default :func:`default_cosmology`.
    redshift : float
        Epoch of the critical density.

    Returns
    -------
    HaloFit

    Raises
    ------
    DynamicsError
        If ``model`` is unknown or the fit fails.
    """
    if model not in _PARAMETERS:
        raise DynamicsError(f"halo model {model!r}: use one of {', '.join(_PARAMETERS)}")
    cosmology = cosmology or default_cosmology()
    rho_c = float(cosmology.critical_density(redshift).to_value(_DENSITY))
    r = curve.radius.to_value(u.kpc)
    v_obs = curve.v_obs.to_value(_KMS)
    err = curve.v_err.to_value(_KMS)
    v_bar2 = curve.baryon_velocity_squared(ml_disk, ml_bulge).to_value(_KMS**2)
    spec = _PARAMETERS[model]
    cls = HALO_MODELS[model]

    def residuals(p: np.ndarray) -> np.ndarray:
        if model == "nfw":
            m200, c = 10 ** p[0], 10 ** p[1]
            r200 = (3 * m200 / (4 * math.pi * 200 * rho_c)) ** (1 / 3)
            mass = m200 * cls._mass_shape(r * c / r200) / cls._mass_shape(c)
        else:
            rho, rs = 10 ** p[0], 10 ** p[1]
            mass = 4 * math.pi * rho * rs**3 * cls._mass_shape(r / rs)
        v2 = G_KPC * mass / r + v_bar2
        return (np.sign(v2) * np.sqrt(np.abs(v2)) - v_obs) / err

    grid = itertools.product(*(s[3] for s in spec))
    start = min((np.array(p) for p in grid), key=lambda p: float(np.sum(residuals(p) ** 2)))
    lower = np.array([s[2][0] for s in spec])
    upper = np.array([s[2][1] for s in spec])
    result = optimize.least_squares(residuals, start, bounds=(lower, upper), x_scale=1.0,
                                    xtol=1e-12, ftol=1e-12, gtol=1e-12)
    if not result.success:
        raise DynamicsError(f"{curve.name}: the {model} fit failed ({result.message})")
    p = result.x
    try:
        cov = np.linalg.inv(result.jac.T @ result.jac)
        # Scaled by the reduced chi2 when it exceeds 1 (errors of the curve underestimated or
        # a halo shape that does not fit), as curve_fit does with absolute_sigma=False.
        scale = max(1.0, float(np.sum(result.fun**2)) / max(r.size - p.size, 1))
        errors = np.sqrt(np.clip(np.diag(cov), 0, None) * scale)
    except np.linalg.LinAlgError:
        errors = np.full(p.size, np.nan)
    at_bound = [s[0] for s, v, lo, hi in zip(spec, p, lower, upper)
                if min(v - lo, hi - v) < 1e-6]
    if at_bound:
        # A parameter on its bound is not constrained by the curve: its error means nothing.
        for i, s in enumerate(spec):
            if s[0] in at_bound:
                errors[i] = np.nan
    halo = _halo(model, p, rho_c)
    critical = rho_c * _DENSITY
    r200 = halo.r200(critical)
    parameters = {s[0]: (10 ** v) * s[1] for s, v in zip(spec, p)}
    return HaloFit(
        model=model, halo=halo, ml_disk=ml_disk, ml_bulge=ml_bulge, parameters=parameters,
        log_errors={s[0]: float(e) for s, e in zip(spec, errors)},
        chi2=float(np.sum(result.fun**2)), dof=int(r.size - p.size),
        r200=r200, m200=halo.enclosed_mass(r200), critical_density=critical,
    )
