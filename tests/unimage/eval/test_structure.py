"""Structural checks: SynthStory's own scripts pass every check; constructed bad scripts are flagged by the check
meant to see them, and only the judged shots count."""

from __future__ import annotations

import pytest

from unimage.eval.heldout import load_heldout
from unimage.eval.structure import check_script, declared_name

GOOD = """<User>: Pip and Bo share a story of friendship in a night meadow.
<Character1>: Pip, a small figure with a round peach head and a boxy teal body.
<Character2>: Bo, a small figure with a square tan head and a round pink body.
<Environment1>: A night meadow: a dark blue sky, clear, over soft green grass, with a tall tree on the right.

<Frame1>: Long shot: Pip<Character1> stands on the left and Bo<Character2> stands on the right in the night meadow<Environment1>, with a tall tree on the right.
<Video1>: Pip<Character1> waves at Bo<Character2>. The camera holds still. Pip<Character1> says: <-Hello there!-> <-Crickets sing in the dark->.

<Frame2>: Close-up: Bo<Character2> stands in the center in the night meadow<Environment1>, with a tall tree on the right.
<Video2>: Bo<Character2> sits down to rest. The camera holds still. Bo<Character2> says: <-What a day!-> <-Crickets sing in the dark->.
"""


def _rates(text: str, **kw) -> dict:
    return check_script(text, **kw).rates()


def test_a_good_script_passes_everything():
    assert _rates(GOOD) == {"parse": 1.0, "mentions": 1.0, "names": 1.0, "frame": 1.0, "cast": 1.0, "valid": 1.0}


def test_synthstory_held_out_scripts_pass(synth):
    for story in load_heldout(synth, with_images=False):
        rates = _rates(story.text)
        assert all(v in (None, 1.0) for v in rates.values()), (story.story_id, rates)
        assert rates["frame"] == 1.0 and rates["names"] == 1.0


def test_declared_names():
    assert declared_name("character", "Pip, a small figure with a round head.") == "Pip"
    assert declared_name("environment", "A night meadow: a dark blue sky.") == "night meadow"
    assert declared_name("character", "A tall wizard who never stops talking about the weather, with a hat") is None


@pytest.mark.parametrize(
    ("edit", "check", "value"),
    [
        # a mention of a character that is not declared
        (("Bo<Character2> sits down", "Bo<Character3> sits down"), "mentions", 9 / 10),
        # the right tag with another character's name
        (("Bo<Character2> sits down", "Pip<Character2> sits down"), "names", 9 / 10),
        # a bare tag
        (("waves at Bo<Character2>", "waves at <Character2>"), "names", 9 / 10),
        # frame template broken: no shot size
        (("<Frame2>: Close-up: Bo", "<Frame2>: Bo"), "frame", 0.5),
        # frame template broken: a cut description
        (("with a tall tree on the right.\n<Video2>", "with a tall…\n<Video2>"), "frame", 0.5),
        # a cast the prompt does not ask for
        (("Pip and Bo share", "Pip shares"), "cast", 0.0),
        # does not parse: a shot without its video
        (("<Video2>: Bo<Character2> sits down to rest.", "Bo<Character2> sits down to rest."), "parse", 0.0),
    ],
)
def test_bad_scripts_are_flagged(edit, check, value):
    old, new = edit
    assert old in GOOD
    rates = _rates(GOOD.replace(old, new))
    assert rates[check] == pytest.approx(value)
    assert rates["valid"] == 0.0


def test_only_judged_shots_count():
    bad_first = GOOD.replace("<Frame1>: Long shot: ", "<Frame1>: ")
    assert _rates(bad_first)["frame"] == 0.5
    assert _rates(bad_first, first_shot=1)["frame"] == 1.0
    assert check_script(GOOD, first_shot=1).mentions == (4, 4)


def test_cast_against_given_names():
    assert _rates(GOOD, prompt_names=["Pip", "Bo"])["cast"] == 1.0
    assert _rates(GOOD, prompt_names=["Pip", "Bo", "Kiki"])["cast"] == 0.0
    concept = GOOD.replace(
        "Pip and Bo share a story of friendship in a night meadow.", "A short film about friendship."
    )
    assert _rates(concept)["cast"] is None  # the prompt names nobody: nothing to judge


def test_name_only_global_entries():
    """SynthStory's ``appearance="none"`` variant declares a character by its name alone."""
    assert declared_name("character", "Pip, a small figure.") == "Pip"
    assert declared_name("character", "Pip.") == "Pip"
    text = GOOD.replace("Pip, a small figure with a round peach head and a boxy teal body.", "Pip.")
    assert _rates(text)["names"] == 1.0


def test_structure_rows_of_the_director(director, synth):
    """Director output (random weights) parses by construction; its frames do not follow the template."""
    from unimage.eval.diagnostics import structure_rows

    story = load_heldout(synth, max_stories=1, with_images=False)[0]
    d = director.with_config(max_characters=1, max_environments=1, max_entry_tokens=8)
    rows = {r.metric: r.value for r in structure_rows(d, story, modes=("continue", "write"))}
    assert rows["diag.struct_parse"] == 1.0 and rows["diag.struct_write_parse"] == 1.0
    assert rows["diag.struct_frame"] == 0.0 and rows["diag.struct_valid"] == 0.0
    assert "diag.struct_cast" not in rows  # a continuation cannot change the cast
    assert all(0.0 <= v <= 1.0 for v in rows.values())
    with pytest.raises(ValueError, match="unknown structure mode"):
        structure_rows(d, story, modes=("render",))
