"""Networks of the translators: shapes, spatial self-attention, gates, PatchGAN field."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alchemy_obs.translate.nets import PatchGAN, UNet, receptive_field
from alchemy_obs.translate.nets.layers import AttentionGate, GroupNorm, SelfAttention2d, Upsample


def test_unet_shapes_and_time_dependence():
    torch.manual_seed(0)
    net = UNet(3, 2, base_channels=8, channel_mults=(1, 2, 2), attention_levels=(1, 2))
    x = torch.randn(2, 3, 32, 32)
    y0 = net(x, torch.zeros(2))
    y1 = net(x, torch.ones(2))
    assert y0.shape == (2, 2, 32, 32)
    assert y0.is_contiguous(), "NCHW out, although the features run channels-last"
    assert not torch.allclose(y0, y1), "output must depend on t"
    with pytest.raises(ValueError, match="pass t"):
        net(x)
    with pytest.raises(ValueError, match="not divisible"):
        net(torch.randn(1, 3, 30, 30), torch.zeros(1))
    with pytest.raises(ValueError, match="outside"):
        UNet(1, 1, channel_mults=(1, 2), attention_levels=(2,))


def test_unet_without_time_embedding_ignores_t():
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=8, channel_mults=(1, 2), attention_levels=(), time_embedding=False)
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(net(x), net(x, torch.ones(1)))


def test_self_attention_is_global_over_positions():
    torch.manual_seed(0)
    attn = SelfAttention2d(8, heads=2, groups=4).eval()
    x = torch.randn(2, 8, 12, 10)
    x2 = x.clone()
    x2[:, :, 3, 7] += 1.0
    change = (attn(x) - attn(x2)).abs().amax(dim=1)  # (B, H, W)
    assert (change > 1e-6).all(), "one changed pixel must change every output position"


def test_self_attention_matches_per_head_softmax_over_positions():
    torch.manual_seed(1)
    c, heads, h, w = 8, 2, 5, 6
    attn = SelfAttention2d(c, heads=heads, groups=4)
    x = torch.randn(1, c, h, w)
    qkv = attn.qkv(attn.norm(x)).reshape(3, heads, c // heads, h * w)
    out = []
    for hd in range(heads):
        q, k, v = qkv[0, hd], qkv[1, hd], qkv[2, hd]  # (d, HW)
        a = torch.softmax(q.T @ k / (c // heads) ** 0.5, dim=-1)  # (HW, HW)
        assert a.shape == (h * w, h * w)
        out.append((a @ v.T).T)
    ref = x + attn.proj(torch.cat(out).reshape(1, c, h, w))
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-5)
    # the U-Net feeds channels-last maps: same result
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(attn(x_cl), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_upsample_is_nearest_x2_then_3x3_conv(layout):
    # computed as one transposed convolution; values and gradients must be those of the
    # plain formulation, borders included
    torch.manual_seed(2)
    up = Upsample(6, 4)
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=layout).requires_grad_()
    out = up(x)
    ref = up.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    assert out.shape == (2, 4, 10, 14)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, up.conv.weight, up.conv.bias], g)
    want = torch.autograd.grad(ref, [x, up.conv.weight, up.conv.bias], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert list(dict(up.state_dict())) == ["conv.weight", "conv.bias"]


@pytest.mark.parametrize("channels, groups", [(16, 8), (12, 4)])
def test_group_norm_channels_last_backward_matches_torch(channels, groups):
    # the hand-written backward for large channels-last maps against PyTorch's GroupNorm
    torch.manual_seed(3)
    norm = GroupNorm(groups, channels)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = (2 * torch.randn(2, channels, 64, 64) + 1).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = norm(x)
    ref = F.group_norm(x, groups, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, norm.weight, norm.bias], g)
    want = torch.autograd.grad(ref, [x, norm.weight, norm.bias], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert got[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("stride", [1, 2])
def test_attention_gate_scales_skip_between_zero_and_one(stride):
    torch.manual_seed(0)
    gate = AttentionGate(6, 4, stride=stride)
    x, g = torch.randn(2, 6, 8, 8), torch.randn(2, 4, 8 // stride, 8 // stride)
    out = gate(x, g)
    ratio = out / x
    # One coefficient per pixel, shared by all channels, in (0, 1).
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert (ratio > 0).all() and (ratio < 1).all()


def test_attention_gate_reads_the_coarse_gating_signal():
    # Oktay et al.: the gate of a skip is computed on the grid of the coarser decoder map and
    # upsampled, so changing one coarse pixel of g moves the coefficients only around the
    # 2x2 block of skip pixels it covers (bilinear upsampling spreads it by one pixel).
    torch.manual_seed(0)
    gate = AttentionGate(4, 4, stride=2)
    x, g = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 8, 8)
    g2 = g.clone()
    g2[..., 3, 3] += 5.0
    changed = (gate(x, g2) - gate(x, g)).abs().sum(1)[0] > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert changed[6:8, 6:8].all()
    assert rows.min() >= 5 and rows.max() <= 8 and cols.min() >= 5 and cols.max() <= 8


def test_patchgan_receptive_field_is_70():
    disc = PatchGAN(2, base_channels=8, n_layers=3)
    assert receptive_field(disc) == 70
    assert receptive_field(PatchGAN(2, 8, n_layers=1)) == 16
    assert receptive_field(PatchGAN(2, 8, n_layers=4)) == 142


def test_patchgan_receptive_field_by_gradient():
    # Instance normalisation couples all pixels through its statistics, so measure the
    # convolutional field on a copy without it.
    torch.manual_seed(0)
    disc = PatchGAN(1, base_channels=4, n_layers=3)
    convs = nn.Sequential(*[m for m in disc.net if not isinstance(m, nn.InstanceNorm2d)])
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    out = convs(x)
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, i, j].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(dim=0)).flatten()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_unet_runs_a_one_channel_input_channels_last():
    # a (B, 1, H, W) map is contiguous in both layouts; the U-Net must still run its
    # features channels-last on CPU (NCHW would be ~1.2x slower to train)
    net = UNet(1, 1, base_channels=8, channel_mults=(1, 2), attention_levels=(), time_embedding=False)
    seen = []
    net.down[0].blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    net(torch.randn(2, 1, 16, 16))
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
