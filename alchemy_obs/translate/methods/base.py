"""The interface every translator method implements, and that the trainer relies on.

A method is an ``nn.Module`` that owns its networks (in :attr:`Method.nets`) and any fixed
tensors of its process (noise schedules, as non-persistent buffers), so ``method.to(device)``
moves everything once and ``train()``/``eval()`` reach every network. It knows how to turn a
batch into a loss and a condition into a sample. The trainer knows nothing else: it asks for
:meth:`Method.phases` (one ``(optimiser name, loss function)`` pair per optimisation step,
two for a GAN), :meth:`Method.configure_optimizers`, and which networks are averaged by EMA
and used for sampling (:attr:`Method.sample_networks`).

Batches are dicts of tensors: ``"input"`` ``(B, C_in, H, W)`` (the observation, normalised)
and ``"target"`` ``(B, C_t, H, W)`` (the domain to predict, normalised).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from alchemy_obs.config import NetworkConfig, OptimConfig, Section

__all__ = ["Method", "Batch", "SampleCallback", "randn"]

Batch = dict[str, Tensor]
#: ``callback(t, x_t, x0_estimate)`` called by samplers after each step (t in [0, 1]).
SampleCallback = Callable[[float, Tensor, Tensor], None]


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise drawn from ``generator`` (on its own device), moved to ``device``."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class Method(nn.Module, ABC):
    """Base class of the translators.

    Parameters
    ----------
    nets : dict of str to nn.Module
        The networks, by role (``"net"`` for diffusion, ``"gen"``/``"disc"`` for pix2pix).
    in_channels, out_channels : int
        Channels of the condition and of the target.

    Subclasses take their networks and settings as arguments; :meth:`from_config` builds
    both from the training configuration, so configuration objects stop at that edge.
    """

    name: ClassVar[str]
    #: Networks used by :meth:`sample`; the trainer keeps an EMA copy of these.
    sample_networks: ClassVar[tuple[str, ...]] = ("net",)
    #: Adam betas used when the optimiser configuration leaves them unset.
    default_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    @property
    def stochastic(self) -> bool:
        """Whether :meth:`sample` draws from a distribution (repeated samples differ)."""
        return True

    def __init__(self, nets: dict[str, nn.Module], *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets)
        self.in_channels = in_channels
        self.out_channels = out_channels
        # A plain dict, not a ModuleDict: the DDP wrappers hold the same parameters, which
        # must not be registered (and counted, moved or saved) twice.
        self._wrapped: dict[str, nn.Module] = {}

    @classmethod
    @abstractmethod
    def from_config(
        cls, settings: Section, network: NetworkConfig, *, in_channels: int, out_channels: int
    ) -> Method:
        """Build the method and its freshly initialised networks.

        Parameters
        ----------
        settings : Section
            The method's own settings (``train.method.<name>``).
        network : NetworkConfig
            The network section (``train.network``).
        in_channels, out_channels : int
            Channels of the condition and of the target.
        """

    def net(self, name: str) -> nn.Module:
        """The network used in computations: its DDP wrapper when training distributed."""
        return self._wrapped.get(name, self.nets[name])

    def wrap(self, fn: Callable[[nn.Module], nn.Module]) -> None:
        """Route computations through ``fn(net)`` (e.g. ``DistributedDataParallel``)."""
        self._wrapped = {k: fn(v) for k, v in self.nets.items()}

    @property
    def device(self) -> torch.device:
        """The device of the networks' parameters."""
        return next(self.parameters()).device

    def configure_optimizers(self, cfg: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        """One Adam optimiser per network (named like the network)."""
        betas = tuple(cfg.betas) if cfg.betas is not None else self.default_betas
        return {
            name: torch.optim.Adam(
                net.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay
            )
            for name, net in self.nets.items()
        }

    def phases(self) -> list[tuple[str, Callable[[Batch], Tensor]]]:
        """Optimisation phases of one training step: ``(optimiser name, loss function)``."""
        return [("net", self.loss)]

    @abstractmethod
    def loss(self, batch: Batch) -> Tensor:
        """Scalar training loss of ``batch`` (the generator loss for a GAN)."""

    @abstractmethod
    def sample(
        self, condition: Tensor, steps: int | None = None,
        generator: torch.Generator | None = None, *, callback: SampleCallback | None = None,
    ) -> Tensor:
        """Translate ``condition`` ``(B, C_in, H, W)`` into ``(B, C_t, H, W)`` (normalised).

        Parameters
        ----------
        condition : Tensor
            Normalised input maps.
        steps : int, optional
            Number of network evaluations of iterative samplers; ``None`` uses the
            configured default. Ignored by one-shot methods.
        generator : torch.Generator, optional
            Source of the sampling noise, for reproducible samples.
        callback : callable, optional
            ``callback(t, x_t, x0_estimate)`` after each step, e.g. to plot trajectories.
        """
