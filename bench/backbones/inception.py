"""Inception-v3 ImageNet classifier for the Inception Score (§8).

Official: torchvision `inception_v3(pretrained=True, transform_input=False)` = IMAGENET1K_V1 weights
`inception_v3_google-0cc3c7bd.pth`, eval mode, 1000-way logits. We build the architecture with
`weights=None` and load the local file strictly (never downloaded). Note `transform_input=False`: torchvision
turns it on by default with pretrained weights; ViStoryBench turns it off and normalises with ImageNet
mean/std itself, so we do the same.

Preprocessing: RGB → Resize(299) (shorter side, bilinear, PIL) → CenterCrop(299) → ToTensor → ImageNet
mean/std. Batch 32 officially; batching does not change eval-mode outputs.

Shapes: N images, 1000 classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms
from torchvision.models import inception_v3

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_inception_v3() -> torch.nn.Module:
    """The untrained torchvision Inception-v3 with the key layout of the ImageNet checkpoint (aux head included)."""
    return inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)


class InceptionV3Classifier:
    """`InceptionClassifier` over torchvision Inception-v3 loaded from a local state dict."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 32) -> None:
        """Load the state dict at `path` strictly (raises on any missing/unexpected key)."""
        model = build_inception_v3()
        sd = torch.load(path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path}: not a torchvision Inception-v3 ImageNet state dict: {err}") from err
        self.model = model.float().eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.transform = transforms.Compose(
            [
                transforms.Resize(299),
                transforms.CenterCrop(299),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    @torch.inference_mode()
    def logits(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Classify images → [N, 1000] float32 logits."""
        out = [torch.zeros(0, 1000)]
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.transform(im.convert("RGB")) for im in images[start : start + self.batch_size]])
            out.append(self.model(batch.to(self.device)).float().cpu())  # [n, 1000]; eval mode → logits only
        return torch.cat(out)
