"""Translator methods and their registry (name -> class).

Add a method by subclassing :class:`~alchemy_obs.translate.methods.base.Method` and
registering it in :data:`METHODS`; the trainer, checkpoints and CLI then know it by name.
"""

from __future__ import annotations

from alchemy_obs.config import MethodConfig, NetworkConfig
from alchemy_obs.translate.methods.base import Method
from alchemy_obs.translate.methods.ddpm import DDPM
from alchemy_obs.translate.methods.indi import InDI
from alchemy_obs.translate.methods.pix2pix import Pix2Pix
from alchemy_obs.translate.methods.sde import ScoreSDE

__all__ = ["METHODS", "Method", "DDPM", "InDI", "Pix2Pix", "ScoreSDE", "build_method"]

METHODS: dict[str, type[Method]] = {
    "pix2pix": Pix2Pix, "ddpm": DDPM, "indi": InDI, "sde": ScoreSDE,
}


def build_method(
    config: MethodConfig, network: NetworkConfig, *, in_channels: int, out_channels: int
) -> Method:
    """A method with freshly initialised networks, from the ``train`` configuration.

    Parameters
    ----------
    config : MethodConfig
        ``train.method``: its ``name`` picks the class, its settings section configures it.
    network : NetworkConfig
        ``train.network``.
    in_channels, out_channels : int
        Channels of the condition and of the target.
    """
    return METHODS[config.name].from_config(
        config.settings, network, in_channels=in_channels, out_channels=out_channels
    )
