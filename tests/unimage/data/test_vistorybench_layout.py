"""The SynthStory eval set follows the ViStoryBench dataset layout and story.json schema exactly.

Reference: `reference/vistorybench.md` §1 and the official README example (keys and their order), and the
official loader's behaviour (utf-8-sig, five shot fields, shots lacking one are dropped, first reference
image = sorted()[0]), re-stated here independently of any reader in this repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._helpers.data import SMALL
from unimage.data.synthstory import GT_OUTPUT_RUN

TOP_KEYS = ["Story_type", "Characters", "Shots"]
CHAR_KEYS = ["tag", "name_ch", "name_en", "prompt_ch", "prompt_en", "num_of_appearances"]
SHOT_KEYS = [
    "index",
    "Plot Correspondence",
    "Setting Description",
    "Shot Perspective Design",
    "Characters Appearing",
    "Static Shot Description",
]
TAGS = {"realistic_human", "unrealistic_human", "non_human"}
# Official loader: story.json field -> the name it is exposed under (shots missing one are dropped).
FIELD_MAPPING = {
    "Setting Description": "scene",
    "Plot Correspondence": "plot",
    "Characters Appearing": "character_name",
    "Static Shot Description": "script",
    "Shot Perspective Design": "camera",
}


def _stories(root: Path) -> list[Path]:
    return sorted(p for p in (root / "eval/ViStory").iterdir() if p.is_dir())


def test_story_folders_are_numeric_and_complete(small_set):
    dirs = _stories(small_set)
    assert [d.name for d in dirs] == [f"{i:02d}" for i in range(1, SMALL.eval_stories + 1)]
    for d in dirs:
        int(d.name)  # the official evaluator calls int() on every story folder
        assert sorted(p.name for p in d.iterdir()) == ["image", "story.json"]


def test_story_json_schema_is_exact(small_set):
    for d in _stories(small_set):
        story = json.loads((d / "story.json").read_text(encoding="utf-8-sig"))
        assert list(story) == TOP_KEYS
        assert list(story["Story_type"]) == ["en", "ch"]
        assert all(isinstance(v, str) and v for v in story["Story_type"].values())

        chars = story["Characters"]
        assert isinstance(chars, dict) and chars
        for key, c in chars.items():
            assert list(c) == CHAR_KEYS
            assert c["tag"] in TAGS and c["tag"] != "realistic_human"  # no face encoder for drawn figures
            assert c["name_en"] == key
            for f in ("name_ch", "name_en", "prompt_ch", "prompt_en"):
                assert isinstance(c[f], str) and c[f]
            assert type(c["num_of_appearances"]) is int and c["num_of_appearances"] >= 1

        shots = story["Shots"]
        assert [s["index"] for s in shots] == list(range(1, len(shots) + 1))
        assert SMALL.eval_shots[0] <= len(shots) <= SMALL.eval_shots[1]
        appearances = dict.fromkeys(chars, 0)
        for s in shots:
            assert list(s) == SHOT_KEYS
            assert type(s["index"]) is int
            for f in SHOT_KEYS[1:]:
                assert set(s[f]) == {"en", "ch"}
            for f in (
                "Plot Correspondence",
                "Setting Description",
                "Shot Perspective Design",
                "Static Shot Description",
            ):
                assert all(isinstance(v, str) and v for v in s[f].values())
            en, ch = s["Characters Appearing"]["en"], s["Characters Appearing"]["ch"]
            assert isinstance(en, list) and isinstance(ch, list) and len(en) == len(ch)
            assert all(k in chars for k in en)
            assert ch == [chars[k]["name_ch"] for k in en]
            assert s["Shot Perspective Design"]["en"] in {
                "Close-up shot, eye level shot",
                "Medium shot, eye level shot",
                "Long shot, eye level shot",
            }
            for k in en:
                appearances[k] += 1
        assert appearances == {k: c["num_of_appearances"] for k, c in chars.items()}


def test_official_loader_semantics_keep_every_shot_and_find_every_reference(small_set):
    for d in _stories(small_set):
        story = json.loads((d / "story.json").read_text(encoding="utf-8-sig"))
        for lang in ("en", "ch"):
            kept = [s for s in story["Shots"] if all(f in s for f in FIELD_MAPPING)]
            assert len(kept) == len(story["Shots"])
            for s in kept:
                assert all(lang in s[f] for f in FIELD_MAPPING)
        for key in story["Characters"]:
            refs = sorted((d / "image" / key).glob("*.jpg"))
            assert [r.name for r in refs] == [f"{v:02d}.jpg" for v in range(SMALL.refs_per_character)]


def test_ground_truth_keyframes_use_the_output_layout(small_set):
    run = small_set / "eval/outputs" / Path(*GT_OUTPUT_RUN)
    _method, _mode, lang, stamp = GT_OUTPUT_RUN
    assert lang in ("en", "ch") and len(stamp) == 15 and stamp[8] == "_" and stamp.replace("_", "").isdigit()
    for d in _stories(small_set):
        story = json.loads((d / "story.json").read_text(encoding="utf-8-sig"))
        shots = sorted((run / d.name / "shots").glob("shot_*.png"))
        # shot index = int(name.split('_')[-1].split('.')[0]), 1-based, matched against story.json "index"
        assert [int(p.name.split("_")[-1].split(".")[0]) for p in shots] == [s["index"] for s in story["Shots"]]
        assert (run / d.name / "script.txt").is_file()
        script = json.loads((run / d.name / "script.json").read_text())
        assert script["problems"] == [] and len(script["shots"]) == len(story["Shots"])


def test_repository_reader_loads_the_set(small_set):
    """The `bench` dataset reader (when present) reads the set without adaptation."""
    dataset = pytest.importorskip("bench.dataset")
    for lang in ("en", "ch"):
        stories = dataset.load_dataset(small_set / "eval/ViStory", lang=lang)
        assert len(stories) == SMALL.eval_stories
        for s in stories:
            raw = json.loads((small_set / "eval/ViStory" / s.story_id / "story.json").read_text(encoding="utf-8"))
            assert len(s.shots) == len(raw["Shots"])
            assert list(s.characters) == list(raw["Characters"])
            for shot, raw_shot in zip(s.shots, raw["Shots"]):
                assert list(shot.character_keys) == raw_shot["Characters Appearing"]["en"]
                assert list(shot.character_names) == raw_shot["Characters Appearing"][lang]
            for key in raw["Characters"]:
                assert s.first_ref(key) == small_set / "eval/ViStory" / s.story_id / "image" / key / "00.jpg"


def test_jpg_references_for_jpg_only_readers(tmp_path):
    """``ref_format="jpg"``: the references are found by a ``**/*.jpg`` glob (official Era-A CIDS) and look right."""
    import numpy as np
    from PIL import Image

    from unimage.data.synthdraw import render_reference
    from unimage.data.synthstory import SynthStoryConfig, generate, story_specs

    cfg = SynthStoryConfig(seed=4, train_stories=0, text_stories=0, pairs=0, eval_stories=2, ref_format="jpg")
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    for story in story_specs(cfg)["eval"]:
        d = tmp_path / "a/eval/ViStory" / story.story_id
        assert sorted(p.relative_to(d / "image").as_posix() for p in d.glob("**/*.jpg")) == [
            f"{c.key}/00.jpg" for c in sorted(story.characters, key=lambda c: c.key)
        ]
        for c in story.characters:
            path = d / "image" / c.key / "00.jpg"
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
            got = np.asarray(Image.open(path), dtype=np.int16)
            want = np.asarray(render_reference(c, cfg.ref_side, 0), dtype=np.int16)
            assert np.abs(got - want).mean() < 3.0
