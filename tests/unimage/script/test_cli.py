"""``unimage script parse|format``: output, JSON schema, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from unimage.cli import main

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "script.txt"


def test_parse_example_is_well_formed(capsys):
    assert main(["script", "parse", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "2 character(s), 2 environment(s), 3 shot(s), 0 marker(s), 5 cue(s)" in out
    assert "cue (dialogue, heuristic): That's my father's boat!" in out


def test_format_example_is_canonical(capsys):
    assert main(["script", "format", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == EXAMPLE.read_text(encoding="utf-8")


def test_parse_json_schema(capsys, fixtures_dir):
    path = fixtures_dir / "unimage_scripts" / "unimage_result_12.txt"
    assert main(["script", "parse", str(path), "--json"]) == 1  # one genuine problem: a second <User>
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["user_prompt", "characters", "environments", "shots", "markers", "problems"]
    assert data["characters"][0]["index"] == 1 and data["characters"][0]["description"].startswith("An elderly man")
    shot = data["shots"][0]
    assert list(shot) == ["index", "frame", "video", "mentions", "cues"]
    assert shot["mentions"][0] == {"field": "frame", "kind": "character", "index": 1, "start": 24, "end": 36}
    assert shot["frame"][24:36] == "<Character1>"
    cue = shot["cues"][0]
    assert cue == {
        "field": "video",
        "text": "It's a beautiful day, isn't it?",
        "start": cue["start"],
        "end": cue["end"],
        "complete": True,
        "kind_guess": "dialogue",
    }
    assert shot["video"][cue["start"] : cue["end"]] == "<-It's a beautiful day, isn't it?->"
    assert data["markers"] == [
        {
            "kind": "continuation",
            "tag": "User",
            "position": 6,
            "before_shot": 7,
            "text": "Based on the above script, continue to write the subsequent shot content.",
        }
    ]
    assert data["problems"][0]["line"] == 60 and data["problems"][0]["code"] == "user-as-marker"


def test_problems_go_to_stderr_with_file_positions(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_text("<User>: s.\n<Frame1>: a <Character9>.\n<Video1>: b.\n", encoding="utf-8")
    assert main(["script", "parse", str(path)]) == 1
    captured = capsys.readouterr()
    assert "1 shot(s)" in captured.out
    assert f"{path}:2:13: [undefined-mention] <Character9> is mentioned but never defined" in captured.err


def test_unreadable_files_exit_2(tmp_path, capsys):
    assert main(["script", "parse", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: cannot read" in capsys.readouterr().err
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"<User>: \xff\xfe")
    assert main(["script", "format", str(binary)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["script", "parse", str(tmp_path)]) == 2


def test_console_script_exit_code(tmp_path):
    """The installed entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("unimage")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "unimage"]
    done = subprocess.run(
        [*command, "script", "parse", str(EXAMPLE), "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["problems"] == []
