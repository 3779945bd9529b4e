"""Backbone registry: `load_backbones("official" | "toy", ...)` returns a lazily-loaded `Backbones` bundle.

Importing this package loads no network and imports no heavy optional dependency.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.backbones.base import (
    COMPONENTS,
    REALISTIC_HUMAN,
    AestheticScorer,
    BackboneError,
    BackboneKind,
    Backbones,
    CharacterDetector,
    Component,
    Detections,
    Era,
    IdentityEncoder,
    IdentityFeatures,
    InceptionClassifier,
    MissingDependencyError,
    MissingWeightsError,
    StyleEncoder,
    UnsupportedEraError,
    boxes_from_normalized_cxcywh,
    detector_caption,
    identity_similarity,
)

__all__ = [
    "COMPONENTS",
    "METRIC_COMPONENTS",
    "REALISTIC_HUMAN",
    "AestheticScorer",
    "BackboneError",
    "BackboneKind",
    "Backbones",
    "CharacterDetector",
    "Component",
    "Detections",
    "Era",
    "IdentityEncoder",
    "IdentityFeatures",
    "InceptionClassifier",
    "MissingDependencyError",
    "MissingWeightsError",
    "StyleEncoder",
    "UnsupportedEraError",
    "boxes_from_normalized_cxcywh",
    "components_for",
    "detector_caption",
    "identity_similarity",
    "load_backbones",
]

BACKBONE_KINDS: tuple[BackboneKind, ...] = ("official", "toy")

#: Components each evaluator metric needs. CIDS, OCCM and the single-character part of prompt alignment all
#: detect characters and match them with the identity encoders.
METRIC_COMPONENTS: dict[str, tuple[Component, ...]] = {
    "csd": ("style",),
    "cids": ("detector", "clip", "face"),
    "occm": ("detector", "clip", "face"),
    "prompt_align": ("detector", "clip", "face"),
    "aesthetic": ("aesthetic",),
    "diversity": ("inception",),
}


def components_for(metrics: Iterable[str], character_tags: Iterable[str] | None = None) -> list[Component]:
    """The backbone components needed to compute `metrics`, for `Backbones.validate` before a long run.

    Args:
        metrics: evaluator metric names (keys of `METRIC_COMPONENTS`).
        character_tags: tags of the characters to be scored; the face encoder is dropped when none is
            `realistic_human` (so a run on stylised stories does not need the `faces` extra). None keeps it.

    Raises:
        ValueError: an unknown metric name.
    """
    unknown = [m for m in metrics if m not in METRIC_COMPONENTS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRIC_COMPONENTS)}")
    needed = {c for m in metrics for c in METRIC_COMPONENTS[m]}
    if character_tags is not None and REALISTIC_HUMAN not in set(character_tags):
        needed.discard("face")
    return [c for c in COMPONENTS if c in needed]


def load_backbones(
    kind: BackboneKind,
    weights_dir: Path | str | None = None,
    device: str = "cpu",
    era: Era = "A",
) -> Backbones:
    """Build the backbone bundle the metrics use.

    Nothing heavy happens here: each component is built on first access. Call `Backbones.validate()` to check
    the weight files up front.

    Args:
        kind: "official" — the ViStoryBench networks from a local weight bundle (comparable with published
            numbers); "toy" — weight-free deterministic extractors (NOT comparable; for offline runs and tests).
        weights_dir: the weight bundle directory (ViStoryBench's `data/pretrain/`, §11 layout); required for
            "official", ignored for "toy".
        device: torch device string, e.g. "cpu" or "cuda".
        era: metric era (A, B, C); selects era-dependent preprocessing and the face encoder.

    Returns:
        The `Backbones` bundle.

    Raises:
        ValueError: unknown kind or era, or "official" without `weights_dir`.
        MissingWeightsError: `weights_dir` does not exist.
    """
    if era not in ("A", "B", "C"):
        raise ValueError(f"era must be one of 'A', 'B', 'C', got {era!r}")
    if kind == "toy":
        from bench.backbones.toy import make_toy_backbones

        return make_toy_backbones(era=era, device=device)
    if kind == "official":
        if weights_dir is None:
            raise ValueError(
                "official backbones need weights_dir: the ViStoryBench weight bundle directory "
                "(HF ViStoryBench/VistoryBench_pretrain, ViStoryBench's data/pretrain/)"
            )
        from bench.backbones.official import make_official_backbones

        return make_official_backbones(Path(weights_dir), era=era, device=device)
    raise ValueError(f"backbone kind must be one of {BACKBONE_KINDS}, got {kind!r}")
