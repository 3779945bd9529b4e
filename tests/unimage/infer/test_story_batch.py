"""``generate_vistory(batch_stories=N)``: stories rendered in lockstep give the one-at-a-time PNGs; failures stay
isolated; resume works across batch sizes."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests._helpers.director import FAST
from unimage.infer.director import Director
from unimage.infer.vistory import generate_vistory, load_story_json, story_ids, story_to_script


def _pngs(run, sid):
    return {
        p.name: np.asarray(Image.open(io.BytesIO(p.read_bytes())), dtype=np.int16)
        for p in (run / sid).glob("shots/*.png")
    }


def test_batched_stories_give_the_single_story_keyframes(director, synth_eval, tmp_path):
    ids = story_ids(synth_eval)
    shots = {sid: len(load_story_json(synth_eval / sid / "story.json")["Shots"]) for sid in ids}
    assert len(ids) >= 3 and len(set(shots.values())) > 1  # groups with different shot counts (stories drop out)
    one = generate_vistory(synth_eval, director, "m", "one", outputs=tmp_path, progress=False)
    three = generate_vistory(synth_eval, director, "m", "three", outputs=tmp_path, progress=False, batch_stories=3)
    assert one.generated == three.generated == ids and not one.failed and not three.failed
    assert one.keyframes == three.keyframes == sum(shots.values())
    diffs, flips, pixels = [], 0, 0
    for sid in ids:
        a, b = _pngs(one.run_dir, sid), _pngs(three.run_dir, sid)
        assert sorted(a) == sorted(b) and len(a) == shots[sid]
        for name in a:
            d = np.abs(a[name] - b[name])
            diffs.append(int(d.max()))
            flips, pixels = flips + int((d > 0).sum()), pixels + d.size
        assert (one.run_dir / sid / "script.json").read_bytes() == (three.run_dir / sid / "script.json").read_bytes()
    # Same seeds per story; only float summation order differs: at most a rare 1-level flip after uint8 rounding.
    assert max(diffs) <= 1 and flips / pixels < 0.01, (max(diffs), flips / pixels)
    first = [_pngs(one.run_dir, sid)["shot_01.png"] for sid in ids[:2]]
    assert np.abs(first[0] - first[1]).max() > 10  # stories differ, so the equality is not vacuous


def test_failing_story_in_a_group_fails_alone(director, synth_eval, tmp_path, monkeypatch):
    ds = tmp_path / "ViStory"
    for sid in ("01", "02", "03"):
        shutil.copytree(synth_eval / sid, ds / sid)
    bad = story_to_script(load_story_json(ds / "02" / "story.json"))[0]
    original = Director.id_token_ids

    def broken(self, script, shot_position):
        if script == bad and shot_position == 1:  # story 02 fails at its second keyframe
            raise RuntimeError("boom")
        return original(self, script, shot_position)

    monkeypatch.setattr(Director, "id_token_ids", broken)
    report = generate_vistory(tmp_path, director, "m", "arm", outputs=tmp_path / "out", progress=False, batch_stories=3)
    assert report.generated == ["01", "03"] and list(report.failed) == ["02"] and "boom" in report.failed["02"]
    record = json.loads((report.run_dir / "generation.json").read_text())
    assert record["stories"] == {"01": "done", "02": "failed: RuntimeError: boom", "03": "done"}
    assert not (report.run_dir / "02" / "script.json").exists()

    monkeypatch.setattr(Director, "id_token_ids", original)  # resume with another batch size: only 02 is rendered
    again = generate_vistory(tmp_path, director, "m", "arm", outputs=tmp_path / "out", progress=False, batch_stories=2)
    assert again.run_dir == report.run_dir and again.skipped == ["01", "03"] and again.generated == ["02"]
    with pytest.raises(ValueError, match="batch_stories"):
        generate_vistory(tmp_path, director, "m", "arm", outputs=tmp_path / "out", progress=False, batch_stories=0)


def test_render_lockstep_with_id_prompting_equals_render_iter(tiny_ckpt_id, synth_eval):

    director = Director.from_pretrained(tiny_ckpt_id, config=FAST, device="cpu")
    assert director.model.config.layout.id_prompting
    scripts = [story_to_script(load_story_json(synth_eval / sid / "story.json"))[0] for sid in ("01", "02")]
    scripts[1] = dataclasses.replace(scripts[1], shots=scripts[1].shots[:1])  # drops out after round 1
    batched: dict[int, list] = {0: [], 1: []}
    for i, image in director.render_lockstep(scripts, [7, 8]):
        batched[i].append(np.asarray(image, dtype=np.int16))
    for i, seed in enumerate([7, 8]):
        alone = [np.asarray(im, dtype=np.int16) for im in director.with_config(seed=seed).render_iter(scripts[i])]
        assert len(alone) == len(batched[i]) == len(scripts[i].shots)
        for a, b in zip(alone, batched[i]):
            assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01
    with pytest.raises(ValueError, match="1 seeds for 2 scripts"):
        next(director.render_lockstep(scripts, [1]))


def test_cli_batch_stories_flag(tiny_ckpt, synth_eval, tmp_path, capsys):
    from unimage.cli import main

    argv = ["generate-vistory", "--dataset", str(synth_eval), "--ckpt", str(tiny_ckpt), "--method", "m", "--mode", "a"]
    argv += ["--outputs", str(tmp_path), "--stories", "01", "02", "--device", "cpu", "--no-progress"]
    argv += ["--steps", "2", "--height", "32", "--width", "32"]
    assert main([*argv, "--batch-stories", "0"]) == 2
    assert "batch_stories must be >= 1" in capsys.readouterr().err
    assert main([*argv, "--batch-stories", "2"]) == 0
    assert "2 generated" in capsys.readouterr().err
    (run,) = (tmp_path / "m" / "a" / "en").iterdir()
    for sid in ("01", "02"):
        shots = len(load_story_json(synth_eval / sid / "story.json")["Shots"])
        assert len(list((run / sid / "shots").glob("shot_*.png"))) == shots and (run / sid / "script.json").is_file()
