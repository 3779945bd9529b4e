"""Attention backends agree with an explicit softmax under the generalized causal mask, and with each other."""

from __future__ import annotations

import pytest
import torch

from tests._helpers.attention import explicit_attention, reference_varlen
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


def test_dense_mask_equals_hand_written_mask():
    assert torch.equal(_layout().dense_mask(), _hand_mask())


@pytest.mark.parametrize("backend", ["sdpa", "flex", "flash"])
def test_backends_equal_explicit_softmax(backend):
    layout = _layout()
    q, k, v = torch.randn(15, 4, 8), torch.randn(15, 2, 8), torch.randn(15, 2, 8)
    ref = explicit_attention(q, k, v, _hand_mask())
    varlen = reference_varlen if backend == "flash" else None
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
    varlen = reference_varlen if backend == "flash" else None
    out = packed_attention(q, k, v, layout, backend, varlen_fn=varlen)
    torch.testing.assert_close(out, explicit_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)


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
    ref = explicit_attention(q.float(), k.float(), v.float(), _hand_mask())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
    torch.testing.assert_close(out.float(), dense.float(), atol=tol, rtol=tol)
    assert "sdpa" not in layout._memo  # no [L, L] mask was built for the per-document path


def _layout_plan():
    # One sample: text(3) | image(3, full) | noisy(2) | text(2) | text(12) | text(2). The last text sees 22 keys with
    # 2 queries: a causal call would compute 22²/2 scores for 2 rows, so it keeps a mask.
    n = 24
    split = torch.tensor([0] * 3 + [1] * 3 + [2] * 2 + [3] * 2 + [4] * 12 + [5] * 2)
    full = (split == 1) | (split == 2)
    return AttentionLayout.self_attention(torch.zeros(n, dtype=torch.long), split, full, split == 2)


def test_split_plan_runs_images_unmasked_and_text_causally():
    """Each query split becomes one call: images unmasked over the keys they see, text split after its prefix as an
    is_causal call over prefix ++ split (the prefix rows' outputs dropped), a short text after a long context
    masked; the text after the noisy image gathers its keys (noisy columns skipped)."""
    from unimage.model.attention import _split_plan

    calls = _split_plan(_layout_plan())
    kinds = [("causal" if c.causal else "masked" if c.mask is not None else "full") for c in calls]
    assert kinds == ["causal", "full", "full", "causal", "causal", "masked"]
    assert [(c.out.start, c.out.stop) for c in calls] == [(0, 3), (3, 6), (6, 8), (8, 10), (10, 22), (22, 24)]
    assert calls[3].q == slice(2, 10)  # 6 visible prefix keys: 6 rows before the split ride along
    assert torch.equal(calls[3].k, torch.tensor([0, 1, 2, 3, 4, 5, 8, 9]))  # noisy keys 6, 7 skipped
    assert calls[1].k == slice(0, 6) and calls[2].k == slice(0, 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_plan_values_and_gradients_equal_dense_reference(dtype):
    """Forward and backward of the per-split path equal the dense-masked call (and the fp64 softmax): the dropped
    rows of a causal call contribute no gradient."""
    import dataclasses

    layout = _layout_plan()
    mask = layout.dense_mask()
    g = torch.Generator().manual_seed(5)
    base = [torch.randn(24, h, 8, generator=g).to(dtype) for h in (4, 2, 2)]
    grad_out = torch.randn(24, 4, 8, generator=g).to(dtype)
    results = []
    for lay in (layout, dataclasses.replace(layout, per_doc=False, _memo={})):
        q, k, v = (t.clone().requires_grad_() for t in base)
        out = packed_attention(q, k, v, lay, "sdpa")
        out.backward(grad_out)
        results.append((out.detach().float(), q.grad.float(), k.grad.float(), v.grad.float()))
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    ref = explicit_attention(*(t.float() for t in base), mask)
    torch.testing.assert_close(results[0][0], ref, atol=tol, rtol=tol)
    for ours, dense in zip(results[0], results[1]):
        torch.testing.assert_close(ours, dense, atol=tol, rtol=tol)
