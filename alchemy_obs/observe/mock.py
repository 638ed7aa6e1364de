"""Mock observations: sky model, telescope and imager composed by one driver.

As in MARTINI, small objects are handed to one function, :func:`make_mock`:

* a source (:class:`~alchemy_obs.observe.sky.HISource` or
  :class:`~alchemy_obs.observe.sky.ContinuumSource`), a
  :class:`~alchemy_obs.observe.sky.SkyPlacement` and a :class:`~alchemy_obs.observe.sky.SkyGrid`;
* the emission model (:class:`~alchemy_obs.observe.sky.SpectralAxis` and
  :class:`~alchemy_obs.observe.sky.LineModel` for HI, or a
  :class:`~alchemy_obs.observe.sky.ContinuumModel`);
* the observation (:class:`~alchemy_obs.config.ObserveConfig`: array, track, correlator,
  noise, imaging and the visibility or fast image-plane mode), or a ready simulator to reuse.

The result, an :class:`HIMock` or a :class:`ContinuumMock`, holds the sky model and the
imaging result and derives the mock domains of the dataset: HI moment 0 (Jy/beam km/s,
rest-frame velocity) and HI column density (cm^-2) of an HI mock, the continuum image
(Jy/beam) of a continuum mock. :func:`mock_view_maps` resamples them onto a view's
physical map grid with :func:`~alchemy_obs.observe.resample.reproject_map` (the rule
``infer`` uses), :func:`add_mock_domains` stores them as new domains of
the views of a dataset shard, and :func:`mock_dataset` does that for every galaxy of a
dataset (:func:`~alchemy_obs.campaign.run_campaign`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.wcs import WCS
from radio_beam import Beam

from alchemy_obs.atomic import temporary_beside
from alchemy_obs.campaign import CampaignReport, Submit, run_campaign
from alchemy_obs.config import MapsConfig, MockConfig, ObserveConfig
from alchemy_obs.observe.engine import MockObserver
from alchemy_obs.observe.imaging import ImageResult
from alchemy_obs.observe.resample import reproject_map, sky_grid
from alchemy_obs.observe.sky import (
    ContinuumModel,
    ContinuumSource,
    HISource,
    LineModel,
    SkyGrid,
    SkyPlacement,
    SpectralAxis,
    continuum_image,
    covering_band,
    hi_cube,
)
from alchemy_obs.observe.telescope import Observation
from alchemy_obs.physics import radio
from alchemy_obs.skyimage import SkyImage

__all__ = [
    "MOCK_DOMAINS",
    "HIMock",
    "ContinuumMock",
    "make_mock",
    "map_wcs",
    "placement_from_config",
    "models_from_config",
    "tapered",
    "mock_view_maps",
    "add_mock_domains",
    "mock_dataset",
    "plot_mock",
]

log = logging.getLogger(__name__)

#: Dataset domains written by the mock stage, with their units.
MOCK_DOMAINS: dict[str, u.UnitBase] = {
    "hi_mom0": u.Jy / u.beam * u.km / u.s,
    "hi_nhi": u.cm**-2,
    "continuum": u.Jy / u.beam,
}


@dataclass
class _MockObservation:
    """What the two mock types share: the sky model and what the telescope made of it.

    Attributes
    ----------
    sky : SkyImage
        Input sky in Jy per pixel (per channel).
    result : ImageResult
        Dirty, CLEAN model, residual and restored planes with beams (Jy/beam).
    observation : Observation
        The observation simulated.
    placement : SkyPlacement
        Where the galaxy was put (distances and redshift of the products).
    simulator : MockObserver
        The observer used (reusable for skies on the same grid and channels).
    """

    sky: SkyImage
    result: ImageResult
    observation: Observation
    placement: SkyPlacement
    simulator: MockObserver = field(repr=False)

    @property
    def wcs(self) -> WCS:
        """Celestial WCS of the images (the sky model's grid)."""
        return self.result.wcs.celestial

    @property
    def beam(self) -> Beam:
        """Restoring beam of the middle channel (they differ by the fractional bandwidth)."""
        return self.result.beams[len(self.result.beams) // 2]

    def plane(self, plane: str = "image", pbcor: bool = True) -> u.Quantity:
        """A plane set (Jy/beam) corrected for the primary beam: the sky's brightness.

        The interferometer sees the sky attenuated by the primary beams of its dishes; the
        written FITS images keep that (apparent) brightness, with the response beside them
        (``*_pb.fits``), while every derived map (moments, column density, the dataset's
        mock domains) is divided by it, so it describes the galaxy, as the paired maps do.
        """
        cube = getattr(self.result, plane)
        pb = self.result.primary_beam
        return cube if pb is None or not pbcor else cube / pb


@dataclass
class HIMock(_MockObservation):
    """A mock HI line observation: a cube, its moment 0 and HI column density."""

    def _channel_width_hz(self) -> float:
        f = self.result.frequencies.to_value(u.Hz)
        return abs(f[1] - f[0]) if len(f) > 1 else self.observation.channel_width.to_value(u.Hz)

    def channel_velocity_width(self) -> u.Quantity:
        """Channel width as a rest-frame velocity width, :math:`c\\,|\\Delta\\nu|/\\nu_{\\rm obs}`."""
        return radio.frequency_integral_to_velocity_integral(
            self._channel_width_hz() * u.Hz, self.placement.observed_redshift).to(u.km / u.s)

    def moment0_frequency(self, plane: str = "image", pbcor: bool = True) -> u.Quantity:
        """:math:`\\sum_c I_c |\\Delta\\nu|` of a primary-beam corrected plane set (Jy/beam
        Hz); no clipping, so the noise stays unbiased."""
        return self.plane(plane, pbcor).sum(axis=0) * self._channel_width_hz() * u.Hz

    def moment0(self, plane: str = "image", pbcor: bool = True) -> u.Quantity:
        """HI moment 0 in Jy/beam km/s of rest-frame velocity
        (:func:`~alchemy_obs.physics.radio.frequency_integral_to_velocity_integral`)."""
        z = self.placement.observed_redshift
        return radio.frequency_integral_to_velocity_integral(self.moment0_frequency(plane, pbcor), z)

    def column_density(self, plane: str = "image", pbcor: bool = True) -> u.Quantity:
        """HI column density (cm^-2) of the restored moment 0 with the restoring beam."""
        beam = self.beam
        return radio.hi_column_density_from_flux(
            self.moment0_frequency(plane, pbcor), beam.major, beam.minor,
            redshift=self.placement.observed_redshift,
        )

    def domains(self) -> dict[str, u.Quantity]:
        """The dataset domains of this mock on its own grid: ``hi_mom0`` and ``hi_nhi``."""
        return {"hi_mom0": self.moment0(), "hi_nhi": self.column_density()}


@dataclass
class ContinuumMock(_MockObservation):
    """A mock radio continuum observation: one image of the band."""

    def continuum(self, plane: str = "image") -> u.Quantity:
        """Primary-beam corrected continuum image (Jy/beam) of a plane set."""
        return self.plane(plane)[0]

    def domains(self) -> dict[str, u.Quantity]:
        """The dataset domain of this mock on its own grid: ``continuum``."""
        return {"continuum": self.continuum()}


def make_mock(
    source: HISource | ContinuumSource,
    placement: SkyPlacement,
    grid: SkyGrid,
    *,
    observe: ObserveConfig,
    spectral: SpectralAxis | None = None,
    line: LineModel = LineModel(),
    continuum: ContinuumModel = ContinuumModel(),
    kernel: str = "cubic_spline",
    simulator=None,
) -> HIMock | ContinuumMock:
    """Make a mock observation of a galaxy.

    Parameters
    ----------
    source : HISource or ContinuumSource
        Emitting particles in the view frame; an :class:`HISource` gives an HI line mock,
        a :class:`ContinuumSource` a continuum mock.
    placement : SkyPlacement
        Distance/redshift, sky position (the phase centre) and systemic motion.
    grid : SkyGrid
        Sky model grid, also the image grid.
    observe : ObserveConfig
        Telescope, track, noise, imaging and ``mode`` ("visibility": ducc0 degridding and
        Cotton-Schwab CLEAN; "fast": the image-plane mode).
    spectral : SpectralAxis
        Channels of the HI cube (required for HI).
    line : LineModel
        HI line width.
    continuum : ContinuumModel
        Continuum frequency, bandwidth and cosmic-ray diffusion.
    kernel : {"cubic_spline", "wendland_c2"}
        SPH kernel.
    simulator : MockObserver, optional
        An observer to reuse: in fast mode it keeps the PSFs and noise statistics of every
        observation set-up it has seen, so views on the same grid and channels pay for them
        once; default: ``MockObserver.from_config(observe)``.

    Returns
    -------
    HIMock or ContinuumMock
    """
    img = observe.imaging
    if img.npix is not None or img.cell_arcsec is not None:
        raise ValueError("observe.imaging.npix and cell_arcsec must be null for mocks: the mock "
                         "is imaged on its sky grid (set mock.npix instead)")
    observer = simulator if simulator is not None else MockObserver.from_config(observe)
    if isinstance(source, HISource):
        if spectral is None:
            raise ValueError("an HI mock needs a SpectralAxis (covering_band makes one that "
                             "holds the source's whole line)")
        sky = hi_cube(source, placement, grid, spectral, line, kernel)
        observation = observer.observation_for(sky)
        mock_type = HIMock
    elif isinstance(source, ContinuumSource):
        sky = continuum_image(source, placement, grid, continuum, kernel)
        # One channel as wide as the continuum band (an image has no channel spacing).
        observation = observer.observation_for(sky, channel_width=continuum.bandwidth)
        mock_type = ContinuumMock
    else:
        raise TypeError(f"source must be an HISource or a ContinuumSource, got {type(source).__name__}")
    result = observer.observe(sky, observation)
    return mock_type(sky, result, observer.last_observation, placement, observer)


def map_wcs(placement: SkyPlacement, extent_kpc, npix: int) -> WCS:
    """Celestial WCS of a physical map grid seen at ``placement``.

    Parameters
    ----------
    placement : SkyPlacement
    extent_kpc : sequence of 4 floats
        (xmin, xmax, ymin, ymax) of the map in the view frame (proper kpc); x is West, y North.
    npix : int
        Pixels per side.
    """
    xmin, xmax, ymin, ymax = (float(v) for v in extent_kpc)
    dx, dy = (xmax - xmin) / npix, (ymax - ymin) / npix
    if not np.isclose(dx, dy, rtol=1e-6):
        raise ValueError(f"map pixels must be square, got {dx} x {dy} kpc")
    # Pixel i spans x in [xmin + i dx, xmin + (i + 1) dx]; x = 0 is 1-based pixel -xmin/dx + 1/2.
    return sky_grid((placement.ra.to_value(u.deg), placement.dec.to_value(u.deg)),
                    placement.kpc_to_angle(dx * u.kpc), npix,
                    crpix=(-xmin / dx + 0.5, -ymin / dy + 0.5))


def placement_from_config(config: MockConfig, cosmology=None) -> SkyPlacement:
    """The :class:`SkyPlacement` of a :class:`~alchemy_obs.config.MockConfig`."""
    kwargs = {"ra": config.ra_deg * u.deg, "dec": config.dec_deg * u.deg}
    if cosmology is not None:
        kwargs["cosmology"] = cosmology
    if config.redshift is not None:
        return SkyPlacement(redshift=config.redshift, **kwargs)
    return SkyPlacement(distance=config.distance_mpc * u.Mpc, **kwargs)


def models_from_config(config: MockConfig) -> tuple[SpectralAxis | None, LineModel, ContinuumModel]:
    """Spectral axis, line model and continuum model of a :class:`~alchemy_obs.config.MockConfig`.

    The spectral axis is ``None`` when ``n_channels`` is unset: the band then follows each
    source (:func:`~alchemy_obs.observe.sky.covering_band`).
    """
    spectral = None
    if config.n_channels is not None:
        spectral = SpectralAxis(config.n_channels, config.channel_width_kms * u.km / u.s,
                                ctype=config.spectral_axis)
    line = LineModel(config.turbulent_sigma_kms * u.km / u.s, config.n_sigma)
    cont = ContinuumModel(config.continuum_frequency_ghz * u.GHz, config.continuum_bandwidth_mhz * u.MHz,
                          config.diffusion_kpc * u.kpc, config.electron_temperature_k * u.K,
                          config.synchrotron_index)
    return spectral, line, cont


def tapered(observe: ObserveConfig, pixel: u.Quantity, frequency: u.Quantity,
            *,
            pixels_per_beam: float | None) -> ObserveConfig:
    r"""``observe`` restricted to the dishes that give a beam of about ``pixels_per_beam`` pixels.

    The sky grid samples the uv plane only out to :math:`1/(2\,\Delta)` (the engine flags
    longer baselines), so an image of pixel :math:`\Delta` cannot hold a beam narrower than
    about two pixels; CLEAN and the beam fit need three or more. Dishes farther than
    :math:`R = \lambda / (2 n \Delta)` from the array centre are dropped (baselines up to
    :math:`2R`, beam :math:`\approx \lambda / 2R = n\Delta`), like the inner-array
    tapering of HI surveys.

    Parameters
    ----------
    observe : ObserveConfig
    pixel : Quantity
        Angular pixel size.
    frequency : Quantity
        Lowest observed frequency.
    pixels_per_beam : float or None
        ``None`` returns ``observe`` unchanged.
    """
    if pixels_per_beam is None:
        return observe
    wavelength = (const.c / frequency).to_value(u.m)
    radius_km = wavelength / (2.0 * pixels_per_beam * pixel.to_value(u.rad)) / 1e3
    current = observe.telescope.max_baseline_km
    if current is not None and current <= radius_km:
        return observe
    telescope = observe.telescope.model_copy(update={"max_baseline_km": radius_km})
    return observe.model_copy(update={"telescope": telescope})


def mock_view_maps(
    galaxy,
    rotation: np.ndarray,
    extent_kpc,
    *,
    map_npix: int,
    mock: MockConfig,
    observe: ObserveConfig,
    maps: MapsConfig | None = None,
    simulators: dict | None = None,
) -> tuple[dict[str, u.Quantity], dict[str, HIMock | ContinuumMock]]:
    """Mock domains of one view of a galaxy, reprojected onto the view's map grid.

    The sky model covers the map's field with ``mock.npix`` pixels, is observed (with the
    array tapered to ``mock.pixels_per_beam``, see :func:`tapered`) and imaged, and the
    products are reprojected onto the ``map_npix`` grid of ``extent_kpc``.

    Parameters
    ----------
    galaxy : Galaxy
    rotation : ndarray (3, 3)
        View rotation ``x' = R x``.
    extent_kpc : sequence of 4 floats
        The view's map extent.
    map_npix : int
        The view's map size.
    mock, observe : MockConfig, ObserveConfig
    maps : MapsConfig, optional
        The maps' kernel, smoothing lengths and HI model, so that mock and maps describe the
        same gas; default ``MapsConfig()``.
    simulators : dict, optional
        Cache of simulators by product, grid and channels, shared between calls (views with
        the same field reuse one fast-mode set-up).

    Returns
    -------
    maps : dict of str to Quantity
        Domain -> (map_npix, map_npix) map, see :data:`MOCK_DOMAINS`.
    mocks : dict of str to HIMock or ContinuumMock
        The mock observations ("hi", "continuum") on their own grids.
    """
    maps = MapsConfig() if maps is None else maps
    placement = placement_from_config(mock, galaxy.cosmology)
    fov = max(extent_kpc[1] - extent_kpc[0], extent_kpc[3] - extent_kpc[2])
    grid = SkyGrid(mock.npix, fov / mock.npix * u.kpc)
    spectral, line, cont = models_from_config(mock)
    target = map_wcs(placement, extent_kpc, map_npix)
    out, mocks = {}, {}
    for kind in mock.products:
        band = spectral
        if kind == "hi":
            source = HISource.from_galaxy(galaxy, rotation, gas_factor=maps.gas_hsml_factor,
                                          uvb=maps.uvb, column=maps.kmt_column)
            if band is None:
                band = covering_band(source, placement, mock.channel_width_kms * u.km / u.s,
                                     line, ctype=mock.spectral_axis)
        else:
            source = ContinuumSource.from_galaxy(galaxy, rotation, gas_factor=maps.gas_hsml_factor)
        freq = (band.frequencies(placement).min() if kind == "hi" else cont.frequency)
        obs_cfg = tapered(observe, grid.pixel_angle(placement), freq, pixels_per_beam=mock.pixels_per_beam)
        key = (kind, grid.npix, round(grid.pixel_angle(placement).to_value(u.arcsec), 9))
        sim = None if simulators is None else simulators.get(key)
        m = make_mock(source, placement, grid, observe=obs_cfg, spectral=band, line=line,
                      continuum=cont, kernel=maps.kernel, simulator=sim)
        if simulators is not None:
            simulators[key] = m.simulator
        mocks[kind] = m
        for name, image in m.domains().items():
            on_map = reproject_map(image.value, m.wcs, target, shape_out=(map_npix, map_npix)) * image.unit
            out[name] = on_map.to(MOCK_DOMAINS[name])
    return out, mocks


def add_mock_domains(shard: str | Path, galaxy, mock: MockConfig, observe: ObserveConfig,
                     maps: MapsConfig | None = None, overwrite: bool = False) -> list[str]:
    """Add the mock domains to every view of a galaxy's dataset shard.

    Reads each view's rotation and extent from the shard, makes the mocks, reprojects them
    onto the view's grid and writes them with :func:`alchemy_obs.maps.store.write_domain`
    (atomic). Domains already present are skipped unless ``overwrite``.

    Returns
    -------
    list of str
        The domains written.
    """
    from alchemy_obs.maps.store import read_shard, write_domain

    present, meta, _ = read_shard(shard)
    names = [n for kind in mock.products for n in MOCK_DOMAINS if _kind_of(n) == kind]
    todo = [n for n in names if overwrite or n not in present]
    if not todo:
        return []
    npix = next(iter(present.values())).shape[-1]
    per_view, simulators = [], {}
    for k in range(len(meta["view"])):
        view_maps, _ = mock_view_maps(galaxy, meta["rotation"][k], meta["extent_kpc"][k], map_npix=npix,
                                      mock=mock, observe=observe, maps=maps, simulators=simulators)
        per_view.append(view_maps)
    for name in todo:
        data = u.Quantity([v[name] for v in per_view])
        write_domain(shard, name, data, overwrite=name in present)
    return todo


def _mock_shard(source, *, dataset: Path, mock: MockConfig, observe: ObserveConfig,
                maps: MapsConfig, overwrite: bool) -> bool:
    from alchemy_obs.maps.store import shard_path

    return bool(add_mock_domains(shard_path(dataset, source.galaxy_id), source.load(), mock,
                                 observe, maps, overwrite=overwrite))


def mock_dataset(
    dataset: str | Path, sources: Sequence, *, mock: MockConfig, observe: ObserveConfig,
    maps: MapsConfig, overwrite: bool = False, submit: Submit | None = None,
) -> CampaignReport:
    """Add the mock domains to every shard of ``dataset`` whose galaxy is in ``sources``.

    Galaxies without a shard are left out with a warning; the shards are joined again when
    at least one galaxy succeeded.

    Parameters
    ----------
    dataset : path-like
        The map dataset folder (``alchemy-obs maps``).
    sources : sequence of GalaxySource
        The galaxies the dataset was built from.
    mock, observe, maps : MockConfig, ObserveConfig, MapsConfig
        The sky models, the observation and the maps' gas model and splits.
    overwrite : bool
        Replace mock domains already present.
    submit : callable, optional
        Runs each galaxy's step instead (a Prefect task's ``submit``, see
        :func:`~alchemy_obs.campaign.run_campaign`).

    Returns
    -------
    CampaignReport
    """
    from alchemy_obs.maps.store import join_shards, shard_path

    dataset = Path(dataset)
    present = []
    for source in sources:
        shard = shard_path(dataset, source.galaxy_id)
        if shard.exists():
            present.append(source)
        else:
            log.warning("%s: no shard %s (run alchemy-obs maps first); skipped", source.label, shard)
    step = partial(_mock_shard, dataset=dataset, mock=mock, observe=observe, maps=maps,
                   overwrite=overwrite)
    report = run_campaign(present, step, submit=submit, desc="mocks")
    if report.done:
        shards = sorted(Path(dataset, "shards").glob("galaxy_*.h5"))
        report.dataset = join_shards(shards, dataset / "dataset.h5",
                                     split_fractions=maps.split_fractions,
                                     split_seed=maps.split_seed)
    return report


def _kind_of(domain: str) -> str:
    return "hi" if domain.startswith("hi_") else "continuum"


def plot_mock(mocks: dict[str, HIMock | ContinuumMock], path: str | Path) -> Path:
    """One row per mock: sky model, dirty image, CLEAN (restored) image and residual.

    HI rows show moment 0 (the sky model in Jy/pixel km/s, the images in Jy/beam km/s);
    continuum rows the single plane. Panels have RA/Dec axes; the restoring beam is drawn in
    the dirty, CLEAN and residual panels and a kpc scale bar in the sky model. The figure is
    written atomically.

    Returns
    -------
    pathlib.Path
    """
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alchemy_obs.observe.skyplot import draw_beam, draw_scale_bar, label_sky_axes

    path = Path(path)
    fig = plt.figure(figsize=(17, 4.2 * len(mocks)))
    titles = ["sky model", "dirty image", "CLEAN image", "residual"]
    for r, (kind, m) in enumerate(mocks.items()):
        if kind == "hi":
            dv = m.channel_velocity_width().to_value(u.km / u.s)
            panels = [m.sky.data.value.sum(axis=0) * dv, m.moment0("dirty").value,
                      m.moment0("image").value, m.moment0("residual").value]
            units = ["Jy/pixel km/s"] + ["Jy/beam km/s"] * 3
        else:
            panels = [m.sky.data.value, m.result.dirty.value[0], m.result.image.value[0],
                      m.result.residual.value[0]]
            units = ["Jy/pixel"] + ["Jy/beam"] * 3
        for c, (img, title, unit) in enumerate(zip(panels, titles, units)):
            ax = fig.add_subplot(len(mocks), 4, 4 * r + c + 1, projection=m.wcs.celestial)
            lim = np.nanmax(np.abs(img)) or 1.0
            vmin = -lim if title == "residual" else min(np.nanmin(img), 0.0)
            im = ax.imshow(img, origin="lower", cmap="RdBu_r" if title == "residual" else "magma",
                           vmin=vmin, vmax=lim)
            ax.set_title(f"{'HI' if kind == 'hi' else 'continuum'}: {title}", fontsize=10)
            label_sky_axes(ax)
            ax.coords[0].set_ticks(number=3)
            if c > 0:  # one Dec axis per row: the panels share it
                ax.coords[1].set_ticklabel_visible(False)
                ax.coords[1].set_axislabel("")
            if c > 0:
                draw_beam(ax, m.beam, color="cyan" if title != "residual" else "k")
            else:
                draw_scale_bar(ax, m.placement.angular_diameter_distance)
            fig.colorbar(im, ax=ax, shrink=0.8, label=unit)
    fig.suptitle("SIMULATED SKA-MID observation (alchemy-obs mock)", fontsize=11)
    fig.subplots_adjust(wspace=0.3, hspace=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path
