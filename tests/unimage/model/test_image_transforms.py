"""Resize rule, normalisation, patchify order and position ids (bagel-compat §3.1, §4.1, §4.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unimage.model.image_transforms import (
    VAE_TRANSFORM,
    VIT_TRANSFORM,
    ImageTransform,
    flattened_position_ids,
    patchify,
    resize_dims,
    unpatchify,
)


@pytest.mark.parametrize(
    ("size", "args", "expected"),
    [
        # already fits, rounded to multiples of 14: 640/14 = 45.7 -> 46·14 = 644; 480/14 = 34.3 -> 34·14 = 476
        ((640, 480), (980, 224, 14), (644, 476)),
        # long side 2000 > 980: scale 0.49 -> 980 x 490
        ((2000, 1000), (980, 224, 14), (980, 490)),
        # short side below min: 100x50 -> scale max(1, 224/50) = 4.48 -> 448 x 224
        ((100, 50), (980, 224, 14), (448, 224)),
        # VAE preset: 1024 x 768 stays
        ((1024, 768), (1024, 512, 16), (1024, 768)),
        # extreme aspect, all three rules fire: min-short gives 5120x512; the area cap (0.689) gives 3520x352
        # (3528/16 = 220.5 rounds half-to-even to 220); the long-side cap gives 1024 x round(102.4) = 102 -> 96
        ((3000, 300), (1024, 512, 16), (1024, 96)),
    ],
)
def test_resize_dims_known_answers(size, args, expected) -> None:
    assert resize_dims(*size, *args) == expected


def test_resize_dims_respects_max_pixels() -> None:
    w, h = resize_dims(4000, 4000, 4000, 224, 14, max_pixels=14 * 14 * 100)
    assert w % 14 == 0 and h % 14 == 0 and w * h <= 14 * 14 * 100 * 1.05
    with pytest.raises(ValueError, match="positive"):
        resize_dims(0, 10, 980, 224, 14)


def test_transform_normalises_to_minus_one_one() -> None:
    arr = np.zeros((32, 48, 3), dtype=np.uint8)
    arr[:, :24] = 255
    img = Image.fromarray(arr)
    x = ImageTransform(max_size=48, min_size=16, stride=16)(img)
    assert x.shape == (3, 32, 48)
    assert x[:, :, :20].eq(1.0).all() and x[:, :, 28:].eq(-1.0).all()
    assert VIT_TRANSFORM.stride == 14 and VAE_TRANSFORM.stride == 16


def test_patchify_order_row_col_channel() -> None:
    c, p = 3, 2
    image = torch.arange(c * 4 * 6, dtype=torch.float32).reshape(c, 4, 6)
    tokens = patchify(image, p)
    assert tokens.shape == (2 * 3, p * p * c)
    # token 4 is patch row 1, col 1; its vector is (py, px, c) ordered
    expected = [image[ch, 2 + py, 2 + px].item() for py in range(p) for px in range(p) for ch in range(c)]
    assert tokens[4].tolist() == expected
    torch.testing.assert_close(unpatchify(tokens, 2, 3, p, c), image)
    with pytest.raises(ValueError, match="multiple"):
        patchify(torch.zeros(3, 5, 4), 2)


def test_flattened_position_ids() -> None:
    assert flattened_position_ids(2, 3, 70).tolist() == [0, 1, 2, 70, 71, 72]
    with pytest.raises(ValueError, match="does not fit"):
        flattened_position_ids(9, 2, 8)
