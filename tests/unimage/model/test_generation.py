"""KV-cache inference equals full recomputation; CFG arithmetic and the Euler sampler against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from tests._helpers.model import context_segments, tiny_model
from unimage.model.cache import Context, prefill
from unimage.model.generation import (
    CfgOptions,
    _velocity,
    combine_cfg,
    flow_timesteps,
    generate_image,
    generate_text,
    sample_next_token,
)
from unimage.model.packing import NoisyVaeImage, Text, pack, pack_tokens


def _full_hidden(model, segments, noisy_x=None, t=0.0):
    b = pack([segments], model.config)
    x = b.vae_latents.clone()
    tt = torch.zeros(x.shape[0])
    if noisy_x is not None:
        x[b.vae_token_noisy] = noisy_x
        tt[b.vae_token_noisy] = t
    with torch.no_grad():
        return b, model.hidden_states(b, x, tt)[0]


@pytest.mark.parametrize("id_prompting", [False, True])
def test_cached_decoding_equals_full_recomputation(id_prompting):
    model = tiny_model(id_prompting=id_prompting)
    segs = context_segments(model.config.layout.id_prompting)
    ctx = prefill(model, Context.empty(), segs[:1])
    ctx = prefill(model, ctx, segs[1:])  # two prefill calls: positions and cache must chain
    b_prefix = pack([segs], model.config)
    assert ctx.length == b_prefix.length and ctx.next_position == b_prefix.next_positions[0]

    generated = generate_text(model, ctx, max_length=6)
    assert len(generated) == 6  # a random tiny model does not hit <|im_end|> this early

    # Full recomputation: the same context followed by <|im_start|> + generated as a text segment.
    _, hidden = _full_hidden(model, [*segs, Text(generated)])
    start = b_prefix.length
    full_logits = model.language_model.lm_head(hidden[start : start + 6])  # at <|im_start|>, g1..g5
    assert full_logits.argmax(-1).tolist() == generated

    # Teacher-forced cached decoding gives the same logits, token by token.
    tokens = [model.config.tokens.im_start, *generated[:-1]]
    cached = []
    with torch.no_grad():
        for i, tok in enumerate(tokens):
            q = pack_tokens([tok], model.config, start_position=ctx.next_position)
            h, kv = model.hidden_states(q, torch.empty(0, 64), torch.empty(0), past=ctx.past)
            ctx = ctx.extended(kv, 1, ctx.next_position + 1)
            cached.append(model.language_model.lm_head(h[-1]))
            assert ctx.length == start + i + 1
    torch.testing.assert_close(torch.stack(cached), full_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("id_prompting", [False, True])
def test_denoising_step_over_cache_equals_full_forward(id_prompting):
    model = tiny_model(id_prompting=id_prompting)
    segs = context_segments(model.config.layout.id_prompting)
    ctx = prefill(model, Context.empty(), segs)
    kv_before = [k.clone() for k, _ in ctx.kv]
    x = torch.randn(6, 64)
    block = pack(
        [[NoisyVaeImage(torch.zeros(16, 4, 6), id_token_ids=[303] if id_prompting else [])]],
        model.config,
        ctx.next_position,
    )
    with torch.no_grad():
        v_cached = _velocity(model, ctx, block, x, torch.full((6,), 0.7))
    b, hidden = _full_hidden(
        model, [*segs, NoisyVaeImage(torch.zeros(16, 4, 6), id_token_ids=[303] if id_prompting else [])], x, 0.7
    )
    v_full = model.llm2vae(hidden[b.mse_indexes])
    torch.testing.assert_close(v_cached, v_full, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(k, k0) for (k, _), k0 in zip(ctx.kv, kv_before))  # the context did not grow


def test_combine_cfg_hand_values():
    v_c = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    v_t = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    v_i = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    u = torch.tensor([[5.0, 8.0], [0.0, 2.0]])  # v_t + 2 (v_c - v_t)

    glob = combine_cfg(v_c, v_t, None, 2.0, 1.0, "global")
    torch.testing.assert_close(glob, u * math.sqrt(26 / 93))
    chan = combine_cfg(v_c, v_t, None, 2.0, 1.0, "channel")
    torch.testing.assert_close(chan, u * torch.tensor([[5 / math.sqrt(89)], [0.5]]))
    # renorm_min = 1 disables renorm (it never scales up)
    torch.testing.assert_close(combine_cfg(v_c, v_t, None, 2.0, 1.0, "global", renorm_min=1.0), u)

    # text_channel: renorm per token after the text step, then the image step without renorm
    u_renormed = torch.tensor([[5 * 5 / math.sqrt(89), 8 * 5 / math.sqrt(89)], [0.0, 1.0]])
    tc = combine_cfg(v_c, v_t, v_i, 2.0, 1.5, "text_channel")
    torch.testing.assert_close(tc, v_i + 1.5 * (u_renormed - v_i))

    # global with image guidance: image step first, then one whole-tensor renorm
    u2 = v_i + 1.5 * (u - v_i)
    torch.testing.assert_close(combine_cfg(v_c, v_t, v_i, 2.0, 1.5, "global"), u2 * math.sqrt(26) / u2.norm())

    # no guidance unless the text scale is > 1, whatever the image scale
    assert torch.equal(combine_cfg(v_c, v_t, v_i, 1.0, 3.0, "global"), v_c)


def test_cfg_interval_and_schedule():
    opts = CfgOptions(text_scale=4.0, img_scale=1.5, interval=(0.4, 1.0))
    assert opts.active(0.4) == (1.0, 1.0) and opts.active(0.41) == (4.0, 1.5) and opts.active(1.0) == (4.0, 1.5)
    ts = flow_timesteps(5, 3.0)
    expected = [3 * t / (1 + 2 * t) for t in (1.0, 0.75, 0.5, 0.25, 0.0)]
    torch.testing.assert_close(ts, torch.tensor(expected))


def test_generate_image_equals_hand_rolled_euler_with_three_branches():
    model = tiny_model()
    segs = context_segments(model.config.layout.id_prompting)
    g_ctx = prefill(model, Context.empty(), segs)
    t_ctx = prefill(model, Context.empty(), segs[:3])  # without the latest text
    i_ctx = prefill(model, Context.empty(), [segs[0], segs[3]])  # text only, no images
    opts = CfgOptions(text_scale=3.0, img_scale=2.0, interval=(0.6, 1.0), renorm_type="channel", renorm_min=0.0)
    x0 = torch.randn(6, 64)
    out = generate_image(model, g_ctx, (32, 48), opts, t_ctx, i_ctx, num_timesteps=3, timestep_shift=1.0, noise=x0)
    assert out.shape == (16, 4, 6)

    def v(ctx, x, t):
        block = pack([[NoisyVaeImage(torch.zeros(16, 4, 6))]], model.config, ctx.next_position)
        with torch.no_grad():
            return _velocity(model, ctx, block, x, torch.full((6,), t))

    x = x0
    # step 1, t = 1.0: inside the interval, three branches
    v1 = combine_cfg(v(g_ctx, x, 1.0), v(t_ctx, x, 1.0), v(i_ctx, x, 1.0), 3.0, 2.0, "channel")
    x = x - v1 * 0.5
    # step 2, t = 0.5: outside the interval, the plain conditional velocity
    x = x - v(g_ctx, x, 0.5) * 0.5
    expected = x.reshape(2, 3, 2, 2, 16).permute(4, 0, 2, 1, 3).reshape(16, 4, 6)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_generate_image_validates_inputs():
    model = tiny_model()
    ctx = prefill(model, Context.empty(), [Text([1])])
    with pytest.raises(ValueError, match="multiples of 16"):
        generate_image(model, ctx, (40, 32))
    with pytest.raises(ValueError, match="cfg_text_context"):
        generate_image(model, ctx, (32, 32), CfgOptions(text_scale=4.0))
    with pytest.raises(ValueError, match="NoisyVaeImage"):
        prefill(model, ctx, [NoisyVaeImage(torch.zeros(16, 2, 2))])


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    g = torch.Generator().manual_seed(0)
    draws = [sample_next_token(logits, True, 1.0, 0.6, g) for _ in range(400)]
    assert set(draws) == {0, 1}
    assert abs(draws.count(0) / 400 - 0.5 / 0.8) < 0.08
    assert {sample_next_token(logits, True, 1.0, 0.5, g) for _ in range(50)} == {0}
    assert sample_next_token(torch.tensor([0.1, 2.0, 0.3])) == 1  # greedy


def test_generate_text_stops_at_im_end():
    model = tiny_model()
    im_end, vocab = model.config.tokens.im_end, model.config.llm.vocab_size

    class Scripted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, h):
            self.calls += 1
            logits = torch.zeros(vocab)
            logits[[42, 43, im_end][min(self.calls - 1, 2)]] = 1.0
            return logits

    model.language_model.lm_head = Scripted()
    ctx = prefill(model, Context.empty(), [Text([1, 2])])
    assert generate_text(model, ctx, max_length=10) == [42, 43]
    model.language_model.lm_head.calls = 0
    assert generate_text(model, ctx, max_length=1) == [42]


def test_guidance_contexts_follow_bagel_update_rules():
    from unimage.model.cache import GuidanceContexts

    model = tiny_model()
    segs = context_segments(model.config.layout.id_prompting)
    image = [segs[2], segs[1]]  # an input image: VAE block, then ViT block
    n_text = len(segs[0].token_ids) + 2
    n_img = pack([image], model.config).length

    t2i = GuidanceContexts().add_text(model, segs[0].token_ids)
    assert t2i.cfg_text.length == 0 and t2i.full.length == t2i.cfg_img.length == n_text

    edit = GuidanceContexts().add_images(model, image).add_text(model, segs[0].token_ids)
    assert edit.full.length == n_img + n_text and edit.full.next_position == 2 + n_text
    assert edit.cfg_text.length == n_img and edit.cfg_text.next_position == 2  # image without the instruction
    assert edit.cfg_img.length == n_text and edit.cfg_img.next_position == n_text  # instruction without the image
    direct = prefill(model, Context.empty(), [*image, segs[0]])
    torch.testing.assert_close(edit.full.kv[1][0], direct.kv[1][0], atol=1e-5, rtol=1e-5)


def test_vocab_limit_keeps_generation_decodable():
    model = tiny_model()
    ctx = prefill(model, Context.empty(), [Text([1, 2])])
    limited = generate_text(
        model, ctx, max_length=20, do_sample=True, generator=torch.Generator().manual_seed(0), vocab_limit=300
    )
    assert len(limited) >= 10 and max(limited) < 300  # unrestricted, ids 300..639 would hold ~53% of the draws
    with pytest.raises(ValueError, match="vocab_limit"):
        generate_text(model, ctx, vocab_limit=10_000)
