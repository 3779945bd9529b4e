"""Each era reads the outputs tree as its official reader does (ViStoryBench `read_outputs.py` at a4933ed and at
e67e43e/514cc31), with every deviation from the canonical layout reported; the fixes give the canonical reading."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench.dataset import load_story
from bench.evaluate import EvalConfig
from bench.outputs import read_story_outputs


def png(path: Path, colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def story_01(bench_data):
    dataset, _ = bench_data
    return load_story(dataset, "01")  # 4 shots


def test_era_b_pairs_by_file_number_a_by_position():
    assert EvalConfig(Path("d"), Path("o"), "m", era="B").resolved_pairing == "index"
    assert EvalConfig(Path("d"), Path("o"), "m", era="C").resolved_pairing == "index"
    assert EvalConfig(Path("d"), Path("o"), "m", era="A").resolved_pairing == "positional"


def test_zero_based_names_era_c_file_n_is_shot_n(bench_data, tmp_path):
    story = story_01(bench_data)
    d = tmp_path / "01" / "shots"
    files = [png(d / f"shot_{i:02d}.png", (i, 0, 0)) for i in range(4)]
    official = read_story_outputs(story, tmp_path / "01", "index", era="C")
    assert official.shots == {1: files[1], 2: files[2], 3: files[3], 4: None}
    fixed = read_story_outputs(story, tmp_path / "01", "index", era="C", fixes=("zero-based-shift",))
    assert fixed.shots == {1: files[0], 2: files[1], 3: files[2], 4: files[3]}
    assert "zero_based" in {i.kind for i in official.issues}


def test_nested_timestamps_era_a_concatenates_b_c_merge(bench_data, tmp_path):
    story = story_01(bench_data)
    sd = tmp_path / "01"
    old = [png(sd / "20250101_000000" / "shots" / f"shot_{i:02d}.png") for i in (1, 2, 3, 4)]
    new = [png(sd / "20250202_000000" / "shots" / f"shot_{i:02d}.png") for i in (2, 3)]
    a = read_story_outputs(story, sd, "positional", era="A")
    assert list(a.shots.values()) == old  # 6 files by position: the first 4 are the older run's
    assert {"nested_runs", "count_mismatch"} <= {i.kind for i in a.issues}
    c = read_story_outputs(story, sd, "index", era="C")
    assert c.shots == {1: old[0], 2: new[0], 3: new[1], 4: old[3]}  # merged, the later folder wins
    latest = read_story_outputs(story, sd, "index", era="C", fixes=("latest-nested-run",))
    assert latest.shots == {1: None, 2: new[0], 3: new[1], 4: None}


def test_duplicate_shot_numbers_last_wins_officially(bench_data, tmp_path):
    story = story_01(bench_data)
    d = tmp_path / "01" / "shots"
    jpg = d / "shot_01.jpg"
    png(d / "tmp.png").rename(jpg)
    p = png(d / "shot_01.png")
    b = read_story_outputs(story, tmp_path / "01", "index", era="B")
    assert b.shots[1] == p  # natural order: .jpg then .png; the official dict keeps the last
    (dup,) = [i for i in b.issues if i.kind == "duplicate_shot_file"]
    assert dup.shot == 1 and dup.path is not None
    first = read_story_outputs(story, tmp_path / "01", "index", era="B", fixes=("first-duplicate-shot",))
    assert first.shots[1] == jpg


def test_era_a_shot_folder_must_be_named_shots(bench_data, tmp_path):
    story = story_01(bench_data)
    sd = tmp_path / "01"
    inside = [png(sd / "gen_shots" / f"shot_{i:02d}.png") for i in (1, 2, 3, 4)]
    top = png(sd / "shot_01.png")
    a = read_story_outputs(story, sd, "positional", era="A")
    assert a.shots[1] == top and a.shots[2] is None  # Era A reads the story folder itself
    c = read_story_outputs(story, sd, "index", era="C")
    assert list(c.shots.values()) == inside  # B/C accept any name ending in "shots"
    fixed = read_story_outputs(story, sd, "positional", era="A", fixes=("any-shot-folder",))
    assert list(fixed.shots.values()) == inside
