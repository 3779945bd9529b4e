"""Batching across requests (stories): N contexts' query blocks in one forward equal one at a time."""

from __future__ import annotations

import pytest
import torch

from tests._helpers.model import context_segments, tiny_model
from unimage.model.cache import Context, prefill, prepare_branches, run_branches
from unimage.model.generation import CfgOptions, ImageRequest, _velocity, generate_image, generate_images
from unimage.model.packing import NoisyVaeImage, Text, pack

SIZE = (32, 48)  # 2x3 latent tokens -> 6 latent tokens of 64 values


def _story_contexts(model, n):
    """n different (c, t̄, ī) triples: story s ends with its own text of s + 1 tokens, so the stories really differ."""
    segs = context_segments(model.config.layout.id_prompting)
    out = []
    for s in range(n):
        story = Text([20 + s] * (s + 1))
        full = prefill(model, Context.empty(), [*segs, story])
        no_text = prefill(model, Context.empty(), segs)  # t̄: without the latest text
        no_img = prefill(model, Context.empty(), [segs[0], segs[3], story])  # ī: text only
        out.append((full, no_text, no_img))
    return out


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_velocities_of_n_contexts_with_own_queries_equal_one_at_a_time(backend):
    model = tiny_model(id_prompting=True, attention_backend=backend)
    ctxs = [c for triple in _story_contexts(model, 3) for c in triple] + [Context.empty()]  # 10 docs, one uncached
    assert len({c.length for c in ctxs}) > 3  # caches of different lengths
    ids = [[300 + d % 3] * (1 + d % 2) for d in range(len(ctxs))]  # ID tokens of different counts per document
    queries = [[NoisyVaeImage(torch.zeros(16, 4, 6), id_token_ids=i)] for i in ids]
    branches = prepare_branches(model, ctxs, [], queries)
    xs = torch.randn(len(ctxs), 6, 64)  # [n, Nl, Pl], a different latent per document
    t = torch.full((6,), 0.6)
    with torch.no_grad():
        hidden = run_branches(model, branches, xs.flatten(0, 1), t.repeat(len(ctxs)))
        batched = model.llm2vae(hidden[branches.batch.vae_indexes]).view(len(ctxs), 6, 64)
        for d, (ctx, q) in enumerate(zip(ctxs, queries)):
            v = _velocity(model, ctx, pack([q], model.config, ctx.next_position), xs[d], t)
            assert v.abs().max() > 0.1
            assert (batched[d] - v).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="2 queries for 10 contexts"):
        prepare_branches(model, ctxs, [], queries[:2])


@pytest.mark.parametrize("img_scale", [1.0, 2.0])
def test_generate_images_equals_generate_image_per_request(img_scale):
    model = tiny_model(id_prompting=True)
    # Interval (0.4, 1]: guided steps (all branches batched), then plain steps (the c branches only).
    opts = CfgOptions(text_scale=3.0, img_scale=img_scale, interval=(0.4, 1.0), renorm_type="global")
    triples = _story_contexts(model, 3)
    ids = [[300], [301, 302], []]
    kw = {"num_timesteps": 5, "timestep_shift": 3.0}
    requests = [
        ImageRequest(*tr, id_token_ids=i, generator=torch.Generator().manual_seed(10 + r))
        for r, (tr, i) in enumerate(zip(triples, ids))
    ]
    batched = generate_images(model, requests, SIZE, opts, **kw)
    singles = [
        generate_image(
            model, tr[0], SIZE, opts, *tr[1:], id_token_ids=i, generator=torch.Generator().manual_seed(10 + r), **kw
        )
        for r, (tr, i) in enumerate(zip(triples, ids))
    ]
    assert len(batched) == 3
    for b, s in zip(batched, singles):
        assert b.shape == s.shape == (16, 4, 6)
        assert (b - s).abs().max() <= 1e-5
    assert (singles[0] - singles[1]).abs().max() > 1e-2  # the requests differ, so the equality is not vacuous
    # The debug switch: every (request, branch) as its own forward over its own cache, the same loop otherwise.
    fresh = [
        ImageRequest(*tr, id_token_ids=i, generator=torch.Generator().manual_seed(10 + r))
        for r, (tr, i) in enumerate(zip(triples, ids))
    ]  # the first call advanced the generators
    sequential = generate_images(model, fresh, SIZE, opts, batch_cfg=False, **kw)
    for b, q in zip(batched, sequential):
        assert (b - q).abs().max() <= 1e-5
    with pytest.raises(ValueError, match=r"request 0: .* t̄"):
        generate_images(model, [ImageRequest(triples[0][0])], SIZE, opts)
    with pytest.raises(ValueError, match="at least one"):
        generate_images(model, [], SIZE, opts)
