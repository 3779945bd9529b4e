"""bf16 matmuls on CPUs without bf16 hardware: fp32 GEMMs on the bf16 values, the result rounded to bf16.

Why: without AVX512-BF16 or AMX (e.g. an AVX2-only AMD EPYC), torch runs bf16 ``mm`` / ``bmm`` / ``addmm`` through a
slow fallback. On such a machine one training step of the issue-13 benchmark spends most of its time in bf16 GEMMs
(profile: ``aten::mm`` + ``aten::bmm`` + ``aten::addmm`` ≈ 97 % of self CPU time), in the official code as in ours,
while the same GEMM in fp32 is several times faster.

Why it is the same computation: a bf16 GEMM multiplies bf16 values, whose products are exact in fp32, and accumulates
in fp32; an fp32 GEMM on the same bf16 values computes the same sums (up to summation order), and rounding its output
to bf16 gives the bf16 GEMM's output dtype. Autocast semantics are kept: under CPU autocast the inputs are first
rounded to the autocast dtype, exactly as autocast's own ``linear`` would, and gradients flow to fp32 weights through
that cast. The backward is fp32 GEMMs on the saved bf16 tensors, its results rounded to the inputs' dtypes, as a
bf16 GEMM backward would return them. Only bf16 x, w are kept for backward (no fp32 copies).

Scope: CPU tensors only (CUDA keeps its native bf16 kernels), and only where the CPU lacks native bf16 matmul.
``set_fp32_gemm(False)`` (or ``UNIMAGE_CPU_FP32_GEMM=0``) turns it off, e.g. to measure the native bf16 kernels.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cpu_fp32_gemm_active", "linear", "sdpa_dtype", "set_fp32_gemm"]

_REDUCED = (torch.bfloat16, torch.float16)
_STATE: dict[str, bool] = {}


def _native_bf16_matmul() -> bool:
    cpu: Any = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def set_fp32_gemm(enabled: bool | None) -> None:
    """Force the fp32-GEMM path on (True) or off (False) for reduced-precision CPU matmuls; None: automatic."""
    _STATE.pop("enabled", None)
    if enabled is not None:
        _STATE["enabled"] = enabled


def cpu_fp32_gemm_active() -> bool:
    """Whether reduced-precision CPU matmuls run as fp32 GEMMs (default: when the CPU has no bf16 matmul)."""
    if "enabled" in _STATE:
        return _STATE["enabled"]
    if "auto" not in _STATE:
        env = os.environ.get("UNIMAGE_CPU_FP32_GEMM", "").strip()
        _STATE["auto"] = (env != "0") and (env == "1" or not _native_bf16_matmul())
    return _STATE["auto"]


def _compute_dtype(x: Tensor, w: Tensor) -> torch.dtype:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return torch.promote_types(x.dtype, w.dtype)


class _Fp32GemmLinear(torch.autograd.Function):
    """y = round(x·wᵀ + b) with x, w, b of one reduced dtype, computed as fp32 GEMMs; saves the reduced x and w."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        with torch.autocast("cpu", enabled=False):
            y = F.linear(x.float(), w.float(), None if b is None else b.float())
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            g = grad.float().reshape(-1, grad.shape[-1])  # [N, O]
            gx = gw = gb = None
            if ctx.needs_input_grad[0]:
                gx = (g @ w.float()).reshape(x.shape).to(x.dtype)
            if ctx.needs_input_grad[1]:
                gw = (g.t() @ x.reshape(-1, x.shape[-1]).float()).to(w.dtype)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                gb = g.sum(0).to(w.dtype)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` (autocast-aware); reduced-precision CPU matmuls as fp32 GEMMs where ``cpu_fp32_gemm_active``."""
    if x.device.type != "cpu" or not cpu_fp32_gemm_active():
        return F.linear(x, weight, bias)
    dtype = _compute_dtype(x, weight)
    if dtype not in _REDUCED:
        return F.linear(x, weight, bias)
    b = None if bias is None else bias.to(dtype)
    return _Fp32GemmLinear.apply(x.to(dtype), weight.to(dtype), b)


def sdpa_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype to run a CPU attention kernel in: fp32 for bf16 / fp16 inputs where ``cpu_fp32_gemm_active`` (the
    caller rounds the output back), else ``dtype``."""
    if device.type == "cpu" and dtype in _REDUCED and cpu_fp32_gemm_active():
        return torch.float32
    return dtype
