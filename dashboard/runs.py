"""Reading run directories (DESIGN.md §3.4) and plain ViStoryBench output folders (§3.3) for the dashboard.

A *storyboard set* is one generated set of stories: ``<outputs>/<method>/<mode>/<lang>/<timestamp>/``, holding
``<story_id>/shots/shot_NN.png`` (or images directly in ``<story_id>/``) plus ``script.json``/``script.txt``.
Sets found under ``<runs>/<sweep>/<arm>/outputs/`` belong to the group ``<sweep>`` and are labelled by the arm;
sets in a plain output folder belong to a group named after that folder and are labelled ``method/mode``.

Everything here only reads files; nothing trusts a path that did not come from walking the configured roots.
The functions are pure (no Streamlit); `cached_catalog` and friends wrap them with ``st.cache_data``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from formats.results import RESULT_COLUMNS, RESULTS_ROW_FILE
from formats.rundir import ARM_MARKERS, PROVENANCE_FILE, STATUS_FILE
from formats.vistory import SHOTS_FOLDER, TIMESTAMP_RE

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
LANGS = ("en", "ch", "zh")
SKIP_DIRS = {"checkpoints", "__pycache__", "node_modules", "metrics"}
MAX_DEPTH = 12

# Published ViStoryBench keys (reference/vistorybench.md §9) -> (column, factor to the paper's scale).
_OFFICIAL_KEYS: dict[str, tuple[str, float]] = {
    "self_csd": ("csd_self", 100.0),
    "cross_csd": ("csd_cross", 100.0),
    "cids_self_mean": ("cids_self", 100.0),
    "cids_cross_mean": ("cids_cross", 100.0),
    "aesthetic_score": ("aesthetics", 1.0),
    "inception_score": ("inception", 1.0),
}
_ALIGN_SUBSCORES = ("scene", "camera", "global_character_action", "single_character_action")


class RunReadError(ValueError):
    """A file in a run directory exists but cannot be read; the message names the file."""


@dataclass(frozen=True)
class StoryboardSet:
    """One column the Storyboards page can show: a method's or an arm's generated stories."""

    key: str
    group: str
    label: str
    root: str
    base: str
    method: str
    mode: str
    lang: str
    timestamp: str
    arm_dir: str | None = None
    stories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """Every storyboard set and every arm directory found under the configured roots."""

    roots: tuple[str, ...]
    sets: tuple[StoryboardSet, ...] = ()
    arms: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def groups(self) -> list[str]:
        return sorted({s.group for s in self.sets})

    def in_group(self, group: str, lang: str | None = None) -> list[StoryboardSet]:
        return [s for s in self.sets if s.group == group and (lang is None or s.lang == lang)]

    def by_key(self, key: str) -> StoryboardSet:
        for s in self.sets:
            if s.key == key:
                return s
        raise KeyError(key)


@dataclass(frozen=True)
class Shot:
    index: int
    image: str | None


@dataclass
class _Found:
    arm_dir: Path | None
    outputs_root: Path
    method: str
    mode: str
    lang: str
    timestamp: str
    base: Path
    stories: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------- discovery
def scan(roots: Iterable[str]) -> Catalog:
    """Walk the roots and return every storyboard set (the latest timestamp per method/mode/lang) and arm.

    Args:
        roots: Directories given with ``--runs``; a root may be a runs directory, one sweep, one arm, or a plain
            ViStoryBench outputs folder.
    """
    roots_t = tuple(str(Path(r).resolve()) for r in roots)
    found: list[_Found] = []
    arms: set[str] = set()
    problems: list[str] = []
    for root in roots_t:
        if not Path(root).is_dir():
            problems.append(f"{root}: not a directory")
            continue
        for d in _walk(Path(root), 0):
            if _is_arm(d):
                arms.add(str(d))
            if TIMESTAMP_RE.match(d.name):
                item = _as_set(d)
                if item is not None:
                    found.append(item)
    found.extend(_external_sets(arms, {str(f.arm_dir) for f in found if f.arm_dir}, roots_t))
    latest: dict[tuple[str, str, str, str, str], _Found] = {}
    for f in found:
        k = (str(f.arm_dir), str(f.outputs_root), f.method, f.mode, f.lang)
        if k not in latest or f.timestamp > latest[k].timestamp:
            latest[k] = f
    sets = _label(list(latest.values()), roots_t)
    return Catalog(roots=roots_t, sets=tuple(sets), arms=tuple(sorted(arms)), problems=tuple(problems))


def _external_sets(arms: set[str], with_outputs: set[str], roots: tuple[str, ...]) -> list[_Found]:
    """Storyboards of arms that only evaluate another system's folder (no ``outputs/`` of their own).

    The evaluator records the folder it scored in ``metrics/metadata.json`` (``run_dir``); it is used only when it
    lies inside the configured roots, like every other image source.
    """
    out: list[_Found] = []
    for arm in sorted(arms - with_outputs):
        meta = Path(arm) / "metrics" / "metadata.json"
        try:
            run_dir = read_json(meta).get("run_dir") if meta.is_file() else None
        except (RunReadError, AttributeError):
            continue
        if not isinstance(run_dir, str):
            continue
        ts = Path(os.path.realpath(run_dir))
        if not (ts.is_dir() and TIMESTAMP_RE.match(ts.name) and any(ts.is_relative_to(r) for r in roots)):
            continue
        item = _as_set(ts)
        if item is not None:
            item.arm_dir = Path(arm)
            out.append(item)
    return out


def _walk(d: Path, depth: int) -> Iterator[Path]:
    yield d
    if depth >= MAX_DEPTH or TIMESTAMP_RE.match(d.name):
        return
    try:
        entries = sorted(os.scandir(d), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith(".") or e.name in SKIP_DIRS or e.name.isdigit():
            continue
        if e.is_dir(follow_symlinks=False):
            yield from _walk(Path(e.path), depth + 1)


def _is_arm(d: Path) -> bool:
    return any((d / m).is_file() for m in ARM_MARKERS) and ((d / "outputs").is_dir() or (d / "metrics").is_dir())


def _as_set(ts: Path) -> _Found | None:
    stories = tuple(sorted((e.name for e in os.scandir(ts) if e.is_dir() and e.name.isdigit()), key=int))
    if not stories or len(ts.parents) < 4:
        return None
    a, b, c = ts.parents[2].name, ts.parents[1].name, ts.parents[0].name
    if b in LANGS and c not in LANGS:  # language-first variant <method>/<lang>/<mode>/<ts>
        method, lang, mode = a, b, c
    else:
        method, mode, lang = a, b, c
    outputs_root = ts.parents[3]
    arm = outputs_root.parent if outputs_root.name == "outputs" and _is_arm(outputs_root.parent) else None
    return _Found(arm, outputs_root, method, mode, lang, ts.name, ts, stories)


def _label(found: list[_Found], roots: tuple[str, ...]) -> list[StoryboardSet]:
    per_arm: dict[str, int] = {}
    for f in found:
        if f.arm_dir is not None:
            per_arm[str(f.arm_dir)] = per_arm.get(str(f.arm_dir), 0) + 1
    out: list[StoryboardSet] = []
    for f in found:
        root = next(r for r in roots if f.base.is_relative_to(r))
        if f.arm_dir is not None:
            group = f.arm_dir.parent.name
            several = {(g.method, g.mode) for g in found if g.arm_dir == f.arm_dir}
            label = f.arm_dir.name if len(several) == 1 else f"{f.arm_dir.name}:{f.method}/{f.mode}"
        else:
            rel = f.outputs_root.relative_to(root) if f.outputs_root != Path(root) else Path(Path(root).name)
            group = rel.as_posix()
            label = f"{f.method}/{f.mode}"
        out.append(
            StoryboardSet(
                key=f"{group}::{label}::{f.lang}",
                group=group,
                label=label,
                root=root,
                base=str(f.base),
                method=f.method,
                mode=f.mode,
                lang=f.lang,
                timestamp=f.timestamp,
                arm_dir=str(f.arm_dir) if f.arm_dir else None,
                stories=f.stories,
            )
        )
    out.sort(key=lambda s: (s.group, s.lang, s.label))
    return out


# ----------------------------------------------------------------------------------------------- stories
def story_dir(sb: StoryboardSet, story_id: str) -> Path:
    """The folder of one story of a set (the id must be one the scan found, so no traversal is possible)."""
    if story_id not in sb.stories:
        raise KeyError(f"story {story_id!r} not in {sb.label}")
    return Path(sb.base) / story_id


def shots(sb: StoryboardSet, story_id: str) -> list[Shot]:
    """The story's shots by 1-based index (from ``shot_NN.png``; ``shots/`` or images directly in the story dir)."""
    d = story_dir(sb, story_id)
    folder = d / SHOTS_FOLDER if (d / SHOTS_FOLDER).is_dir() else d
    result: dict[int, str] = {}
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        stem, ext = os.path.splitext(e.name)
        if ext.lower() not in IMAGE_EXTS or not e.is_file():
            continue
        tail = stem.split("_")[-1]
        if tail.isdigit():
            result.setdefault(int(tail), e.path)
    return [Shot(i, result[i]) for i in sorted(result)]


