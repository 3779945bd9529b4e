"""Property tests: canonical text and JSON round trips; the parser never raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unimage.script import ScriptError, from_dict, parse, serialize, to_dict

from .samples import FIXTURE_NAMES
from .strategies import hostile_text, well_formed_scripts

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(well_formed_scripts())
def test_parse_serialize_round_trip(script):
    text = serialize(script)
    result = parse(text, strict=True)  # strict: a well-formed script has no problems at all
    assert result.script == script
    assert serialize(result.script) == text


@FAST
@given(well_formed_scripts())
def test_json_round_trip(script):
    data = json.loads(json.dumps(to_dict(script)))
    assert from_dict(data).script == script
    assert set(data) == {"user_prompt", "characters", "environments", "shots", "markers", "problems"}


def _check_result(text, result):
    n_lines = text.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
    for p in result.problems:
        assert 1 <= p.line <= n_lines and p.column >= 1 and p.message and p.code
    json.dumps(to_dict(result.script, result.problems))
    assert from_dict(to_dict(result.script, result.problems)) == result
    # The canonical text of any parse is itself parseable, and stable after one more round.
    again = parse(serialize(result.script))
    assert serialize(parse(serialize(again.script)).script) == serialize(again.script)


@FAST
@given(hostile_text)
def test_never_raises_on_hostile_text(text):
    _check_result(text, parse(text))


@FAST
@given(st.text(max_size=300))
def test_never_raises_on_arbitrary_text(text):
    _check_result(text, parse(text))


@pytest.fixture(scope="module")
def fixture_texts(fixtures_dir):
    return [(fixtures_dir / "unimage_scripts" / n).read_text(encoding="utf-8") for n in FIXTURE_NAMES]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_never_raises_on_random_cuts_of_real_scripts(fixture_texts, data):
    text = data.draw(st.sampled_from(fixture_texts))
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    _check_result(text[start:end], parse(text[start:end]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_real_script_keeps_complete_shots(fixture_texts, data):
    """Cutting a real script at a shot boundary plus some text never changes the shots before the cut."""
    text = data.draw(st.sampled_from(fixture_texts))
    full = parse(text).script
    cut = data.draw(st.integers(text.index("<Frame1>"), len(text)))
    partial = parse(text[:cut]).script
    complete_before = max(0, len(partial.shots) - 1)
    assert partial.shots[:complete_before] == full.shots[:complete_before]


def test_strict_mode_lists_every_problem():
    text = "<User>: p.\n<Frame1>: a <Character1>.\n<Frame3>: b.\n"
    with pytest.raises(ScriptError) as info:
        parse(text, strict=True, source="x.txt")
    codes = [p.code for p in info.value.problems]
    assert codes == ["missing-video", "undefined-mention", "index-order", "missing-video"]
    message = str(info.value)
    assert message.startswith("4 problem(s) in x.txt:")
    assert "x.txt:2:13: [undefined-mention] <Character1> is mentioned but never defined" in message


def test_from_dict_names_a_bad_field():
    data = to_dict(parse("<User>: p.\n<Frame1>: a.\n<Video1>: b.\n").script)
    del data["shots"][0]["frame"]
    with pytest.raises(ValueError, match="frame"):
        from_dict(data)
