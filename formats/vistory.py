"""ViStoryBench layouts (DESIGN.md §3.3, `reference/vistorybench.md` §1–2) and the one writer of generated outputs.

Dataset::

    <root>/<NN>/story.json                   read as utf-8-sig (some files carry a BOM)
    <root>/<NN>/image/<Character Key>/*      reference images (folder name = the English character key)

``<root>`` is the folder the official code calls ``ViStory``; `dataset_root` also accepts its parent.

Generated outputs (what the official evaluator reads, so it also reads ours)::

    <outputs>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story_id>/shots/shot_NN.png    NN = the 1-based story.json index
    <outputs>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story_id>/script.txt, script.json

The official reader also accepts ``-`` between date and time (`TIMESTAMP_RE`); we always write ``_``. Every file is
written atomically (:mod:`fsio.atomic`), and a story's ``script.json`` last, so a story folder whose ``script.json``
and shots all exist is complete (`OutputWriter.story_done`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import fsio

__all__ = [
    "DATASET_FOLDER",
    "IMAGE_FOLDER",
    "LANGS",
    "LITE_IDS",
    "SCRIPT_JSON",
    "SCRIPT_TXT",
    "SHOTS_FOLDER",
    "STORY_FILE",
    "TIMESTAMP_FORMAT",
    "TIMESTAMP_RE",
    "OutputWriter",
    "SavesPNG",
    "StoryFileError",
    "check_timestamp",
    "dataset_root",
    "free_timestamp",
    "is_canonical_timestamp",
    "new_timestamp",
    "png_bytes",
    "read_story_json",
    "run_dir",
    "script_json_text",
    "shot_name",
    "timestamp_key",
]

##### dataset layout

#: The dataset folder name the official evaluator hard-codes (``data/dataset/ViStory``).
DATASET_FOLDER = "ViStory"
STORY_FILE = "story.json"
IMAGE_FOLDER = "image"
LANGS: tuple[str, ...] = ("en", "ch")

#: The lite split, hard-coded in the official loader and in ``bench_total_avg.py`` (`reference/vistorybench.md` §1).
LITE_IDS: tuple[str, ...] = (
    "01", "08", "09", "15", "17", "19", "24", "27", "28", "29",
    "32", "41", "52", "53", "55", "57", "60", "64", "68", "79",
)  # fmt: skip


class StoryFileError(ValueError):
    """A ``story.json`` is missing, not UTF-8 JSON, or not a JSON object (the message names the file)."""


def read_story_json(path: str | Path) -> dict[str, Any]:
    """Read one ``story.json`` as the official loader does (``utf-8-sig``: with or without a BOM).

    Only the container is checked here (a JSON object); the fields are the readers' business (`bench.dataset` checks
    every field, the generator the few it converts).

    Raises:
        StoryFileError: the file is missing, unreadable, not UTF-8 JSON, or its top level is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise StoryFileError(f"{path}: story.json not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoryFileError(f"{path}: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise StoryFileError(f"{path}: top level must be an object, got {type(data).__name__}")
    return data


def dataset_root(dataset: str | Path) -> Path:
    """The folder holding ``<NN>/story.json``: ``dataset`` itself, or its ``ViStory`` sub-folder when it has no stories.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(dataset)
    if (root / DATASET_FOLDER).is_dir() and not any(p.name.isdigit() for p in root.iterdir() if p.is_dir()):
        root = root / DATASET_FOLDER
    if not root.is_dir():
        raise FileNotFoundError(f"ViStoryBench dataset folder not found: {root}")
    return root


##### run timestamps

TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
#: A run-timestamp folder name as the official reader accepts it (``^\d{8}[_-]\d{6}$``).
TIMESTAMP_RE = re.compile(r"^\d{8}[_-]\d{6}$")


def new_timestamp(now: datetime | None = None) -> str:
    """A run timestamp in the canonical ``YYYYMMDD_HHMMSS`` form (local time, as the official scripts)."""
    return (now or datetime.now()).strftime(TIMESTAMP_FORMAT)


def is_canonical_timestamp(name: str) -> bool:
    """Whether ``name`` is a timestamp in the form writers use, ``YYYYMMDD_HHMMSS`` (readers also accept ``-``)."""
    return bool(TIMESTAMP_RE.match(name)) and name[8] == "_"


def check_timestamp(timestamp: str) -> str:
    """``timestamp`` if `is_canonical_timestamp`.

    Raises:
        ValueError: any other string.
    """
    if not is_canonical_timestamp(timestamp):
        raise ValueError(f"timestamp {timestamp!r} is not YYYYMMDD_HHMMSS")
    return timestamp


def timestamp_key(name: str) -> str:
    """Sort key of a timestamp folder name: ``-`` and ``_`` forms order together (latest = the largest key)."""
    return name.replace("-", "_")


def free_timestamp(parent: str | Path, now: datetime | None = None) -> str:
    """A new timestamp for a run folder under ``parent``: now, or the first later second with no folder yet."""
    moment = now or datetime.now()
    while (Path(parent) / new_timestamp(moment)).exists():
        moment += timedelta(seconds=1)
    return new_timestamp(moment)


##### generated-output layout

SHOTS_FOLDER = "shots"
SCRIPT_TXT = "script.txt"
SCRIPT_JSON = "script.json"


def run_dir(outputs: str | Path, method: str, mode: str, lang: str, timestamp: str) -> Path:
    """``<outputs>/<method>/<mode>/<lang>/<timestamp>``, the folder holding one run's ``<story_id>/`` folders."""
    return Path(outputs) / method / mode / lang / timestamp


def shot_name(index: int) -> str:
    """``shot_NN.png`` for the 1-based shot ``index`` (two digits at least, as the official examples).

    Raises:
        ValueError: ``index`` < 1 (a 0-based name would be paired with the wrong shot by Eras B/C).
    """
    if index < 1:
        raise ValueError(f"shot index is 1-based, got {index}")
    return f"shot_{index:02d}.png"


class SavesPNG(Protocol):
    """An image that can save itself as PNG (``PIL.Image.Image``); this module never imports PIL."""

    def save(self, fp: Any, format: str | None = ...) -> Any:
        """Write the image to ``fp`` in ``format``."""
        ...


def png_bytes(image: bytes | SavesPNG) -> bytes:
    """``image`` as PNG bytes: bytes are taken as already encoded, an image is saved with PIL's PNG defaults."""
    if isinstance(image, bytes):
        return image
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def script_json_text(data: Mapping[str, Any]) -> str:
    """The text of a ``script.json``: indented UTF-8 JSON (non-ASCII kept), one final newline."""
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


@dataclass(frozen=True)
class OutputWriter:
    """Writes one run in the canonical output layout; every file atomically, so a killed generator leaves no half file.

    Attributes:
        outputs: The outputs root.
        method: ``<method>`` folder.
        mode: ``<mode>`` folder.
        lang: ``<lang>`` folder (``en`` or ``ch``).
        timestamp: ``<timestamp>`` folder; a new canonical one by default.
        durable: ``fsync`` every file (see `fsio.atomic_writer`).
    """

    outputs: Path
    method: str
    mode: str
    lang: str = "en"
    timestamp: str = field(default_factory=new_timestamp)
    durable: bool = True

    def __post_init__(self) -> None:
        for name in ("method", "mode", "lang"):
            value = getattr(self, name)
            if not value or "/" in value or "\\" in value or value in (".", "..") or value.strip() != value:
                raise ValueError(f"{name} must be a plain folder name, got {value!r}")
        check_timestamp(self.timestamp)

    @property
    def run_dir(self) -> Path:
        """``<outputs>/<method>/<mode>/<lang>/<timestamp>``."""
        return run_dir(self.outputs, self.method, self.mode, self.lang, self.timestamp)

    def story_dir(self, story_id: str) -> Path:
        """``<run_dir>/<story_id>``."""
        return self.run_dir / story_id

    def shot_path(self, story_id: str, index: int) -> Path:
        """Path of shot ``index`` (1-based) of ``story_id``."""
        return self.story_dir(story_id) / SHOTS_FOLDER / shot_name(index)

    def script_path(self, story_id: str, kind: str = "json") -> Path:
        """``script.json`` (``kind="json"``) or ``script.txt`` (``"txt"``) of ``story_id``."""
        if kind not in ("json", "txt"):
            raise ValueError(f"script kind must be 'json' or 'txt', got {kind!r}")
        return self.story_dir(story_id) / (SCRIPT_JSON if kind == "json" else SCRIPT_TXT)

    def write_shot(self, story_id: str, index: int, image: bytes | SavesPNG) -> Path:
        """Write ``image`` (PNG bytes, or an image saved as PNG) at `shot_path`; returns the path."""
        return fsio.atomic_write_bytes(self.shot_path(story_id, index), png_bytes(image), durable=self.durable)

    def write_script(self, story_id: str, text: str | None = None, data: Mapping[str, Any] | None = None) -> list[Path]:
        """Write ``script.txt`` (``text``) and then ``script.json`` (``data``, see `script_json_text`); returns the paths.

        ``script.json`` goes last because it marks the story as finished (`story_done`).
        """
        paths = []
        if text is not None:
            paths.append(fsio.atomic_write_text(self.script_path(story_id, "txt"), text, durable=self.durable))
        if data is not None:
            path = self.script_path(story_id, "json")
            paths.append(fsio.atomic_write_text(path, script_json_text(data), durable=self.durable))
        return paths

    def story_done(self, story_id: str, indices: Iterable[int]) -> bool:
        """Whether ``story_id`` is finished: its ``script.json`` and the shots ``indices`` all exist."""
        return self.script_path(story_id).is_file() and all(self.shot_path(story_id, i).is_file() for i in indices)

    def done_shots(self, story_id: str) -> set[int]:
        """Shot indices already written as ``shot_NN.png`` (lets a generator resume instead of redo)."""
        folder = self.story_dir(story_id) / SHOTS_FOLDER
        if not folder.is_dir():
            return set()
        found = (re.fullmatch(r"shot_(\d+)\.png", p.name) for p in folder.iterdir() if p.is_file())
        return {int(m.group(1)) for m in found if m is not None}
