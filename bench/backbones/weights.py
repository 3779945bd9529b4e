"""The ViStoryBench weight bundle layout (§11) and the checks and hashes every official loader uses.

The bundle is ViStoryBench's `data/pretrain/` directory (HF model repo `ViStoryBench/VistoryBench_pretrain`).
Paths below are relative to it. Nothing is ever downloaded: a missing file is an error naming the file, the
component that needs it, and where it comes from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backbones.base import MissingWeightsError

BUNDLE_SOURCE = (
    "the ViStoryBench weight bundle (HF model repo ViStoryBench/VistoryBench_pretrain = ViStoryBench's data/pretrain/)"
)


@dataclass(frozen=True)
class WeightFile:
    """One file or directory of the bundle.

    Attributes:
        relpath: path relative to the bundle root.
        component: what needs it (for the error message).
        source: where to get it when it is missing.
        required_files: for a directory, the files that must exist inside it.
    """

    relpath: str
    component: str
    source: str = BUNDLE_SOURCE
    required_files: tuple[str, ...] = ()


CSD = WeightFile("csd/csd_vit-large.pth", "CSD style encoder (CSD ViT-L/14)")
GROUNDING_DINO_ORIGINAL = WeightFile("groundingdino/weights/groundingdino_swint_ogc.pth", "Grounding DINO SwinT-OGC")
BERT_BASE_UNCASED = WeightFile(
    "google-bert/bert-base-uncased",
    "Grounding DINO text encoder config and tokenizer (BERT base uncased)",
    required_files=("config.json", "vocab.txt"),
)
GROUNDING_DINO_HF = WeightFile(
    "IDEA-Research/grounding-dino-tiny",
    "Grounding DINO SwinT-OGC (transformers format)",
    source=(
        "the transformers conversion of groundingdino_swint_ogc.pth, HF model repo IDEA-Research/grounding-dino-tiny "
        "(same weights), placed inside the bundle directory"
    ),
    required_files=("config.json", "preprocessor_config.json", "tokenizer_config.json"),
)
CLIP = WeightFile(
    "openai/clip-vit-large-patch14",
    "CIDS CLIP ViT-L/14 encoder",
    required_files=("config.json", "preprocessor_config.json"),
)
ANTELOPEV2 = WeightFile(
    "insightface/models/antelopev2",
    "CIDS ArcFace (insightface antelopev2)",
    required_files=("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
)
ADAFACE = WeightFile("adaface/adaface_ir101_webface12m.ckpt", "CIDS AdaFace IR-101 (Era B/C)")
FACENET = WeightFile("facenet/20180402-114759-vggface2.pt", "CIDS FaceNet InceptionResnetV1 (Era B/C)")
SIGLIP = WeightFile(
    "google/siglip-so400m-patch14-384",
    "aesthetic SigLIP so400m vision tower",
    required_files=("config.json",),
)
AESTHETIC_HEAD = WeightFile("aesthetic_predictor/aesthetic_predictor_v2_5.pth", "aesthetic predictor V2.5 head")
INCEPTION_NAME = "inception_v3_google-0cc3c7bd.pth"
#: Where the torchvision Inception-v3 ImageNet weights are looked for, in order (the bundle keeps torch-hub's
#: cache layout; a flat copy is accepted too).
INCEPTION_CANDIDATES = (
    f"inception/{INCEPTION_NAME}",
    f"hub/checkpoints/{INCEPTION_NAME}",
    f"checkpoints/{INCEPTION_NAME}",
    INCEPTION_NAME,
)
INCEPTION_SOURCE = (
    "torchvision's IMAGENET1K_V1 Inception-v3 weights "
    "(https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth), copied into the bundle directory"
)

_WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".onnx", ".json", ".txt", ".model")


def require(root: Path, weight: WeightFile) -> Path:
    """Return `root / weight.relpath` after checking it (and its required inner files) exists.

    Raises:
        MissingWeightsError: naming the missing path, the component and the source.
    """
    path = root / weight.relpath
    if not path.exists():
        raise MissingWeightsError(
            f"{weight.component}: missing {path} (expected at <weights_dir>/{weight.relpath}); get it from {weight.source}"
        )
    for name in weight.required_files:
        if not (path / name).is_file():
            raise MissingWeightsError(
                f"{weight.component}: missing {path / name} inside {path}; get it from {weight.source}"
            )
    return path


def find_inception(root: Path) -> Path:
    """Locate the Inception-v3 weights in the bundle (see `INCEPTION_CANDIDATES`).

    Raises:
        MissingWeightsError: listing every place looked at.
    """
    for rel in INCEPTION_CANDIDATES:
        if (root / rel).is_file():
            return root / rel
    looked = ", ".join(str(root / rel) for rel in INCEPTION_CANDIDATES)
    raise MissingWeightsError(
        f"Inception-v3 classifier: missing {INCEPTION_NAME} (looked at {looked}); get {INCEPTION_SOURCE}"
    )


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file, streamed (weight files are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_weights(root: Path, paths: Iterable[Path]) -> dict[str, str]:
    """sha256 of every weight/config file under `paths` (files or directories), keyed by bundle-relative path.

    Why: provenance must pin the exact weights a number came from; a directory contributes its weight and
    config files (not caches or READMEs).
    """
    out: dict[str, str] = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.suffix in _WEIGHT_SUFFIXES:
                key = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.as_posix()
                out[key] = sha256_file(f)
    return out


def load_pretrained_checked(model_cls: Any, path: Path) -> Any:
    """`model_cls.from_pretrained(path)` offline, failing if any weight of the model is missing or mis-shaped.

    Why: transformers silently random-initialises missing weights, which would produce plausible-looking but
    meaningless scores. Unexpected keys are fine (e.g. the SigLIP/CLIP text tower when only vision is used).
    Transformers' load report is silenced because those unexpected keys are expected.
    """
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(previous)
    bad = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        raise ValueError(
            f"{path}: checkpoint does not fit {model_cls.__name__}: missing or mis-shaped {sorted(bad)[:5]}"
        )
    return model
