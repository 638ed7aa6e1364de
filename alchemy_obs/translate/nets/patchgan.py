"""PatchGAN discriminator (Isola et al. 2017) and its receptive field."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchGAN", "receptive_field"]


class PatchGAN(nn.Module):
    """Fully convolutional discriminator that scores overlapping patches.

    ``n_layers`` stride-2 4x4 convolutions are followed by two stride-1 4x4 convolutions; with
    ``n_layers=3`` (the pix2pix default) each output logit sees a 70x70 input patch. Instance
    normalisation (not batch normalisation) keeps the score of an image independent of the
    rest of the batch and of the number of data-parallel processes.

    Parameters
    ----------
    in_channels : int
        Channels of the (condition, map) pair concatenated along channels.
    base_channels : int
        Width of the first layer; doubles per layer up to 8x.
    n_layers : int
        Number of stride-2 layers.
    """

    def __init__(self, in_channels: int, base_channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        ch = base_channels
        for i in range(1, n_layers):
            out = base_channels * min(2**i, 8)
            layers += [
                nn.Conv2d(ch, out, 4, stride=2, padding=1, bias=False),
                nn.InstanceNorm2d(out, affine=True),
                nn.LeakyReLU(0.2),
            ]
            ch = out
        out = base_channels * min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ch, out, 4, stride=1, padding=1, bias=False),
            nn.InstanceNorm2d(out, affine=True),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out, 1, 4, stride=1, padding=1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Patch logits ``(B, 1, h, w)`` of ``x`` (B, C, H, W); ``t`` is ignored."""
        return self.net(x)


def receptive_field(module: nn.Module) -> int:
    """Receptive field in input pixels of one output of a chain of convolutions.

    Walks the ``Conv2d`` layers in order: ``r_out = r_in + (k - 1) * j`` with ``j`` the
    product of the preceding strides.

    Parameters
    ----------
    module : nn.Module
        A feed-forward stack of convolutions (e.g. :class:`PatchGAN`).

    Returns
    -------
    int
    """
    r, jump = 1, 1
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0]
            s = layer.stride[0]
            d = layer.dilation[0]
            r += (k - 1) * d * jump
            jump *= s
    return r
