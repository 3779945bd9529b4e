"""Re-appearing / first-appearing / background regions on a constructed story, checked by hand."""

from __future__ import annotations

import pytest
import torch

from unimage.eval.regions import REGIONS, appearance, region_masks, token_fractions


def _truth() -> dict:
    def char(cid: int, box: list[int]) -> dict:
        return {"key": f"C{cid}", "id": cid, "box_xyxy": box, "position": "left"}

    return {
        "story_id": "t",
        "image_size": [8, 8],
        "shots": [
            {"index": 1, "characters": [char(1, [0, 0, 2, 4])]},  # 1 first
            {"index": 2, "characters": []},  # empty shot: all background
            {"index": 3, "characters": [char(2, [4, 4, 8, 8]), char(1, [0, 4, 4, 8])]},  # 2 first, 1 again
            {"index": 4, "characters": [char(2, [2, 0, 6, 2])]},  # 2 again (after a shot without it)
        ],
    }


def test_appearance_follows_earlier_keyframes():
    assert appearance(_truth()) == [{1: "first"}, {}, {2: "first", 1: "reappear"}, {2: "reappear"}]


def test_masks_partition_the_frame_by_box():
    truth = _truth()
    m = region_masks(truth, 2)
    assert m.shape == (3, 8, 8) and m.dtype == torch.bool
    assert torch.equal(m.sum(0), torch.ones(8, 8, dtype=torch.long))  # a partition
    reappear, first = torch.zeros(8, 8, dtype=torch.bool), torch.zeros(8, 8, dtype=torch.bool)
    reappear[4:8, 0:4] = True  # box of character 1: rows y0..y1-1, columns x0..x1-1
    first[4:8, 4:8] = True
    assert torch.equal(m[REGIONS.index("reappear")], reappear)
    assert torch.equal(m[REGIONS.index("first")], first)
    assert region_masks(truth, 1)[REGIONS.index("bg")].all()
    assert int(region_masks(truth, 0)[REGIONS.index("first")].sum()) == 2 * 4


def test_token_fractions_by_hand():
    m = region_masks(_truth(), 0)  # first-appearing box x 0..1, y 0..3 of an 8x8 frame
    frac = token_fractions(m, (2, 2))  # 4x4-pixel tokens, row-major
    first = frac[REGIONS.index("first")]
    assert first.tolist() == pytest.approx([8 / 16, 0, 0, 0])
    assert frac.sum(0).tolist() == pytest.approx([1, 1, 1, 1])
    # a non-dividing grid still gives per-token fractions that sum to one
    frac3 = token_fractions(region_masks(_truth(), 2), (3, 3))
    assert frac3.sum(0).tolist() == pytest.approx([1.0] * 9)


def test_box_outside_the_frame_is_an_error():
    truth = _truth()
    truth["shots"][0]["characters"][0]["box_xyxy"] = [0, 0, 9, 4]
    with pytest.raises(ValueError, match="outside"):
        region_masks(truth, 0)
