"""ViStoryBench dataset reader: ``<root>/<NN>/story.json`` plus ``<root>/<NN>/image/<Character Key>/*``.

Schema and quirks follow `reference/vistorybench.md` §1 (the official loader
``vistorybench/dataset_loader/dataset_load.py``):

- ``story.json`` is read as ``utf-8-sig`` (some files carry a BOM).
- Each shot needs five fields (Setting Description → ``scene``, Plot Correspondence → ``plot``,
  Characters Appearing → ``character_keys``/``character_names``, Static Shot Description → ``script``,
  Shot Perspective Design → ``camera``); the official loader silently drops incomplete shots, we raise a
  :class:`DatasetError` naming the file and field instead, so a malformed dataset is never scored quietly.
- ``character_keys`` is always the English list (the keys of ``Characters`` and the image folder names);
  ``character_names`` is the list in the requested language.
- Reference images are sorted by file name; "the first reference image" is ``sorted()[0]``.
- Languages are ``en`` and ``ch`` (not ``zh``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.issues import MAX_SHOT_INDEX, Issue, display_path, is_utf8_name, outside
from formats.vistory import IMAGE_FOLDER, LANGS, LITE_IDS, STORY_FILE, StoryFileError, read_story_json

Lang = Literal["en", "ch"]
Split = Literal["full", "lite"]

TAGS: tuple[str, ...] = ("realistic_human", "unrealistic_human", "non_human")
REF_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


# story.json shot field -> our attribute (the five fields every shot must have).
SHOT_FIELDS: dict[str, str] = {
    "Setting Description": "scene",
    "Plot Correspondence": "plot",
    "Characters Appearing": "characters",
    "Static Shot Description": "script",
    "Shot Perspective Design": "camera",
}


class DatasetError(ValueError):
    """A story folder or ``story.json`` does not follow the ViStoryBench schema (message names file and field)."""


@dataclass(frozen=True)
class Character:
    """One character of a story; ``key`` is the English key (also its image folder name)."""

    key: str
    tag: str
    name: str
    prompt: str
    ref_images: tuple[Path, ...]
    cids_refs: tuple[Path, ...] | None = None

    @property
    def jpg_refs(self) -> tuple[Path, ...]:
        """The references official CIDS reads: ``glob('**/*.jpg', recursive=True)``, sorted (quirk ``cids-all-ref-formats``)."""
        return self.ref_images if self.cids_refs is None else self.cids_refs


@dataclass(frozen=True)
class Shot:
    """One shot; ``index`` is the 1-based index from story.json, the key generated images are matched on."""

    index: int
    scene: str
    plot: str
    script: str
    camera: str
    character_keys: tuple[str, ...]
    character_names: tuple[str, ...]


@dataclass(frozen=True)
class Story:
    """A parsed story: shots in file order, characters in JSON order."""

    story_id: str
    lang: str
    story_type: str
    shots: tuple[Shot, ...]
    characters: dict[str, Character] = field(default_factory=dict)
    path: Path | None = None
    issues: tuple[Issue, ...] = ()

    def first_ref(self, key: str) -> Path | None:
        """The first reference image (sorted by name) of character ``key``, or None if it has none."""
        char = self.characters.get(key)
        return char.ref_images[0] if char is not None and char.ref_images else None


def story_ids(root: str | Path) -> list[str]:
    """Numeric story folders under ``root`` that contain a ``story.json``, sorted numerically."""
    return scan_story_ids(root)[0]


def scan_story_ids(root: str | Path) -> tuple[list[str], list[Issue]]:
    """:func:`story_ids` plus an :class:`~bench.issues.Issue` for every folder left out and why.

    A numeric folder without ``story.json`` (``missing_story_json``), a name that is not UTF-8 (``non_utf8_name``)
    and a story folder linked from outside the dataset (``symlink_outside``) are skipped and reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    ids: list[str] = []
    issues: list[Issue] = []
    for p in sorted(root.iterdir()):
        if not is_utf8_name(p.name):
            issues.append(
                Issue(None, "non_utf8_name", "dataset entry name is not valid UTF-8; skipped", None, display_path(p))
            )
            continue
        if not (p.is_dir() and p.name.isdigit()):
            continue
        if outside(p, root):
            issues.append(
                Issue(
                    p.name, "symlink_outside", "story folder links out of the dataset; skipped", None, display_path(p)
                )
            )
        elif not (p / STORY_FILE).is_file():
            issues.append(
                Issue(
                    p.name,
                    "missing_story_json",
                    "story folder has no story.json; skipped",
                    None,
                    display_path(p / STORY_FILE),
                )
            )
        else:
            ids.append(p.name)
    return sorted(ids, key=int), issues


