"""Interfaces of the networks behind the ViStoryBench metrics, and the `Backbones` bundle that carries them.

Every metric in `bench/metrics/` talks to its network only through the `typing.Protocol`s below, so the same
metric code runs with the official weights (`bench.backbones.official`) and with the weight-free `toy`
extractors (`bench.backbones.toy`). All calls are batched: a list of PIL images goes in, one tensor comes out
(row i belongs to image i); implementations chunk internally by their own batch size.

Shape letters: N images in a call, D embedding width, K detected boxes in one image.

Reference: `shared/reference/vistorybench.md` §3 (CSD), §4 (CIDS detector and identity encoders), §7
(aesthetics), §8 (Inception).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, cast, runtime_checkable

import torch
from PIL import Image

Era = Literal["A", "B", "C"]
BackboneKind = Literal["official", "toy"]
Component = Literal["style", "detector", "face", "clip", "aesthetic", "inception"]
COMPONENTS: tuple[Component, ...] = ("style", "detector", "face", "clip", "aesthetic", "inception")

#: Character tag that routes CIDS to the face encoder (§4.1); every other tag uses CLIP.
REALISTIC_HUMAN = "realistic_human"


class BackboneError(RuntimeError):
    """Base class of backbone loading errors (missing weights, missing optional packages, unsupported era)."""


class MissingWeightsError(BackboneError, FileNotFoundError):
    """A file of the weight bundle is missing; the message names the file and where it is expected."""


class MissingDependencyError(BackboneError, ImportError):
    """An optional package (e.g. the `faces` extra) is not installed; the message says how to install it."""


class UnsupportedEraError(BackboneError, NotImplementedError):
    """The requested era needs a backbone this re-implementation does not provide; the message says which."""


def detector_caption(era: Era) -> str:
    """The Grounding DINO caption each era uses for characters (§4.1: "people" in Era A, "character" in B/C)."""
    return "people" if era == "A" else "character"


#####################################################################################################
# Results
#####################################################################################################


@dataclass(frozen=True)
class Detections:
    """Boxes found in one image, sorted by descending score.

    Boxes are pixel corners exactly as the official crop code makes them (§4.1): normalised (cx, cy, w, h)
    scaled by (W, H, W, H) and truncated to integers, converted to corners (so values are multiples of 0.5),
    clipped to the image, and empty boxes dropped. `crops()` passes them to `PIL.Image.crop`, which rounds
    them as the official code's crop did.

    The official code picks its top-k boxes *before* dropping empty ones, and Era A's prompt-alignment copy crops
    the detector's unsorted, unclipped boxes (`bench.quirks`); `raw_boxes` / `raw_scores` keep what is needed for
    that: every box in the detector's own order, corners from the truncated integers, neither clipped nor filtered.

    Attributes:
        boxes: [K, 4] float32 (x0, y0, x1, y1), x1 > x0 and y1 > y0.
        scores: [K] float32, descending (max over caption tokens of the sigmoid logit for Grounding DINO).
        raw_boxes: [M, 4] float32 unclipped corners in detector order (M >= K); None = same as `boxes`.
        raw_scores: [M] float32 scores of `raw_boxes`; None = same as `scores`.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    raw_boxes: torch.Tensor | None = None
    raw_scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [K, 4], got {tuple(self.boxes.shape)}")
        if self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(f"scores must be [K]={self.boxes.shape[0]}, got {tuple(self.scores.shape)}")
        if (self.raw_boxes is None) != (self.raw_scores is None):
            raise ValueError("raw_boxes and raw_scores go together")
        if (
            self.raw_boxes is not None
            and self.raw_scores is not None
            and (
                self.raw_boxes.ndim != 2
                or self.raw_boxes.shape[1] != 4
                or self.raw_scores.shape != (len(self.raw_boxes),)
            )
        ):
            raise ValueError(
                f"raw_boxes must be [M, 4] and raw_scores [M], got {tuple(self.raw_boxes.shape)}, "
                f"{tuple(self.raw_scores.shape)}"
            )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def n_raw(self) -> int:
        """Boxes the detector returned before clipping and dropping empty ones."""
        return len(self) if self.raw_boxes is None else int(self.raw_boxes.shape[0])

    def top(self, k: int) -> Detections:
        """The k highest-scoring non-empty boxes (all of them when k >= K)."""
        return Detections(self.boxes[:k], self.scores[:k])

    def top_then_drop(self, k: int, width: int, height: int) -> Detections:
        """The official order of operations: the k highest-scoring raw boxes, then clipped, then empty ones dropped.

        Fewer than k boxes can remain (a box under 1 px among the top k is lost, not replaced by the next one).
        """
        if self.raw_boxes is None or self.raw_scores is None:
            return self.top(k)
        order = torch.argsort(self.raw_scores, descending=True, stable=True)[: max(0, k)]
        boxes = self.raw_boxes[order].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[keep], self.raw_scores[order][keep])

    def crops(self, image: Image.Image) -> list[Image.Image]:
        """Crop every box out of `image` (the image the boxes were detected in)."""
        return [image.crop(tuple(float(v) for v in box.tolist())) for box in self.boxes]  # type: ignore[arg-type]

    def raw_crops(self, image: Image.Image) -> list[Image.Image]:
        """Era A `gpt_eval.py` crops: every raw box in detector order, not clipped (PIL pads outside with black).

        A box without area is left out (the official code would hand an empty image to CLIP and fail).
        """
        boxes = self.boxes if self.raw_boxes is None else self.raw_boxes
        keep = [b for b in boxes.tolist() if b[2] > b[0] and b[3] > b[1]]
        return [image.crop(tuple(float(v) for v in box)) for box in keep]  # type: ignore[arg-type]

    @staticmethod
    def empty() -> Detections:
        """No box."""
        return Detections(torch.zeros(0, 4, dtype=torch.float32), torch.zeros(0, dtype=torch.float32))


