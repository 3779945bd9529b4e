"""bf16 precision of the model engine (issue 13): fp32 flow state, autocast with batched CFG, one dtype at the kernel.

References are independent of the code under test: the same weights run in fp32 (drift), the hand-written sequential
path (batched CFG), and the dtypes the kernels actually receive (recorded by wrapping them).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tests._helpers.model import tiny_model
from unimage.model import attention as attention_mod
from unimage.model.attention import AttentionLayout, packed_attention
from unimage.model.cache import Context, prefill
from unimage.model.cpu_gemm import set_fp32_gemm
from unimage.model.generation import CfgOptions, ImageRequest, generate_image, generate_images
from unimage.model.packing import CleanVaeImage, NoisyVaeImage, Text, VitImage, pack

SIZE = (64, 64)  # 4x4 latent tokens of the tiny config


def _contexts(model):
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(16, 4, 4, generator=g)
    full = prefill(model, Context.empty(), [Text([5, 6, 7, 8, 9, 10]), CleanVaeImage(lat)])
    no_text = prefill(model, Context.empty(), [CleanVaeImage(lat)])
    no_img = prefill(model, Context.empty(), [Text([5, 6, 7, 8, 9, 10])])
    return full, no_text, no_img


def _noise():
    return torch.randn(16, 64, generator=torch.Generator().manual_seed(3))


def _sample(model, cfg, **kwargs):
    full, no_text, no_img = _contexts(model)
    return generate_image(
        model, full, SIZE, cfg=cfg, cfg_text_context=no_text, cfg_img_context=no_img, noise=_noise(), **kwargs
    ).float()


@pytest.mark.parametrize("cfg", [None, CfgOptions(text_scale=4.0, img_scale=2.0)], ids=["plain", "cfg"])
def test_50_step_bf16_sampling_drift_under_1_percent(cfg):
    """bf16 weights vs the same weights in fp32 over 50 Euler steps. With the flow state rounded to bf16 at every
    update the drift was 3.4-3.6 % of scale on this model; with the fp32 state it is 0.06-0.2 %."""
    m32 = tiny_model()
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    ref = _sample(m32, cfg, num_timesteps=50)
    out = _sample(m16, cfg, num_timesteps=50)
    drift = ((out - ref).abs().max() / ref.abs().max()).item()
    print(f"\n50-step bf16 drift: {100 * drift:.3f} % of scale")
    assert drift <= 0.01


def test_generate_images_keeps_fp32_state_with_bf16_weights():
    m32 = tiny_model()
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    outs = []
    for m in (m32, m16):
        full, no_text, _ = _contexts(m)
        req = ImageRequest(full, no_text, generator=torch.Generator().manual_seed(4))
        outs.append(generate_images(m, [req], SIZE, cfg=CfgOptions(text_scale=4.0), num_timesteps=50)[0])
    assert outs[1].dtype == torch.float32
    assert ((outs[1] - outs[0]).abs().max() / outs[0].abs().max()).item() <= 0.01


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("batch_cfg", [True, False])
def test_autocast_with_batched_cfg(backend, batch_cfg):
    """fp32 weights under CPU bf16 autocast: the default batched CFG crashed (fp32 output buffer, bf16 kernel
    result); batched and sequential must agree within bf16 noise, and stay close to the fp32 run."""
    model = tiny_model(attention_backend=backend)
    cfg = CfgOptions(text_scale=4.0, img_scale=2.0)
    ref = _sample(model, cfg, num_timesteps=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _sample(model, cfg, num_timesteps=3, batch_cfg=batch_cfg)
        full, no_text, no_img = _contexts(model)
        many = generate_images(model, [ImageRequest(full, no_text, no_img)], SIZE, cfg=cfg, num_timesteps=3)
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 0.05 * scale
    assert many[0].shape == out.shape


def _recording_sdpa(monkeypatch):
    seen: list[tuple[torch.dtype, torch.dtype, torch.dtype]] = []
    real = F.scaled_dot_product_attention

    def rec(q, k, v, *args, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, *args, **kwargs)

    real_math = attention_mod._math_attention  # the CPU bf16 path for masked blocks

    def rec_math(q, k, v, bias, scale):
        seen.append((q.dtype, k.dtype, v.dtype))
        return real_math(q, k, v, bias, scale)

    monkeypatch.setattr(attention_mod.F, "scaled_dot_product_attention", rec)
    monkeypatch.setattr(attention_mod, "_math_attention", rec_math)
    return seen


def _batch(model):
    g = torch.Generator().manual_seed(2)
    samples = [
        [
            Text([1, 2, 3], loss=True),
            VitImage(torch.randn(3, 28, 28, generator=g)),
            NoisyVaeImage(torch.randn(16, 4, 4)),
        ],
        [Text([4, 5], loss=True), NoisyVaeImage(torch.randn(16, 4, 4, generator=g))],
    ]
    return pack(samples, model.config)


@pytest.fixture
def native_bf16_kernels():
    """The native bf16 kernels (``cpu_gemm`` off): the dtype BAGEL's casts give is the one the kernel receives."""
    set_fp32_gemm(False)
    yield
    set_fp32_gemm(None)


