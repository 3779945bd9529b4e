"""Era B/C face ensemble: AdaFace IR / FaceNet loaders on tiny checkpoints in the official formats, the facexlib-style
alignment against hand computations, and the average-ensemble similarity against a hand computation.

insightface is an optional extra (not installed in CI): the SCRFD/ArcFace part is replayed by a scripted
`FaceAnalysis` (interface: `prepare`, `det_model.det_thresh`, `get(bgr)` → faces with `normed_embedding`, `kps`,
`det_score`), so everything downstream of detection runs for real.
"""

from __future__ import annotations

import math
import shutil
import types

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbones import MissingDependencyError, MissingWeightsError, identity_similarity, load_backbones
from bench.backbones import faces as faces_mod
from bench.backbones import official as official_mod
from bench.backbones import weights as W
from bench.backbones.adaface import IR_SIZES, IRBackbone, adaface_state_dict, ir_config_from_state_dict, load_adaface
from bench.backbones.face_align import (
    BORDER_VALUE,
    align_face,
    estimate_similarity,
    face_template,
    warp_affine,
)
from bench.backbones.facenet import FACENET_SIZES, InceptionResnetV1, facenet_config_from_state_dict, load_facenet
from bench.backbones.faces import ArcFaceEncoder, faces_available
from bench.backbones.faces_bc import FaceEnsembleEncoder
from bench.functional import ensemble_similarity

#####################################################################################################
# Loaders
#####################################################################################################


def test_adaface_lightning_checkpoint_loads_strictly(tiny_bundle):
    path = tiny_bundle / W.ADAFACE.relpath
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert "head.kernel" in ckpt["state_dict"]  # the margin head is in the file but not in the backbone
    sd = adaface_state_dict(ckpt, path)
    assert len(sd) == len(ckpt["state_dict"]) - 1
    cfg = ir_config_from_state_dict(sd)
    assert cfg == IR_SIZES["tiny"]
    result = IRBackbone(cfg).load_state_dict(sd, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    model = load_adaface(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][f"model.{k}"])


