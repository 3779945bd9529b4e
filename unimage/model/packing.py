"""Packed sequences: samples of text / ViT / VAE segments → one ``PackedBatch`` with routing, positions and mask.

Reference: ByteDance-Seed/Bagel @ 056b5fd, ``data/dataset_base.py`` (``pack_sequence``) and ``data/data_utils.py``
(masks, position ids); facts in ``shared/reference/bagel-compat.md`` §2.1, §2.3, §2.4, §5.2.

A sample is a list of segments; each segment becomes one *split* of the packed sequence:

- ``Text(ids, loss)``: ``<|im_start|> ids <|im_end|>``, causal. With ``loss`` the CE targets are ids + ``<|im_end|>``
  at positions ``<|im_start|>`` .. last id (next-token shift).
- ``VitImage(pixels)``: ``<|vision_start|> patches <|vision_end|>``, full attention, understanding expert.
- ``CleanVaeImage(latents)``: ``<|vision_start|> latents <|vision_end|>``, full, latents on the generation expert,
  t = 0.
- ``NoisyVaeImage(latents)``: the same tokens as a *noise* split: full inside, hidden from every other token; the
  velocity MSE is computed on its latents.
- ``DroppedImage()``: a conditioning image removed by CFG dropout; no tokens, the RoPE id advances by 1.

Position ids (1-D RoPE), per sample from ``start_position`` (0 in training): text takes one id per token; every image
block takes ONE id shared by all its tokens; ViT and clean VAE blocks then advance the id by 1, a noisy block does
not (its clean copy, which may follow, gets the same id). 2-D ids are row·S + col with S = ``vit_max_num_patch_per_side``
(ViT) or ``max_latent_size`` (latents).

In-Context ID Prompting (UniMAGE §3.3, ``SequenceLayout.id_prompting``). Each image segment may carry
``id_token_ids``: single-token ids naming the frame and the characters / environments it shows. Whoever makes the
segment takes them from ``config.layout.image_id_tokens(prompt, tokenizer)``, the flag's one gate: empty when the
flag is off, so the layout is exactly BAGEL's. The packer lays out what a segment carries, right after
``<|vision_start|>``, inside the image's split:

    no ID tokens (= BAGEL):  <|vision_start|>  i₁ i₂ … i_N  <|vision_end|>
    with ID tokens:          <|vision_start|>  <Frame3> <Character1> <Environment2>  i₁ i₂ … i_N  <|vision_end|>
                             └──────────────────── one split: full attention, one RoPE id ───────────────────┘
    expert:                  und               und      und          und             und|gen      und

so the ID tokens and the image tokens attend to each other fully, the ID tokens use the understanding expert (like
the markers) and share the block's RoPE id. The same layout is used for the noisy block being generated (its ID
tokens are then hidden from later tokens, like the latents).

Token counts. ``text_block_length`` and ``image_block_length`` (with ``vit_grid`` / ``latent_grid``) give the
length of a block from the same delimiter rules the builder emits with; the data planner
(``PlannedSample.num_tokens``) counts a sample with them before any image is encoded.

Samples are block-diagonal in the mask. Shape letters: L packed tokens, Nt text-type tokens, Nv ViT patches, P patch
vector length, Nl latent tokens, Pl = p·p·C latent token vector, n images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from unimage.model.attention import AttentionLayout
from unimage.model.config import ModelConfig, SpecialTokens
from unimage.model.image_transforms import flattened_position_ids, patchify
from unimage.model.mot import Routing

__all__ = [
    "CleanVaeImage",
    "DroppedImage",
    "NoisyVaeImage",
    "PackedBatch",
    "Sample",
    "Segment",
    "Text",
    "VitImage",
    "image_block_length",
    "latent_grid",
    "pack",
    "pack_tokens",
    "text_block_length",
    "vit_grid",
]


########################################################################################################################
# Segments
########################################################################################################################


@dataclass(frozen=True)
class Text:
    """A text segment: raw token ids without delimiters (the packer adds ``<|im_start|>`` / ``<|im_end|>``)."""

    token_ids: Sequence[int]
    loss: bool = False


@dataclass(frozen=True)
class VitImage:
    """An image for understanding: pixels [3, H, W] in [−1, 1], H and W multiples of the ViT patch size."""

    pixels: Tensor
    id_token_ids: Sequence[int] = ()


@dataclass(frozen=True)
class CleanVaeImage:
    """A conditioning image as normalised VAE latents [C, h, w] (h, w multiples of the latent patch size)."""

    latents: Tensor
    id_token_ids: Sequence[int] = ()


@dataclass(frozen=True)
class NoisyVaeImage:
    """A generation target: clean latents x0 [C, h, w]; noised in the model's forward.

    Attributes:
        latents: x0, normalised VAE latents.
        id_token_ids: ID tokens (from ``config.layout.image_id_tokens``; empty without ID prompting).
        timestep: Flow time t in [0, 1] before the shift; None draws t = sigmoid(u), u ~ N(0, 1) in the forward.
    """

    latents: Tensor
    id_token_ids: Sequence[int] = ()
    timestep: float | None = None


@dataclass(frozen=True)
class DroppedImage:
    """A conditioning image removed by CFG dropout: no tokens, but the RoPE id still advances by 1 (bagel-compat §5.3;
    a dropped text segment is simply left out)."""


Segment = Text | VitImage | CleanVaeImage | NoisyVaeImage | DroppedImage
Sample = Sequence[Segment]


########################################################################################################################
# Block layout and token counts (shared by the builder and the data planner)
########################################################################################################################


def _text_block(tokens: SpecialTokens, token_ids: Sequence[int]) -> list[int]:
    """A text split: ``<|im_start|> ids <|im_end|>``."""
    return [tokens.im_start, *(int(i) for i in token_ids), tokens.im_end]


def _image_block_ends(tokens: SpecialTokens, id_token_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The text-type tokens around an image's patches / latents: ``<|vision_start|> IDs`` and ``<|vision_end|>``."""
    return [tokens.vision_start, *(int(i) for i in id_token_ids)], [tokens.vision_end]


