"""Per-story values of the results columns, read from the evaluator's ``per_story.json``, and bootstrap intervals.

The evaluator (``bench.evaluate``) writes, beside ``results_row.json``, ``per_story.json`` (`formats.perstory`):
per results column, per story, *(numerator, denominator)* pairs whose ratio over all stories is the row's value —
a mean over stories for CSD, OCCM and Aesthetics, the characters pooled over stories for Era-A CIDS, the rounded
story means for Eras B/C, 25 × the mean of four sub-scores for Alignment. The era rules live in `bench.perstory`
only; this module reads the pairs, and resampling stories with replacement and recomputing the ratio gives a
percentile bootstrap interval. The point value itself is always taken from ``results_row.json`` (reports never
recompute a metric; the tests check that the ratio over all stories equals the row's value). An evaluation folder
written before ``per_story.json`` existed gets its pairs from `bench.perstory.story_parts_from_files`, the
evaluator's own code.

Inception Score is pooled over all images of the split (it is not a function of per-story values), so it has no
per-story interval here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from formats.perstory import ColumnParts, read_per_story
from formats.results import STORY_RESULTS_FILE


def read_story_results(metrics_dir: str | Path, metric: str) -> dict[str, dict[str, Any]]:
    """``<metrics_dir>/metrics/<metric>/story_results.json``, records with status ``ok`` (empty when absent)."""
    path = Path(metrics_dir) / "metrics" / metric / STORY_RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object story_id -> record")
    return {str(k): v for k, v in data.items() if isinstance(v, dict) and v.get("status") == "ok"}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


@dataclass
class StoryStat:
    """A results column as a statistic over stories.

    Attributes:
        stories: story ids, in order.
        parts: per story, a tuple of (numerator, denominator) pairs, one pair per component (Alignment has four
            components, the others one).
        scale: multiplier of the mean of the component ratios (100 for CSD and CIDS; 25 for Alignment's 0–4 scores).
    """

    stories: list[str]
    parts: np.ndarray  # [S, K, 2]
    scale: float

    @classmethod
    def from_parts(cls, column: ColumnParts) -> StoryStat:
        """The statistic of one ``per_story.json`` column."""
        k = len(column.components)
        parts = np.asarray(list(column.stories.values()), dtype=np.float64).reshape(-1, k, 2)
        return cls(list(column.stories), parts, column.scale)

    def value(self, idx: np.ndarray | None = None) -> float:
        """The statistic over the stories ``idx`` (default all): ``scale · mean_k(Σnum_k / Σden_k)``, NaN when a
        component has no value there (`formats.perstory.ColumnParts.value`)."""
        p = self.parts if idx is None else self.parts[idx]
        num, den = p[..., 0].sum(axis=0), p[..., 1].sum(axis=0)  # [K]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = num / den
        return float(self.scale * ratios.mean()) if len(ratios) and np.isfinite(ratios).all() else math.nan

    def bootstrap(self, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
        """Percentile bootstrap interval of :meth:`value`, resampling stories with replacement."""
        n = len(self.stories)
        if n < 2 or n_boot < 1:
            return (math.nan, math.nan)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(n_boot, n))
        vals = np.array([self.value(d) for d in draws])
        vals = vals[np.isfinite(vals)]
        if len(vals) == 0:
            return (math.nan, math.nan)
        a = (1 - confidence) / 2
        return (float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)))


def story_columns(metrics_dir: str | Path) -> dict[str, ColumnParts]:
    """The per-story columns of one evaluation folder: its ``per_story.json``, else (older folders) the evaluator's
    own `bench.perstory.story_parts_from_files` over its unit files."""
    per_story = read_per_story(metrics_dir)
    if per_story is not None:
        return per_story.columns
    from bench.perstory import story_parts_from_files

    return story_parts_from_files(metrics_dir)[1]


def column_stat(metrics_dir: str | Path, column: str) -> StoryStat | None:
    """The per-story statistic of ``column`` for one evaluation folder, or None (pooled column / not computed)."""
    parts = story_columns(metrics_dir).get(column)
    return StoryStat.from_parts(parts) if parts is not None and parts.stories else None


def character_values(metrics_dir: str | Path) -> list[dict[str, Any]]:
    """Per (story, character): CIDS self and cross (×100) and the number of matched crops, from the CIDS units."""
    out = []
    for sid, r in sorted(read_story_results(metrics_dir, "cids").items()):
        for key, c in ((r.get("details") or {}).get("characters") or {}).items():
            s, x = _num(c.get("self")), _num(c.get("cross"))
            out.append(
                {
                    "story": sid,
                    "character": key,
                    "cids_self": None if s is None else 100 * s,
                    "cids_cross": None if x is None else 100 * x,
                    "n_crops": c.get("n_crops"),
                }
            )
    return out