def test_facenet_state_dict_loads_strictly(tiny_bundle):
    path = tiny_bundle / W.FACENET.relpath
    sd = torch.load(path, map_location="cpu", weights_only=True)
    cfg = facenet_config_from_state_dict(sd)
    assert cfg == FACENET_SIZES["tiny"]
    result = InceptionResnetV1(cfg).load_state_dict(sd, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert "logits.weight" in sd and "block8.conv2d.bias" in sd and "repeat_2.1.branch1.2.conv.weight" in sd


def test_embeddings_unit_norm_deterministic_and_input_dependent(tiny_bundle):
    ada = load_adaface(tiny_bundle / W.ADAFACE.relpath)
    fn = load_facenet(tiny_bundle / W.FACENET.relpath)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 112, 112, generator=gen)
    with torch.no_grad():
        a1, norm = ada(x * 2 - 1)
        a2, _ = load_adaface(tiny_bundle / W.ADAFACE.relpath)(x * 2 - 1)
        f1, f2 = fn(x), load_facenet(tiny_bundle / W.FACENET.relpath)(x)
        raw = ada.output_layer(ada.body(ada.input_layer(x * 2 - 1)))
    assert a1.shape == (3, 32) and f1.shape == (3, 64)
    torch.testing.assert_close(a1.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(f1.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    torch.testing.assert_close(f1, f2, rtol=0, atol=0)
    torch.testing.assert_close(norm[:, 0], raw.norm(dim=1))  # (feature, norm) like the official forward
    assert (a1 @ a1.T - torch.eye(3)).abs().max() > 1e-3  # different faces, different embeddings


def test_loader_errors_name_the_file(tmp_path, tiny_bundle):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        load_adaface(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_facenet(tmp_path / "nope.pt")
    bad = tmp_path / "bad.ckpt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(ValueError, match=r"bad\.ckpt.*'state_dict'"):
        load_adaface(bad)
    # A FaceNet file given as the AdaFace checkpoint: no `model.` keys.
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": torch.load(tiny_bundle / W.FACENET.relpath, weights_only=True)}, wrong)
    with pytest.raises(ValueError, match=r"wrong\.ckpt.*'model\.'"):
        load_adaface(wrong)
    sd = torch.load(tiny_bundle / W.FACENET.relpath, weights_only=True)
    del sd["last_bn.running_var"]
    broken = tmp_path / "broken.pt"
    torch.save(sd, broken)
    with pytest.raises(ValueError, match=r"(?s)broken\.pt.*last_bn\.running_var"):
        load_facenet(broken)


def _ensemble_bundle(tmp_path, tiny_bundle, skip: str | None = None):
    for weight in (W.ADAFACE, W.FACENET):
        if weight.relpath != skip:
            (tmp_path / weight.relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_bundle / weight.relpath, tmp_path / weight.relpath)
    ante = tmp_path / W.ANTELOPEV2.relpath
    ante.mkdir(parents=True)
    for name in W.ANTELOPEV2.required_files:
        (ante / name).write_bytes(b"onnx placeholder")
    return tmp_path


@pytest.mark.parametrize("era", ["B", "C"])
@pytest.mark.parametrize("missing", [W.ADAFACE.relpath, W.FACENET.relpath])
def test_official_bundle_names_missing_ensemble_file(tmp_path, tiny_bundle, era, missing):
    root = _ensemble_bundle(tmp_path, tiny_bundle, skip=missing)
    bb = load_backbones("official", root, era=era)
    with pytest.raises(MissingWeightsError, match=missing.replace(".", r"\.")):
        bb.validate(["face"])
    with pytest.raises(MissingWeightsError, match=missing.replace(".", r"\.")):
        _ = bb.face


@pytest.mark.skipif(faces_available(), reason="insightface/onnxruntime installed")
def test_official_ensemble_without_faces_extra(tmp_path, tiny_bundle):
    bb = load_backbones("official", _ensemble_bundle(tmp_path, tiny_bundle), era="B")
    with pytest.raises(MissingDependencyError, match="insightface"):
        bb.validate(["face"])


#####################################################################################################
# Alignment
#####################################################################################################


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


def test_similarity_recovers_known_transform():
    m = _similarity(0.62, 17.0, -8.5, 23.25)
    src = np.array([[40.0, 52.0], [91.0, 47.0], [70.0, 80.0], [48.0, 102.0], [95.0, 99.0]])
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(estimate_similarity(src, dst), m, atol=1e-9)
    # Mirrored target: the fit stays a proper similarity (no reflection), det > 0.
    mirrored = dst * np.array([-1.0, 1.0])
    fit = estimate_similarity(src, mirrored)
    assert np.linalg.det(fit[:, :2]) > 0
    with pytest.raises(ValueError, match="degenerate"):
        estimate_similarity(np.ones((5, 2)), dst)


def _hand_bilinear(image: np.ndarray, x: float, y: float, border) -> np.ndarray:
    """OpenCV-convention bilinear sample (pixel i at coordinate i), constant border outside."""
    h, w = image.shape[:2]
    x0, y0 = math.floor(x), math.floor(y)
    out = np.zeros(3)
    for dy, wy in ((0, 1 - (y - y0)), (1, y - y0)):
        for dx, wx in ((0, 1 - (x - x0)), (1, x - x0)):
            yy, xx = y0 + dy, x0 + dx
            pix = image[yy, xx].astype(float) if 0 <= yy < h and 0 <= xx < w else np.array(border, dtype=float)
            out += wy * wx * pix
    return out


def test_align_face_matches_hand_bilinear_warp():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    m = _similarity(1.3, -12.0, -30.0, 10.0)  # image → crop
    full = np.vstack([m, [0, 0, 1]])
    landmarks = (np.linalg.inv(full)[:2] @ np.c_[face_template(112), np.ones(5)].T).T  # template pulled back
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    inv = np.linalg.inv(full)
    for u, v in [(0, 0), (56, 56), (5, 100), (111, 3), (80, 20), (30, 70)]:
        sx, sy, _ = inv @ np.array([u, v, 1.0])
        expected = _hand_bilinear(image, sx, sy, BORDER_VALUE)
        np.testing.assert_allclose(crop[v, u].astype(float), expected, atol=0.51)
    # Pure integer shift: exact copy, border colour where the source is outside.
    shifted = warp_affine(image, np.array([[1.0, 0, 5], [0, 1.0, -3]]), 40, BORDER_VALUE)
    np.testing.assert_array_equal(shifted[0:30, 5:40], image[3:33, 0:35])
    assert (shifted[:, :5] == np.array(BORDER_VALUE, dtype=np.uint8)).all()


#####################################################################################################
# Ensemble
#####################################################################################################

LANDMARKS = face_template(112) * 0.7 + np.array([12.0, 9.0])  # a face filling most of a 96-px crop
CASES = {  # red value of pixel (0, 0) → (det_score, found at thresholds ≤ , arcface seed); None = no face
    200: (0.9, 0.45, 1),
    201: (0.8, 0.45, 2),
    202: (0.3, 0.25, 3),  # found only after lowering: ArcFace yes, too weak to align → AdaFace/FaceNet no
    203: None,
}


class ScriptedDetector:
    """Stands in for insightface's FaceAnalysis: per-image face, score and landmarks keyed by a marker pixel."""

    def __init__(self, name, root, providers, allowed_modules):
        self.det_model = types.SimpleNamespace(det_thresh=None)
        self.calls: list[float] = []

    def prepare(self, ctx_id, det_thresh, det_size):
        self.det_model.det_thresh = det_thresh

    def get(self, bgr):
        self.calls.append(round(self.det_model.det_thresh, 2))
        case = CASES[int(bgr[0, 0, 2])]
        if case is None or self.det_model.det_thresh > case[1] + 1e-9:
            return []
        score, _, seed = case
        emb = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
        return [types.SimpleNamespace(normed_embedding=emb / np.linalg.norm(emb), kps=LANDMARKS, det_score=score)]


def _face_images() -> list[Image.Image]:
    rng = np.random.default_rng(11)
    ims = []
    for marker in CASES:
        arr = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
        arr[0, 0] = (marker, 0, 0)
        ims.append(Image.fromarray(arr))
    return ims


@pytest.fixture
def ensemble(monkeypatch, tiny_bundle, tmp_path):
    monkeypatch.setattr(faces_mod, "import_face_analysis", lambda: ScriptedDetector)
    monkeypatch.setattr(official_mod, "import_face_analysis", lambda: ScriptedDetector)
    root = _ensemble_bundle(tmp_path, tiny_bundle)
    bb = load_backbones("official", root, era="C")
    bb.validate(["face"])
    return bb


def test_ensemble_features_and_similarity_equal_hand_computation(ensemble, tiny_bundle):
    enc = ensemble.face
    assert isinstance(enc, FaceEnsembleEncoder)
    assert {W.ADAFACE.relpath, W.FACENET.relpath} <= set(ensemble.file_hashes)
    ims = _face_images()
    feats = enc.encode(ims)
    assert feats.valid["arcface"].tolist() == [True, True, True, False]
    assert feats.valid["adaface"].tolist() == [True, True, False, False]
    assert feats.valid["facenet"].tolist() == [True, True, False, False]
    for k in ("arcface", "adaface", "facenet"):
        f, ok = feats.features[k], feats.valid[k]
        torch.testing.assert_close(f[ok].norm(dim=1), torch.ones(int(ok.sum())))
        assert f[~ok].abs().sum() == 0

    # Hand preprocessing of row 0: aligned BGR crop; AdaFace (x/255-0.5)/0.5, FaceNet x/255.
    ada = load_adaface(tiny_bundle / W.ADAFACE.relpath)
    fn = load_facenet(tiny_bundle / W.FACENET.relpath)
    bgr = np.asarray(ims[0])[:, :, ::-1]
    crop = align_face(np.ascontiguousarray(bgr), LANDMARKS).astype(np.float32)
    chw = torch.from_numpy(crop.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        torch.testing.assert_close(feats.features["adaface"][0], ada((chw / 255 - 0.5) / 0.5)[0][0])
        torch.testing.assert_close(feats.features["facenet"][0], fn(chw / 255)[0])
    emb = np.random.default_rng(1).standard_normal(512)
    torch.testing.assert_close(feats.features["arcface"][0], torch.tensor(emb / np.linalg.norm(emb)).float())

    # Average ensemble by hand: mean over encoders valid for both of the dot products; 0 when none shared.
    sim = identity_similarity(feats, feats)
    for i in range(4):
        for j in range(4):
            dots = [
                float(feats.features[k][i] @ feats.features[k][j])
                for k in ("arcface", "adaface", "facenet")
                if feats.valid[k][i] and feats.valid[k][j]
            ]
            expected = sum(dots) / len(dots) if dots else 0.0
            assert sim[i, j].item() == pytest.approx(expected, abs=1e-6)
    # Same matrix from the functional layer's per-item dict form (models that found no face are absent).
    items = [{k: feats.features[k][i] for k in feats.features if feats.valid[k][i]} for i in range(4)]
    torch.testing.assert_close(sim.double(), ensemble_similarity(items, items), atol=1e-6, rtol=0)
    assert sim[0, 2].item() == pytest.approx(
        float(feats.features["arcface"][0] @ feats.features["arcface"][2]), abs=1e-6
    )
    assert sim[3, 0].item() == 0.0


def test_ensemble_threshold_lowering_and_determinism(ensemble):
    enc = ensemble.face
    app = enc.arcface.app
    ims = _face_images()
    first = enc.encode(ims)
    assert app.calls == [0.45, 0.45, 0.45, 0.35, 0.25, 0.45, 0.35, 0.25, 0.15]
    second = enc.encode(list(reversed(ims)))  # batch order does not change any row
    for k in first.features:
        torch.testing.assert_close(second.features[k].flip(0), first.features[k], rtol=0, atol=1e-6)
    assert isinstance(enc.arcface, ArcFaceEncoder)


def test_ensemble_all_without_faces(ensemble):
    feats = ensemble.face.encode([_face_images()[3]] * 2)
    assert feats.features["adaface"].shape == (2, 32) and feats.features["facenet"].shape == (2, 64)
    assert not feats.any_valid.any()
    assert identity_similarity(feats, feats).abs().sum() == 0
