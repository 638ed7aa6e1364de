"""Karabo (OSKAR) as an alternative visibility simulator behind the same protocol.

Karabo (``karabo-pipeline``, i4Ds) is distributed through conda only::

    conda create -n karabo python=3.10 && conda activate karabo
    conda install -c nvidia/label/cuda-11.7.0 -c i4ds -c conda-forge karabo-pipeline
    pip install -e /path/to/alchemy-obs

:class:`KaraboSimulator` is used when ``import karabo`` works; otherwise the built-in engine
is the only backend (its tests are skipped with that reason). Karabo's sky model is a list of
point sources evaluated with a direct Fourier sum (cost ~ sources x visibilities), so the sky
image is thresholded first (:func:`sky_to_point_sources`): pixels are kept from the brightest
down until ``max_sources`` or ``keep_fraction`` of the total flux, and the flux left out is
reported. Each channel of a cube is its own single-channel Karabo run. OSKAR's "Gaussian beam"
station type has one FWHM for all stations, so a mixed SKA + MeerKAT array gets the 15 m
dish's beam (a documented approximation; the built-in engine has per-pair beams). Thermal
noise is added by the built-in radiometer model so both backends share one noise definition.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from astropy import units as u

from alchemy_obs.observe.interferometer import Visibilities, sky_planes
from alchemy_obs.observe.measurement_set import read_ms_data
from alchemy_obs.observe.telescope import Observation, Telescope
from alchemy_obs.skyimage import SkyImage

__all__ = ["karabo_available", "sky_to_point_sources", "write_oskar_telescope", "KaraboSimulator"]

log = logging.getLogger(__name__)


def karabo_available() -> bool:
    """Whether ``import karabo`` works."""
    try:
        import karabo  # noqa: F401
    except ImportError:
        return False
    return True


def sky_to_point_sources(sky: SkyImage, channel: int = 0, max_sources: int = 20000,
                         *,
                         keep_fraction: float = 0.999) -> tuple[np.ndarray, float]:
    """Brightest pixels of one channel as Karabo point sources.

    Parameters
    ----------
    sky : SkyImage
        Jy per pixel.
    channel : int
    max_sources : int
        Upper limit on the number of sources (the direct Fourier sum's cost).
    keep_fraction : float
        Stop once this fraction of the channel's positive flux is included.

    Returns
    -------
    sources : ndarray (n, 12)
        Karabo/OSKAR rows: RA, Dec (deg), I, Q, U, V (Jy), reference frequency (Hz),
        spectral index, rotation measure, FWHM major, minor (arcsec), PA (deg).
    dropped : float
        Fraction of the positive flux left out.
    """
    planes = sky_planes(sky)
    plane = planes[channel if len(planes) > 1 else 0]
    flat = plane.ravel()
    order = np.argsort(flat)[::-1]
    order = order[flat[order] > 0]
    total = flat[order].sum()
    if total <= 0:
        return np.zeros((0, 12)), 0.0
    cum = np.cumsum(flat[order]) / total
    n = min(int(np.searchsorted(cum, keep_fraction) + 1), max_sources, len(order))
    keep = order[:n]
    y, x = np.unravel_index(keep, plane.shape)
    world = sky.wcs.celestial.pixel_to_world(x, y)
    freqs = sky.frequencies
    ref = freqs[channel].to_value(u.Hz) if freqs is not None else 1.4e9
    src = np.zeros((n, 12))
    src[:, 0], src[:, 1], src[:, 2], src[:, 6] = world.ra.deg, world.dec.deg, flat[keep], ref
    return src, float(1 - flat[keep].sum() / total)


def write_oskar_telescope(telescope: Telescope, path: str | Path) -> Path:
    """An OSKAR telescope model folder: ``position.txt``, ``layout.txt`` (ENU m) and one
    single-element station per dish."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    loc = telescope.location
    (path / "position.txt").write_text(
        f"{loc.lon.deg:.8f} {loc.lat.deg:.8f} {loc.height.to_value(u.m):.3f}\n")
    np.savetxt(path / "layout.txt", telescope.enu, fmt="%.6f")
    for k in range(telescope.n_antennas):
        station = path / f"station{k:03d}"
        station.mkdir(exist_ok=True)
        (station / "layout.txt").write_text("0.0 0.0\n")
    return path


class KaraboSimulator:
    """Visibilities from Karabo/OSKAR; same ``observe(sky, observation)`` as the built-in engine.

    Parameters
    ----------
    max_sources, keep_fraction : int, float
        Sky thresholding, see :func:`sky_to_point_sources`.
    noise : bool
        Add the built-in radiometer noise.
    seed : int, optional
    use_gpus : bool
    """

    def __init__(self, max_sources: int = 20000, keep_fraction: float = 0.999, noise: bool = True,
                 *, seed=None, use_gpus: bool = False):
        if not karabo_available():
            raise ImportError("karabo is not installed; see the conda recipe in the module docstring")
        self.max_sources, self.keep_fraction = max_sources, keep_fraction
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.use_gpus = use_gpus

    def observe(self, sky: SkyImage, observation: Observation) -> Visibilities:
        """Simulate each channel with Karabo, then add thermal noise."""
        from karabo.simulation.interferometer import InterferometerSimulation
        from karabo.simulation.observation import Observation as KObservation
        from karabo.simulation.sky_model import SkyModel as KSky
        from karabo.simulation.telescope import Telescope as KTelescope

        obs = observation
        dump = obs.dump_time.to_value(u.s)
        start = (obs.times[0] - obs.dump_time / 2).to_datetime()
        dish = obs.telescope.dish_types["ska" if "ska" in obs.telescope.dish_types else
                                        next(iter(obs.telescope.dish_types))]
        freqs = obs.frequencies.to_value(u.Hz)
        a1, a2, t = obs.rows()
        data = np.zeros((len(a1), len(freqs)), np.complex128)
        with tempfile.TemporaryDirectory() as tmp:
            tel = KTelescope.read_OSKAR_tm_file(str(write_oskar_telescope(obs.telescope, Path(tmp) / "t.tm")))
            for c, f in enumerate(freqs):
                src, dropped = sky_to_point_sources(sky, c, self.max_sources,
                                                    keep_fraction=self.keep_fraction)
                log.info("channel %d: %d point sources, %.2e of the flux dropped", c, len(src), dropped)
                ksky = KSky()
                ksky.add_point_sources(src)
                kobs = KObservation(start_frequency_hz=f, start_date_and_time=start,
                                    length=timedelta(seconds=dump * obs.n_times), number_of_channels=1,
                                    frequency_increment_hz=obs.channel_width.to_value(u.Hz),
                                    phase_center=obs.phase_centre, number_of_time_steps=obs.n_times)
                ms_path = str(Path(tmp) / f"c{c}.ms")
                sim = InterferometerSimulation(
                    ms_file_path=ms_path, channel_bandwidth_hz=0, time_average_sec=0,
                    use_gpus=self.use_gpus, use_dask=False, station_type="Gaussian beam",
                    gauss_beam_fwhm_deg=dish.beam_fwhm(f * u.Hz, obs.telescope.beam_fwhm_factor).to_value(u.deg),
                    gauss_ref_freq_hz=f,
                )
                sim.run_simulation(tel, ksky, kobs)
                ms = read_ms_data(ms_path)
                # OSKAR's row order: match on (dump, antenna1, antenna2).
                tk = np.searchsorted(np.unique(ms["time"]), ms["time"])
                key = (tk * obs.telescope.n_antennas + ms["antenna1"]) * obs.telescope.n_antennas + ms["antenna2"]
                ours = (t * obs.telescope.n_antennas + a1) * obs.telescope.n_antennas + a2
                pos = np.searchsorted(ours, key)
                data[pos, c] = ms["data"][:, 0, 0] if ms["data"].shape[2] == 1 else ms["data"][:, 0, [0, -1]].mean(1)
        sigma = np.broadcast_to(obs.sigma(), data.shape).copy()
        flag = np.zeros(data.shape, bool)
        if self.noise:
            data = data + sigma * (self.rng.standard_normal(data.shape) + 1j * self.rng.standard_normal(data.shape))
        mjd_s = obs.times.utc.mjd * 86400.0
        return Visibilities(obs.uvw(), a1, a2, mjd_s[t], obs.frequencies, data, sigma, flag, obs)
