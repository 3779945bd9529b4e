"""Per-story character work shared by CIDS, OCCM and single-character action: reference features and matching.

`reference/vistorybench.md` §4.2–§4.3. Two matching profiles exist:

- ``"cids"``: each character's own encoder (face for ``realistic_human``, CLIP otherwise). Eras A/B keep the
  top-min(N, E) boxes by detector score and match greedily; Era C uses every box and the Hungarian matcher.
- ``"clip_all"``: Era A's prompt-alignment copy of the matcher (``gpt_eval.py``), used there for OCCM and single
  character action: CLIP for everyone, every box, greedy.

Detection and encoding are batched over all the images / crops of several stories at once (the caller passes a
chunk of stories); reference features are computed once per (story, encoder) and cached in memory.

Official quirks are reproduced by default and corrected by ``fixes`` (:mod:`bench.quirks`): Era A's
``gpt_eval.py`` matcher and crops (``gpt-eval-matching``, ``gpt-eval-crops``), top-k before dropping empty boxes
(``drop-empty-boxes-first``), CIDS references read as ``**/*.jpg`` only (``cids-all-ref-formats``), and the
Eras A/B feature-row shift when some crops have no face (``align-face-rows``).

Deviation from the official code, on purpose: each character's similarity row uses its own encoder in the
aligned case (the official greedy loop uses the encoder of the character being matched for every row, identical
whenever a story's characters share a tag, which ViStoryBench's do).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from PIL import Image

from bench.backbones.base import (
    Backbones,
    Detections,
    IdentityEncoder,
    IdentityFeatures,
    detector_caption,
    identity_similarity,
)
from bench.dataset import Shot, Story
from bench.functional._common import Era
from bench.functional.matching import greedy_match, greedy_match_gpt_eval, hungarian_match
from bench.outputs import StoryOutputs

Profile = Literal["cids", "clip_all"]


class CharacterReferenceError(RuntimeError):
    """A character's references gave no feature at all, even as full images (the official code asserts)."""


def load_rgb(path: Path) -> Image.Image:
    """Open an image file as RGB (fully decoded, so the file handle is closed)."""
    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass
class ShotMatch:
    """Matching result of one shot with an image.

    Attributes:
        shot: 1-based shot index.
        n_boxes: every box the detector kept in the image (Era C OCCM counts these).
        matched: character key -> index into ``crops`` / ``features`` (listed characters only; absent = missing).
        crops: the candidate crops that were matched against.
        features: character key -> that character's encoder features of the candidate crops.
        scores: character key -> the matched box's similarity to the character's references.
    """

    shot: int
    n_boxes: int
    matched: dict[str, int] = field(default_factory=dict)
    crops: list[Image.Image] = field(default_factory=list)
    features: dict[str, IdentityFeatures] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class StoryMatches:
    """Matches of every shot of one story plus the references they were matched against."""

    story_id: str
    shots: dict[int, ShotMatch]
    refs: dict[str, IdentityFeatures]
    encoders: dict[str, str]


