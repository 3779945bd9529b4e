"""Step 1, kernel parity: every attention backend against a float64 dense reference of the same ``AttentionLayout``.

The pack holds mixed samples (``workload.mixed_pack``), so one call covers causal text, full image splits, hidden
noisy splits and document boundaries. q, k, v and the output gradient are drawn in the working dtype (bf16 on CUDA);
the reference runs the same rounded inputs in float64 on the layout's dense mask, so the errors below are the
kernels' own (accumulation and the bf16 probabilities), not the inputs' rounding.

Criterion (modelled on flash-attn's own tests, which allow twice the error of a plain PyTorch implementation in the
same dtype): a backend passes when its max abs error, forward and for each of dq, dk, dv, is at most
3 × that of ``dense_attention`` run in the working dtype, plus a small floor (a baseline of exactly 0 would
otherwise demand bit-identity).

Shapes on the 7B scale: Hq = 28, Hkv = 4, Dh = 128 (Qwen2.5-7B), L = 4096 packed tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from unimage.gpucheck.runner import StepContext, StepSkipped, timed
from unimage.gpucheck.workload import mixed_pack
from unimage.model.attention import AttentionLayout, available_backends, flash_available, packed_attention

__all__ = ["BACKENDS", "dense_attention", "run_parity"]

BACKENDS = ("flash", "flex", "sdpa")
FLOOR = {torch.bfloat16: 1e-3, torch.float16: 1e-3, torch.float32: 1e-5, torch.float64: 1e-12}


def dense_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Plain masked softmax attention in ``q``'s dtype (softmax in fp32 for half types), GQA by repeating K/V heads.

    Args:
        q: [L, Hq, Dh].
        k: [Lk, Hkv, Dh].
        v: [Lk, Hkv, Dh].
        mask: [L, Lk] bool, True = may attend (every row has at least one True).

    Returns:
        [L, Hq, Dh].
    """
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)  # [Lk, Hq, Dh]
    v = v.repeat_interleave(rep, dim=1)
    s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])  # [Hq, L, Lk]
    s = s.masked_fill(~mask[None], float("-inf"))
    half = q.dtype in (torch.bfloat16, torch.float16)
    p = torch.softmax(s.float() if half else s, dim=-1).to(q.dtype)
    return torch.einsum("hqk,khd->qhd", p, v)


AttnFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _fwd_bwd(fn: AttnFn, q: Tensor, k: Tensor, v: Tensor, g: Tensor, backward: bool) -> tuple[Tensor, list[Tensor]]:
    q, k, v = (t.detach().requires_grad_(backward) for t in (q, k, v))
    out = fn(q, k, v)
    if not backward:
        return out.detach(), []
    out.backward(g)
    return out.detach(), [t.grad for t in (q, k, v)]  # type: ignore[misc]


def _max_err(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def run_parity(ctx: StepContext) -> None:
    """Max abs error of flash / flex / sdpa vs float64, forward and backward, at the scale's attention shapes."""
    llm, dev, dtype = ctx.scale.model.llm, ctx.device, ctx.dtype
    batch = mixed_pack(ctx.scale.model, ctx.scale.parity_tokens, seed=1).to(dev)
    L, hq, hkv, dh = batch.length, llm.num_attention_heads, llm.num_key_value_heads, llm.head_dim
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(L, h, dh, generator=gen).to(dev, dtype) for h in (hq, hkv, hkv))
    g = torch.randn(L, hq, dh, generator=gen).to(dev, dtype)
    mask = batch.dense_mask()
    ctx.results.update(
        tokens=L,
        documents=len(batch.sample_lens),
        heads_q=hq,
        heads_kv=hkv,
        head_dim=dh,
        dtype=str(dtype).removeprefix("torch."),
        mask_density=round(float(mask.float().mean()), 6),
    )

    qd, kd, vd, gd = (t.double() for t in (q, k, v, g))
    ref_out, ref_grads = _fwd_bwd(dense_attention_masked(mask), qd, kd, vd, gd, backward=True)
    del qd, kd, vd, gd
    base_out, base_grads = _fwd_bwd(dense_attention_masked(mask), q, k, v, g, backward=True)
    names = ("dq", "dk", "dv")
    baseline = {"out": _max_err(base_out, ref_out)} | {
        n: _max_err(a, b) for n, a, b in zip(names, base_grads, ref_grads)
    }
    ctx.results["dense_same_dtype"] = {"max_abs_err": baseline}
    ctx.results["ref_max_abs"] = {"out": float(ref_out.abs().max())} | {
        n: float(t.abs().max()) for n, t in zip(names, ref_grads)
    }
    del base_out, base_grads
    floor = FLOOR.get(dtype, 1e-3)

    usable = available_backends(dev)
    per_backend: dict[str, object] = {}
    ctx.results["backends"] = per_backend
    for backend in BACKENDS:
        if backend not in usable:
            why = "needs CUDA" if dev.type != "cuda" else "flash-attn is not installed (the `gpu` extra)"
            if backend == "flash" and dev.type == "cuda" and flash_available():
                why = "flash backend unavailable"
            per_backend[backend] = {"status": "skipped", "reason": f"{backend}: {why}"}
            continue
        if ctx.deadline.expired():
            per_backend[backend] = {"status": "skipped", "reason": "time box ran out before this backend"}
            continue
        backward = not (backend == "flex" and dev.type != "cuda")
        layout = batch.layout()  # fresh: each backend builds (and times) its own mask artefacts

        def call(q_: Tensor, k_: Tensor, v_: Tensor, layout_: AttentionLayout = layout, b: str = backend) -> Tensor:
            return packed_attention(q_, k_, v_, layout_, b)  # type: ignore[arg-type]

        t0 = time.perf_counter()
        try:
            out, grads = _fwd_bwd(call, q, k, v, g, backward=backward)  # first call: flex compiles here on CUDA
            ctx.sync()
        except Exception as exc:  # one broken backend must not hide the others' numbers
            per_backend[backend] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[-2000:]}
            ctx.check(f"{backend}.ran", None, 0.0, "the backend raised (see results.backends)")
            continue
        first_s = time.perf_counter() - t0
        errs = {"out": _max_err(out, ref_out)} | {n: _max_err(a, b) for n, a, b in zip(names, grads, ref_grads)}
        entry: dict[str, object] = {"status": "ran", "max_abs_err": errs, "first_call_s": round(first_s, 3)}
        if not backward:
            entry["backward"] = "skipped: torch has no flex_attention backward on the CPU"
        for part, err in errs.items():
            ctx.check(f"{backend}.{part}", err, 3.0 * baseline[part] + floor, "max abs err vs float64")
        if ctx.deadline.remaining() > 0:

            def again(c: AttnFn = call, bw: bool = backward) -> None:
                _fwd_bwd(c, q, k, v, g, bw)

            timing = timed(again, ctx, iters=3, warmup=0, share=0.3)
            entry["fwd_bwd_s" if backward else "fwd_s"] = round(timing["median_s"], 6)
        per_backend[backend] = entry
    if not any(isinstance(e, dict) and e.get("status") == "ran" for e in per_backend.values()):
        raise StepSkipped("no attention backend ran")


def dense_attention_masked(mask: Tensor) -> AttnFn:
    """``dense_attention`` with ``mask`` bound (moved to the inputs' device)."""

    def fn(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return dense_attention(q, k, v, mask.to(q.device))

    return fn
