"""Tests of the weight-free toy backbones: known answers, determinism, batching invariance, labelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbones import (
    AestheticScorer,
    CharacterDetector,
    IdentityEncoder,
    InceptionClassifier,
    StyleEncoder,
    identity_similarity,
    load_backbones,
)
from bench.backbones.toy import ToyIdentityEncoder
from tests.bench.backbones.conftest import draw_scene


@pytest.fixture
def toy():
    return load_backbones("toy")


def test_labelled_not_comparable(toy):
    assert toy.comparable is False
    assert "NOT comparable" in toy.name
    prov = toy.provenance()
    assert prov["comparable_with_published"] is False and prov["file_hashes"] == {}
    toy.validate()  # no weights → nothing to miss


def test_components_satisfy_protocols(toy):
    assert isinstance(toy.style, StyleEncoder)
    assert isinstance(toy.detector, CharacterDetector)
    assert isinstance(toy.face, IdentityEncoder) and isinstance(toy.clip, IdentityEncoder)
    assert isinstance(toy.aesthetic, AestheticScorer)
    assert isinstance(toy.inception, InceptionClassifier)
    assert toy.identity_encoder("realistic_human") is toy.face
    assert toy.identity_encoder("non_human") is toy.clip


def test_detector_finds_drawn_figures_exactly(toy):
    # Figures at known pixel boxes; the working resolution is 128 px on the long side (scale 0.4 for 320 px),
    # so a box edge is exact up to one working pixel = 2.5 image pixels.
    im = draw_scene([((40, 60, 100, 160), (200, 40, 40)), ((180, 50, 240, 170), (240, 200, 40))])
    (det,) = toy.detector.detect([im], "people")
    assert len(det) == 2
    got = sorted(det.boxes.tolist())
    for box, want in zip(got, [[40, 60, 100, 160], [180, 50, 240, 170]]):
        assert np.allclose(box, want, atol=3.0), (box, want)
    assert torch.all(det.scores > 0.25) and torch.all(det.scores <= 1.0)


def test_detector_empty_on_background_and_uniform(toy, scenes):
    plain = draw_scene([])
    dets = toy.detector.detect([plain, scenes[3]], "character")
    assert [len(d) for d in dets] == [0, 0]


def test_style_known_answer_and_unit_norm(toy):
    # A two-colour image: half pure red, half pure blue → histogram bins (7,0,0) and (0,0,7) at 1/2 each,
    # sqrt → 1/√2 each → unit vector with two entries 1/√2.
    arr = np.zeros((64, 64, 3), dtype=np.uint8)
    arr[:, :32] = (255, 0, 0)
    arr[:, 32:] = (0, 0, 255)
    emb = toy.style.encode([Image.fromarray(arr)])
    assert emb.shape == (1, 512)
    nz = torch.nonzero(emb[0]).flatten().tolist()
    assert nz == [7, 7 * 64]  # bin (r*8+g)*8+b: blue=(0,0,7) → 7, red=(7,0,0) → 448
    torch.testing.assert_close(emb[0, nz], torch.full((2,), 2**-0.5))


def test_aesthetic_known_answers(toy):
    flat = Image.new("RGB", (50, 50), (120, 120, 120))
    # flat grey: colourfulness 0, contrast 0 → 1 + 9·(1 − e^0) = 1
    assert toy.aesthetic.score([flat]).tolist() == [pytest.approx(1.0)]
    # half black / half white: rg = yb = 0 → colourfulness 0; luminance std = 127.5 → 1 + 9(1 − e^(−127.5/80))
    arr = np.zeros((128, 128, 3), dtype=np.uint8)  # the working size: no resampling
    arr[:, 64:] = 255
    expected = 1 + 9 * (1 - np.exp(-127.5 / 80))
    assert toy.aesthetic.score([Image.fromarray(arr)]).item() == pytest.approx(expected, rel=1e-5)


def test_identity_same_crop_is_one_and_small_crop_has_no_face(toy, scenes):
    feats = toy.clip.encode(scenes[:3])
    sim = identity_similarity(feats, feats)
    torch.testing.assert_close(sim.diagonal(), torch.ones(3))
    assert sim[0, 1] < 1.0
    face = toy.face.encode([scenes[0], Image.new("RGB", (10, 40))])
    assert face.valid["toy-face"].tolist() == [True, False]
    assert face.features["toy-face"][1].abs().sum() == 0
    assert ToyIdentityEncoder("a", seed=1).encode([]).features["a"].shape == (0, 128)


@pytest.mark.parametrize("component", ["style", "aesthetic", "inception", "clip"])
def test_batched_equals_one_at_a_time_and_deterministic(toy, scenes, component):
    def run(bb, ims):
        if component == "style":
            return bb.style.encode(ims)
        if component == "aesthetic":
            return bb.aesthetic.score(ims)
        if component == "inception":
            return bb.inception.logits(ims)
        return bb.clip.encode(ims).features["toy-clip"]

    batched = run(toy, scenes)
    single = torch.cat([run(toy, [im]) for im in scenes])
    torch.testing.assert_close(batched, single)
    torch.testing.assert_close(batched, run(load_backbones("toy"), scenes), rtol=0, atol=0)


def test_inception_logits_shape_and_spread(toy, scenes):
    logits = toy.inception.logits(scenes)
    assert logits.shape == (4, 1000) and logits.dtype == torch.float32
    assert len(set(logits.argmax(-1).tolist())) > 1  # different images → different top classes
    assert toy.inception.logits([]).shape == (0, 1000)