def boxes_from_normalized_cxcywh(cxcywh: torch.Tensor, scores: torch.Tensor, width: int, height: int) -> Detections:
    """Turn a detector's normalised (cx, cy, w, h) boxes into the official crop boxes (§4.1).

    Mirrors the official `crop_img`: `(boxes * [W, H, W, H]).int()`, then torchvision's cxcywh -> xyxy
    (x0 = cx - 0.5 w, a float), each corner clipped to the image, boxes without area dropped.
    Output sorted by descending score (stable, so equal scores keep the detector's order).

    Args:
        cxcywh: [K, 4] normalised boxes in [0, 1].
        scores: [K] box scores.
        width: image width W in pixels.
        height: image height H in pixels.

    Returns:
        The kept boxes as `Detections`.
    """
    if cxcywh.numel() == 0:
        return Detections.empty()
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    px = (cxcywh.float().cpu() * scale).int()  # [K, 4] truncation toward zero, like Tensor.int()
    cx, cy, w, h = px.unbind(-1)
    raw = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1).float()  # [K, 4] unclipped
    boxes = raw.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    raw_scores = scores.detach().float().cpu()
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, kept_scores = boxes[keep], raw_scores[keep]
    order = torch.argsort(kept_scores, descending=True, stable=True)
    return Detections(boxes[order], kept_scores[order], raw, raw_scores)


