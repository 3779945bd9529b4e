"""Dataset reader: schema mapping, BOM, languages, sorted references, lite split, and errors naming file+field."""

from __future__ import annotations

import json

import pytest

from bench.dataset import LITE_IDS, DatasetError, load_dataset, load_story, split_ids
from tests.bench.conftest import build_dataset, story_json


@pytest.fixture
def root(tmp_path):
    return build_dataset(tmp_path / "ViStory")


def test_load_story_fields_and_bom(root):
    assert (root / "01" / "story.json").read_bytes().startswith(b"\xef\xbb\xbf")  # BOM written
    story = load_story(root, "01")
    assert story.story_type == "Children's Picture Books"
    assert [s.index for s in story.shots] == [1, 2, 3, 4]
    shot = story.shots[1]
    assert shot.scene == "a plain room, shot 2"
    assert shot.plot == "plot 2"
    assert shot.camera == "Medium shot, eye level shot"
    assert shot.script == "red and blue figures stand"
    assert shot.character_keys == ("Alice", "Bob") == shot.character_names
    assert list(story.characters) == ["Alice", "Bob"]  # JSON order
    alice = story.characters["Alice"]
    assert alice.tag == "realistic_human"
    assert [p.name for p in alice.ref_images] == ["00.png", "01.jpg"]  # sorted by name, png and jpg
    assert story.first_ref("Alice").name == "00.png"
    assert story.first_ref("Nobody") is None


def test_chinese_texts_and_english_keys(root):
    story = load_story(root, "01", lang="ch")
    shot = story.shots[1]
    assert shot.character_keys == ("Alice", "Bob")  # keys are always the English list
    assert shot.character_names == ("Alice-ch", "Bob-ch")
    assert shot.scene == "房间 2"
    assert story.characters["Alice"].name == "Alice-ch"
    assert story.story_type == "儿童绘本"


def test_splits(root):
    assert split_ids(root, "full") == ["01", "02", "08"]
    assert split_ids(root, "lite") == ["01", "08"]
    assert len(LITE_IDS) == 20
    assert [s.story_id for s in load_dataset(root, "lite")] == ["01", "08"]
    with pytest.raises(ValueError, match="split"):
        split_ids(root, "medium")


def _write(root, sid, data):
    (root / sid).mkdir(exist_ok=True)
    (root / sid / "story.json").write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("Shots"), "missing field 'Shots'"),
        (lambda d: d["Shots"][1].pop("Shot Perspective Design"), r"Shots\[1\]\.'Shot Perspective Design'"),
        (lambda d: d["Shots"][0].__setitem__("index", "one"), r"Shots\[0\]\.index' must be int"),
        (lambda d: d["Characters"]["Alice"].__setitem__("tag", "robot"), r"Characters\.Alice\.tag is 'robot'"),
        (
            lambda d: d["Shots"][2]["Setting Description"].pop("en"),
            r"Shots\[2\]\.Setting Description' must be an object with key 'en'",
        ),
        (
            lambda d: d["Shots"][0]["Characters Appearing"].__setitem__("en", "Alice"),
            r"Characters Appearing'\.en must be a list",
        ),
    ],
)
def test_errors_name_file_and_field(root, mutate, message):
    data = story_json("01")
    mutate(data)
    _write(root, "77", data)
    with pytest.raises(DatasetError, match=message) as info:
        load_story(root, "77")
    assert str(root / "77" / "story.json") in str(info.value)


def test_errors_bad_json_and_missing_file(root):
    (root / "66").mkdir()
    (root / "66" / "story.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"66/story\.json: not valid UTF-8 JSON"):
        load_story(root, "66")
    with pytest.raises(DatasetError, match=r"story\.json not found"):
        load_story(root, "55")
    with pytest.raises(DatasetError, match="not a directory"):
        split_ids(root / "nope")
    with pytest.raises(ValueError, match="lang"):
        load_story(root, "01", lang="zh")
