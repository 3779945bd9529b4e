"""The training losses of a packed batch with a per-call stop-gradient switch.

``UniMAGE.forward`` reads the stop-gradient from ``config.freeze_und``, fixed for the model's life; Disentangled
Expert Learning (paper §3.4) needs it per pack within one step: the pure-text pack trains the understanding expert
WITHOUT the stop-gradient (CE), the interleaved / pair pack trains the generation expert WITH it (MSE). This function
computes exactly what ``UniMAGE.forward`` computes (a test checks equality) with ``freeze_und`` as an argument.

Shape letters: L packed tokens, D hidden, Nce CE positions, Nmse noisy latent tokens, Pl latent token vector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unimage.model.packing import PackedBatch
from unimage.model.unimage import LossTerms, UniMAGE

__all__ = ["packed_losses"]


def packed_losses(
    model: UniMAGE,
    batch: PackedBatch,
    freeze_und: bool,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> LossTerms:
    """CE on text targets + flow-matching MSE on noisy latents of ``batch``.

    Args:
        model: The model (possibly FSDP-wrapped inside; only its submodules are called).
        batch: A packed batch on the model's device.
        freeze_und: Detach every understanding-expert activation (BAGEL's ``freeze_und``): no gradient of these
            losses reaches an understanding parameter; the MSE then trains only the generation side.
        generator: RNG of timesteps and noise (drawn on the CPU, see ``UniMAGE.flow_inputs``).
        noise: Optional fixed ε [Nl, Pl].

    Returns:
        The loss terms, weighted by ``model.config.ce_weight`` / ``mse_weight`` in ``total``.
    """
    cfg = model.config
    x_t, t, target = model.flow_inputs(batch, generator, noise)
    hidden, _ = model.hidden_states(batch, x_t, t, freeze_und=freeze_und)  # [L, D]
    zero = hidden.new_zeros((), dtype=torch.float32)
    n_ce = int(batch.ce_indexes.numel())
    ce_sum = zero
    if n_ce:
        logits = model.language_model.lm_head(hidden[batch.ce_indexes])  # [Nce, V]
        ce_sum = F.cross_entropy(logits.float(), batch.ce_labels, reduction="sum")
    noisy = batch.vae_token_noisy
    n_mse = int(noisy.sum())
    mse_sum = zero
    if n_mse:
        pred = model.llm2vae(hidden[batch.vae_indexes[noisy]])  # [Nmse, Pl]
        mse_sum = (pred.float() - target[noisy].float()).pow(2).mean(-1).sum()
    ce = ce_sum / max(n_ce, 1)
    mse = mse_sum / max(n_mse, 1)
    total = cfg.ce_weight * ce + cfg.mse_weight * mse
    return LossTerms(total, ce, mse, ce_sum, mse_sum, n_ce, n_mse)
