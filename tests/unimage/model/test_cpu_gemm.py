"""bf16 matmuls as fp32 GEMMs on CPU (``cpu_gemm``): the same numbers as a bf16 GEMM, its dtypes, its gradients.

Reference: an fp64 matmul of the same bf16 values (independent of both kernels), rounded to bf16.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unimage.model.cpu_gemm import cpu_fp32_gemm_active, linear, set_fp32_gemm


@pytest.fixture
def fp32_gemm():
    set_fp32_gemm(True)
    yield
    set_fp32_gemm(None)


def _inputs(dtype: torch.dtype, requires_grad: bool = True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 64, generator=g).to(dtype).requires_grad_(requires_grad)
    w = (torch.randn(48, 64, generator=g) / 8).to(dtype).requires_grad_(requires_grad)
    b = torch.randn(48, generator=g).to(dtype).requires_grad_(requires_grad)
    return x, w, b


def _ulp_close(out: torch.Tensor, ref64: torch.Tensor) -> None:
    """Within one bf16 rounding of the fp64 result (relative 2^-8, plus a tiny absolute floor for near-zeros)."""
    torch.testing.assert_close(out.double(), ref64, atol=1e-2, rtol=2**-8)


def test_bf16_linear_equals_rounded_fp64_and_native(fp32_gemm):
    x, w, b = _inputs(torch.bfloat16)
    out = linear(x, w, b)
    assert out.dtype == torch.bfloat16
    ref = F.linear(x.double(), w.double(), b.double())
    _ulp_close(out, ref)
    _ulp_close(F.linear(x, w, b), ref)  # the native bf16 kernel is within the same bound
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).bfloat16()
    gx, gw, gb = torch.autograd.grad(out, (x, w, b), grad)
    rx, rw, rb = torch.autograd.grad(
        F.linear(*(t.double() for t in (x, w, b))), (x, w, b), grad.double()
    )  # fp64 chain, the gradients cast back to bf16 by autograd
    assert gx.dtype == gw.dtype == gb.dtype == torch.bfloat16
    for ours, theirs in ((gx, rx), (gw, rw), (gb, rb)):
        torch.testing.assert_close(ours.float(), theirs.float(), atol=3e-2, rtol=2**-7)


def test_autocast_rounds_fp32_weights_and_returns_fp32_grads(fp32_gemm):
    """Under CPU autocast: inputs rounded to bf16 as autocast's linear does, bf16 output, fp32 weight gradients."""
    x, w, b = _inputs(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear(x, w, b)
        native = F.linear(x, w, b)
    assert out.dtype == native.dtype == torch.bfloat16
    ref = F.linear(x.bfloat16().double(), w.bfloat16().double(), b.bfloat16().double())
    _ulp_close(out, ref)
    out.float().square().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    gw = w.grad.clone()
    w.grad = None
    native.float().square().sum().backward()
    torch.testing.assert_close(gw, w.grad, atol=5e-2, rtol=2e-2)


def test_fp32_and_off_switch_use_plain_linear():
    """fp32 inputs, and the switch off, are exactly ``F.linear``."""
    x, w, b = _inputs(torch.float32, requires_grad=False)
    assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    set_fp32_gemm(False)
    try:
        assert not cpu_fp32_gemm_active()
        xb, wb, bb = (t.bfloat16() for t in (x, w, b))
        assert torch.equal(linear(xb, wb, bb), F.linear(xb, wb, bb))
    finally:
        set_fp32_gemm(None)
