"""The parity step's reference and criterion: ``dense_attention`` against PyTorch's own math attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unimage.gpucheck.parity import FLOOR, dense_attention
from unimage.gpucheck.workload import mixed_pack
from unimage.model.config import get_config


def _inputs(dtype, L=None):
    batch = mixed_pack(get_config("tiny"), 96, seed=5)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch.length, 4, 16, generator=gen, dtype=torch.float64)
    k = torch.randn(batch.length, 2, 16, generator=gen, dtype=torch.float64)
    v = torch.randn(batch.length, 2, 16, generator=gen, dtype=torch.float64)
    return batch.dense_mask(), q.to(dtype), k.to(dtype), v.to(dtype)


def test_dense_attention_equals_torch_math_sdpa_in_float64_forward_and_backward():
    mask, q, k, v = _inputs(torch.float64)
    qs, ks, vs = (t.clone().requires_grad_() for t in (q, k, v))
    qr, kr, vr = (t.clone().requires_grad_() for t in (q, k, v))
    ours = dense_attention(qs, ks, vs, mask)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(
            qr.transpose(0, 1)[None],
            kr.transpose(0, 1)[None],
            vr.transpose(0, 1)[None],
            attn_mask=mask,
            enable_gqa=True,
        )[0].transpose(0, 1)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ours)
    ours.backward(g)
    ref.backward(g)
    for a, b in zip((qs, ks, vs), (qr, kr, vr)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_the_criterion_separates_a_kernel_from_a_wrong_mask():
    """A bf16 run of the right mask stays within 3× the same-dtype baseline + floor; a transposed mask does not."""
    mask, q, k, v = _inputs(torch.float64)
    ref = dense_attention(q, k, v, mask)
    qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
    baseline = float(
        (dense_attention(qb, kb, vb, mask).double() - dense_attention(qb.double(), kb.double(), vb.double(), mask))
        .abs()
        .max()
    )
    limit = 3 * baseline + FLOOR[torch.bfloat16]
    right = dense_attention(qb.float(), kb.float(), vb.float(), mask).double()  # fp32 math on bf16 inputs
    wrong = dense_attention(
        qb.float(), kb.float(), vb.float(), mask.T.contiguous() | torch.eye(len(mask), dtype=torch.bool)
    ).double()
    exact = dense_attention(qb.double(), kb.double(), vb.double(), mask)
    assert float((right - exact).abs().max()) <= limit
    assert float((wrong - exact).abs().max()) > 10 * limit
    assert float((ref - exact).abs().max()) > 0  # the inputs' rounding is excluded from the comparison by design
