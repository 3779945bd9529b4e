"""Positive controls: controlled corruptions of SynthStory's exact keyframes, each with the metrics meant to see it.

A metric that does not move on the corruption it exists to detect is blind to it, whatever it says about real
models. Each corruption here is a pure function of the story (seeded where random), re-drawn from a modified
`StorySpec` by the same renderer as the ground truth, so it changes exactly one thing:

- ``identity_swap``: in every second shot each figure is drawn as the next member of the cast (a one-character
  story swaps in a figure from outside the cast): the mix-up ID prompting exists to prevent;
- ``appearance_drift``: from its second appearance on, each character's head shape, head colour and accessory
  change (the body colour stays): a look that drifts across shots;
- ``drop_character``: the last figure of every shot with a figure is not drawn;
- ``style_change``: every second keyframe's colour channels are rotated (RGB → GBR): the style of the story breaks;
- ``noise``: every keyframe is uniform noise (the degenerate output).

`EXPECTED` lists, per corruption, the metrics that should move and in which direction (``down``: the value should
drop; ``any``: it should change), and whether the corruption is the metric's *target* (not detecting a target means
the metric is blind to it). Oracle metrics are ``oracle.*``; the ViStoryBench metrics (toy or official backbones)
use the results-table column names (DESIGN.md §3.5), prefixed by their family by the caller.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from PIL import Image

from unimage.data.synthdraw import render_shot
from unimage.data.synthspec import CharacterSpec, Placement, ShotSpec, StorySpec
from unimage.data.synthvocab import ACCESSORIES, BODY_COLORS, HEAD_COLORS, HEAD_SHAPES

__all__ = ["CORRUPTIONS", "EXPECTED", "corrupt_story"]

T = TypeVar("T")

#: (corruption, metric, expected direction, target). Metric names without a family are ViStoryBench columns.
EXPECTED: tuple[tuple[str, str, str, bool], ...] = (
    ("identity_swap", "oracle.identity_acc", "down", True),
    ("identity_swap", "oracle.consistency", "down", True),
    ("identity_swap", "cids_self", "down", True),
    ("identity_swap", "cids_cross", "down", True),
    ("identity_swap", "csd_self", "any", False),
    ("appearance_drift", "oracle.head_acc", "down", True),
    ("appearance_drift", "oracle.identity_acc", "any", False),
    ("appearance_drift", "cids_self", "down", True),
    ("appearance_drift", "cids_cross", "down", True),
    ("drop_character", "oracle.count_acc", "down", True),
    ("drop_character", "oracle.identity_acc", "down", False),
    ("drop_character", "occm", "down", True),
    ("drop_character", "cids_cross", "any", False),
    ("style_change", "oracle.sky_acc", "down", True),
    ("style_change", "oracle.ground_acc", "down", True),
    ("style_change", "csd_self", "down", True),
    ("style_change", "csd_cross", "down", True),
    ("noise", "oracle.identity_acc", "down", False),
    ("noise", "oracle.sky_acc", "down", False),
    ("noise", "oracle.count_acc", "down", False),
    ("noise", "csd_self", "down", True),
    ("noise", "cids_self", "down", True),
    ("noise", "aesthetics", "down", True),
    ("noise", "alignment", "down", True),
)


def _alternate(story: StorySpec) -> list[int]:
    """Shot positions (0-based) of every second shot: 2nd, 4th, ..."""
    return [i for i in range(len(story.shots)) if i % 2 == 1]


def _outsider(story: StorySpec) -> CharacterSpec:
    """A figure from outside the cast: the first body colour no cast member wears."""
    used = {c.body_color for c in story.characters}
    colour = next(c for c in BODY_COLORS if c not in used)
    return dataclasses.replace(story.characters[0], index=len(story.characters) + 1, body_color=colour)


def _swap(story: StorySpec) -> StorySpec:
    cast = list(story.characters)
    if len(cast) == 1:
        cast.append(_outsider(story))
    n = len(story.characters) if len(story.characters) > 1 else 2
    shots = list(story.shots)
    for i in _alternate(story):
        shot = shots[i]
        moved = tuple(Placement(p.character % n + 1, p.box) for p in shot.placements)
        shots[i] = dataclasses.replace(shot, placements=moved)
    return dataclasses.replace(story, characters=tuple(cast), shots=tuple(shots))


def _next(options: Sequence[T], value: T) -> T:
    """The option after ``value`` (cyclic): a different, deterministic choice."""
    return options[(list(options).index(value) + 1) % len(options)]


def _drift(story: StorySpec) -> StorySpec:
    """Characters re-drawn with another look from their second appearance on (extra cast entries, same body)."""
    cast = list(story.characters)
    drifted: dict[int, int] = {}
    for c in story.characters:
        alt = dataclasses.replace(
            c,
            index=len(cast) + 1,
            head_shape=_next(sorted(HEAD_SHAPES), c.head_shape),
            head_color=_next(HEAD_COLORS, c.head_color),
            accessory=_next(sorted(ACCESSORIES), c.accessory),
        )
        cast.append(alt)
        drifted[c.index] = alt.index
    seen: set[int] = set()
    shots: list[ShotSpec] = []
    for shot in story.shots:
        placements = []
        for p in shot.placements:
            placements.append(Placement(drifted[p.character], p.box) if p.character in seen else p)
            seen.add(p.character)
        shots.append(dataclasses.replace(shot, placements=tuple(placements)))
    return dataclasses.replace(story, characters=tuple(cast), shots=tuple(shots))


def _drop(story: StorySpec) -> StorySpec:
    shots = tuple(dataclasses.replace(s, placements=s.placements[:-1]) for s in story.shots)
    return dataclasses.replace(story, shots=shots)


def _render_all(story: StorySpec) -> dict[int, Image.Image]:
    return {s.index: render_shot(story, s) for s in story.shots}


def _style(story: StorySpec) -> dict[int, Image.Image]:
    images = _render_all(story)
    for i in _alternate(story):
        idx = story.shots[i].index
        r, g, b = images[idx].split()
        images[idx] = Image.merge("RGB", (g, b, r))
    return images


def _noise(story: StorySpec) -> dict[int, Image.Image]:
    rng = np.random.default_rng(random.Random(f"synthcontrols/noise/{story.seed}/{story.story_id}").getrandbits(63))
    return {
        s.index: Image.fromarray(rng.integers(0, 256, (story.height, story.width, 3), dtype=np.uint8), "RGB")
        for s in story.shots
    }


#: Corruption name → keyframes of the corrupted story (shot index → image).
CORRUPTIONS: dict[str, Callable[[StorySpec], dict[int, Image.Image]]] = {
    "identity_swap": lambda s: _render_all(_swap(s)),
    "appearance_drift": lambda s: _render_all(_drift(s)),
    "drop_character": lambda s: _render_all(_drop(s)),
    "style_change": _style,
    "noise": _noise,
}


def corrupt_story(story: StorySpec, corruption: str) -> dict[int, Image.Image]:
    """The keyframes of ``story`` under ``corruption`` (one of `CORRUPTIONS`), by 1-based shot index."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; choose from {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[corruption](story)
