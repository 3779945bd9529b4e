"""Plain-torch references of attention (independent of ``unimage.model.attention``)."""

from __future__ import annotations

import math

import torch


def explicit_attention(q, k, v, mask):
    """softmax(q·kᵀ/√d + log mask)·v per head, with kv heads repeated for GQA (independent reference)."""
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k.double()) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask[None], float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.double()).float()


def reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False, softmax_scale=None):
    """flash_attn_varlen_func semantics in plain torch (bottom-right-aligned causal), for the flash backend's plumbing."""
    outs = []
    for i in range(len(cu_seqlens_q) - 1):
        qs = q[cu_seqlens_q[i] : cu_seqlens_q[i + 1]]
        ks = k[cu_seqlens_k[i] : cu_seqlens_k[i + 1]]
        vs = v[cu_seqlens_k[i] : cu_seqlens_k[i + 1]]
        lq, lk = qs.shape[0], ks.shape[0]
        mask = torch.ones(lq, lk, dtype=torch.bool)
        if causal:
            mask = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        outs.append(explicit_attention(qs, ks, vs, mask))
    return torch.cat(outs)
