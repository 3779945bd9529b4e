"""Batched CFG: the guidance branches of a denoising step in one forward give the sequential velocities and latents."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests._helpers.attention import explicit_attention, reference_varlen
from tests._helpers.model import context_segments, tiny_model
from unimage.model.attention import AttentionLayout, packed_attention
from unimage.model.cache import Context, prefill, prepare_branches
from unimage.model.generation import CfgOptions, _batched_velocities, _velocity, combine_cfg, generate_image
from unimage.model.packing import NoisyVaeImage, pack

SIZE = (32, 48)  # 2x3 latent tokens of 2x2 patches -> 6 latent tokens


def _doc_prefix_layout():
    """Two 3-token image queries (docs 0, 1) over caches of 2 and 0 keys, and a 2-token query (doc 2) over 3 keys."""
    doc = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    split = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    full = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)  # doc 2 is causal text
    noise = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    return AttentionLayout.self_attention(doc, split, full, noise).with_doc_prefixes([2, 0, 3])


def test_doc_prefix_mask_is_cache_then_own_query():
    # keys: c0 c0 | c2 c2 c2 | q0 q0 q0 | q1 q1 q1 | q2 q2
    rows = [
        "1100011100000",
        "1100011100000",
        "1100011100000",
        "0000000011100",  # doc 1 has an empty cache: only its own block
        "0000000011100",
        "0000000011100",
        "0011100000010",  # doc 2: its cache, then causal text
        "0011100000011",
    ]
    expected = torch.tensor([[c == "1" for c in r] for r in rows])
    layout = _doc_prefix_layout()
    assert torch.equal(layout.dense_mask(), expected)
    assert not layout.is_fully_visible()
    with pytest.raises(ValueError, match="3 documents"):
        layout.with_doc_prefixes([1, 1])


@pytest.mark.parametrize("backend", ["sdpa", "sdpa_dense", "flex", "flash"])
def test_doc_prefix_backends_equal_explicit_softmax(backend):
    layout = _doc_prefix_layout()
    assert layout.per_doc  # sdpa: one call per document; sdpa_dense: the single block-masked call
    if backend == "sdpa_dense":
        layout, backend = dataclasses.replace(layout, per_doc=False, _memo={}), "sdpa"
    q, k, v = torch.randn(8, 4, 8), torch.randn(13, 2, 8), torch.randn(13, 2, 8)  # 5 cached + 8 query keys
    varlen = reference_varlen if backend == "flash" else None  # flash-attn semantics in torch: the cu_seqlens path
    out = packed_attention(q, k, v, layout, backend, varlen_fn=varlen)
    torch.testing.assert_close(out, explicit_attention(q, k, v, layout.dense_mask()), atol=1e-5, rtol=1e-5)


def _contexts(model):
    segs = context_segments(model.config.layout.id_prompting)
    full = prefill(model, Context.empty(), segs)
    no_text = prefill(model, Context.empty(), segs[:3])  # t̄: without the latest text
    no_img = prefill(model, Context.empty(), [segs[0], segs[3]])  # ī: text only
    return full, no_text, no_img


@pytest.mark.parametrize("id_prompting", [False, True])
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("t2i", [False, True])
def test_batched_branch_velocities_equal_sequential(id_prompting, backend, t2i):
    model = tiny_model(id_prompting=id_prompting, attention_backend=backend)
    full, no_text, no_img = _contexts(model)
    if t2i:
        no_text = Context.empty()  # text-to-image: t̄ is empty, so one document has no cache at all
    ctxs = [full, no_text, no_img]
    placeholder = NoisyVaeImage(torch.zeros(16, 4, 6), id_token_ids=[300, 302] if id_prompting else [])
    branches = prepare_branches(model, ctxs, [placeholder])
    assert branches.batch.next_positions == [c.next_position for c in ctxs]
    x, t = torch.randn(6, 64), torch.full((6,), 0.7)
    with torch.no_grad():
        batched = _batched_velocities(model, branches, x, t)
        for ctx, vb in zip(ctxs, batched):
            vs = _velocity(model, ctx, pack([[placeholder]], model.config, ctx.next_position), x, t)
            assert vs.abs().max() > 0.1  # not trivially zero
            assert (vb - vs).abs().max() <= 1e-5


def _one_step_velocity(model, ctxs, opts, x0, batch_cfg):
    """The combined velocity of generate_image's single step: N = 2, shift 1 -> x1 = x0 − v·1 at t = 1."""
    out = generate_image(
        model, ctxs[0], SIZE, opts, *ctxs[1:], num_timesteps=2, timestep_shift=1.0, noise=x0, **batch_cfg
    )
    x1 = out.reshape(16, 2, 2, 3, 2).permute(1, 3, 2, 4, 0).reshape(6, 64)  # patchify back: [Nl, Pl]
    return x0 - x1


@pytest.mark.parametrize("renorm_type", ["global", "channel", "text_channel"])
@pytest.mark.parametrize("img_scale", [1.0, 2.0])
def test_guided_velocity_of_generate_image_equals_sequential(renorm_type, img_scale):
    model = tiny_model()
    ctxs = _contexts(model)
    opts = CfgOptions(text_scale=4.0, img_scale=img_scale, interval=(0.0, 1.0), renorm_type=renorm_type)
    x0 = torch.randn(6, 64)
    v_seq = _one_step_velocity(model, ctxs, opts, x0, {"batch_cfg": False})
    v_bat = _one_step_velocity(model, ctxs, opts, x0, {})  # batch_cfg defaults to True
    # Independent reference: the branch velocities one by one, combined by the hand-checked combine_cfg.
    placeholder = NoisyVaeImage(torch.zeros(16, 4, 6))
    with torch.no_grad():
        vs = [
            _velocity(model, c, pack([[placeholder]], model.config, c.next_position), x0, torch.ones(6)) for c in ctxs
        ]
    ref = combine_cfg(vs[0], vs[1], vs[2] if img_scale > 1 else None, 4.0, img_scale, renorm_type)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(v_seq, ref, atol=1e-5, rtol=0)
    assert (v_bat - v_seq).abs().max() <= 1e-5


@pytest.mark.parametrize("img_scale", [1.0, 2.0])
def test_few_step_generation_latents_equal(img_scale):
    model = tiny_model(id_prompting=True)
    ctxs = _contexts(model)
    # Interval (0.4, 1]: guided (batched) steps first, then plain conditional steps (the unbatched path).
    opts = CfgOptions(text_scale=3.0, img_scale=img_scale, interval=(0.4, 1.0), renorm_type="global")
    kw = {"id_token_ids": [300, 301], "num_timesteps": 5, "timestep_shift": 3.0}
    g = torch.Generator()
    seq = generate_image(model, ctxs[0], SIZE, opts, *ctxs[1:], generator=g.manual_seed(1), batch_cfg=False, **kw)
    bat = generate_image(model, ctxs[0], SIZE, opts, *ctxs[1:], generator=g.manual_seed(1), batch_cfg=True, **kw)
    plain = generate_image(model, ctxs[0], SIZE, None, generator=g.manual_seed(1), **kw)
    assert (bat - seq).abs().max() <= 1e-5
    assert (plain - seq).abs().max() > 1e-2  # guidance changed the result, so the comparison above is not vacuous
