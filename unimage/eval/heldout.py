"""SynthStory's held-out (evaluation) stories as the diagnostics read them: script, exact keyframes, ground truth.

The files are the ones ``unimage.data.synthstory.generate`` writes under ``<data>/eval/``: the script
``scripts/<NN>.txt``, the exact keyframes in the ground-truth output run (``outputs/ground_truth/.../<NN>/shots/``)
and the boxes ``ground_truth/<NN>.json``. Reading them here, rather than re-drawing the stories from their specs,
keeps the diagnostics on exactly the files a sweep's other stages see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from formats.vistory import SHOTS_FOLDER, shot_name
from unimage.data.synthstory import GT_OUTPUT_RUN
from unimage.script import Script, parse

__all__ = ["HeldOutStory", "load_heldout"]


@dataclass(frozen=True)
class HeldOutStory:
    """One evaluation story.

    Attributes:
        story_id: The folder name (``"01"`` ...).
        text: The script as written on disk.
        script: Its parsed structure (parsed with zero problems).
        keyframes: One RGB image per shot, in shot order (empty when images were not asked for).
        truth: The ground-truth dict (``unimage.data.synthtext.ground_truth``).
    """

    story_id: str
    text: str
    script: Script
    keyframes: tuple[Image.Image, ...]
    truth: dict[str, Any]


def load_heldout(
    data_dir: str | Path, *, max_stories: int | None = None, with_images: bool = True
) -> list[HeldOutStory]:
    """Read the held-out stories of a SynthStory folder, in story-id order.

    Args:
        data_dir: The SynthStory folder (the one holding ``synthstory.json``, ``train/`` and ``eval/``).
        max_stories: Read only the first this many stories (None: all).
        with_images: Also decode the keyframes (the text diagnostics do not need them).

    Raises:
        FileNotFoundError: The folder has no evaluation scripts, or a story lacks its ground truth or a keyframe.
        ValueError: A script does not parse cleanly, or its shots disagree with the ground truth.
    """
    root = Path(data_dir) / "eval"
    scripts = sorted((root / "scripts").glob("*.txt"))
    if not scripts:
        raise FileNotFoundError(f"{root / 'scripts'}: no held-out scripts (*.txt); is {data_dir} a SynthStory folder?")
    if max_stories is not None:
        if max_stories < 1:
            raise ValueError(f"max_stories must be >= 1 or None, got {max_stories}")
        scripts = scripts[:max_stories]
    shots_root = root.joinpath("outputs", *GT_OUTPUT_RUN)
    out = []
    for path in scripts:
        sid = path.stem
        text = path.read_text(encoding="utf-8")
        result = parse(text, source=str(path))
        if result.problems:
            raise ValueError(f"{path}: the held-out script does not parse cleanly: {result.problems[0]}")
        truth_path = root / "ground_truth" / f"{sid}.json"
        if not truth_path.is_file():
            raise FileNotFoundError(f"{truth_path}: ground truth of held-out story {sid} is missing")
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        if len(truth["shots"]) != len(result.script.shots):
            raise ValueError(
                f"{path}: {len(result.script.shots)} shots, but {truth_path} describes {len(truth['shots'])}"
            )
        frames: list[Image.Image] = []
        if with_images:
            for shot in truth["shots"]:
                img_path = shots_root / sid / SHOTS_FOLDER / shot_name(int(shot["index"]))
                if not img_path.is_file():
                    raise FileNotFoundError(f"{img_path}: keyframe of held-out story {sid} is missing")
                with Image.open(img_path) as img:
                    frames.append(img.convert("RGB"))
        out.append(HeldOutStory(sid, text, result.script, tuple(frames), truth))
    return out
