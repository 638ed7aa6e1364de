"""The S6 (Mamba) block: scan backends agree, the recurrence is the right one, causality."""

from __future__ import annotations

import pytest
import torch

from alchemy_obs.translate.nets.mamba import (
    CPU_CHUNK,
    MambaBlock,
    choose_backend,
    scan_parallel,
    scan_sequential,
    selective_scan,
)


def _inputs(length, seed=0, b=2, d=5, n=3):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(b, length, d, n, generator=g) * 0.9 + 0.1  # exp(Delta A) lies in (0, 1)
    bx = torch.randn(b, length, d, n, generator=g)
    c = torch.randn(b, length, n, generator=g)
    return a, bx, c


def test_sequential_scan_is_the_recurrence():
    a = torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    b = torch.tensor([1.0, 3.0, -1.0]).view(1, 3, 1, 1)
    c = torch.tensor([2.0, 1.0, 0.5]).view(1, 3, 1)
    # h1 = 1, h2 = 0.25 * 1 + 3 = 3.25, h3 = 2 * 3.25 - 1 = 5.5; y = c h.
    y = scan_sequential(a, b, c)
    assert y.flatten().tolist() == [2.0, 3.25, 2.75]


@pytest.mark.parametrize("length", [1, 2, 7, 64, 100])
@pytest.mark.parametrize("chunk", [None, 1, 16, 33])
def test_parallel_scan_equals_sequential_values_and_gradients(length, chunk):
    a, bx, c = _inputs(length, seed=length)
    a1, b1, c1 = (t.clone().requires_grad_() for t in (a, bx, c))
    a2, b2, c2 = (t.clone().requires_grad_() for t in (a, bx, c))
    ys = scan_sequential(a1, b1, c1)
    yp = scan_parallel(a2, b2, c2, chunk=chunk)
    torch.testing.assert_close(yp, ys, rtol=1e-5, atol=1e-5)
    w = torch.randn(ys.shape, generator=torch.Generator().manual_seed(1))
    (ys * w).sum().backward()
    (yp * w).sum().backward()
    for g_seq, g_par in [(a1.grad, a2.grad), (b1.grad, b2.grad), (c1.grad, c2.grad)]:
        torch.testing.assert_close(g_par, g_seq, rtol=1e-5, atol=1e-5)


def test_backend_choice_by_device_and_length():
    cpu = torch.device("cpu")
    assert choose_backend(cpu, CPU_CHUNK) == ("parallel", None)
    assert choose_backend(cpu, 10 * CPU_CHUNK) == ("parallel", CPU_CHUNK)
    assert choose_backend(torch.device("cuda"), 1000) == ("parallel", None)
    with pytest.raises(ValueError, match="unknown scan backend"):
        selective_scan(*_inputs(3), backend="fast")


def test_mamba_block_backends_agree_and_block_is_causal():
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=4, expand=2, d_conv=4, backend="sequential")
    u = torch.randn(2, 40, 8)
    y_seq = block(u)
    block.backend = "parallel"
    block.chunk = 8
    y_par = block(u)
    torch.testing.assert_close(y_par, y_seq, rtol=1e-5, atol=1e-5)
    # A change at position 20 leaves every earlier output untouched and reaches later ones.
    u2 = u.clone()
    u2[:, 20] += 1.0
    diff = (block(u2) - y_par).abs().amax(dim=(0, 2))
    assert torch.all(diff[:20] == 0)
    assert torch.all(diff[20:] > 0)


def test_mamba_block_initialisation_follows_gu_and_dao():
    torch.manual_seed(0)
    block = MambaBlock(32, d_state=16, dt_min=1e-3, dt_max=0.1)
    a = -torch.exp(block.A_log)
    torch.testing.assert_close(a[0], -torch.arange(1, 17, dtype=torch.float32))  # S4D-real
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert block.dt_rank == 2 and block.d_inner == 64
