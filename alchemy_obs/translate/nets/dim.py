"""DiM, Diffusion Mamba (Teng et al. 2024): a denoiser made of Mamba blocks over patches.

``(B, C_in, H, W)`` is cut into ``p x p`` patches (a strided convolution), refined by a
local 3x3 depthwise convolution, given a fixed 2-D sine-cosine position code (computed for
any grid size, so one network serves every resolution; translating maps needs to know
where the centre is), and read as a ``h x w`` grid of tokens. Each Mamba block
scans the grid as one sequence in one of four orders, cycling through row, reversed row,
column and reversed column, so that information reaches every token from every side after
four blocks. A learnable end-of-line token is appended to each line of the scan (a row, or a
column for the column orders): a 1-D scan otherwise cannot tell where one line ends and
the next begins. Blocks are pre-norm residual, ``x + g * S6(LN(x) * (1 + s) + m)`` with
shift ``m``, scale ``s`` and gate ``g`` regressed from the time embedding (adaLN, zero-
initialised gate so each block starts as the identity). As in U-ViT, the first half of
the blocks is joined to the mirrored second half by long skips (concatenation + linear).
A second depthwise convolution precedes the linear head, whose output is unpatchified and
refined at full resolution by two 3x3 convolutions that also see the network's input (a
pixel-level long skip, time-modulated). A token of width ``D`` cannot carry the ``p^2 C``
independent pixel values of white noise when ``D < p^2 C``, yet a noise-predicting
denoiser must return nearly its input at high noise; U-ViT's single output convolution
(which sees only the unpatchified head) left DiM unable to learn that on 64x64 maps.

Like :class:`~alchemy_obs.translate.nets.unet.UNet`, ``forward(x, t)`` takes ``t`` in
[0, 1]; conditioning on the observation is by channel concatenation in the method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alchemy_obs.translate.nets.layers import TimeMLP
from alchemy_obs.translate.nets.mamba import MambaBlock

__all__ = ["DiM", "SCAN_ORDERS", "sincos_2d"]

SCAN_ORDERS = ("row", "row_reversed", "column", "column_reversed")


def sincos_2d(h: int, w: int, dim: int, *, device=None) -> Tensor:
    """``(h, w, dim)`` sine-cosine codes of the grid positions (rows in the first half)."""
    if dim % 4:
        raise ValueError(f"DiM token width must be a multiple of 4, got {dim}")
    quarter = dim // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ay = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freqs
    ax = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freqs
    ey = torch.cat([ay.sin(), ay.cos()], dim=-1)[:, None, :].expand(h, w, 2 * quarter)
    ex = torch.cat([ax.sin(), ax.cos()], dim=-1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([ey, ex], dim=-1)


class _DiMBlock(nn.Module):
    """Pre-norm residual Mamba block with adaLN time modulation and one scan order."""

    def __init__(self, dim: int, time_dim: int | None, order: str, **mamba) -> None:
        super().__init__()
        self.order = order
        self.norm = nn.LayerNorm(dim, elementwise_affine=time_dim is None)
        self.mixer = MambaBlock(dim, **mamba)
        self.ada = nn.Linear(time_dim, 3 * dim) if time_dim else None
        if self.ada is not None:
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def forward(self, x: Tensor, eol: Tensor, temb: Tensor | None) -> Tensor:
        """``x`` ``(B, h, w, D)`` grid of tokens; ``eol`` ``(D,)``."""
        h = self.norm(x)
        gate = 1.0
        if self.ada is not None and temb is not None:
            shift, scale, g = self.ada(temb)[:, None, None, :].chunk(3, dim=-1)
            h = h * (1 + scale) + shift
            gate = g + 1.0  # zero-initialised weights -> gate 1 at start
        column = self.order.startswith("column")
        if column:
            h = h.transpose(1, 2)
        b, lines, length, d = h.shape
        seq = torch.cat([h, eol.to(h.dtype).expand(b, lines, 1, d)], dim=2).reshape(b, -1, d)
        if self.order.endswith("reversed"):
            seq = self.mixer(seq.flip(1)).flip(1)
        else:
            seq = self.mixer(seq)
        out = seq.reshape(b, lines, length + 1, d)[:, :, :length]
        if column:
            out = out.transpose(1, 2)
        return x + gate * out


class DiM(nn.Module):
    """Diffusion Mamba mapping ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input (noisy target and observation) and of the output.
    patch_size : int
        Side of the square patches; ``H`` and ``W`` must be multiples of it.
    dim : int
        Token width.
    depth : int
        Number of Mamba blocks; ``depth // 2`` long skips join mirrored blocks.
    d_state, expand, d_conv : int
        S6 state size, inner expansion and causal-convolution kernel.
    time_embedding : bool
        Modulate every block by ``t`` (adaLN); ``forward`` then requires ``t``.
    scan_backend : str
        ``auto``, ``sequential`` or ``parallel`` (see :mod:`~alchemy_obs.translate.nets.mamba`).
    scan_chunk : int, optional
        Chunk length of the parallel scan; ``None`` chooses automatically.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 6,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        time_embedding: bool = True,
        scan_backend: str = "auto",
        scan_chunk: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"DiM needs at least one block, got depth={depth}")
        self.patch_size, self.out_channels = patch_size, out_channels
        self.embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.local_in = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        time_dim = 4 * dim if time_embedding else None
        self.time = TimeMLP(dim, time_dim) if time_embedding else None
        self.eol = nn.Parameter(torch.zeros(dim))
        mamba = {"d_state": d_state, "expand": expand, "d_conv": d_conv,
                 "backend": scan_backend, "chunk": scan_chunk}
        orders = [SCAN_ORDERS[i % 4] for i in range(depth)]
        n_skip = depth // 2
        self.blocks = nn.ModuleList(_DiMBlock(dim, time_dim, o, **mamba) for o in orders)
        self.n_skip = n_skip
        self.skip_proj = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(n_skip))
        self.local_out = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm_out = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch_size * patch_size * out_channels)
        pix = max(16, 4 * out_channels)
        self.pixel_in = nn.Conv2d(in_channels + out_channels, pix, 3, padding=1)
        self.pixel_time = nn.Linear(time_dim, pix) if time_embedding else None
        self.pixel_out = nn.Conv2d(pix, out_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        b, _, height, width = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"DiM with patch_size={p} needs H, W divisible by {p}, got {height}x{width}")
        if self.time is not None and t is None:
            raise ValueError("this DiM has a time embedding: forward(x, t) needs t")
        temb = self.time(t) if self.time is not None else None
        h = self.embed(x)
        h = h + self.local_in(h)
        h = h.permute(0, 2, 3, 1)  # (B, h, w, D)
        h = h + sincos_2d(h.shape[1], h.shape[2], h.shape[3], device=h.device).to(h.dtype)
        n_first = len(self.blocks) - self.n_skip
        skips = []
        for i, block in enumerate(self.blocks):
            if i >= n_first:
                h = self.skip_proj[i - n_first](torch.cat([h, skips.pop()], dim=-1))
            h = block(h, self.eol, temb)
            if i < self.n_skip:
                skips.append(h)
        g = h.permute(0, 3, 1, 2)
        g = g + self.local_out(g)
        out = self.head(self.norm_out(g.permute(0, 2, 3, 1)))  # (B, h, w, p*p*C)
        gh, gw = height // p, width // p
        out = out.reshape(b, gh, gw, p, p, self.out_channels)
        out = out.permute(0, 5, 1, 3, 2, 4).reshape(b, self.out_channels, height, width)
        f = self.pixel_in(torch.cat([out, x], dim=1))
        if self.pixel_time is not None:
            f = f + self.pixel_time(F.silu(temb))[:, :, None, None]
        return out + self.pixel_out(F.silu(f))