def text_block_length(config: ModelConfig, token_ids: Sequence[int]) -> int:
    """Packed tokens of a text segment (delimiters included)."""
    return len(_text_block(config.tokens, token_ids))


def image_block_length(config: ModelConfig, grid: tuple[int, int], id_token_ids: Sequence[int] = ()) -> int:
    """Packed tokens of an image block of ``grid`` (rows, cols) tokens carrying ``id_token_ids``."""
    head, tail = _image_block_ends(config.tokens, id_token_ids)
    return len(head) + grid[0] * grid[1] + len(tail)


def vit_grid(config: ModelConfig, height: int, width: int) -> tuple[int, int]:
    """ViT patches per side of an H×W image (H and W multiples of the patch size)."""
    p = config.vit.patch_size
    return height // p, width // p


def latent_grid(config: ModelConfig, height: int, width: int) -> tuple[int, int]:
    """Latent tokens per side of an h×w latent (``ae_downsample`` times smaller than the image's pixels)."""
    p = config.latent_patch_size
    return height // p, width // p


########################################################################################################################
# The packed batch
########################################################################################################################


@dataclass
class PackedBatch:
    """Everything the model's forward needs about a packed sequence of L tokens (all tensors on one device).

    Attributes:
        sample_lens: Tokens per sample (sum = L).
        next_positions: Per sample, the RoPE id the next segment would take (where a KV-cache context continues).
        position_ids: [L] 1-D RoPE ids.
        text_ids: [Nt] ids of text-type tokens (text, delimiters, ID tokens).
        text_indexes: [Nt] their positions in the packed sequence.
        vit_patches: [Nv, P] ViT patches of all ViT images, (row, col, channel) order.
        vit_indexes: [Nv] positions of the ViT tokens.
        vit_position_ids: [Nv] 2-D ids row·S + col.
        vit_cu_seqlens: [n_vit + 1] int32 cumulative patch counts.
        vae_latents: [Nl, Pl] patchified latents (x0 of noisy images, the clean latents of clean ones).
        vae_indexes: [Nl] positions of the latent tokens.
        vae_position_ids: [Nl] 2-D ids row·max_latent_size + col.
        vae_image_index: [Nl] which VAE image each latent token belongs to.
        vae_image_noisy: [n_vae] bool, the image is a noisy target.
        vae_image_timestep: [n_vae] float, given t (before shift) of noisy images, NaN = draw, 0 for clean ones.
        vae_image_sizes: (h, w) in latent tokens of each VAE image.
        ce_indexes: [Nce] positions whose next-token prediction has a CE target.
        ce_labels: [Nce] the targets.
        doc_ids: [L] sample of each token.
        split_ids: [L] split of each token (unique over the batch).
        split_full: [L] bool, token's split attends bidirectionally.
        split_noise: [L] bool, token's split is a noisy VAE block.
        is_gen: [L] bool, token uses the generation expert (latent tokens only).
        id_token_mask: [L] bool, token is an In-Context ID token.
    """

    sample_lens: list[int]
    next_positions: list[int]
    position_ids: Tensor
    text_ids: Tensor
    text_indexes: Tensor
    vit_patches: Tensor
    vit_indexes: Tensor
    vit_position_ids: Tensor
    vit_cu_seqlens: Tensor
    vae_latents: Tensor
    vae_indexes: Tensor
    vae_position_ids: Tensor
    vae_image_index: Tensor
    vae_image_noisy: Tensor
    vae_image_timestep: Tensor
    vae_image_sizes: list[tuple[int, int]]
    ce_indexes: Tensor
    ce_labels: Tensor
    doc_ids: Tensor
    split_ids: Tensor
    split_full: Tensor
    split_noise: Tensor
    is_gen: Tensor
    id_token_mask: Tensor

    @property
    def length(self) -> int:
        """L."""
        return int(self.position_ids.shape[0])

    @property
    def vae_token_noisy(self) -> Tensor:
        """[Nl] bool, the latent token belongs to a noisy image."""
        return self.vae_image_noisy[self.vae_image_index]

    @property
    def mse_indexes(self) -> Tensor:
        """[Nmse] positions of noisy latent tokens (where the velocity is predicted)."""
        return self.vae_indexes[self.vae_token_noisy]

    def routing(self, freeze_und: bool = False) -> Routing:
        """Expert routing of the L tokens."""
        return Routing.from_gen_mask(self.is_gen, freeze_und)

    def layout(self) -> AttentionLayout:
        """The generalized causal mask as metadata (see ``attention``)."""
        return AttentionLayout.self_attention(self.doc_ids, self.split_ids, self.split_full, self.split_noise)

    def dense_mask(self) -> Tensor:
        """[L, L] bool, True = may attend (row = query)."""
        return self.layout().dense_mask()

    def to(self, device: torch.device | str) -> PackedBatch:
        """A copy with every tensor on ``device``."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            changes[f.name] = value.to(device) if isinstance(value, Tensor) else value
        return PackedBatch(**changes)


########################################################################################################################
# The builder
########################################################################################################################


class _Builder:
    """Accumulates tokens of all samples as python lists; ``finish`` turns them into tensors once."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.tok = config.tokens
        self.length = 0
        self.split = -1
        self.doc = -1
        self._full = False
        self._noise = False
        self.position_ids: list[int] = []
        self.doc_ids: list[int] = []
        self.split_ids: list[int] = []
        self.split_full: list[bool] = []
        self.split_noise: list[bool] = []
        self.is_gen: list[bool] = []
        self.id_mask: list[bool] = []
        self.text_ids: list[int] = []
        self.text_indexes: list[int] = []
        self.vit_patches: list[Tensor] = []
        self.vit_pos: list[Tensor] = []
        self.vit_first: list[int] = []
        self.vit_lens: list[int] = []
        self.vae_latents: list[Tensor] = []
        self.vae_pos: list[Tensor] = []
        self.vae_first: list[int] = []
        self.vae_lens: list[int] = []
        self.vae_noisy: list[bool] = []
        self.vae_t: list[float] = []
        self.vae_sizes: list[tuple[int, int]] = []
        self.ce_indexes: list[int] = []
        self.ce_labels: list[int] = []
        self.sample_lens: list[int] = []
        self.next_positions: list[int] = []

    # ---------------------------------------------------------------------------------------------- token emitters

    def _open_split(self, full: bool, noise: bool) -> None:
        self.split += 1
        self._full, self._noise = full, noise

    def _emit(self, n: int, position: int | list[int], gen: bool = False, id_token: bool = False) -> int:
        """Append n tokens of the current split; returns the position of the first."""
        first = self.length
        self.position_ids.extend(position if isinstance(position, list) else [position] * n)
        self.doc_ids.extend([self.doc] * n)
        self.split_ids.extend([self.split] * n)
        self.split_full.extend([self._full] * n)
        self.split_noise.extend([self._noise] * n)
        self.is_gen.extend([gen] * n)
        self.id_mask.extend([id_token] * n)
        self.length += n
        return first

    def _emit_text(self, ids: Sequence[int], position: int | list[int], id_token: bool = False) -> int:
        first = self._emit(len(ids), position, id_token=id_token)
        self.text_ids.extend(int(i) for i in ids)
        self.text_indexes.extend(range(first, first + len(ids)))
        return first

    # ---------------------------------------------------------------------------------------------- segments

    def text(self, seg: Text, rope: int) -> int:
        ids = _text_block(self.tok, seg.token_ids)
        self._open_split(full=False, noise=False)
        first = self._emit_text(ids, list(range(rope, rope + len(ids))))
        if seg.loss:
            self.ce_indexes.extend(range(first, first + len(ids) - 1))
            self.ce_labels.extend(ids[1:])
        return rope + len(ids)

    def _image_prefix(self, id_token_ids: Sequence[int], rope: int) -> list[int]:
        """Emit ``<|vision_start|>`` and the ID tokens; returns the block's closing tokens."""
        head, tail = _image_block_ends(self.tok, id_token_ids)
        self._emit_text(head[:1], rope)
        if len(head) > 1:
            self._emit_text(head[1:], rope, id_token=True)
        return tail

    def vit(self, seg: VitImage, rope: int) -> int:
        c, h, w = seg.pixels.shape
        p, side = self.config.vit.patch_size, self.config.vit_max_num_patch_per_side
        if c != self.config.vit.num_channels:
            raise ValueError(f"ViT image has {c} channels, the config expects {self.config.vit.num_channels}")
        self._open_split(full=True, noise=False)
        tail = self._image_prefix(seg.id_token_ids, rope)
        patches = patchify(seg.pixels, p)  # [N, P]
        self.vit_pos.append(flattened_position_ids(*vit_grid(self.config, h, w), side))
        self.vit_patches.append(patches)
        self.vit_first.append(self._emit(patches.shape[0], rope))
        self.vit_lens.append(patches.shape[0])
        self._emit_text(tail, rope)
        return rope + 1

    def vae(self, seg: CleanVaeImage | NoisyVaeImage, rope: int) -> int:
        noisy = isinstance(seg, NoisyVaeImage)
        c, h, w = seg.latents.shape
        p = self.config.latent_patch_size
        if c != self.config.latent_channels:
            raise ValueError(f"VAE latents have {c} channels, the config expects {self.config.latent_channels}")
        self._open_split(full=True, noise=noisy)
        tail = self._image_prefix(seg.id_token_ids, rope)
        tokens = patchify(seg.latents, p)  # [h/p · w/p, Pl]
        grid = latent_grid(self.config, h, w)
        self.vae_pos.append(flattened_position_ids(*grid, self.config.max_latent_size))
        self.vae_latents.append(tokens)
        self.vae_first.append(self._emit(tokens.shape[0], rope, gen=True))
        self.vae_lens.append(tokens.shape[0])
        self.vae_noisy.append(noisy)
        given = seg.timestep if isinstance(seg, NoisyVaeImage) else 0.0
        if given is not None and not 0.0 <= given <= 1.0:
            raise ValueError(f"NoisyVaeImage.timestep must be in [0, 1], got {given}")
        self.vae_t.append(float("nan") if given is None else given)
        self.vae_sizes.append(grid)
        self._emit_text(tail, rope)
        return rope if noisy else rope + 1

    def sample(self, segments: Sample, start_position: int) -> None:
        self.doc += 1
        first = self.length
        rope = start_position
        for j, seg in enumerate(segments):
            try:
                if isinstance(seg, Text):
                    rope = self.text(seg, rope)
                elif isinstance(seg, VitImage):
                    rope = self.vit(seg, rope)
                elif isinstance(seg, CleanVaeImage | NoisyVaeImage):
                    rope = self.vae(seg, rope)
                elif isinstance(seg, DroppedImage):
                    rope += 1
                else:
                    raise TypeError(f"unknown segment type {type(seg).__name__}")
            except (ValueError, TypeError) as err:
                raise type(err)(f"sample {self.doc}, segment {j}: {err}") from err
        self.sample_lens.append(self.length - first)
        self.next_positions.append(rope)

    def raw_tokens(self, token_ids: Sequence[int], start_position: int) -> None:
        self.doc += 1
        self._open_split(full=False, noise=False)
        self._emit_text(list(token_ids), list(range(start_position, start_position + len(token_ids))))
        self.sample_lens.append(len(token_ids))
        self.next_positions.append(start_position + len(token_ids))

    # ---------------------------------------------------------------------------------------------- tensors

    def finish(self) -> PackedBatch:
        long = torch.long

        def idx(firsts: list[int], lens: list[int]) -> Tensor:
            if not firsts:
                return torch.empty(0, dtype=long)
            return torch.cat([torch.arange(f, f + n) for f, n in zip(firsts, lens)])

        def cat(parts: list[Tensor], width: int) -> Tensor:
            return torch.cat(parts) if parts else torch.empty(0, width)

        vit_dim, lat_dim = self.config.vit.patch_dim, self.config.patch_latent_dim
        return PackedBatch(
            sample_lens=self.sample_lens,
            next_positions=self.next_positions,
            position_ids=torch.tensor(self.position_ids, dtype=long),
            text_ids=torch.tensor(self.text_ids, dtype=long),
            text_indexes=torch.tensor(self.text_indexes, dtype=long),
            vit_patches=cat(self.vit_patches, vit_dim),
            vit_indexes=idx(self.vit_first, self.vit_lens),
            vit_position_ids=torch.cat(self.vit_pos) if self.vit_pos else torch.empty(0, dtype=long),
            vit_cu_seqlens=torch.tensor([0, *self.vit_lens], dtype=torch.int32).cumsum(0, dtype=torch.int32),
            vae_latents=cat(self.vae_latents, lat_dim),
            vae_indexes=idx(self.vae_first, self.vae_lens),
            vae_position_ids=torch.cat(self.vae_pos) if self.vae_pos else torch.empty(0, dtype=long),
            vae_image_index=torch.repeat_interleave(
                torch.arange(len(self.vae_lens)), torch.tensor(self.vae_lens, dtype=long)
            ),
            vae_image_noisy=torch.tensor(self.vae_noisy, dtype=torch.bool),
            vae_image_timestep=torch.tensor(self.vae_t, dtype=torch.float32),
            vae_image_sizes=self.vae_sizes,
            ce_indexes=torch.tensor(self.ce_indexes, dtype=long),
            ce_labels=torch.tensor(self.ce_labels, dtype=long),
            doc_ids=torch.tensor(self.doc_ids, dtype=long),
            split_ids=torch.tensor(self.split_ids, dtype=long),
            split_full=torch.tensor(self.split_full, dtype=torch.bool),
            split_noise=torch.tensor(self.split_noise, dtype=torch.bool),
            is_gen=torch.tensor(self.is_gen, dtype=torch.bool),
            id_token_mask=torch.tensor(self.id_mask, dtype=torch.bool),
        )


