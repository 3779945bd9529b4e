"""The text views: marker and no-marker twins cover exactly the same shot text, and the CE positions the training
segment builder gives them are exactly the target text's tokens (checked on the decoded tokens)."""

from __future__ import annotations

import pytest

from unimage.data.segments import ImageSizes, SegmentBuilder, TextSeg
from unimage.eval.heldout import load_heldout
from unimage.eval.targets import TARGET_NAMES, plan_text_targets, text_views
from unimage.script import CONTINUATION_PROMPT, serialize
from unimage.script.serialize import shot_text
from unimage.script.tokenizer import ByteTokenizer

SIZES = ImageSizes(vae_max_size=64, vae_min_size=64, vit_max_size=56, vit_min_size=56)


@pytest.fixture(scope="module")
def stories(synth):
    return load_heldout(synth, with_images=False)


def test_marker_and_no_marker_targets_are_the_same_shots(stories):
    for story in stories:
        views = dict(zip(TARGET_NAMES, text_views(story.story_id, story.script, seed=0)))
        plain = serialize(story.script)
        n = len(story.script.shots)
        # continuation: the last shot, as written in the held-out script
        last = shot_text(story.script.shots[-1])
        assert views["cont"].target == views["cont_nomarker"].target == last
        assert plain.endswith(last)
        assert views["cont"].context.endswith(f"<Continuation>: {CONTINUATION_PROMPT}\n\n")
        assert views["cont_nomarker"].context + views["cont_nomarker"].target == plain
        assert "<Continuation>" not in views["cont_nomarker"].context + views["cont"].target
        # extension: the shots after one cut, the same cut in both
        ext, ext_plain = views["ext"], views["ext_nomarker"]
        assert ext.target == ext_plain.target
        cut = next(
            k
            for k in range(1, n)
            if "".join(shot_text(s) for s in story.script.shots[k:]) == ext.target.replace("\n\n", "\n")
        )
        start = len(ext_plain.context)
        assert plain[start:] == ext.target and start == plain.index(f"<Frame{cut + 1}>")
        marker_line = ext.context[len(ext_plain.context) :]
        assert marker_line.startswith("<Extension>: ") and marker_line.endswith("\n\n") and marker_line.count("\n") == 2
        assert ext.context == ext_plain.context + marker_line  # the marker is the only difference, and is context


def test_views_are_deterministic_in_the_seed(stories):
    story = max(stories, key=lambda s: len(s.script.shots))
    a = text_views(story.story_id, story.script, seed=0)
    assert a == text_views(story.story_id, story.script, seed=0)
    cuts = {len(text_views(story.story_id, story.script, seed=s)[3].context) for s in range(12)}
    assert len(cuts) > 1  # the cut does depend on the seed


def test_ce_positions_are_the_target_tokens(stories):
    tok = ByteTokenizer()
    from unimage.model.config import get_config

    config = get_config("tiny")
    builder = SegmentBuilder(config, tok, SIZES)
    for story in stories:
        for target in plan_text_targets(story.story_id, story.script, builder, seed=0):
            loss_segs = [s for s in target.planned.segments if isinstance(s, TextSeg) and s.loss]
            text = "".join(tok.decode(list(s.token_ids)) for s in loss_segs)
            # the target blocks without their blank-line separators, then the empty end-of-script block
            assert text == target.view.target.replace("\n\n", "\n"), target.name
            assert loss_segs[-1].token_ids == ()
            no_loss = "".join(
                tok.decode(list(s.token_ids)) for s in target.planned.segments if isinstance(s, TextSeg) and not s.loss
            )
            assert no_loss == target.view.context.replace("\n\n", "\n")
            start, end = target.target_span
            canonical = serialize(target.view.structure)
            assert canonical[start:end] == target.view.target and end == len(canonical)
            assert target.target_bytes == len(target.view.target.encode())


def test_one_shot_script_has_only_the_full_view(stories):
    from dataclasses import replace

    one = replace(stories[0].script, shots=stories[0].script.shots[:1])
    assert [v.kind for v in text_views("x", one)] == ["full"]
