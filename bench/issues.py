"""Problems found in the dataset or the outputs tree: each one a counted, named record, never a crash or a silence.

An evaluation goes on past every problem below; each is written to ``issues.json`` (``code``, ``story``, ``shot``,
``path``, ``detail``) and counted per code in the results row, so a user can see what was left out and why.

| code | where | what happened |
|---|---|---|
| ``missing_shot`` | outputs | a shot has no usable image |
| ``unreadable`` | outputs | an image file cannot be decoded (the shot counts as missing) |
| ``zero_based`` | outputs | shot files numbered from 0 (shifted or not, per era) |
| ``unparsable_name`` | outputs | no shot number in an image file name (the official reader crashes) |
| ``count_mismatch`` | outputs | positional pairing with more or fewer images than shots |
| ``no_images`` | outputs | a story folder without images |
| ``duplicate_shot_file`` | outputs | two image files carry one shot number |
| ``nested_runs`` | outputs | a story folder holds several timestamp folders |
| ``several_runs`` | outputs | the method folder holds several run timestamps (only one is read) |
| ``non_utf8_name`` | both | a file or folder name that is not valid UTF-8 (skipped) |
| ``symlink_outside`` | both | a symbolic link that leads out of the dataset or outputs tree (not followed) |
| ``missing_story_json`` | dataset | a numeric story folder without ``story.json`` (skipped) |
| ``unknown_character`` | dataset | a key in "Characters Appearing" that is not in "Characters" (counts in E, never matched) |
| ``duplicate_shot_index`` | dataset | two shots with one index (the later one is dropped) |
| ``absurd_shot_index`` | dataset | a shot index below 1 or above :data:`MAX_SHOT_INDEX` (kept; no file can pair with it) |
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Shot indices above this are reported as absurd (ViStoryBench stories have 4–30 shots).
MAX_SHOT_INDEX = 999


@dataclass(frozen=True)
class Issue:
    """One problem; ``kind`` is its machine-readable code (see the module table)."""

    story_id: str | None
    kind: str
    detail: str
    shot: int | None = None
    path: str | None = None

    @property
    def code(self) -> str:
        """Alias of ``kind``."""
        return self.kind

    def record(self) -> dict[str, Any]:
        """The ``issues.json`` entry."""
        return {"code": self.kind, "story": self.story_id, "shot": self.shot, "path": self.path, "detail": self.detail}


def display_path(path: str | Path) -> str:
    """A path that is always valid UTF-8 (undecodable bytes shown as ``\\xNN``), so writing it never fails."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ascii(text)[1:-1]
    return text


def is_utf8_name(name: str) -> bool:
    """False for a name the OS gave back with surrogate escapes (its bytes are not UTF-8)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def outside(path: Path, root: Path) -> bool:
    """True if ``path`` is a symbolic link whose target lies outside ``root`` (or is broken)."""
    if not path.is_symlink():
        return False
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return True
    return not target.is_relative_to(root.resolve())


def safe_entries(
    folder: Path, root: Path, story_id: str | None, issues: list[Issue], shot: int | None = None
) -> list[Path]:
    """The entries of ``folder`` that are safe to read: UTF-8 names, no links out of ``root``; the rest reported."""
    out: list[Path] = []
    for p in sorted(folder.iterdir()):
        if not is_utf8_name(p.name):
            issues.append(Issue(story_id, "non_utf8_name", "name is not valid UTF-8; skipped", shot, display_path(p)))
        elif outside(p, root):
            issues.append(
                Issue(
                    story_id,
                    "symlink_outside",
                    f"symbolic link out of {display_path(root)}; not followed",
                    shot,
                    display_path(p),
                )
            )
        else:
            out.append(p)
    return out


def count_issues(issues: Iterable[Issue]) -> dict[str, int]:
    """Number of issues per code, sorted by code."""
    counts: dict[str, int] = {}
    for i in issues:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return dict(sorted(counts.items()))
