"""DiM (Diffusion Mamba): scan orders, end-of-line tokens, global reach, use by the methods."""

from __future__ import annotations

import pytest
import torch

from alchemy_obs.config import TrainConfig
from alchemy_obs.translate.methods import build_method
from alchemy_obs.translate.nets import DiM
from alchemy_obs.translate.nets.dim import SCAN_ORDERS, _DiMBlock

TINY_DIM = {"patch_size": 4, "dim": 16, "depth": 4, "d_state": 4}


def _order_index(order: str, h: int, w: int) -> torch.Tensor:
    """Position of each grid token in the scan (ignoring end-of-line tokens)."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = i * w + j if order.startswith("row") else j * h + i
    return -pos if order.endswith("reversed") else pos


@pytest.mark.parametrize("order", SCAN_ORDERS)
def test_block_scans_the_grid_in_its_order(order):
    """A token only influences tokens after it in the block's scan order."""
    torch.manual_seed(0)
    block = _DiMBlock(8, None, order, d_state=4, expand=2, d_conv=2)
    eol = torch.randn(8)
    h, w = 5, 6
    x = torch.randn(1, h, w, 8)
    base = block(x, eol, None)
    pos = _order_index(order, h, w)
    src = (2, 3)
    x2 = x.clone()
    x2[0, src[0], src[1], 0] += 1.0  # one channel: LayerNorm removes uniform shifts
    changed = (block(x2, eol, None) - base).abs().amax(-1)[0] > 0
    before = pos < pos[src]
    assert not changed[before].any()
    assert changed[~before].all()


def test_end_of_line_token_marks_lines():
    """The last token of a row sees the end-of-line token before the next row starts."""
    torch.manual_seed(0)
    block = _DiMBlock(8, None, "row", d_state=4, expand=2, d_conv=2)
    x = torch.randn(1, 3, 4, 8)
    a = block(x, torch.zeros(8), None)
    b = block(x, torch.ones(8), None)
    diff = (a - b).abs().amax(-1)[0]
    assert torch.all(diff[0] == 0)  # the first row is scanned before any end-of-line token
    assert torch.all(diff[1:] > 0)


def test_dim_shapes_time_and_global_reach():
    torch.manual_seed(0)
    net = DiM(2, 1, **TINY_DIM)
    assert isinstance(net, DiM) and len(net.skip_proj) == 2
    x, t = torch.randn(2, 2, 32, 32), torch.rand(2)
    out = net(x, t)
    assert out.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="needs t"):
        net(x)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 30, 30), torch.rand(1))
    # Four scan orders: one changed pixel reaches every output pixel.
    for p in net.parameters():  # adaLN starts at zero; make every path active
        torch.nn.init.normal_(p, std=0.2) if p.dim() > 1 else None
    base = net(x[:1], t[:1])
    x2 = x[:1].clone()
    x2[0, 0, 5, 7] += 1.0
    assert ((net(x2, t[:1]) - base).abs() > 0).all()
    # Time conditioning changes the output; every parameter, the end-of-line token included,
    # receives a gradient.
    assert not torch.allclose(net(x[:1], torch.tensor([0.1])), net(x[:1], torch.tensor([0.9])))
    net(x, t).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("method", ["ddpm", "indi", "sde"])
def test_dim_is_the_network_of_each_diffusion_method(method):
    torch.manual_seed(0)
    # The configuration's edge: build_method picks DiM from train.network.kind.
    cfg = TrainConfig(method={"name": method, method: {"sample_steps": 2}},
                      network={"kind": "dim", "dim": TINY_DIM})
    m = build_method(cfg.method, cfg.network, in_channels=1, out_channels=1)
    assert isinstance(m.nets["net"], DiM)
    batch = {"input": torch.randn(2, 1, 16, 16), "target": torch.randn(2, 1, 16, 16)}
    m.loss(batch).backward()
    assert m.sample(batch["input"]).shape == (2, 1, 16, 16)
