"""SKA-MID as an interferometer: dish layout, dish types, sensitivity, primary beam and the
observation (pointing, track, correlator set-up) that turns the layout into uvw coordinates.

Conventions
-----------
* Antenna positions are local horizontal (east, north, up) metres relative to the array
  reference position (:class:`~astropy.coordinates.EarthLocation`). They are rotated into the
  local equatorial frame (X to the meridian at the equator, Y east, Z to the pole) and then into
  (u, v, w) with the hour angle H and declination of the phase centre (Thompson, Moran &
  Swenson 2017, eq. 4.1; the baseline of row (i, j) is x_j - x_i)::

      u =  sin H X + cos H Y
      v = -sin d cos H X + sin d sin H Y + cos d Z
      w =  cos d cos H X - cos d sin H Y + sin d Z

  so that u points east and v north at the phase centre.
* The hour angle comes from astropy's mean sidereal time (IAU 1982, UT1 = UTC) at the array
  longitude, and the ICRS right ascension of the phase centre.
* SEFD of a dish type: ``2 k (T_sys/eta_A) / A_geom`` with A_geom = pi D^2 / 4; T_sys/eta_A
  is one value per band or a table against frequency (default: the model of Braun et al.
  2019, which rises from 30 K at 0.9 GHz to 99 K at 0.35 GHz for an SKA dish).
* Primary beam of a dish: a Gaussian power pattern of FWHM ``f lambda / D`` (f = 1.2 by
  default); the beam of a baseline is the geometric mean of its two dishes' patterns.

Examples
--------
>>> from astropy.coordinates import SkyCoord
>>> import astropy.units as u
>>> tel = Telescope.ska_mid("AA1")
>>> obs = Observation.from_hour_angles(
...     tel, SkyCoord(150 * u.deg, -30 * u.deg), (-1, 1) * u.hourangle, 600 * u.s,
...     freq_start=1.4 * u.GHz, channel_width=1 * u.MHz, n_channels=1)
>>> obs.uvw().shape
(364, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time

if TYPE_CHECKING:
    from alchemy_obs.config import ObserveConfig, TelescopeConfig

__all__ = [
    "BANDS",
    "ARRAYS",
    "DishType",
    "Telescope",
    "Observation",
    "Track",
    "read_layout",
    "check_band",
]

#: SKA-MID receiver bands (SKAO, "SKA1 Level 0 Science Requirements"; Braun et al. 2019,
#: arXiv:1912.12699, table 3).
BANDS: dict[str, tuple[u.Quantity, u.Quantity]] = {
    "1": (0.35 * u.GHz, 1.05 * u.GHz),
    "2": (0.95 * u.GHz, 1.76 * u.GHz),
}

#: Staged-delivery arrays, the membership columns of the layout table.
ARRAYS = ("AA0.5", "AA1", "AA2", "AA*", "AA4")

_SIDEREAL_PER_SOLAR = 1.002737909350795


def _sidereal_time(times: Time, location: EarthLocation) -> u.Quantity:
    """Local mean sidereal time (IAU 1982) with UT1 = UTC.

    |UT1 - UTC| < 0.9 s moves the sky by < 14 arcsec, far below what a simulated track
    resolves, and it keeps the simulator free of IERS downloads (it runs offline).
    """
    t = Time(times, scale="utc", copy=True)
    t.delta_ut1_utc = np.zeros(t.shape) if t.shape else 0.0
    return t.sidereal_time("mean", longitude=location.lon, model="IAU1982")


def check_band(frequencies: u.Quantity, band: str) -> None:
    """Raise ``ValueError`` unless every frequency lies inside the SKA-MID band ``band``."""
    if band not in BANDS:
        raise ValueError(f"unknown SKA-MID band {band!r}; choose one of {sorted(BANDS)}")
    lo, hi = BANDS[band]
    f = u.Quantity(frequencies, u.Hz)
    if np.any(f < lo) or np.any(f > hi):
        raise ValueError(
            f"channels {f.min().to(u.GHz):.4f} - {f.max().to(u.GHz):.4f} leave SKA-MID band "
            f"{band} ({lo} - {hi})"
        )


@dataclass(frozen=True)
class DishType:
    """A kind of dish: geometric diameter and T_sys/eta_A per band.

    Parameters
    ----------
    name : str
        Name used in the layout's type column (``"ska"``, ``"meerkat"``).
    diameter : Quantity
        Geometric diameter.
    tsys_over_eta : dict
        System temperature over aperture efficiency per band name: a scalar Quantity (K) for
        the whole band, or a pair ``(frequencies, values)`` of increasing node frequencies and
        K, interpolated linearly (the dish has no receiver outside the nodes).
    """

    name: str
    diameter: u.Quantity
    tsys_over_eta: dict[str, u.Quantity | tuple[u.Quantity, u.Quantity]]

    @property
    def area(self) -> u.Quantity:
        """Geometric collecting area pi D^2 / 4."""
        return (np.pi * self.diameter**2 / 4).to(u.m**2)

    def tsys_over_eta_at(self, band: str, frequency: u.Quantity | None = None) -> u.Quantity:
        """T_sys/eta_A (K) in ``band`` at ``frequency`` (any shape; may be omitted for a
        band with one value).

        Raises
        ------
        ValueError
            For an unknown band, a frequency outside the band's nodes, or a tabulated band
            without a frequency.
        """
        if band not in self.tsys_over_eta:
            raise ValueError(f"dish type {self.name!r} has no T_sys/eta for band {band!r}")
        entry = self.tsys_over_eta[band]
        if not isinstance(entry, tuple):
            value = u.Quantity(entry, u.K)
            return value if frequency is None else np.full(np.shape(frequency), value.value) * u.K
        if frequency is None:
            raise ValueError(f"dish type {self.name!r}: T_sys/eta of band {band!r} depends on "
                             "frequency; give the frequency")
        nodes = entry[0].to_value(u.GHz)
        f = u.Quantity(frequency, u.Hz).to_value(u.GHz)
        # A relative 1e-9 lets channel centres computed in Hz sit on the end nodes.
        if np.any(f < nodes[0] * (1 - 1e-9)) or np.any(f > nodes[-1] * (1 + 1e-9)):
            raise ValueError(
                f"dish type {self.name!r} receives band {band!r} only from {nodes[0]} to "
                f"{nodes[-1]} GHz, got {np.min(f):.4f}-{np.max(f):.4f} GHz (choose an array "
                "without these dishes, e.g. AA2, or other frequencies)"
            )
        return np.interp(f, nodes, entry[1].to_value(u.K)) * u.K

    def sefd(self, band: str, frequency: u.Quantity | None = None) -> u.Quantity:
        """System equivalent flux density 2 k (T_sys/eta) / A in Jy for ``band`` (at
        ``frequency``, shaped like it; see :meth:`tsys_over_eta_at`)."""
        return (2 * const.k_B * self.tsys_over_eta_at(band, frequency) / self.area).to(u.Jy)

    def beam_fwhm(self, frequency: u.Quantity, factor: float = 1.2) -> u.Quantity:
        """FWHM ``factor * lambda / D`` of the Gaussian primary beam (radian)."""
        lam = (const.c / u.Quantity(frequency, u.Hz)).to(u.m)
        return (factor * lam / self.diameter).decompose() * u.rad


def _default_layout() -> Path:
    return Path(str(resources.files("alchemy_obs") / "data" / "ska_mid_layout.txt"))


def read_layout(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read a layout table: name, type, east, north, up (m) and one 0/1 column per array.

    Parameters
    ----------
    path : path-like, optional
        Table in the format of ``alchemy_obs/data/ska_mid_layout.txt``; default that file.

    Returns
    -------
    dict
        ``name`` and ``type`` (str arrays), ``enu`` (N, 3) float64 metres and one bool array
        per name in :data:`ARRAYS`.
    """
    path = Path(path) if path is not None else _default_layout()
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read layout ({exc.strerror})") from None
    rows = [ln.split() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows or any(len(r) != 5 + len(ARRAYS) for r in rows):
        raise ValueError(
            f"{path}: every layout row needs name, type, east, north, up and "
            f"{len(ARRAYS)} membership flags ({', '.join(ARRAYS)})"
        )
    try:
        enu = np.array([[float(x) for x in r[2:5]] for r in rows])
        flags = np.array([[int(x) for x in r[5:]] for r in rows], dtype=bool)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric position or flag ({exc})") from None
    out = {"name": np.array([r[0] for r in rows]), "type": np.array([r[1] for r in rows]), "enu": enu}
    for k, name in enumerate(ARRAYS):
        out[name] = flags[:, k]
    return out


@dataclass
class Telescope:
    """An array of dishes at a site.

    Parameters
    ----------
    name : str
        Telescope name for FITS ``TELESCOP`` and the MeasurementSet.
    antenna_names : ndarray of str, shape (N,)
    dish_type : ndarray of str, shape (N,)
        Key into ``dish_types`` for every antenna.
    enu : ndarray, shape (N, 3)
        East, north, up offsets (m) from ``location``.
    location : EarthLocation
        Array reference position.
    dish_types : dict of str to DishType
    beam_fwhm_factor : float
        Primary-beam FWHM in units of lambda / D.
    """

    name: str
    antenna_names: np.ndarray
    dish_type: np.ndarray
    enu: np.ndarray
    location: EarthLocation
    dish_types: dict[str, DishType]
    beam_fwhm_factor: float = 1.2

    def __post_init__(self) -> None:
        self.enu = np.asarray(self.enu, dtype=np.float64)
        n = len(self.antenna_names)
        if self.enu.shape != (n, 3) or len(self.dish_type) != n:
            raise ValueError("antenna_names, dish_type and enu (N, 3) must have the same length N")
        if n < 2:
            raise ValueError(f"an interferometer needs at least 2 antennas, got {n}")
        missing = set(self.dish_type) - set(self.dish_types)
        if missing:
            raise ValueError(f"dish types {sorted(missing)} have no DishType definition")

    @classmethod
    def ska_mid(cls, array: str = "AA*", config: TelescopeConfig | None = None) -> Telescope:
        """SKA-MID staged-delivery array (ska-ost-array-config 2.3.1 positions).

        Parameters
        ----------
        array : {"AA0.5", "AA1", "AA2", "AA*", "AA4"}
        config : TelescopeConfig, optional
            Dish parameters, site and an optional own layout; ``config.array`` is ignored in
            favour of ``array``.
        """
        from alchemy_obs.config import TelescopeConfig

        cfg = config if config is not None else TelescopeConfig()
        cfg = cfg.model_copy(update={"array": array})
        return cls.from_config(cfg)

    @classmethod
    def from_config(cls, config: TelescopeConfig) -> Telescope:
        """Build the telescope described by a :class:`~alchemy_obs.config.TelescopeConfig`."""
        if config.array not in ARRAYS:
            raise ValueError(f"unknown array {config.array!r}; choose one of {ARRAYS}")
        table = read_layout(config.layout)
        keep = table[config.array]
        if config.max_baseline_km is not None:
            keep &= np.hypot(table["enu"][:, 0], table["enu"][:, 1]) <= config.max_baseline_km * 1e3
        def curve(value: float | list[tuple[float, float]]) -> u.Quantity | tuple[u.Quantity, u.Quantity]:
            if isinstance(value, list):
                nodes = np.array(value, dtype=np.float64)
                return nodes[:, 0] * u.GHz, nodes[:, 1] * u.K
            return value * u.K

        dish_types = {
            name: DishType(name, d.diameter_m * u.m,
                           {band: curve(t) for band, t in d.tsys_over_eta_k.items()})
            for name, d in config.dishes.items()
        }
        location = EarthLocation.from_geodetic(
            config.longitude_deg * u.deg, config.latitude_deg * u.deg, config.height_m * u.m
        )
        return cls(
            name="SKA-MID",
            antenna_names=table["name"][keep],
            dish_type=table["type"][keep],
            enu=table["enu"][keep],
            location=location,
            dish_types=dish_types,
            beam_fwhm_factor=config.beam_fwhm_factor,
        )

    @property
    def n_antennas(self) -> int:
        """Number of dishes."""
        return len(self.antenna_names)

    @property
    def diameters(self) -> u.Quantity:
        """Dish diameters, shape (N,)."""
        return u.Quantity([self.dish_types[t].diameter.to_value(u.m) for t in self.dish_type], u.m)

    def sefd(self, band: str, frequency: u.Quantity | None = None) -> u.Quantity:
        """SEFD of every dish in ``band``, Jy: shape (N,), or (N, C) at C ``frequency`` values."""
        per_type = {name: dish.sefd(band, None if frequency is None else np.atleast_1d(frequency))
                    for name, dish in self.dish_types.items() if name in set(self.dish_type)}
        return u.Quantity([per_type[t].to_value(u.Jy) for t in self.dish_type], u.Jy)

    def equatorial_xyz(self) -> np.ndarray:
        """Local equatorial coordinates (X, Y, Z) in metres, shape (N, 3)."""
        lat = self.location.lat.to_value(u.rad)
        e, n, up = self.enu.T
        return np.stack(
            [-np.sin(lat) * n + np.cos(lat) * up, e, np.cos(lat) * n + np.sin(lat) * up], axis=1
        )

    def itrf(self) -> np.ndarray:
        """Geocentric ITRF positions (m), shape (N, 3), for the MeasurementSet ANTENNA table."""
        lat = self.location.lat.to_value(u.rad)
        lon = self.location.lon.to_value(u.rad)
        e, n, up = self.enu.T
        # ENU -> ECEF rotation at the reference position.
        dx = -np.sin(lon) * e - np.sin(lat) * np.cos(lon) * n + np.cos(lat) * np.cos(lon) * up
        dy = np.cos(lon) * e - np.sin(lat) * np.sin(lon) * n + np.cos(lat) * np.sin(lon) * up
        dz = np.cos(lat) * n + np.sin(lat) * up
        ref = np.array([c.to_value(u.m) for c in self.location.to_geocentric()])
        return ref + np.stack([dx, dy, dz], axis=1)

    def baselines(self) -> tuple[np.ndarray, np.ndarray]:
        """Antenna index pairs (i < j) of all cross-correlations, each shape (N(N-1)/2,)."""
        i, j = np.triu_indices(self.n_antennas, k=1)
        return i, j

    def primary_beam(self, offset: u.Quantity, frequency: u.Quantity, dish: str) -> np.ndarray:
        """Gaussian power pattern of one dish type at angular ``offset`` from the pointing."""
        fwhm = self.dish_types[dish].beam_fwhm(frequency, self.beam_fwhm_factor).to_value(u.rad)
        theta = u.Quantity(offset, u.rad).value
        return np.exp(-4 * np.log(2) * (theta / fwhm) ** 2)


@dataclass(frozen=True)
class Track:
    """How a pointing is observed: the track, the correlator and the default channels.

    Parameters
    ----------
    hour_angles : Quantity, shape (2,)
        Start and end hour angle of the track.
    start_utc : str, optional
        UTC start (ISOT); overrides the start hour angle, the duration is kept.
    dump_time : Quantity
        Correlator dump (integration) time.
    band : {"1", "2"}
        SKA-MID receiver band.
    n_pol : int
        Polarisation products averaged into Stokes I.
    freq_start, channel_width : Quantity
        Centre of the first channel and channel width of a sky without its own channels.
    n_channels : int
        Channels of a sky without its own.
    """

    hour_angles: u.Quantity = field(default_factory=lambda: [-1.0, 1.0] * u.hourangle)
    start_utc: str | None = None
    dump_time: u.Quantity = field(default_factory=lambda: 300.0 * u.s)
    band: str = "2"
    n_pol: int = 2
    freq_start: u.Quantity = field(default_factory=lambda: 1.4e9 * u.Hz)
    channel_width: u.Quantity = field(default_factory=lambda: 1.0e6 * u.Hz)
    n_channels: int = 1

    @classmethod
    def from_config(cls, config: ObserveConfig) -> Track:
        """The track of an :class:`~alchemy_obs.config.ObserveConfig`."""
        return cls(
            hour_angles=[config.hour_angle_start_h, config.hour_angle_end_h] * u.hourangle,
            start_utc=config.start_utc, dump_time=config.dump_s * u.s, band=config.band,
            n_pol=config.n_pol, freq_start=config.freq_start_hz * u.Hz,
            channel_width=config.channel_width_hz * u.Hz, n_channels=config.n_channels,
        )


@dataclass
class Observation:
    """A track of one pointing with one correlator set-up.

    Parameters
    ----------
    telescope : Telescope
    phase_centre : SkyCoord
        Phase and pointing centre (ICRS).
    times : Time, shape (T,)
        Centres of the correlator dumps (UTC).
    dump_time : Quantity
        Integration time of one dump.
    frequencies : Quantity, shape (C,)
        Channel centres.
    channel_width : Quantity
    band : str
        SKA-MID band containing the channels ("1" or "2").
    n_pol : int
        Polarisation products (XX, YY) averaged into Stokes I; each has the radiometer noise.
    """

    telescope: Telescope
    phase_centre: SkyCoord
    times: Time
    dump_time: u.Quantity
    frequencies: u.Quantity
    channel_width: u.Quantity
    band: str = "2"
    n_pol: int = 2
    _uvw_cache: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.frequencies = np.atleast_1d(u.Quantity(self.frequencies, u.Hz))
        self.times = Time(np.atleast_1d(self.times))
        self.phase_centre = self.phase_centre.icrs
        check_band(self.frequencies, self.band)
        if self.n_pol not in (1, 2):
            raise ValueError(f"n_pol must be 1 or 2, got {self.n_pol}")
        if self.dump_time <= 0 or self.channel_width <= 0:
            raise ValueError("dump_time and channel_width must be positive")

    @classmethod
    def from_hour_angles(
        cls,
        telescope: Telescope,
        phase_centre: SkyCoord,
        hour_angles: u.Quantity,
        *,
        dump_time: u.Quantity,
        freq_start: u.Quantity,
        channel_width: u.Quantity,
        n_channels: int,
        band: str = "2",
        n_pol: int = 2,
        date: str = "2028-01-01",
    ) -> Observation:
        """Track the phase centre from ``hour_angles[0]`` to ``hour_angles[1]`` on ``date``.

        Dumps are centred at ``start + (k + 1/2) dump_time``; the track holds
        ``floor(duration / dump_time)`` (at least one) dumps.
        """
        ha0, ha1 = u.Quantity(hour_angles, u.hourangle)
        if ha1 <= ha0:
            raise ValueError(f"hour-angle range must increase, got {ha0} to {ha1}")
        t0 = Time(date, scale="utc")
        lst0 = _sidereal_time(t0, telescope.location)
        ra = phase_centre.icrs.ra
        # Sidereal hours from t0 until the source reaches hour angle ha0 (LST = RA + HA).
        d_sid = ((ra + ha0 - lst0).wrap_at(360 * u.deg)).to(u.hourangle).value % 24.0
        start = t0 + (d_sid / _SIDEREAL_PER_SOLAR) * u.hour
        duration = ((ha1 - ha0).to_value(u.hourangle) / _SIDEREAL_PER_SOLAR) * u.hour
        return cls.from_start(
            telescope, phase_centre, start, duration=duration, dump_time=dump_time,
            freq_start=freq_start, channel_width=channel_width,
            n_channels=n_channels, band=band, n_pol=n_pol,
        )

    @classmethod
    def from_start(
        cls,
        telescope: Telescope,
        phase_centre: SkyCoord,
        start: Time,
        *,
        duration: u.Quantity,
        dump_time: u.Quantity,
        freq_start: u.Quantity,
        channel_width: u.Quantity,
        n_channels: int,
        band: str = "2",
        n_pol: int = 2,
    ) -> Observation:
        """Track starting at UTC ``start`` for ``duration``."""
        n_t = max(int(np.floor((duration / dump_time).decompose().value + 1e-9)), 1)
        times = Time(start) + (np.arange(n_t) + 0.5) * dump_time
        freqs = u.Quantity(freq_start, u.Hz) + np.arange(n_channels) * u.Quantity(channel_width, u.Hz)
        return cls(telescope, phase_centre, times, dump_time.to(u.s), freqs,
                   u.Quantity(channel_width, u.Hz), band, n_pol)

    @classmethod
    def from_track(
        cls,
        track: Track,
        phase_centre: SkyCoord,
        frequencies: u.Quantity | None = None,
        *,
        channel_width: u.Quantity | None = None,
        telescope: Telescope,
    ) -> Observation:
        """The observation of ``track``; the channels may come from a sky cube instead.

        Parameters
        ----------
        track : Track
        phase_centre : SkyCoord
        frequencies, channel_width : Quantity, optional
            Channel centres and width (e.g. the spectral axis of a sky cube); default the
            track's ``freq_start``, ``channel_width`` and ``n_channels``.
        telescope : Telescope
        """
        if frequencies is None:
            freq_start = track.freq_start
            width = track.channel_width
            n = track.n_channels
        else:
            freqs = np.atleast_1d(u.Quantity(frequencies, u.Hz))
            freq_start = freqs[0]
            n = len(freqs)
            if channel_width is None:
                width = abs(freqs[1] - freqs[0]) if n > 1 else track.channel_width
            else:
                width = u.Quantity(channel_width, u.Hz)
        ha0, ha1 = track.hour_angles.to_value(u.hourangle)
        if track.start_utc is not None:
            duration = ((ha1 - ha0) / _SIDEREAL_PER_SOLAR) * u.hour
            obs = cls.from_start(telescope, phase_centre, Time(track.start_utc, scale="utc"),
                                 duration=duration, dump_time=track.dump_time, freq_start=freq_start,
                                 channel_width=width, n_channels=1, band=track.band,
                                 n_pol=track.n_pol)
        else:
            obs = cls.from_hour_angles(
                telescope, phase_centre, track.hour_angles, dump_time=track.dump_time,
                freq_start=freq_start, channel_width=width, n_channels=1, band=track.band,
                n_pol=track.n_pol,
            )
        if frequencies is not None:
            obs.frequencies = np.atleast_1d(u.Quantity(frequencies, u.Hz))
        else:
            obs.frequencies = freq_start + np.arange(n) * width
        check_band(obs.frequencies, obs.band)
        obs.channel_width = width
        return obs

    @property
    def n_times(self) -> int:
        """Number of dumps."""
        return len(self.times)

    @property
    def n_baselines(self) -> int:
        """Number of cross-correlation baselines."""
        n = self.telescope.n_antennas
        return n * (n - 1) // 2

    def hour_angles(self) -> u.Quantity:
        """Hour angle of the phase centre at every dump, shape (T,)."""
        lst = _sidereal_time(self.times, self.telescope.location)
        return (lst - self.phase_centre.ra).wrap_at(180 * u.deg).to(u.hourangle)

    def elevations(self) -> u.Quantity:
        """Geometric elevation of the phase centre at every dump, shape (T,)."""
        h = self.hour_angles().to_value(u.rad)
        d = self.phase_centre.dec.to_value(u.rad)
        lat = self.telescope.location.lat.to_value(u.rad)
        sin_el = np.sin(lat) * np.sin(d) + np.cos(lat) * np.cos(d) * np.cos(h)
        return (np.arcsin(np.clip(sin_el, -1, 1)) * u.rad).to(u.deg)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row layout (time-major): antenna1, antenna2 and dump index, each shape (T*B,)."""
        i, j = self.telescope.baselines()
        nt = self.n_times
        return np.tile(i, nt), np.tile(j, nt), np.repeat(np.arange(nt), len(i))

    def uvw(self) -> np.ndarray:
        """Baseline coordinates (m) of every row, shape (T*B, 3); rows as in :meth:`rows`."""
        if self._uvw_cache is None:
            h = self.hour_angles().to_value(u.rad)[:, None]
            d = self.phase_centre.dec.to_value(u.rad)
            xyz = self.telescope.equatorial_xyz()
            i, j = self.telescope.baselines()
            b = xyz[j] - xyz[i]
            x, y, z = (b[:, k][None, :] for k in range(3))
            uu = np.sin(h) * x + np.cos(h) * y
            vv = -np.sin(d) * np.cos(h) * x + np.sin(d) * np.sin(h) * y + np.cos(d) * z
            ww = np.cos(d) * np.cos(h) * x - np.cos(d) * np.sin(h) * y + np.sin(d) * z
            self._uvw_cache = np.stack([uu.ravel(), vv.ravel(), ww.ravel()], axis=1)
        return self._uvw_cache

    def sigma(self) -> np.ndarray:
        """Thermal noise of a Stokes I visibility, per real and per imaginary part (Jy).

        The radiometer equation for one polarisation product of baseline (i, j),
        ``sqrt(SEFD_i SEFD_j) / sqrt(2 dnu dt)``, divided by ``sqrt(n_pol)`` because
        Stokes I averages the ``n_pol`` independent products. The SEFDs are those of each
        channel's frequency. Shape (T*B, C).
        """
        sefd = self.telescope.sefd(self.band, self.frequencies).to_value(u.Jy)
        a1, a2, _ = self.rows()
        dnu = self.channel_width.to_value(u.Hz)
        dt = self.dump_time.to_value(u.s)
        return np.sqrt(sefd[a1] * sefd[a2]) / np.sqrt(2 * dnu * dt) / np.sqrt(self.n_pol)

    def baseline_groups(self) -> dict[tuple[str, str], np.ndarray]:
        """Rows grouped by the (sorted) dish-type pair of their baseline.

        Baselines of different dish-type pairs see the sky through different primary beams.
        """
        a1, a2, _ = self.rows()
        names, code = np.unique(self.telescope.dish_type, return_inverse=True)
        lo = np.minimum(code[a1], code[a2])
        hi = np.maximum(code[a1], code[a2])
        key = lo * len(names) + hi
        return {
            (str(names[k // len(names)]), str(names[k % len(names)])): np.flatnonzero(key == k)
            for k in np.unique(key)
        }

    def baseline_beam(self, offset: u.Quantity, frequency: u.Quantity, pair: tuple[str, str]) -> np.ndarray:
        """Primary beam of a baseline of dish types ``pair``: geometric mean of the two."""
        tel = self.telescope
        return np.sqrt(tel.primary_beam(offset, frequency, pair[0]) * tel.primary_beam(offset, frequency, pair[1]))
