"""Grounding DINO SwinT-OGC character detector, run through transformers (§4.1).

Official: IDEA's `groundingdino.util.inference.load_image/predict` with `groundingdino_swint_ogc.pth`:
image RandomResize([800], max_size=1333) + ImageNet normalisation; caption lower-cased and stripped with
" ." appended unless it already ends with "."; a query is kept if the max over text tokens of
sigmoid(logit) > box_threshold = 0.25; boxes are normalised (cx, cy, w, h). We run the same weights through
transformers' `GroundingDinoForObjectDetection`: either the bundle's original `groundingdino_swint_ogc.pth`
(renamed on load, `bench.backbones.grounding_dino_original`, with the bundle's BERT tokenizer) or its
transformers conversion (`IDEA-Research/grounding-dino-tiny`), with transformers' PIL image processor (the
same shortest-side-800 / longest-1333 rule and bilinear resize) and our own post-processing identical to
`predict`. `text_threshold` only selects phrase labels in
`predict` and has no effect on boxes, so it is not needed.

Deviation: the official code detects one image at a time; we batch images that share a size (no padding,
so results equal single-image inference up to float reassociation).

Shapes: N images, Q queries (900), T text positions (256), K kept boxes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.backbones.base import Detections, boxes_from_normalized_cxcywh
from bench.backbones.weights import load_pretrained_checked

BOX_THRESHOLD = 0.25


def preprocess_caption(caption: str) -> str:
    """IDEA's caption rule: lower-case, strip, end with "." (e.g. "people" → "people.")."""
    result = caption.lower().strip()
    return result if result.endswith(".") else result + "."


def load_grounding_dino_image_processor(path: Path) -> Any:
    """The PIL-backend Grounding DINO image processor from a local directory (never downloads)."""
    import transformers

    # transformers >= 5 has a torchvision and a PIL backend; 4.x has only the PIL one, under the plain name.
    processor_cls: Any = (
        getattr(transformers, "GroundingDinoImageProcessorPil", None) or transformers.GroundingDinoImageProcessor
    )
    return processor_cls.from_pretrained(str(path), local_files_only=True)


def official_image_processor() -> Any:
    """transformers' PIL Grounding DINO processor with IDEA's settings: shortest side 800, longest 1333,
    bilinear, rescale 1/255, ImageNet mean/std (its defaults; spelled out so a default change cannot drift)."""
    import transformers

    processor_cls: Any = (
        getattr(transformers, "GroundingDinoImageProcessorPil", None) or transformers.GroundingDinoImageProcessor
    )
    return processor_cls(
        size={"shortest_edge": 800, "longest_edge": 1333},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        do_pad=True,
    )


class GroundingDinoDetector:
    """`CharacterDetector` over `GroundingDinoForObjectDetection`."""

    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        batch_size: int = 4,
        box_threshold: float = BOX_THRESHOLD,
        text_encoder_dir: Path | None = None,
    ) -> None:
        """Load model, tokenizer and image processor.

        Args:
            path: a local transformers directory, or an original IDEA checkpoint file (`.pth`).
            device: torch device string.
            batch_size: images per forward pass.
            box_threshold: keep a query when its best token probability exceeds this.
            text_encoder_dir: for an original checkpoint, the BERT directory giving the text config and
                tokenizer (the bundle's `google-bert/bert-base-uncased/`); the image processor then has the
                official settings (800 / 1333, ImageNet normalisation).
        """
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection

        path = Path(path)
        if path.is_file():
            from bench.backbones.grounding_dino_original import load_original_grounding_dino

            if text_encoder_dir is None:
                raise ValueError(f"{path}: an original checkpoint needs text_encoder_dir (the BERT directory)")
            self.model = load_original_grounding_dino(path, Path(text_encoder_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(str(text_encoder_dir), local_files_only=True)
            self.image_processor = official_image_processor()
        else:
            self.model = load_pretrained_checked(GroundingDinoForObjectDetection, path)
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.image_processor = load_grounding_dino_image_processor(path)
        self.model = self.model.float().eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.box_threshold = box_threshold

    @torch.inference_mode()
    def raw_outputs(self, images: Sequence[Image.Image], caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs for same-size images: (logits [n, Q, T], pred_boxes [n, Q, 4] normalised cxcywh)."""
        text = self.tokenizer(
            [preprocess_caption(caption)] * len(images), return_tensors="pt", padding="longest"
        )  # input_ids, token_type_ids, attention_mask: [n, L]
        pixels = self.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        out = self.model(
            pixel_values=pixels["pixel_values"].to(self.device),
            pixel_mask=pixels["pixel_mask"].to(self.device),
            **{k: v.to(self.device) for k, v in text.items()},
        )
        return out.logits.float().cpu(), out.pred_boxes.float().cpu()

    def detect(self, images: Sequence[Image.Image], caption: str) -> list[Detections]:
        """Boxes whose best token score exceeds the box threshold, one `Detections` per image."""
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, im in enumerate(images):
            groups[im.size].append(i)
        results: list[Detections | None] = [None] * len(images)
        for (width, height), indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                logits, boxes = self.raw_outputs([images[i] for i in chunk], caption)
                scores = logits.sigmoid().amax(dim=-1)  # [n, Q]: best token per query (-inf pads → 0)
                for row, i in enumerate(chunk):
                    keep = scores[row] > self.box_threshold
                    results[i] = boxes_from_normalized_cxcywh(boxes[row][keep], scores[row][keep], width, height)
        return [r if r is not None else Detections.empty() for r in results]
