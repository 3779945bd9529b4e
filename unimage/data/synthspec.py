"""SynthStory specifications: what a story contains, sampled from a seed.

A story is a cast of drawable figures (`CharacterSpec`), a few backgrounds (`EnvironmentSpec`) and a list of
shots (`ShotSpec`), each placing a known subset of the cast at known boxes in a known environment at a known
shot size. Everything a renderer or a metric test needs is in these dataclasses, so the ground truth is exact
by construction: the renderer (`unimage.data.synthdraw`) only draws what the spec says.

From one spec `unimage.data.synthtext` derives, without any model, the UniMAGE script, the ViStoryBench
``story.json`` and the ground-truth dict.

Boxes are ``(x0, y0, x1, y1)`` in pixels with exclusive ends: the figure covers columns x0..x1-1 and rows
y0..y1-1, and touches all four edges (the box is tight).

Sampling uses one `random.Random` per story, seeded with the string ``"synthstory/{seed}/{split}/{index}"``
(string seeds are hashed with SHA-512 by CPython, so they are stable across processes and platforms); a
story therefore does not depend on how many other stories are generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from unimage.data.synthvocab import (
    ACCESSORIES,
    ACCESSORY_COLORS,
    BODY_COLORS,
    BODY_SHAPES,
    CAMERAS,
    GROUNDS,
    HEAD_COLORS,
    HEAD_SHAPES,
    LANDMARKS,
    LINES,
    NAMES,
    PAIR_ACTIONS,
    PATTERNS,
    POSITIONS,
    PROMPT_STYLES,
    SKIES,
    SOLO_ACTIONS,
    TAG_BY_HEAD,
    THEMES,
    Ground,
    Landmark,
    NamedColor,
    Sky,
    Word,
)

Split = Literal["train", "text", "pair", "eval"]
ShotSize = Literal["close-up", "medium", "long"]
Box = tuple[int, int, int, int]

FIGURE_ASPECT = 0.6  # width / height of a figure's box
HORIZON = 0.62  # fraction of the image height where the sky meets the ground
MAX_PER_SHOT = 3
# ViStoryBench "Story_type" of every SynthStory story.
STORY_TYPE = Word("SynthStory", "合成故事")


@dataclass(frozen=True)
class SynthStoryConfig:
    """What `unimage.data.synthstory.generate` writes.

    Attributes:
        seed: Master seed; every file is a pure function of it and the fields below.
        train_stories: Interleaved training stories (script + one keyframe per shot).
        text_stories: Text-only training scripts (``-1``: as many as ``train_stories``).
        pairs: Single text–image training pairs (``-1``: as many as ``train_stories``).
        eval_stories: Stories of the ViStoryBench-layout evaluation set.
        image_size: Side of the square keyframes, in pixels.
        ref_size: Side of the square character reference images (``0``: ``image_size``).
        refs_per_character: Reference images per character in the eval set (00.png, 01.png, ...).
        ref_format: File format of the reference images: ``jpg`` (quality 95, no chroma subsampling; the default,
            because the official ViStoryBench CIDS code reads only ``*.jpg`` references, as the real dataset ships
            them) or ``png`` (lossless).
        max_characters: Largest cast of a story (at most the number of body colours, 10).
        max_environments: Most environments in a story.
        train_shots: Inclusive range of shots per interleaved training story.
        text_shots: Inclusive range of shots per text-only script.
        eval_shots: Inclusive range of shots per evaluation story.
        empty_shot_prob: Probability that a shot shows no character (an establishing shot).
        appearance: Where a character's look is written. ``global`` (the default): in full in its global
            ``<CharacterN>`` entry only; shot texts name and tag it but never repeat its look, so a shot can get the
            look from the global entry (text) or from earlier keyframes (In-Context ID Prompting). ``none``: the
            global entry gives only the name, so the look of a character is fixed by its first keyframe alone and
            later shots can only stay consistent by looking at earlier keyframes: the strict ID-P test (oracle
            cross-shot consistency, not identity, is then the metric that can tell). ``frame``: as ``global``, and
            every ``<FrameN>`` also says each character's body colour ("Lulu<Character1>, in brown, stands on the
            right"), as real UniMAGE frames repeat part of a look ("the young woman<Character1>, her blonde hair");
            the head and accessory stay in the global entry only (oracle ``head_acc``).
        tokenizer_vocab: ``0`` (the default): no tokenizer. Otherwise also write ``<out>/tokenizer/``, a Qwen2-style
            byte-level BPE tokenizer of this many merges+bytes trained on the training texts (scripts and pair
            captions), for a model built from a named size (``unimage fit --model.tokenizer <out>/tokenizer``). Why:
            the real model reads Qwen2.5 BPE, where a colour word is one token; the offline byte tokenizer spells it
            in 3-6 and makes a SynthStory script about 4x longer (measured at 1024: 1006 -> 255 tokens per script).
    """

    seed: int = 0
    train_stories: int = 64
    text_stories: int = -1
    pairs: int = -1
    eval_stories: int = 8
    image_size: int = 128
    ref_size: int = 0
    refs_per_character: int = 1
    ref_format: Literal["png", "jpg"] = "jpg"
    max_characters: int = 3
    max_environments: int = 2
    train_shots: tuple[int, int] = (3, 6)
    text_shots: tuple[int, int] = (4, 8)
    eval_shots: tuple[int, int] = (4, 8)
    empty_shot_prob: float = 0.1
    appearance: Literal["global", "none", "frame"] = "global"
    tokenizer_vocab: int = 0

    def __post_init__(self) -> None:
        for name in ("train_stories", "eval_stories"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("text_stories", "pairs"):
            if getattr(self, name) < -1:
                raise ValueError(f"{name} must be >= -1 (-1 = as many as train_stories), got {getattr(self, name)}")
        if not 32 <= self.image_size <= 4096:
            raise ValueError(f"image_size must be in [32, 4096], got {self.image_size}")
        if self.ref_size != 0 and not 32 <= self.ref_size <= 4096:
            raise ValueError(f"ref_size must be 0 or in [32, 4096], got {self.ref_size}")
        for name, choices in (("ref_format", ("png", "jpg")), ("appearance", ("global", "none", "frame"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be {' or '.join(map(repr, choices))}, got {getattr(self, name)!r}")
        bounds = {
            "refs_per_character": 10,
            "max_characters": len(BODY_COLORS),
            "max_environments": min(len(SKIES), len(GROUNDS), len(LANDMARKS)),
        }
        for name, hi in bounds.items():
            if not 1 <= getattr(self, name) <= hi:
                raise ValueError(f"{name} must be in [1, {hi}], got {getattr(self, name)}")
        for name in ("train_shots", "text_shots", "eval_shots"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi <= 99:
                raise ValueError(f"{name} must be an inclusive range 1 <= lo <= hi <= 99, got {(lo, hi)}")
        if not 0.0 <= self.empty_shot_prob < 1.0:
            raise ValueError(f"empty_shot_prob must be in [0, 1), got {self.empty_shot_prob}")
        if self.tokenizer_vocab != 0 and not 300 <= self.tokenizer_vocab <= 65536:
            raise ValueError(f"tokenizer_vocab must be 0 (none) or in [300, 65536], got {self.tokenizer_vocab}")

    @property
    def n_text(self) -> int:
        """Number of text-only scripts actually written."""
        return self.train_stories if self.text_stories == -1 else self.text_stories

    @property
    def n_pairs(self) -> int:
        """Number of text–image pairs actually written."""
        return self.train_stories if self.pairs == -1 else self.pairs

    @property
    def ref_side(self) -> int:
        """Side of the reference images actually written."""
        return self.ref_size or self.image_size

    def shot_range(self, split: Split) -> tuple[int, int]:
        """Inclusive range of shots per story for ``split`` (a pair is one shot)."""
        if split == "pair":
            return (1, 1)
        return {"train": self.train_shots, "text": self.text_shots, "eval": self.eval_shots}[split]


@dataclass(frozen=True)
class CharacterSpec:
    """A drawable figure: a head shape and colour on a body shape and colour, with an optional accessory."""

    index: int  # 1-based, as in <CharacterN>
    name: Word
    head_shape: str
    body_shape: str
    head_color: NamedColor
    body_color: NamedColor
    accessory: str
    accessory_color: NamedColor

    @property
    def key(self) -> str:
        """The ViStoryBench character key (the English name; also the reference-image folder name)."""
        return self.name.en

    @property
    def token(self) -> str:
        return f"<Character{self.index}>"

    @property
    def tag(self) -> str:
        return TAG_BY_HEAD[self.head_shape]

    @property
    def description(self) -> Word:
        """Appearance in both languages; the text of ``<CharacterN>`` and of ``prompt_en``/``prompt_ch``."""
        head, body = HEAD_SHAPES[self.head_shape], BODY_SHAPES[self.body_shape]
        en = (
            f"{self.name.en}, a small figure with a {head.en} {self.head_color.en} head "
            f"and a {body.en} {self.body_color.en} body"
        )
        ch = f"{self.name.ch}，一个小小的身影，长着{self.head_color.ch}的{head.ch}脑袋和{body.ch}{self.body_color.ch}身体"
        if self.accessory != "none":
            acc = ACCESSORIES[self.accessory]
            en += f", wearing a {self.accessory_color.en} {acc.en}"
            ch += f"，戴着{self.accessory_color.ch}的{acc.ch}"
        return Word(en + ".", ch + "。")

    @property
    def name_only(self) -> Word:
        """The global entry of the ``appearance="none"`` variant: the name, no look."""
        return Word(f"{self.name.en}, a small figure.", f"{self.name.ch}，一个小小的身影。")


@dataclass(frozen=True)
class EnvironmentSpec:
    """A background: sky (time of day) with a pattern over a ground (kind of place) and one landmark."""

    index: int  # 1-based, as in <EnvironmentN>
    sky: Sky
    ground: Ground
    pattern: str
    landmark: Landmark
    landmark_side: Literal["left", "right"]

    @property
    def token(self) -> str:
        return f"<Environment{self.index}>"

    @property
    def name(self) -> Word:
        return Word(f"{self.sky.en} {self.ground.en}", f"{self.sky.ch}{self.ground.ch}")

    @property
    def description(self) -> Word:
        """Full description in both languages; the text of ``<EnvironmentN>``."""
        pat, side = PATTERNS[self.pattern], POSITIONS[self.landmark_side]
        en = (
            f"A {self.name.en}: a {self.sky.color.en} sky, {pat.en}, over {self.ground.color.en}, "
            f"with a {self.landmark.en} {side.en}."
        )
        ch = f"{self.name.ch}：{self.sky.color.ch}的天空{pat.ch}，下方是{self.ground.color.ch}，{self.landmark.ch}{side.ch}。"
        return Word(en, ch)

    @property
    def setting(self) -> Word:
        """ViStoryBench-style "Setting Description": a comma-separated list of visual facts."""
        pat, side = PATTERNS[self.pattern], POSITIONS[self.landmark_side]
        en = f"{self.sky.en.capitalize()}, {self.ground.en}, {self.sky.color.en} sky {pat.en}, {self.ground.color.en}, a {self.landmark.en} {side.en}"
        ch = f"{self.sky.ch}{self.ground.ch}，{self.sky.color.ch}的天空{pat.ch}，{self.ground.color.ch}，{self.landmark.ch}{side.ch}"
        return Word(en, ch)


@dataclass(frozen=True)
class Placement:
    """One character in one shot: its exact box and the position word derived from the box centre."""

    character: int  # 1-based character index
    box: Box  # (x0, y0, x1, y1), exclusive ends, pixels of the keyframe

    def position(self, width: int) -> str:
        """``left`` / ``center`` / ``right``: the third of the frame that holds the box centre."""
        cx = (self.box[0] + self.box[2]) / 2
        return "left" if cx < width / 3 else "right" if cx > 2 * width / 3 else "center"


@dataclass(frozen=True)
class ShotSpec:
    """One shot: environment, size, placements (left to right), and the action/dialogue/sound of its video."""

    index: int  # 1-based, as in <FrameN> and story.json "index"
    environment: int  # 1-based environment index
    size: ShotSize
    placements: tuple[Placement, ...]
    action: int  # index into SOLO_ACTIONS or PAIR_ACTIONS
    line: int  # index into LINES
    camera: int  # index into CAMERAS


@dataclass(frozen=True)
class StorySpec:
    """A whole story; ``width``/``height`` are the keyframe size the boxes refer to."""

    story_id: str
    split: Split
    seed: int
    width: int
    height: int
    theme: Word
    prompt_style: str
    characters: tuple[CharacterSpec, ...]
    environments: tuple[EnvironmentSpec, ...]
    shots: tuple[ShotSpec, ...]
    appearance: Literal["global", "none", "frame"] = "global"

    def look(self, index: int) -> Word:
        """The text of global entry ``<Character{index}>`` (full look, or the name only: `SynthStoryConfig.appearance`)."""
        char = self.character(index)
        return char.name_only if self.appearance == "none" else char.description

    def character(self, index: int) -> CharacterSpec:
        return self.characters[index - 1]

    def environment(self, index: int) -> EnvironmentSpec:
        return self.environments[index - 1]


# ------------------------------------------------------------------------------------------------ sampling
def story_rng(seed: int, split: Split, index: int) -> random.Random:
    """The private random stream of one story (stable across processes; see module docstring)."""
    return random.Random(f"synthstory/{seed}/{split}/{index}")


def sample_story(config: SynthStoryConfig, split: Split, index: int, story_id: str) -> StorySpec:
    """Sample story ``index`` of ``split`` from ``config.seed``.

    Args:
        config: Generator configuration (seed, sizes, ranges).
        split: Which set the story belongs to; each split has its own random streams.
        index: 0-based position of the story in its split.
        story_id: Identifier written into the outputs (e.g. ``"train-00003"`` or ``"04"``).

    Returns:
        The complete story specification.
    """
    rng = story_rng(config.seed, split, index)
    lo, hi = config.shot_range(split)
    n_shots = rng.randint(lo, hi)
    n_chars = rng.randint(1, min(config.max_characters, MAX_PER_SHOT * n_shots))
    n_envs = rng.randint(1, min(config.max_environments, n_shots))
    characters = _sample_characters(rng, n_chars)
    environments = _sample_environments(rng, n_envs)

    cuts = sorted(rng.sample(range(1, n_shots), n_envs - 1)) if n_envs > 1 else []
    env_of_shot = [1 + sum(s >= c for c in cuts) for s in range(n_shots)]
    casts = _sample_casts(rng, n_chars, n_shots, 0.0 if split == "pair" else config.empty_shot_prob)

    side = config.image_size
    shots = []
    for s, cast in enumerate(casts):
        size = _sample_size(rng, len(cast))
        boxes = _layout(rng, len(cast), size, side)
        placements = tuple(Placement(c, b) for c, b in zip(cast, boxes))
        actions = SOLO_ACTIONS if len(cast) < 2 else PAIR_ACTIONS
        shots.append(
            ShotSpec(
                index=s + 1,
                environment=env_of_shot[s],
                size=size,
                placements=placements,
                action=rng.randrange(len(actions)),
                line=rng.randrange(len(LINES)),
                camera=rng.randrange(len(CAMERAS)),
            )
        )
    return StorySpec(
        story_id=story_id,
        split=split,
        seed=config.seed,
        width=side,
        height=side,
        theme=rng.choice(THEMES),
        prompt_style=rng.choice(PROMPT_STYLES),
        characters=characters,
        environments=environments,
        shots=tuple(shots),
        appearance=config.appearance,
    )


def _sample_characters(rng: random.Random, n: int) -> tuple[CharacterSpec, ...]:
    names = rng.sample(NAMES, n)
    bodies = rng.sample(BODY_COLORS, n)  # distinct body colours: the figures are distinguishable
    return tuple(
        CharacterSpec(
            index=i + 1,
            name=names[i],
            head_shape=rng.choice(sorted(HEAD_SHAPES)),
            body_shape=rng.choice(sorted(BODY_SHAPES)),
            head_color=rng.choice(HEAD_COLORS),
            body_color=bodies[i],
            accessory=rng.choice(sorted(ACCESSORIES)),
            accessory_color=rng.choice(ACCESSORY_COLORS),
        )
        for i in range(n)
    )


def _sample_environments(rng: random.Random, n: int) -> tuple[EnvironmentSpec, ...]:
    skies, grounds, landmarks = rng.sample(SKIES, n), rng.sample(GROUNDS, n), rng.sample(LANDMARKS, n)
    return tuple(
        EnvironmentSpec(
            index=i + 1,
            sky=skies[i],
            ground=grounds[i],
            pattern=rng.choice(sorted(PATTERNS)),
            landmark=landmarks[i],
            landmark_side=rng.choice(("left", "right")),
        )
        for i in range(n)
    )


def _sample_casts(rng: random.Random, n_chars: int, n_shots: int, empty_prob: float) -> list[list[int]]:
    """Characters of each shot (left to right); every character appears at least once."""
    casts: list[list[int]] = []
    for _ in range(n_shots):
        if rng.random() < empty_prob:
            casts.append([])
        else:
            k = rng.randint(1, min(MAX_PER_SHOT, n_chars))
            casts.append(rng.sample(range(1, n_chars + 1), k))
    for c in range(1, n_chars + 1):
        if any(c in cast for cast in casts):
            continue
        open_shots = [s for s, cast in enumerate(casts) if 0 < len(cast) < MAX_PER_SHOT] or [
            s for s, cast in enumerate(casts) if len(cast) < MAX_PER_SHOT
        ]
        if open_shots:
            casts[rng.choice(open_shots)].insert(0, c)
            continue
        # Every shot is full: replace someone who also appears elsewhere.
        counts = {m: sum(m in cast for cast in casts) for m in range(1, n_chars + 1)}
        s, pos = next((s, p) for s, cast in enumerate(casts) for p, m in enumerate(cast) if counts[m] > 1)
        casts[s][pos] = c
    return casts


def _sample_size(rng: random.Random, k: int) -> ShotSize:
    if k == 0:
        return "long"
    if k == 1:
        return rng.choice(("close-up", "medium", "long"))
    if k == 2:
        return rng.choice(("close-up", "medium", "medium", "long"))
    return rng.choice(("medium", "long"))


_HEIGHT = {"close-up": (0.82, 0.92), "medium": (0.50, 0.60), "long": (0.26, 0.34)}
_BOTTOM = {"close-up": (1.0, 1.0), "medium": (0.90, 0.96), "long": (0.76, 0.84)}


def _layout(rng: random.Random, k: int, size: ShotSize, side: int) -> list[Box]:
    """Non-overlapping boxes for ``k`` figures, left to right, each inside its own slot of the frame."""
    if k == 0:
        return []
    if k == 1:
        slot = 1 if size == "close-up" else rng.randrange(3)
        slots = [(slot * side / 3, (slot + 1) * side / 3)]
    else:
        slots = [(i * side / k, (i + 1) * side / k) for i in range(k)]
    boxes = []
    for lo_x, hi_x in slots:
        h = rng.uniform(*_HEIGHT[size]) * side
        w = FIGURE_ASPECT * h
        if k > 1 and w > 0.92 * (hi_x - lo_x):
            w = 0.92 * (hi_x - lo_x)
            h = w / FIGURE_ASPECT
        wi, hi_ = max(6, round(w)), max(10, round(h))
        cx = (lo_x + hi_x) / 2 + rng.uniform(-0.04, 0.04) * side
        x0 = round(cx - wi / 2)
        if k > 1:  # stay inside the slot: boxes never overlap
            x0 = min(max(x0, int(lo_x) + 1), int(hi_x) - wi)
        x0 = min(max(x0, 0), side - wi)
        y1 = min(side, round(rng.uniform(*_BOTTOM[size]) * side))
        y0 = max(0, y1 - hi_)
        boxes.append((x0, y0, x0 + wi, y1))
    return boxes
