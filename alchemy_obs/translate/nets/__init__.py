"""Translator networks: plain ``nn.Module`` objects with no training logic."""

from torch import nn

from alchemy_obs.config import NetworkConfig
from alchemy_obs.translate.nets.dim import DiM
from alchemy_obs.translate.nets.patchgan import PatchGAN, receptive_field
from alchemy_obs.translate.nets.unet import UNet

__all__ = ["UNet", "DiM", "PatchGAN", "receptive_field", "build_network"]


def build_network(
    config: NetworkConfig, in_channels: int, out_channels: int, *, time: bool = True
) -> nn.Module:
    """The network named by ``config.kind`` (``unet`` or ``dim``), freshly initialised.

    The configuration's edge: the networks themselves take plain keywords.

    Parameters
    ----------
    config : NetworkConfig
        ``train.network``.
    in_channels, out_channels : int
        Channels of the network's input and output.
    time : bool
        Add the time embedding that diffusion denoisers need.
    """
    if config.kind == "dim":
        d = config.dim
        return DiM(in_channels, out_channels, time_embedding=time, **d.model_dump())
    unet = config.model_dump(exclude={"kind", "dim"})
    return UNet(in_channels, out_channels, time_embedding=time, **unet)
