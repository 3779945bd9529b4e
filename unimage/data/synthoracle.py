"""Oracle metrics on SynthStory: scores that know what each keyframe should show.

The toy metric backbones are blind to the mix-ups In-Context ID Prompting exists to prevent (a character swapped
between shots moves toy CIDS by noise). SynthStory's ground truth is exact (`unimage.data.synthtext.ground_truth`:
per shot the environment, and per character its palette and its tight box), so a keyframe can be read back with
no learned model at all: every pixel is assigned to the nearest colour of the shot's palette (the ten body
colours, the head / accessory / eye colours, and the sky, pattern, ground and landmark colours of the shot's
environment; farther than `MAX_DIST` from all of them = unknown), and regions of the frame are read by majority.

Per story (each a rate in [0, 1], higher is better; ``None`` when the story has nothing to score):

- ``identity_acc``: position-aware identity. For each character the shot places, the body region of its box
  (below the neck) must be dominated by *its* body colour (majority among the ten body colours, at least
  `MIN_SHARE` of the region): the right character in the right third of the frame.
- ``head_acc``: the head region of each placed character's box is dominated by its head colour (appearance
  beyond the body colour: what a drifted look changes).
- ``consistency``: each later appearance of a character shows the same body colour as its first appearance
  (whatever colour that was). This needs no ground-truth look, so it is the metric for the ``appearance="none"``
  variant, where only keyframes fix a character's look.
- ``count_acc``: shots whose number of distinct body colours covering at least `MIN_FIGURE_FRAC` of the frame
  equals the number of characters the shot places.
- ``sky_acc`` / ``ground_acc``: shots whose sky (above the horizon) / ground (below it), outside the figure boxes,
  is dominated by the environment's sky / ground colour.

On SynthStory's exact keyframes every metric is 1.0 (a test checks it over many stories and sizes); the
corruptions of `unimage.data.synthcontrols` each move the metric meant to see them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from formats.vistory import shot_name
from unimage.data.synthdraw import HEADWEAR_H, NECK
from unimage.data.synthspec import HORIZON
from unimage.data.synthvocab import ACCESSORY_COLORS, BODY_COLORS, EYE_COLOR, HEAD_COLORS, HEADWEAR, LANDMARKS, SKIES

__all__ = ["MAX_DIST", "METRICS", "StoryScore", "score_story", "score_story_dir"]

#: Oracle metric names (all rates, higher is better).
METRICS: tuple[str, ...] = ("identity_acc", "head_acc", "consistency", "count_acc", "sky_acc", "ground_acc")
#: A pixel farther than this (RGB Euclidean) from every palette colour is "unknown".
MAX_DIST = 80.0
#: A region's majority colour must cover at least this share of the region.
MIN_SHARE = 0.3
#: A body colour counts as a figure in the frame when it covers at least this fraction of the frame.
MIN_FIGURE_FRAC = 0.004

_BODY = [tuple(c.rgb) for c in BODY_COLORS]
_HEAD = [tuple(c.rgb) for c in HEAD_COLORS]
_OTHER = [tuple(c.rgb) for c in ACCESSORY_COLORS] + [tuple(EYE_COLOR)]
_LANDMARK = {lm.en: (tuple(lm.main_rgb), tuple(lm.detail_rgb)) for lm in LANDMARKS}
_PATTERN = {tuple(s.color.rgb): tuple(s.pattern_rgb) for s in SKIES}


@dataclass(frozen=True)
class StoryScore:
    """The oracle metrics of one story, and how many items each rate is over."""

    story: str
    values: dict[str, float | None]
    counts: dict[str, int]


def _palette(env: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The shot's palette [K, 3] and the index groups (body, head, sky, ground) inside it."""
    sky, ground = tuple(env["sky_color"]), tuple(env["ground_color"])
    colours: list[tuple[int, ...]] = [*_BODY, *_HEAD, *_OTHER, sky, ground]
    if sky in _PATTERN:
        colours.append(_PATTERN[sky])
    colours += list(_LANDMARK.get(str(env.get("landmark")), ()))
    nb, nh, no = len(_BODY), len(_HEAD), len(_OTHER)
    groups = {
        "body": list(range(nb)),
        "head": list(range(nb, nb + nh)),
        "sky": [nb + nh + no],
        "ground": [nb + nh + no + 1],
    }
    return np.asarray(colours, dtype=np.float32), groups