class CharacterMatcher:
    """Computes reference features and per-shot matches for chunks of stories with one backbone bundle."""

    def __init__(self, backbones: Backbones, era: Era, batch_size: int = 16, fixes: Iterable[str] = ()) -> None:
        """Args: backbones, era (caption, box selection, matcher), batch_size, fixes (``bench.quirks`` switches)."""
        self.backbones = backbones
        self.era = era
        self.batch_size = batch_size
        self.fixes = frozenset(fixes)
        self.caption = detector_caption(era)
        self._refs: dict[tuple[str, str, str], IdentityFeatures] = {}
        self._ref_images: dict[tuple[str, str, str], list[Image.Image]] = {}

    def detect(self, images: Sequence[Image.Image]) -> list[Detections]:
        """Detector over ``images`` in batches of ``batch_size``."""
        out: list[Detections] = []
        for i in range(0, len(images), self.batch_size):
            out.extend(self.backbones.detector.detect(images[i : i + self.batch_size], self.caption))
        return out

    def encode(self, encoder: IdentityEncoder, images: Sequence[Image.Image]) -> IdentityFeatures:
        """``encoder`` over ``images`` (non-empty) in batches of ``batch_size``."""
        parts = [encoder.encode(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return IdentityFeatures.concat(parts)

    def reference_images(self, story: Story, key: str, profile: Profile) -> list[Image.Image]:
        """The images (crops or full refs) behind :meth:`references`, row for row; the first is the primary ref."""
        self.references(story, key, profile)
        return self._ref_images[(f"{story.story_id}/{key}", self.encoder_for(story, key, profile).name, profile)]

    def encoder_for(self, story: Story, key: str, profile: Profile) -> IdentityEncoder:
        """The identity encoder used for character ``key`` under ``profile``."""
        if profile == "clip_all":
            return self.backbones.clip
        return self.backbones.identity_encoder(story.characters[key].tag)

    def references(self, story: Story, key: str, profile: Profile) -> IdentityFeatures:
        """Valid reference features of one character (§4.2), cached per (story, encoder, character)."""
        encoder = self.encoder_for(story, key, profile)
        # The profile is part of the key: CIDS and Era A's prompt-alignment path read different reference files
        # and crop them differently, even with the same encoder.
        cache_key = (f"{story.story_id}/{key}", encoder.name, profile)
        if cache_key in self._refs:
            return self._refs[cache_key]
        char = story.characters[key]
        # Official CIDS globs '**/*.jpg' only; the prompt-alignment path reads the dataset loader's list.
        paths = char.ref_images if profile == "clip_all" or "cids-all-ref-formats" in self.fixes else char.jpg_refs
        images = [load_rgb(p) for p in paths]
        dets = self.detect(images) if images else []
        if self._gpt_eval(profile) and "gpt-eval-crops" not in self.fixes:
            # gpt_eval.py: the first box of the detector's own order, unclipped; no fallback to the full image.
            used = [c[0] for im, d in zip(images, dets) if (c := d.raw_crops(im))]
            feats = self.encode(encoder, used) if used else None
            if feats is None or not bool(feats.any_valid.any()):
                raise CharacterReferenceError(
                    f"story {story.story_id}: character {key!r}: no box in any reference image (Era A prompt "
                    "alignment has no full-image fallback; --fix gpt-eval-crops adds it)"
                )
            self._refs[cache_key], self._ref_images[cache_key] = feats, used
            return feats
        if "drop-empty-boxes-first" in self.fixes:
            picks = [d.top(1) for d in dets]
        else:
            picks = [d.top_then_drop(1, *im.size) for im, d in zip(images, dets)]
        used = [p.crops(im)[0] for im, p in zip(images, picks) if len(p) > 0]
        feats = self.one_call(encoder, self.encode(encoder, used)) if used else None
        if feats is None or not bool(feats.any_valid.any()):
            used = images  # official fallback: the full reference images
            feats = self.one_call(encoder, self.encode(encoder, used)) if used else None
        if feats is None or not bool(feats.any_valid.any()):
            raise CharacterReferenceError(
                f"story {story.story_id}: character {key!r}: no {encoder.name} feature from any reference image"
            )
        valid = feats.any_valid
        self._refs[cache_key] = feats.select(valid)
        self._ref_images[cache_key] = [im for im, v in zip(used, valid.tolist()) if v]
        return self._refs[cache_key]

    def one_call(self, encoder: IdentityEncoder, feats: IdentityFeatures) -> IdentityFeatures:
        """``feats`` as one official ``get_char_feat`` call over these crops, in order, would give them.

        Era A's ArcFace wrapper lowers its detection threshold while a crop has no face and never resets it within
        the call: once a crop has no face at any threshold (below 0.1 the loop stops), every later crop of the
        same call gets no face either (quirk ``arcface-threshold-reset``). Other eras and encoders: unchanged.
        """
        if self.era != "A" or "arcface-threshold-reset" in self.fixes or encoder is not self.backbones.loaded("face"):
            return feats
        alive = torch.cumprod(feats.any_valid.long(), dim=0).bool()  # [N] no faceless crop so far
        return IdentityFeatures(
            {k: v * alive[:, None].to(v.dtype) for k, v in feats.features.items()},
            {k: v & alive for k, v in feats.valid.items()},
        )

    def _gpt_eval(self, profile: Profile) -> bool:
        """Era A's prompt-alignment copy of the matcher (`gpt_eval.py`), with its own crops and greedy loop."""
        return profile == "clip_all" and self.era == "A"

    def match(self, stories: Sequence[Story], outputs: Sequence[StoryOutputs], profile: Profile) -> list[StoryMatches]:
        """Detect, encode and match every paired shot of several stories, batching across stories."""
        jobs: list[tuple[int, int, Image.Image]] = []  # (story position, shot index, image)
        for si, out in enumerate(outputs):
            for shot, path in out.paired.items():
                jobs.append((si, shot, load_rgb(path)))
        detections = self.detect([im for _, _, im in jobs])

        # Candidate boxes per shot, then all crops grouped by encoder, encoded in one call per encoder.
        listed: dict[tuple[int, int], list[str]] = {}
        candidates: dict[tuple[int, int], tuple[Detections, list[Image.Image]]] = {}
        for (si, shot, im), det in zip(jobs, detections):
            story = stories[si]
            keys = [
                k for k in _shot(story, shot).character_keys if k in story.characters and story.characters[k].ref_images
            ]
            listed[(si, shot)] = keys
            n_listed = len(_shot(story, shot).character_keys)
            candidates[(si, shot)] = (det, self._candidate_crops(det, im, n_listed, profile))
        encoded = self._encode_candidates(stories, listed, candidates, profile)

        results = [StoryMatches(s.story_id, {}, {}, {}) for s in stories]
        for (si, shot), keys in listed.items():
            det, crops = candidates[(si, shot)]
            sm = ShotMatch(shot=shot, n_boxes=len(det), crops=crops)
            results[si].shots[shot] = sm
            if keys and crops:
                self._match_shot(stories[si], si, sm, keys, encoded, results[si], profile)
        return results

    def _candidate_crops(self, det: Detections, im: Image.Image, n_listed: int, profile: Profile) -> list[Image.Image]:
        """The crops of one shot that are matched against its ``n_listed`` characters (the era's box rule)."""
        if self._gpt_eval(profile) and "gpt-eval-crops" not in self.fixes:
            return det.raw_crops(im)
        if profile == "clip_all" or self.era == "C":
            return det.crops(im)
        if "drop-empty-boxes-first" in self.fixes:
            return det.top(min(len(det), n_listed)).crops(im)
        # official A/B CIDS: top-k of every box by score, then the empty ones dropped
        return det.top_then_drop(min(det.n_raw, n_listed), *im.size).crops(im)

    def _encode_candidates(
        self,
        stories: Sequence[Story],
        listed: dict[tuple[int, int], list[str]],
        candidates: dict[tuple[int, int], tuple[Detections, list[Image.Image]]],
        profile: Profile,
    ) -> dict[tuple[str, int, int], IdentityFeatures]:
        """Features of every shot's crops under every encoder one of its characters uses, one call per encoder.

        Keyed by (encoder name, story position, shot index).
        """
        by_encoder: dict[str, tuple[IdentityEncoder, list[tuple[int, int]]]] = {}
        for (si, shot), keys in listed.items():
            for key in keys:
                enc = self.encoder_for(stories[si], key, profile)
                by_encoder.setdefault(enc.name, (enc, []))
                if (si, shot) not in by_encoder[enc.name][1]:
                    by_encoder[enc.name][1].append((si, shot))
        encoded: dict[tuple[str, int, int], IdentityFeatures] = {}
        for name, (enc, shot_keys) in by_encoder.items():
            flat = [c for sk in shot_keys for c in candidates[sk][1]]
            if not flat:
                continue
            feats = self.encode(enc, flat)
            start = 0
            for sk in shot_keys:
                n = len(candidates[sk][1])
                encoded[(name, sk[0], sk[1])] = feats.select(list(range(start, start + n)))
                start += n
        return encoded

    def _match_shot(
        self,
        story: Story,
        si: int,
        sm: ShotMatch,
        keys: list[str],
        encoded: dict[tuple[str, int, int], IdentityFeatures],
        result: StoryMatches,
        profile: Profile,
    ) -> None:
        """Score the crops of shot ``sm`` against the references of ``keys`` and fill its matches and scores."""
        rows, valids = [], []
        for key in keys:
            enc = self.encoder_for(story, key, profile)
            refs = self.references(story, key, profile)
            result.refs[key] = refs
            result.encoders[key] = enc.name
            feats = self.one_call(enc, encoded[(enc.name, si, sm.shot)])  # one official call per (shot, char)
            sm.features[key] = feats
            rows.append(identity_similarity(feats, refs).max(dim=1).values)  # [N]
            valids.append(feats.any_valid)
        sim, valid = torch.stack(rows), torch.stack(valids)  # [E, N]
        boxes = self._assign_boxes(sim, valid, keys, sm.features, result.refs, profile)
        for key, box, row in zip(keys, boxes, sim):
            if box is not None:
                sm.matched[key] = box
                sm.scores[key] = float(row[box])

    def _assign_boxes(
        self,
        sim: torch.Tensor,
        valid: torch.Tensor,
        keys: list[str],
        features: dict[str, IdentityFeatures],
        refs: dict[str, IdentityFeatures],
        profile: Profile,
    ) -> list[int | None]:
        """The box matched to each character (None: unmatched), by the era's assignment rule."""
        if self.era == "C" and profile == "cids":
            return hungarian_match(sim, valid)
        if profile == "cids" and "align-face-rows" not in self.fixes and not bool(valid.all()):
            return _packed_rows_greedy(keys, features, refs)
        if self._gpt_eval(profile) and "gpt-eval-matching" not in self.fixes:
            return greedy_match_gpt_eval(sim, keys)
        return greedy_match(sim, valid)


def _packed_rows_greedy(
    keys: Sequence[str], features: dict[str, IdentityFeatures], refs: dict[str, IdentityFeatures]
) -> list[int | None]:
    """Eras A/B CIDS greedy as the official code runs it when some crops have no face (quirk ``align-face-rows``).

    The official ``get_char_feat`` drops crops without a feature, so for character ``c`` its similarity rows (its own
    and, for the conflict test, every other listed character's, all from ``c``'s features) are indexed by position
    among the crops *with* a face, while the chosen index is then used to take a crop from the full crop list: the
    crop taken is not the one that was scored. Similarities across different encoders are 0 (the ensemble rule).
    """
    out: list[int | None] = []
    for ci, key in enumerate(keys):
        feats = features[key]
        kept = [i for i, v in enumerate(feats.any_valid.tolist()) if v]
        if not kept:
            out.append(None)
            continue
        packed = feats.select(kept)
        sim = torch.stack([identity_similarity(packed, refs[k]).max(dim=1).values for k in keys])  # [E, len(kept)]
        out.append(greedy_match(sim)[ci])  # an index into the full crop list, as officially
    return out


def _shot(story: Story, index: int) -> Shot:
    for s in story.shots:
        if s.index == index:
            return s
    raise KeyError(f"story {story.story_id} has no shot {index}")
