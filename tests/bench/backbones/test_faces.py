"""ArcFace wrapper logic (threshold lowering, BGR input, first face, invalid rows) with a scripted FaceAnalysis.

insightface is an optional extra and is not installed in CI; the scripted stand-in replays what
`insightface.app.FaceAnalysis` does at its interface (`prepare`, `det_model.det_thresh`, `get(bgr)` returning
faces with `normed_embedding`), so the wrapper's own logic is tested. A real-weights check needs the extra.
"""

from __future__ import annotations

import types
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbones import faces as faces_mod
from bench.backbones.faces import DET_THRESHOLDS, ArcFaceEncoder


class ScriptedFaceAnalysis:
    """Finds a face in an image only when det_thresh <= the image's red value / 1000 (a per-image threshold)."""

    instances: ClassVar[list[ScriptedFaceAnalysis]] = []

    def __init__(self, name, root, providers, allowed_modules):
        self.init = {"name": name, "root": root, "providers": providers, "allowed_modules": allowed_modules}
        self.det_model = types.SimpleNamespace(det_thresh=None)
        self.calls: list[tuple[float, tuple[int, int, int]]] = []
        ScriptedFaceAnalysis.instances.append(self)

    def prepare(self, ctx_id, det_thresh, det_size):
        self.prepared = {"ctx_id": ctx_id, "det_thresh": det_thresh, "det_size": det_size}
        self.det_model.det_thresh = det_thresh

    def get(self, bgr):
        pixel = tuple(int(v) for v in bgr[0, 0])
        self.calls.append((round(self.det_model.det_thresh, 2), pixel))
        needed = bgr[0, 0, 2] / 1000.0  # channel 2 of BGR = red
        if self.det_model.det_thresh > needed + 1e-9:
            return []
        first = np.zeros(512, dtype=np.float32)
        first[0] = 1.0
        second = np.zeros(512, dtype=np.float32)
        second[1] = 1.0
        return [types.SimpleNamespace(normed_embedding=first), types.SimpleNamespace(normed_embedding=second)]


@pytest.fixture
def encoder(monkeypatch, tmp_path):
    ScriptedFaceAnalysis.instances.clear()
    monkeypatch.setattr(faces_mod, "import_face_analysis", lambda: ScriptedFaceAnalysis)
    return ArcFaceEncoder(tmp_path / "insightface")


def test_thresholds_lowered_per_crop_and_reset(encoder, tmp_path):
    app = ScriptedFaceAnalysis.instances[0]
    assert app.init["name"] == "antelopev2" and app.init["providers"] == ["CPUExecutionProvider"]
    assert app.prepared == {"ctx_id": -1, "det_thresh": 0.45, "det_size": (640, 640)}
    ims = [
        Image.new("RGB", (20, 20), (300 // 1, 0, 0))
        if False
        else Image.new("RGB", (20, 20), (250, 0, 10)),  # needs ≤0.25
        Image.new("RGB", (20, 20), (100, 5, 0)),  # needs ≤0.10 → never found (stops at 0.15)
        Image.new("RGB", (20, 20), (255, 0, 0)),  # found at 0.25 again: threshold reset for each crop
    ]
    feats = encoder.encode(ims)
    assert [t for t, _ in app.calls] == [0.45, 0.35, 0.25, 0.45, 0.35, 0.25, 0.15, 0.45, 0.35, 0.25]
    assert app.calls[0][1] == (10, 0, 250)  # BGR order
    assert feats.valid["arcface"].tolist() == [True, False, True]
    f = feats.features["arcface"]
    assert f.shape == (3, 512)
    torch.testing.assert_close(f[0, :2], torch.tensor([1.0, 0.0]))  # first face = highest score
    assert f[1].abs().sum() == 0
    assert list(DET_THRESHOLDS) == [0.45, 0.35, 0.25, 0.15]
