"""Packs of mixed samples and the FLOP counts of the training step, against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unimage.gpucheck.scale import SCALES, get_scale
from unimage.gpucheck.workload import attention_pairs, build_stack, linear_flops_per_token, mixed_pack, train_flops
from unimage.model.config import get_config
from unimage.model.packing import NoisyVaeImage, Text, pack


@pytest.mark.parametrize("tokens", [8, 9, 160, 257])
def test_mixed_pack_has_the_requested_length_and_every_kind_of_split(tokens):
    cfg = get_config("tiny")
    batch = mixed_pack(cfg, tokens, seed=0)
    assert tokens - 1 <= batch.length <= tokens
    if tokens >= 160:  # long enough for images: noisy, full and causal splits over several documents
        assert len(batch.sample_lens) > 1
        assert batch.is_gen.any() and batch.split_noise.any() and (batch.split_full & ~batch.split_noise).any()
        assert (~batch.split_full).any()


def test_mixed_pack_is_deterministic_and_refuses_tiny_sizes():
    cfg = get_config("tiny")
    a, b = mixed_pack(cfg, 200, seed=4), mixed_pack(cfg, 200, seed=4)
    assert torch.equal(a.split_ids, b.split_ids) and torch.equal(a.text_ids, b.text_ids)
    with pytest.raises(ValueError, match="at least 8 tokens"):
        mixed_pack(cfg, 7)


def test_7b_pack_is_8k_tokens_at_real_shapes():
    scale = SCALES["7b"]
    batch = mixed_pack(scale.model, scale.train_tokens, seed=2)
    assert batch.length == 8192
    llm = scale.llm()
    assert (llm.hidden_size, llm.num_attention_heads, llm.num_key_value_heads, llm.head_dim) == (3584, 28, 4, 128)


def test_attention_pairs_match_a_hand_count_of_the_rule():
    cfg = get_config("tiny")
    # One causal text of 5 ids: L = 7 tokens with the delimiters, L(L+1)/2 pairs.
    assert attention_pairs(pack([[Text([1, 2, 3, 4, 5])]], cfg)) == 7 * 8 // 2
    # text (L1 = 4) · noisy image (N = 2 markers + 4 latents) · text (L2 = 3):
    # image queries see text 1 and their own block; text 2 sees text 1 and itself causally, never the noisy block.
    lat = torch.zeros(cfg.latent_channels, 4, 4)  # 2×2 latent tokens at patch size 2
    batch = pack([[Text([1, 2]), NoisyVaeImage(lat), Text([3])]], cfg)
    l1, n, l2 = 4, 6, 3
    assert batch.length == l1 + n + l2
    want = l1 * (l1 + 1) // 2 + n * (l1 + n) + l2 * l1 + l2 * (l2 + 1) // 2
    assert attention_pairs(batch) == want


def test_linear_flops_count_one_experts_weights_twice():
    llm = get_scale("tiny").llm()
    layer = build_stack(llm, torch.device("cpu"), torch.float32).layers[0]
    weights = sum(
        m.weight.numel() for name, m in layer.named_modules() if isinstance(m, nn.Linear) and "_moe_gen" not in name
    )
    assert linear_flops_per_token(llm) == 2 * weights
    # By hand for tiny (D 64, I 128, 4 / 2 heads of 16): q 64·64 + k, v 2·64·32 + o 64·64 + MLP 3·64·128 = 36864.
    assert linear_flops_per_token(llm) == 2 * 36864
    assert train_flops(llm, 10, 55) == 3 * llm.num_hidden_layers * (10 * 2 * 36864 + 4 * 55 * 4 * 16)


def test_build_stack_casts_but_keeps_fp32_rope_and_is_seeded():
    llm = get_scale("tiny").llm()
    a = build_stack(llm, torch.device("cpu"), torch.bfloat16, seed=1)
    b = build_stack(llm, torch.device("cpu"), torch.bfloat16, seed=1)
    assert a.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16 and a.inv_freq.dtype == torch.float32
    assert torch.equal(a.layers[1].self_attn.q_proj.weight, b.layers[1].self_attn.q_proj.weight)
    assert float(a.layers[0].self_attn.q_proj.weight.float().std()) == pytest.approx(0.02, rel=0.1)
