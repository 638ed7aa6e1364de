"""Building blocks of the translator networks: time embedding, residual blocks, attention.

All blocks take and return ``(B, C, H, W)`` tensors; the time embedding is an optional
``(B, D)`` tensor that residual blocks add to their features (FiLM-style shift).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SinusoidalTimeEmbedding",
    "TimeMLP",
    "ResBlock",
    "SelfAttention2d",
    "AttentionGate",
    "Downsample",
    "Upsample",
]


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a continuous time ``t`` in [0, 1].

    ``t`` is multiplied by 1000 so that the frequencies span the same range as the integer
    step embeddings of Ho et al. (2020) while staying continuous (InDI, score SDEs).
    """

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dimension must be even, got {dim}")
        self.dim = dim
        self.max_period = max_period

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(self.max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
        )
        args = 1000.0 * t.float()[:, None] * freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeMLP(nn.Module):
    """Sinusoidal features followed by a two-layer MLP (SiLU)."""

    def __init__(self, base_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            SinusoidalTimeEmbedding(base_dim),
            nn.Linear(base_dim, out_dim),
            nn.SiLU(),
            nn.Linear(out_dim, out_dim),
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.net(t)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # Fall back to fewer groups when the width is not divisible, rather than failing deep
    # inside a user's config.
    g = math.gcd(channels, groups)
    return nn.GroupNorm(g, channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a residual path and an optional time shift."""

    def __init__(
        self, in_ch: int, out_ch: int, time_dim: int | None = None, groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch) if time_dim else None
        self.norm2 = _norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time is not None and temb is not None:
            h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention across the spatial positions of a feature map.

    Each head attends over the ``H*W`` positions (its attention matrix is ``HW x HW``); the
    output is added to the input (residual path), so the block starts close to identity.
    """

    def __init__(self, channels: int, heads: int = 4, groups: int = 8) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # (B, heads, HW, d): the sequence axis is the spatial position. Contiguous copies,
        # because SDPA falls back to a slow kernel for a strided last axis (~2x at 256^2).
        q, k, v = (qkv[:, i].transpose(-1, -2).contiguous() for i in range(3))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018, Attention U-Net).

    The skip features ``x`` are multiplied by a per-pixel coefficient in (0, 1) computed from
    ``x`` and the decoder's gating signal ``g`` (same spatial size here, since the decoder
    upsamples before gating).
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int | None = None) -> None:
        super().__init__()
        inter = inter_ch or max(skip_ch // 2, 1)
        self.wx = nn.Conv2d(skip_ch, inter, 1, bias=False)
        self.wg = nn.Conv2d(gate_ch, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.psi(F.relu(self.wx(x) + self.wg(g))))
        return x * alpha


class Downsample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 convolution (no checkerboard artefacts)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
