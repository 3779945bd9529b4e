"""CIDS face encoder for `realistic_human` characters: ArcFace from insightface's antelopev2 pack (§4.1).

Official (Era A): `insightface.app.FaceAnalysis(name="antelopev2", root=<bundle>/insightface)` (SCRFD-10G
detector + glintr100 ResNet-100 recogniser, 512-d), `prepare(det_thresh=0.45, det_size=(640, 640))`, run on
the BGR crop; while no face is found the detection threshold is lowered by 0.1 (0.45, 0.35, 0.25, 0.15);
the embedding of the first (highest-scoring) face, L2-normalised; no face at any threshold → no feature.

Deviations: the threshold is reset to 0.45 for every crop (Era A forgot to reset it between the crops of a
batch, which made results depend on batch composition; Era C resets it). Rows without a face are marked
invalid instead of being dropped, so row k always belongs to crop k (the Era A/B index-shift bug, §4.1).

insightface and onnxruntime are the optional `faces` extra; without them this module raises
`MissingDependencyError` explaining how to install them, and the evaluator reports it instead of crashing.

Era B/C average ArcFace with AdaFace IR-101 and FaceNet on aligned crops: `bench.backbones.faces_bc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.backbones.base import IdentityFeatures, MissingDependencyError

DET_THRESHOLDS = (0.45, 0.35, 0.25, 0.15)
DET_SIZE = (640, 640)
ARCFACE_DIM = 512

FACES_EXTRA_HINT = (
    "ArcFace (CIDS for realistic humans) needs the optional packages insightface and onnxruntime: "
    "pip install 'unimage-harness[faces]' (or: pip install insightface onnxruntime). "
    "Without them, evaluate with --backbones toy or skip the cids metric."
)


def import_face_analysis() -> Any:
    """Import `insightface.app.FaceAnalysis`, or raise `MissingDependencyError` with the install hint."""
    try:
        import onnxruntime  # noqa: F401  (insightface imports it lazily; check it up front)
        from insightface.app import FaceAnalysis
    except ImportError as err:
        raise MissingDependencyError(f"{FACES_EXTRA_HINT} (import failed: {err})") from err
    return FaceAnalysis


def faces_available() -> bool:
    """Whether the `faces` extra is installed."""
    try:
        import_face_analysis()
    except MissingDependencyError:
        return False
    return True


class ArcFaceEncoder:
    """`IdentityEncoder` over insightface antelopev2; crops without a face are invalid rows."""

    name = "arcface"

    def __init__(
        self, insightface_root: Path, device: str = "cpu", thresholds: Sequence[float] = DET_THRESHOLDS
    ) -> None:
        """Load antelopev2 from `insightface_root/models/antelopev2` (ONNX, CUDA provider when device is cuda)."""
        face_analysis = import_face_analysis()
        cuda = device.startswith("cuda")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.app = face_analysis(
            name="antelopev2",
            root=str(insightface_root),
            providers=providers,
            allowed_modules=["detection", "recognition"],
        )
        self.app.prepare(ctx_id=0 if cuda else -1, det_thresh=thresholds[0], det_size=DET_SIZE)
        self.thresholds = tuple(thresholds)

    def first_face(self, bgr: np.ndarray) -> Any | None:
        """The highest-scoring insightface face of a BGR crop, lowering the threshold while none is found."""
        for threshold in self.thresholds:
            self.app.det_model.det_thresh = threshold
            faces = self.app.get(bgr)
            if faces:
                return faces[0]
        return None

    def _embed(self, image: Image.Image) -> np.ndarray | None:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        face = self.first_face(bgr)
        return None if face is None else np.asarray(face.normed_embedding, dtype=np.float32)

    def encode(self, images: Sequence[Image.Image]) -> IdentityFeatures:
        """Embed crops → {"arcface": [N, 512]}; rows with no face at any threshold are zero and invalid."""
        feats = torch.zeros(len(images), ARCFACE_DIM)
        valid = torch.zeros(len(images), dtype=torch.bool)
        for i, im in enumerate(images):
            emb = self._embed(im)
            if emb is not None:
                feats[i] = torch.nn.functional.normalize(torch.from_numpy(emb), dim=0)
                valid[i] = True
        return IdentityFeatures({self.name: feats}, {self.name: valid})
