"""Which pixels of each keyframe show a re-appearing character, a first-appearing one, or background.

A character *re-appears* in shot s when it is placed in some earlier shot of the story (so an earlier keyframe shows
it, and In-Context ID Prompting can point the model at it); it *first appears* in the first shot that places it.
Regions come from the ground-truth boxes (``ground_truth/<NN>.json``: tight xyxy boxes with exclusive ends), so a
region is the box, not only the drawn figure's pixels. Boxes of one shot do not overlap in SynthStory; if they did,
a pixel in a re-appearing box counts as re-appearing.

The image loss is predicted per latent token, and one token covers a block of pixels (16×16 for BAGEL's layout), so
each token gets, per region, the fraction of its pixels in that region (``token_fractions``); a region's loss is then
the pixel-weighted mean Σ f·mse / Σ f, i.e. the mean over the region's pixels of the loss of the token that covers
each pixel. The keyframe transform resizes the whole image (no crop), so fractions are computed on the keyframe's own
pixel grid and pooled to the token grid.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["REGIONS", "appearance", "region_masks", "token_fractions"]

#: Region names, in the order of ``region_masks`` / ``token_fractions``.
REGIONS = ("reappear", "first", "bg")


def appearance(truth: dict[str, Any]) -> list[dict[int, str]]:
    """Per shot, ``{character id: "first" | "reappear"}`` for every character the shot places."""
    seen: set[int] = set()
    out = []
    for shot in truth["shots"]:
        kinds = {}
        for placed in shot["characters"]:
            cid = int(placed["id"])
            kinds[cid] = "reappear" if cid in seen else "first"
        seen |= set(kinds)
        out.append(kinds)
    return out


def region_masks(truth: dict[str, Any], shot_position: int) -> Tensor:
    """[3, H, W] bool masks (``REGIONS`` order) of one shot on the keyframe's pixel grid; they partition the image.

    Args:
        truth: The story's ground truth.
        shot_position: 0-based position of the shot in the story.
    """
    width, height = (int(v) for v in truth["image_size"])
    kinds = appearance(truth)[shot_position]
    masks = torch.zeros(3, height, width, dtype=torch.bool)
    for placed in truth["shots"][shot_position]["characters"]:
        x0, y0, x1, y1 = (int(v) for v in placed["box_xyxy"])
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"story {truth.get('story_id')}: box {placed['box_xyxy']} outside {width}x{height}")
        masks[REGIONS.index(kinds[int(placed["id"])]), y0:y1, x0:x1] = True
    masks[1] &= ~masks[0]
    masks[2] = ~(masks[0] | masks[1])
    return masks


def token_fractions(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """[R, h·w] fraction of each latent token's pixels in each region (row-major tokens, as ``patchify``).

    Args:
        masks: [R, H, W] bool region masks on the keyframe's pixel grid.
        grid: (h, w) latent tokens of the encoded keyframe.
    """
    h, w = grid
    frac = F.adaptive_avg_pool2d(masks.float()[None], (h, w))[0]  # [R, h, w]
    return frac.reshape(masks.shape[0], h * w)
