"""Builders shared by the ablations and reports tests: a tiny SynthStory set and sweeps over external methods.

External-method arms evaluate a folder of images that already exists (here: SynthStory's exact keyframes, and a
faded copy of them as a second "method"), so the real data and evaluate stages run without training.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image, ImageOps

SYNTH = {
    "seed": 0,
    "train_stories": 1,
    "text_stories": 1,
    "pairs": 1,
    "eval_stories": 3,
    "image_size": 48,
    "max_characters": 2,
    "eval_shots": [3, 4],
}
GT_RUN = ("ground_truth", "base", "en", "20000101_000000")


def write_yaml(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def ext_sweep_doc(name: str = "ext", n_stories: int = 3, metrics: list[str] | None = None) -> dict:
    """A sweep whose data stage makes SynthStory and whose one arm evaluates its exact keyframes."""
    ev: dict = {"backbones": "toy", "judge": "toy", "batch_size": 4, "chunk_images": 4}
    if metrics:
        ev["metrics"] = metrics
    return {
        "name": name,
        "stages": ["data", "evaluate"],
        "base": {"data": {"synthstory": {**SYNTH, "eval_stories": n_stories}}, "evaluate": ev},
        "arms": {
            "gt": {
                "published_as": "StoryDiffusion",
                "external": {"outputs": "{data}/eval/outputs", "method": "ground_truth"},
            }
        },
    }


def make_synth(out: Path, n_stories: int = 3) -> Path:
    """Generate the SynthStory set; returns its folder."""
    from unimage.data.synthspec import SynthStoryConfig
    from unimage.data.synthstory import generate

    raw = {**SYNTH, "eval_stories": n_stories}
    raw["eval_shots"] = tuple(raw["eval_shots"])
    generate(out, SynthStoryConfig(**raw))
    return out


def faded_method(synth: Path, outputs: Path, method: str = "faded") -> Path:
    """A second method: the exact keyframes mirrored and faded halfway to grey (same layout, other colours)."""
    src = synth / "eval" / "outputs" / Path(*GT_RUN)
    dst = outputs / method / "base" / "en" / GT_RUN[3]
    for png in sorted(src.glob("*/shots/shot_*.png")):
        target = dst / png.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        img = ImageOps.mirror(Image.open(png).convert("RGB"))
        Image.blend(img, Image.new("RGB", img.size, (128, 128, 128)), 0.5).save(target)
    return outputs


def two_method_sweep_doc(synth: Path, outputs: Path, name: str = "pair") -> dict:
    """Evaluate-only sweep with two external arms on an existing SynthStory set."""
    return {
        "name": name,
        "stages": ["evaluate"],
        "base": {
            "evaluate": {
                "dataset": str(synth / "eval" / "ViStory"),
                "backbones": "toy",
                "judge": "toy",
                "batch_size": 8,
            }
        },
        "arms": {
            "gt": {
                "published_as": "StoryDiffusion",
                "external": {"outputs": str(synth / "eval" / "outputs"), "method": "ground_truth"},
            },
            "faded": {"external": {"outputs": str(outputs), "method": "faded"}},
        },
    }