@pytest.mark.parametrize("autocast", [False, True])
def test_one_dtype_reaches_the_sdpa_kernel(monkeypatch, autocast, native_bf16_kernels):
    """Under autocast the RMSNorm weight multiply promoted q, k to fp32 beside a bf16 v; BAGEL casts all three to
    bf16. Without autocast every tensor keeps the fp32 activation dtype."""
    model = tiny_model().train()
    seen = _recording_sdpa(monkeypatch)
    want = torch.bfloat16 if autocast else torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(_batch(model), generator=torch.Generator().manual_seed(0)).total
    loss.backward()
    assert seen and all(d == (want, want, want) for d in seen), set(seen)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.language_model.parameters())


def _layout_mixed():
    # one sample: text (3, causal) | image (3, full) | text (2): flash needs a causal and a full call
    doc = torch.zeros(8, dtype=torch.long)
    split = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    full = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0], dtype=torch.bool)
    return AttentionLayout.self_attention(doc, split, full, torch.zeros(8, dtype=torch.bool))


def _varlen_recorder(seen):
    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False, softmax_scale=None):
        seen.append((q.dtype, k.dtype, v.dtype))
        outs = []
        for i in range(len(cu_seqlens_q) - 1):
            qs = q[cu_seqlens_q[i] : cu_seqlens_q[i + 1]].transpose(0, 1)
            ks = k[cu_seqlens_k[i] : cu_seqlens_k[i + 1]].transpose(0, 1)
            vs = v[cu_seqlens_k[i] : cu_seqlens_k[i + 1]].transpose(0, 1)
            lq, lk = qs.shape[1], ks.shape[1]
            mask = torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq) if causal else None
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=softmax_scale, enable_gqa=True)
            outs.append(o.transpose(0, 1))
        return torch.cat(outs)

    return varlen


@pytest.mark.parametrize("backend", ["sdpa", "flex", "flash"])
def test_mixed_input_dtypes_under_autocast_every_backend(monkeypatch, backend, native_bf16_kernels):
    """q, k in fp32 and v in bf16 (what autocast produced before the cast): each backend gets one dtype and
    returns it, including flash's two-call (causal + full) path that allocated its output in q's dtype."""
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(8, 4, 8, generator=g), torch.randn(8, 2, 8, generator=g), torch.randn(8, 2, 8, generator=g)
    layout = _layout_mixed()
    ref = packed_attention(q, k, v, layout, "sdpa", varlen_fn=None)  # fp32, no autocast
    seen: list[tuple[torch.dtype, torch.dtype, torch.dtype]] = []
    varlen = _varlen_recorder(seen) if backend == "flash" else None
    if backend == "sdpa":
        seen = _recording_sdpa(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = packed_attention(q, k, v.bfloat16(), layout, backend, varlen_fn=varlen)
    assert out.dtype == torch.bfloat16
    if backend != "flex":
        assert seen and all(d == (torch.bfloat16,) * 3 for d in seen)
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_fp32_gemm_kernel_gets_bf16_values_in_fp32(monkeypatch):
    """With ``cpu_gemm`` on, the attention kernel runs in fp32 on values that are exactly bf16 (the casts BAGEL makes
    still happen first) and hands back bf16; it agrees with the native bf16 kernel within bf16 rounding."""
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(8, 4, 8, generator=g), torch.randn(8, 2, 8, generator=g), torch.randn(8, 2, 8, generator=g)
    layout = _layout_mixed()
    set_fp32_gemm(False)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            native = packed_attention(q, k, v.bfloat16(), layout, "sdpa")
        set_fp32_gemm(True)
        seen: list[torch.Tensor] = []
        real = F.scaled_dot_product_attention

        def rec(q, k, v, *args, **kwargs):
            seen.extend([q, k, v])
            return real(q, k, v, *args, **kwargs)

        monkeypatch.setattr(attention_mod.F, "scaled_dot_product_attention", rec)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = packed_attention(q, k, v.bfloat16(), layout, "sdpa")
    finally:
        set_fp32_gemm(None)
    assert seen and all(t.dtype == torch.float32 and torch.equal(t, t.bfloat16().float()) for t in seen)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), native.float(), atol=2e-2, rtol=2e-2)
