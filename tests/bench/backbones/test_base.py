"""Tests of the backbone interfaces: official crop boxes, identity similarity, the lazy bundle, the registry."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.ops import box_convert

from bench.backbones import (
    BackboneError,
    Backbones,
    Detections,
    IdentityFeatures,
    MissingWeightsError,
    boxes_from_normalized_cxcywh,
    components_for,
    detector_caption,
    identity_similarity,
    load_backbones,
)


def official_crop_boxes(cxcywh: torch.Tensor, w: int, h: int) -> list[tuple[float, float, float, float]]:
    """The official `crop_img` steps, written out: (boxes * [w,h,w,h]).int(), box_convert, clip, drop empty."""
    boxes = (cxcywh * torch.Tensor([w, h, w, h])).int()
    xyxy = box_convert(boxes=boxes, in_fmt="cxcywh", out_fmt="xyxy").numpy()
    out = []
    for x0, y0, x1, y1 in xyxy.tolist():
        x0, y0, x1, y1 = max(0, min(x0, w)), max(0, min(y0, h)), max(0, min(x1, w)), max(0, min(y1, h))
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


def test_boxes_match_official_crop_code():
    g = torch.Generator().manual_seed(0)
    cxcywh = torch.rand(50, 4, generator=g) * torch.tensor([1.2, 1.2, 0.7, 0.7]) - torch.tensor([0.1, 0.1, 0, 0])
    cxcywh[3, 2] = 0.001  # zero-width after truncation → dropped
    scores = torch.rand(50, generator=g)
    det = boxes_from_normalized_cxcywh(cxcywh, scores, 333, 251)
    order = torch.argsort(scores, descending=True).tolist()
    kept = [i for i in order if official_crop_boxes(cxcywh[i : i + 1], 333, 251)]
    assert len(det) == len(kept) == len(official_crop_boxes(cxcywh, 333, 251)) < 50
    for row, i in enumerate(kept):
        assert tuple(det.boxes[row].tolist()) == official_crop_boxes(cxcywh[i : i + 1], 333, 251)[0]
        assert det.scores[row].item() == pytest.approx(scores[i].item())
    assert torch.all(det.scores[:-1] >= det.scores[1:])


def test_known_box_half_pixel_and_crop():
    # cx = 0.5*101 = 50.5 → 50, w = 0.3*101 = 30.3 → 30 → x0 = 35, x1 = 65; cy = 0.5*50=25, h=0.25*50 → 12 → 19..31
    det = boxes_from_normalized_cxcywh(torch.tensor([[0.5, 0.5, 0.3, 0.25]]), torch.tensor([0.9]), 101, 50)
    assert det.boxes.tolist() == [[35.0, 19.0, 65.0, 31.0]]
    crops = det.crops(Image.new("RGB", (101, 50)))
    assert crops[0].size == (30, 12)
    # odd truncated width gives half-pixel corners, which PIL rounds when cropping
    det = boxes_from_normalized_cxcywh(torch.tensor([[0.5, 0.5, 0.31, 0.5]]), torch.tensor([0.9]), 100, 10)
    assert det.boxes.tolist() == [[34.5, 2.5, 65.5, 7.5]]


def test_detections_validation_and_top():
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        Detections(torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="scores"):
        Detections(torch.zeros(3, 4), torch.zeros(2))
    det = Detections(torch.arange(12.0).view(3, 4), torch.tensor([0.9, 0.5, 0.3]))
    assert len(det.top(2)) == 2 and len(det.top(10)) == 3 and len(Detections.empty()) == 0


def test_identity_similarity_average_over_common_encoders():
    # Two encoders; item b1 has no face for "arcface"; a0/b2 share nothing valid.
    arc_a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    ada_a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    arc_b = torch.tensor([[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]])
    ada_b = torch.tensor([[0.0, 1.0], [0.8, 0.6], [0.0, 0.0]])
    a = IdentityFeatures(
        {"arcface": arc_a, "adaface": ada_a},
        {"arcface": torch.tensor([True, True]), "adaface": torch.tensor([True, False])},
    )
    b = IdentityFeatures(
        {"arcface": arc_b, "adaface": ada_b},
        {"arcface": torch.tensor([True, False, True]), "adaface": torch.tensor([True, True, False])},
    )
    sim = identity_similarity(a, b)
    expected = torch.tensor(
        [
            [(0.6 + 1.0) / 2, 0.6, 1.0],  # a0 vs b0: both encoders; b1: adaface only (0*0.8+1*0.6); b2: arcface only
            [0.6 * 0.6 + 0.8 * 0.8, 0.0, 0.6],  # a1 has no adaface: b0 arcface only; b1 nothing common → 0
        ]
    )
    torch.testing.assert_close(sim, expected)
    assert a.any_valid.tolist() == [True, True]
    assert len(IdentityFeatures.concat([a, a.select([1])])) == 3


def test_identity_features_validation():
    with pytest.raises(ValueError, match="same encoders"):
        IdentityFeatures({"x": torch.zeros(2, 3)}, {"y": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="same number of rows"):
        IdentityFeatures({"x": torch.zeros(2, 3)}, {"x": torch.ones(3, dtype=torch.bool)})


def test_backbones_lazy_and_once():
    calls = []

    class Style:
        def encode(self, images):
            return torch.zeros(len(images), 2)

    def make():
        calls.append(1)
        return Style()

    bb = Backbones(name="x", comparable=False, era="A", device="cpu", factories={"style": make})
    assert calls == []
    bb.style.encode([])
    bb.style.encode([])
    assert calls == [1]
    with pytest.raises(BackboneError, match="no 'detector' component"):
        _ = bb.detector
    with pytest.raises(BackboneError, match="no 'inception'"):
        bb.validate(["inception"])
    assert bb.provenance()["loaded_components"] == ["style"]


def test_registry_errors(tmp_path):
    with pytest.raises(ValueError, match="weights_dir"):
        load_backbones("official")
    with pytest.raises(ValueError, match="era"):
        load_backbones("toy", era="D")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        load_backbones("best")  # type: ignore[arg-type]
    with pytest.raises(MissingWeightsError, match="not a directory"):
        load_backbones("official", tmp_path / "nope")


def test_detector_caption_per_era():
    assert detector_caption("A") == "people"
    assert detector_caption("B") == detector_caption("C") == "character"


def test_components_for_metrics():
    assert components_for(["csd", "diversity"]) == ["style", "inception"]
    assert components_for(["cids"]) == ["detector", "face", "clip"]
    assert components_for(["occm", "aesthetic"], character_tags=["non_human", "unrealistic_human"]) == [
        "detector",
        "clip",
        "aesthetic",
    ]
    assert "face" in components_for(["prompt_align"], character_tags=["realistic_human"])
    with pytest.raises(ValueError, match="unknown metrics"):
        components_for(["fid"])
