"""Image preprocessing shared by the ViT and VAE paths: resize rule, normalisation, patchify, 2-D position ids.

Follows BAGEL (ByteDance-Seed/Bagel @ 056b5fd, ``data/transforms.py`` and ``data/data_utils.py``):

- Resize ("max long edge, min short edge"): scale = min(max/long, 1), then max(scale, min/short); each side is rounded
  to a multiple of ``stride`` (at least ``stride``); if the area exceeds ``max_pixels / img_num`` or the long side
  exceeds ``max_size`` the image is shrunk and rounded again. Rounding uses Python's ``round`` (half to even), as the
  reference does. Resampling is bicubic with antialias.
- Pixels go to [-1, 1] (mean 0.5, std 0.5 per channel).
- Patchify: [C, H, W] → [h·w, p·p·C] with tokens row-major and each patch flattened in (row, col, channel) order. The
  same function serves ViT pixels (p = 14, C = 3) and VAE latents (p = 2, C = 16).
- Position ids are "extrapolate" style: row·S + col with S the table's side (70 for the ViT, ``max_latent_size`` for
  latents).

Presets: ``VIT_TRANSFORM`` (980 / 224 / 14) and ``VAE_TRANSFORM`` (1024 / 512 / 16) are the inference values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "VAE_TRANSFORM",
    "VIT_TRANSFORM",
    "ImageTransform",
    "flattened_position_ids",
    "patchify",
    "resize_dims",
    "unpatchify",
]

DEFAULT_MAX_PIXELS = 14 * 14 * 9 * 1024  # 1,806,336, BAGEL's default


def _divisible(value: float, stride: int) -> int:
    return max(stride, int(round(value / stride) * stride))


def _scaled(width: int, height: int, scale: float, stride: int) -> tuple[int, int]:
    return _divisible(round(width * scale), stride), _divisible(round(height * scale), stride)


def resize_dims(
    width: int,
    height: int,
    max_size: int,
    min_size: int,
    stride: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    img_num: int = 1,
) -> tuple[int, int]:
    """Target (width, height) of BAGEL's ``MaxLongEdgeMinShortEdgeResize``; both are multiples of ``stride``.

    Args:
        width: Input width in pixels.
        height: Input height in pixels.
        max_size: Largest allowed long side.
        min_size: Smallest wanted short side (may be overridden by the other limits).
        stride: Both sides become multiples of this (14 for the ViT, 16 for the VAE).
        max_pixels: Area limit, divided by ``img_num``.
        img_num: Number of images sharing the area budget.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    scale = min(max_size / max(width, height), 1.0)
    scale = max(scale, min_size / min(width, height))
    new_w, new_h = _scaled(width, height, scale, stride)
    if new_w * new_h > max_pixels / img_num:
        scale = max_pixels / img_num / (new_w * new_h)
        new_w, new_h = _scaled(new_w, new_h, scale, stride)
    if max(new_w, new_h) > max_size:
        scale = max_size / max(new_w, new_h)
        new_w, new_h = _scaled(new_w, new_h, scale, stride)
    return new_w, new_h


@dataclass(frozen=True)
class ImageTransform:
    """Resize to multiples of ``stride`` and normalise to [-1, 1]; returns a [3, H, W] float tensor."""

    max_size: int
    min_size: int
    stride: int
    max_pixels: int = DEFAULT_MAX_PIXELS

    def resize(self, image: Image.Image, img_num: int = 1) -> Image.Image:
        """Resize a PIL image with bicubic resampling (PIL's bicubic filter is antialiased)."""
        w, h = resize_dims(
            image.width, image.height, self.max_size, self.min_size, self.stride, self.max_pixels, img_num
        )
        if (w, h) == image.size:
            return image
        return image.resize((w, h), Image.Resampling.BICUBIC)

    def __call__(self, image: Image.Image, img_num: int = 1) -> torch.Tensor:
        """Resize and normalise; output [3, H, W] in [-1, 1]."""
        import numpy as np

        image = self.resize(image.convert("RGB"), img_num)
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)  # [3, H, W] uint8
        return x.float().div(255.0).sub(0.5).div(0.5)


VIT_TRANSFORM = ImageTransform(max_size=980, min_size=224, stride=14)
VAE_TRANSFORM = ImageTransform(max_size=1024, min_size=512, stride=16)


def patchify(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[C, H, W] → [(H/p)·(W/p), p·p·C], tokens row-major, patch vector in (row, col, channel) order.

    Raises:
        ValueError: H or W is not a multiple of ``patch_size``.
    """
    c, h, w = image.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image of size {h}x{w} is not a multiple of patch size {p}")
    x = image.reshape(c, h // p, p, w // p, p)  # [C, h, p, w, p]
    x = x.permute(1, 3, 2, 4, 0)  # [h, w, p, p, C]
    return x.reshape((h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, h: int, w: int, patch_size: int, channels: int) -> torch.Tensor:
    """Inverse of ``patchify``: [h·w, p·p·C] → [C, h·p, w·p] with h, w in patches."""
    p = patch_size
    if tokens.shape != (h * w, p * p * channels):
        raise ValueError(f"tokens have shape {tuple(tokens.shape)}, expected ({h * w}, {p * p * channels})")
    x = tokens.reshape(h, w, p, p, channels).permute(4, 0, 2, 1, 3)  # [C, h, p, w, p]
    return x.reshape(channels, h * p, w * p)


def flattened_position_ids(h: int, w: int, side: int) -> torch.Tensor:
    """Ids row·side + col for an h×w grid of patches, row-major: [h·w] (BAGEL's "extrapolate" ids).

    Raises:
        ValueError: The grid does not fit the side×side table.
    """
    if h > side or w > side:
        raise ValueError(f"a {h}x{w} patch grid does not fit a position table of side {side}")
    rows = torch.arange(h)
    cols = torch.arange(w)
    return (rows[:, None] * side + cols[None, :]).flatten()
