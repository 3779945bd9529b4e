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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unimage.model.attention import AttentionLayout, ResolvedBackend, attention_dtype, packed_attention
from unimage.model.config import LLMConfig
from unimage.model.cpu_gemm import linear

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
        """[..., dim] → [..., dim] in the promoted dtype of x and the weight (as Qwen2)."""
        return rms_norm(x, self.weight, self.eps)


class _RMSNorm(torch.autograd.Function):
    """Qwen2's RMSNorm as one autograd node: saves x (its own dtype) and the [N, 1] fp32 rsqrt, not the fp32 copy
    of x and the chain of ~7 elementwise results that autograd would keep; the forward ops are Qwen2's, in order,
    so fp32 outputs are bit-identical."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        xf = x.to(_stat_dtype(x))
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)  # [..., 1]
        normed = (xf * rstd).to(x.dtype)
        ctx.save_for_backward(x, weight, rstd)
        return weight * normed

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        xhat = x.to(rstd.dtype) * rstd  # [..., D] fp32
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = (grad * xhat.to(x.dtype)).reshape(-1, *weight.shape).sum(0).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            gn = grad.to(rstd.dtype) * weight.to(rstd.dtype)  # d loss / d normed
            grad_x = (rstd * (gn - xhat * (gn * xhat).mean(-1, keepdim=True))).to(x.dtype)
        return grad_x, grad_w, None


def _stat_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)  # fp32 for fp32 / bf16 / fp16 (fp64 stays fp64 for tests)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """``weight · cast(x·rsqrt(mean(x²)+eps))`` with the statistics in fp32 (Qwen2); weight broadcasts over x."""
    return _RMSNorm.apply(x, weight, eps)


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


class _Rope(torch.autograd.Function):
    """Rotate-half RoPE as one autograd node (saves only the tables): out = x·cos + rot(x)·sin, rot(x) = [−x₂, x₁];
    its transpose gives dx = g·cos + rotᵀ(g·sin), rotᵀ(y) = [y₂, −y₁]. The forward ops are Hugging Face's, so fp32
    outputs are bit-identical."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        ctx.x_dtype = x.dtype
        return x * cos[:, None] + _rotate_half(x) * sin[:, None]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        y1, y2 = (grad * sin[:, None]).chunk(2, dim=-1)
        return (grad * cos[:, None] + torch.cat([y2, -y1], dim=-1)).to(ctx.x_dtype), None, None


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on [L, H, Dh] with cos/sin [L, Dh] (non-interleaved, full head dim)."""
    return _Rope.apply(x, cos, sin)


class SwiGLU(nn.Module):
    """Qwen2 MLP: down(silu(gate(x)) ⊙ up(x)), no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """[N, D] → [N, D]. Gate and up are two matmuls (as Qwen2): concatenating their weights on every call would
        copy 2·I·D weights per forward (about 270 MB per expert and layer at 7B) and a second time in backward."""
        gate = linear(x, self.gate_proj.weight)  # [N, I]
        return linear(F.silu(gate) * linear(x, self.up_proj.weight), self.down_proj.weight)


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
        n_qk = (hq + hkv) * dh
        qk = apply_rope(qkv[:, :n_qk].view(-1, hq + hkv, dh), cos, sin)  # q and k rotated in one pass
        v = qkv[:, n_qk:].view(-1, hkv, dh)
        # One dtype at the kernel (under autocast the norm's fp32 weight leaves q, k in fp32 beside a bf16 v).
        dtype = attention_dtype(v)
        qk, v = qk.to(dtype), v.to(dtype)
        q, k = qk[:, :hq], qk[:, hq:]  # [Lq, Hq, Dh], [Lq, Hkv, Dh] views
        if not torch.is_grad_enabled():  # a KV cache keeps k, v: not the q and qkv storage they are views of
            k, v = k.contiguous(), v.contiguous()
        k_all = k if past is None else torch.cat([past[0], k])  # [Lk, Hkv, Dh]
        v_all = v if past is None else torch.cat([past[1], v])
        attn = packed_attention(q, k_all, v_all, layout, backend).reshape(-1, hq * dh)  # [Lq, Hq·Dh]
        out = routing.run(
            routing.to_experts(attn),
            lambda a: linear(a, self.o_proj.weight),
            lambda a: linear(a, self.o_proj_moe_gen.weight),
        )  # [Lq, D], expert order
        return out, (k, v)

    def _qkv(self, x: Tensor, qp: nn.Linear, kp: nn.Linear, vp: nn.Linear, qn: nn.Module, kn: nn.Module) -> Tensor:
        """One expert's q, k, v [N, (Hq + 2·Hkv)·Dh], q and k QK-normed per head.

        With gradients on, one matmul on the concatenated weights (training: the copy is small next to an
        N-token matmul); without (inference, where N may be one decoded token), three matmuls and no weight copy.
        The QK-norm runs once over the q and k heads together, with q's weight on the q heads and k's on the k heads.
        """
        hq, hkv, dh = self.num_heads, self.num_kv_heads, self.head_dim
        if torch.is_grad_enabled():
            y = linear(x, torch.cat([qp.weight, kp.weight, vp.weight]), torch.cat([qp.bias, kp.bias, vp.bias]))
        else:
            y = torch.cat([linear(x, p.weight, p.bias) for p in (qp, kp, vp)], dim=-1)
        if not isinstance(qn, RMSNorm) or not isinstance(kn, RMSNorm):  # qk_norm off
            return y
        n_qk = (hq + hkv) * dh
        w = torch.cat([qn.weight.expand(hq, dh), kn.weight.expand(hkv, dh)])  # [Hq + Hkv, Dh]
        qk = rms_norm(y[:, :n_qk].view(-1, hq + hkv, dh), w, qn.eps).flatten(1)  # [N, (Hq + Hkv)·Dh]
        return torch.cat([qk, y[:, n_qk:].to(qk.dtype)], dim=-1)  # v upcast exactly when the norm promoted q


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
