"""Inception Score with one split, pooled over the whole run (`reference/vistorybench.md` §8).

``IS = exp(mean_i KL(p(y|x_i) || p̄(y)))`` with ``p̄`` the mean of the softmax over the pool and natural logs
(the official code uses ``scipy.stats.entropy``). Computed in float64 so it equals the scipy value to 1e-9.
"""

from __future__ import annotations

import torch
from torch import Tensor


def inception_score_from_probs(probs: Tensor) -> float:
    """IS of class probabilities ``probs`` [N, C] (rows sum to 1), one split."""
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be [N, C] with N >= 1, got shape {tuple(probs.shape)}")
    p = probs.double()  # [N, C]
    p_mean = p.mean(dim=0, keepdim=True)  # [1, C]
    # KL(p_i || p_mean) = sum_c p_ic (log p_ic - log p_mean_c), with 0 log 0 = 0 as in scipy.stats.entropy.
    kl = torch.where(p > 0, p * (p.log() - p_mean.log()), torch.zeros_like(p)).sum(dim=1)  # [N]
    return float(kl.mean().exp())


def inception_score(logits: Tensor) -> float:
    """IS of Inception-v3 ``logits`` [N, C] (softmax applied here), one split.

    Example:
        >>> import torch
        >>> round(inception_score(torch.tensor([[10.0, 0.0], [0.0, 10.0]])), 3)
        1.999
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, C], got shape {tuple(logits.shape)}")
    return inception_score_from_probs(torch.softmax(logits.double(), dim=1))
