"""``per_story.json``: the per-story numbers the evaluator aggregates into its row, and the reports resample.

Written by the evaluator (``bench.perstory``) beside ``results_row.json``; read by ``reports`` (bootstrap intervals
over stories, the long per-story table of the effects report). Reports never re-derive these numbers from the
metric units: the era rules (pooled characters for Era-A CIDS, rounded story means for Eras B/C, ...) live in
``bench`` only.

Schema::

    {"format": 1, "era": "A",
     "columns": {"<column>": {"scale": 100.0, "components": ["self_csd"],
                              "stories": {"<story_id>": [[num, den], ...one pair per component]}}}}

A column's value over a set of stories is ``scale · mean_k(Σ num_k / Σ den_k)`` (sums over those stories); it is
undefined (NaN) when any component has ``Σ den_k = 0``. With every story it equals the results row's value: one
component with ``(value, 1)`` per story for a mean over stories, ``(Σ over characters, n characters)`` for a pooled
mean, four components (the 0–4 sub-scores) with scale 25 for Alignment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsio
from formats.results import PER_STORY_FILE

__all__ = ["FORMAT_VERSION", "ColumnParts", "PerStory", "read_per_story", "write_per_story"]

FORMAT_VERSION = 1

Pair = tuple[float, float]


@dataclass(frozen=True)
class ColumnParts:
    """One results column as per-story ``(numerator, denominator)`` pairs, one pair per component.

    Attributes:
        scale: multiplier of the mean of the component ratios (100 for CSD/CIDS, 25 for Alignment, 1 for OCCM).
        components: the names of the components (the unit-record keys they come from), for readers.
        stories: story id → one ``(num, den)`` pair per component, in the evaluator's story order; a story without
            a value for a component has ``(0, 0)`` there.
    """

    scale: float
    components: tuple[str, ...]
    stories: dict[str, tuple[Pair, ...]]

    def __post_init__(self) -> None:
        k = len(self.components)
        for sid, pairs in self.stories.items():
            if len(pairs) != k:
                raise ValueError(f"story {sid}: {len(pairs)} (num, den) pairs for {k} components {self.components}")

    def component_ratios(self, stories: Iterable[str] | None = None) -> list[float]:
        """``Σ num_k / Σ den_k`` per component over ``stories`` (default all; repeats count, as in a bootstrap)."""
        rows = self.stories.values() if stories is None else [self.stories[s] for s in stories]
        out = []
        for k in range(len(self.components)):
            num = sum(r[k][0] for r in rows)
            den = sum(r[k][1] for r in rows)
            out.append(num / den if den else math.nan)
        return out

    def value(self, stories: Iterable[str] | None = None) -> float:
        """``scale · mean_k`` of `component_ratios`; NaN when a component has no value in those stories."""
        ratios = self.component_ratios(stories)
        if not ratios or any(math.isnan(r) for r in ratios):
            return math.nan
        return self.scale * sum(ratios) / len(ratios)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this column (see the module docstring)."""
        return {
            "scale": self.scale,
            "components": list(self.components),
            "stories": {sid: [list(p) for p in pairs] for sid, pairs in self.stories.items()},
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ColumnParts:
        """Parse `to_json`'s object; ``where`` names it in errors.

        Raises:
            ValueError: a field is missing or has the wrong type.
        """
        if not isinstance(data, dict) or not isinstance(data.get("stories"), dict):
            raise ValueError(f"{where}: expected an object with 'scale', 'components' and 'stories'")
        try:
            scale = float(data["scale"])
            components = tuple(str(c) for c in data["components"])
            stories = {str(s): tuple(_pair(p) for p in pairs) for s, pairs in data["stories"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: malformed column ({e})") from e
        return cls(scale, components, stories)


def _pair(p: Sequence[Any]) -> Pair:
    if len(p) != 2:
        raise ValueError(f"expected a [num, den] pair, got {p!r}")
    return (float(p[0]), float(p[1]))


@dataclass(frozen=True)
class PerStory:
    """The contents of one ``per_story.json``: the era and the columns that have per-story values."""

    era: str
    columns: dict[str, ColumnParts]


def write_per_story(out: str | Path, era: str, columns: Mapping[str, ColumnParts]) -> Path:
    """Write ``<out>/per_story.json`` atomically; returns its path."""
    data = {"format": FORMAT_VERSION, "era": era, "columns": {c: p.to_json() for c, p in columns.items()}}
    return fsio.atomic_write_json(Path(out) / PER_STORY_FILE, data, ensure_ascii=False)


def read_per_story(out: str | Path) -> PerStory | None:
    """``<out>/per_story.json``, or None when the folder has none (evaluations written before the file existed).

    Raises:
        ValueError: the file exists but is not valid JSON or not of this schema (the message names the file).
    """
    path = Path(out) / PER_STORY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        raise ValueError(f"{path}: expected an object with 'era' and 'columns'")
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {data.get('format')!r}, this reader knows {FORMAT_VERSION}")
    columns = {str(c): ColumnParts.from_json(v, f"{path}: column {c!r}") for c, v in data["columns"].items()}
    return PerStory(str(data.get("era", "A")), columns)
