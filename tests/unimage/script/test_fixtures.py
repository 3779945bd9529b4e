"""The six published UniMAGE scripts parse with the counts verified by reading each file."""

from __future__ import annotations

import pytest

from unimage.script import CONTINUATION_PROMPT, parse, serialize

# name: (characters, environments, shots, markers, cues, mentions in shots) -- counted by hand / grep on the files:
# cues = occurrences of "<-"; mentions = "<CharacterN>"/"<EnvironmentN>" occurrences minus the header lines.
COUNTS = {
    "unimage_result_1.txt": (2, 2, 6, 0, 12, 31),
    "unimage_result_3.txt": (3, 1, 4, 0, 8, 28),
    "unimage_result_5.txt": (2, 2, 17, 1, 32, 95),
    "unimage_result_9.txt": (2, 2, 7, 0, 18, 43),
    "unimage_result_12.txt": (1, 1, 7, 1, 15, 23),
    "unimage_result_16.txt": (1, 2, 6, 0, 10, 24),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_fixture_counts(script_texts, name):
    script = parse(script_texts[name]).script
    chars, envs, shots, markers, cues, mentions = COUNTS[name]
    assert len(script.characters) == chars
    assert len(script.environments) == envs
    assert len(script.shots) == shots
    assert len(script.markers) == markers
    descriptions = [d for s in script.shots for d in (s.frame, s.video)]
    assert all(d is not None for d in descriptions), "every shot has both frame and video"
    assert sum(len(d.cues) for d in descriptions) == cues
    assert all(c.complete for d in descriptions for c in d.cues)
    assert sum(len(d.mentions) for d in descriptions) == mentions
    assert [s.index for s in script.shots] == list(range(1, shots + 1))
    assert [c.index for c in script.characters] == list(range(1, chars + 1))
    assert [e.index for e in script.environments] == list(range(1, envs + 1))


@pytest.mark.parametrize(
    "name",
    [
        "unimage_result_1.txt",
        "unimage_result_3.txt",
        "unimage_result_5.txt",
        "unimage_result_9.txt",
        "unimage_result_16.txt",
    ],
)
def test_clean_fixtures_have_no_problems(script_texts, name):
    assert parse(script_texts[name]).problems == ()


def test_result_12_second_user_prompt_is_the_only_problem(script_texts):
    """The sample puts the continuation prompt after a second <User> tag (line 60), not <Continuation>."""
    result = parse(script_texts["unimage_result_12.txt"])
    assert [(p.line, p.column, p.code) for p in result.problems] == [(60, 24, "user-as-marker")]
    (marker,) = result.script.markers
    assert (marker.kind, marker.tag, marker.text, marker.position) == ("continuation", "User", CONTINUATION_PROMPT, 6)
    assert result.script.before_shot(marker) == 7


def test_result_5_extension_before_shot_10(script_texts):
    script = parse(script_texts["unimage_result_5.txt"]).script
    (marker,) = script.markers
    assert marker.kind == "extension" and marker.tag == "Extension" and marker.position == 9
    assert marker.text.startswith("An art critic confronts a forger")
    assert script.before_shot(marker) == 10
    # The prompt wraps after a hyphen ("cat-and-" / "mouse"): joined without a space.
    assert "tense cat-and-mouse game during" in script.user_prompt


def test_pdf_wrap_inside_cue_delimiters(script_texts):
    """result_12 wraps "<-" / "A sudden" (line 31-32) and "pads-" / ">." (line 57-58)."""
    shots = parse(script_texts["unimage_result_12.txt"]).script.shots
    assert shots[2].video.cues[-1].text == "A sudden, jarring string chord followed by silence"
    assert shots[5].video.text.endswith("blending with the synth pads->.")
    assert shots[5].video.cues[-1].text == "A gentle, ethereal choir sound subtly enters, blending with the synth pads"


def test_first_fixture_known_texts(script_texts):
    script = parse(script_texts["unimage_result_1.txt"]).script
    assert script.user_prompt == (
        "A young bakers patisserie is subject to a surprise inspection by urban management officers."
    )
    assert script.characters[0].description.text.endswith(
        "simple, light-colored top, conveying a gentle and optimistic demeanor."
    )
    video3 = script.shots[2].video
    assert [c.text for c in video3.cues] == [
        "Good morning, I'm Mr. Henderson from the city's health department.",
        "Health department? Oh, right.",
        "The jazz music abruptly stops, replaced by a low, suspenseful hum",
    ]
    m = script.shots[0].frame.mentions[0]
    assert (m.kind, m.index) == ("character", 1)
    assert script.shots[0].frame.text[m.start : m.end] == "<Character1>"


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_fixture_canonical_round_trip(script_texts, name):
    first = parse(script_texts[name])
    text = serialize(first.script)
    again = parse(text)
    assert again.script == first.script
    assert serialize(again.script) == text
    assert len(again.problems) == len(first.problems)