def pack(samples: Sequence[Sample], config: ModelConfig, start_position: int = 0) -> PackedBatch:
    """Pack samples into one sequence (block-diagonal attention between samples).

    Args:
        samples: Each a sequence of ``Text`` / ``VitImage`` / ``CleanVaeImage`` / ``NoisyVaeImage`` segments.
        config: Model config (special tokens, patch sizes, position tables).
        start_position: First RoPE id of every sample (0 in training; the context's next id when a KV cache holds
            earlier tokens).

    Returns:
        The packed batch on the CPU.

    Raises:
        ValueError: No samples, an empty sample, or a segment that does not fit the config (the message names the
            sample and segment).
    """
    if not samples:
        raise ValueError("pack() needs at least one sample")
    builder = _Builder(config)
    for i, sample in enumerate(samples):
        if not sample:
            raise ValueError(f"sample {i} has no segments")
        builder.sample(sample, start_position)
    return builder.finish()


def pack_tokens(token_ids: Sequence[int], config: ModelConfig, start_position: int = 0) -> PackedBatch:
    """One causal text split of raw ids, WITHOUT added delimiters (text decoding feeds one token at a time).

    Raises:
        ValueError: ``token_ids`` is empty.
    """
    if not token_ids:
        raise ValueError("pack_tokens() needs at least one token")
    builder = _Builder(config)
    builder.raw_tokens(token_ids, start_position)
    return builder.finish()