# ----------------------------------------------------------------------------------------------- json files
def read_json(path: Path) -> Any:
    """Read a JSON file; a malformed file raises `RunReadError` naming it."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunReadError(f"{path}: cannot read JSON ({exc})") from exc


def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """All finite numeric leaves of a JSON tree as ``{"a.b.c": value}`` (booleans excluded)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
        out[prefix[:-1]] = float(obj)
    return out


def to_columns(flat: dict[str, float]) -> dict[str, float]:
    """Map flattened metric keys to the results-table columns (§3.5), on the paper's scales.

    Keys already named like the columns are taken as they are (the evaluator's own row); the official
    ViStoryBench keys are rescaled (CSD/CIDS ×100; OCCM is written on 0–100 already). Alignment, when only its
    four 0–4 sub-scores are present, is 25 × their mean (the paper's definition).
    """
    leaf: dict[str, float] = {}
    for k, v in flat.items():
        leaf.setdefault(k.rsplit(".", 1)[-1], v)
    cols: dict[str, float] = {c: leaf[c] for c in RESULT_COLUMNS if c in leaf}
    for k, (col, factor) in _OFFICIAL_KEYS.items():
        if col not in cols and k in leaf:
            cols[col] = leaf[k] * factor
    if "alignment" not in cols:
        subs = [leaf.get(s, leaf.get(s.replace("global_", ""))) for s in _ALIGN_SUBSCORES]
        if all(s is not None for s in subs):
            cols["alignment"] = 25.0 * sum(subs) / len(subs)  # type: ignore[arg-type]
    return cols


