"""Hostile and careless inputs (issue 14 item 6): each one a counted, named issue in the results; the run goes on."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.backbones import load_backbones
from bench.evaluate import EvalConfig, evaluate
from bench.judge.toy import ToyJudge

RUN = Path("toy-method") / "base" / "en" / "20250102_030405"


def run(dataset: Path, outputs: Path, out: Path, metrics=("csd", "cids", "occm", "aesthetic", "diversity")):
    cfg = EvalConfig(dataset, outputs, "toy-method", era="A", metrics=metrics, out=out, progress=False)
    report = evaluate(cfg, load_backbones("toy"), ToyJudge())
    issues = json.loads((out / "issues.json").read_text(encoding="utf-8"))
    return report, issues


def find(issues: dict, code: str) -> list[dict]:
    return [i for i in issues["issues"] if i.get("code", i.get("kind")) == code]


def edit_story(dataset: Path, sid: str, fn) -> None:
    path = dataset / sid / "story.json"
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    fn(data)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.skipif(os.name != "posix", reason="needs a file system that takes raw bytes in names")
def test_non_utf8_file_names_are_named_and_skipped(bench_data, tmp_path):
    dataset, outputs = bench_data
    shots = outputs / RUN / "01" / "shots"
    bad = os.path.join(os.fsencode(shots), b"shot_\xff\xfe.png")
    shutil.copyfile(shots / "shot_01.png", bad)
    ref_dir = dataset / "02" / "image" / "Fox"
    shutil.copyfile(ref_dir / "01.jpg", os.path.join(os.fsencode(ref_dir), b"\xe9t\xe9.jpg"))
    report, issues = run(dataset, outputs, tmp_path / "o")
    hits = find(issues, "non_utf8_name")
    assert {(i["story"], i["path"].rsplit("/", 1)[-1]) for i in hits} == {("01", "shot_\\udcff\\udcfe.png"),
                                                                         ("02", "\\udce9t\\udce9.jpg")}  # fmt: skip
    assert report.row["issue_counts"]["non_utf8_name"] == 2 and not report.failed
    assert report.row["n_stories"] == 3


def test_story_folder_without_story_json_is_reported(bench_data, tmp_path):
    dataset, outputs = bench_data
    (dataset / "05" / "image").mkdir(parents=True)
    (outputs / RUN / "05" / "shots").mkdir(parents=True)
    report, issues = run(dataset, outputs, tmp_path / "o", metrics=("aesthetic",))
    (hit,) = find(issues, "missing_story_json")
    assert hit["story"] == "05" and hit["path"].endswith("05/story.json")
    assert issues["skipped_stories"] == {"05": "no story.json"} and report.row["n_skipped_stories"] == 1


def test_symlinks_out_of_the_tree_are_not_followed(bench_data, tmp_path):
    dataset, outputs = bench_data
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    shots = outputs / RUN / "01" / "shots"
    shutil.move(shots / "shot_03.png", secret / "shot_03.png")
    (shots / "shot_03.png").symlink_to(secret / "shot_03.png")
    inside = outputs / "spare.png"
    shutil.copyfile(shots / "shot_01.png", inside)
    (shots / "shot_04.png").unlink()
    (shots / "shot_04.png").symlink_to(inside)  # a link that stays inside the outputs tree is followed
    ref = dataset / "01" / "image" / "Alice" / "00.png"
    shutil.move(ref, secret / "alice.png")
    ref.symlink_to(secret / "alice.png")
    report, issues = run(dataset, outputs, tmp_path / "o", metrics=("aesthetic", "cids"))
    hits = {(i["story"], Path(i["path"]).name) for i in find(issues, "symlink_outside")}
    assert hits == {("01", "shot_03.png"), ("01", "00.png")}
    # Era A pairs by position: three files for four shots, so the last shot has none
    assert ("01", 4) in {(i["story"], i["shot"]) for i in find(issues, "missing_shot")}
    aest = json.loads((tmp_path / "o" / "metrics" / "aesthetic" / "story_results.json").read_text())
    assert aest["01"]["details"]["n_images"] == 3  # shot_03 not read, shot_04 (inside link) read
    assert not report.failed


def test_unknown_character_in_characters_appearing(bench_data, tmp_path):
    dataset, outputs = bench_data
    edit_story(dataset, "01", lambda d: d["Shots"][0]["Characters Appearing"]["en"].append("Mallory"))
    report, issues = run(dataset, outputs, tmp_path / "o", metrics=("occm", "cids"))
    (unknown,) = find(issues, "unknown_character")
    assert (unknown["story"], unknown["shot"]) == ("01", 1) and "Mallory" in unknown["detail"]
    assert unknown["path"].endswith("01/story.json") and not report.failed
    occm = [json.loads(x) for x in (tmp_path / "o" / "metrics" / "occm" / "items.jsonl").read_text().splitlines()]
    assert next(i for i in occm if (i["story_id"], i["shot"]) == ("01", 1))["expected"] == 2  # counts in E


def test_duplicate_shot_index(bench_data, tmp_path):
    dataset, outputs = bench_data
    edit_story(dataset, "01", lambda d: d["Shots"].append(dict(d["Shots"][1])))  # index 2 again
    report, issues = run(dataset, outputs, tmp_path / "o", metrics=("occm",))
    (dup,) = find(issues, "duplicate_shot_index")
    assert (dup["story"], dup["shot"]) == ("01", 2) and report.row["issue_counts"]["duplicate_shot_index"] == 1
    occm = json.loads((tmp_path / "o" / "metrics" / "occm" / "story_results.json").read_text())
    assert occm["01"]["details"]["n_shots"] == 4  # the later duplicate is dropped


def test_absurd_shot_indexes(bench_data, tmp_path):
    dataset, outputs = bench_data
    edit_story(
        dataset, "01", lambda d: d["Shots"].extend([{**d["Shots"][2], "index": 10**9}, {**d["Shots"][2], "index": -3}])
    )
    report, issues = run(dataset, outputs, tmp_path / "o", metrics=("occm",))
    assert {(i["story"], i["shot"]) for i in find(issues, "absurd_shot_index")} == {("01", 10**9), ("01", -3)}
    assert report.row["issue_counts"]["absurd_shot_index"] == 2 and not report.failed
    occm = json.loads((tmp_path / "o" / "metrics" / "occm" / "story_results.json").read_text())
    assert occm["01"]["details"]["n_shots"] == 6  # kept (Era A pairs by position: they get no image)
