"""The README's commands run as written (issue 14 item 9).

A fenced ``bash`` block right after a ``<!-- test -->`` line is a block of commands the README promises: each line
(``\\``-continuations joined, ``#`` comments dropped, ``&&`` chains split) runs, in order, in a scratch folder that
sees the repository's files, and must exit 0. Commands listed in :data:`TINY` get arguments appended that make
them small (fewer stories, fewer steps); the arguments written in the README are all kept, so a command that lacks
a required argument still fails, as it did for ``unimage fit`` without ``--data.synthstory``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = "<!-- test -->"

# Appended to a command that starts with the key: later arguments override earlier ones (argparse, LightningCLI).
TINY: dict[tuple[str, ...], tuple[str, ...]] = {
    ("unimage", "synth"): ("--train-stories", "2", "--text-stories", "2", "--pairs", "2", "--eval-stories", "1"),
    ("unimage", "fit"): ("--model.icl_steps", "2", "--model.del_steps", "1", "--checkpoint.every_n_train_steps", "1"),
}
# Where TINY does not apply: a command that only prints.
NOT_TINY = ("--print_config", "--help", "--dry-run")
_UNRUNNABLE = re.compile(r"\[[^\]]*\]|\.\.\.|^[A-Z][A-Z_]+$")  # [optional] args, ellipses, PLACEHOLDERS


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line in the markdown
    argv: tuple[str, ...]


def marked_commands(markdown: str) -> list[Command]:
    """The commands of every fenced bash block that follows a `MARKER` line, in order.

    Raises:
        ValueError: a marker not followed by a bash fence, an unclosed fence, or a shell construct other than ``&&``.
    """
    lines = markdown.splitlines()
    out: list[Command] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        fence = i + 1
        if fence >= len(lines) or lines[fence].strip() not in ("```bash", "```sh"):
            raise ValueError(f"line {i + 1}: {MARKER} must be followed by a ```bash fence")
        j = fence + 1
        pending, start = "", 0
        while j < len(lines) and lines[j].strip() != "```":
            text = lines[j]
            if not pending:
                start = j + 1
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
            else:
                out.extend(_split(pending + text, start))
                pending = ""
            j += 1
        if j == len(lines):
            raise ValueError(f"line {fence + 1}: the fence is never closed")
        i = j + 1
    return out


def _split(logical: str, line: int) -> list[Command]:
    tokens = shlex.split(logical, comments=True)
    commands, current = [], []
    for tok in [*tokens, "&&"]:
        if tok == "&&":
            if current:
                commands.append(Command(line, tuple(current)))
            current = []
        elif tok in ("|", "||", ";", ">", ">>", "<", "&"):
            raise ValueError(f"line {line}: {tok!r}: only plain commands and && chains are run by the README test")
        else:
            current.append(tok)
    return commands


def tiny(argv: tuple[str, ...]) -> tuple[str, ...]:
    """``argv`` with the small-settings arguments of `TINY` appended (none for printing commands)."""
    if any(a in NOT_TINY for a in argv):
        return argv
    extra = next((v for k, v in TINY.items() if argv[: len(k)] == k), ())
    return argv + extra


# ----------------------------------------------------------------------------------------------- fast checks
def test_marked_blocks_are_found_and_runnable_as_written() -> None:
    commands = marked_commands(README.read_text(encoding="utf-8"))
    assert commands, f"no {MARKER} block in the README"
    for c in commands:
        bad = [a for a in c.argv if _UNRUNNABLE.search(a)]
        assert not bad, f"README line {c.line}: {bad} cannot run as written"
        assert c.argv[0] in ("unimage", "python", "python3"), f"README line {c.line}: unexpected program {c.argv[0]}"


def test_extraction_rules() -> None:
    md = "\n".join(
        [
            "```bash",
            "not marked",
            "```",
            MARKER,
            "```bash",
            "unimage synth --out d   # a comment",
            "unimage fit --config c.yaml \\",
            "    --run_dir r && unimage fit --print_config",
            "",
            "```",
        ]
    )
    assert marked_commands(md) == [
        Command(6, ("unimage", "synth", "--out", "d")),
        Command(7, ("unimage", "fit", "--config", "c.yaml", "--run_dir", "r")),
        Command(7, ("unimage", "fit", "--print_config")),
    ]
    assert tiny(("unimage", "fit", "--print_config")) == ("unimage", "fit", "--print_config")
    assert tiny(("unimage", "synth", "--out", "d"))[-2:] == ("--eval-stories", "1")
    with pytest.raises(ValueError, match="must be followed"):
        marked_commands(f"{MARKER}\ntext\n")
    with pytest.raises(ValueError, match="only plain commands"):
        marked_commands(f"{MARKER}\n```bash\nunimage a | tee x\n```\n")


# ----------------------------------------------------------------------------------------------- the real run
@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for entry in REPO.iterdir():  # the repository's files at their README paths; outputs land in the scratch folder
        if not entry.name.startswith(".") and entry.name not in ("runs", "data"):
            (work / entry.name).symlink_to(entry)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("OMP_NUM_THREADS", "1")
    for c in marked_commands(README.read_text(encoding="utf-8")):
        argv = tiny(c.argv)
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        tail = (proc.stdout + proc.stderr)[-2000:]
        assert proc.returncode == 0, f"README line {c.line}: {shlex.join(argv)} exited {proc.returncode}:\n{tail}"
