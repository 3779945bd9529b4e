"""CIDS identity encoder for non-realistic characters: CLIP ViT-L/14 image features (§4.1).

Official: `CLIPModel.from_pretrained(<bundle>/openai/clip-vit-large-patch14)` and its processor under
transformers 4.41.2 (PIL resize of the shortest side to 224 bicubic, centre crop 224, /255, CLIP mean/std),
then `get_image_features` (the 768-d projection) and L2-normalisation. We use transformers' PIL-backend image
processor where it exists (transformers ≥ 5 splits a torchvision and a PIL backend; 4.x has only PIL), so the
pixels match the official ones.

Shapes: N crops, P projection dim (768 for ViT-L/14).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.backbones.base import IdentityFeatures
from bench.backbones.weights import load_pretrained_checked


def load_clip_image_processor(path: Path) -> Any:
    """The PIL-backend CLIP image processor from a local directory (never downloads)."""
    import transformers

    # transformers >= 5 has a torchvision and a PIL backend; 4.x has only the PIL one, under the plain name.
    processor_cls: Any = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return processor_cls.from_pretrained(str(path), local_files_only=True)


class CLIPIdentityEncoder:
    """`IdentityEncoder` over `CLIPModel.get_image_features`; every crop gets a feature."""

    name = "clip"

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 32) -> None:
        """Load the model and processor from the local HF directory `path`."""
        from transformers import CLIPModel

        self.model = load_pretrained_checked(CLIPModel, path).float().eval().to(device)
        self.processor = load_clip_image_processor(path)
        self.device = device
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> IdentityFeatures:
        """Embed crops → {"clip": [N, P] unit rows}, all valid."""
        feats = [torch.zeros(0, int(self.model.config.projection_dim))]
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]  # [n, 3, 224, 224]
            out = self.model.get_image_features(pixel_values=pixels.to(self.device))
            emb = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5 may wrap it
            feats.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())  # [n, P]
        f = torch.cat(feats)
        return IdentityFeatures({self.name: f}, {self.name: torch.ones(len(f), dtype=torch.bool)})
