"""Era B/C CIDS face encoder for `realistic_human` characters: the ArcFace + AdaFace + FaceNet average ensemble.

Official (§4.1, config `use_multi_face_encoder: true`, `ensemble_method: average`): every crop gets up to three
512-d L2-normalised embeddings, and a pair's similarity is the mean over the encoders present in BOTH items
of their cosines (`bench.backbones.base.identity_similarity` implements exactly that rule):
- ArcFace: insightface antelopev2 as in Era A (`bench.backbones.faces.ArcFaceEncoder`, threshold lowering);
- AdaFace IR-101 (WebFace12M): the facexlib 112×112 aligned crop, BGR, (x/255 − 0.5)/0.5;
- FaceNet InceptionResnetV1 (vggface2): the SAME 112×112 BGR crop scaled to [0, 1] only (no 160-px resize, no
  ±1 standardisation — the official quirk, kept).

Deviation (stated in every provenance as the encoder name): the official crop comes from facexlib's RetinaFace
ResNet-50 (`detection_Resnet50_Final.pth`, confidence 0.97, first face). This re-implementation has no
RetinaFace; it aligns with the 5 landmarks (`kps`) of the face insightface's SCRFD detector found for ArcFace
(faces[0], the highest-scoring one), and only when that face's detection score is ≥ `align_min_score` (0.45 by
default, the strictest ArcFace threshold, standing in for RetinaFace's 0.97 confidence). When SCRFD finds no
face or only a low-score one, AdaFace and FaceNet give no feature for that crop (officially: facexlib found no
face), and ArcFace may still give one. The warp itself follows facexlib (`bench.backbones.face_align`).
Without insightface (the `faces` extra) the whole ensemble is unavailable (`MissingDependencyError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.backbones.adaface import IRBackbone
from bench.backbones.base import IdentityFeatures
from bench.backbones.face_align import ALIGNED_SIZE, align_face
from bench.backbones.facenet import InceptionResnetV1
from bench.backbones.faces import ARCFACE_DIM, DET_THRESHOLDS, ArcFaceEncoder

#: Feature keys of the ensemble, in the official order.
ENCODERS = ("arcface", "adaface", "facenet")


def adaface_input(aligned_bgr: np.ndarray) -> torch.Tensor:
    """[N, 112, 112, 3] uint8 BGR → [N, 3, 112, 112] float in [−1, 1] (AdaFace's `to_input`)."""
    x = torch.from_numpy(np.ascontiguousarray(aligned_bgr)).float().permute(0, 3, 1, 2) / 255.0
    return (x - 0.5) / 0.5


def facenet_input(aligned_bgr: np.ndarray) -> torch.Tensor:
    """[N, 112, 112, 3] uint8 BGR → [N, 3, 112, 112] float in [0, 1] (the official FaceNet call: /255 only)."""
    return torch.from_numpy(np.ascontiguousarray(aligned_bgr)).float().permute(0, 3, 1, 2) / 255.0


class FaceEnsembleEncoder:
    """`IdentityEncoder` giving {"arcface", "adaface", "facenet"} features with per-encoder validity."""

    name = "face_mix(arcface+adaface_ir101+facenet_vggface2; align=scrfd_kps)"

    def __init__(
        self,
        arcface: ArcFaceEncoder,
        adaface: IRBackbone,
        facenet: InceptionResnetV1,
        device: str = "cpu",
        align_min_score: float = DET_THRESHOLDS[0],
        batch_size: int = 32,
    ) -> None:
        """Wrap loaded models. `arcface.app` must return faces with `normed_embedding`, `kps`, `det_score`."""
        self.arcface = arcface
        self.adaface = adaface.to(device).eval()
        self.facenet = facenet.to(device).eval()
        self.device = device
        self.align_min_score = align_min_score
        self.batch_size = batch_size

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """ArcFace embedding (threshold lowering) and the landmarks to align with (or None)."""
        face = self.arcface.first_face(bgr)
        if face is None:
            return None, None
        emb = np.asarray(face.normed_embedding, dtype=np.float32)
        if float(face.det_score) < self.align_min_score:
            return emb, None
        return emb, np.asarray(face.kps, dtype=np.float64).reshape(5, 2)

    @torch.no_grad()
    def _embed(self, model: torch.nn.Module, batch: torch.Tensor, adaface: bool) -> torch.Tensor:
        out = []
        for chunk in batch.split(self.batch_size):
            res = model(chunk.to(self.device))
            feat = res[0] if adaface else res  # AdaFace returns (feature, norm)
            out.append(torch.nn.functional.normalize(feat.float(), dim=1).cpu())
        return torch.cat(out)

    def encode(self, images: Sequence[Image.Image]) -> IdentityFeatures:
        """Embed crops → three [N, D] feature sets; rows without a (confident) face are zero and invalid."""
        n = len(images)
        arc = torch.zeros(n, ARCFACE_DIM)
        arc_valid = torch.zeros(n, dtype=torch.bool)
        aligned: list[np.ndarray] = []
        aligned_rows: list[int] = []
        for i, im in enumerate(images):
            bgr = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
            emb, kps = self._detect(bgr)
            if emb is not None:
                arc[i] = torch.nn.functional.normalize(torch.from_numpy(emb), dim=0)
                arc_valid[i] = True
            if kps is not None:
                aligned.append(align_face(bgr, kps, ALIGNED_SIZE))
                aligned_rows.append(i)
        feats = {"arcface": arc}
        valid = {"arcface": arc_valid}
        rows = torch.as_tensor(aligned_rows, dtype=torch.long)
        batch = np.stack(aligned) if aligned else None  # [M, 112, 112, 3] uint8 BGR
        for key, model in (("adaface", self.adaface), ("facenet", self.facenet)):
            full = torch.zeros(n, _out_dim(model))
            ok = torch.zeros(n, dtype=torch.bool)
            if batch is not None:
                inputs = adaface_input(batch) if key == "adaface" else facenet_input(batch)
                full[rows] = self._embed(model, inputs, adaface=key == "adaface")  # [M, D]
                ok[rows] = True
            feats[key], valid[key] = full, ok
        return IdentityFeatures(feats, valid)


def _out_dim(model: torch.nn.Module) -> int:
    """Embedding width of an AdaFace or FaceNet model (for all-invalid batches)."""
    if isinstance(model, IRBackbone):
        return model.config.embedding_dim
    if isinstance(model, InceptionResnetV1):
        return model.last_bn.num_features
    raise TypeError(f"unknown face model {type(model).__name__}")


def load_face_ensemble(
    insightface_root: Path, adaface_ckpt: Path, facenet_pt: Path, device: str = "cpu"
) -> FaceEnsembleEncoder:
    """Load the three encoders (ArcFace needs the `faces` extra).

    Args:
        insightface_root: directory holding `models/antelopev2`.
        adaface_ckpt: `adaface/adaface_ir101_webface12m.ckpt`.
        facenet_pt: `facenet/20180402-114759-vggface2.pt`.
        device: torch device string.

    Raises:
        MissingDependencyError: insightface/onnxruntime not installed.
        FileNotFoundError / ValueError: a checkpoint is missing or does not fit (message names the file).
    """
    from bench.backbones.adaface import load_adaface
    from bench.backbones.facenet import load_facenet

    adaface = load_adaface(adaface_ckpt)
    facenet = load_facenet(facenet_pt)
    arcface = ArcFaceEncoder(insightface_root, device=device)
    return FaceEnsembleEncoder(arcface, adaface, facenet, device=device)
