"""UniMAGE: BAGEL's unified MoT model (understanding + generation) with In-Context ID Prompting, in pure PyTorch.

Reference: ByteDance-Seed/Bagel @ 056b5fd, ``modeling/bagel/bagel.py`` (``Bagel.forward``, ``_forward_flow``);
facts in ``shared/reference/bagel-compat.md``. UniMAGE (paper §3.3, appendix A) keeps BAGEL's architecture and
weights unchanged; its In-Context ID Prompting lives entirely in the packed sequence (``packing``), so the same module
loads the released BAGEL-7B-MoT checkpoint.

Attribute names mirror the checkpoint tree, so the checkpoint key table is the identity for every tensor
(``language_model.model.layers.{i}.self_attn.q_proj_moe_gen.weight``, ``vit_model.vision_model...``, ...). The FLUX
autoencoder is not part of this module (``ema.safetensors`` holds no VAE weights); callers encode images to latents.

Token embeddings of a packed batch:
- text-type tokens (text, delimiters, ID tokens): ``embed_tokens(id)``;
- ViT tokens: ``connector(vit_model(patches)) + vit_pos_embed[pid]``;
- latent tokens: ``vae2llm(x_t) + time_embedder(t) + latent_pos_embed[pid]`` (t = 0 and x_t = x0 for clean images).

Losses (bagel-compat §3.3): next-token CE at ``ce_indexes``, and the rectified-flow velocity MSE on noisy latents,
x_t = (1−t)·x0 + t·ε, target ε − x0, t = shift(sigmoid(u)), u ~ N(0, 1) per image, shift(t) = s·t / (1 + (s−1)·t).
Each is summed over tokens and divided by its own token count (MSE first averaged over the Pl channels).

Deviation: activations stay in the parameter dtype (no hard bf16 casts as in BAGEL); use autocast for bf16.

Shape letters: L packed tokens, D hidden, Nt text-type tokens, Nv ViT patches, Nl latent tokens, Pl latent token
vector (p·p·C), Nce CE positions, Nmse noisy latent tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unimage.model.attention import AttentionLayout, ResolvedBackend, resolve_backend
from unimage.model.config import ModelConfig
from unimage.model.cpu_gemm import linear
from unimage.model.embeddings import MLPconnector, PositionEmbedding, TimestepEmbedder
from unimage.model.mot import KVPair, MoTForCausalLM, Routing, rope_inv_freq
from unimage.model.packing import PackedBatch
from unimage.model.vit import SiglipNavit

__all__ = ["LossTerms", "UniMAGE", "shift_timesteps"]


def shift_timesteps(t: Tensor, shift: float) -> Tensor:
    """s·t / (1 + (s−1)·t): moves flow times towards noise for s > 1 (identity for s = 1)."""
    return shift * t / (1 + (shift - 1) * t)


@dataclass
class LossTerms:
    """Loss of one packed batch.

    Attributes:
        total: ce_weight·ce + mse_weight·mse (the tensor to backpropagate).
        ce: CE per CE token (0 when the batch has none).
        mse: Velocity MSE per noisy latent token (0 when none).
        ce_sum: Summed CE (for re-normalising across ranks / accumulation steps).
        mse_sum: Summed per-token MSE.
        num_ce_tokens: Nce.
        num_mse_tokens: Nmse.
    """

    total: Tensor
    ce: Tensor
    mse: Tensor
    ce_sum: Tensor
    mse_sum: Tensor
    num_ce_tokens: int
    num_mse_tokens: int


class UniMAGE(nn.Module):
    """The unified model (BAGEL's ``Bagel`` with ``visual_gen`` and ``visual_und``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.llm.hidden_size
        self.language_model = MoTForCausalLM(config.llm)
        self.time_embedder = TimestepEmbedder(d)
        self.vae2llm = nn.Linear(config.patch_latent_dim, d)
        self.llm2vae = nn.Linear(d, config.patch_latent_dim)
        self.latent_pos_embed = PositionEmbedding(config.max_latent_size, d)
        self.vit_model = SiglipNavit(config.vit)
        self.connector = MLPconnector(config.vit.hidden_size, d, config.connector_act)
        self.vit_pos_embed = PositionEmbedding(config.vit_max_num_patch_per_side, d)
        if self.llm2vae.weight.device.type != "meta":
            self.init_weights()

    # ------------------------------------------------------------------------------------------------ set-up

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Random init for training from scratch / tests: N(0, std) linears and embeddings of the LLM side, zero
        biases, and BAGEL's zero ``llm2vae`` (so the initial velocity is 0). SigLIP keeps transformers' init."""
        for module in (self.language_model, self.time_embedder, self.vae2llm, self.connector):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=std)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Embedding):
                    nn.init.normal_(m.weight, std=std)
        nn.init.zeros_(self.llm2vae.weight)
        nn.init.zeros_(self.llm2vae.bias)

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute the deterministic tensors (RoPE ``inv_freq``, both sin-cos tables) on the current device.

        Call after materialising a model built on the meta device (``inv_freq`` is not in the checkpoint).
        """
        self.reset_rope(self.llm2vae.weight.device)
        self.latent_pos_embed.reset_table()
        self.vit_pos_embed.reset_table()

    def reset_rope(self, device: torch.device | str) -> None:
        """Recompute RoPE ``inv_freq`` on ``device``: a non-persistent buffer, never in a checkpoint."""
        llm = self.config.llm
        self.language_model.model.inv_freq = rope_inv_freq(llm.head_dim, llm.rope_theta).to(device)

    def attention_backend(self, device: torch.device | None = None) -> ResolvedBackend:
        """The config's backend resolved for ``device`` (the parameters' device by default)."""
        return resolve_backend(self.config.attention_backend, device or self.llm2vae.weight.device)

    # ------------------------------------------------------------------------------------------------ embeddings

    def embed(self, batch: PackedBatch, vae_inputs: Tensor, vae_t: Tensor) -> Tensor:
        """Input embeddings [L, D] of a packed batch.

        Args:
            batch: The packed batch.
            vae_inputs: [Nl, Pl] latent tokens as fed to ``vae2llm`` (x_t for noisy images, x0 for clean ones).
            vae_t: [Nl] flow time of each latent token (already shifted; 0 for clean images).
        """
        dtype = self.vae2llm.weight.dtype
        emb = self.language_model.model.embed_tokens(batch.text_ids)  # [Nt, D]
        out = emb.new_zeros(batch.length, emb.shape[-1]).index_copy(0, batch.text_indexes, emb)  # [L, D]
        if batch.vit_indexes.numel():
            feats = self.vit_model(
                batch.vit_patches.to(dtype), batch.vit_position_ids, batch.vit_cu_seqlens
            )  # [Nv, Dv]
            vit = self.connector(feats) + self.vit_pos_embed(batch.vit_position_ids)  # [Nv, D]
            out = out.index_copy(0, batch.vit_indexes, vit.to(out.dtype))
        if batch.vae_indexes.numel():
            lat = (
                linear(vae_inputs.to(dtype), self.vae2llm.weight, self.vae2llm.bias)
                + self.time_embedder(vae_t)
                + self.latent_pos_embed(batch.vae_position_ids)
            )  # [Nl, D]
            out = out.index_copy(0, batch.vae_indexes, lat.to(out.dtype))
        return out

    def hidden_states(
        self,
        batch: PackedBatch,
        vae_inputs: Tensor,
        vae_t: Tensor,
        past: list[KVPair] | None = None,
        freeze_und: bool = False,
    ) -> tuple[Tensor, list[KVPair]]:
        """Final hidden states [L, D] (after the expert norms) and the new tokens' per-layer (keys, values).

        Args:
            batch: Packed tokens (a single sample when ``past`` is given).
            vae_inputs: See ``embed``.
            vae_t: See ``embed``.
            past: Per-layer cached keys/values of earlier context tokens, all visible to every new token.
            freeze_und: Stop-gradient through the understanding expert.
        """
        layout = batch.layout()
        if past is not None:
            layout = layout.with_prefix(int(past[0][0].shape[0]) if past else 0)
        return self._decode(batch, self.embed(batch, vae_inputs, vae_t), layout, past, freeze_und)

    def _decode(
        self,
        batch: PackedBatch,
        embeds: Tensor,
        layout: AttentionLayout,
        past: list[KVPair] | None,
        freeze_und: bool,
    ) -> tuple[Tensor, list[KVPair]]:
        routing: Routing = batch.routing(freeze_und)
        backend = self.attention_backend(embeds.device)
        return self.language_model.model(embeds, batch.position_ids, routing, layout, backend, past)

    # ------------------------------------------------------------------------------------------------ training

    def flow_inputs(
        self,
        batch: PackedBatch,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Noise the noisy images: (x_t [Nl, Pl], t [Nl], target velocity ε − x0 [Nl, Pl], zero for clean tokens).

        Args:
            batch: The packed batch.
            generator: Draws u (one per noisy image without a given timestep) and ε, on the CPU, then moved.
            noise: Optional ε [Nl, Pl] (rows of clean tokens are ignored), for reproducible tests.
        """
        x0 = batch.vae_latents  # [Nl, Pl]
        n_img = int(batch.vae_image_noisy.shape[0])
        u = torch.randn(n_img, generator=generator).to(x0.device)
        t_img = torch.where(torch.isnan(batch.vae_image_timestep), torch.sigmoid(u), batch.vae_image_timestep)
        t_img = torch.where(batch.vae_image_noisy, shift_timesteps(t_img, self.config.loss.timestep_shift), 0.0)
        t = t_img[batch.vae_image_index]  # [Nl]
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        if noise.shape != x0.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(x0.shape)}")
        noisy = batch.vae_token_noisy[:, None]  # [Nl, 1]
        x_t = torch.where(noisy, (1 - t[:, None]) * x0 + t[:, None] * noise, x0)
        target = torch.where(noisy, noise - x0, torch.zeros_like(x0))
        return x_t, t, target

    def forward(
        self,
        batch: PackedBatch,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        freeze_und: bool | None = None,
    ) -> LossTerms:
        """Training forward of a packed batch: CE on text targets + flow-matching MSE on noisy latents.

        Args:
            batch: Output of ``packing.pack`` on the model's device.
            generator: RNG for timesteps and noise (see ``flow_inputs``).
            noise: Optional fixed ε [Nl, Pl].
            freeze_und: Detach every understanding-expert activation for this call (BAGEL's ``freeze_und``), so no
                gradient reaches an understanding parameter; None uses ``config.loss.freeze_und``. Disentangled Expert
                Learning switches it per pack within one step (text pack off, interleaved/pair pack on).

        Returns:
            The loss terms; ``total`` is weighted by ``config.loss.ce_weight`` / ``config.loss.mse_weight``.
        """
        x_t, t, target = self.flow_inputs(batch, generator, noise)
        freeze = self.config.loss.freeze_und if freeze_und is None else freeze_und
        hidden, _ = self.hidden_states(batch, x_t, t, freeze_und=freeze)  # [L, D]
        zero = hidden.new_zeros((), dtype=torch.float32)
        n_ce = int(batch.ce_indexes.numel())
        ce_sum = zero
        if n_ce:
            logits = linear(hidden[batch.ce_indexes], self.language_model.lm_head.weight)  # [Nce, V]
            ce_sum = F.cross_entropy(logits.float(), batch.ce_labels, reduction="sum")
        noisy = batch.vae_token_noisy
        n_mse = int(noisy.sum())
        mse_sum = zero
        if n_mse:
            pred = linear(hidden[batch.vae_indexes[noisy]], self.llm2vae.weight, self.llm2vae.bias)  # [Nmse, Pl]
            mse_sum = (pred.float() - target[noisy].float()).pow(2).mean(-1).sum()
        ce = ce_sum / max(n_ce, 1)
        mse = mse_sum / max(n_mse, 1)
        total = self.config.loss.ce_weight * ce + self.config.loss.mse_weight * mse
        return LossTerms(total, ce, mse, ce_sum, mse_sum, n_ce, n_mse)
