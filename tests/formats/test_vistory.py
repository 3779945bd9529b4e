"""The ViStoryBench layouts of `formats.vistory`: story.json reading, timestamps, and the one output writer."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from formats.vistory import (
    LITE_IDS,
    TIMESTAMP_RE,
    OutputWriter,
    StoryFileError,
    check_timestamp,
    dataset_root,
    free_timestamp,
    new_timestamp,
    read_story_json,
    run_dir,
    shot_name,
    timestamp_key,
)


def test_story_json_with_and_without_bom_and_clear_errors(tmp_path: Path) -> None:
    story = {"Story_type": {"en": "tale", "ch": "故事"}, "Characters": {}, "Shots": []}
    plain, bom = tmp_path / "a.json", tmp_path / "b.json"
    plain.write_text(json.dumps(story, ensure_ascii=False), encoding="utf-8")
    bom.write_text(json.dumps(story, ensure_ascii=False), encoding="utf-8-sig")
    assert bom.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_story_json(plain) == read_story_json(bom) == story
    with pytest.raises(StoryFileError, match=r"missing\.json: story\.json not found"):
        read_story_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_bytes(b"{\xff")
    with pytest.raises(StoryFileError, match=r"bad\.json: not valid UTF-8 JSON"):
        read_story_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(StoryFileError, match=r"top level must be an object, got list"):
        read_story_json(tmp_path / "list.json")
    assert issubclass(StoryFileError, ValueError)


def test_dataset_root_accepts_the_vistory_parent(tmp_path: Path) -> None:
    (tmp_path / "ViStory" / "01").mkdir(parents=True)
    assert dataset_root(tmp_path) == tmp_path / "ViStory"
    assert dataset_root(tmp_path / "ViStory") == tmp_path / "ViStory"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dataset_root(tmp_path / "nowhere")
    assert len(LITE_IDS) == 20 and LITE_IDS[0] == "01" and LITE_IDS[-1] == "79"


def test_timestamps() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5)
    assert new_timestamp(moment) == "20250102_030405"
    assert TIMESTAMP_RE.match("20250102_030405") and TIMESTAMP_RE.match("20250102-030405")  # the official reader's
    assert not TIMESTAMP_RE.match("2025010_030405") and not TIMESTAMP_RE.match("20250102_0304055")
    assert check_timestamp("20250102_030405") == "20250102_030405"
    for bad in ("20250102-030405", "latest", "20250102_03040"):
        with pytest.raises(ValueError, match="is not YYYYMMDD_HHMMSS"):
            check_timestamp(bad)
    assert max(["20250102-030405", "20250102_030404"], key=timestamp_key) == "20250102-030405"


def test_free_timestamp_steps_past_existing_runs(tmp_path: Path) -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5)
    assert free_timestamp(tmp_path, moment) == "20250102_030405"
    (tmp_path / "20250102_030405").mkdir()
    (tmp_path / "20250102_030406").mkdir()
    assert free_timestamp(tmp_path, moment) == "20250102_030407"


def test_writer_layout_bytes_and_completion(tmp_path: Path) -> None:
    w = OutputWriter(tmp_path, "ours", "arm", "ch", "20250505_101010")
    assert (
        w.run_dir
        == run_dir(tmp_path, "ours", "arm", "ch", "20250505_101010")
        == tmp_path / "ours/arm/ch/20250505_101010"
    )
    image = Image.new("RGB", (8, 4), (10, 200, 30))
    path = w.write_shot("07", 3, image)
    assert path == tmp_path / "ours/arm/ch/20250505_101010/07/shots/shot_03.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (8, 4) and im.getpixel((0, 0)) == (10, 200, 30)
    assert w.write_shot("07", 12, b"\x89PNG raw").read_bytes() == b"\x89PNG raw"  # bytes are written as given
    assert w.done_shots("07") == {3, 12} and w.done_shots("99") == set()
    assert not w.story_done("07", [3, 12])  # no script.json yet
    txt, js = w.write_script("07", "<User>: a prompt\n", {"title": "é", "shots": []})
    assert txt.name == "script.txt" and txt.read_text(encoding="utf-8") == "<User>: a prompt\n"
    assert js.read_bytes() == '{\n  "title": "é",\n  "shots": []\n}\n'.encode()  # non-ASCII kept, final newline
    assert w.story_done("07", [3, 12]) and not w.story_done("07", [3, 4])
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_writer_refuses_bad_names() -> None:
    assert shot_name(1) == "shot_01.png" and shot_name(123) == "shot_123.png"
    with pytest.raises(ValueError, match="1-based"):
        shot_name(0)
    with pytest.raises(ValueError, match="mode must be a plain folder name"):
        OutputWriter(Path("out"), "m", "../x", "en", "20250505_101010")
    with pytest.raises(ValueError, match="is not YYYYMMDD_HHMMSS"):
        OutputWriter(Path("out"), "m", "base", "en", "20250505-101010")
    with pytest.raises(ValueError, match="'json' or 'txt'"):
        OutputWriter(Path("out"), "m", "base", "en", "20250505_101010").script_path("01", "yaml")
    assert TIMESTAMP_RE.match(OutputWriter(Path("out"), "m", "base").timestamp)  # a fresh timestamp by default
