"""KV-cache contexts for inference: prefill text, ViT and clean-VAE blocks once, then decode or denoise on top.

Reference: ByteDance-Seed/Bagel @ 056b5fd, ``modeling/bagel/qwen2_navit.py`` (``NaiveCache``, ``forward_inference``)
and ``inferencer.py`` (contexts of kv_lens / ropes / past_key_values); bagel-compat §2.5, §6.

A ``Context`` holds, per layer, the keys (after QK-norm and RoPE) and values of every token seen so far, plus the
RoPE id the next segment takes. It is immutable: ``prefill`` returns a new context and leaves the old one valid, so the
three classifier-free-guidance contexts of BAGEL's ``interleave_inference`` are just three variables (no deep copies).

Every cached token is visible to every later token, which is exactly the training mask restricted to a prefix: only
noisy blocks are hidden, and those are never cached (denoising steps reuse the context without growing it).
Within a prefilled call the packing rules hold: text is causal, an image block is full, and a clean VAE block routes
its latents to the generation expert with t = 0 (BAGEL's ``mode="gen"``), everything else to the understanding expert.

Several contexts can share one query block in one forward (``prepare_branches`` / ``run_branches``): the query
is packed once per context as separate documents, every layer's cache is the concatenation of the contexts' caches,
and the mask (``AttentionLayout.with_doc_prefixes``) lets document d see only [cache_d ++ query_d]. This is how the
CFG branches of a denoising step run as one batched forward (BAGEL runs them one after another).

Shape letters: T cached tokens, Hkv key/value heads, Dh head dim, n branches (contexts), Lq query tokens per branch,
D hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from unimage.model.attention import AttentionLayout
from unimage.model.mot import KVPair
from unimage.model.packing import NoisyVaeImage, PackedBatch, Sample, Segment, Text, pack

if TYPE_CHECKING:
    from unimage.model.unimage import UniMAGE

__all__ = ["BranchBatch", "Context", "GuidanceContexts", "prefill", "prepare_branches", "run_branches", "run_cached"]


@dataclass(frozen=True)
class Context:
    """An immutable prefilled context of one sample.

    Attributes:
        kv: Per layer (keys, values) [T, Hkv, Dh]; empty tuple for an empty context.
        length: T.
        next_position: RoPE id of the next segment.
    """

    kv: tuple[KVPair, ...] = ()
    length: int = 0
    next_position: int = 0

    @classmethod
    def empty(cls) -> Context:
        """A context with nothing in it (the t̄ branch of text-to-image CFG)."""
        return cls()

    @property
    def past(self) -> list[KVPair] | None:
        """The per-layer cache as the decoder takes it (None when empty)."""
        return list(self.kv) if self.kv else None

    def extended(self, new_kv: Sequence[KVPair], num_tokens: int, next_position: int) -> Context:
        """A new context with ``num_tokens`` more tokens appended (the old one is untouched)."""
        if self.kv:
            kv = tuple((torch.cat([k0, k1]), torch.cat([v0, v1])) for (k0, v0), (k1, v1) in zip(self.kv, new_kv))
        else:
            kv = tuple(new_kv)
        return Context(kv, self.length + num_tokens, next_position)


def run_cached(
    model: UniMAGE, context: Context, batch: PackedBatch, vae_inputs: Tensor, vae_t: Tensor
) -> tuple[Tensor, list[KVPair]]:
    """Run a one-sample query block over a context: (hidden [Lq, D], new tokens' per-layer (keys, values)).

    Args:
        model: The model.
        context: Cached tokens, all visible to the query block.
        batch: The query block, packed with ``start_position = context.next_position`` (or another id for a CFG
            branch) on the model's device.
        vae_inputs: [Nl, Pl] latent inputs of the block.
        vae_t: [Nl] their (shifted) flow time.
    """
    if len(batch.sample_lens) != 1:
        raise ValueError(f"a cached call takes one sample, got {len(batch.sample_lens)}")
    return model.hidden_states(batch, vae_inputs, vae_t, past=context.past)


@dataclass(frozen=True)
class BranchBatch:
    """One query block over n contexts, ready for ``run_branches`` (built once, reused by every denoising step).

    Attributes:
        batch: The query packed n times as documents 0 … n−1 ([n·Lq] tokens), each at its context's RoPE id.
        past: Per layer (keys, values) [ΣT, Hkv, Dh], the contexts' caches concatenated in order (None if all empty).
        layout: Mask of the n·Lq queries over the ΣT + n·Lq keys (document d sees [cache_d ++ query_d]).
    """

    batch: PackedBatch
    past: list[KVPair] | None
    layout: AttentionLayout

    @property
    def num_branches(self) -> int:
        """n."""
        return len(self.batch.sample_lens)


def prepare_branches(
    model: UniMAGE, contexts: Sequence[Context], query: Sample, queries: Sequence[Sample] | None = None
) -> BranchBatch:
    """Pack ``query`` once per context and concatenate the caches, for a batched forward over all contexts.

    Costs one copy of the contexts' caches (the model's attention appends new keys to a single past tensor).

    Args:
        model: The model.
        contexts: The n contexts (e.g. the CFG branches c, t̄, ī, or those of several stories); branch d starts at
            ``contexts[d].next_position``.
        query: Segments of the query block (the same tokens for every branch).
        queries: One query per context instead (e.g. stories whose keyframes carry different ID tokens); their
            noisy blocks must have the same size so that ``run_branches`` can take the latents branch-major.
    """
    if not contexts:
        raise ValueError("prepare_branches() needs at least one context")
    if queries is not None and len(queries) != len(contexts):
        raise ValueError(f"{len(queries)} queries for {len(contexts)} contexts")
    device = model.llm2vae.weight.device
    samples = [list(q) for q in queries] if queries is not None else [list(query)] * len(contexts)
    batch = pack(samples, model.config, start_position=0)
    offsets = torch.tensor([ctx.next_position for ctx in contexts])  # [n]
    batch = replace(
        batch,
        position_ids=batch.position_ids + offsets[batch.doc_ids],  # [n·Lq] each branch at its context's id
        next_positions=[p + int(o) for p, o in zip(batch.next_positions, offsets)],
    ).to(device)
    filled = [ctx for ctx in contexts if ctx.kv]
    past = None
    if filled:
        past = [
            (torch.cat([ctx.kv[i][0] for ctx in filled]), torch.cat([ctx.kv[i][1] for ctx in filled]))
            for i in range(len(filled[0].kv))
        ]  # per layer [ΣT, Hkv, Dh]
    layout = batch.layout().with_doc_prefixes([ctx.length for ctx in contexts])
    return BranchBatch(batch, past, layout)


def run_branches(model: UniMAGE, branches: BranchBatch, vae_inputs: Tensor, vae_t: Tensor) -> Tensor:
    """One forward of the prepared query block over all its contexts: hidden states [n·Lq, D], branch-major.

    Equals ``run_cached`` of each branch on its own (up to float summation order); the new tokens' keys and values
    are not returned (denoising never grows a context).

    Args:
        model: The model.
        branches: From ``prepare_branches``.
        vae_inputs: [n·Nl, Pl] latent inputs, branch-major.
        vae_t: [n·Nl] their (shifted) flow time.
    """
    batch = branches.batch
    embeds = model.embed(batch, vae_inputs, vae_t)  # [n·Lq, D]
    backend = model.attention_backend(embeds.device)
    hidden, _ = model.language_model.model(
        embeds, batch.position_ids, batch.routing(), branches.layout, backend, branches.past
    )
    return hidden


@torch.no_grad()
def prefill(model: UniMAGE, context: Context, segments: Sequence[Segment]) -> Context:
    """Append text, ViT and clean-VAE segments to a context (one forward; nothing after them is computed).

    Args:
        model: The model.
        context: The context to extend (left unchanged).
        segments: ``Text`` (its ``loss`` flag is ignored), ``VitImage`` and ``CleanVaeImage`` segments, in order.
            With ID prompting (``config.layout``) image segments carry their ID tokens exactly as in training.

    Returns:
        The extended context: ``length`` grows by the block's tokens; ``next_position`` advances by the text length
        and by 1 per image.

    Raises:
        ValueError: A ``NoisyVaeImage`` (generation targets are never cached) or no segments.
    """
    if not segments:
        raise ValueError("prefill() needs at least one segment")
    if any(isinstance(s, NoisyVaeImage) for s in segments):
        raise ValueError("prefill() takes no NoisyVaeImage: noisy blocks are never cached (use generate_image)")
    device = model.llm2vae.weight.device
    batch = pack([list(segments)], model.config, start_position=context.next_position).to(device)
    vae_t = torch.zeros(batch.vae_latents.shape[0], device=device)
    _, new_kv = run_cached(model, context, batch, batch.vae_latents, vae_t)
    return context.extended(new_kv, batch.length, batch.next_positions[0])


@dataclass(frozen=True)
class GuidanceContexts:
    """The three contexts of BAGEL's ``interleave_inference`` (bagel-compat §6), updated by its rules.

    - ``add_text``: t̄ becomes the current full context (before the text); the text goes into c and ī.
    - ``add_images``: the image blocks go into c only; then t̄ becomes the new c.

    So for text-to-image t̄ is empty and ī equals c; for editing ([image, instruction]) t̄ holds the image without the
    instruction and ī the instruction without the image.

    Attributes:
        full: c, everything.
        cfg_text: t̄, without the latest text.
        cfg_img: ī, all text and no images.
    """

    full: Context = Context()
    cfg_text: Context = Context()
    cfg_img: Context = Context()

    def add_text(self, model: UniMAGE, token_ids: Sequence[int]) -> GuidanceContexts:
        """Append one text segment (``<|im_start|> ids <|im_end|>``)."""
        seg = [Text(token_ids)]
        return GuidanceContexts(prefill(model, self.full, seg), self.full, prefill(model, self.cfg_img, seg))

    def add_images(self, model: UniMAGE, segments: Sequence[Segment]) -> GuidanceContexts:
        """Append image blocks (BAGEL's input image: a ``CleanVaeImage`` then a ``VitImage`` of the same picture)."""
        full = prefill(model, self.full, segments)
        return GuidanceContexts(full, full, self.cfg_img)
