"""Translator networks: plain ``nn.Module`` objects with no training logic."""

from torch import nn

from alchemy_obs.config import NetworkConfig
from alchemy_obs.translate.nets.dim import DiM
from alchemy_obs.translate.nets.patchgan import PatchGAN, receptive_field
from alchemy_obs.translate.nets.unet import UNet

__all__ = ["UNet", "DiM", "PatchGAN", "receptive_field", "build_network"]


def build_network(
    config: NetworkConfig, in_channels: int, out_channels: int, time: bool = True
) -> nn.Module:
    """The network named by ``config.kind`` (``unet`` or ``dim``), freshly initialised.

    ``time`` adds the time embedding that diffusion denoisers need.
    """
    if config.kind == "dim":
        d = config.dim
        return DiM(
            in_channels, out_channels, d.patch_size, d.dim, d.depth, d.d_state, d.expand,
            d.d_conv, time, d.scan_backend, d.scan_chunk,
        )
    return UNet(
        in_channels, out_channels, config.base_channels, config.channel_mults,
        config.num_res_blocks, config.attention_levels, config.attention_heads,
        config.attention_gates, time, config.groups, config.dropout,
    )
