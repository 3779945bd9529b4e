"""Turning one training sample into the segments of the packed-sequence builder (``unimage.model.packing``).

A sample becomes a *plan*: text segments (token ids, with or without CE loss) and image segments that still hold
pixels. Images are VAE-encoded later, on the training device, by ``PlannedSample.to_model_segments`` (the frozen VAE
belongs to the model), so the data workers only decode, resize and tokenize.

Layout of an interleaved script (paper Fig. 3, left), one text segment per script block::

    [<User>: prompt]                       no loss (the model's input); droppable (text conditioning dropout)
    [<Character…>/<Environment…> entries]  CE in ``icl``
    [<Frame1>: … <Video1>: …]              CE in ``icl``
    (keyframe 1 as NOISY VAE)              velocity MSE
    (keyframe 1 as CLEAN VAE) (… as ViT)   conditioning copies, so later shots see keyframe 1 (droppable)
    [<Frame2>: … <Video2>: …]
    (keyframe 2 NOISY) (CLEAN) (ViT) …
    (last keyframe NOISY only)             nothing follows it, so its clean copies would be wasted
    [] (an empty block)                    end of script: CE on ``<|im_end|>`` right after ``<|im_start|>``

Markers (``<Extension>`` / ``<Continuation>``) are their own text segment at their place. With ``id_prompting``
every copy of keyframe s carries the ID tokens of shot s: ``<FrameS>`` and the characters / environments its frame
description mentions (``unimage.script.vocab.id_prompt_for_shot``).

Which text carries CE loss — everything the model must *write*, never what it is *given*:

- the ``<User>`` prompt never has loss (it is the user's input, and the only text that is dropped for CFG);
- ``icl`` interleaved scripts: every other block has loss (global entries, shots, markers);
- ``del`` interleaved scripts and pairs: no text loss at all — they train the generation expert on MSE only, and
  under the stop-gradient no CE gradient could reach the understanding expert anyway; their text is conditioning
  and is droppable like BAGEL's ``enable_cfg`` text;
- pure-text scripts (``del``, understanding expert): a Pre-Context Script Splitting view (``unimage.data.transforms``)
  gives a context and a target; context blocks have no loss, target blocks have loss. For the unsplit ``full`` view the
  global entries also have loss (the model writes them from the prompt), only the ``<User>`` line has none;
- pairs: the caption is a droppable conditioning text, then the image as a noisy VAE target.

Every script whose text carries loss ends with an empty block with loss: its only CE target is ``<|im_end|>`` at the
``<|im_start|>`` position. That is how the model learns when a script is finished; the Director reads an immediate
``<|im_end|>`` at the start of a new block as "end of script" (``unimage.infer.grammar.SCRIPT_END``).

Shape letters: H×W pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from unimage.data.manifest import InterleavedSample, PairSample, TextSample
from unimage.data.transforms import TextView
from unimage.model.config import ModelConfig
from unimage.model.image_transforms import ImageTransform
from unimage.model.packing import (
    CleanVaeImage,
    DroppedImage,
    NoisyVaeImage,
    Segment,
    Text,
    VitImage,
    image_block_length,
    latent_grid,
    text_block_length,
    vit_grid,
)
from unimage.script import Script
from unimage.script.serialize import entry_line, marker_text, shot_text
from unimage.script.splitting import BlockKind
from unimage.script.tokenizer import ScriptTokenizer
from unimage.script.vocab import IdPrompt, id_prompt_for_shot

__all__ = [
    "ImageSeg",
    "ImageSizes",
    "PlannedSample",
    "SegmentBuilder",
    "TextSeg",
    "encode_groups",
    "script_blocks",
]

ImageRole = Literal["noisy", "clean", "vit", "dropped"]


@dataclass(frozen=True)
class TextSeg:
    """A text segment: ids without delimiters, whether it has CE loss, and whether conditioning dropout may drop it."""

    token_ids: tuple[int, ...]
    loss: bool = False
    droppable: bool = False


@dataclass(frozen=True)
class ImageSeg:
    """An image segment before VAE encoding.

    Attributes:
        role: ``noisy`` (generation target), ``clean`` (VAE conditioning copy), ``vit`` (understanding copy) or
            ``dropped`` (a conditioning copy removed by CFG dropout: no tokens, but its RoPE id is still used).
        image: Index into the sample's ``vae_pixels`` / ``vit_pixels`` (the copies of one keyframe share it).
        id_token_ids: In-Context ID tokens (``config.layout.image_id_tokens``: empty when ``id_prompting`` is off).
    """

    role: ImageRole
    image: int
    id_token_ids: tuple[int, ...] = ()

    @property
    def droppable(self) -> bool:
        """Conditioning copies may be dropped; targets (and copies already dropped) never are."""
        return self.role in ("clean", "vit")


PlanSegment = TextSeg | ImageSeg

#: The empty block that ends a script: its one CE target is ``<|im_end|>`` at the ``<|im_start|>`` position.
END_OF_SCRIPT = TextSeg((), loss=True)


@dataclass
class PlannedSample:
    """One sample ready to pack, images still in pixels.

    Attributes:
        id: The manifest record id.
        kind: ``interleaved``, ``text`` or ``pair``.
        segments: Text and image segments in sequence order.
        vae_pixels: [3, H, W] in [-1, 1] per image, H and W multiples of the latent downsampling (16).
        vit_pixels: [3, H', W'] in [-1, 1] per image, multiples of the ViT patch size.
        view: The Pre-Context Script Splitting view of a text script (``full`` otherwise).
    """

    id: str
    kind: str
    segments: list[PlanSegment]
    vae_pixels: list[Tensor] = field(default_factory=list)
    vit_pixels: list[Tensor] = field(default_factory=list)
    view: str = "full"

    def num_tokens(self, config: ModelConfig) -> int:
        """Packed length of this sample (delimiters, markers and ID tokens included), by the packer's own rules."""
        n = 0
        for seg in self.segments:
            if isinstance(seg, TextSeg):
                n += text_block_length(config, seg.token_ids)
            elif seg.role == "vit":
                _, h, w = self.vit_pixels[seg.image].shape
                n += image_block_length(config, vit_grid(config, h, w), seg.id_token_ids)
            elif seg.role != "dropped":
                _, h, w = self.vae_pixels[seg.image].shape
                ds = config.ae_downsample
                n += image_block_length(config, latent_grid(config, h // ds, w // ds), seg.id_token_ids)
        return n

    @property
    def num_ce_targets(self) -> int:
        """Text tokens with a CE target (ids + ``<|im_end|>`` of loss segments)."""
        return sum(len(s.token_ids) + 1 for s in self.segments if isinstance(s, TextSeg) and s.loss)

    def without(self, drop: Sequence[bool]) -> PlannedSample:
        """A copy without the segments flagged in ``drop`` (one flag per segment).

        A dropped text disappears; a dropped image leaves a ``dropped`` placeholder, because BAGEL still advances the
        RoPE id by one for it (bagel-compat §2.3), so the tokens after it keep the positions they have at inference.
        """
        kept = [
            ImageSeg("dropped", s.image) if isinstance(s, ImageSeg) and d else s
            for s, d in zip(self.segments, drop, strict=True)
            if not (d and isinstance(s, TextSeg))
        ]
        return PlannedSample(self.id, self.kind, kept, self.vae_pixels, self.vit_pixels, self.view)

    def to_model_segments(self, latents: Sequence[Tensor | None]) -> list[Segment]:
        """The segments of ``unimage.model.packing`` given the VAE latents [C, h, w] of each image.

        Args:
            latents: One entry per image of ``vae_pixels``; None for images no VAE segment uses.
        """
        out: list[Segment] = []
        for seg in self.segments:
            if isinstance(seg, TextSeg):
                out.append(Text(seg.token_ids, loss=seg.loss))
            elif seg.role == "dropped":
                out.append(DroppedImage())
            elif seg.role == "vit":
                out.append(VitImage(self.vit_pixels[seg.image], id_token_ids=seg.id_token_ids))
            else:
                lat = latents[seg.image]
                if lat is None:
                    raise ValueError(f"sample {self.id}: image {seg.image} has no latents")
                cls = NoisyVaeImage if seg.role == "noisy" else CleanVaeImage
                out.append(cls(lat, id_token_ids=seg.id_token_ids))
        return out

    def vae_images_used(self) -> list[int]:
        """Indexes of images that some VAE segment needs (the rest need no encoding)."""
        return sorted({s.image for s in self.segments if isinstance(s, ImageSeg) and s.role in ("noisy", "clean")})


@dataclass(frozen=True)
class ImageSizes:
    """Resize rules of the two image paths (BAGEL's ``MaxLongEdgeMinShortEdgeResize``, bagel-compat §4.1).

    Attributes:
        vae_max_size: Longest side of a VAE image (BAGEL: 1024; at most ``max_latent_size`` · 16).
        vae_min_size: Shortest side of a VAE image (BAGEL: 512).
        vit_max_size: Longest side of a ViT image (BAGEL: 980; at most ``vit_max_num_patch_per_side`` · 14).
        vit_min_size: Shortest side of a ViT image (BAGEL: 224).
    """

    vae_max_size: int = 1024
    vae_min_size: int = 512
    vit_max_size: int = 980
    vit_min_size: int = 224

    def check(self, config: ModelConfig) -> None:
        """Raise ``ValueError`` when the largest image would not fit the model's position tables."""
        vae_cap = config.max_latent_size * config.latent_downsample
        vit_cap = config.vit_max_num_patch_per_side * config.vit.patch_size
        if self.vae_max_size > vae_cap:
            raise ValueError(
                f"ImageSizes.vae_max_size={self.vae_max_size} exceeds the model's latent table ({vae_cap} px)"
            )
        if self.vit_max_size > vit_cap:
            raise ValueError(
                f"ImageSizes.vit_max_size={self.vit_max_size} exceeds the model's ViT table ({vit_cap} px)"
            )
        if self.vae_min_size > self.vae_max_size or self.vit_min_size > self.vit_max_size:
            raise ValueError(f"ImageSizes: a min size exceeds its max size: {self}")


def script_blocks(script: Script) -> list[tuple[BlockKind, str]]:
    """The script as (kind, text) blocks: ``user``, ``globals``, ``marker``, ``shot``, in text order.

    Concatenating the texts with the blank-line separators of ``serialize`` (user and globals are the two halves of
    one header block) gives the canonical text back; ``tests`` check it.
    """
    out: list[tuple[BlockKind, str]] = []
    if script.user_prompt is not None:
        out.append(("user", entry_line("User", script.user_prompt) + "\n"))
    entries = [entry_line(f"Character{c.index}", c.description.text) for c in script.characters]
    entries += [entry_line(f"Environment{e.index}", e.description.text) for e in script.environments]
    if entries:
        out.append(("globals", "".join(line + "\n" for line in entries)))
    for position in range(len(script.shots) + 1):
        out += [("marker", marker_text(m)) for m in script.markers if m.position == position]
        if position < len(script.shots):
            out.append(("shot", shot_text(script.shots[position])))
    return out


class SegmentBuilder:
    """Builds ``PlannedSample`` s from manifest samples for one model config and tokenizer.

    Args:
        config: The model config (its ``layout`` gives the ID tokens; patch sizes, tables).
        tokenizer: The script tokenizer whose special ids match ``config.tokens``.
        sizes: Image resize rules.
    """

    def __init__(self, config: ModelConfig, tokenizer: ScriptTokenizer, sizes: ImageSizes | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.sizes = sizes or ImageSizes()
        self.sizes.check(config)
        self.vae_transform = ImageTransform(self.sizes.vae_max_size, self.sizes.vae_min_size, config.latent_downsample)
        self.vit_transform = ImageTransform(self.sizes.vit_max_size, self.sizes.vit_min_size, config.vit.patch_size)

    # ------------------------------------------------------------------------------------------------ pieces

    def _ids(self, prompt: IdPrompt | None) -> tuple[int, ...]:
        return self.config.layout.image_id_tokens(prompt, self.tokenizer)

    def _text(self, text: str, loss: bool, droppable: bool) -> TextSeg:
        return TextSeg(tuple(self.tokenizer.encode(text)), loss=loss, droppable=droppable and not loss)

    def _pixels(self, image: Image.Image) -> tuple[Tensor, Tensor]:
        return self.vae_transform(image), self.vit_transform(image)

    # ------------------------------------------------------------------------------------------------ sample kinds

    def interleaved(self, sample: InterleavedSample, text_loss: bool) -> PlannedSample:
        """Script blocks with each shot followed by its keyframe (noisy, then clean VAE + ViT copies).

        Args:
            sample: The interleaved sample (one image per shot, checked by the manifest reader).
            text_loss: CE on the script text (``icl``); False in ``del`` (MSE only, text is droppable conditioning).
        """
        segments: list[PlanSegment] = []
        vae: list[Tensor] = []
        vit: list[Tensor] = []
        shots = sample.structure.shots
        shot_no = 0
        for kind, text in script_blocks(sample.structure):
            if kind == "user":
                segments.append(self._text(text, loss=False, droppable=True))
                continue
            segments.append(self._text(text, loss=text_loss, droppable=True))
            if kind != "shot":
                continue
            vae_px, vit_px = self._pixels(sample.images[shot_no])
            vae.append(vae_px)
            vit.append(vit_px)
            ids = self._ids(id_prompt_for_shot(shots[shot_no]))
            segments.append(ImageSeg("noisy", shot_no, ids))
            if shot_no < len(shots) - 1:
                segments += [ImageSeg("clean", shot_no, ids), ImageSeg("vit", shot_no, ids)]
            shot_no += 1
        if text_loss:
            segments.append(END_OF_SCRIPT)
        return PlannedSample(sample.id, "interleaved", segments, vae, vit)

    def text(self, sample: TextSample, view: TextView) -> PlannedSample:
        """A pure-text script as blocks; loss on the blocks the view does not give as context (``view.in_context``)."""
        segments: list[PlanSegment] = []
        shots_before = 0  # a shot's index; for a marker, its position (the shots before it)
        for kind, text in script_blocks(view.structure):
            loss = not view.in_context(kind, shots_before)
            segments.append(self._text(text, loss=loss, droppable=False))
            shots_before += kind == "shot"
        segments.append(END_OF_SCRIPT)  # every view's target runs to the end of the script
        return PlannedSample(sample.id, "text", segments, view=view.kind)

    def pair(self, sample: PairSample) -> PlannedSample:
        """Caption (droppable conditioning, no loss) → noisy VAE target; ID tokens from a structured caption."""
        vae_px, vit_px = self._pixels(sample.image)
        prompt = None
        if sample.structure is not None and sample.structure.shots:
            prompt = id_prompt_for_shot(sample.structure.shots[0])
        segments: list[PlanSegment] = [
            self._text(sample.text, loss=False, droppable=True),
            ImageSeg("noisy", 0, self._ids(prompt)),
        ]
        return PlannedSample(sample.id, "pair", segments, [vae_px], [vit_px])


def stack_by_size(images: Sequence[Tensor]) -> dict[tuple[int, int], list[int]]:
    """Group image indexes by (H, W) so each group is encoded as one VAE batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault((int(img.shape[-2]), int(img.shape[-1])), []).append(i)
    return groups


def encode_groups(
    images: Sequence[Tensor],
    encode: Callable[[Tensor], Tensor],
    device: torch.device | str,
    dtype: torch.dtype | None = None,
) -> list[Tensor]:
    """Encode images [3, H, W] with ``encode`` ([B, 3, H, W] → [B, C, h, w]) one batch per size; latents on ``device``."""
    out: list[Tensor | None] = [None] * len(images)
    for idx in stack_by_size(images).values():
        batch = torch.stack([images[i] for i in idx]).to(device)  # [B, 3, H, W]
        if dtype is not None:
            batch = batch.to(dtype)
        lat = encode(batch)  # [B, C, h, w]
        for k, i in enumerate(idx):
            out[i] = lat[k]
    return [t for t in out if t is not None]  # every slot is filled: each index is in exactly one group
