"""Generated-image layout: reader (with the official variants) and an atomic writer for generators.

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

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from PIL import Image

from bench.dataset import Story

Pairing = Literal["index", "positional"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
TIMESTAMP_RE = re.compile(r"^\d{8}[_-]\d{6}$")
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"


class OutputsError(ValueError):
    """The outputs folder has no run for the requested method/mode/lang (the message lists what exists)."""


@dataclass(frozen=True)
class OutputIssue:
    """A problem found while reading one story's images; ``kind`` is a short machine-readable tag."""

    story_id: str
    kind: Literal["missing_shot", "unreadable", "zero_based", "unparsable_name", "count_mismatch", "no_images"]
    detail: str
    shot: int | None = None


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
        return {p.name: p for p in sorted(self.path.iterdir()) if p.is_dir() and p.name.isdigit()}


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
            latest = max(stamps, key=lambda s: s.replace("-", "_"))
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
    stamps = sorted(p for p in story_dir.iterdir() if p.is_dir() and TIMESTAMP_RE.match(p.name))
    if stamps:
        story_dir = stamps[-1]
    shots = sorted(p for p in story_dir.iterdir() if p.is_dir() and p.name.lower().endswith(("shot", "shots")))
    return shots[0] if shots else story_dir


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, natsorted by name."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
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
    story: Story, story_dir: str | Path, pairing: Pairing = "index", verify: bool = True
) -> StoryOutputs:
    """Find and pair the generated images of ``story`` in ``story_dir``.

    Args:
        story: the parsed story (its shot indices define the expected images).
        story_dir: ``<run>/<story_id>``.
        pairing: ``"index"`` (by the number in the file name, 1-based) or ``"positional"`` (i-th file ↔ i-th shot).
        verify: decode every image once and treat undecodable ones as missing (reported ``unreadable``).

    Returns:
        The :class:`StoryOutputs`, with every problem listed in ``issues``.
    """
    story_dir = Path(story_dir)
    sid = story.story_id
    issues: list[OutputIssue] = []
    found = list_images(image_folder(story_dir)) if story_dir.is_dir() else []
    readable: list[Path] = []
    for p in found:
        if verify and not is_readable(p):
            issues.append(OutputIssue(sid, "unreadable", f"{p}: cannot be decoded as an image", shot_number(p)))
        else:
            readable.append(p)
    if not found:
        issues.append(OutputIssue(sid, "no_images", f"{story_dir}: no images found"))

    indices = [s.index for s in story.shots]
    numbers = {p: shot_number(p) for p in found}
    parsed = [n for n in numbers.values() if n is not None]
    zero_based = bool(parsed) and min(parsed) == 0
    if zero_based:
        issues.append(
            OutputIssue(
                sid,
                "zero_based",
                f"{story_dir}: shot files are numbered from 0; shifted by one to match 1-based indices",
            )
        )

    shots: dict[int, Path | None] = dict.fromkeys(indices)
    if pairing == "positional":
        # Era A: the i-th natsorted file (readable or not) stands for the i-th shot.
        for idx, p in zip(indices, found):
            shots[idx] = p if p in readable else None
        if len(found) != len(indices):
            issues.append(
                OutputIssue(
                    sid,
                    "count_mismatch",
                    f"{story_dir}: {len(found)} images for {len(indices)} shots (paired by position)",
                )
            )
    elif pairing == "index":
        for p in found:
            n = numbers[p]
            if n is None:
                issues.append(OutputIssue(sid, "unparsable_name", f"{p}: no shot number in the file name"))
                continue
            n = n + 1 if zero_based else n
            if n in shots and p in readable and shots[n] is None:
                shots[n] = p
    else:
        raise ValueError(f"pairing must be 'index' or 'positional', got {pairing!r}")

    for idx in indices:
        if shots[idx] is None and not any(
            i.kind == "unreadable" and i.shot is not None and _same_shot(i.shot, idx, zero_based) for i in issues
        ):
            issues.append(OutputIssue(sid, "missing_shot", f"{story_dir}: no usable image for shot {idx}", idx))
    return StoryOutputs(story_id=sid, story_dir=story_dir, shots=shots, images=readable, issues=issues)


def _same_shot(number: int, index: int, zero_based: bool) -> bool:
    return number + (1 if zero_based else 0) == index


##### writing (used by generators)


def new_timestamp(now: datetime | None = None) -> str:
    """A run timestamp in the official ``YYYYMMDD_HHMMSS`` form."""
    return (now or datetime.now()).strftime(TIMESTAMP_FORMAT)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text variant of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass(frozen=True)
class OutputWriter:
    """Writes one run in the canonical layout; every file is written atomically, so a killed generator leaves no half image."""

    outputs: Path
    method: str
    mode: str
    lang: str = "en"
    timestamp: str = field(default_factory=new_timestamp)

    @property
    def run_dir(self) -> Path:
        """``<outputs>/<method>/<mode>/<lang>/<timestamp>``."""
        return Path(self.outputs) / self.method / self.mode / self.lang / self.timestamp

    def shot_path(self, story_id: str, index: int) -> Path:
        """Path of shot ``index`` (1-based) of ``story_id``."""
        if index < 1:
            raise ValueError(f"shot index is 1-based, got {index}")
        return self.run_dir / story_id / "shots" / f"shot_{index:02d}.png"

    def write_shot(self, story_id: str, index: int, image: Image.Image) -> Path:
        """Save ``image`` as PNG at :meth:`shot_path` atomically and return the path."""
        import io

        buf = io.BytesIO()
        image.save(buf, format="PNG")
        path = self.shot_path(story_id, index)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def write_text(self, story_id: str, name: str, text: str) -> Path:
        """Save a text file (e.g. ``script.json``, ``script.txt``) beside the story's shots."""
        path = self.run_dir / story_id / name
        atomic_write_text(path, text)
        return path

    def done_shots(self, story_id: str) -> set[int]:
        """Shot indices already written (lets a generator resume instead of redo)."""
        folder = self.run_dir / story_id / "shots"
        if not folder.is_dir():
            return set()
        return {n for p in list_images(folder) if (n := shot_number(p)) is not None}


def summarize_issues(issues: Iterable[OutputIssue]) -> dict[str, int]:
    """Count issues by kind (for the results provenance)."""
    counts: dict[str, int] = {}
    for i in issues:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return counts


def all_issues(stories: Sequence[StoryOutputs]) -> list[OutputIssue]:
    """Flatten the issues of several stories."""
    return [i for s in stories for i in s.issues]
