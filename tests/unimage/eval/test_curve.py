"""The keyframe learning curve: one oracle row per training step, from the run's own last.ckpt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimage.data.synthoracle import METRICS, score_story_dir
from unimage.data.synthstory import GT_OUTPUT_RUN
from unimage.eval import curve


def test_score_of_the_exact_keyframes_is_one(synth: Path) -> None:
    # Known answer: the ground-truth keyframes score 1.0 on every oracle metric that has items.
    ids = sorted(p.stem for p in (synth / "eval" / "ground_truth").glob("*.json"))
    values, shots = curve._score(synth, synth / "eval" / "outputs" / Path(*GT_OUTPUT_RUN), ids)
    assert shots == sum(
        score_story_dir(synth / "eval" / "ground_truth" / f"{i}.json", ".").counts["count_acc"] for i in ids
    )
    assert values["identity_acc"] == 1.0 and values["sky_acc"] == 1.0 and values["count_acc"] == 1.0
    assert all(v in (None, 1.0) for v in values.values())


def test_probe_a_one_step_run(synth: Path, tmp_path: Path) -> None:
    from unimage.train.api import fit

    cfg = {
        "model": {"size": "tiny-synth", "icl_steps": 1, "del_steps": 0, "lr": 1e-3, "attention_backend": "sdpa"},
        "data": {
            "synthstory": str(synth),
            "packer": {"expected_num_tokens": 1024, "max_num_tokens": 2048, "max_num_tokens_per_sample": 2048},
            "images": {"vae_max_size": 64, "vae_min_size": 32, "vit_max_size": 56, "vit_min_size": 28},
        },
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False},
    }
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        curve.probe(run, synth, stories=1, num_timesteps=2)
    fit(cfg, run)
    with pytest.raises(ValueError, match="unknown SamplingConfig field"):
        curve.probe(run, synth, stories=1, sampling={"cfg_scale": 1.0})
    with pytest.raises(ValueError, match="set by the probe's own arguments"):
        curve.probe(run, synth, stories=1, sampling={"num_timesteps": 3})
    assert not (run / "curve").exists()  # refused before anything was exported or rendered
    row = curve.probe(run, synth, stories=2, num_timesteps=2, keep=True, sampling={"cfg_text_scale": 1.0})
    assert row is not None and row["step"] == 1 and row["stories"] == 2
    # The row is the item-weighted mean of the two stories' oracle scores of the kept keyframes.
    shots_dir = run / "curve" / "1" / "outputs" / "curve" / "1" / "en"
    (stamp,) = list(shots_dir.iterdir())
    used = json.loads((stamp / "generation.json").read_text())["settings"]["sampling"]
    assert used["cfg_text_scale"] == 1.0 and used["num_timesteps"] == 2 and used["image_height"] == 64
    scores = [
        score_story_dir(synth / "eval" / "ground_truth" / f"{sid}.json", stamp / sid / "shots")
        for sid in sorted(p.stem for p in (synth / "eval" / "ground_truth").glob("*.json"))[:2]
    ]
    assert row["shots"] == sum(s.counts["count_acc"] for s in scores) > 0
    for m in METRICS:
        n = sum(s.counts[m] for s in scores)
        want = sum((s.values[m] or 0.0) * s.counts[m] for s in scores) / n if n else None
        assert row[m] == pytest.approx(want) if want is not None else row[m] is None
    # The same step is not probed twice; the CSV holds the one row.
    assert curve.probe(run, synth, stories=2, num_timesteps=2) is None
    (saved,) = curve.read_curve(run)
    assert int(saved["step"]) == 1 and float(saved["sky_acc"]) == pytest.approx(row["sky_acc"])
    with pytest.raises(FileNotFoundError, match="not a SynthStory folder"):
        curve.probe(run, tmp_path, stories=1)


def test_cli_sampling_options_are_typed_and_passed_to_the_probe(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        curve.main([str(tmp_path), str(synth), "--cfg-text-scale", "high"])
    assert exit_info.value.code == 2 and "invalid float value: 'high'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the probe's own fields are not sampler options
        curve.main([str(tmp_path), str(synth), "--image-height", "32"])
    seen = {}
    monkeypatch.setattr(curve, "probe", lambda *a, **kw: seen.update(kw))
    assert curve.main([str(tmp_path), str(synth), "--cfg-text-scale", "1.0", "--cfg-interval", "0", "1"]) == 0
    assert seen["sampling"] == {"cfg_text_scale": 1.0, "cfg_interval": (0.0, 1.0)}
