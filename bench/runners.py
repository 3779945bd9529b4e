"""Metric runners: each scores one chunk of stories (images batched across the chunk) → per-story unit records.

A runner returns, per story, a record ``{"status", "metrics", "details", "items"}`` (plus an optional array, the
Inception logits) that :mod:`bench.evaluate` writes as the story's resume unit. Metric keys follow the official
``story_results.json`` (§9): csd {self_csd, cross_csd}; cids {cids_self_mean, cids_cross_mean, copy_paste_score};
occm {occm}; prompt_align {scene, camera, character_action, single_character_action}; aesthetic
{aesthetic_score}; diversity {} (logits pooled at the end).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from bench.backbones.base import Backbones, IdentityFeatures, identity_similarity
from bench.characters import CharacterMatcher, Profile, StoryMatches, load_rgb
from bench.dataset import Story
from bench.functional import (
    aesthetics,
    cids_from_similarity,
    copy_paste,
    copy_paste_mirror,
    csd_cross,
    csd_self,
    occm,
    shot_scores_mean,
    single_action_story,
)
from bench.functional._common import Era
from bench.judge.base import Judge, JudgeRequest
from bench.outputs import StoryOutputs
from bench.perstory import story_cids_mean


@dataclass
class StoryJob:
    """One story to score: its (English) texts and its paired images."""

    story: Story
    outs: StoryOutputs

    @property
    def sid(self) -> str:
        """Story id."""
        return self.story.story_id


@dataclass
class RunContext:
    """What every runner needs: era, batch size, the networks, the judge and the character matcher."""

    era: Era
    batch_size: int
    backbones: Backbones
    judge: Judge | None
    matcher: CharacterMatcher
    fixes: frozenset[str] = frozenset()

    def batched(
        self, fn: Callable[[Sequence[Image.Image]], torch.Tensor], images: Sequence[Image.Image]
    ) -> torch.Tensor:
        """``fn`` over ``images`` in batches of ``batch_size``, rows concatenated."""
        bs = self.batch_size
        parts = [fn(images[i : i + bs]) for i in range(0, len(images), bs)]
        return torch.cat(parts) if parts else torch.zeros(0)


Record = dict[str, Any]
ChunkResult = list[tuple[str, Record, np.ndarray | None]]


def no_images_record(job: StoryJob) -> Record:
    """The unit of a story with no readable image: finished, but excluded from every mean (as officially skipped)."""
    return {
        "status": "no_images",
        "metrics": {},
        "details": {"reason": "no readable image in the story folder"},
        "items": [],
    }


def _ok(metrics: dict[str, Any], details: dict[str, Any], items: list[dict[str, Any]]) -> Record:
    return {"status": "ok", "metrics": metrics, "details": details, "items": items}


##### metric runners (one chunk of stories each)


def _run_csd(chunk: list[StoryJob], ctx: RunContext) -> ChunkResult:
    era = ctx.era
    encode = ctx.backbones.style.encode
    gen_paths = [p for j in chunk for p in j.outs.images]
    ref_plan = {j.sid: _csd_refs(j, era) for j in chunk}
    ref_paths = sorted({p for plan in ref_plan.values() for refs in plan.values() for p in refs})
    embs = ctx.batched(encode, [load_rgb(p) for p in gen_paths + ref_paths])  # [N, D]
    emb = dict(zip(gen_paths + ref_paths, embs))
    results: ChunkResult = []
    for job in chunk:
        gen = torch.stack([emb[p] for p in job.outs.images])  # [n, D]
        shots = [s for s in job.outs.paired if ref_plan[job.sid].get(s)]
        ref_rows = [torch.stack([emb[p] for p in ref_plan[job.sid][s]]).mean(dim=0) for s in shots]
        gen_rows = [emb[job.outs.paired[s]] for s in shots]
        ref_t = torch.stack(ref_rows) if shots else torch.zeros(0, gen.shape[1])
        gen_t = torch.stack(gen_rows) if shots else torch.zeros(0, gen.shape[1])
        per_shot = (ref_t.double() * gen_t.double()).sum(dim=1).tolist()
        items = [
            {"shot": s, "refs": [str(p) for p in ref_plan[job.sid][s]], "cross_csd": v} for s, v in zip(shots, per_shot)
        ]
        metrics = {"self_csd": csd_self(gen), "cross_csd": csd_cross(ref_t, gen_t)}
        results.append(
            (job.sid, _ok(metrics, {"n_images": len(job.outs.images), "n_cross_shots": len(shots)}, items), None)
        )
    return results


def _csd_refs(job: StoryJob, era: Era) -> dict[int, list[Path]]:
    """Reference images per paired shot: first ref of the first listed character (A/B) or of every listed one (C)."""
    story = job.story
    fallback = next((c.ref_images[0] for c in story.characters.values() if c.ref_images), None)
    plan: dict[int, list[Path]] = {}
    for shot in story.shots:
        if shot.index not in job.outs.paired:
            continue
        firsts = [p for k in shot.character_keys if (p := story.first_ref(k)) is not None]
        if era != "C":
            firsts = firsts[:1]
        if not shot.character_keys or not firsts:
            firsts = [fallback] if fallback is not None else []
        plan[shot.index] = firsts
    return plan


def _run_cids(chunk: list[StoryJob], ctx: RunContext) -> ChunkResult:
    matcher, era = ctx.matcher, ctx.era
    matches = matcher.match([j.story for j in chunk], [j.outs for j in chunk], "cids")
    results: ChunkResult = []
    for job, sm in zip(chunk, matches):
        story = job.story
        chars: dict[str, dict[str, Any]] = {}
        items: list[dict[str, Any]] = []
        for key, char in story.characters.items():
            if not char.ref_images:
                continue
            refs = matcher.references(story, key, "cids")
            rows = [
                (s, m.features[key].select([m.matched[key]])) for s, m in sorted(sm.shots.items()) if key in m.matched
            ]
            # Officially the matched crops are encoded again in one call, and a crop without a face is dropped.
            gen = matcher.one_call(
                matcher.encoder_for(story, key, "cids"), _concat_features(refs, [f for _, f in rows])
            )
            gen = gen.select(gen.any_valid)
            gen_ref = identity_similarity(gen, refs)  # [G, R]
            self_, cross = cids_from_similarity(identity_similarity(gen, gen), gen_ref)
            if era == "C":
                cp = _mirror_copy_paste(matcher, story, key, gen, "copy-paste-mirror-no-face" not in ctx.fixes)
            else:
                cp = copy_paste(gen_ref)
            chars[key] = {
                "self": self_,
                "cross": cross,
                "copy_paste": cp,
                "n_crops": len(rows),
                "n_refs": len(refs),
                "encoder": matcher.encoder_for(story, key, "cids").name,
            }
            items += [
                {"shot": s, "character": key, "box": sm.shots[s].matched[key], "score": sm.shots[s].scores[key]}
                for s, _ in rows
            ]
        cps = [c["copy_paste"] for c in chars.values() if c["copy_paste"] is not None]
        metrics = {
            "cids_self_mean": story_cids_mean([c["self"] for c in chars.values()], era, ctx.fixes),
            "cids_cross_mean": story_cids_mean([c["cross"] for c in chars.values()], era, ctx.fixes),
            "copy_paste_score": float(np.mean(cps)) if cps else None,
        }
        results.append((job.sid, _ok(metrics, {"characters": chars}, items), None))
    return results


def _concat_features(like: IdentityFeatures, parts: list[IdentityFeatures]) -> IdentityFeatures:
    if parts:
        return IdentityFeatures.concat(parts)
    return IdentityFeatures({k: v[:0] for k, v in like.features.items()}, {k: v[:0] for k, v in like.valid.items()})


def _mirror_copy_paste(
    matcher: CharacterMatcher, story: Story, key: str, gen: Any, duplicate_lone: bool = True
) -> float | None:
    """Era C copy rate: matched crops vs the primary reference and its mirror image (§4.5).

    When only one of the two gives a feature (the mirror has no face), the official code duplicates that one
    feature, so the rate is exactly 0.5 (``duplicate_lone``; quirk ``copy-paste-mirror-no-face``).
    """
    if len(gen) == 0:
        return None
    primary = matcher.reference_images(story, key, "cids")[0]
    enc = matcher.encoder_for(story, key, "cids")
    pair = matcher.encode(enc, [primary, ImageOps.mirror(primary)])
    valid = pair.any_valid.tolist()
    if duplicate_lone and sum(valid) == 1:
        lone = valid.index(True)
        pair = pair.select([lone, lone])
    sim = identity_similarity(gen, pair)  # [G, 2]
    return copy_paste_mirror(sim[:, 0], sim[:, 1])


def _story_matches(chunk: list[StoryJob], ctx: RunContext) -> list[StoryMatches]:
    """Era A: CLIP-for-all matching of `gpt_eval.py`; Eras B/C: the CIDS matching."""
    profile: Profile = "clip_all" if ctx.era == "A" else "cids"
    return ctx.matcher.match([j.story for j in chunk], [j.outs for j in chunk], profile)


def _run_occm(chunk: list[StoryJob], ctx: RunContext) -> ChunkResult:
    era = ctx.era
    if era == "C":
        paths = [(j.sid, s, p) for j in chunk for s, p in j.outs.paired.items()]
        dets = ctx.matcher.detect([load_rgb(p) for _, _, p in paths])
        boxes = {(sid, s): len(d) for (sid, s, _), d in zip(paths, dets)}
    else:
        matched = {
            (j.sid, s): len(m.matched) for j, sm in zip(chunk, _story_matches(chunk, ctx)) for s, m in sm.shots.items()
        }
    results: ChunkResult = []
    for job in chunk:
        expected, detected, items = [], [], []
        for shot in job.story.shots:
            has_image = shot.index in job.outs.paired
            if era in ("B", "C") and not has_image:
                continue  # Eras B/C skip shots without an image entry (cids_evaluator.py: "No output image ...")
            e = len(shot.character_keys)
            d = (boxes if era == "C" else matched).get((job.sid, shot.index), 0) if has_image else 0
            expected.append(e)
            detected.append(d)
            items.append(
                {"shot": shot.index, "expected": e, "detected": d, "has_image": has_image, "occm": occm([e], [d], era)}
            )
        value = occm(expected, detected, era)
        if math.isnan(value) and era in ("B", "C") and "occm-empty-story-nan" not in ctx.fixes:
            value = 0.0  # official: `occm_mean = ... if occm_scores else 0.0`, and it enters the dataset mean
        results.append((job.sid, _ok({"occm": value}, {"n_shots": len(expected)}, items), None))
    return results


def _run_prompt_align(chunk: list[StoryJob], ctx: RunContext) -> ChunkResult:
    era = ctx.era
    assert ctx.judge is not None  # checked in evaluate()
    matches = _story_matches(chunk, ctx)
    requests: list[JudgeRequest] = []
    where: list[tuple[str, int, str, str | None]] = []  # (story, shot, aspect, character)
    for job, sm in zip(chunk, matches):
        story = job.story
        for shot in story.shots:
            path = job.outs.paired.get(shot.index)
            if path is None:
                continue
            image = load_rgb(path)
            for aspect, text in (("scene", shot.scene), ("camera", shot.camera), ("character_action", shot.script)):
                requests.append(JudgeRequest(aspect, text, image))  # type: ignore[arg-type]
                where.append((job.sid, shot.index, aspect, None))
            m = sm.shots.get(shot.index)
            for key in shot.character_keys:
                if m is None or key not in m.matched:
                    continue
                name = key if era == "A" else story.characters[key].name
                requests.append(
                    JudgeRequest("single_character_action", shot.script, m.crops[m.matched[key]], character_name=name)
                )
                where.append((job.sid, shot.index, "single_character_action", key))
    scores = ctx.judge.score_many(requests) if requests else []
    results: ChunkResult = []
    for job, sm in zip(chunk, matches):
        mine = [(w, s) for w, s in zip(where, scores) if w[0] == job.sid]
        per_aspect = {
            a: [s.score for (_, _, asp, _), s in mine if asp == a] for a in ("scene", "camera", "character_action")
        }
        single: list[list[int] | None] = []
        for shot in job.story.shots:
            if shot.index not in job.outs.paired:
                continue
            m = sm.shots.get(shot.index)
            no_features = m is None or not any(bool(f.any_valid.any()) for f in m.features.values())
            if era == "C" and (not shot.character_keys or m is None or m.n_boxes == 0 or no_features):
                single.append(None)
                continue
            single.append(
                [s.score for (_, sh, asp, _), s in mine if sh == shot.index and asp == "single_character_action"]
            )
        metrics = {a: shot_scores_mean(v) for a, v in per_aspect.items()}
        metrics["single_character_action"] = single_action_story(single, era)
        items = [
            {"shot": sh, "aspect": asp, "character": ch, "score": s.score, "failed": s.failed, "cached": s.cached}
            for (_, sh, asp, ch), s in mine
        ]
        results.append(
            (job.sid, _ok(metrics, {"n_requests": len(mine), "n_failed": sum(s.failed for _, s in mine)}, items), None)
        )
    return results


def _run_aesthetic(chunk: list[StoryJob], ctx: RunContext) -> ChunkResult:
    paths = [p for j in chunk for p in j.outs.images]
    scores = ctx.batched(ctx.backbones.aesthetic.score, [load_rgb(p) for p in paths]).double()  # [N]
    by_path = dict(zip(paths, scores.tolist()))
    results: ChunkResult = []
    for job in chunk:
        vals = [by_path[p] for p in job.outs.images]
        items = [{"image": p.name, "aesthetic_score": v} for p, v in zip(job.outs.images, vals)]
        results.append((job.sid, _ok({"aesthetic_score": aesthetics(vals)}, {"n_images": len(vals)}, items), None))
    return results


def _run_diversity(chunk: list[StoryJob], ctx: RunContext) -> ChunkResult:
    paths = [p for j in chunk for p in j.outs.images]
    logits = ctx.batched(ctx.backbones.inception.logits, [load_rgb(p) for p in paths]).double()  # [N, C]
    results: ChunkResult = []
    start = 0
    for job in chunk:
        n = len(job.outs.images)
        results.append((job.sid, _ok({}, {"n_images": n}, []), logits[start : start + n].numpy()))
        start += n
    return results


RUNNERS: dict[str, Callable[[list[StoryJob], RunContext], ChunkResult]] = {
    "csd": _run_csd,
    "cids": _run_cids,
    "occm": _run_occm,
    "prompt_align": _run_prompt_align,
    "aesthetic": _run_aesthetic,
    "diversity": _run_diversity,
}
