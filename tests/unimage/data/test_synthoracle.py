"""SynthStory oracle metrics and positive controls: exact on the ground truth, and known answers on corruptions."""

from __future__ import annotations

import numpy as np
import pytest

from unimage.data.synthcontrols import CORRUPTIONS, EXPECTED, corrupt_story
from unimage.data.synthdraw import render_shot
from unimage.data.synthoracle import METRICS, score_story
from unimage.data.synthspec import SynthStoryConfig
from unimage.data.synthstory import story_specs
from unimage.data.synthtext import ground_truth
from unimage.data.synthvocab import BODY_COLORS


def _stories(n: int = 30, size: int = 64, max_characters: int = 3, seed: int = 3):
    cfg = SynthStoryConfig(seed=seed, train_stories=0, text_stories=0, pairs=0, eval_stories=n, image_size=size,
                           max_characters=max_characters)  # fmt: skip
    return story_specs(cfg)["eval"]


def _score(story, images):
    return score_story(ground_truth(story), {k: np.asarray(v) for k, v in images.items()})


@pytest.mark.parametrize("size", [32, 48, 64, 128])
def test_ground_truth_keyframes_score_one_on_every_metric(size):
    for story in _stories(12, size):
        score = _score(story, {s.index: render_shot(story, s) for s in story.shots})
        for m in METRICS:
            assert score.values[m] in (1.0, None), (story.story_id, m, score.values)
        assert score.counts["identity_acc"] == sum(len(s.placements) for s in story.shots)
        assert score.counts["count_acc"] == len(story.shots)


def test_identity_swap_known_answer():
    """Every figure of the 2nd, 4th, ... shot is another character: identity = share of the other shots' figures."""
    for story in _stories(15):
        score = _score(story, corrupt_story(story, "identity_swap"))
        kept = sum(len(s.placements) for i, s in enumerate(story.shots) if i % 2 == 0)
        total = sum(len(s.placements) for s in story.shots)
        assert score.values["identity_acc"] == pytest.approx(kept / total)
        assert score.values["head_acc"] is not None and score.values["count_acc"] == 1.0


def test_appearance_drift_known_answer():
    """From the second appearance on the head colour changes: head accuracy = share of first appearances."""
    for story in _stories(15):
        score = _score(story, corrupt_story(story, "appearance_drift"))
        firsts = len({p.character for s in story.shots for p in s.placements})
        total = sum(len(s.placements) for s in story.shots)
        assert score.values["head_acc"] == pytest.approx(firsts / total)
        assert score.values["identity_acc"] == 1.0 and score.values["consistency"] in (1.0, None)


def test_drop_and_noise_and_missing_shots():
    for story in _stories(12):
        dropped = _score(story, corrupt_story(story, "drop_character"))
        with_figures = sum(bool(s.placements) for s in story.shots)
        assert dropped.values["count_acc"] == pytest.approx(1 - with_figures / len(story.shots))
        noise = _score(story, corrupt_story(story, "noise"))
        assert all(noise.values[m] in (0.0, None) for m in METRICS), noise.values
        missing = score_story(ground_truth(story), {})
        assert all(missing.values[m] in (0.0, None) for m in METRICS)


def test_a_recoloured_body_is_the_wrong_character():
    """Position-aware: paint one figure's body in another palette colour → only that placement is wrong."""
    story = next(s for s in _stories(40) if sum(len(x.placements) for x in s.shots) >= 3)
    images = {s.index: np.array(render_shot(story, s)) for s in story.shots}
    shot = next(s for s in story.shots if s.placements)
    p = shot.placements[0]
    own = story.character(p.character).body_color.rgb
    other = next(c.rgb for c in BODY_COLORS if c.rgb != own and all(c != x.body_color for x in story.characters))
    img = images[shot.index]
    x0, y0, x1, y1 = p.box
    region = img[y0:y1, x0:x1]
    region[(region == own).all(-1)] = other
    score = score_story(ground_truth(story), images)
    total = sum(len(s.placements) for s in story.shots)
    assert score.values["identity_acc"] == pytest.approx((total - 1) / total)


def test_every_oracle_metric_has_a_target_corruption():
    targets = {m for _, m, _, t in EXPECTED if t and m.startswith("oracle.")}
    assert targets == {f"oracle.{m}" for m in METRICS}
    assert {c for c, *_ in EXPECTED} == set(CORRUPTIONS)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_story(_stories(1)[0], "blur")


def test_corruptions_are_deterministic():
    story = _stories(2)[1]
    for name in CORRUPTIONS:
        a, b = corrupt_story(story, name), corrupt_story(story, name)
        assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)
