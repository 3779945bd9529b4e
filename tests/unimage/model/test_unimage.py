"""UniMAGE forward: losses against hand computation, sample independence, gradients reaching the right experts."""

from __future__ import annotations

import torch

from tests._helpers.model import tiny_model
from unimage.model.packing import CleanVaeImage, NoisyVaeImage, Text, VitImage, pack


def _sample(timestep=0.5):
    return [
        Text([1, 2, 3], loss=True),
        VitImage(torch.randn(3, 28, 28), id_token_ids=[300]),
        CleanVaeImage(torch.randn(16, 4, 4), id_token_ids=[301]),
        Text([4, 5, 6, 7], loss=True),
        NoisyVaeImage(torch.randn(16, 4, 6), id_token_ids=[301], timestep=timestep),
    ]


def test_losses_equal_hand_computation():
    model = tiny_model(timestep_shift=3.0, ce_weight=0.25, mse_weight=2.0, id_prompting=True)
    b = pack(
        [_sample(0.5), [Text([8, 9], loss=True), NoisyVaeImage(torch.randn(16, 2, 2), timestep=0.2)]], model.config
    )
    noise = torch.randn_like(b.vae_latents)
    terms = model(b, noise=noise)

    # shift 3: t' = 3t / (1 + 2t)  ->  0.5 -> 0.75, 0.2 -> 0.6/1.4
    t_img = torch.tensor([0.0, 0.75, 0.6 / 1.4])
    t = t_img[b.vae_image_index]
    noisy = b.vae_token_noisy
    x0 = b.vae_latents
    x_t = torch.where(noisy[:, None], (1 - t[:, None]) * x0 + t[:, None] * noise, x0)
    with torch.no_grad():
        hidden, _ = model.hidden_states(b, x_t, t * noisy)
        logp = model.language_model.lm_head(hidden[b.ce_indexes]).log_softmax(-1)
        ce = -logp.gather(1, b.ce_labels[:, None]).mean()
        v = model.llm2vae(hidden[b.vae_indexes[noisy]])
        mse = ((v - (noise - x0)[noisy]) ** 2).mean()  # every token has 64 channels: per-token mean = overall mean
    assert terms.num_ce_tokens == 4 + 5 + 3 and terms.num_mse_tokens == 6 + 1
    torch.testing.assert_close(terms.ce, ce)
    torch.testing.assert_close(terms.mse, mse)
    torch.testing.assert_close(terms.total, 0.25 * ce + 2.0 * mse)
    torch.testing.assert_close(terms.ce_sum, ce * 12)


def test_drawn_timesteps_are_logit_normal_from_the_generator():
    model = tiny_model()
    b = pack([_sample(None), [NoisyVaeImage(torch.randn(16, 2, 2))]], model.config)
    _, t, target = model.flow_inputs(b, generator=torch.Generator().manual_seed(7))
    u = torch.randn(3, generator=torch.Generator().manual_seed(7))  # one u per VAE image, clean ones ignored
    assert torch.equal(t[b.vae_image_index == 0], torch.zeros(4))
    torch.testing.assert_close(t[b.vae_image_index == 1], torch.sigmoid(u[1]).expand(6))
    torch.testing.assert_close(t[b.vae_image_index == 2], torch.sigmoid(u[2]).expand(1))
    assert torch.equal(target[~b.vae_token_noisy], torch.zeros(4, 64))


def test_samples_in_a_pack_do_not_interact():
    model = tiny_model(id_prompting=True)
    s1, s2 = _sample(), [Text([7, 7, 7]), VitImage(torch.randn(3, 14, 28)), Text([1], loss=True)]
    both, alone = pack([s1, s2], model.config), pack([s2], model.config)
    with torch.no_grad():
        h_both, _ = model.hidden_states(both, both.vae_latents, torch.zeros(both.vae_latents.shape[0]))
        h_alone, _ = model.hidden_states(alone, alone.vae_latents, torch.zeros(0))
    torch.testing.assert_close(h_both[both.sample_lens[0] :], h_alone, atol=1e-5, rtol=1e-5)


def _grads(model):
    out = {}
    for name, p in model.named_parameters():
        out[name] = 0.0 if p.grad is None else float(p.grad.abs().sum())
    return out


def _lm(grads, gen):
    return {k: v for k, v in grads.items() if k.startswith("language_model.") and (("_moe_gen" in k) == gen)}


def test_text_only_ce_reaches_only_the_understanding_expert():
    model = tiny_model()
    b = pack([[Text([1, 2, 3, 4], loss=True)]], model.config)
    model(b).total.backward()
    g = _grads(model)
    assert all(v == 0.0 for v in _lm(g, gen=True).values())
    und = _lm(g, gen=False)
    assert all(v > 0 for k, v in und.items() if "layers.1" in k or "layers.0.mlp" in k)
    assert g["llm2vae.weight"] == 0.0 and g["vit_model.vision_model.post_layernorm.weight"] == 0.0


def test_mse_reaches_generation_expert_and_freeze_und_stops_understanding():
    for freeze in (False, True):
        model = tiny_model(ce_weight=0.0, freeze_und=freeze)
        b = pack([_sample()], model.config)
        model(b, generator=torch.Generator().manual_seed(0)).total.backward()
        g = _grads(model)
        gen = _lm(g, gen=True)
        assert gen and all(v > 0 for v in gen.values()), freeze
        for head in ("llm2vae.weight", "vae2llm.weight", "time_embedder.mlp.0.weight"):
            assert g[head] > 0
        und = _lm(g, gen=False)
        if freeze:
            assert all(v == 0.0 for v in und.values())
            assert g["vit_model.vision_model.post_layernorm.weight"] == 0.0
        else:
            assert und["language_model.model.layers.0.self_attn.k_proj.weight"] > 0  # context K/V feed the latents
            assert g["vit_model.vision_model.post_layernorm.weight"] > 0


def test_training_forward_is_deterministic_given_a_generator():
    model = tiny_model()
    b = pack([_sample(None)], model.config)
    a = model(b, generator=torch.Generator().manual_seed(3))
    c = model(b, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.total, c.total)


def test_bf16_forward_is_close_to_fp32():
    model = tiny_model()
    b = pack([_sample()], model.config)
    ref = model(b, generator=torch.Generator().manual_seed(0))
    model = model.to(torch.bfloat16)
    low = model(b, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(low.ce, ref.ce, atol=0.05, rtol=0.02)
    torch.testing.assert_close(low.mse, ref.mse, atol=0.05, rtol=0.02)


def test_gradient_checkpointing_gives_the_same_loss_and_grads():
    model = tiny_model(seed=1)
    b = pack([_sample()], model.config)
    model.train()
    model(b, generator=torch.Generator().manual_seed(0)).total.backward()
    ref = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.language_model.model.gradient_checkpointing = True
    model(b, generator=torch.Generator().manual_seed(0)).total.backward()
    for k, g in ref.items():
        torch.testing.assert_close(dict(model.named_parameters())[k].grad, g, atol=1e-6, rtol=1e-5)


def test_whole_model_backends_agree():
    """The model's forward through flex attention (forward-only on CPU) equals the dense-mask SDPA forward."""
    model = tiny_model(id_prompting=True)
    b = pack([_sample(), [Text([5, 6], loss=True), NoisyVaeImage(torch.randn(16, 2, 2))]], model.config)
    with torch.no_grad():
        ref = model(b, generator=torch.Generator().manual_seed(0))
        model.config = model.config.replace(attention_backend="flex")
        flex = model(b, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(flex.ce, ref.ce, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flex.mse, ref.mse, atol=1e-5, rtol=1e-5)