def _labels(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Nearest palette index per pixel [H, W]; -1 where no colour is within `MAX_DIST`."""
    px = image.reshape(-1, 1, 3).astype(np.float32)  # [HW, 1, 3]
    d2 = ((px - palette[None]) ** 2).sum(-1)  # [HW, K]
    lab = d2.argmin(1)
    lab[d2[np.arange(len(lab)), lab] > MAX_DIST**2] = -1
    return lab.reshape(image.shape[:2])


def _majority(labels: np.ndarray, group: Sequence[int]) -> int | None:
    """The colour of ``group`` that covers most of ``labels`` (a region), if it covers at least `MIN_SHARE`."""
    if labels.size == 0:
        return None
    counts = np.array([(labels == g).sum() for g in group])
    best = int(counts.argmax())
    return int(group[best]) if counts[best] >= MIN_SHARE * labels.size else None


def _box_regions(box: Sequence[int], accessory: str, w: int, h: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(head region, body region) of a figure's box, as in `unimage.data.synthdraw.draw_figure`."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    bh = y1 - y0
    neck = y0 + round(NECK * bh)
    head_top = y0 + (round(HEADWEAR_H * bh) if accessory in HEADWEAR else 0)
    # the head's own box, as drawn: centred, as wide as it is tall (at most the box width)
    hh = max(3, neck - head_top)
    hw = min(hh, x1 - x0)
    hx0 = max(0, round((x0 + x1 - 1) / 2 - (hw - 1) / 2))
    return (slice(head_top, head_top + hh), slice(hx0, hx0 + hw)), (slice(neck, y1), slice(x0, x1))


def score_story(gt: Mapping[str, Any], images: Mapping[int, np.ndarray | None]) -> StoryScore:
    """The oracle metrics of one story.

    Args:
        gt: the story's ground truth (``<data>/eval/ground_truth/<NN>.json``).
        images: shot index (1-based) → RGB keyframe [H, W, 3] uint8, resized to the ground truth's size by the
            caller; a missing shot (``None`` or absent) counts as wrong for everything it should show.
    """
    chars = gt["characters"]
    body_of = {c["id"]: _BODY.index(tuple(c["body_color"])) for c in chars.values()}
    head_of = {c["id"]: _HEAD.index(tuple(c["head_color"])) for c in chars.values()}
    accessory = {c["id"]: c["accessory"] for c in chars.values()}
    envs = {e["id"]: e for e in gt["environments"]}
    w, h = (int(v) for v in gt["image_size"])
    hits: dict[str, list[bool]] = {m: [] for m in METRICS}
    first_seen: dict[int, int | None] = {}
    for shot in gt["shots"]:
        image = images.get(int(shot["index"]))
        placements = shot["characters"]
        if image is None:
            for m in ("count_acc", "sky_acc", "ground_acc"):
                hits[m].append(False)
            for p in placements:
                hits["identity_acc"].append(False)
                hits["head_acc"].append(False)
                if p["id"] in first_seen:
                    hits["consistency"].append(False)
                else:
                    first_seen[p["id"]] = None
            continue
        if image.shape[:2] != (h, w):
            raise ValueError(f"shot {shot['index']}: image is {image.shape[1]}x{image.shape[0]}, ground truth {w}x{h}")
        palette, groups = _palette(envs[shot["environment"]])
        lab = _labels(image, palette)
        boxes = np.zeros((h, w), dtype=bool)
        for p in placements:
            head_r, body_r = _box_regions(p["box_xyxy"], accessory[p["id"]], w, h)
            boxes[body_r] = True
            boxes[head_r] = True
            seen = _majority(lab[body_r], groups["body"])
            hits["identity_acc"].append(seen == body_of[p["id"]])
            hits["head_acc"].append(_majority(lab[head_r], groups["head"]) == groups["head"][head_of[p["id"]]])
            if p["id"] in first_seen:
                hits["consistency"].append(seen is not None and seen == first_seen[p["id"]])
            else:
                first_seen[p["id"]] = seen
        present = sum(int((lab == b).sum() >= MIN_FIGURE_FRAC * w * h) for b in groups["body"])
        hits["count_acc"].append(present == len(placements))
        horizon = round(HORIZON * h)
        sky = lab[: max(1, round(0.9 * horizon))][~boxes[: max(1, round(0.9 * horizon))]]
        ground = lab[min(h - 1, horizon + max(1, h // 32)) :][~boxes[min(h - 1, horizon + max(1, h // 32)) :]]
        hits["sky_acc"].append(_majority(sky, groups["sky"] + groups["body"]) == groups["sky"][0])
        hits["ground_acc"].append(_majority(ground, groups["ground"] + groups["body"]) == groups["ground"][0])
    values = {m: (float(np.mean(v)) if v else None) for m, v in hits.items()}
    return StoryScore(str(gt["story_id"]), values, {m: len(v) for m, v in hits.items()})


def _load(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """An RGB keyframe at the ground truth's size, or None when it is missing or unreadable."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != size:
                im = im.resize(size, Image.Resampling.NEAREST)
            return np.asarray(im)
    except (OSError, ValueError):
        return None


def score_story_dir(gt_path: str | Path, shots_dir: str | Path) -> StoryScore:
    """Score ``<shots_dir>/shot_NN.png`` against the ground-truth file ``gt_path``."""
    gt = json.loads(Path(gt_path).read_text(encoding="utf-8"))
    size = (int(gt["image_size"][0]), int(gt["image_size"][1]))
    images = {int(s["index"]): _load(Path(shots_dir) / shot_name(int(s["index"])), size) for s in gt["shots"]}
    return score_story(gt, images)
