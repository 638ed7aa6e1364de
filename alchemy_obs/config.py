"""Configuration: one pydantic model per section, read from YAML with dotted overrides.

Every YAML file in ``configs/`` is validated by :class:`Config`. Unknown keys are an error
that names the key and the file, because a misspelt option silently falling back to its
default is the most expensive kind of configuration bug in a long simulation campaign.

Examples
--------
>>> from alchemy_obs.config import load_config
>>> cfg = load_config(None, ["synth.n_galaxies=3"])
>>> cfg.synth.n_galaxies
3
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from alchemy_obs.errors import AlchemyObsError
from alchemy_obs.shipped import config_path

__all__ = [
    "config_fields",
    "ConfigError",
    "Section",
    "SynthConfig",
    "TNGConfig",
    "JobQueueConfig",
    "FlowsConfig",
    "MapsConfig",
    "DiMConfig",
    "NetworkConfig",
    "Pix2PixConfig",
    "DDPMConfig",
    "InDIConfig",
    "SDEConfig",
    "Pix2PixMethodConfig",
    "DDPMMethodConfig",
    "InDIMethodConfig",
    "SDEMethodConfig",
    "MethodConfig",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "InferConfig",
    "DynamicsConfig",
    "MockConfig",
    "Config",
    "load_config",
    "config_hash",
]


class ConfigError(AlchemyObsError, ValueError):
    """A configuration file or override is invalid; the message names file and key."""


class Section(BaseModel):
    """Base of every configuration section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(Section):
    """Synthetic galaxies written in the TNG cutout layout."""

    n_galaxies: int = Field(4, ge=1, description="Number of galaxies to generate.")
    n_particles: int = Field(
        20_000, ge=1_000, le=5_000_000, description="Approximate total particles per galaxy."
    )
    seed: int = Field(42, description="Seed of the random generator; galaxy i uses (seed, i).")
    out_dir: Path = Field(Path("synthetic"), description="Folder receiving cutout_<id>.hdf5.")
    merger_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="Probability that a galaxy has a merging companion."
    )


class TNGConfig(Section):
    """Access to IllustrisTNG through the web API or a local snapshot directory."""

    api_key: SecretStr | None = Field(
        None, description="TNG API key; the TNG_API_KEY environment variable takes precedence."
    )
    base_url: str = Field("https://www.tng-project.org/api", description="Root of the TNG web API.")
    simulation: str = Field("TNG50-1", description="Simulation name, e.g. TNG50-1, TNG100-1.")
    snapshot: int = Field(99, ge=0, description="Default snapshot number (99 is z=0).")
    cache_dir: Path = Field(
        Path("tng_cache"), description="Downloaded cutouts: SIM/snapshot_NNN/cutout_ID.hdf5."
    )
    timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for a connection or data.")
    retries: int = Field(5, ge=0, description="Retries after timeouts, truncations, 429, 5xx.")
    backoff_s: float = Field(
        2.0, ge=0, description="First retry delay; doubles each retry (Retry-After if longer)."
    )
    snapshot_dir: Path | None = Field(
        None, description="Local simulation output folder (snapdir_NNN, groups_NNN, offsets)."
    )

    def resolved_api_key(self) -> SecretStr | None:
        """The key to use: environment first, then the config file."""
        env = os.environ.get("TNG_API_KEY")
        return SecretStr(env) if env else self.api_key


