"""``unimage synth``: the thin CLI over `unimage.data.synthstory.generate`."""

from __future__ import annotations

import json

from unimage.cli import main


def test_synth_command_writes_and_resumes(tmp_path, capsys):
    args = [
        "synth",
        "--out",
        str(tmp_path / "s"),
        "--seed",
        "3",
        "--train-stories",
        "2",
        "--eval-stories",
        "2",
        "--image-size",
        "64",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    meta = json.loads((tmp_path / "s/synthstory.json").read_text())
    assert meta["complete"] is True
    assert meta["config"]["seed"] == 3 and meta["config"]["image_size"] == 64
    assert meta["counts"]["train"] == 2 and meta["counts"]["eval"] == 2 and meta["counts"]["text"] == 2
    assert "0 already complete" in first
    assert main(args) == 0
    assert " 0 files written" in capsys.readouterr().out


def test_synth_command_reports_bad_input(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "a"), "--image-size", "8"]) == 2
    assert "image_size must be in [32, 4096], got 8" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "b"), "--train-stories", "1", "--eval-stories", "1"]) == 0
    assert (
        main(["synth", "--out", str(tmp_path / "b"), "--train-stories", "1", "--eval-stories", "1", "--seed", "9"]) == 2
    )
    assert "refusing to mix" in capsys.readouterr().err


def test_help_lists_synth(capsys):
    assert main([]) == 0
    assert "synth" in capsys.readouterr().out
