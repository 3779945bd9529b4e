"""Pre-Context Script Splitting: extension and continuation views with exact context/target texts."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings

from unimage.script import CONTINUATION_PROMPT, Script, parse, serialize
from unimage.script.serialize import header_text, shot_text
from unimage.script.splitting import (
    extractive_summary,
    sample_split,
    split_for_continuation,
    split_for_extension,
    split_full,
)

from .strategies import well_formed_scripts


@pytest.fixture(scope="module")
def bakery(fixtures_dir):
    return parse((fixtures_dir / "unimage_scripts" / "unimage_result_1.txt").read_text()).script


def test_continuation_before_last_shot(bakery):
    sample = split_for_continuation(bakery)
    assert sample.kind == "continuation" and sample.cut == 5
    assert sample.target == shot_text(bakery.shots[5])
    assert sample.context.endswith(f"<Continuation>: {CONTINUATION_PROMPT}\n\n")
    assert sample.context.startswith(header_text(bakery))
    assert sample.context + sample.target == serialize(sample.script)
    reparsed = parse(sample.context + sample.target)
    assert reparsed.ok and reparsed.script == sample.script
    assert reparsed.script.markers[0].position == 5 and reparsed.script.shots == bakery.shots


def test_extension_cut_is_seeded_and_summarizer_sees_the_second_part(bakery):
    seen = []

    def summarizer(text):
        seen.append(text)
        return "  A new   prompt.\n"

    sample = split_for_extension(bakery, seed=7, summarizer=summarizer)
    cut = random.Random(7).randint(1, 5)
    assert sample.cut == cut and sample.kind == "extension"
    assert seen == ["".join(shot_text(s) for s in bakery.shots[cut:])]
    assert sample.context.endswith("<Extension>: A new prompt.\n\n")
    assert sample.target == "\n".join(shot_text(s) for s in bakery.shots[cut:])
    assert parse(sample.context + sample.target).script == sample.script
    assert split_for_extension(bakery, seed=7, summarizer=summarizer) == sample
    assert {split_for_extension(bakery, seed=s).cut for s in range(60)} == {1, 2, 3, 4, 5}


def test_extension_rejects_empty_summary_and_short_scripts(bakery):
    with pytest.raises(ValueError, match="empty prompt"):
        split_for_extension(bakery, 0, summarizer=lambda _: " \n ")
    one_shot = Script(bakery.user_prompt, bakery.characters, bakery.environments, bakery.shots[:1])
    with pytest.raises(ValueError, match="at least 2 shot"):
        split_for_continuation(one_shot)
    assert sample_split(one_shot, 0, p_extension=1.0, p_continuation=0.0).kind == "full"


def test_extractive_summary_known_answer():
    text = (
        "<Frame1>: ignored.\n<Video1>: The dragon<Character1> sleeps. A knight finds the dragon cave. <-Roar->\n"
        "<Frame2>: ignored.\n<Video2>: Rain falls. The dragon wakes.\n"
    )
    # content-word frequencies: dragon 3, the rest 1 -> mean scores 2, 1.5, 1, 2 -> sentences 1 and 4.
    assert extractive_summary(text) == "The dragon sleeps. The dragon wakes."
    assert extractive_summary(text, max_sentences=1) == "The dragon sleeps."
    assert extractive_summary(text, max_words=3) == "The dragon sleeps."
    assert extractive_summary("") == ""


def test_default_summary_of_a_real_second_part(fixtures_dir):
    script = parse((fixtures_dir / "unimage_scripts" / "unimage_result_9.txt").read_text()).script
    sample = split_for_extension(script, seed=3)
    prompt = sample.script.markers[0].text
    assert 0 < len(prompt.split()) <= 40
    assert "<" not in prompt and ">" not in prompt


def test_existing_markers_are_kept(fixtures_dir):
    script = parse((fixtures_dir / "unimage_scripts" / "unimage_result_5.txt").read_text()).script
    sample = split_for_continuation(script)
    assert [(m.kind, m.position) for m in sample.script.markers] == [("extension", 9), ("continuation", 16)]
    assert parse(sample.context + sample.target).script == sample.script


def test_sample_split_mixture(bakery):
    kinds = Counter(sample_split(bakery, seed).kind for seed in range(300))
    assert set(kinds) == {"full", "extension", "continuation"}
    assert all(70 <= n <= 130 for n in kinds.values()), kinds
    assert sample_split(bakery, 1, p_extension=0, p_continuation=0) == split_full(bakery)
    assert sample_split(bakery, 1, p_extension=0, p_continuation=1).kind == "continuation"
    with pytest.raises(ValueError, match="probabilities"):
        sample_split(bakery, 1, p_extension=0.8, p_continuation=0.5)


def test_full_view(bakery):
    sample = split_full(bakery)
    assert sample.context == f"<User>: {bakery.user_prompt}\n"
    assert sample.target.startswith("<Character1>: ")
    assert sample.context + sample.target == serialize(bakery)


@settings(max_examples=60, deadline=None)
@given(well_formed_scripts())
def test_every_view_reassembles_the_marked_script(script):
    for seed in range(3):
        sample = sample_split(script, seed)
        assert sample.context + sample.target == serialize(sample.script)
        assert parse(sample.context + sample.target).script == sample.script


def test_event_summary_says_what_happens_next_on_synthstory():
    """The default extension prompt: "Then <first action> in the <place>. <second action>", from the spec itself."""
    from unimage.data.synthspec import SynthStoryConfig, sample_story
    from unimage.data.synthtext import plot_text
    from unimage.script import parse as parse_text
    from unimage.script.splitting import split_for_extension

    checked = 0
    for i in range(40):
        story = sample_story(SynthStoryConfig(seed=5), "train", i, f"t{i}")
        if len(story.shots) < 3:
            continue
        from unimage.data.synthtext import script_text

        sample = split_for_extension(parse_text(script_text(story)).script, seed=i)
        cut = sample.cut
        first, second = story.shots[cut], story.shots[cut + 1] if cut + 1 < len(story.shots) else None
        place = story.environment(first.environment).name.en
        action = plot_text(story, first, "en", tagged=False)
        head = action if f"in the {place}" in action else f"{action[:-1]} in the {place}."
        expected = f"Then {head}" + (f" {plot_text(story, second, 'en', tagged=False)}" if second else "")
        marker = next(m for m in sample.script.markers if m.kind == "extension")
        assert marker.text == " ".join(expected.split()[:40])
        assert "says:" not in marker.text
        checked += 1
    assert checked >= 10


def test_event_summary_on_published_scripts_is_never_a_dangling_speech_stub(script_texts):
    from unimage.script.splitting import event_summary

    for name, text in script_texts.items():
        summary = event_summary(text)
        assert summary.startswith("Then ") and len(summary.split()) > 3, (name, summary)
        assert not summary.rstrip(".").endswith(":"), (name, summary)
