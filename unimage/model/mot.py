"""BAGEL's Mixture-of-Transformers (MoT) decoder: Qwen2 layers with an understanding and a generation expert.

Reference: ByteDance-Seed/Bagel @ 056b5fd, ``modeling/bagel/qwen2_navit.py`` (``Qwen2MoTDecoderLayer``,
``PackedAttentionMoT``) and ``modeling/qwen2/modeling_qwen2.py`` (RMSNorm, RoPE, MLP); facts in
``shared/reference/bagel-compat.md`` §1.3–§2.2.

Every parameter exists twice: the plain name is the understanding expert (all text tokens, the vision markers, the ID
tokens of In-Context ID Prompting, all ViT tokens) and the ``_moe_gen`` twin is the generation expert (VAE latent
tokens only, clean or noisy). Routing is a hard split by token type given by ``Routing``; there is no router.
Both experts' tokens meet in ONE attention over the packed sequence (GQA), so text, ViT and latents see each other
under the mask of ``attention.AttentionLayout``.

Per layer and token x with expert e(x) (bagel-compat §2.2):

    h = RMSNorm_e(x);  q, k, v = W_e h + b_e;  q, k = QKNorm_e(q), QKNorm_e(k) per head;  q, k = RoPE(q, k, pos)
    x = x + Wo_e · Attention(q, k, v)          (shared over all tokens)
    x = x + SwiGLU_e(RMSNorm'_e(x))
    after the last layer: norm for understanding tokens, norm_moe_gen for generation tokens.

Precision: BAGEL hard-casts q/k/v to bf16 before attention; here they take ``attention.attention_dtype``: the autocast
dtype under autocast (bf16 as BAGEL, also for the cached keys), else the activation dtype, so fp32 runs stay fp32.
``freeze_und`` reproduces BAGEL's stop-gradient.

Shape letters: L packed tokens (Lq queries when a KV cache holds earlier tokens), D hidden, Hq query heads,
Hkv key/value heads, Dh head dim, I MLP width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unimage.model.attention import AttentionLayout, ResolvedBackend, attention_dtype, packed_attention
from unimage.model.config import LLMConfig

__all__ = [
    "KVPair",
    "MoTAttention",
    "MoTDecoderLayer",
    "MoTForCausalLM",
    "MoTModel",
    "RMSNorm",
    "Routing",
    "SwiGLU",
    "apply_rope",
    "rope_cos_sin",
]

KVPair = tuple[Tensor, Tensor]  # ([L, Hkv, Dh] keys after QK-norm and RoPE, [L, Hkv, Dh] values)


########################################################################################################################
# Routing
########################################################################################################################


@dataclass(frozen=True)
class Routing:
    """Which packed tokens go through which expert (a hard split by token type).

    Attributes:
        und: [Lu] indexes of understanding-expert tokens (text, markers, ID tokens, ViT).
        gen: [Lg] indexes of generation-expert tokens (VAE latents); Lu + Lg = L, disjoint.
        length: L.
        freeze_und: Detach understanding-token activations (BAGEL's ``freeze_und``): no gradient reaches the
            understanding expert, and gradients of generation tokens stop at the understanding K/V.
    """

    und: Tensor
    gen: Tensor
    length: int
    freeze_und: bool = False
    # The gather index of ``to_sequence``, built once per routing (every layer of a forward shares it).
    _memo: dict[str, Tensor] = field(default_factory=dict, compare=False, repr=False)

    @property
    def mixed(self) -> bool:
        """Both experts have tokens (otherwise expert order is sequence order and nothing moves)."""
        return bool(self.und.numel()) and bool(self.gen.numel())

    @property
    def num_und(self) -> int:
        """Lu."""
        return int(self.und.numel())

    def _inverse(self) -> Tensor:
        if "inverse" not in self._memo:
            order = torch.cat([self.und, self.gen])  # expert row r holds sequence row order[r]
            inv = torch.empty_like(order)
            inv[order] = torch.arange(self.length, device=order.device)
            self._memo["inverse"] = inv
        return self._memo["inverse"]

    def to_experts(self, x: Tensor) -> Tensor:
        """Sequence order [L, ...] → expert order [und rows ++ gen rows] (one gather)."""
        return torch.cat([x[self.und], x[self.gen]]) if self.mixed else x

    def to_sequence(self, x: Tensor) -> Tensor:
        """Expert order → sequence order (one gather)."""
        return x[self._inverse()] if self.mixed else x

    def run(self, x: Tensor, f_und: Callable[[Tensor], Tensor], f_gen: Callable[[Tensor], Tensor]) -> Tensor:
        """``apply`` for rows already in expert order: slices in, one concatenation out, no index gathers."""
        if not self.mixed:
            return self._und_out(f_und(x)) if self.gen.numel() == 0 else f_gen(x)
        lu = self.num_und
        return torch.cat([self._und_out(f_und(x[:lu])), f_gen(x[lu:])])

    def detach_und_rows(self, x: Tensor) -> Tensor:
        """``detach_und`` for rows in expert order."""
        if not self.freeze_und:
            return x
        return self.run(x, lambda a: a, lambda b: b)

    @classmethod
    def all_und(cls, length: int, device: torch.device | None = None) -> Routing:
        """Every token through the understanding expert (text prefill, ViT prefill, text decoding)."""
        return cls(torch.arange(length, device=device), torch.empty(0, dtype=torch.long, device=device), length)

    @classmethod
    def from_gen_mask(cls, is_gen: Tensor, freeze_und: bool = False) -> Routing:
        """From a [L] bool mask, True = generation expert."""
        idx = torch.arange(is_gen.shape[0], device=is_gen.device)
        return cls(idx[~is_gen], idx[is_gen], int(is_gen.shape[0]), freeze_und)

    def apply(self, x: Tensor, f_und: Callable[[Tensor], Tensor], f_gen: Callable[[Tensor], Tensor]) -> Tensor:
        """Run ``f_und`` on understanding rows and ``f_gen`` on generation rows of ``x`` [L, ...]; merge back in order."""
        if self.gen.numel() == 0:
            return self._und_out(f_und(x))
        if self.und.numel() == 0:
            return f_gen(x)
        a = self._und_out(f_und(x[self.und]))  # [Lu, ...]
        b = f_gen(x[self.gen])  # [Lg, ...]
        out = a.new_empty((self.length, *a.shape[1:]))
        return out.index_copy(0, self.und, a).index_copy(0, self.gen, b)  # [L, ...]

    def detach_und(self, x: Tensor) -> Tensor:
        """``x`` with its understanding rows detached when ``freeze_und`` (else ``x`` itself)."""
        if not self.freeze_und:
            return x
        return self.apply(x, lambda a: a, lambda b: b)

    def _und_out(self, a: Tensor) -> Tensor:
        return a.detach() if self.freeze_und else a


########################################################################################################################
# Qwen2 building blocks
########################################################################################################################


class RMSNorm(nn.Module):
    """Qwen2 RMSNorm: x·rsqrt(mean(x²)+eps) in fp32, cast back to the input dtype, then × weight."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """[..., dim] → [..., dim]."""
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)


def rope_inv_freq(head_dim: int, theta: float) -> Tensor:
    """inv_freq_k = θ^(−2k/Dh), k < Dh/2, computed as Hugging Face's "default" RoPE does (fp32)."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def rope_cos_sin(position_ids: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and sin [L, Dh] for 1-D position ids [L] (computed in fp32, cast to ``dtype``)."""
    freqs = position_ids.float()[:, None] * inv_freq.float()[None, :]  # [L, Dh/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [L, Dh]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on [L, H, Dh] with cos/sin [L, Dh] (non-interleaved, full head dim)."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


class SwiGLU(nn.Module):
    """Qwen2 MLP: down(silu(gate(x)) ⊙ up(x)), no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """[N, D] → [N, D]; gate and up run as one matmul on their concatenated weights."""
        gate, up = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight])).chunk(2, dim=-1)  # [N, I] ×2
        return self.down_proj(F.silu(gate) * up)


########################################################################################################################
# MoT attention and layer
########################################################################################################################


class MoTAttention(nn.Module):
    """BAGEL's ``PackedAttentionMoT``: per-expert q/k/v/o projections and QK-norms, one shared GQA attention."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        d, hq, hkv, dh = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = hq, hkv, dh
        self.q_proj = nn.Linear(d, hq * dh, bias=True)
        self.k_proj = nn.Linear(d, hkv * dh, bias=True)
        self.v_proj = nn.Linear(d, hkv * dh, bias=True)
        self.o_proj = nn.Linear(hq * dh, d, bias=False)
        self.q_proj_moe_gen = nn.Linear(d, hq * dh, bias=True)
        self.k_proj_moe_gen = nn.Linear(d, hkv * dh, bias=True)
        self.v_proj_moe_gen = nn.Linear(d, hkv * dh, bias=True)
        self.o_proj_moe_gen = nn.Linear(hq * dh, d, bias=False)
        norm: Callable[[], nn.Module] = (lambda: RMSNorm(dh, config.rms_norm_eps)) if config.qk_norm else nn.Identity
        self.q_norm, self.k_norm = norm(), norm()
        self.q_norm_moe_gen, self.k_norm_moe_gen = norm(), norm()

    def forward(
        self,
        h: Tensor,
        routing: Routing,
        cos_sin: tuple[Tensor, Tensor],
        layout: AttentionLayout,
        backend: ResolvedBackend,
        past: KVPair | None = None,
    ) -> tuple[Tensor, KVPair]:
        """Attention of the Lq new tokens over (cached ++ new) keys.

        Args:
            h: [Lq, D] normed hidden states of the new tokens, in expert order (``Routing.to_experts``).
            routing: Expert of each new token.
            cos_sin: RoPE tables [Lq, Dh] for the new tokens.
            layout: Mask of the Lq queries over the Lk = (cached + Lq) keys.
            backend: Attention kernel.
            past: Cached (keys, values) [Lc, Hkv, Dh] of earlier tokens, already normed and rotated.

        Returns:
            ([Lq, D] output in expert order, (keys, values) [Lq, Hkv, Dh] of the new tokens in sequence order).
        """
        hq, hkv, dh = self.num_heads, self.num_kv_heads, self.head_dim
        cos, sin = cos_sin
        qkv = routing.run(
            h,
            lambda x: self._qkv(x, self.q_proj, self.k_proj, self.v_proj, self.q_norm, self.k_norm),
            lambda x: self._qkv(
                x,
                self.q_proj_moe_gen,
                self.k_proj_moe_gen,
                self.v_proj_moe_gen,
                self.q_norm_moe_gen,
                self.k_norm_moe_gen,
            ),
        )  # [Lq, (Hq + 2·Hkv)·Dh], expert order
        qkv = routing.to_sequence(qkv)  # sequence order: one gather for q, k and v together
        q, k, v = qkv.split([hq * dh, hkv * dh, hkv * dh], dim=-1)
        q, k, v = q.view(-1, hq, dh), k.view(-1, hkv, dh), v.view(-1, hkv, dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # One dtype at the kernel (under autocast the norm's fp32 weight leaves q, k in fp32 beside a bf16 v).
        dtype = attention_dtype(v)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        k_all = k if past is None else torch.cat([past[0], k])  # [Lk, Hkv, Dh]
        v_all = v if past is None else torch.cat([past[1], v])
        attn = packed_attention(q, k_all, v_all, layout, backend).reshape(-1, hq * dh)  # [Lq, Hq·Dh]
        out = routing.run(routing.to_experts(attn), self.o_proj, self.o_proj_moe_gen)  # [Lq, D], expert order
        return out, (k, v)

    def _qkv(self, x: Tensor, qp: nn.Linear, kp: nn.Linear, vp: nn.Linear, qn: nn.Module, kn: nn.Module) -> Tensor:
        """One expert's q, k, v: one matmul on the concatenated weights, QK-norm per head; [N, (Hq + 2·Hkv)·Dh]."""
        hq, hkv, dh = self.num_heads, self.num_kv_heads, self.head_dim
        w = torch.cat([qp.weight, kp.weight, vp.weight])  # [(Hq + 2·Hkv)·Dh, D]
        b = torch.cat([qp.bias, kp.bias, vp.bias])
        q, k, v = F.linear(x, w, b).split([hq * dh, hkv * dh, hkv * dh], dim=-1)
        q = qn(q.reshape(-1, hq, dh)).flatten(1)
        k = kn(k.reshape(-1, hkv, dh)).flatten(1)
        return torch.cat([q, k.to(q.dtype), v.to(q.dtype)], dim=-1)  # v upcast exactly when the norm promoted q


class MoTDecoderLayer(nn.Module):
    """BAGEL's ``Qwen2MoTDecoderLayer``: pre-norm attention and SwiGLU blocks, each with an expert twin."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.rms_norm_eps
        self.self_attn = MoTAttention(config)
        self.mlp = SwiGLU(d, config.intermediate_size)
        self.mlp_moe_gen = SwiGLU(d, config.intermediate_size)
        self.input_layernorm = RMSNorm(d, eps)
        self.input_layernorm_moe_gen = RMSNorm(d, eps)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.post_attention_layernorm_moe_gen = RMSNorm(d, eps)

    def forward(
        self,
        x: Tensor,
        routing: Routing,
        cos_sin: tuple[Tensor, Tensor],
        layout: AttentionLayout,
        backend: ResolvedBackend,
        past: KVPair | None = None,
    ) -> tuple[Tensor, KVPair]:
        """[Lq, D] → ([Lq, D], new (keys, values)), rows in EXPERT order (``Routing.to_experts``; the keys and values
        are in sequence order); see ``MoTAttention.forward`` for the arguments."""
        h = routing.run(x, self.input_layernorm, self.input_layernorm_moe_gen)
        attn, kv = self.self_attn(h, routing, cos_sin, layout, backend, past)
        x = routing.detach_und_rows(x + attn)
        h = routing.run(x, self.post_attention_layernorm, self.post_attention_layernorm_moe_gen)
        x = routing.detach_und_rows(x + routing.run(h, self.mlp, self.mlp_moe_gen))
        return x, kv


########################################################################################################################
# Decoder stack and LM head (attribute names = BAGEL checkpoint keys)
########################################################################################################################


class MoTModel(nn.Module):
    """``language_model.model``: token embedding, MoT layers, per-expert final norms."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([MoTDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.norm_moe_gen = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # Not in the checkpoint (BAGEL's rotary_emb.inv_freq is non-persistent too).
        self.inv_freq: Tensor
        self.register_buffer("inv_freq", rope_inv_freq(config.head_dim, config.rope_theta), persistent=False)
        self.gradient_checkpointing = False

    def forward(
        self,
        embeds: Tensor,
        position_ids: Tensor,
        routing: Routing,
        layout: AttentionLayout,
        backend: ResolvedBackend,
        past: list[KVPair] | None = None,
    ) -> tuple[Tensor, list[KVPair]]:
        """Run the decoder on packed embeddings.

        Args:
            embeds: [Lq, D] input embeddings of the new tokens (text, ViT and latent embeddings already merged).
            position_ids: [Lq] 1-D RoPE ids.
            routing: Expert of each token.
            layout: Attention mask metadata (queries over cache ++ new keys).
            backend: Attention kernel.
            past: Per layer cached (keys, values), or None.

        Returns:
            ([Lq, D] hidden states after the expert-specific final norm, per layer (keys, values) of the new tokens).
        """
        if past is not None and len(past) != len(self.layers):
            raise ValueError(f"cache has {len(past)} layers, the model {len(self.layers)}")
        cos_sin = rope_cos_sin(position_ids, self.inv_freq, embeds.dtype)  # 2 × [Lq, Dh], sequence order
        # The layers keep rows in expert order (understanding rows, then generation rows): each expert's norms,
        # projections and MLP then read and write contiguous slices, and only attention's inputs and output move
        # (one gather each per layer) instead of a gather and a scatter around every expert-specific op.
        x = routing.to_experts(embeds)
        new_kv: list[KVPair] = []
        for i, layer in enumerate(self.layers):
            layer_past = None if past is None else past[i]
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, kv = checkpoint(layer, x, routing, cos_sin, layout, backend, layer_past, use_reentrant=False)
            else:
                x, kv = layer(x, routing, cos_sin, layout, backend, layer_past)
            new_kv.append(kv)
        return routing.to_sequence(routing.run(x, self.norm, self.norm_moe_gen)), new_kv


class MoTForCausalLM(nn.Module):
    """``language_model``: the MoT decoder and the (untied) ``lm_head``."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.config = config
        self.model = MoTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @torch.no_grad()
    def init_moe_from_und(self) -> None:
        """Copy every understanding weight into its ``_moe_gen`` twin (BAGEL's ``init_moe``, used when starting the
        generation expert from a plain Qwen2 checkpoint)."""
        params = dict(self.model.named_parameters())
        for name, p in params.items():
            if "_moe_gen" in name:
                p.copy_(params[name.replace("_moe_gen", "")])