@dataclass(frozen=True)
class IdentityFeatures:
    """Identity embeddings of N crops, possibly from several encoders (the Era B/C face ensemble).

    A crop may have no embedding for some encoder (no face found): its row is zero and `valid` is False.
    Single-encoder backbones (CLIP, ArcFace alone, toy) have exactly one entry.

    Attributes:
        features: encoder name -> [N, D_m] float32, unit-norm rows where valid, zero rows elsewhere.
        valid: encoder name -> [N] bool.
    """

    features: dict[str, torch.Tensor]
    valid: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        if set(self.features) != set(self.valid) or not self.features:
            raise ValueError(
                f"features {sorted(self.features)} and valid {sorted(self.valid)} must name the same encoders"
            )
        sizes = {int(f.shape[0]) for f in self.features.values()} | {int(v.shape[0]) for v in self.valid.values()}
        if len(sizes) != 1:
            raise ValueError(f"all encoders must give the same number of rows, got {sorted(sizes)}")

    def __len__(self) -> int:
        return int(next(iter(self.valid.values())).shape[0])

    @property
    def any_valid(self) -> torch.Tensor:
        """[N] bool: the crop has an embedding from at least one encoder (the official "crop yields a feature")."""
        return torch.stack(list(self.valid.values())).any(dim=0)

    def select(self, index: torch.Tensor | Sequence[int]) -> IdentityFeatures:
        """Rows `index` (a [M] long tensor, a list of ints, or an [N] bool mask)."""
        idx = index if isinstance(index, torch.Tensor) else torch.as_tensor(list(index), dtype=torch.long)
        return IdentityFeatures(
            {k: v[idx] for k, v in self.features.items()}, {k: v[idx] for k, v in self.valid.items()}
        )

    @staticmethod
    def concat(parts: Sequence[IdentityFeatures]) -> IdentityFeatures:
        """Stack the rows of several feature sets made by the same encoder(s)."""
        if not parts:
            raise ValueError("concat needs at least one IdentityFeatures")
        names = list(parts[0].features)
        return IdentityFeatures(
            {k: torch.cat([p.features[k] for p in parts]) for k in names},
            {k: torch.cat([p.valid[k] for p in parts]) for k in names},
        )


def identity_similarity(a: IdentityFeatures, b: IdentityFeatures) -> torch.Tensor:
    """Pairwise identity similarity, the official "average ensemble" rule (§4.1).

    For each pair (i, j): the mean over encoders that gave a feature to BOTH items of the cosine of their
    unit-norm features; 0.0 when they share no encoder. With a single always-valid encoder this is the plain
    dot product used for CLIP and ArcFace.

    Args:
        a: features of Na items.
        b: features of Nb items, from the same encoder(s).

    Returns:
        [Na, Nb] float32 similarities.
    """
    common = [k for k in a.features if k in b.features]
    total = torch.zeros(len(a), len(b), dtype=torch.float32)
    count = torch.zeros(len(a), len(b), dtype=torch.float32)
    for k in common:
        both = (a.valid[k][:, None] & b.valid[k][None, :]).float()  # [Na, Nb]
        total += (a.features[k].float() @ b.features[k].float().T) * both
        count += both
    return torch.where(count > 0, total / count.clamp_min(1.0), torch.zeros_like(total))


#####################################################################################################
# Protocols
#####################################################################################################


@runtime_checkable
class StyleEncoder(Protocol):
    """CSD style embedding (§3)."""

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed images. Returns [N, D] float32 with unit-norm rows (D = 768 for CSD ViT-L/14)."""
        ...


@runtime_checkable
class CharacterDetector(Protocol):
    """Open-vocabulary box detector with Grounding DINO semantics (§4.1: box and text thresholds 0.25)."""

    def detect(self, images: Sequence[Image.Image], caption: str) -> list[Detections]:
        """Find boxes matching `caption` (e.g. "people") in each image. Returns one `Detections` per image."""
        ...


@runtime_checkable
class IdentityEncoder(Protocol):
    """Identity embedding of character crops for CIDS (§4.1). `name` is recorded in the provenance."""

    name: str

    def encode(self, images: Sequence[Image.Image]) -> IdentityFeatures:
        """Embed crops (or whole reference images). Rows without a face are marked invalid."""
        ...


@runtime_checkable
class AestheticScorer(Protocol):
    """Aesthetic Predictor V2.5 score (§7)."""

    def score(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Score images. Returns [N] float32 (≈1–10 for the official model)."""
        ...


