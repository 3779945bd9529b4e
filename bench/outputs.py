"""Generated-image layout: the reader, with the official variants (the writer is `formats.vistory.OutputWriter`).

Canonical layout (DESIGN.md §3.3, `reference/vistorybench.md` §2)::

    <outputs>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story_id>/shots/shot_NN.png     NN 1-based

Also read, as the official reader does: language-first ``<method>/<lang>/<mode>/<ts>/``; images directly in
``<story_id>/``; any sub-folder whose name ends with ``shot``/``shots``; nested timestamp folders inside a story
folder (the latest is used); extensions png jpg jpeg gif bmp. The latest timestamp wins unless one is named.

Pairing images with shots:

- ``"index"`` (Era C): shot index = ``int(name.split('_')[-1].split('.')[0])`` matched against the 1-based
  ``index`` of story.json. A 0-based naming (indices ``0..n-1``) is detected, reported and shifted by one
  (what the official ``normalize_shot_filenames.py`` does to the files).
- ``"positional"`` (Eras A and early B): the i-th natsorted image is paired with the i-th shot.

Problems (a shot with no image, an unreadable image, 0-based names, an unparsable name, a count mismatch)
are collected as :class:`OutputIssue` per story; reading never raises for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from bench.dataset import Story
from bench.functional._common import Era
from bench.issues import Issue, count_issues, display_path, is_utf8_name, safe_entries
from formats.vistory import TIMESTAMP_RE, timestamp_key

Pairing = Literal["index", "positional"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".gif", ".bmp")


class OutputsError(ValueError):
    """The outputs folder has no run for the requested method/mode/lang (the message lists what exists)."""


#: Problems found while reading (kept under its old name; see :mod:`bench.issues` for every code).
OutputIssue = Issue


@dataclass
class StoryOutputs:
    """The images of one story: paired per shot (None = no usable image), plus every readable image found."""

    story_id: str
    story_dir: Path
    shots: dict[int, Path | None]
    images: list[Path]
    issues: list[OutputIssue] = field(default_factory=list)

    @property
    def paired(self) -> dict[int, Path]:
        """Shots that have a usable image, in shot order."""
        return {k: v for k, v in self.shots.items() if v is not None}


@dataclass(frozen=True)
class RunDir:
    """One timestamped run folder of a method: ``path`` holds the ``<story_id>/`` folders."""

    path: Path
    method: str
    mode: str
    lang: str
    timestamp: str

    def story_dirs(self) -> dict[str, Path]:
        """Numeric story folders of this run (stray non-numeric folders are ignored, not fatal)."""
        return self.scan_story_dirs()[0]

    def scan_story_dirs(self, root: Path | None = None) -> tuple[dict[str, Path], list[Issue]]:
        """:meth:`story_dirs` plus the folders skipped: names that are not UTF-8, links out of ``root``."""
        issues: list[Issue] = []
        root = root or self.path
        dirs = {p.name: p for p in safe_entries(self.path, root, None, issues) if p.is_dir() and p.name.isdigit()}
        for i, issue in enumerate(issues):
            name = Path(issue.path or "").name
            if name.isdigit():
                issues[i] = Issue(name, issue.kind, issue.detail, None, issue.path)
        return dirs, issues


##### locating runs


def list_modes(outputs: str | Path, method: str) -> list[str]:
    """Modes present for ``method`` (folders that are not language codes)."""
    base = Path(outputs) / method
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and p.name not in ("en", "ch"))


def find_run(
    outputs: str | Path, method: str, mode: str | None = None, lang: str = "en", timestamp: str | None = None
) -> RunDir:
    """Locate the run folder ``<outputs>/<method>/<mode>/<lang>/<ts>`` (or language-first), latest ``ts`` by default.

    Args:
        outputs: root of the outputs tree.
        method: method folder name.
        mode: mode folder; if None and the method has exactly one mode, that one.
        lang: ``en`` or ``ch``.
        timestamp: a specific ``YYYYMMDD_HHMMSS`` folder; None picks the latest.

    Raises:
        OutputsError: nothing matches; the message lists the modes/timestamps that exist.
    """
    base = Path(outputs) / method
    if not base.is_dir():
        raise OutputsError(f"{base}: no outputs for method {method!r}")
    if mode is None:
        modes = list_modes(outputs, method)
        if len(modes) != 1:
            raise OutputsError(f"{base}: pass --mode, the method has modes {modes}")
        mode = modes[0]
    candidates = [base / mode / lang, base / lang / mode]
    for parent in candidates:
        if not parent.is_dir():
            continue
        stamps = sorted(p.name for p in parent.iterdir() if p.is_dir() and TIMESTAMP_RE.match(p.name))
        if timestamp is not None:
            if timestamp in stamps:
                return RunDir(parent / timestamp, method, mode, lang, timestamp)
            raise OutputsError(f"{parent}: timestamp {timestamp!r} not found, have {stamps}")
        if stamps:
            latest = max(stamps, key=timestamp_key)
            return RunDir(parent / latest, method, mode, lang, latest)
    raise OutputsError(f"no timestamped run under {candidates[0]} or {candidates[1]}")


##### reading one story


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders ``shot_2`` before ``shot_10`` (natsort-like)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def shot_number(path: Path) -> int | None:
    """The official shot-number parse: ``int(name.split('_')[-1].split('.')[0])``; None if not an integer."""
    token = path.name.split("_")[-1].split(".")[0]
    return int(token) if token.isdigit() else None


def image_folder(story_dir: Path) -> Path:
    """The folder holding a story's shot images: latest nested timestamp, then a ``*shot(s)`` sub-folder, else itself."""
    return image_folders(story_dir)[0]


