"""Attention backends agree with an explicit softmax under the generalized causal mask, and with each other."""

from __future__ import annotations

import math

import pytest
import torch

from unimage.model.attention import AttentionLayout, packed_attention, resolve_backend


def _layout():
    # Two samples. Sample 0: text(3, causal) | image(3, full) | noisy(2) | text(2); sample 1: text(2) | noisy(3).
    doc = torch.tensor([0] * 10 + [1] * 5)
    split = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5])
    full = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1], dtype=torch.bool)
    noise = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1], dtype=torch.bool)
    return AttentionLayout.self_attention(doc, split, full, noise)


def _hand_mask():
    """The same mask written out by hand (row = query, 1 = may attend)."""
    rows = [
        "100000000000000",
        "110000000000000",
        "111000000000000",
        "111111000000000",  # image: sees earlier text and the whole image
        "111111000000000",
        "111111000000000",
        "111111110000000",  # noisy: sees everything before and itself
        "111111110000000",
        "111111001000000",  # text after the noisy block: noisy columns cleared
        "111111001100000",
        "000000000010000",  # sample 1
        "000000000011000",
        "000000000011111",
        "000000000011111",
        "000000000011111",
    ]
    return torch.tensor([[c == "1" for c in r] for r in rows])


def _explicit_attention(q, k, v, mask):
    """softmax(q·kᵀ/√d + log mask)·v per head, with kv heads repeated for GQA (independent reference)."""
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k.double()) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask[None], float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.double()).float()


def _reference_varlen(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False, softmax_scale=None
):
    """flash_attn_varlen_func semantics in plain torch (bottom-right-aligned causal), for the flash backend's plumbing."""
    outs = []
    for i in range(len(cu_seqlens_q) - 1):
        qs = q[cu_seqlens_q[i] : cu_seqlens_q[i + 1]]
        ks = k[cu_seqlens_k[i] : cu_seqlens_k[i + 1]]
        vs = v[cu_seqlens_k[i] : cu_seqlens_k[i + 1]]
        lq, lk = qs.shape[0], ks.shape[0]
        mask = torch.ones(lq, lk, dtype=torch.bool)
        if causal:
            mask = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        outs.append(_explicit_attention(qs, ks, vs, mask))
    return torch.cat(outs)


def test_dense_mask_equals_hand_written_mask():
    assert torch.equal(_layout().dense_mask(), _hand_mask())


@pytest.mark.parametrize("backend", ["sdpa", "flex", "flash"])
def test_backends_equal_explicit_softmax(backend):
    layout = _layout()
    q, k, v = torch.randn(15, 4, 8), torch.randn(15, 2, 8), torch.randn(15, 2, 8)
    ref = _explicit_attention(q, k, v, _hand_mask())
    varlen = _reference_varlen if backend == "flash" else None
    out = packed_attention(q, k, v, layout, backend, varlen_fn=varlen)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "flex", "flash"])
@pytest.mark.parametrize("full", [False, True])
def test_backends_with_cache_prefix(backend, full):
    """Query block over cached keys: text (causal, bottom-right aligned) or an image block (full)."""
    n_cache, n_new = 6, 4
    layout = AttentionLayout.self_attention(
        torch.zeros(n_new, dtype=torch.long),
        torch.full((n_new,), 7),
        torch.full((n_new,), full),
        torch.zeros(n_new, dtype=torch.bool),
    ).with_prefix(n_cache)
    mask = torch.ones(n_new, n_cache + n_new, dtype=torch.bool)
    if not full:
        mask[:, n_cache:] = torch.ones(n_new, n_new).tril().bool()
    assert torch.equal(layout.dense_mask(), mask)
    assert layout.is_fully_visible() == full
    q, k, v = torch.randn(n_new, 4, 8), torch.randn(n_cache + n_new, 2, 8), torch.randn(n_cache + n_new, 2, 8)
    varlen = _reference_varlen if backend == "flash" else None
    out = packed_attention(q, k, v, layout, backend, varlen_fn=varlen)
    torch.testing.assert_close(out, _explicit_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_resolve_backend():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "sdpa"
    assert resolve_backend("flex", cpu) == "flex"
    with pytest.raises(ValueError, match="flash"):
        resolve_backend("flash", cpu)
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("xformers", cpu)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_per_document_path_equals_dense_reference(dtype):
    """Per-document attention (fused SDPA in fp32, the explicit GQA softmax for masked blocks in bf16 on CPU) equals
    the single dense-masked call and the explicit fp64 softmax; documents never see each other."""
    import dataclasses

    layout = _layout()
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(15, h, 8, generator=g).to(dtype) for h in (4, 2, 2))
    out = packed_attention(q, k, v, layout, "sdpa")
    dense = packed_attention(q, k, v, dataclasses.replace(layout, per_doc=False, _memo={}), "sdpa")
    ref = _explicit_attention(q.float(), k.float(), v.float(), _hand_mask())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
    torch.testing.assert_close(out.float(), dense.float(), atol=tol, rtol=tol)
    assert "sdpa" not in layout._memo  # no [L, L] mask was built for the per-document path