@runtime_checkable
class InceptionClassifier(Protocol):
    """ImageNet classifier behind the Inception Score (§8)."""

    def logits(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Classify images. Returns [N, 1000] float32 logits (torchvision Inception-v3 has 1000 classes)."""
        ...


#####################################################################################################
# The bundle
#####################################################################################################

T = TypeVar("T")


@dataclass
class Backbones:
    """Every network the metrics need, loaded lazily on first use.

    Official components are large; an evaluation that asks only for aesthetics must not load Grounding DINO.
    Each property builds its component on first access (validating its weight files then) and records the
    sha256 of every weight file it read in `file_hashes`, which the evaluator writes to the provenance.

    Attributes:
        name: "official" or "toy" (plus details), written next to every result.
        comparable: whether scores can be compared with the published ViStoryBench numbers (False for toy).
        era: metric era whose backbone conventions this bundle follows (A, B or C).
        device: torch device string the components run on.
        file_hashes: relative weight path -> sha256 hex digest, for the components loaded so far.
        factories: component -> zero-argument builder (internal; use the properties).
        checks: component -> zero-argument weight-file validator raising `BackboneError` (internal).
    """

    name: str
    comparable: bool
    era: Era
    device: str
    factories: Mapping[Component, Callable[[], object]]
    checks: Mapping[Component, Callable[[], None]] = field(default_factory=dict)
    file_hashes: dict[str, str] = field(default_factory=dict)
    _loaded: dict[Component, object] = field(default_factory=dict, repr=False)

    def _get(self, component: Component, kind: type[T]) -> T:
        if component not in self._loaded:
            if component not in self.factories:
                raise BackboneError(f"backbones {self.name!r} have no {component!r} component")
            self._loaded[component] = self.factories[component]()
        return cast(T, self._loaded[component])

    @property
    def style(self) -> StyleEncoder:
        """CSD style encoder (CSD self/cross)."""
        return self._get("style", StyleEncoder)  # type: ignore[type-abstract]

    @property
    def detector(self) -> CharacterDetector:
        """Character detector (CIDS, OCCM, single-character action)."""
        return self._get("detector", CharacterDetector)  # type: ignore[type-abstract]

    @property
    def face(self) -> IdentityEncoder:
        """Identity encoder for `realistic_human` characters (ArcFace in Era A; face ensemble in B/C)."""
        return self._get("face", IdentityEncoder)  # type: ignore[type-abstract]

    @property
    def clip(self) -> IdentityEncoder:
        """Identity encoder for every other character (CLIP ViT-L/14 image features)."""
        return self._get("clip", IdentityEncoder)  # type: ignore[type-abstract]

    @property
    def aesthetic(self) -> AestheticScorer:
        """Aesthetic scorer."""
        return self._get("aesthetic", AestheticScorer)  # type: ignore[type-abstract]

    @property
    def inception(self) -> InceptionClassifier:
        """Inception-v3 classifier (Inception Score)."""
        return self._get("inception", InceptionClassifier)  # type: ignore[type-abstract]

    def loaded(self, component: Component) -> object | None:
        """The component if it has been built already, else None (never builds it)."""
        return self._loaded.get(component)

    def identity_encoder(self, tag: str) -> IdentityEncoder:
        """The CIDS encoder for a character tag: the face encoder for `realistic_human`, CLIP otherwise (§4.1)."""
        return self.face if tag == REALISTIC_HUMAN else self.clip

    def validate(self, components: Sequence[Component] = COMPONENTS) -> None:
        """Check, without loading anything, that the weight files and packages of `components` are present.

        Lets the evaluator fail in seconds, naming the missing file, instead of after hours of scoring.

        Raises:
            BackboneError: naming the first missing file or package.
        """
        for component in components:
            if component not in self.factories:
                raise BackboneError(f"backbones {self.name!r} have no {component!r} component")
            check = self.checks.get(component)
            if check is not None:
                check()

    def provenance(self) -> dict[str, object]:
        """What the evaluator writes about the backbones: name, comparability, era and weight hashes."""
        return {
            "backbones": self.name,
            "comparable_with_published": self.comparable,
            "era": self.era,
            "loaded_components": sorted(self._loaded),
            "file_hashes": dict(sorted(self.file_hashes.items())),
        }