def image_folders(
    story_dir: Path, era: Era | None = None, fixes: Sequence[str] = (), issues: list[Issue] | None = None
) -> list[Path]:
    """The folders holding a story's shot images, in reading order, as ``era``'s official reader finds them.

    Nested timestamp folders: officially every one is read (``return_latest=False``), in order; with ``era=None``
    or ``--fix latest-nested-run`` only the latest. Shot sub-folder: Era A accepts only ``shots``/``shot`` (any
    case) or a name ending in 分镜 (``--fix any-shot-folder``: the B/C rule); Eras B/C also any name ending in
    ``shot``/``shots``; with several candidates the official loop keeps the last one (we take sorted order, the
    official code takes the file system's listing order).
    """
    subdirs = sorted(p for p in story_dir.iterdir() if p.is_dir() and is_utf8_name(p.name))
    stamps = [p for p in subdirs if TIMESTAMP_RE.match(p.name)]
    if len(stamps) > 1 and issues is not None:
        issues.append(
            Issue(
                story_dir.name,
                "nested_runs",
                f"{len(stamps)} timestamp folders inside the story folder: "
                + ("latest only" if era is None or "latest-nested-run" in fixes else "all read, as officially"),
                None,
                display_path(story_dir),
            )
        )
    if not stamps:
        targets = [story_dir]
    elif era is None or "latest-nested-run" in fixes:
        targets = [max(stamps, key=lambda p: timestamp_key(p.name))]
    else:
        targets = sorted(stamps, key=lambda p: timestamp_key(p.name))
    return [_shot_folder(t, era, fixes) for t in targets]


def _shot_folder(folder: Path, era: Era | None, fixes: Sequence[str]) -> Path:
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and is_utf8_name(p.name))
    if era == "A" and "any-shot-folder" not in fixes:
        hits = [p for p in subs if p.name.lower() in ("shots", "shot") or p.name.endswith("分镜")]
    elif era is not None:
        hits = [p for p in subs if p.name.lower() in ("shots", "shot") or p.name.endswith(("shot", "shots"))]
    else:
        hits = [p for p in subs if p.name.lower().endswith(("shot", "shots"))][:1]
    return hits[-1] if hits else folder


def list_images(
    folder: Path, root: Path | None = None, story_id: str | None = None, issues: list[Issue] | None = None
) -> list[Path]:
    """Image files directly in ``folder``, natsorted by name.

    Names that are not UTF-8 and links out of ``root`` (default: ``folder``'s grandparent, the run folder's
    level) are skipped and, when ``issues`` is given, reported.
    """
    sink: list[Issue] = [] if issues is None else issues
    entries = safe_entries(folder, root or folder.parent.parent, story_id, sink)
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