def provenance(arm_dir: str) -> dict[str, Any]:
    """``provenance.json`` of an arm (else the evaluator's ``metrics/provenance.json``; {} when neither exists)."""
    p = Path(arm_dir) / PROVENANCE_FILE
    if not p.is_file():
        p = Path(arm_dir) / "metrics" / PROVENANCE_FILE  # the evaluator's record, for arms that only evaluate
    data = read_json(p) if p.is_file() else {}
    if not isinstance(data, dict):
        raise RunReadError(f"{p}: expected a JSON object")
    return data


def status(arm_dir: str) -> dict[str, Any]:
    """``status.json`` of an arm ({} when absent)."""
    p = Path(arm_dir) / STATUS_FILE
    data = read_json(p) if p.is_file() else {}
    return data if isinstance(data, dict) else {}


def _find_key(obj: Any, names: tuple[str, ...]) -> Any:
    if isinstance(obj, dict):
        for n in names:
            if n in obj and not isinstance(obj[n], dict):
                return obj[n]
        for v in obj.values():
            found = _find_key(v, names)
            if found is not None:
                return found
    return None


def describe(prov: dict[str, Any]) -> dict[str, str]:
    """Split / era / backbones / judge named in a provenance record (``""`` when not recorded)."""

    def s(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, list):
            return ",".join(map(str, v))
        return str(v)

    return {
        "split": s(_find_key(prov, ("split", "dataset_split"))),
        "era": s(_find_key(prov, ("era", "metric_era"))),
        "backbones": s(_find_key(prov, ("backbones", "backbone"))),
        "judge": s(_find_key(prov, ("judge_model", "judge"))),
    }


SPLITS = ("full", "lite")
_ARM_LEVEL_FILES = {
    "summary.json",
    "results_row.json",
    "provenance.json",
    "metadata.json",
    "manifest.json",
    "issues.json",
}


def summary_rows(arm_dir: str) -> list[dict[str, Any]]:
    """Results-table rows of one arm.

    ``metrics/results_row.json`` (the evaluator's §3.5 row) is used when present; otherwise ``metrics/summary.json``
    (official per-metric means, either one split or ``{split: {metric: ...}}``) is mapped to the columns.
    """
    m = Path(arm_dir) / "metrics"
    info = describe(provenance(arm_dir))
    row_path = m / RESULTS_ROW_FILE
    if row_path.is_file():
        data = read_json(row_path)
        if not isinstance(data, dict):
            raise RunReadError(f"{row_path}: expected a JSON object")
        own = describe(data)
        row: dict[str, Any] = {k: own[k] or info[k] for k in ("split", "era", "backbones", "judge")}
        for c in RESULT_COLUMNS:
            v = data.get(c)
            row[c] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        if isinstance(data.get("comparable_with_published"), bool):
            row["comparable"] = data["comparable_with_published"]
        return [row]
    p = m / "summary.json"
    if not p.is_file():
        return []
    data = read_json(p)
    if not isinstance(data, dict):
        raise RunReadError(f"{p}: expected a JSON object")
    by_split = {k: v for k, v in data.items() if k in SPLITS and isinstance(v, dict)}
    parts = by_split or {info["split"] or "": data}
    rows = []
    for split, tree in parts.items():
        era = tree["era"] if isinstance(tree.get("era"), str) else info["era"]
        row = {"split": split, "era": era, "backbones": info["backbones"], "judge": info["judge"]}
        row.update(to_columns(flatten_numbers(tree)))
        rows.append(row)
    return rows


