"""Copy-paste score (`reference/vistorybench.md` §4.5): how much matched crops resemble the primary reference
more than the other references (a model that pastes the reference image scores high). Not in Table 1.
"""

from __future__ import annotations

import torch
from torch import Tensor


def copy_paste(gen_ref: Tensor) -> float | None:
    """Eras A/B copy-paste of one character: mean over G×(R-1) of ``sim(g, r0) - sim(g, r_k)``.

    Args:
        gen_ref: [G, R] similarities of matched crops to the references (column 0 = first reference).

    Returns:
        The mean, or None if the character has fewer than 2 references or no matched crop (it does not count).

    Example:
        >>> import torch
        >>> round(copy_paste(torch.tensor([[0.9, 0.5, 0.7]], dtype=torch.float64)), 6)
        0.3
    """
    if gen_ref.ndim != 2:
        raise ValueError(f"gen_ref must be [G, R], got shape {tuple(gen_ref.shape)}")
    G, R = gen_ref.shape
    if R < 2 or G == 0:
        return None
    s = gen_ref.double()
    return float((s[:, :1] - s[:, 1:]).mean())


def copy_paste_mirror(sim_primary: Tensor, sim_mirror: Tensor, tau: float = 0.01) -> float | None:
    """Era C copy rate: mean over crops of softmax([sim(g, r0), sim(g, mirror(r0))] / tau)[0], sims clamped to [-1, 1]."""
    if sim_primary.shape != sim_mirror.shape or sim_primary.ndim != 1:
        raise ValueError(f"expected two [G] tensors, got {tuple(sim_primary.shape)} and {tuple(sim_mirror.shape)}")
    if sim_primary.numel() == 0:
        return None
    logits = torch.stack([sim_primary, sim_mirror], dim=1).double().clamp(-1, 1) / tau  # [G, 2]
    return float(torch.softmax(logits, dim=1)[:, 0].mean())