class MapsConfig(Section):
    """Projected maps of the physical domains and the HDF5 dataset that holds them."""

    npix: int = Field(512, ge=8, le=8192, description="Pixels along each side of a map.")
    fov_hi_fraction: float = Field(
        0.99, gt=0, le=1,
        description="Fraction of the galaxy's HI mass the field holds in every view: the field "
        "half-side is at least the 3D radius enclosing this fraction of the HI mass "
        "(ignored when pixel_kpc is set).",
    )
    fov_stellar_r_half: float = Field(
        3.0, gt=0,
        description="Minimum field half-side in 3D stellar half-mass radii; sizes gas-poor "
        "galaxies (ignored when pixel_kpc is set).",
    )
    pixel_kpc: float | None = Field(
        None, gt=0,
        description="Fixed physical pixel size in kpc: every field is npix * pixel_kpc, so "
        "one trained model applies to all galaxies. None sizes each galaxy's field on its HI "
        "and stellar discs (fov_hi_fraction, fov_stellar_r_half).",
    )
    slab_kpc: float | None = Field(
        None, gt=0,
        description="Line-of-sight depth centred on the galaxy (particles selected by centre); "
        "None projects the full column.",
    )
    kernel: Literal["cubic_spline", "wendland_c2"] = Field(
        "cubic_spline", description="SPH kernel integrated over each pixel."
    )
    gas_hsml_factor: float = Field(
        2.5, gt=0,
        description="Gas kernel support radius in units of the cell radius (3m/4 pi rho)^(1/3).",
    )
    knn_neighbours: int = Field(
        64, ge=1,
        description="Neighbour rank of the dark-matter kernel radius where SubfindHsml is "
        "absent (64 matches SubfindHsml).",
    )
    star_neighbours: int = Field(
        32, ge=1,
        description="Stellar kernel radius: distance to this nearest star (SubfindHsml, a "
        "dark-matter length, is not used for stars).",
    )
    sf_temperature: Literal["effective", "cold"] = Field(
        "effective",
        description="Temperature of star-forming cells: the effective equation-of-state value "
        "or the cold phase (1e3 K).",
    )
    uvb: Literal["FG09", "HM01", "HM12"] = Field(
        "FG09", description="UV background of the Rahmati et al. (2013) self-shielding."
    )
    kmt_column: Literal["jeans", "cell"] = Field(
        "jeans", description="Column density of star-forming cells for the KMT H2 fraction."
    )
    domains: list[str] = Field(
        ["dm", "stars", "gas", "hi", "temperature", "bfield", "bfield_vw", "bfield_los", "sfr"],
        description="Domains to project (see alchemy_obs.maps.domains.DOMAINS).",
    )
    n_random_views: int = Field(
        1, ge=0, description="Views per galaxy with rotations drawn uniformly in SO(3)."
    )
    face_on: bool = Field(True, description="Add a face-on view (stellar angular momentum).")
    edge_on: bool = Field(True, description="Add an edge-on view (stellar angular momentum).")
    seed: int = Field(
        0, description="Seed of the random rotations; galaxy g draws from (seed, g)."
    )
    split_fractions: dict[str, float] = Field(
        {"train": 0.8, "val": 0.1, "test": 0.1},
        description="Fractions of galaxies (not views) in each split; they must sum to 1.",
    )
    split_seed: int = Field(0, description="Seed of the hash that assigns galaxies to splits.")
    compression: Literal["gzip", "lzf"] = Field(
        "gzip", description="Lossless HDF5 filter of the map chunks (gzip level 4 or lzf)."
    )
    out_dir: Path = Field(
        Path("maps"), description="Folder receiving shards/galaxy_<id>.h5 and dataset.h5."
    )

    @field_validator("split_fractions")
    @classmethod
    def _check_splits(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - {"train", "val", "test"}
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; use train, val, test")
        if any(f < 0 for f in value.values()) or abs(sum(value.values()) - 1.0) > 1e-9:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {value}")
        return value


class JobQueueConfig(Section):
    """A dask-jobqueue cluster on a batch system (one Dask worker per batch job)."""

    system: Literal["slurm", "pbs"] = Field("slurm", description="Batch system of the cluster.")
    jobs: int = Field(4, ge=1, description="Number of batch jobs (Dask workers) to request.")
    cores: int = Field(8, ge=1, description="Cores per job.")
    processes: int = Field(1, ge=1, description="Dask worker processes per job.")
    memory: str = Field("32GB", description="Memory per job, as the batch system writes it.")
    walltime: str = Field("02:00:00", description="Wall-clock limit per job, HH:MM:SS.")
    queue: str | None = Field(None, description="Partition (SLURM) or queue (PBS).")
    account: str | None = Field(None, description="Account (project) charged for the jobs.")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra #SBATCH/#PBS lines, e.g. ['--gres=gpu:1']."
    )
    local_directory: str | None = Field(None, description="Node-local scratch for Dask spill.")


class FlowsConfig(Section):
    """How the Prefect flows run their tasks."""

    runner: Literal["threads", "dask", "jobqueue"] = Field(
        "threads",
        description="threads: one machine; dask: a local Dask cluster or an existing scheduler; "
        "jobqueue: a SLURM/PBS cluster through dask-jobqueue.",
    )
    max_workers: int = Field(2, ge=1, description="Threads (runner=threads).")
    dask_address: str | None = Field(
        None, description="Address of a running Dask scheduler (runner=dask); None starts one."
    )
    dask_workers: int = Field(2, ge=1, description="Workers of a local Dask cluster.")
    dask_threads_per_worker: int = Field(1, ge=1, description="Threads of each local Dask worker.")
    jobqueue: JobQueueConfig = JobQueueConfig()
    retries: int = Field(3, ge=0, description="Retries of network tasks (TNG downloads).")
    retry_backoff_s: float = Field(10.0, ge=0, description="First retry delay; doubles each time.")


class DiMConfig(Section):
    """Diffusion Mamba (Teng et al. 2024): Mamba blocks over patches, four scan orders."""

    patch_size: int = Field(4, ge=1, description="Side of the square patches (tokens).")
    dim: int = Field(64, ge=8, description="Token width.")
    depth: int = Field(6, ge=1, description="Mamba blocks (depth // 2 long skips).")
    d_state: int = Field(16, ge=1, description="S6 state size N per channel.")
    expand: int = Field(2, ge=1, description="S6 inner width / token width.")
    d_conv: int = Field(4, ge=1, description="Kernel of the causal depthwise convolution.")
    scan_backend: Literal["auto", "sequential", "parallel"] = Field(
        "auto", description="Selective-scan backend; auto picks by device and length."
    )
    scan_chunk: int | None = Field(
        None, ge=1, description="Chunk length of the parallel scan; None: automatic."
    )


