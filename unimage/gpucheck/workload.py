"""What the steps run on: packs of mixed samples, a stack of MoT decoder layers, and the FLOPs they cost.

The packs are built with the project's own ``packing.pack`` from samples of every kind training sees (interleaved
script + images, pure text, text-image pair), so the mask holds causal text splits, full ViT and clean-VAE splits and
hidden noisy-VAE splits over several documents, and the routing sends the latents to the generation expert. Sizes
are drawn from a seeded generator: the same scale gives the same pack on every machine.

FLOPs count what the model must compute (PaLM's "model FLOPs": no activation recompute), with attention counted
only over the (query, key) pairs the mask allows, since every backend here skips masked blocks.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor, nn

from unimage.model.config import LLMConfig, ModelConfig
from unimage.model.mot import MoTModel, rope_inv_freq
from unimage.model.packing import CleanVaeImage, NoisyVaeImage, PackedBatch, Sample, Text, VitImage, pack

__all__ = [
    "attention_pairs",
    "build_stack",
    "linear_flops_per_token",
    "mixed_pack",
    "train_flops",
]


def _sample(config: ModelConfig, rng: random.Random, text_max: int) -> Sample:
    """One sample of a random kind; image sides in tokens are capped by the config's position tables."""
    c, p = config.latent_channels, config.latent_patch_size
    vae_side = max(2, min(config.max_latent_size, 32))
    vit_side = max(2, min(config.vit_max_num_patch_per_side, 24))
    vocab = min(256, config.tokens.im_start)

    def text() -> Text:
        n = rng.randint(max(1, text_max // 8), text_max)
        return Text([rng.randrange(vocab) for _ in range(n)], loss=True)

    def latents() -> Tensor:
        h, w = rng.randint(2, vae_side), rng.randint(2, vae_side)
        return torch.zeros(c, h * p, w * p)

    def vit() -> VitImage:
        s = config.vit.patch_size
        h, w = rng.randint(2, vit_side), rng.randint(2, vit_side)
        return VitImage(torch.zeros(config.vit.num_channels, h * s, w * s))

    kind = rng.choice(["interleaved", "interleaved", "text", "pair"])
    if kind == "interleaved":
        return [text(), vit(), text(), CleanVaeImage(latents()), text(), NoisyVaeImage(latents(), timestep=0.5)]
    if kind == "text":
        return [text()]
    return [text(), NoisyVaeImage(latents(), timestep=0.5)]


def mixed_pack(config: ModelConfig, num_tokens: int, seed: int = 0) -> PackedBatch:
    """A pack of about ``num_tokens`` tokens (exactly, unless 1 token short) of mixed random samples, on the CPU.

    Raises:
        ValueError: ``num_tokens`` < 8.
    """
    if num_tokens < 8:
        raise ValueError(f"a mixed pack needs at least 8 tokens, got {num_tokens}")
    rng = random.Random(seed)
    text_max = max(4, num_tokens // 16)
    samples: list[Sample] = []
    used = 0
    while num_tokens - used >= 2:
        sample = _sample(config, rng, text_max)
        n = pack([sample], config).length
        if used + n > num_tokens:  # fill the rest with one text sample (2 delimiters + ids)
            left = num_tokens - used
            sample, n = [Text([rng.randrange(256) for _ in range(left - 2)], loss=True)], left
        samples.append(sample)
        used += n
    return pack(samples, config)


def build_stack(llm: LLMConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> MoTModel:
    """``MoTModel`` (the decoder stack of ``llm.num_hidden_layers`` MoT layers) with random N(0, 0.02) linears.

    The same init as ``UniMAGE.init_weights``; built on ``device`` directly (no CPU copy of a large stack).
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with device:
            model = MoTModel(llm)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    model = model.to(dtype)
    model.inv_freq = rope_inv_freq(llm.head_dim, llm.rope_theta).to(device)  # fp32 again after the cast
    return model


def linear_flops_per_token(llm: LLMConfig) -> int:
    """Forward FLOPs of one token through one layer's projections and MLP (2 per multiply-add; one expert)."""
    d, i, hq, hkv, dh = (
        llm.hidden_size,
        llm.intermediate_size,
        llm.num_attention_heads,
        llm.num_key_value_heads,
        llm.head_dim,
    )
    return 2 * (d * hq * dh + 2 * d * hkv * dh + hq * dh * d + 3 * d * i)


def attention_pairs(batch: PackedBatch) -> int:
    """Allowed (query, key) pairs of the pack's mask."""
    return int(batch.dense_mask().sum())


def train_flops(llm: LLMConfig, num_tokens: int, pairs: int) -> int:
    """Model FLOPs of one fwd+bwd of ``llm.num_hidden_layers`` layers over a pack: 3 × forward (backward = 2×).

    Forward per layer: tokens × ``linear_flops_per_token`` + 4·pairs·Hq·Dh (QKᵀ and PV).
    """
    fwd = num_tokens * linear_flops_per_token(llm) + 4 * pairs * llm.num_attention_heads * llm.head_dim
    return 3 * llm.num_hidden_layers * fwd