def is_readable(path: Path) -> bool:
    """True if PIL can fully decode the file (a truncated or corrupt file is False, never an exception)."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception:
        return False
    return True


def read_story_outputs(
    story: Story,
    story_dir: str | Path,
    pairing: Pairing = "index",
    verify: bool = True,
    era: Era | None = None,
    fixes: Sequence[str] = (),
    root: str | Path | None = None,
) -> StoryOutputs:
    """Find and pair the generated images of ``story`` in ``story_dir``.

    Args:
        story: the parsed story (its shot indices define the expected images).
        story_dir: ``<run>/<story_id>``.
        pairing: ``"index"`` (by the number in the file name, 1-based) or ``"positional"`` (i-th file ↔ i-th shot).
        verify: decode every image once and treat undecodable ones as missing (reported ``unreadable``).
        era: read as that era's official reader does (nested runs, shot folder, 0-based names, duplicate numbers;
            see :mod:`bench.quirks`); None = the canonical reading (latest nested run, 0-based names shifted,
            first duplicate wins).
        fixes: ``--fix`` switches that correct reader quirks.
        root: the outputs tree; links leading out of it are not followed (default: the run folder).

    Returns:
        The :class:`StoryOutputs`, with every problem listed in ``issues``.
    """
    story_dir = Path(story_dir)
    sid = story.story_id
    tree = Path(root) if root is not None else story_dir.parent
    issues: list[Issue] = []
    found: list[Path] = []
    if story_dir.is_dir():
        for folder in image_folders(story_dir, era, fixes, issues):
            found += list_images(folder, tree, sid, issues)
    readable: list[Path] = []
    for p in found:
        if verify and not is_readable(p):
            issues.append(Issue(sid, "unreadable", "cannot be decoded as an image", shot_number(p), display_path(p)))
        else:
            readable.append(p)
    if not found:
        issues.append(Issue(sid, "no_images", "no images found", None, display_path(story_dir)))

    indices = [s.index for s in story.shots]
    numbers = {p: shot_number(p) for p in found}
    shift = _zero_based_shift(numbers, era, fixes, issues, sid, story_dir)
    shots: dict[int, Path | None] = dict.fromkeys(indices)
    if pairing == "positional":
        _pair_by_position(shots, indices, found, readable, issues, sid, story_dir)
    elif pairing == "index":
        last_wins = era in ("B", "C") and "first-duplicate-shot" not in fixes
        for n, p in _pick_by_number(found, numbers, shift, last_wins, issues, sid).items():
            if n in shots and p in readable:
                shots[n] = p
    else:
        raise ValueError(f"pairing must be 'index' or 'positional', got {pairing!r}")

    for idx in indices:
        if shots[idx] is None and not any(
            i.kind == "unreadable" and i.shot is not None and _same_shot(i.shot, idx, shift) for i in issues
        ):
            issues.append(Issue(sid, "missing_shot", f"no usable image for shot {idx}", idx, display_path(story_dir)))
    return StoryOutputs(story_id=sid, story_dir=story_dir, shots=shots, images=readable, issues=issues)


def _zero_based_shift(
    numbers: dict[Path, int | None],
    era: Era | None,
    fixes: Sequence[str],
    issues: list[Issue],
    sid: str,
    story_dir: Path,
) -> bool:
    """Whether shot numbers are shifted by one: files numbered from 0 are, except in eras B/C (reported either way)."""
    parsed = [n for n in numbers.values() if n is not None]
    zero_based = bool(parsed) and min(parsed) == 0
    shift = zero_based and (era not in ("B", "C") or "zero-based-shift" in fixes)
    if zero_based:
        what = "shifted by one to match 1-based indices" if shift else "file N paired with shot N, as officially"
        issues.append(
            Issue(sid, "zero_based", f"shot files are numbered from 0; {what}", None, display_path(story_dir))
        )
    return shift


def _pair_by_position(
    shots: dict[int, Path | None],
    indices: list[int],
    found: list[Path],
    readable: list[Path],
    issues: list[Issue],
    sid: str,
    story_dir: Path,
) -> None:
    """Era A: the i-th natsorted file (readable or not) stands for the i-th shot."""
    for idx, p in zip(indices, found):
        shots[idx] = p if p in readable else None
    if len(found) != len(indices):
        issues.append(
            Issue(
                sid,
                "count_mismatch",
                f"{len(found)} images for {len(indices)} shots (paired by position)",
                None,
                display_path(story_dir),
            )
        )


def _pick_by_number(
    found: list[Path],
    numbers: dict[Path, int | None],
    shift: bool,
    last_wins: bool,
    issues: list[Issue],
    sid: str,
) -> dict[int, Path]:
    """Shot number → file, from the numbers in the file names; of duplicates the first (or the last) is kept."""
    chosen: dict[int, Path] = {}
    for p in found:
        n = numbers[p]
        if n is None:
            issues.append(Issue(sid, "unparsable_name", "no shot number in the file name", None, display_path(p)))
            continue
        n = n + 1 if shift else n
        if n in chosen:
            keep = p if last_wins else chosen[n]
            issues.append(
                Issue(
                    sid,
                    "duplicate_shot_file",
                    f"{chosen[n].name} and {p.name} both number shot {n}; {keep.name} used",
                    n,
                    display_path(p),
                )
            )
            if not last_wins:
                continue
        chosen[n] = p
    return chosen


def _same_shot(number: int, index: int, zero_based: bool) -> bool:
    return number + (1 if zero_based else 0) == index


def summarize_issues(issues: Iterable[Issue]) -> dict[str, int]:
    """Count issues by kind (for the results provenance)."""
    return count_issues(issues)


def all_issues(stories: Sequence[StoryOutputs]) -> list[OutputIssue]:
    """Flatten the issues of several stories."""
    return [i for s in stories for i in s.issues]