class NetworkConfig(Section):
    """The network of every translator (generator or denoiser): attention U-Net or DiM.

    The U-Net fields apply to ``kind: unet``; ``dim`` holds the DiM settings.
    """

    kind: Literal["unet", "dim"] = Field("unet", description="Network: attention U-Net or DiM.")
    dim: DiMConfig = DiMConfig()
    base_channels: int = Field(32, ge=4, description="Channels of the first level.")
    channel_mults: list[int] = Field(
        [1, 2, 4], min_length=1, description="Width of each level as a multiple of base_channels."
    )
    num_res_blocks: int = Field(1, ge=1, description="Residual blocks per level and direction.")
    attention_levels: list[int] = Field(
        [2], description="Levels (0 = full resolution) with spatial self-attention."
    )
    attention_heads: int = Field(4, ge=1, description="Heads of each self-attention layer.")
    attention_gates: bool = Field(True, description="Attention gates on skips (Oktay+2018).")
    groups: int = Field(8, ge=1, description="Groups of every GroupNorm.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout inside residual blocks.")


class Pix2PixConfig(Section):
    """pix2pix (Isola et al. 2017): conditional GAN with an L1 term."""

    l1_weight: float = Field(100.0, ge=0, description="lambda of the L1 term.")
    disc_channels: int = Field(64, ge=4, description="Channels of the first PatchGAN layer.")
    disc_layers: int = Field(
        3, ge=1, description="Stride-2 layers of the PatchGAN; 3 gives a 70x70 receptive field."
    )


class DDPMConfig(Section):
    """Denoising diffusion (Ho et al. 2020) conditioned by channel concatenation."""

    timesteps: int = Field(1000, ge=2, description="Diffusion steps T.")
    schedule: Literal["linear", "cosine"] = Field("cosine", description="Noise schedule.")
    sampler: Literal["ddpm", "ddim"] = Field("ddim", description="Default sampler.")
    sample_steps: int = Field(50, ge=1, description="Default DDIM steps (ddpm uses T).")
    eta: float = Field(0.0, ge=0.0, description="DDIM stochasticity (0 = deterministic).")
    prediction: Literal["v", "eps"] = Field(
        "v",
        description="What the network predicts: the velocity v = sqrt(abar) eps - "
        "sqrt(1 - abar) x0 (Salimans and Ho 2022), from which the samplers derive eps, or "
        "eps itself (Ho et al. 2020). See docs/training.rst for why v is the default.",
    )
    snr_weight_cap: float | None = Field(
        None, ge=1,
        description="prediction eps only: weight the noise error by min(max(1/SNR, 1), cap), "
        "the clean-map error at high noise, truncated (Salimans and Ho 2022); None: the "
        "plain epsilon loss.",
    )
    clip_x0: float | None = Field(
        5.0, gt=0,
        description="While sampling, clamp the estimate of the clean map to [-c, c] "
        "(normalised units); None: no clamping.",
    )

    @model_validator(mode="after")
    def _weighting_needs_eps(self) -> DDPMConfig:
        if self.snr_weight_cap is not None and self.prediction != "eps":
            raise ValueError("ddpm.snr_weight_cap weights the epsilon loss: it needs "
                             "ddpm.prediction = 'eps'")
        return self


class InDIConfig(Section):
    """Inversion by Direct Iteration (Delbracio and Milanfar 2023)."""

    noise: float = Field(0.0, ge=0.0, description="sigma of the optional noise t*sigma*eps.")
    sample_steps: int = Field(10, ge=1, description="Default number of sampling steps.")
    start_channel: int = Field(
        0, ge=0, description="Input channel used as the degraded start y (target has 1 channel)."
    )
    condition_on_start: bool = Field(
        False,
        description="Also give the network the start point y. It then inverts x_t = (1 - t) "
        "x + t y exactly, so training refuses it; it is set on the cards of models trained "
        "before this field existed, which load with their old behaviour.",
    )


class SDEConfig(Section):
    """Score-based diffusion through an SDE (Song et al. 2021)."""

    sde: Literal["vp", "ve"] = Field("vp", description="Variance preserving or exploding.")
    beta_min: float = Field(0.1, gt=0, description="VP: beta(0).")
    beta_max: float = Field(20.0, gt=0, description="VP: beta(1).")
    sigma_min: float = Field(0.01, gt=0, description="VE: sigma(0) (normalised units).")
    sigma_max: float = Field(
        50.0, gt=0, description="VE: sigma(1); about the largest distance between maps."
    )
    t_min: float = Field(1e-3, gt=0, lt=1, description="Smallest time used in training and sampling.")
    sampler: Literal["pc", "em", "ode"] = Field(
        "pc", description="Predictor-corrector, Euler-Maruyama only, or probability-flow ODE."
    )
    sample_steps: int = Field(100, ge=1, description="Default predictor steps.")
    snr: float = Field(
        0.1, gt=0,
        description="Signal-to-noise ratio of the Langevin corrector (inflates variances by ~snr^2).",
    )
    corrector_steps: int = Field(1, ge=0, description="Langevin steps per predictor step.")
    prediction: Literal["edm", "noise"] = Field(
        "edm",
        description="What the network predicts: the clean map with the preconditioning of "
        "Karras et al. (2022) and a loss of unit scale at every noise level, from which the "
        "score is derived, or the noise z (score = -z / s). See docs/score_sde.rst.",
    )
    sigma_data: float = Field(
        1.0, gt=0, description="edm: standard deviation of the normalised target maps."
    )
    snr_weight_cap: float | None = Field(
        None, ge=1,
        description="prediction noise only: weight the noise error by min(max(s^2/m^2, 1), "
        "cap), the clean-map error at high noise, truncated (Salimans and Ho 2022); None: "
        "plain score matching.",
    )
    denoise: bool = Field(
        True, description="End with one Tweedie step x0 = (x + s^2 score) / m at t_min "
        "(Song's noise removal)."
    )
    probe: Literal["rademacher", "gaussian"] = Field(
        "rademacher", description="Hutchinson probe of the likelihood's divergence."
    )
    rtol: float = Field(1e-5, gt=0, description="Relative tolerance of the likelihood ODE (RK45).")
    atol: float = Field(1e-5, gt=0, description="Absolute tolerance of the likelihood ODE (RK45).")

    @model_validator(mode="after")
    def _weighting_needs_noise(self) -> SDEConfig:
        if self.snr_weight_cap is not None and self.prediction != "noise":
            raise ValueError("sde.snr_weight_cap weights the noise loss: it needs "
                             "sde.prediction = 'noise'")
        return self