def split_ids(root: str | Path, split: Split = "full") -> list[str]:
    """Story ids of ``split``: all stories present (``full``) or the 20 lite ids present under ``root``."""
    if split not in ("full", "lite"):
        raise ValueError(f"split must be 'full' or 'lite', got {split!r}")
    ids = story_ids(root)
    if split == "lite":
        lite = {int(s) for s in LITE_IDS}
        ids = [s for s in ids if int(s) in lite]
    return ids


def load_story(root: str | Path, story_id: str, lang: str = "en") -> Story:
    """Read ``<root>/<story_id>/story.json`` and its reference images.

    Args:
        root: the dataset root (the folder the official code calls ``ViStory``).
        story_id: folder name, e.g. ``"01"``.
        lang: ``"en"`` or ``"ch"``; selects the text of every bilingual field.

    Returns:
        The parsed :class:`Story`.

    Raises:
        DatasetError: the file is missing, not JSON, or a field is missing or has the wrong type.
    """
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    story_dir = Path(root) / story_id
    path = story_dir / STORY_FILE
    try:
        data = read_story_json(path)
    except StoryFileError as exc:
        raise DatasetError(str(exc)) from exc

    story_type = _lang_text(data.get("Story_type", {"en": "", "ch": ""}), lang, path, "Story_type")
    issues: list[Issue] = []
    characters = _parse_characters(
        _require(data, "Characters", dict, path, "Characters"), story_dir, lang, path, Path(root), issues
    )
    raw_shots = _require(data, "Shots", list, path, "Shots")
    shots = _check_shots(
        [_parse_shot(raw, i, lang, path) for i, raw in enumerate(raw_shots)], characters, story_id, path, issues
    )
    return Story(
        story_id=story_id,
        lang=lang,
        story_type=story_type,
        shots=shots,
        characters=characters,
        path=path,
        issues=tuple(issues),
    )


def _check_shots(
    shots: list[Shot], characters: dict[str, Character], story_id: str, path: Path, issues: list[Issue]
) -> tuple[Shot, ...]:
    """Report unknown characters and absurd indexes; drop (and report) a shot whose index was already used."""
    kept: list[Shot] = []
    seen: set[int] = set()
    where = display_path(path)
    for shot in shots:
        if shot.index in seen:
            issues.append(
                Issue(
                    story_id,
                    "duplicate_shot_index",
                    f"shot index {shot.index} used again; this later shot is dropped",
                    shot.index,
                    where,
                )
            )
            continue
        seen.add(shot.index)
        if not 1 <= shot.index <= MAX_SHOT_INDEX:
            issues.append(
                Issue(
                    story_id,
                    "absurd_shot_index",
                    f"shot index {shot.index} is outside 1..{MAX_SHOT_INDEX}"
                    "; kept, but no image file can be paired with it by number",
                    shot.index,
                    where,
                )
            )
        for key in dict.fromkeys(shot.character_keys):
            if key not in characters:
                issues.append(
                    Issue(
                        story_id,
                        "unknown_character",
                        f"'Characters Appearing' lists {key!r}, which is "
                        "not in 'Characters'; it counts in E but is never matched",
                        shot.index,
                        where,
                    )
                )
        kept.append(shot)
    return tuple(kept)


def load_dataset(
    root: str | Path, split: Split = "full", lang: str = "en", ids: Sequence[str] | None = None
) -> list[Story]:
    """Load every story of ``split`` (or exactly ``ids``) under ``root``."""
    chosen = list(ids) if ids is not None else split_ids(root, split)
    return [load_story(root, sid, lang) for sid in chosen]


##### parsing helpers


