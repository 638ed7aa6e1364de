"""Rotation-curve mass models: SPARC ``*_rotmod.dat`` files and plain CSV tables.

A mass model is an observed rotation curve with the contributions of the baryons to it,
sampled at the same radii (Lelli, McGaugh & Schombert 2016, AJ 152, 157, "SPARC"):
:math:`V_{\\rm obs}` and its error, the gas :math:`V_{\\rm gas}`, and the stellar disc and
bulge :math:`V_{\\rm disk}`, :math:`V_{\\rm bul}` computed for a mass-to-light ratio of 1
(at 3.6 um in SPARC), so that for ratios :math:`\\Upsilon_d, \\Upsilon_b` the dark matter
needs

.. math:: V_{\\rm DM}^2 = V_{\\rm obs}^2 - V_{\\rm gas}|V_{\\rm gas}|
          - \\Upsilon_d V_{\\rm disk}^2 - \\Upsilon_b V_{\\rm bul}^2 .

A negative :math:`V_{\\rm gas}` (or disc) means that component pulls outwards there (a
central hole); its sign is kept through :math:`V|V|`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np

from alchemy_obs.errors import AlchemyObsError

__all__ = ["DynamicsError", "RotationCurve", "read_sparc_rotmod", "read_rotation_csv",
           "read_rotation_curve"]

_KMS = u.km / u.s


class DynamicsError(AlchemyObsError, ValueError):
    """A rotation curve, a map or an option of the dynamics check cannot be used.

    The message is one line that starts with the file or option concerned.
    """


def _signed_square(v: np.ndarray) -> np.ndarray:
    return v * np.abs(v)


@dataclass(frozen=True)
class RotationCurve:
    """An observed rotation curve and its baryonic mass model, at one distance.

    Attributes
    ----------
    radius : Quantity
        Galactocentric radii (kpc), increasing.
    v_obs, v_err : Quantity
        Observed circular velocity and its 1-sigma error (km/s).
    v_gas, v_disk, v_bulge : Quantity
        Contributions of the gas (including helium) and of the stellar disc and bulge at a
        mass-to-light ratio of 1 (km/s); negative where the component pulls outwards.
    distance : Quantity or None
        Distance at which the radii and baryonic velocities were computed (Mpc).
    name : str
        Where the curve came from (a file name).
    """

    radius: u.Quantity
    v_obs: u.Quantity
    v_err: u.Quantity
    v_gas: u.Quantity
    v_disk: u.Quantity
    v_bulge: u.Quantity
    distance: u.Quantity | None = None
    name: str = ""

    def __post_init__(self) -> None:
        n = np.shape(self.radius)
        for field in ("v_obs", "v_err", "v_gas", "v_disk", "v_bulge"):
            if np.shape(getattr(self, field)) != n:
                raise DynamicsError(f"{self.name or 'rotation curve'}: {field} has "
                                    f"{np.size(getattr(self, field))} values for {np.size(self.radius)} radii")
        r = self.radius.to_value(u.kpc)
        if r.size < 3:
            raise DynamicsError(f"{self.name or 'rotation curve'}: {r.size} radii; a halo fit "
                                "needs at least 3")
        if not (np.all(np.isfinite(r)) and np.all(r > 0) and np.all(np.diff(r) > 0)):
            raise DynamicsError(f"{self.name or 'rotation curve'}: radii must be positive, finite "
                                "and increasing")
        if not np.all(self.v_err.to_value(_KMS) > 0):
            raise DynamicsError(f"{self.name or 'rotation curve'}: every velocity error must be > 0")

    def baryon_velocity_squared(self, ml_disk: float, ml_bulge: float) -> u.Quantity:
        """:math:`V_{\\rm gas}|V_{\\rm gas}| + \\Upsilon_d V_{\\rm disk}|V_{\\rm disk}|
        + \\Upsilon_b V_{\\rm bul}|V_{\\rm bul}|` (km²/s², signed).

        Parameters
        ----------
        ml_disk, ml_bulge : float
            Stellar mass-to-light ratios of the disc and bulge (Msun/Lsun).
        """
        return (_signed_square(self.v_gas) + ml_disk * _signed_square(self.v_disk)
                + ml_bulge * _signed_square(self.v_bulge)).to(_KMS**2)

    def dm_velocity_squared(self, ml_disk: float, ml_bulge: float) -> u.Quantity:
        """:math:`V_{\\rm DM}^2 = V_{\\rm obs}^2` minus the baryons (km²/s²; may be < 0)."""
        return (self.v_obs**2 - self.baryon_velocity_squared(ml_disk, ml_bulge)).to(_KMS**2)

    def at_distance(self, distance: u.Quantity) -> RotationCurve:
        """The same galaxy placed at another distance.

        Radii scale as :math:`D`. The observed velocities do not change (they are
        line-of-sight velocities over the sine of the inclination), while the baryonic
        masses, from luminosities and HI fluxes, scale as :math:`D^2`, so each baryonic
        :math:`V^2 = GM/r` scales as :math:`D` (as in the SPARC distance fits of Li et al.
        2018, A&A 615, A3).

        Parameters
        ----------
        distance : Quantity
            The new distance.

        Returns
        -------
        RotationCurve

        Raises
        ------
        DynamicsError
            If the curve has no distance of its own.
        """
        if self.distance is None:
            raise DynamicsError(f"{self.name or 'rotation curve'}: has no distance to rescale from")
        ratio = float((distance / self.distance).to_value(u.one))
        v_scale = np.sqrt(ratio)
        return dataclasses.replace(
            self, radius=self.radius * ratio, v_gas=self.v_gas * v_scale,
            v_disk=self.v_disk * v_scale, v_bulge=self.v_bulge * v_scale,
            distance=distance.to(u.Mpc),
        )


_DISTANCE = re.compile(r"distance\s*[=:]\s*([0-9.eE+-]+)\s*(mpc|kpc)?", re.IGNORECASE)


def _distance_from_comments(lines: list[str]) -> u.Quantity | None:
    for line in lines:
        if line.lstrip().startswith("#"):
            match = _DISTANCE.search(line)
            if match:
                value = float(match.group(1))
                unit = u.kpc if (match.group(2) or "").lower() == "kpc" else u.Mpc
                return (value * unit).to(u.Mpc)
    return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except UnicodeDecodeError:
        raise DynamicsError(f"{path}: not a text file") from None


def read_sparc_rotmod(path: str | os.PathLike) -> RotationCurve:
    """Read a SPARC mass-model file (``<galaxy>_rotmod.dat``).

    The file has a ``# Distance = D Mpc`` comment and whitespace-separated columns: radius
    (kpc), :math:`V_{\\rm obs}`, its error, :math:`V_{\\rm gas}`, :math:`V_{\\rm disk}`,
    :math:`V_{\\rm bul}` (km/s) and the disc and bulge surface brightnesses, which are not
    used (Lelli, McGaugh & Schombert 2016, AJ 152, 157).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    RotationCurve

    Raises
    ------
    DynamicsError
        If the file is missing or its rows do not have six numeric columns.
    """
    path = Path(path)
    lines = _read_lines(path)
    rows = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        try:
            values = [float(f) for f in fields[:6]]
        except ValueError:
            raise DynamicsError(f"{path}: line {number} is not numeric: {text[:40]!r}") from None
        if len(values) < 6:
            raise DynamicsError(f"{path}: line {number} has {len(values)} columns; a SPARC "
                                "rotmod row has radius, Vobs, errV, Vgas, Vdisk, Vbul")
        rows.append(values)
    if not rows:
        raise DynamicsError(f"{path}: no data rows")
    data = np.array(rows)
    return RotationCurve(
        radius=data[:, 0] * u.kpc, v_obs=data[:, 1] * _KMS, v_err=data[:, 2] * _KMS,
        v_gas=data[:, 3] * _KMS, v_disk=data[:, 4] * _KMS, v_bulge=data[:, 5] * _KMS,
        distance=_distance_from_comments(lines), name=path.name,
    )


#: Accepted CSV column names (lower case) for each field.
_CSV_COLUMNS = {
    "radius": ("r", "rad", "radius", "r_kpc"),
    "v_obs": ("v", "vobs", "v_obs", "vrot", "v_rot"),
    "v_err": ("err", "errv", "v_err", "verr", "e_v", "e_vobs"),
    "v_gas": ("v_gas", "vgas"),
    "v_disk": ("v_disk", "vdisk", "v_disc", "vdisc", "v_star", "vstar"),
    "v_bulge": ("v_bul", "vbul", "v_bulge", "vbulge"),
}


def read_rotation_csv(path: str | os.PathLike) -> RotationCurve:
    """Read a mass model from a comma-separated table with a header row.

    Columns (case-insensitive): ``r`` (kpc), ``v``, ``err``, ``v_gas``, ``v_disk`` and,
    optionally, ``v_bul`` (km/s; zero when absent); SPARC's names (``Rad``, ``Vobs``,
    ``errV``, ``Vgas``, ``Vdisk``, ``Vbul``) work too. A comment line ``# distance = 3.16
    Mpc`` before the header gives the distance.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    RotationCurve

    Raises
    ------
    DynamicsError
        If a required column is missing or a value is not a number.
    """
    path = Path(path)
    lines = _read_lines(path)
    body = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise DynamicsError(f"{path}: empty table")
    reader = csv.reader(body)
    header = [h.strip().lower() for h in next(reader)]
    columns: dict[str, int] = {}
    for field, names in _CSV_COLUMNS.items():
        found = [i for i, h in enumerate(header) if h in names]
        if found:
            columns[field] = found[0]
        elif field != "v_bulge":
            raise DynamicsError(f"{path}: no {field} column (accepted names: {', '.join(names)})")
    rows = []
    for number, row in enumerate(reader, 2):
        try:
            rows.append([float(row[columns[f]]) if f in columns else 0.0 for f in _CSV_COLUMNS])
        except (ValueError, IndexError):
            raise DynamicsError(f"{path}: data row {number} is incomplete or not numeric") from None
    if not rows:
        raise DynamicsError(f"{path}: no data rows")
    data = np.array(rows)
    return RotationCurve(
        radius=data[:, 0] * u.kpc, v_obs=data[:, 1] * _KMS, v_err=data[:, 2] * _KMS,
        v_gas=data[:, 3] * _KMS, v_disk=data[:, 4] * _KMS, v_bulge=data[:, 5] * _KMS,
        distance=_distance_from_comments(lines), name=path.name,
    )


def read_rotation_curve(path: str | os.PathLike) -> RotationCurve:
    """Read a mass model, SPARC rotmod or CSV, chosen by the content of the first data line.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    RotationCurve
    """
    path = Path(path)
    if not path.is_file():
        raise DynamicsError(f"{path}: no such file")
    first = next((line for line in _read_lines(path)
                  if line.strip() and not line.lstrip().startswith("#")), "")
    return read_rotation_csv(path) if "," in first else read_sparc_rotmod(path)
