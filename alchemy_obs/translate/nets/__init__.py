"""Translator networks: plain ``nn.Module`` objects with no training logic."""

from alchemy_obs.translate.nets.patchgan import PatchGAN, receptive_field
from alchemy_obs.translate.nets.unet import UNet

__all__ = ["UNet", "PatchGAN", "receptive_field"]
