"""The tiny model and a fixed context of the model tests (generation, CFG batching, story batching)."""

from __future__ import annotations

import torch

from unimage.model.config import get_config
from unimage.model.packing import CleanVaeImage, Segment, Text, VitImage
from unimage.model.unimage import UniMAGE


def tiny_model(seed: int = 0, **changes) -> UniMAGE:
    """Tiny UniMAGE; ``llm2vae`` (zero-initialised as in BAGEL) is randomised so velocities are not trivially 0."""
    torch.manual_seed(seed)
    model = UniMAGE(get_config("tiny", **changes)).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.05)
    torch.nn.init.normal_(model.llm2vae.bias, std=0.05)
    return model


def context_segments(id_tokens: bool = True) -> list[Segment]:
    """Text, a 2x3-patch ViT image, a 2x2-token clean latent, text: a context with every segment kind.

    Args:
        id_tokens: Whether the images carry ID tokens (what ``layout.image_id_tokens`` gives with ID prompting on);
            False is BAGEL's layout.
    """
    g = torch.Generator().manual_seed(5)
    return [
        Text([10, 11, 12]),
        VitImage(torch.randn(3, 28, 42, generator=g), id_token_ids=[300, 301] if id_tokens else ()),
        CleanVaeImage(torch.randn(16, 4, 4, generator=g), id_token_ids=[302] if id_tokens else ()),
        Text([13, 14]),
    ]
