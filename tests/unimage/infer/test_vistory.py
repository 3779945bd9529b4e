"""ViStoryBench generation on the SynthStory evaluation set: conversion, the output layout read by ``bench`` without
adaptation (reader and ``unimage bench evaluate`` with toy backbones), resume after SIGKILL, failure isolation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._helpers.director import FAST
from unimage.infer.vistory import generate_vistory, load_story_json, story_ids, story_to_script
from unimage.script import parse, serialize

REPO = Path(__file__).resolve().parents[3]


def test_story_to_script_on_synthstory(synth_eval):
    story = load_story_json(synth_eval / "01" / "story.json")
    script, indices = story_to_script(story, "en")
    assert indices == [s["index"] for s in story["Shots"]]
    keys = list(story["Characters"])
    assert [c.description.text for c in script.characters] == [story["Characters"][k]["prompt_en"] for k in keys]
    settings = list(dict.fromkeys(s["Setting Description"]["en"] for s in story["Shots"]))
    assert [e.description.text for e in script.environments] == [s if s.endswith(".") else s + "." for s in settings]
    for shot, raw in zip(script.shots, story["Shots"]):
        assert shot.frame is not None and shot.video is not None
        assert shot.frame.text.startswith(raw["Shot Perspective Design"]["en"] + ": ")
        expected = {keys.index(k) + 1 for k in raw["Characters Appearing"]["en"]}
        assert {m.index for m in shot.frame.mentions if m.kind == "character"} == expected
        assert {m.index for m in shot.video.mentions if m.kind == "character"} == expected
        env = settings.index(raw["Setting Description"]["en"]) + 1
        assert [m.index for m in shot.frame.mentions if m.kind == "environment"] == [env]
        for k in raw["Characters Appearing"]["en"]:  # the name is tagged where the text says it
            name = story["Characters"][k]["name_en"]
            assert f"{name}<Character{keys.index(k) + 1}>" in shot.frame.text
    assert parse(serialize(script)).script == script
    ch, _ = story_to_script(story, "ch")
    assert ch.characters[0].description.text == story["Characters"][keys[0]]["prompt_ch"]


def test_story_to_script_rejects_bad_input():
    # a key missing from Characters is kept (as the benchmark's reader does), named without a tag
    lenient, _ = story_to_script(
        {
            "Characters": {},
            "Shots": [{"index": 1, "Static Shot Description": {"en": "Rain."}, "Characters Appearing": {"en": ["Xu"]}}],
        }
    )
    assert lenient.shots[0].frame.text == "Rain. Characters: Xu." and lenient.shots[0].frame.mentions == ()
    with pytest.raises(ValueError, match="character keys"):
        story_to_script({"Characters": {}, "Shots": [{"index": 1, "Characters Appearing": {"en": [3]}}]})
    with pytest.raises(ValueError, match="no shots"):
        story_to_script({"Characters": {}, "Shots": []})
    with pytest.raises(ValueError, match="1-based"):
        story_to_script({"Characters": {}, "Shots": [{"index": 0}]})


def test_layout_is_read_by_bench_without_adaptation(director, synth_eval, tmp_path):
    from bench.cli import run_evaluate  # noqa: F401  (the CLI entry the sweep uses)
    from bench.dataset import load_story
    from bench.outputs import find_run, read_story_outputs
    from unimage.cli import main

    outputs = tmp_path / "outputs"
    report = generate_vistory(synth_eval, director, "unimage", "full", outputs=outputs, progress=False)
    ids = story_ids(synth_eval)
    assert report.generated == ids and report.failed == {} and report.skipped == []
    assert report.keyframes == sum(len(load_story_json(synth_eval / i / "story.json")["Shots"]) for i in ids)

    run = find_run(outputs, "unimage", "full", "en")
    assert run.path == report.run_dir and set(run.story_dirs()) == set(ids)
    for sid in ids:
        story = load_story(synth_eval, sid)
        outs = read_story_outputs(story, run.story_dirs()[sid], pairing="index")
        assert outs.issues == [] and set(outs.paired) == {s.index for s in story.shots}
        saved = json.loads((report.run_dir / sid / "script.json").read_text())
        assert len(saved["shots"]) == len(story.shots)
        assert parse((report.run_dir / sid / "script.txt").read_text()).script.shots

    # the evaluator itself, with the weight-free backbones, on the lite split
    res = tmp_path / "res"
    argv = ["bench", "evaluate", "--dataset", str(synth_eval), "--outputs", str(outputs), "--method", "unimage"]
    argv += ["--split", "lite", "--backbones", "toy", "--judge", "toy", "--out", str(res), "--no-progress"]
    assert main(argv) == 0
    row = json.loads((res / "results_row.json").read_text())
    assert row["n_stories"] == 2 and row["n_missing_shots"] == 0
    assert row["n_images"] == sum(len(load_story_json(synth_eval / i / "story.json")["Shots"]) for i in ("01", "08"))

    again = generate_vistory(synth_eval, director, "unimage", "full", outputs=outputs, progress=False)
    assert again.run_dir == report.run_dir and again.skipped == ids and again.generated == []


_CHILD = """
import sys, torch
torch.set_num_threads(1)
from unimage.infer.config import SamplingConfig
from unimage.infer.vistory import generate_vistory
cfg = SamplingConfig.from_dict({cfg!r})
generate_vistory({ds!r}, {ckpt!r}, "unimage", "arm", outputs={out!r}, config=cfg, stories={stories!r}, progress=False)
"""


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_ckpt, synth_eval, tmp_path):
    from unimage.infer.director import Director

    cfg = FAST.replace(num_timesteps=8)
    stories = ["01", "02", "03"]
    out = tmp_path / "killed"
    code = _CHILD.format(cfg=cfg.to_dict(), ds=str(synth_eval), ckpt=str(tiny_ckpt), out=str(out), stories=stories)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if list(out.glob("unimage/arm/en/*/01/script.json")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the child finished (or failed) before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    [run] = list(out.glob("unimage/arm/en/*"))
    done_before = {p.parent.name for p in run.glob("*/script.json")}
    assert "01" in done_before and done_before != set(stories)
    first = {p: p.stat().st_mtime_ns for p in (run / "01" / "shots").iterdir()}

    director = Director.from_pretrained(tiny_ckpt, config=cfg, device="cpu")
    resumed = generate_vistory(synth_eval, director, "unimage", "arm", outputs=out, stories=stories, progress=False)
    assert resumed.run_dir == run
    assert set(resumed.skipped) == done_before and set(resumed.generated) == set(stories) - done_before
    assert {p: p.stat().st_mtime_ns for p in (run / "01" / "shots").iterdir()} == first  # nothing redone

    clean = generate_vistory(
        synth_eval, director, "unimage", "arm", outputs=tmp_path / "clean", stories=stories, progress=False
    )
    for sid in stories:
        a = sorted((run / sid / "shots").glob("shot_*.png"))
        b = sorted((clean.run_dir / sid / "shots").glob("shot_*.png"))
        assert [p.name for p in a] == [p.name for p in b]
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
        assert (run / sid / "script.txt").read_text() == (clean.run_dir / sid / "script.txt").read_text()
    record = json.loads((run / "generation.json").read_text())
    assert record["stories"] == dict.fromkeys(stories, "done")


def test_failed_story_is_reported_and_the_rest_continue(director, synth_eval, tmp_path):
    ds = tmp_path / "ViStory"
    for sid in ("01", "02"):
        shutil.copytree(synth_eval / sid, ds / sid)
    (ds / "02" / "story.json").write_text("{not json")
    out = tmp_path / "out"
    report = generate_vistory(tmp_path, director, "m", "arm", outputs=out, progress=False)
    assert report.generated == ["01"] and list(report.failed) == ["02"] and "story.json" in report.failed["02"]
    record = json.loads((report.run_dir / "generation.json").read_text())
    assert record["stories"]["01"] == "done" and record["stories"]["02"].startswith("failed")
    assert not (report.run_dir / "02").exists()
    # other settings -> a new run folder; an explicit timestamp of a run with other settings is refused
    other = generate_vistory(
        tmp_path, director.with_config(seed=5), "m", "arm", outputs=out, stories=["01"], progress=False
    )
    assert other.run_dir != report.run_dir
    with pytest.raises(FileExistsError):
        generate_vistory(tmp_path, director, "m", "arm", outputs=out, timestamp=other.timestamp, progress=False)
    with pytest.raises(ValueError, match="not in the full split"):
        generate_vistory(tmp_path, director, "m", "arm", outputs=out, stories=["09"], progress=False)


def test_given_scripts_are_rendered_instead_of_the_story_json_conversion(director, synth_eval, tmp_path):
    """``scripts=``: SynthStory's held-out scripts (its training format) drive generation; a bad one fails alone."""
    scripts = synth_eval.parent / "scripts"
    ids = story_ids(synth_eval)[:2]
    bad = tmp_path / "bad_scripts"
    bad.mkdir()
    (bad / f"{ids[1]}.txt").write_text(
        "<User>: hello\n\n<Frame1>: one shot only.\n<Video1>: still.\n", encoding="utf-8"
    )
    report = generate_vistory(
        synth_eval, director, "unimage", "given", outputs=tmp_path / "o", progress=False, stories=ids, scripts=scripts
    )
    assert report.failed == {} and report.generated == ids
    for sid in ids:
        written = (report.run_dir / sid / "script.txt").read_text(encoding="utf-8")
        assert written == serialize(parse((scripts / f"{sid}.txt").read_text(encoding="utf-8")).script)
        converted, _ = story_to_script(load_story_json(synth_eval / sid / "story.json"))
        assert written != serialize(converted)  # the conversion is another text
    record = json.loads((report.run_dir / "generation.json").read_text())
    assert record["settings"]["scripts"] == str(scripts.resolve())
    other = generate_vistory(
        synth_eval, director, "unimage", "bad", outputs=tmp_path / "o", progress=False, stories=ids, scripts=bad
    )
    assert other.generated == [ids[0]] and "the script has 1 shots" in other.failed[ids[1]]
