"""Shared helpers of the model tests: a tiny UniMAGE with every head randomised."""

from __future__ import annotations

import torch

from unimage.model.config import get_config
from unimage.model.unimage import UniMAGE


def tiny_model(seed: int = 0, **changes) -> UniMAGE:
    """Tiny UniMAGE; ``llm2vae`` (zero-initialised as in BAGEL) is randomised so velocities are not trivially 0."""
    torch.manual_seed(seed)
    model = UniMAGE(get_config("tiny", **changes)).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.05)
    torch.nn.init.normal_(model.llm2vae.bias, std=0.05)
    return model
