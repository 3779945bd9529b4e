"""Outputs layout: run discovery, accepted variants, pairing, per-story problems; the writer's output read back."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from bench.dataset import load_story
from bench.outputs import OutputsError, find_run, list_modes, read_story_outputs, shot_number
from formats.vistory import OutputWriter
from fsio import atomic_write_bytes
from tests.bench.conftest import build_dataset, build_outputs, draw_shot


@pytest.fixture
def data(tmp_path):
    return build_dataset(tmp_path / "ViStory"), build_outputs(tmp_path / "outputs"), tmp_path


def kinds(outs):
    return sorted(i.kind for i in outs.issues)


def test_find_run_latest_and_errors(data):
    _, outputs, _ = data
    run = find_run(outputs, "toy-method")  # only one mode → picked
    assert run.timestamp == "20250102_030405"
    assert run.mode == "base"
    assert sorted(run.story_dirs()) == ["01", "02", "08"]
    assert find_run(outputs, "toy-method", "base", timestamp="20240101_000000").timestamp == "20240101_000000"
    with pytest.raises(OutputsError, match="no outputs for method"):
        find_run(outputs, "other")
    with pytest.raises(OutputsError, match="timestamp '20990101_000000' not found"):
        find_run(outputs, "toy-method", timestamp="20990101_000000")
    (outputs / "toy-method" / "second").mkdir()
    assert list_modes(outputs, "toy-method") == ["base", "second"]
    with pytest.raises(OutputsError, match="pass --mode"):
        find_run(outputs, "toy-method")
    with pytest.raises(OutputsError, match="no timestamped run"):
        find_run(outputs, "toy-method", "base", lang="ch")


def test_language_first_layout(data):
    _, outputs, _ = data
    shutil.move(outputs / "toy-method" / "base" / "en", outputs / "tmp-en")
    (outputs / "toy-method" / "en").mkdir()
    shutil.move(outputs / "tmp-en", outputs / "toy-method" / "en" / "base")
    run = find_run(outputs, "toy-method", "base", "en")
    assert run.path == outputs / "toy-method" / "en" / "base" / "20250102_030405"


def test_index_pairing_and_issues(data):
    root, outputs, _ = data
    run = find_run(outputs, "toy-method")
    ok = read_story_outputs(load_story(root, "01"), run.path / "01", "index")
    assert kinds(ok) == []
    assert {k: v.name for k, v in ok.paired.items()} == {
        1: "shot_01.png",
        2: "shot_02.png",
        3: "shot_03.png",
        4: "shot_04.png",
    }

    missing = read_story_outputs(load_story(root, "02"), run.path / "02", "index")
    assert kinds(missing) == ["missing_shot"]
    assert missing.shots[2] is None and missing.paired[3].name == "shot_03.png"

    zero = read_story_outputs(load_story(root, "08"), run.path / "08", "index")
    assert kinds(zero) == ["unreadable", "zero_based"]
    # shifted by one: shot 1 ↔ shot_00.png; the last shot's file is corrupt → None, reported as unreadable
    assert zero.shots[1].name == "shot_00.png" and zero.shots[3].name == "shot_02.png" and zero.shots[4] is None
    assert len(zero.images) == 3


def test_positional_pairing(data):
    root, outputs, _ = data
    run = find_run(outputs, "toy-method")
    pos = read_story_outputs(load_story(root, "02"), run.path / "02", "positional")
    # Era A pairs the i-th file with the i-th shot: shot_03.png stands for shot 2, shot 3 has none.
    assert pos.shots[2].name == "shot_03.png" and pos.shots[3] is None
    assert kinds(pos) == ["count_mismatch", "missing_shot"]
    with pytest.raises(ValueError, match="pairing"):
        read_story_outputs(load_story(root, "02"), run.path / "02", "diagonal")  # type: ignore[arg-type]


def test_variants_flat_folder_nested_timestamp_and_names(data):
    root, _, tmp = data
    story = load_story(root, "01")
    flat = tmp / "flat" / "01"
    flat.mkdir(parents=True)
    for i in (1, 2, 3, 4):
        draw_shot("01", ["Alice"]).save(flat / f"{i}.jpg")  # images directly in the story folder, "3.jpg" → 3
    (flat / "cover.png").write_bytes((flat / "1.jpg").read_bytes())
    out = read_story_outputs(story, flat, "index")
    assert sorted(out.paired) == [1, 2, 3, 4]
    assert kinds(out) == ["unparsable_name"]
    assert len(out.images) == 5  # every image found still counts for self-CSD / aesthetics

    nested = tmp / "nested" / "01" / "20250101_000000" / "my_shots"
    nested.mkdir(parents=True)
    draw_shot("01", ["Bob"]).save(nested / "shot_1.png")
    out = read_story_outputs(story, tmp / "nested" / "01", "index")
    assert list(out.paired) == [1] and kinds(out).count("missing_shot") == 3

    empty = tmp / "empty" / "01"
    empty.mkdir(parents=True)
    assert "no_images" in kinds(read_story_outputs(story, empty, "index"))
    assert shot_number(flat / "shot_07.png") == 7 and shot_number(flat / "cover.png") is None


def test_writer_roundtrip_atomic_and_resumable(tmp_path):
    root = build_dataset(tmp_path / "ViStory")
    story = load_story(root, "01")
    w = OutputWriter(tmp_path / "outs", "ours", "default", "en", "20250505_101010")
    for shot in story.shots[:3]:
        w.write_shot("01", shot.index, draw_shot("01", list(shot.character_keys)))
    w.write_script("01", "3 shots", {})
    assert w.done_shots("01") == {1, 2, 3}
    assert w.shot_path("01", 3).name == "shot_03.png"
    with pytest.raises(ValueError, match="1-based"):
        w.shot_path("01", 0)
    run = find_run(tmp_path / "outs", "ours")
    out = read_story_outputs(story, run.path / "01", "index")
    assert sorted(out.paired) == [1, 2, 3] and [i.shot for i in out.issues] == [4]
    assert not [p for p in (run.path / "01").rglob("*") if p.name.startswith(".")]  # no temporary files left
    Image.open(w.shot_path("01", 1)).verify()


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
