"""Offline, deterministic Prompt Alignment judge — NOT comparable with published (GPT-4.1) numbers.

Why: the evaluator must run end to end without network or API key. The toy judge has a real, if crude,
signal on procedurally drawn stories whose texts name colours: the score is the share of colour words in
the text whose colour covers at least 2 % of the image, mapped to 0–4. Texts without a colour word score
2 ("Fair"), the rubric's midpoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from bench.judge.base import JudgeRequest, JudgeScore

TOY_JUDGE_NAME = "toy (colour-word agreement; NOT comparable with published ViStoryBench numbers)"

#: Colour words and their sRGB value (CSS colour keywords).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (165, 42, 42),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
}
_WORD = re.compile(r"[a-z]+")


class ToyJudge:
    """Colour-word agreement judge (see module docstring)."""

    name = TOY_JUDGE_NAME
    comparable = False

    def __init__(self, min_share: float = 0.02, max_distance: float = 120.0) -> None:
        """Args: min_share (pixel share a colour must cover), max_distance (RGB distance counted as that colour)."""
        self.min_share = min_share
        self.max_distance = max_distance

    def score(self, request: JudgeRequest) -> JudgeScore:
        """Score one request (see module docstring)."""
        words = {w for w in _WORD.findall(request.text.lower()) if w in COLOURS}
        if not words:
            return JudgeScore(score=2, raw="Analysis: no colour word in the text.\nScore: 2")
        pixels = np.asarray(request.image.convert("RGB").resize((64, 64)), dtype=np.float64).reshape(-1, 3)
        present = [
            w
            for w in sorted(words)
            if (np.linalg.norm(pixels - np.asarray(COLOURS[w], dtype=np.float64), axis=1) < self.max_distance).mean()
            >= self.min_share
        ]
        score = round(4 * len(present) / len(words))
        return JudgeScore(score=score, raw=f"Analysis: colours found {present} of {sorted(words)}.\nScore: {score}")

    def score_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeScore]:
        """Score requests in order."""
        return [self.score(r) for r in requests]

    def provenance(self) -> dict[str, object]:
        """Name and comparability (always False)."""
        return {"judge": self.name, "comparable_with_published": False}