def story_metrics(arm_dir: str) -> dict[str, dict[str, float]]:
    """Per-story metric values of an arm, merged over the per-story files under ``metrics/``.

    Reads ``metrics/<metric>/story_results.json`` (the official layout: story id -> {"metrics": {...}}), any other
    JSON object keyed by story ids, and ``metrics/**/<story_id>.json`` files. Unreadable files are skipped here
    (the Results page lists them via `story_metric_problems`).
    """
    out: dict[str, dict[str, float]] = {}
    for path, problem in _story_files(arm_dir):
        if problem:
            continue
        data = read_json(path)
        metric = path.parent.name if path.parent.name != "metrics" else ""
        if path.stem.isdigit():
            entries = {path.stem: data}
        elif isinstance(data, dict) and data and all(str(k).isdigit() for k in data):
            entries = data
        else:
            continue
        for sid, val in entries.items():
            tree = val.get("metrics", val) if isinstance(val, dict) else val
            flat = flatten_numbers(tree, f"{metric}." if metric else "")
            out.setdefault(str(sid), {}).update(flat)
    return out


def story_metric_problems(arm_dir: str) -> list[str]:
    """Messages for per-story metric files that could not be read."""
    return [problem for _, problem in _story_files(arm_dir) if problem]


def _story_files(arm_dir: str) -> Iterator[tuple[Path, str]]:
    m = Path(arm_dir) / "metrics"
    if not m.is_dir():
        return
    for path in sorted(m.rglob("*.json")):
        if path.parent == m and path.name in _ARM_LEVEL_FILES:
            continue
        if "units" in path.relative_to(m).parts:  # the evaluator's resume records duplicate story_results.json
            continue
        try:
            read_json(path)
        except RunReadError as exc:
            yield path, str(exc)
            continue
        yield path, ""


def story_columns(values: dict[str, float]) -> dict[str, float]:
    """Per-story values mapped to the results-table columns (same rules as `to_columns`)."""
    return to_columns(values)


def results_table(catalog: Catalog) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (sweep, arm, split, era): the results table across all arms found (§3.5).

    Returns:
        The rows, and one message per arm whose metric files could not be read (the other arms still count).
    """
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for arm in catalog.arms:
        try:
            arm_rows = summary_rows(arm)
        except RunReadError as exc:
            problems.append(str(exc))
            continue
        for r in arm_rows:
            rows.append({"sweep": Path(arm).parent.name, "arm": Path(arm).name, "arm_dir": arm, **r})
    return rows, problems


# ----------------------------------------------------------------------------------------------- cached views
@st.cache_data(ttl=30, show_spinner=False)
def cached_catalog(roots: tuple[str, ...]) -> Catalog:
    """`scan` cached for 30 s: new runs appear without restarting the app."""
    return scan(roots)


@st.cache_data(ttl=30, show_spinner=False, max_entries=512)
def cached_shots(sb: StoryboardSet, story_id: str) -> list[Shot]:
    return shots(sb, story_id)


@st.cache_data(ttl=30, show_spinner=False, max_entries=256)
def cached_story_metrics(arm_dir: str) -> dict[str, dict[str, float]]:
    return story_metrics(arm_dir)


@st.cache_data(ttl=30, show_spinner=False)
def cached_results_table(catalog: Catalog) -> tuple[list[dict[str, Any]], list[str]]:
    return results_table(catalog)


def find_set(catalog: Catalog, source: str | None, method: str, story_id: str) -> StoryboardSet | None:
    """The storyboard set a study panel refers to (a method name plus an optional run directory / outputs root).

    ``source`` may be the set's timestamp folder, an arm directory, or an outputs root; only sets that the scan of
    the configured roots found are candidates, so a source outside the roots matches nothing.
    """
    having = [x for x in catalog.sets if story_id in x.stories]
    if source:
        src = os.path.realpath(source)
        having = [x for x in having if x.base == src or Path(x.base).is_relative_to(src)]
        if len(having) == 1:
            return having[0]
    named = [x for x in having if method in (x.label, x.key, x.method, Path(x.arm_dir).name if x.arm_dir else None)]
    return named[0] if len(named) >= 1 else None
