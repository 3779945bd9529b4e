"""Interface of the Prompt Alignment judge (ViStoryBench §6): one 0–4 Likert score per (aspect, text, image).

The four aspects and what is sent for each (§6.1):

| aspect                    | text sent                                   | image sent                    |
|---------------------------|---------------------------------------------|-------------------------------|
| `scene`                   | the shot's Setting Description              | the generated shot            |
| `camera`                  | the shot's Shot Perspective Design          | the generated shot            |
| `character_action`        | the shot's Static Shot Description          | the generated shot            |
| `single_character_action` | Static Shot Description + character name    | the character's matched crop  |

Alignment = 25 × mean of the four aspect means (0–100) is computed by `bench.functional`, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from PIL import Image

Aspect = Literal["scene", "camera", "character_action", "single_character_action"]
ASPECTS: tuple[Aspect, ...] = ("scene", "camera", "character_action", "single_character_action")
MIN_SCORE, MAX_SCORE = 0, 4


@dataclass(frozen=True)
class JudgeRequest:
    """One question for the judge.

    Attributes:
        aspect: which rubric to apply.
        text: the story text for that aspect (see the module table).
        image: the generated shot, or the character crop for `single_character_action`.
        character_name: the evaluated character's English name; required for `single_character_action` only.
    """

    aspect: Aspect
    text: str
    image: Image.Image
    character_name: str | None = None

    def __post_init__(self) -> None:
        if self.aspect not in ASPECTS:
            raise ValueError(f"aspect must be one of {ASPECTS}, got {self.aspect!r}")
        if (self.aspect == "single_character_action") != (self.character_name is not None):
            raise ValueError("character_name is required for single_character_action and only for it")


@dataclass(frozen=True)
class JudgeScore:
    """The judge's answer.

    Attributes:
        score: integer 0–4 (0 when `failed`).
        attempts: requests made for this answer (0 when served from the cache).
        cached: served from the on-disk cache.
        failed: no parsable score within the attempt cap; `score` is then 0 (the Era C rule, §6.2).
        raw: the judge's last reply text (for audit files).
    """

    score: int
    attempts: int = 1
    cached: bool = False
    failed: bool = False
    raw: str = ""


@runtime_checkable
class Judge(Protocol):
    """A Prompt Alignment judge. `name` (e.g. the model id) and `comparable` go into the provenance."""

    name: str
    comparable: bool

    def score(self, request: JudgeRequest) -> JudgeScore:
        """Score one request."""
        ...

    def score_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeScore]:
        """Score many requests (implementations may run them concurrently); results in request order."""
        ...

    def provenance(self) -> dict[str, object]:
        """What the evaluator records about the judge (model, settings, counters; never a secret)."""
        ...
