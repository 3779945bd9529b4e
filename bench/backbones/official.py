"""The official ViStoryBench backbone set, each component loaded on first use from a local weight bundle.

Layout and sources: `bench.backbones.weights`. Every component validates its files first (raising
`MissingWeightsError` naming the file) and records the sha256 of the files it read in
`Backbones.file_hashes`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.backbones import weights as W
from bench.backbones.base import Backbones, Component, Era, MissingDependencyError, MissingWeightsError
from bench.backbones.faces import import_face_analysis

CSD_EXTRA_HINT = (
    "The CSD style encoder (the csd metric) builds its ViT with open_clip: pip install 'unimage-harness[csd]' "
    "(or: pip install open-clip-torch). Without it, evaluate with --backbones toy or skip the csd metric."
)

OFFICIAL_NAME = "official (ViStoryBench weight bundle)"


def _check_style(root: Path) -> list[Path]:
    return [W.require(root, W.CSD)]


def _check_detector(root: Path) -> list[Path]:
    """The bundle's original checkpoint + BERT directory, else a transformers-format directory.

    Why this order: §11's bundle ships `groundingdino_swint_ogc.pth` and `google-bert/bert-base-uncased/`;
    the transformers conversion of the same weights is accepted when the original is absent.
    """
    original = root / W.GROUNDING_DINO_ORIGINAL.relpath
    if original.is_file():
        return [original, W.require(root, W.BERT_BASE_UNCASED)]
    try:
        return [W.require(root, W.GROUNDING_DINO_HF)]
    except MissingWeightsError as err:
        raise MissingWeightsError(
            f"{W.GROUNDING_DINO_ORIGINAL.component}: missing {original} (expected at "
            f"<weights_dir>/{W.GROUNDING_DINO_ORIGINAL.relpath}, with <weights_dir>/{W.BERT_BASE_UNCASED.relpath}/); "
            f"get it from {W.BUNDLE_SOURCE}. Alternatively: {err}"
        ) from err


def _check_face(root: Path, era: Era) -> list[Path]:
    if era == "A":
        import_face_analysis()
        return [W.require(root, W.ANTELOPEV2)]
    # Era B/C ensemble: the files first (they name what to download), then the optional package.
    paths = [W.require(root, W.ANTELOPEV2), W.require(root, W.ADAFACE), W.require(root, W.FACENET)]
    import_face_analysis()
    return paths


def _check_clip(root: Path) -> list[Path]:
    return [W.require(root, W.CLIP)]


def _check_aesthetic(root: Path) -> list[Path]:
    return [W.require(root, W.SIGLIP), W.require(root, W.AESTHETIC_HEAD)]


def _check_inception(root: Path) -> list[Path]:
    return [W.find_inception(root)]


def make_official_backbones(weights_dir: Path, era: Era = "A", device: str = "cpu") -> Backbones:
    """The official bundle over `weights_dir` (lazy: components load on first access).

    Args:
        weights_dir: ViStoryBench's `data/pretrain/` directory (§11 layout).
        era: A (ArcFace faces, bilinear CSD resize), B or C (ArcFace + AdaFace + FaceNet face ensemble).
        device: torch device string.

    Raises:
        MissingWeightsError: `weights_dir` is not a directory.
    """
    root = Path(weights_dir)
    if not root.is_dir():
        raise MissingWeightsError(f"weights_dir {root} is not a directory; it must be {W.BUNDLE_SOURCE}")

    checks: dict[Component, Callable[[], list[Path]]] = {
        "style": lambda: _check_style(root),
        "detector": lambda: _check_detector(root),
        "face": lambda: _check_face(root, era),
        "clip": lambda: _check_clip(root),
        "aesthetic": lambda: _check_aesthetic(root),
        "inception": lambda: _check_inception(root),
    }

    bundle = Backbones(name=OFFICIAL_NAME, comparable=True, era=era, device=device, factories={})

    def build(component: Component) -> object:
        paths = checks[component]()
        if component == "style":
            try:
                from bench.backbones.csd import CSDStyleEncoder, load_csd
            except ImportError as err:  # open_clip: the `csd` extra
                raise MissingDependencyError(f"{CSD_EXTRA_HINT} (import failed: {err})") from err

            obj: object = CSDStyleEncoder(load_csd(paths[0]), era=era, device=device)
        elif component == "detector":
            from bench.backbones.detector import GroundingDinoDetector

            obj = GroundingDinoDetector(paths[0], device=device, text_encoder_dir=paths[1] if len(paths) > 1 else None)
        elif component == "face" and era == "A":
            from bench.backbones.faces import ArcFaceEncoder

            obj = ArcFaceEncoder(paths[0].parent.parent, device=device)  # root of models/antelopev2
        elif component == "face":
            from bench.backbones.faces_bc import load_face_ensemble

            obj = load_face_ensemble(paths[0].parent.parent, paths[1], paths[2], device=device)
        elif component == "clip":
            from bench.backbones.clip import CLIPIdentityEncoder

            obj = CLIPIdentityEncoder(paths[0], device=device)
        elif component == "aesthetic":
            from bench.backbones.aesthetic import AestheticPredictorV25

            obj = AestheticPredictorV25(paths[0], paths[1], device=device)
        else:
            from bench.backbones.inception import InceptionV3Classifier

            obj = InceptionV3Classifier(paths[0], device=device)
        bundle.file_hashes.update(W.hash_weights(root, paths))
        return obj

    def factory(component: Component) -> Callable[[], object]:
        return lambda: build(component)

    def check(component: Component) -> Callable[[], None]:
        def run() -> None:
            checks[component]()

        return run

    bundle.factories = {c: factory(c) for c in checks}
    bundle.checks = {c: check(c) for c in checks}
    return bundle
