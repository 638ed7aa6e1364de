"""Attention U-Net: residual blocks, GroupNorm, spatial self-attention, attention gates.

The same network serves as the pix2pix generator (``time_embedding=False``) and as the
denoiser of the diffusion methods (time embedding on). Conditioning by concatenating the
observation is done by the method, which sets ``in_channels`` accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alchemy_obs.translate.nets.layers import (
    AttentionGate,
    Downsample,
    ResBlock,
    SelfAttention2d,
    TimeMLP,
    Upsample,
    _norm,
)

__all__ = ["UNet"]


class UNet(nn.Module):
    """U-Net mapping ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    base_channels : int
        Width of level 0; level ``i`` has ``base_channels * channel_mults[i]`` channels.
    channel_mults : sequence of int
        One entry per resolution level; ``H`` and ``W`` must be divisible by
        ``2 ** (len(channel_mults) - 1)``.
    num_res_blocks : int
        Residual blocks per level in the encoder and in the decoder.
    attention_levels : sequence of int
        Levels with multi-head self-attention across spatial positions (the bottleneck
        always has one when this is non-empty).
    attention_heads : int
        Heads of each attention layer.
    attention_gates : bool
        Gate every skip connection with an additive attention gate (Oktay et al. 2018).
    time_embedding : bool
        Add a sinusoidal + MLP embedding of ``t`` to every residual block; ``forward`` then
        requires ``t``.
    groups : int
        Groups of the GroupNorm layers.
    dropout : float
        Dropout probability inside residual blocks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (2,),
        attention_heads: int = 4,
        attention_gates: bool = True,
        time_embedding: bool = True,
        groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n_levels = len(channel_mults)
        bad = [lvl for lvl in attention_levels if not 0 <= lvl < n_levels]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{n_levels - 1}")
        self.n_levels = n_levels
        widths = [base_channels * m for m in channel_mults]
        tdim = 4 * base_channels if time_embedding else None
        self.time_mlp = TimeMLP(base_channels, tdim) if time_embedding else None

        def attn(ch: int, level: int) -> nn.Module:
            if level in attention_levels:
                return SelfAttention2d(ch, attention_heads, groups)
            return nn.Identity()

        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        ch = widths[0]
        for lvl, w in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, w, tdim, groups=groups, dropout=dropout))
                ch = w
            level = nn.Module()
            level.blocks = blocks
            level.attn = attn(w, lvl)
            level.downsample = Downsample(w, widths[lvl + 1]) if lvl < n_levels - 1 else None
            if level.downsample is not None:
                ch = widths[lvl + 1]
            self.down.append(level)

        self.mid1 = ResBlock(ch, ch, tdim, groups=groups, dropout=dropout)
        self.mid_attn = (
            SelfAttention2d(ch, attention_heads, groups) if attention_levels else nn.Identity()
        )
        self.mid2 = ResBlock(ch, ch, tdim, groups=groups, dropout=dropout)

        self.up = nn.ModuleList()
        gate_ch = ch
        for lvl in reversed(range(n_levels)):
            w = widths[lvl]
            level = nn.Module()
            # the gating signal is the decoder map before upsampling: same grid as the skip at
            # the bottom level, twice coarser above it
            stride = 1 if lvl == n_levels - 1 else 2
            level.gate = AttentionGate(w, gate_ch, stride=stride) if attention_gates else None
            blocks = nn.ModuleList()
            for i in range(num_res_blocks):
                blocks.append(ResBlock(ch + w if i == 0 else w, w, tdim, groups=groups, dropout=dropout))
            ch = gate_ch = w
            level.blocks = blocks
            level.attn = attn(w, lvl)
            level.upsample = Upsample(w, widths[lvl - 1]) if lvl > 0 else None
            if level.upsample is not None:
                ch = widths[lvl - 1]
            self.up.append(level)

        self.norm_out = _norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Map ``x`` (B, C_in, H, W) at time ``t`` (B,) in [0, 1] to (B, C_out, H, W)."""
        factor = 2 ** (self.n_levels - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"map size {tuple(x.shape[-2:])} is not divisible by {factor}")
        temb = None
        if self.time_mlp is not None:
            if t is None:
                raise ValueError("this U-Net has a time embedding: pass t")
            temb = self.time_mlp(t.to(x.device).reshape(-1).expand(x.shape[0]))
        # Channels-last features throughout: oneDNN's CPU convolutions are up to ~2x faster in
        # that layout than in NCHW (and it is the fast layout on GPU). A one-channel map is
        # contiguous in both layouts, so ``contiguous`` keeps its NCHW strides and everything
        # downstream would run NCHW (~1.2x slower training step on CPU): on CPU, copy it with
        # channels-last strides (GPU unchanged).
        if x.shape[1] == 1 and x.device.type == "cpu":
            x = x.clone(memory_format=torch.channels_last)
        h = self.conv_in(x.contiguous(memory_format=torch.channels_last))
        skips = []
        for level in self.down:
            for block in level.blocks:
                h = block(h, temb)
            h = level.attn(h)
            skips.append(h)
            if level.downsample is not None:
                h = level.downsample(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        coarse = h
        for level in self.up:
            skip = skips.pop()
            if level.gate is not None:
                skip = level.gate(skip, coarse)
            h = torch.cat([h, skip], dim=1)
            for block in level.blocks:
                h = block(h, temb)
            h = level.attn(h)
            coarse = h
            if level.upsample is not None:
                h = level.upsample(h)
        # NCHW out, as callers expect (a copy only when out_channels > 1)
        return self.conv_out(F.silu(self.norm_out(h))).contiguous()
