"""Does a predicted dark-matter map agree with the galaxy's rotation curve?

The check compares, as a function of projected radius :math:`R`, the dark-matter mass a
map holds inside the cylinder of radius :math:`R` around the galaxy centre with the mass
that haloes fitted to the rotation curve put there when they are projected the way the
training maps were (:mod:`alchemy_obs.dynamics.haloes`): through the whole halo, truncated
at its :math:`r_{200}`, or through a slab of the training maps' depth (``maps.slab_kpc``).

The map is integrated exactly over its pixels: each pixel is split into sub-pixels whose
sky offsets from the centre are interpolated from the pixel corners (transformed exactly
into the centre's offset frame), and whose areas follow from the corners' polygon, so
cylinders of a few pixels are measured without the staircase error of counting whole
pixels. A cylinder that reaches a blank (NaN) pixel is reported as ``masked``, one that
leaves the array as ``outside map``; their mass is NaN, never filled in.

The dynamical uncertainty shown is the one that dominates for disc galaxies, the stellar
mass-to-light ratio: every halo is refitted with the disc ratio at each end of its range
(0.3-0.7 at 3.6 um by default, around 0.5; Lelli et al. 2016, McGaugh & Schombert 2014).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.cosmology import Cosmology
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS, FITSFixedWarning

from alchemy_obs.atomic import temporary_beside
from alchemy_obs.dynamics.fit import HaloFit, default_cosmology, fit_halo
from alchemy_obs.dynamics.haloes import HALO_MODELS
from alchemy_obs.dynamics.rotmod import DynamicsError, RotationCurve

__all__ = ["MassMap", "EnclosedMass", "DynamicsCheck", "read_mass_map", "map_enclosed_mass",
           "default_radii", "dynamics_check", "write_table", "plot_check"]

log = logging.getLogger(__name__)

_SURFACE = u.Msun / u.kpc**2
#: Sub-pixels per map at most (memory of the exact pixel integration).
_MAX_SUBPIXELS = 4_000_000
_OK, _MASKED, _OUTSIDE = "ok", "masked", "outside map"


@dataclass(frozen=True)
class MassMap:
    """A projected mass map on the sky, in Msun/kpc².

    Attributes
    ----------
    surface_density : Quantity
        ``(ny, nx)``, NaN where masked.
    wcs : astropy.wcs.WCS
        Its celestial WCS.
    distance : Quantity
        Angular-diameter distance that sets the map's physical scale.
    centre : SkyCoord
        Galaxy centre.
    header : astropy.io.fits.Header
        The primary header (provenance).
    path : Path or None
        The file it came from.
    """

    surface_density: u.Quantity
    wcs: WCS
    distance: u.Quantity
    centre: SkyCoord
    header: fits.Header = field(repr=False, default_factory=fits.Header)
    path: Path | None = None


def _parse_centre(text: str) -> tuple[float, float] | None:
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2:
        return None
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return None


def _map_centre(data: np.ndarray, wcs: WCS, header: fits.Header, how: str, path) -> SkyCoord:
    """Sky position of the centre: ``model``, ``header``, ``flux`` or ``"lon,lat"`` (deg)."""
    frame_of = lambda lon, lat: wcs.pixel_to_world(*wcs.world_to_pixel_values(lon, lat))  # noqa: E731
    explicit = _parse_centre(how)
    if explicit is not None:
        return frame_of(*explicit)
    if how == "model":
        if "CENLON" in header and "CENLAT" in header:
            return frame_of(float(header["CENLON"]), float(header["CENLAT"]))
        log.info("%s: no CENLON/CENLAT (not an infer output): centre from the map's mass", path)
        how = "flux"
    if how == "header":
        return frame_of(*wcs.wcs.crval[:2])
    if how != "flux":
        raise DynamicsError(f"--centre {how!r}: use model, flux, header or LON,LAT in degrees")
    # Imported here: the infer package loads torch, which the other centres do not need.
    from alchemy_obs.infer.preprocess import galaxy_centre
    from alchemy_obs.skyimage import SkyImage

    lon, lat = galaxy_centre(SkyImage(data * _SURFACE, wcs), "flux")
    return frame_of(lon, lat)


def read_mass_map(
    path: str | os.PathLike, *, distance: u.Quantity | None = None, centre: str = "model",
) -> MassMap:
    """Read a projected dark-matter (or any mass) map from FITS.

    Parameters
    ----------
    path : path-like
        A 2-D image (the first HDU with data) whose ``BUNIT`` is a surface density
        (``solMass kpc-2`` as written by ``alchemy-obs infer``).
    distance : Quantity, optional
        Overrides the ``DISTANCE`` card (Mpc), which ``infer`` writes.
    centre : str
        ``"model"``: the centre of the translator's grid (``CENLON``/``CENLAT`` of an
        ``infer`` output; the mass-weighted centre otherwise); ``"flux"``: the
        mass-weighted centre of the map's significant pixels; ``"header"``: ``CRVAL``;
        or ``"LON,LAT"`` in degrees in the map's frame.

    Returns
    -------
    MassMap

    Raises
    ------
    DynamicsError
        If the file is not a 2-D celestial image in surface-density units, or no distance
        is known.
    """
    import warnings

    path = Path(path)
    if not path.is_file():
        raise DynamicsError(f"{path}: no such file")
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.data.ndim >= 2), None)
            if hdu is None:
                raise DynamicsError(f"{path}: no image in the file")
            header = hdul[0].header.copy() if hdu is not hdul[0] else hdu.header.copy()
            header.update({k: v for k, v in hdu.header.items() if k not in ("COMMENT", "HISTORY", "")})
            data = np.squeeze(np.asarray(hdu.data, dtype=np.float64))
    except OSError as exc:
        raise DynamicsError(f"{path}: not a readable FITS file ({exc})") from None
    if data.ndim != 2:
        raise DynamicsError(f"{path}: a {data.ndim}-D image; expected a 2-D map")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    if wcs.naxis != 2 or not wcs.has_celestial:
        raise DynamicsError(f"{path}: no celestial WCS")
    bunit = header.get("BUNIT")
    if not bunit:
        raise DynamicsError(f"{path}: no BUNIT; expected a surface density such as 'solMass kpc-2'")
    try:
        unit = u.Unit(bunit, format="fits")
    except ValueError:
        try:
            unit = u.Unit(bunit)
        except ValueError:
            raise DynamicsError(f"{path}: BUNIT {bunit!r} is not a unit") from None
    if not unit.is_equivalent(_SURFACE):
        raise DynamicsError(f"{path}: BUNIT {bunit!r} is not a surface density (mass / area)")
    data = data * float(unit.to(_SURFACE))
    if distance is None:
        if "DISTANCE" not in header:
            raise DynamicsError(f"{path}: no DISTANCE card; give --distance")
        distance = float(header["DISTANCE"]) * u.Mpc
    if not distance.to_value(u.Mpc) > 0:
        raise DynamicsError(f"{path}: distance {distance} must be positive")
    return MassMap(data * _SURFACE, wcs, distance.to(u.Mpc),
                   _map_centre(data, wcs, header, centre, path), header, path)


@dataclass(frozen=True)
class EnclosedMass:
    """Mass of a map inside cylinders around its centre.

    Attributes
    ----------
    radius : Quantity
        Cylinder radii (kpc).
    mass : Quantity
        Enclosed mass (Msun); NaN where ``status`` is not ``"ok"``.
    status : ndarray of str
        ``"ok"``, ``"masked"`` (the cylinder reaches blank pixels) or ``"outside map"``.
    masked_fraction : ndarray
        Fraction of the cylinder's area on blank pixels (of the part inside the array).
    covered_mass : Quantity
        Mass on the cylinder's non-blank pixels (Msun): a lower bound of a positive map's
        mass where the cylinder is masked; NaN outside the map.
    edge : Quantity
        Distance from the centre to the nearest edge of the array (kpc).
    """

    radius: u.Quantity
    mass: u.Quantity
    status: np.ndarray
    masked_fraction: np.ndarray
    covered_mass: u.Quantity
    edge: u.Quantity


def _offsets_kpc(wcs: WCS, x: np.ndarray, y: np.ndarray, centre: SkyCoord,
                 distance: u.Quantity) -> tuple[np.ndarray, np.ndarray]:
    """Positions (pixel coordinates) -> offsets in the plane of the sky at the galaxy (kpc)."""
    world = wcs.pixel_to_world(x, y)
    off = world.transform_to(centre.skyoffset_frame())
    d = distance.to_value(u.kpc)
    return off.lon.wrap_at(180 * u.deg).rad * d, off.lat.rad * d


def map_enclosed_mass(mass_map: MassMap, radius: u.Quantity) -> EnclosedMass:
    """Mass of ``mass_map`` inside cylinders of projected radius ``radius`` around its centre.

    Parameters
    ----------
    mass_map : MassMap
    radius : Quantity
        Radii (length) in the plane of the sky at the map's distance.

    Returns
    -------
    EnclosedMass
    """
    sigma = mass_map.surface_density.to_value(_SURFACE)
    ny, nx = sigma.shape
    gy, gx = np.mgrid[-0.5:ny:1.0, -0.5:nx:1.0]  # pixel corners, (ny + 1, nx + 1)
    cx, cy = _offsets_kpc(mass_map.wcs, gx, gy, mass_map.centre, mass_map.distance)
    # Pixel areas from the corner polygons (shoelace), exact for any projection up to the
    # curvature of a pixel's sides.
    x00, x10, x11, x01 = cx[:-1, :-1], cx[:-1, 1:], cx[1:, 1:], cx[1:, :-1]
    y00, y10, y11, y01 = cy[:-1, :-1], cy[:-1, 1:], cy[1:, 1:], cy[1:, :-1]
    area = 0.5 * np.abs((x00 * y10 - x10 * y00) + (x10 * y11 - x11 * y10)
                        + (x11 * y01 - x01 * y11) + (x01 * y00 - x00 * y01))
    n_sub = int(np.clip(math.isqrt(_MAX_SUBPIXELS // max(sigma.size, 1)), 1, 10))
    frac = (np.arange(n_sub) + 0.5) / n_sub
    a, b = np.meshgrid(frac, frac, indexing="xy")
    a, b = a.ravel()[:, None, None], b.ravel()[:, None, None]
    w00, w10, w11, w01 = (1 - a) * (1 - b), a * (1 - b), a * b, (1 - a) * b
    sx = w00 * x00 + w10 * x10 + w11 * x11 + w01 * x01
    sy = w00 * y00 + w10 * y10 + w11 * y11 + w01 * y01
    r_sub = np.hypot(sx, sy).ravel()
    blank = np.broadcast_to(~np.isfinite(sigma), sx.shape).ravel()
    sub_area = np.broadcast_to(area / n_sub**2, sx.shape).ravel()
    sub_mass = np.broadcast_to(np.where(np.isfinite(sigma), sigma, 0.0) * area / n_sub**2,
                               sx.shape).ravel()
    order = np.argsort(r_sub)
    r_sorted = r_sub[order]
    cum_mass = np.concatenate([[0.0], np.cumsum(sub_mass[order])])
    cum_area = np.concatenate([[0.0], np.cumsum(sub_area[order])])
    cum_blank = np.concatenate([[0.0], np.cumsum(np.where(blank, sub_area, 0.0)[order])])

    edge = _distance_to_boundary(cx, cy)
    rk = np.atleast_1d(radius.to_value(u.kpc)).astype(np.float64)
    k = np.searchsorted(r_sorted, rk, side="right")
    mass = cum_mass[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        masked_fraction = np.where(cum_area[k] > 0, cum_blank[k] / cum_area[k], 0.0)
    status = np.full(rk.shape, _OK, dtype=object)
    status[masked_fraction > 0] = _MASKED
    status[rk > edge] = _OUTSIDE
    covered = np.where(status == _OUTSIDE, np.nan, mass)
    mass = np.where(status == _OK, mass, np.nan)
    shape = np.shape(radius.value)
    return EnclosedMass(rk.reshape(shape) * u.kpc, mass.reshape(shape) * u.Msun,
                        status.reshape(shape).astype(str), masked_fraction.reshape(shape),
                        covered.reshape(shape) * u.Msun, edge * u.kpc)


def _distance_to_boundary(cx: np.ndarray, cy: np.ndarray) -> float:
    """Distance (kpc) from the origin to the outline of the pixel array; 0 if outside it."""
    ring_x = np.concatenate([cx[0, :], cx[1:, -1], cx[-1, -2::-1], cx[-2:0:-1, 0], cx[:1, 0]])
    ring_y = np.concatenate([cy[0, :], cy[1:, -1], cy[-1, -2::-1], cy[-2:0:-1, 0], cy[:1, 0]])
    ax, ay, bx, by = ring_x[:-1], ring_y[:-1], ring_x[1:], ring_y[1:]
    dx, dy = bx - ax, by - ay
    t = np.clip(-(ax * dx + ay * dy) / np.maximum(dx * dx + dy * dy, 1e-300), 0.0, 1.0)
    nearest = float(np.min(np.hypot(ax + t * dx, ay + t * dy)))
    # Inside the outline when the ring winds around the origin (crossing-number test).
    crosses = ((ay > 0) != (by > 0)) & (ax + (0 - ay) * dx / np.where(dy == 0, 1e-300, dy) > 0)
    return nearest if int(np.sum(crosses)) % 2 == 1 else 0.0


def default_radii(curve: RotationCurve, n: int = 8) -> u.Quantity:
    """``n`` evenly spaced radii up to the last radius of the rotation curve."""
    last = float(curve.radius[-1].to_value(u.kpc))
    return np.round(np.linspace(last / n, last, n), 2) * u.kpc


@dataclass
class DynamicsCheck:
    """Predicted against dynamical projected dark-matter mass.

    Attributes
    ----------
    mass_map : MassMap
        The predicted map.
    curve : RotationCurve
        The rotation curve, at the map's distance.
    enclosed : EnclosedMass
        The map's mass inside the cylinders of ``radius``.
    fits : dict of str to dict of str to HaloFit
        Per halo model, the fits at the ``"nominal"``, ``"low"`` and ``"high"`` disc
        mass-to-light ratios.
    dynamical : dict of str to Quantity
        Per halo model, ``(3, n)``: the projected mass of the nominal fit and the lower and
        upper ends of the band over the three fits (Msun).
    depth : Quantity or None
        Line-of-sight depth of the projection (None: through the whole halo to r200).
    """

    mass_map: MassMap
    curve: RotationCurve
    enclosed: EnclosedMass
    fits: dict[str, dict[str, HaloFit]]
    dynamical: dict[str, u.Quantity]
    depth: u.Quantity | None

    @property
    def radius(self) -> u.Quantity:
        """Cylinder radii (kpc)."""
        return self.enclosed.radius

    def offset_dex(self, model: str) -> np.ndarray:
        """:math:`\\log_{10}(M_{\\rm pred} / M_{\\rm dyn})` against the nominal fit of ``model``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log10((self.enclosed.mass / self.dynamical[model][0]).to_value(u.one))

    def table(self) -> QTable:
        """One row per radius: predicted and dynamical masses, bands, offsets and flags.

        Columns ``radius``, ``m_pred``, ``status``, ``masked_fraction``,
        ``m_pred_covered`` (the mass on the non-blank pixels), ``beyond_curve``
        (radius past the last rotation-curve point: the halo is extrapolated), and for each
        halo model ``m_<model>``, ``m_<model>_lo``, ``m_<model>_hi``, ``dex_<model>``
        (:meth:`offset_dex`) and ``dex_<model>_lo``, ``dex_<model>_hi`` (its range over the
        mass-to-light band). The metadata record the inputs and every fit.
        """
        t = QTable()
        t["radius"] = self.radius
        t["m_pred"] = self.enclosed.mass
        t["status"] = self.enclosed.status
        t["masked_fraction"] = np.round(self.enclosed.masked_fraction, 4)
        t["m_pred_covered"] = self.enclosed.covered_mass
        t["beyond_curve"] = self.radius > self.curve.radius[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            for model, mass in self.dynamical.items():
                t[f"m_{model}"] = mass[0]
                t[f"m_{model}_lo"] = mass[1]
                t[f"m_{model}_hi"] = mass[2]
                t[f"dex_{model}"] = np.round(self.offset_dex(model), 4)
                t[f"dex_{model}_lo"] = np.round(np.log10((self.enclosed.mass / mass[2]).value), 4)
                t[f"dex_{model}_hi"] = np.round(np.log10((self.enclosed.mass / mass[1]).value), 4)
        m = self.mass_map
        t.meta.update({
            "map": str(m.path.name) if m.path else "",
            "model": m.header.get("MODEL", ""),
            "rotation_curve": self.curve.name,
            "distance_mpc": round(float(m.distance.to_value(u.Mpc)), 6),
            "centre_deg": [round(float(m.centre.spherical.lon.deg), 6),
                           round(float(m.centre.spherical.lat.deg), 6)],
            "centre_frame": m.centre.frame.name,
            "line_of_sight": ("whole halo, truncated at the fitted r200" if self.depth is None
                              else f"slab of {self.depth.to_value(u.kpc):g} kpc, halo truncated at r200"),
            "map_edge_kpc": round(float(self.enclosed.edge.to_value(u.kpc)), 3),
            "fits": {model: {which: _fit_meta(f) for which, f in trio.items()}
                     for model, trio in self.fits.items()},
        })
        return t

    def summary(self) -> str:
        """A printable table: radius, predicted mass, each halo's mass and offset in dex."""
        lines = [f"{self.mass_map.path.name if self.mass_map.path else 'map'} against "
                 f"{self.curve.name} at {self.mass_map.distance.to_value(u.Mpc):.3g} Mpc, "
                 f"centre {self.mass_map.centre.to_string('hmsdms', precision=1)}, "
                 + ("whole halo to r200" if self.depth is None
                    else f"slab {self.depth.to_value(u.kpc):g} kpc")]
        for trio in self.fits.values():
            for which in ("low", "nominal", "high"):
                lines.append("  " + trio[which].summary())
        head = f"{'R/kpc':>7} {'M_pred/Msun':>11}"
        for model in self.dynamical:
            label = HALO_MODELS[model].label[:9]
            head += f" {'M_' + label + '/Msun (band)':>29} {'dex (band)':>19}"
        lines.append(head + "  note")
        for i, r in enumerate(self.radius.to_value(u.kpc)):
            mp = self.enclosed.mass[i].to_value(u.Msun)
            row = f"{r:7.2f} {mp:11.3e}" if np.isfinite(mp) else f"{r:7.2f} {'nan':>11}"
            for model, mass in self.dynamical.items():
                lo, hi = mass[1, i].value, mass[2, i].value
                dex = self.offset_dex(model)[i]
                band = f"{mass[0, i].value:.3g} ({lo:.3g}..{hi:.3g})"
                dband = (f"{dex:+.2f} ({math.log10(mp / hi):+.2f}..{math.log10(mp / lo):+.2f})"
                         if np.isfinite(dex) else "nan")
                row += f" {band:>29} {dband:>19}"
            note = [] if self.enclosed.status[i] == _OK else [str(self.enclosed.status[i])]
            if self.enclosed.status[i] == _MASKED:
                note[0] += (f" ({100 * self.enclosed.masked_fraction[i]:.1f}% of the area blank; "
                            f"{self.enclosed.covered_mass[i].to_value(u.Msun):.3e} on the rest)")
            if r > self.curve.radius[-1].to_value(u.kpc):
                note.append("beyond the rotation curve")
            lines.append(row + ("  " + "; ".join(note) if note else ""))
        return "\n".join(lines)


_UNIT_NAMES = {"": "", "solMass / kpc3": "msun_kpc3", "kpc": "kpc", "solMass": "msun"}


def _fit_meta(f: HaloFit) -> dict:
    return {
        "ml_disk": f.ml_disk, "ml_bulge": f.ml_bulge,
        **{f"{name}_{_UNIT_NAMES[str(v.unit)]}".rstrip("_"): float(f"{v.value:.6g}")
           for name, v in f.parameters.items() if name != "m200"},
        **{f"{name}_err_dex": round(e, 4) if math.isfinite(e) else None
           for name, e in f.log_errors.items()},
        "m200_msun": float(f"{f.m200.to_value(u.Msun):.6g}"),
        "r200_kpc": round(float(f.r200.to_value(u.kpc)), 3),
        "chi2": round(f.chi2, 2), "dof": f.dof,
    }


def dynamics_check(
    mass_map: MassMap,
    curve: RotationCurve,
    *,
    radius: u.Quantity | None = None,
    haloes: tuple[str, ...] = ("nfw", "burkert"),
    ml_disk: float = 0.5,
    ml_disk_range: tuple[float, float] = (0.3, 0.7),
    ml_bulge: float = 0.7,
    depth: u.Quantity | None = None,
    cosmology: Cosmology | None = None,
    redshift: float = 0.0,
) -> DynamicsCheck:
    """Compare a predicted mass map with haloes fitted to the rotation curve.

    Parameters
    ----------
    mass_map : MassMap
        The predicted dark-matter map (:func:`read_mass_map`).
    curve : RotationCurve
        Observed curve and baryonic mass model. If it has a distance that differs from the
        map's, it is moved to the map's (:meth:`RotationCurve.at_distance`).
    radius : Quantity, optional
        Cylinder radii; default :func:`default_radii`.
    haloes : tuple of str
        Halo models to fit (:data:`~alchemy_obs.dynamics.haloes.HALO_MODELS`).
    ml_disk : float
        Nominal disc mass-to-light ratio.
    ml_disk_range : tuple of float
        Ends of its range; each halo is refitted at both.
    ml_bulge : float
        Bulge mass-to-light ratio.
    depth : Quantity, optional
        Line-of-sight depth of the training maps (``maps.slab_kpc``); ``None``: the whole
        halo, truncated at each fit's :math:`r_{200}`.
    cosmology : astropy.cosmology.Cosmology, optional
        Critical density of :math:`r_{200}` (default
        :func:`~alchemy_obs.dynamics.fit.default_cosmology`).
    redshift : float
        Epoch of that critical density: 0 for nearby galaxies; the snapshot's redshift for
        a simulated galaxy, whose cutout ends near the :math:`r_{200}` of its epoch.

    Returns
    -------
    DynamicsCheck
    """
    unknown = [h for h in haloes if h not in HALO_MODELS]
    if unknown or not haloes:
        raise DynamicsError(f"halo models {unknown}: use some of {', '.join(HALO_MODELS)}")
    lo_ml, hi_ml = ml_disk_range
    if not (0 <= lo_ml <= ml_disk <= hi_ml):
        raise DynamicsError(f"mass-to-light range {ml_disk_range} must bracket {ml_disk}")
    if curve.distance is not None and not u.isclose(curve.distance, mass_map.distance, rtol=1e-6):
        log.info("%s: rotation curve moved from %.3g to %.3g Mpc, the map's distance",
                 curve.name, curve.distance.to_value(u.Mpc), mass_map.distance.to_value(u.Mpc))
        curve = curve.at_distance(mass_map.distance)
    radius = default_radii(curve) if radius is None else radius.to(u.kpc)
    enclosed = map_enclosed_mass(mass_map, radius)
    cosmology = cosmology or default_cosmology()
    fits: dict[str, dict[str, HaloFit]] = {}
    dynamical: dict[str, u.Quantity] = {}
    for model in haloes:
        fits[model] = {which: fit_halo(curve, model, ml_disk=ml, ml_bulge=ml_bulge,
                                       cosmology=cosmology, redshift=redshift)
                       for which, ml in (("nominal", ml_disk), ("low", lo_ml), ("high", hi_ml))}
        masses = u.Quantity([f.halo.projected_mass(radius, depth=depth, truncation=f.r200)
                             for f in fits[model].values()])
        dynamical[model] = u.Quantity([masses[0], masses.min(axis=0), masses.max(axis=0)])
    return DynamicsCheck(mass_map, curve, enclosed, fits, dynamical, depth)


def write_table(check: DynamicsCheck, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write :meth:`DynamicsCheck.table` atomically: ECSV (with metadata) or, for a
    ``.csv`` name, plain CSV.

    Parameters
    ----------
    check : DynamicsCheck
    path : path-like
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise DynamicsError(f"{path}: exists; pass --overwrite to replace it")
    table = check.table()
    fmt = "ascii.csv" if path.suffix.lower() == ".csv" else "ascii.ecsv"
    fd, tmp = temporary_beside(path, suffix=path.suffix)
    os.close(fd)
    try:
        table.write(tmp, format=fmt, overwrite=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def plot_check(check: DynamicsCheck, path: str | os.PathLike, *, overwrite: bool = False,
               dpi: int = 110) -> Path:
    """Figure of the check: the rotation curve and its fits, the enclosed projected masses
    with their mass-to-light bands, and the offset of the prediction in dex.

    Parameters
    ----------
    check : DynamicsCheck
    path : path-like
        PNG to write (atomically).
    overwrite : bool
        Replace an existing file.
    dpi : int
        Resolution.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists() and not overwrite:
        raise DynamicsError(f"{path}: exists; pass --overwrite to replace it")
    curve = check.curve
    r_last = float(curve.radius[-1].to_value(u.kpc))
    r_top = max(r_last, float(check.radius.max().to_value(u.kpc)))
    grid = np.linspace(r_top / 80, r_top, 80) * u.kpc
    enclosed = map_enclosed_mass(check.mass_map, grid)
    colours = {"nfw": "C0", "burkert": "C3", "iso": "C2"}

    fig, axes = plt.subplots(3, 1, figsize=(6.4, 9.0), sharex=True,
                             gridspec_kw={"height_ratios": [1.0, 1.3, 0.8]})
    ax_v, ax_m, ax_d = axes
    r = curve.radius.to_value(u.kpc)
    nominal = next(iter(check.fits.values()))["nominal"]
    v_dm2 = curve.dm_velocity_squared(nominal.ml_disk, nominal.ml_bulge).value
    ax_v.errorbar(r, curve.v_obs.value, curve.v_err.value, fmt="o", ms=2.5, color="k",
                  lw=0.8, label=r"$V_{\rm obs}$")
    v_bar2 = curve.baryon_velocity_squared(nominal.ml_disk, nominal.ml_bulge).value
    ax_v.plot(r, np.sign(v_bar2) * np.sqrt(np.abs(v_bar2)), color="0.5", lw=1,
              label=rf"baryons ($\Upsilon_d$={nominal.ml_disk:g})")
    ax_v.plot(r, np.sign(v_dm2) * np.sqrt(np.abs(v_dm2)), "s", ms=2, color="C1",
              label=r"$V_{\rm DM}$ (obs $-$ baryons)")
    fine = np.linspace(r[0], r_top, 200) * u.kpc
    for model, trio in check.fits.items():
        c = colours.get(model, "C4")
        vs = np.array([f.halo.circular_velocity(fine).value for f in trio.values()])
        ax_v.fill_between(fine.value, vs.min(0), vs.max(0), color=c, alpha=0.2, lw=0)
        ax_v.plot(fine.value, vs[0], color=c, label=f"{HALO_MODELS[model].label} halo")
    ax_v.set_ylabel("V [km/s]")
    ax_v.legend(fontsize=7, loc="lower right")
    ax_v.set_title(f"{curve.name} vs {check.mass_map.path.name if check.mass_map.path else 'map'}",
                   fontsize=9)

    ax_m.plot(grid.value, enclosed.mass.to_value(u.Msun), color="k", lw=1.8,
              label="predicted map")
    for model, trio in check.fits.items():
        c = colours.get(model, "C4")
        ms = u.Quantity([f.halo.projected_mass(grid, depth=check.depth, truncation=f.r200)
                         for f in trio.values()]).to_value(u.Msun)
        ax_m.fill_between(grid.value, ms.min(0), ms.max(0), color=c, alpha=0.2, lw=0,
                          label=rf"{HALO_MODELS[model].label}, $\Upsilon_d$ "
                                f"{trio['low'].ml_disk:g}-{trio['high'].ml_disk:g}")
        ax_m.plot(grid.value, ms[0], color=c)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.log10(enclosed.mass.to_value(u.Msun) / ms)
        # NaN (masked) radii stay gaps: the band of a radius is NaN when its mass is.
        ax_d.fill_between(grid.value, d.min(0), d.max(0), color=c, alpha=0.2, lw=0)
        ax_d.plot(grid.value, d[0], color=c, label=f"vs {HALO_MODELS[model].label}")
    bad = enclosed.status != _OK
    if bad.any():
        first = grid.value[np.argmax(bad)]
        for ax in (ax_m, ax_d):
            ax.axvspan(first, r_top, color="0.85", zorder=0)
        ax_m.text(first, 0.97, f" map\n {enclosed.status[bad][0]}", va="top",
                  transform=ax_m.get_xaxis_transform(), fontsize=7, color="0.3")
    ax_m.set_yscale("log")
    depth = ("whole halo to $r_{200}$" if check.depth is None
             else f"slab {check.depth.to_value(u.kpc):g} kpc")
    ax_m.set_ylabel(r"$M_{\rm DM}(<R)$ in cylinder [M$_\odot$]")
    ax_m.legend(fontsize=7, loc="lower right", title=f"line of sight: {depth}", title_fontsize=7)
    ax_d.axhline(0, color="0.4", lw=0.8)
    ax_d.set_ylabel(r"$\log_{10}(M_{\rm pred}/M_{\rm dyn})$ [dex]")
    ax_d.set_xlabel("projected radius R [kpc]")
    ax_d.legend(fontsize=7)
    for ax in axes:
        ax.axvline(r_last, color="0.6", ls=":", lw=0.8)
    if check.mass_map.header.get("DEMOMODL"):
        fig.text(0.5, 0.005, "DEMONSTRATION MODEL: not a science result", ha="center",
                 fontsize=8, color="C3")
    fig.tight_layout()
    fd, tmp = temporary_beside(path, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