_METHOD_NAME = "Translator method: pix2pix, ddpm, indi or sde; its settings are the section so named."
_METHOD_SETTINGS: dict[str, type[Section]] = {
    "pix2pix": Pix2PixConfig, "ddpm": DDPMConfig, "indi": InDIConfig, "sde": SDEConfig,
}


class _MethodSection(Section):
    """Base of the ``train.method`` sections: a method name and that method's settings."""

    #: Network kinds the method can train.
    networks: ClassVar[tuple[str, ...]] = ("unet", "dim")

    @model_validator(mode="before")
    @classmethod
    def _drop_other_methods(cls, data: Any) -> Any:
        # A file may hold every method's settings (configs/pipeline.yaml does) so that
        # ``--set train.method.name=...`` switches; the unused ones are checked, not kept.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        own = cls.model_fields["name"].default
        for name, section in _METHOD_SETTINGS.items():
            if name != own and name in data:
                try:
                    section.model_validate(data.pop(name))
                except ValidationError as exc:
                    raise ValueError("; ".join(
                        f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                    )) from None
        return data

    @property
    def settings(self) -> Section:
        """The settings section of the method named by ``name``."""
        return getattr(self, self.name)


class Pix2PixMethodConfig(_MethodSection):
    """``train.method`` of pix2pix: the name and the pix2pix settings."""

    # The generator is built without a time embedding, which only the U-Net is tested without.
    networks: ClassVar[tuple[str, ...]] = ("unet",)
    name: Literal["pix2pix"] = Field("pix2pix", description=_METHOD_NAME)
    pix2pix: Pix2PixConfig = Pix2PixConfig()


class DDPMMethodConfig(_MethodSection):
    """``train.method`` of DDPM: the name and the DDPM settings."""

    name: Literal["ddpm"] = Field("ddpm", description=_METHOD_NAME)
    ddpm: DDPMConfig = DDPMConfig()


class InDIMethodConfig(_MethodSection):
    """``train.method`` of InDI: the name and the InDI settings."""

    name: Literal["indi"] = Field("indi", description=_METHOD_NAME)
    indi: InDIConfig = InDIConfig()


class SDEMethodConfig(_MethodSection):
    """``train.method`` of the score SDE: the name and the SDE settings."""

    name: Literal["sde"] = Field("sde", description=_METHOD_NAME)
    sde: SDEConfig = SDEConfig()


def _method_name(value: Any) -> str | None:
    # A method section without a name is the default method's, as before the union.
    if isinstance(value, dict):
        return value.get("name", "ddpm")
    return getattr(value, "name", None)


#: Which translator to train and its settings, one section type per method, chosen by
#: ``name``: the settings of another method are unknown keys, not silently ignored ones.
MethodConfig = Annotated[
    Union[
        Annotated[Pix2PixMethodConfig, Tag("pix2pix")],
        Annotated[DDPMMethodConfig, Tag("ddpm")],
        Annotated[InDIMethodConfig, Tag("indi")],
        Annotated[SDEMethodConfig, Tag("sde")],
    ],
    Discriminator(_method_name),
]


class DataConfig(Section):
    """Paired maps read from the HDF5 dataset."""

    store: Path = Field(Path("maps/dataset.h5"), description="Dataset written by alchemy-obs maps.")
    inputs: list[str] = Field(["gas"], min_length=1, description="Input (condition) domains.")
    target: str = Field("dm", description="Target domain.")
    augment: bool = Field(True, description="Random flips and 90-degree rotations.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    fit_maps: int = Field(256, ge=1, description="Training maps used to fit normalisation.")


class OptimConfig(Section):
    """Optimiser, learning-rate schedule, EMA and clipping."""

    lr: float = Field(2e-4, gt=0, description="Peak learning rate (Adam).")
    betas: tuple[float, float] | None = Field(
        None, description="Adam betas; None uses the method's default ((0.5, 0.999) for pix2pix)."
    )
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty of Adam (added to the gradient, not decoupled as in AdamW).")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Decay after warm-up.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final lr / peak lr (cosine).")
    grad_clip: float | None = Field(1.0, gt=0, description="Max global gradient norm; None: off.")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the sampling weights.")


