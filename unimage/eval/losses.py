"""Per-token training losses of a packed batch: the CE of every target position and the MSE of every noisy latent.

``UniMAGE.forward`` returns the losses summed over the batch, which is what training needs; the diagnostics need
them per token (to split CE by story and view, and image loss by pixel region). ``token_losses`` computes the same
quantities through the same model calls (``flow_inputs`` → ``hidden_states`` → ``lm_head`` / ``llm2vae``) without the
final sum; ``tests/unimage/eval`` checks that its sums equal ``forward``'s ``ce_sum`` and ``mse_sum`` for the same
generator, so the diagnostics measure exactly the training loss.

Shape letters: Nce CE positions, Nmse noisy latent tokens, Pl latent token vector, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from unimage.model.packing import PackedBatch
from unimage.model.unimage import UniMAGE

__all__ = ["TokenLosses", "token_losses"]


@dataclass(frozen=True)
class TokenLosses:
    """Losses of one packed batch, per token, on the CPU in float32.

    Attributes:
        ce: [Nce] CE (nats) at each of ``batch.ce_indexes``.
        ce_doc: [Nce] the sample (document) of each CE position.
        mse: [Nmse] velocity MSE (mean over the Pl channels) of each noisy latent token, in ``vae_indexes`` order.
        mse_image: [Nmse] which VAE image of the batch each noisy token belongs to.
        mse_doc: [Nmse] the sample of each noisy token.
    """

    ce: Tensor
    ce_doc: Tensor
    mse: Tensor
    mse_image: Tensor
    mse_doc: Tensor


@torch.no_grad()
def token_losses(
    model: UniMAGE,
    batch: PackedBatch,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> TokenLosses:
    """CE and MSE per token, as ``UniMAGE.forward`` computes them before summing (no stop-gradient: no backward).

    Args:
        model: The model (eval mode for deterministic numbers).
        batch: A packed batch on the model's device.
        generator: Draws the timesteps not given in the batch and the noise (as ``forward``).
        noise: Optional fixed ε [Nl, Pl].
    """
    x_t, t, target = model.flow_inputs(batch, generator, noise)
    hidden, _ = model.hidden_states(batch, x_t, t)  # [L, D]
    logits = model.language_model.lm_head(hidden[batch.ce_indexes])  # [Nce, V]
    ce = F.cross_entropy(logits.float(), batch.ce_labels, reduction="none")  # [Nce]
    noisy = batch.vae_token_noisy
    pred = model.llm2vae(hidden[batch.vae_indexes[noisy]])  # [Nmse, Pl]
    mse = (pred.float() - target[noisy].float()).pow(2).mean(-1)  # [Nmse]
    return TokenLosses(
        ce=ce.cpu(),
        ce_doc=batch.doc_ids[batch.ce_indexes].cpu(),
        mse=mse.cpu(),
        mse_image=batch.vae_image_index[noisy].cpu(),
        mse_doc=batch.doc_ids[batch.vae_indexes[noisy]].cpu(),
    )
