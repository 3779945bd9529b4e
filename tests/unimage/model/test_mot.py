"""The MoT decoder against Hugging Face's Qwen2 (the understanding expert IS a Qwen2 layer), and its routing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unimage.model.attention import AttentionLayout
from unimage.model.config import get_config
from unimage.model.mot import MoTForCausalLM, RMSNorm, Routing, apply_rope, rope_cos_sin, rope_inv_freq


def _causal_layout(n: int) -> AttentionLayout:
    z = torch.zeros(n, dtype=torch.long)
    return AttentionLayout.self_attention(z, z, torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool))


def test_rmsnorm_and_rope_match_transformers():
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm, Qwen2RotaryEmbedding, apply_rotary_pos_emb

    x = torch.randn(5, 16, dtype=torch.bfloat16)
    ours, theirs = RMSNorm(16, 1e-6), Qwen2RMSNorm(16, 1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
    assert torch.equal(ours(x), theirs(x))

    hf_cfg = Qwen2Config(hidden_size=64, num_attention_heads=4, rope_theta=10_000.0)
    rot = Qwen2RotaryEmbedding(hf_cfg)
    pos = torch.tensor([0, 1, 5, 5, 9])
    q, k = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 5, 16)
    cos_hf, sin_hf = rot(q, pos[None])
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    cos, sin = rope_cos_sin(pos, rope_inv_freq(16, 10_000.0), torch.float32)
    torch.testing.assert_close(apply_rope(q[0].transpose(0, 1), cos, sin), q_hf[0].transpose(0, 1))
    torch.testing.assert_close(apply_rope(k[0].transpose(0, 1), cos, sin), k_hf[0].transpose(0, 1))


def test_understanding_expert_equals_hf_qwen2_on_text():
    """With QK-norm off, the understanding path on causal text is exactly Qwen2ForCausalLM."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    llm = dataclasses.replace(get_config("tiny").llm, qk_norm=False)
    ours = MoTForCausalLM(llm).eval()
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.1)
    hf_cfg = Qwen2Config(**{k: v for k, v in llm.to_hf_dict().items() if k != "qk_norm"})
    hf_cfg._attn_implementation = "eager"
    theirs = Qwen2ForCausalLM(hf_cfg).eval()
    sd = {k: v for k, v in ours.state_dict().items() if "_moe_gen" not in k}
    missing, unexpected = theirs.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m for m in missing)

    ids = torch.randint(0, llm.vocab_size, (9,))
    with torch.no_grad():
        ref = theirs(ids[None]).logits[0]
        emb = ours.model.embed_tokens(ids)
        hidden, _ = ours.model(emb, torch.arange(9), Routing.all_und(9), _causal_layout(9), "sdpa")
        logits = ours.lm_head(hidden)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-4)


def test_routing_sends_each_row_to_its_expert_in_order():
    is_gen = torch.tensor([False, True, True, False, True])
    routing = Routing.from_gen_mask(is_gen)
    seen = {}

    def f(name, shift):
        def fn(x):
            seen[name] = x.clone()
            return x + shift

        return fn

    x = torch.arange(5.0)[:, None]
    out = routing.apply(x, f("und", 100.0), f("gen", 200.0))
    assert seen["und"].flatten().tolist() == [0.0, 3.0]
    assert seen["gen"].flatten().tolist() == [1.0, 2.0, 4.0]
    assert out.flatten().tolist() == [100.0, 201.0, 202.0, 103.0, 204.0]


@pytest.mark.parametrize("module", ["mlp", "self_attn.q_proj", "input_layernorm"])
def test_generation_tokens_use_only_moe_gen_weights(module):
    """Changing an understanding weight leaves an all-generation block unchanged, and vice versa for the twin."""
    llm = get_config("tiny").llm
    model = MoTForCausalLM(llm).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    n = 6
    layout = AttentionLayout.self_attention(
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        torch.ones(n, dtype=torch.bool),
        torch.zeros(n, dtype=torch.bool),
    )
    x = torch.randn(n, llm.hidden_size)
    gen = Routing.from_gen_mask(torch.ones(n, dtype=torch.bool))

    def run():
        with torch.no_grad():
            return model.model(x, torch.zeros(n, dtype=torch.long), gen, layout, "sdpa")[0]

    before = run()
    und_param = model.model.layers[0].get_submodule(module)
    with torch.no_grad():
        for p in und_param.parameters():
            p.add_(1.0)
    assert torch.equal(run(), before)
    gen_param = model.model.layers[0].get_submodule(
        module.replace(module.split(".")[-1], module.split(".")[-1] + "_moe_gen")
    )
    with torch.no_grad():
        for p in gen_param.parameters():
            p.add_(1.0)
    assert not torch.allclose(run(), before)


def test_init_moe_from_und_copies_every_twin():
    model = MoTForCausalLM(get_config("tiny").llm)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    model.init_moe_from_und()
    params = dict(model.named_parameters())
    twins = [k for k in params if "_moe_gen" in k]
    assert (
        len(twins) == 2 * (3 * 2 + 1 + 2 + 3 + 2) + 1
    )  # per layer: q,k,v (w+b), o, 2 qk-norms, 3 mlp, 2 norms; + final
    for k in twins:
        assert torch.equal(params[k], params[k.replace("_moe_gen", "")])
