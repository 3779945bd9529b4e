"""``unimage script parse|format``: thin commands over :mod:`unimage.script`.

Exit codes: 0 well-formed, 1 problems found (the structure is still printed), 2 the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unimage.script.cues import guess_cue_kind
from unimage.script.model import ParseResult, Script
from unimage.script.parse import parse
from unimage.script.serialize import serialize, to_dict


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``parse`` and ``format`` subcommands."""
    sub = parser.add_subparsers(dest="script_command", metavar="ACTION", required=True)
    p = sub.add_parser("parse", help="print the structure and problems of a script file")
    p.add_argument("file", type=Path, help="script text file (UTF-8)")
    p.add_argument("--json", action="store_true", help="print JSON (schema in the README) instead of a summary")
    p.set_defaults(func=run_parse)
    f = sub.add_parser("format", help="print the canonical text of a script file")
    f.add_argument("file", type=Path, help="script text file (UTF-8)")
    f.set_defaults(func=run_format)


def read_script_file(path: Path) -> str | None:
    """The file's text, or None after printing why it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        print(f"unimage script: {path}: not UTF-8 text (byte {exc.start}: {exc.reason})", file=sys.stderr)
    except OSError as exc:
        print(f"unimage script: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
    return None


def run_parse(args: argparse.Namespace) -> int:
    """``unimage script parse FILE [--json]``."""
    text = read_script_file(args.file)
    if text is None:
        return 2
    result = parse(text, source=str(args.file))
    if args.json:
        print(json.dumps(to_dict(result.script, result.problems), indent=2, ensure_ascii=False))
    else:
        print(summary(result.script))
        _print_problems(args.file, result)
    return 0 if result.ok else 1


def run_format(args: argparse.Namespace) -> int:
    """``unimage script format FILE``: canonical text on stdout, problems on stderr."""
    text = read_script_file(args.file)
    if text is None:
        return 2
    result = parse(text, source=str(args.file))
    sys.stdout.write(serialize(result.script))
    _print_problems(args.file, result)
    return 0 if result.ok else 1


def _print_problems(path: Path, result: ParseResult) -> None:
    for p in result.problems:
        print(f"{path}:{p}", file=sys.stderr)
    if result.problems:
        print(f"{path}: {len(result.problems)} problem(s)", file=sys.stderr)


def summary(script: Script, width: int = 100) -> str:
    """A human-readable overview: counts, global entries, one line per shot and marker."""

    def short(text: str) -> str:
        return text if len(text) <= width else text[: width - 3] + "..."

    n_cues = sum(len(d.cues) for s in script.shots for d in (s.frame, s.video) if d is not None)
    lines = [
        f"user prompt: {short(script.user_prompt or '(missing)')}",
        f"{len(script.characters)} character(s), {len(script.environments)} environment(s), "
        f"{len(script.shots)} shot(s), {len(script.markers)} marker(s), {n_cues} cue(s)",
    ]
    lines += [f"  <Character{c.index}> {short(c.description.text)}" for c in script.characters]
    lines += [f"  <Environment{e.index}> {short(e.description.text)}" for e in script.environments]
    for position in range(len(script.shots) + 1):
        for m in script.markers:
            if m.position == position:
                lines.append(f"  [{m.kind}] {short(m.text)}")
        if position == len(script.shots):
            break
        shot = script.shots[position]
        desc = shot.frame or shot.video
        lines.append(f"  shot {shot.index}: {short(desc.text if desc else '')}")
        for cue in shot.video.cues if shot.video else ():
            lines.append(f"      cue ({guess_cue_kind(cue.text)}, heuristic): {short(cue.text)}")
    return "\n".join(lines)