def _require(obj: dict[str, Any], key: str, kind: type, path: Path, where: str) -> Any:
    if key not in obj:
        raise DatasetError(f"{path}: missing field {where!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise DatasetError(f"{path}: field {where!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _lang_text(value: Any, lang: str, path: Path, where: str) -> str:
    if not isinstance(value, dict) or lang not in value:
        raise DatasetError(f"{path}: field {where!r} must be an object with key {lang!r}")
    text = value[lang]
    if not isinstance(text, str):
        raise DatasetError(f"{path}: field {where}.{lang} must be a string, got {type(text).__name__}")
    return text


def _parse_characters(
    raw: dict[str, Any], story_dir: Path, lang: str, path: Path, root: Path, issues: list[Issue]
) -> dict[str, Character]:
    chars: dict[str, Character] = {}
    for key, entry in raw.items():
        where = f"Characters.{key}"
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: field {where!r} must be an object")
        tag = _require(entry, "tag", str, path, f"{where}.tag")
        if tag not in TAGS:
            raise DatasetError(f"{path}: field {where}.tag is {tag!r}, expected one of {TAGS}")
        name = _require(entry, f"name_{lang}", str, path, f"{where}.name_{lang}")
        prompt = entry.get(f"prompt_{lang}", "")
        if not isinstance(prompt, str):
            raise DatasetError(f"{path}: field {where}.prompt_{lang} must be a string")
        folder = story_dir / IMAGE_FOLDER / key
        refs = _ref_images(folder, root, story_dir.name, issues)
        chars[key] = Character(
            key=key, tag=tag, name=name, prompt=prompt, ref_images=refs, cids_refs=_jpg_refs(folder, root, refs)
        )
    return chars


def _ref_images(folder: Path, root: Path, story_id: str, issues: list[Issue]) -> tuple[Path, ...]:
    """Reference images (png/jpg/jpeg, sorted by name); undecodable names and links out of the dataset reported."""
    if not folder.is_dir():
        return ()
    found: list[Path] = []
    for p in folder.iterdir():
        if not is_utf8_name(p.name):
            issues.append(
                Issue(
                    story_id, "non_utf8_name", "reference image name is not valid UTF-8; skipped", None, display_path(p)
                )
            )
        elif p.is_file() and p.suffix.lower() in REF_EXTENSIONS:
            if outside(p, root):
                issues.append(
                    Issue(
                        story_id,
                        "symlink_outside",
                        "reference image links out of the dataset; skipped",
                        None,
                        display_path(p),
                    )
                )
            else:
                found.append(p)
    return tuple(sorted(found, key=lambda p: p.name))


def _jpg_refs(folder: Path, root: Path, safe: tuple[Path, ...]) -> tuple[Path, ...]:
    """What official CIDS globs: ``<folder>/**/*.jpg`` (case-sensitive, recursive), sorted as strings."""
    if not folder.is_dir():
        return ()
    direct = {p.name for p in safe}
    out = []
    for name in sorted(glob.glob(os.path.join(glob.escape(str(folder)), "**", "*.jpg"), recursive=True)):
        p = Path(name)
        if p.parent == folder and p.name not in direct:
            continue  # skipped above (not UTF-8, or a link out of the dataset), already reported
        if p.parent != folder and (not is_utf8_name(name) or outside(p, root)):
            continue
        out.append(p)
    return tuple(out)


def _parse_shot(raw: Any, position: int, lang: str, path: Path) -> Shot:
    where = f"Shots[{position}]"
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: {where} must be an object")
    index = _require(raw, "index", int, path, f"{where}.index")
    values: dict[str, Any] = {}
    for json_key, attr in SHOT_FIELDS.items():
        if json_key not in raw:
            raise DatasetError(f"{path}: missing field {where}.{json_key!r}")
        if attr == "characters":
            continue
        values[attr] = _lang_text(raw[json_key], lang, path, f"{where}.{json_key}")
    appearing = raw["Characters Appearing"]
    if not isinstance(appearing, dict) or not isinstance(appearing.get("en"), list):
        raise DatasetError(f"{path}: field {where}.'Characters Appearing'.en must be a list of character keys")
    keys = tuple(appearing["en"])
    names_raw = appearing.get(lang, appearing["en"])
    if not isinstance(names_raw, list) or not all(isinstance(k, str) for k in (*keys, *names_raw)):
        raise DatasetError(f"{path}: field {where}.'Characters Appearing' must hold lists of strings")
    # Keys absent from `Characters` are kept: they count in E (OCCM) but have no references to match against.
    return Shot(index=index, character_keys=keys, character_names=tuple(names_raw), **values)