class TrainConfig(Section):
    """One training run of a translator (``alchemy-obs train``)."""

    data: DataConfig = DataConfig()
    network: NetworkConfig = NetworkConfig()
    method: MethodConfig = DDPMMethodConfig()
    optim: OptimConfig = OptimConfig()
    batch_size: int = Field(16, ge=1, description="Batch size per process.")
    steps: int = Field(10_000, ge=1, description="Optimiser steps in total.")
    checkpoint_every: int = Field(1000, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Step checkpoints kept on disk.")
    log_every: int = Field(10, ge=1, description="Steps between rows of metrics.csv.")
    out_dir: Path = Field(Path("runs/translator"), description="Run folder (checkpoints, logs).")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    channels_last: bool = Field(True, description="channels-last memory format on CUDA.")
    eval_maps: int = Field(16, ge=0, description="Validation maps scored at the end of training.")

    @model_validator(mode="after")
    def _method_trains_network(self) -> TrainConfig:
        if self.network.kind not in self.method.networks:
            raise ValueError(
                f"method {self.method.name!r} cannot train network.kind {self.network.kind!r}; "
                f"it trains {', '.join(self.method.networks)}"
            )
        return self


#: T_sys/eta_A (K) of the dish types against frequency (GHz), from the model of Braun et al.
#: (2019, arXiv:1912.12699): receiver, spillover, median Galactic (T_408 = 25.2 K, index
#: 2.75), CMB and 1.3 K atmosphere over feed, surface and diffraction efficiencies (see
#: docs/observing.rst; tests/test_telescope.py recomputes them). MeerKAT's UHF receiver
#: starts at 0.58 GHz and its L-band receiver stops at 1.712 GHz.
_TSYS_OVER_ETA_K = {
    "ska": {
        "1": [(0.35, 99.5), (0.38, 82.9), (0.42, 67.7), (0.46, 57.5), (0.5, 50.2), (0.55, 43.8),
              (0.6, 39.3), (0.65, 36.0), (0.7, 33.7), (0.8, 30.9), (0.9, 29.8), (1.05, 30.6)],
        "2": [(0.95, 19.7), (1.05, 18.8), (1.2, 18.0), (1.4, 17.4), (1.6, 17.1), (1.76, 16.9)],
    },
    "meerkat": {
        "1": [(0.58, 42.6), (0.62, 39.2), (0.66, 36.5), (0.7, 34.4), (0.8, 30.5), (0.9, 27.8),
              (1.05, 25.1)],
        "2": [(0.95, 29.6), (1.05, 27.4), (1.2, 25.0), (1.4, 22.6), (1.6, 21.2), (1.712, 21.0)],
    },
}


class DishConfig(Section):
    """One dish type: aperture and system temperature over aperture efficiency per band."""

    diameter_m: float = Field(..., gt=0, description="Geometric dish diameter (m).")
    tsys_over_eta_k: dict[str, float | list[tuple[float, float]]] = Field(
        ...,
        description="T_sys/eta_A (K) per SKA-MID band name ('1', '2'): one value for the band, "
        "or [frequency (GHz), K] nodes in increasing frequency, interpolated linearly; "
        "frequencies outside the nodes have no receiver. SEFD = 2k(T/eta)/A.",
    )

    @field_validator("tsys_over_eta_k")
    @classmethod
    def _nodes_increase(cls, value: dict) -> dict:
        for band, entry in value.items():
            if isinstance(entry, list):
                freqs = [f for f, _ in entry]
                if len(entry) < 2 or any(b <= a for a, b in zip(freqs, freqs[1:])):
                    raise ValueError(f"band {band!r}: give at least two [GHz, K] nodes in "
                                     "increasing frequency")
                if any(f <= 0 or t <= 0 for f, t in entry):
                    raise ValueError(f"band {band!r}: frequencies and T_sys/eta must be positive")
            elif entry <= 0:
                raise ValueError(f"band {band!r}: T_sys/eta must be positive, got {entry}")
        return value


class TelescopeConfig(Section):
    """The interferometer: SKA-MID sub-array, dish types and site."""

    array: Literal["AA0.5", "AA1", "AA2", "AA*", "AA4"] = Field(
        "AA*", description="SKA-MID staged-delivery array (ska-ost-array-config 2.3.1)."
    )
    layout: Path | None = Field(
        None, description="Own layout table (format of alchemy_obs/data/ska_mid_layout.txt)."
    )
    max_baseline_km: float | None = Field(
        None, gt=0, description="Drop dishes farther than this from the array centre (km)."
    )
    dishes: dict[str, DishConfig] = Field(
        {
            "ska": DishConfig(diameter_m=15.0, tsys_over_eta_k=_TSYS_OVER_ETA_K["ska"]),
            "meerkat": DishConfig(diameter_m=13.5, tsys_over_eta_k=_TSYS_OVER_ETA_K["meerkat"]),
        },
        description="Dish types named in the layout's type column.",
    )
    beam_fwhm_factor: float = Field(
        1.2, gt=0, description="Gaussian primary beam FWHM = factor * lambda / D."
    )
    longitude_deg: float = Field(21.443803, description="Array reference longitude (deg E).")
    latitude_deg: float = Field(-30.712925, description="Array reference latitude (deg).")
    height_m: float = Field(1053.0, description="Array reference height above WGS84 (m).")


class ImagingConfig(Section):
    """Weighting, image grid and CLEAN of the built-in imager."""

    weighting: Literal["natural", "uniform", "briggs"] = Field(
        "briggs", description="uv weighting of the visibilities (briggs uses robust).")
    robust: float = Field(0.0, ge=-2.0, le=2.0, description="Briggs robust parameter.")
    npix: int | None = Field(None, ge=32, description="Image side (even); None = sky grid.")
    cell_arcsec: float | None = Field(None, gt=0, description="Pixel size; None = sky grid.")
    niter: int = Field(100_000, ge=0, description="Maximum CLEAN components per channel.")
    gain: float = Field(
        0.3, gt=0, le=1,
        description="Loop gain (0.3 halves the multi-scale CLEAN's time against 0.1 at the same "
        "flux).",
    )
    threshold_sigma: float = Field(
        1.0, ge=0,
        description="Deep CLEAN inside the mask down to this multiple of the thermal noise "
        "(WSClean's -auto-threshold).",
    )
    auto_mask_sigma: float | None = Field(
        5.0, gt=0,
        description="First CLEAN everywhere down to this multiple of the thermal noise; the "
        "components found, grown by a beam, are the mask of the deep CLEAN (WSClean's "
        "-auto-mask). 5 keeps an empty field's noise peaks (4.3 sigma in 256^2 pixels) "
        "out of the model. null: no mask.",
    )
    floor: float = Field(
        3e-4, ge=0, lt=1,
        description="Also stop at this fraction of each channel's dirty peak: the only stop "
        "of a noiseless mock, deep enough that the restored image keeps the flux.",
    )
    major_cycles: int = Field(20, ge=1, description="Maximum Cotton-Schwab major cycles.")
    mgain: float = Field(
        0.9, gt=0, le=1, description="A major cycle ends when the peak fell by this fraction "
        "(the minor cycles subtract the exact PSF, so 0.9 needs 4 major cycles where 0.8 "
        "needed 7, for the same flux).",
    )
    jvm: bool = Field(
        False,
        description="Rescale the residual by the Jorsater-van Moorsel epsilon (and NOISERMS "
        "with it); off, the residual stays in Jy per dirty beam (Czekala et al. 2021).",
    )
    epsilon: float = Field(1e-6, gt=0, description="ducc0 wgridder accuracy.")
    threads: int = Field(
        0, ge=0, description="ducc0 gridding threads; 0: all cores. Set 1 when several "
        "mocks run side by side (flows with more than one worker).",
    )
    imager: Literal["builtin", "wsclean"] = Field(
        "builtin", description="builtin (ducc0 gridding, Hogbom CLEAN) or WSClean on a MeasurementSet.")


class ObserveConfig(Section):
    """A mock observation: telescope, track, correlator, noise and imaging."""

    telescope: TelescopeConfig = TelescopeConfig()
    imaging: ImagingConfig = ImagingConfig()
    band: Literal["1", "2"] = Field("2", description="SKA-MID receiver band.")
    hour_angle_start_h: float = Field(-1.0, ge=-12, le=12, description="Start hour angle (h).")
    hour_angle_end_h: float = Field(1.0, ge=-12, le=12, description="End hour angle (h).")
    start_utc: str | None = Field(
        None, description="UTC start (ISOT); overrides the hour angles (duration kept)."
    )
    dump_s: float = Field(300.0, gt=0, description="Correlator dump (integration) time (s).")
    freq_start_hz: float = Field(1.4e9, gt=0, description="Centre of the first channel (Hz).")
    channel_width_hz: float = Field(1.0e6, gt=0, description="Channel width (Hz).")
    n_channels: int = Field(1, ge=1, description="Number of channels.")
    n_pol: int = Field(2, ge=1, le=2, description="Polarisation products averaged into Stokes I.")
    noise: bool = Field(True, description="Add thermal noise from the radiometer equation.")
    mode: Literal["visibility", "fast"] = Field(
        "visibility", description="Full visibility path or the fast image-plane mode."
    )
    backend: Literal["builtin", "karabo"] = Field(
        "builtin", description="Visibility simulator: builtin (ducc0) or Karabo (conda only).")
    seed: int = Field(0, description="Seed of the noise generator.")

    @field_validator("start_utc", mode="before")
    @classmethod
    def _iso_start(cls, value):
        # YAML reads an unquoted 2028-03-01T20:00:00 as a datetime.
        return value.isoformat() if hasattr(value, "isoformat") else value


class InferConfig(Section):
    """Inference on real FITS cubes and images (``alchemy-obs infer``)."""

    model: str | None = Field(
        None, description="Default model: a name in the registry or a model folder."
    )
    registry: Path | None = Field(
        None, description="Model registry file; None: the installed package's "
        "(models/registry.yaml of the package, or $ALCHEMY_OBS_MODELS/registry.yaml).")
    out_dir: Path = Field(Path("inferred"), description="Folder receiving <input>_<target>.fits.")
    samples: int = Field(1, ge=1, description="Posterior samples (diffusion models).")
    steps: int | None = Field(None, ge=1, description="Sampler steps; None: the method's default.")
    mask_sigma: float | None = Field(
        4.0, gt=0,
        description="Moment-0 noise mask: keep emission detected above this many sigma in the "
        "cube smoothed by mask_smooth_beams beams and 3 channels (grown by one beam and one "
        "channel; original voxels summed). None (--no-mask): sum every unblanked voxel.",
    )
    mask_smooth_beams: float = Field(
        2.0, gt=0, description="FWHM of the moment-0 mask's spatial smoothing, in beams."
    )
    centre: Literal["flux", "header"] = Field(
        "flux", description="Model grid centre: flux-weighted centre or the WCS reference (CRVAL)."
    )
    beam_tolerance: float = Field(
        1.5, ge=1.0,
        description="Beam matching: an input beam finer than the model's training beam (kpc at "
        "the galaxy) is smoothed to it; one coarser by up to this factor (geometric-mean FWHM) "
        "is used as it is, a coarser one refused.",
    )
    coverage: Literal["emission", "centre"] = Field(
        "emission",
        description="Region predicted: emission (as many overlapping model fields as the "
        "masked moment-0 emission needs, each at the model's pixel scale, blended by sin^2 "
        "windows normalised by their sum) or centre (the central field only).",
    )
    tile_overlap: float = Field(
        0.5, ge=0.0, lt=1.0,
        description="Overlap of neighbouring model fields when coverage is emission, as a "
        "fraction of a field (0.5: half a field, where the windows sum to exactly one; 0: "
        "abutting fields, with seams).",
    )
    overwrite: bool = Field(False, description="Replace existing outputs.")


class DynamicsConfig(Section):
    """The check of a predicted dark-matter map against a rotation curve
    (``alchemy-obs dynamics-check``); the line-of-sight depth is ``maps.slab_kpc``."""

    ml_disk: float = Field(
        0.5, ge=0, description="Nominal stellar mass-to-light ratio of the disc (Msun/Lsun, "
        "3.6 um for SPARC mass models; Lelli et al. 2016).",
    )
    ml_disk_range: tuple[float, float] = Field(
        (0.3, 0.7), description="Ends of the disc mass-to-light range (Msun/Lsun); every halo "
        "is refitted at both, which gives the band of the dynamical mass.",
    )
    ml_bulge: float = Field(
        0.7, ge=0, description="Stellar mass-to-light ratio of the bulge (Msun/Lsun, 3.6 um).")
    haloes: list[Literal["nfw", "burkert", "iso"]] = Field(
        ["nfw", "burkert"], min_length=1,
        description="Haloes fitted to the rotation curve: NFW (cusp) and the cored Burkert "
        "and pseudo-isothermal (iso) profiles.",
    )
    centre: str = Field(
        "model", description="Galaxy centre on the map: model (the translator's grid centre, "
        "CENLON/CENLAT of an infer output), flux (mass-weighted), header (CRVAL) or "
        "'LON,LAT' in degrees.",
    )
    out_dir: Path = Field(
        Path("dynamics"), description="Folder receiving <map>_dynamics.ecsv and .png.")

    @field_validator("ml_disk_range")
    @classmethod
    def _check_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError(f"need 0 <= low <= high, got {list(value)}")
        return value


class MockConfig(Section):
    """Sky models of a galaxy (HI cube, radio continuum) and the mock-observation products."""

    distance_mpc: float = Field(
        20.0, gt=0, description="Luminosity distance of the galaxy (Mpc); ignored if redshift is set."
    )
    redshift: float | None = Field(
        None, gt=0, description="Cosmological redshift of the galaxy (overrides distance_mpc)."
    )
    ra_deg: float = Field(150.0, ge=0, lt=360, description="Right ascension of the galaxy (deg).")
    dec_deg: float = Field(-30.0, ge=-90, le=90, description="Declination of the galaxy (deg).")
    npix: int = Field(
        128, ge=16, le=4096,
        description="Pixels per side of the sky model and mock image (field: the maps' field).",
    )
    n_channels: int | None = Field(
        None, ge=1,
        description="Channels of the HI cube. null: as many as hold every particle's line "
        "(centred on systemic, a multiple of 16); a fixed number that cuts off part of the "
        "line warns with the fraction of the flux lost.",
    )
    channel_width_kms: float = Field(
        5.0, gt=0, description="HI channel width in radio velocity (km/s), nu0 dv / c in Hz."
    )
    spectral_axis: Literal["FREQ", "VRAD"] = Field(
        "FREQ", description="Spectral WCS axis of the sky cube."
    )
    turbulent_sigma_kms: float = Field(
        0.0, ge=0, description="Non-thermal line width added in quadrature to sqrt(kT/m_H)."
    )
    n_sigma: float = Field(4.0, gt=0, description="Channels beyond this many sigma are untouched.")
    continuum_frequency_ghz: float = Field(
        1.4, gt=0, description="Observed frequency of the continuum image (GHz)."
    )
    continuum_bandwidth_mhz: float = Field(
        100.0, gt=0, description="Continuum bandwidth (MHz), one channel for the radiometer noise."
    )
    diffusion_kpc: float = Field(
        0.3, ge=0,
        description="Cosmic-ray diffusion length: Gaussian sigma (kpc) of the synchrotron "
        "(a few hundred pc, Murphy et al. 2006, 2008).",
    )
    electron_temperature_k: float = Field(1e4, gt=0, description="HII-region T_e (free-free).")
    synchrotron_index: float = Field(-0.8, description="Synchrotron spectral index alpha.")
    products: list[Literal["hi", "continuum"]] = Field(
        ["hi", "continuum"], min_length=1, description="Mock observations to make."
    )
    pixels_per_beam: float | None = Field(
        3.0, gt=0,
        description="Keep dishes within lambda / (2 * this * pixel) of the array centre so the "
        "beam spans about this many pixels (unless telescope.max_baseline_km is smaller); "
        "null observes with the whole array.",
    )
    out_dir: Path = Field(Path("mocks"), description="Folder receiving the FITS files.")


class Config(Section):
    """The whole pipeline configuration; each stage reads its own section."""

    synth: SynthConfig = SynthConfig()
    tng: TNGConfig = TNGConfig()
    flows: FlowsConfig = FlowsConfig()
    maps: MapsConfig = MapsConfig()
    train: TrainConfig = TrainConfig()
    observe: ObserveConfig = ObserveConfig()
    mock: MockConfig = MockConfig()
    infer: InferConfig = InferConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device; auto is cuda when available, else cpu.")
    seed: int = Field(0, description="Seed of training, sampling and noise draws of a run.")


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _variants(annotation: Any) -> dict[str, type[BaseModel]]:
    """Tag -> section of a tagged union of sections (:data:`MethodConfig`); else empty."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is not Union:
        return {}
    variants = {}
    for member in get_args(annotation):
        if get_origin(member) is Annotated:
            cls, *meta = get_args(member)
            variants.update({m.tag: cls for m in meta if isinstance(m, Tag)})
    return variants


def _key_and_section(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """The dotted key of an error location and the section that declares its last part.

    Pydantic puts the tag of a union member into the location (``train.method.ddpm.ddpm``);
    the key a user writes has no such part, so it is left out.
    """
    model: type[BaseModel] | None = Config
    owner = None
    parts: list[str] = []
    items = [str(p) for p in loc]
    while items:
        part = items.pop(0)
        parts.append(part)
        owner = model
        field = model.model_fields.get(part) if model is not None else None
        annotation = None if field is None else field.annotation
        variants = _variants(annotation)
        if variants and items and items[0] in variants:
            model = variants[items.pop(0)]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            model = None
    return ".".join(parts), owner


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key, owner = _key_and_section(e["loc"])
        if e["type"] == "extra_forbidden":
            siblings = list(owner.model_fields) if owner is not None else []
            close = difflib.get_close_matches(key.rsplit(".", 1)[-1], siblings, n=1)
            parent = key.split(".")[:-1]
            hint = f" (did you mean {'.'.join([*parent, close[0]])!r}?)" if close else ""
            lines.append(f"{source}: unknown key {key!r}{hint}")
        elif e["type"] == "union_tag_invalid":
            lines.append(f"{source}: {key}.name: {e['ctx']['tag']!r} is not one of "
                         f"{e['ctx']['expected_tags']}")
        elif e["type"] == "list_type" and isinstance(e.get("input"), str):
            lines.append(f"{source}: {key}: {e['msg']}; write a list as "
                         f"[{e['input'].strip('[]')}]")
        else:
            lines.append(f"{source}: {key}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML configuration and apply ``key.sub=value`` overrides.

    Parameters
    ----------
    path : path-like or None
        YAML file; ``None`` uses the built-in defaults. ``configs/<name>`` missing from the
        working directory names a shipped configuration (:func:`alchemy_obs.shipped.config_path`).
    overrides : list of str
        Dotted assignments such as ``"maps.npix=256"``; values are parsed as YAML scalars.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If the file is missing or not a mapping, or a key is unknown or invalid. The message
        names the file (or ``--set`` for overrides) and the key.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = config_path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read configuration ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: top level must be a mapping of sections")
        tree = loaded
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. maps.npix=256")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        # Secrets given with --set must not be echoed back into terminals and CI logs.
        shown = [o.split("=", 1)[0] + "=***" if "api_key" in o.split("=", 1)[0] else o
                 for o in overrides or []]
        where = source if not overrides else f"{source} (with --set {' '.join(shown)})"
        raise ConfigError(_describe(exc, where)) from None


def config_hash(*sections: BaseModel) -> str:
    """A short stable hash of configuration sections, for provenance and caching.

    Secrets serialise masked (``SecretStr``), so the hash and the dump can go into files.
    """
    dumps = [section.model_dump(mode="json") for section in sections]
    data = dumps[0] if len(dumps) == 1 else dumps
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _section_type(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The section class inside a field's type, and the key part it adds (``""`` or ``.<name>``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    if get_origin(annotation) is dict:
        args = get_args(annotation)
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            return args[1], ".<name>"
    return None, ""


def config_fields(model: type[BaseModel] = Config, prefix: str = ""):
    """Every leaf setting of ``model``, depth first, in declaration order.

    The members of a tagged union (``train.method``) contribute their own sections; the
    tag field they share (``name``) is listed once, with every allowed value.

    Yields
    ------
    key : str
        Dotted key as written with ``--set`` (``<name>`` stands for a mapping's keys).
    field : pydantic.fields.FieldInfo
        Its default, constraints and description.
    section : type
        The section class that declares it.
    """
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        variants = _variants(field.annotation)
        if variants:
            default = field.default
            tag = FieldInfo(
                annotation=Literal[tuple(variants)], default=default.name,
                description=type(default).model_fields["name"].description,
            )
            yield f"{key}.name", tag, type(default)
            for cls in variants.values():
                for sub, sub_field, section in config_fields(cls, f"{key}."):
                    if sub != f"{key}.name":
                        yield sub, sub_field, section
            continue
        section, part = _section_type(field.annotation)
        if section is not None:
            yield from config_fields(section, f"{key}{part}.")
        else:
            yield key, field, model
