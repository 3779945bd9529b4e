"""Per-story values of the results columns, per era: what the evaluator's row aggregates (`formats.perstory`).

The era rules live here and only here (`reference/vistorybench.md` §4.4, §9): CSD, OCCM, Aesthetics and the four
Alignment sub-scores are means over stories (a story without a value is skipped); CIDS pools every (story,
character) value of the split in Era A, and takes the mean of the story means in Eras B/C, each story mean rounded
to 4 decimals as officially (quirk ``unrounded-story-means``). `bench.evaluate.aggregate` forms the row from these
pairs and writes them to ``per_story.json``; ``reports`` resamples them for intervals.

No torch here: ``reports`` may call `story_parts_from_files` for evaluation folders written before
``per_story.json`` existed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from formats.perstory import ColumnParts, Pair
from formats.results import RESULTS_ROW_FILE, STORY_RESULTS_FILE

__all__ = ["ALIGN_KEYS", "COLUMN_SOURCES", "story_cids_mean", "story_parts", "story_parts_from_files"]

#: Alignment's sub-scores as the ``prompt_align`` unit stores them, in the order of the row's sub-score columns.
ALIGN_KEYS: tuple[str, ...] = ("scene", "camera", "character_action", "single_character_action")

#: Column → (metric unit it comes from, scale, unit-record keys of its components). CIDS reads the per-character
#: values under ``details.characters.<key>.self|cross`` instead of a ``metrics`` key.
COLUMN_SOURCES: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "csd_self": ("csd", 100.0, ("self_csd",)),
    "csd_cross": ("csd", 100.0, ("cross_csd",)),
    "cids_self": ("cids", 100.0, ("self",)),
    "cids_cross": ("cids", 100.0, ("cross",)),
    "alignment": ("prompt_align", 25.0, ALIGN_KEYS),
    "occm": ("occm", 1.0, ("occm",)),
    "aesthetics": ("aesthetic", 1.0, ("aesthetic_score",)),
}

Records = Mapping[str, Mapping[str, Mapping[str, Any]]]


def story_cids_mean(values: Sequence[float], era: str, fixes: frozenset[str] | set[str] = frozenset()) -> float:
    """A story's mean over characters; Eras B/C round it to 4 decimals (quirk ``unrounded-story-means``)."""
    if not values:
        return math.nan
    value = float(np.mean(values))
    return round(value, 4) if era in ("B", "C") and "unrounded-story-means" not in fixes else value


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _mean_pair(value: Any) -> Pair:
    f = _finite(value)
    return (0.0, 0.0) if f is None else (f, 1.0)


def _cids_pair(record: Mapping[str, Any], part: str, era: str, fixes: frozenset[str]) -> Pair:
    chars = (record.get("details") or {}).get("characters") or {}
    vals = [float(c[part]) for c in chars.values() if _finite(c.get(part)) is not None]
    if era == "A":  # characters pooled over the split
        return (sum(vals), float(len(vals)))
    return _mean_pair(story_cids_mean(vals, era, fixes)) if vals else (0.0, 0.0)


def story_parts(era: str, records: Records, fixes: Sequence[str] = ()) -> dict[str, ColumnParts]:
    """Per column with per-story values, the story pairs from ``records[metric][story_id]`` (status ``ok`` only).

    Columns whose metric was not computed (no records) are left out. Stories keep the order of ``records``.
    """
    fixed = frozenset(fixes)
    out: dict[str, ColumnParts] = {}
    for column, (metric, scale, keys) in COLUMN_SOURCES.items():
        recs = {
            sid: r for sid, r in records.get(metric, {}).items() if isinstance(r, Mapping) and r.get("status") == "ok"
        }
        if not recs:
            continue
        stories: dict[str, tuple[Pair, ...]] = {}
        for sid, r in recs.items():
            if metric == "cids":
                stories[sid] = (_cids_pair(r, keys[0], era, fixed),)
            else:
                m = r.get("metrics") or {}
                stories[sid] = tuple(_mean_pair(m.get(k)) for k in keys)
        out[column] = ColumnParts(scale, keys, stories)
    return out


def story_parts_from_files(folder: str | Path) -> tuple[str, dict[str, ColumnParts]]:
    """Era and `story_parts` of an evaluation folder from its ``metrics/<metric>/story_results.json`` files.

    For folders written before ``per_story.json`` existed; the era and the active fixes come from its
    ``results_row.json`` (era A without one).

    Raises:
        ValueError: a file exists but is not valid JSON or not an object.
    """
    folder = Path(folder)
    row = _read_object(folder / RESULTS_ROW_FILE)
    era, fixes = str(row.get("era") or "A"), [str(f) for f in row.get("fixes") or []]
    records = {
        metric: _read_object(folder / "metrics" / metric / STORY_RESULTS_FILE)
        for metric in {m for m, _, _ in COLUMN_SOURCES.values()}
    }
    ordered = {m: dict(sorted(r.items())) for m, r in records.items() if r}
    return era, story_parts(era, ordered, fixes)


def _read_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
