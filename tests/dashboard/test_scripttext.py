"""The script beside each storyboard: loading and safe highlighting (dashboard.scripttext)."""

from __future__ import annotations

import json
import re

from dashboard import scripttext
from tests.dashboard.fixtures import script_json, script_text


def test_mentions_show_names_and_cues_are_marked():
    view = scripttext.from_dict(script_json("01", 2, "x"))
    html = scripttext.shot_html(view, 2)
    assert 'class="um-mention"' in html and ">Character1 · young baker</span>" in html
    assert ">Character2 · inspector</span>" in html
    assert ">Environment1 · small sunlit patisserie</span>" in html
    assert '<span class="um-cue">“Good morning, shot 2.”</span>' in html
    assert "&lt;Character" not in html  # every mention was replaced
    assert scripttext.shot_html(view, 3) == ""


def test_explicit_names_win_and_undefined_mentions_are_visible():
    data = script_json("01", 1, "x")
    data["characters"][0]["name"] = "Mia"
    view = scripttext.from_dict(data)
    assert ">Mia</span>" in scripttext.highlight("Hello <Character1> and <Character9>.", view)
    assert 'title="not defined">Character9</span>' in scripttext.highlight("<Character9>", view)


def test_text_is_escaped():
    view = scripttext.ScriptView()
    html = scripttext.highlight('<img src=x onerror="alert(1)"> & <b>bold</b> <-say "hi"->', view)
    assert "<img" not in html and "<b>bold" not in html
    assert "&lt;img src=x" in html and "&amp;" in html
    assert "“say &quot;hi&quot;”" in html


def test_malformed_cue_is_still_marked():
    view = scripttext.ScriptView()
    html = scripttext.highlight("She says <It's beautiful-> and leaves.", view)
    assert "“It&#x27;s beautiful”" in html


def test_json_and_text_forms_give_the_same_view(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "script.json").write_text(json.dumps(script_json("03", 3, "t")))
    (tmp_path / "b" / "script.txt").write_text(script_text("03", 3, "t"))
    a = scripttext.load_script(tmp_path / "a")
    b = scripttext.load_script(tmp_path / "b")
    assert a is not None and b is not None
    assert a.shots == b.shots and a.characters == b.characters and a.user_prompt == b.user_prompt
    assert scripttext.load_script(tmp_path) is None


def test_published_scripts_keep_every_shot(fixtures_dir):
    for path in sorted((fixtures_dir / "unimage_scripts").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        view = scripttext.from_text(text)
        frames = {int(n) for n in re.findall(r"^\s*<Frame(\d+)>", text, flags=re.M)}
        assert frames <= set(view.shots), path.name
        assert view.characters, path.name


def test_short_name():
    assert scripttext.short_name("A young woman with long hair") == "young woman"
    assert scripttext.short_name("An old, tired fisherman in a boat") == "old tired fisherman"
    assert scripttext.short_name("") == ""
