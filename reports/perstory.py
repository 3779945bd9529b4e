"""Per-story values from the evaluator's files, and bootstrap intervals over stories.

The evaluator (``bench.evaluate``) writes, beside ``results_row.json``, ``metrics/<metric>/story_results.json``:
story id → ``{status, metrics, details}``. This module reads those and, per Table 1 column, forms per-story
*(numerator, denominator)* pairs such that the column's value is ``100·Σnum / Σden`` (or without the 100) over the
stories — i.e. the same aggregation the evaluator used: a mean over stories for CSD, OCCM and Aesthetics, the
characters pooled over stories for Era-A CIDS (``bench.functional.aggregate_cids``), and 25 × the mean of the four
sub-score story means for Alignment. Resampling stories with replacement and recomputing that ratio gives a
percentile bootstrap interval; the point value itself is always taken from ``results_row.json`` (reports never
recompute a metric — the tests check that the ratio over all stories equals the row's value).

Inception Score is pooled over all images of the split (it is not a function of per-story values), so it has no
per-story interval here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Alignment sub-scores as stored per story (``prompt_align`` unit) → their 0–4 scale.
ALIGN_KEYS = ("scene", "camera", "character_action", "single_character_action")


def read_story_results(metrics_dir: str | Path, metric: str) -> dict[str, dict[str, Any]]:
    """``<metrics_dir>/metrics/<metric>/story_results.json`` (empty when the metric was not computed)."""
    path = Path(metrics_dir) / "metrics" / metric / "story_results.json"
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
    """A Table 1 column as a statistic over stories.

    Attributes:
        stories: story ids, in order.
        parts: per story, a tuple of (numerator, denominator) pairs, one pair per component (Alignment has four
            components, the others one).
        scale: multiplier of the final ratio (100 for CSD and CIDS; 25 for Alignment's mean of 0–4 scores).
    """

    stories: list[str]
    parts: np.ndarray  # [S, K, 2]
    scale: float

    def value(self, idx: np.ndarray | None = None) -> float:
        """The statistic over the stories ``idx`` (default all): ``scale · mean_k(Σnum_k / Σden_k)``."""
        p = self.parts if idx is None else self.parts[idx]
        num, den = p[..., 0].sum(axis=0), p[..., 1].sum(axis=0)  # [K]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = num / den
        return float(self.scale * np.nanmean(ratios)) if np.isfinite(ratios).any() else math.nan

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


def _mean_stat(recs: dict[str, dict[str, Any]], key: str, scale: float) -> StoryStat:
    stories, parts = [], []
    for sid, r in sorted(recs.items()):
        v = _num((r.get("metrics") or {}).get(key))
        stories.append(sid)
        parts.append([[v, 1.0] if v is not None else [0.0, 0.0]])
    return StoryStat(stories, np.asarray(parts, dtype=np.float64).reshape(-1, 1, 2), scale)


def _cids_stat(recs: dict[str, dict[str, Any]], part: str, era: str) -> StoryStat:
    stories, parts = [], []
    for sid, r in sorted(recs.items()):
        chars = ((r.get("details") or {}).get("characters") or {}).values()
        vals = [v for c in chars if (v := _num(c.get(part))) is not None]
        stories.append(sid)
        if era == "A":  # characters pooled over the split
            parts.append([[sum(vals), float(len(vals))]])
        else:  # mean of story means
            parts.append([[sum(vals) / len(vals), 1.0] if vals else [0.0, 0.0]])
    return StoryStat(stories, np.asarray(parts, dtype=np.float64).reshape(-1, 1, 2), 100.0)


def _align_stat(recs: dict[str, dict[str, Any]]) -> StoryStat:
    stories, parts = [], []
    for sid, r in sorted(recs.items()):
        m = r.get("metrics") or {}
        stories.append(sid)
        parts.append([[v, 1.0] if (v := _num(m.get(k))) is not None else [0.0, 0.0] for k in ALIGN_KEYS])
    return StoryStat(stories, np.asarray(parts, dtype=np.float64).reshape(-1, len(ALIGN_KEYS), 2), 25.0)


#: Table 1 column → (evaluator metric folder, builder of the per-story statistic from its records and the era).
COLUMN_STATS: dict[str, tuple[str, Callable[[dict[str, dict[str, Any]], str], StoryStat]]] = {
    "csd_self": ("csd", lambda r, era: _mean_stat(r, "self_csd", 100.0)),
    "csd_cross": ("csd", lambda r, era: _mean_stat(r, "cross_csd", 100.0)),
    "cids_self": ("cids", lambda r, era: _cids_stat(r, "self", era)),
    "cids_cross": ("cids", lambda r, era: _cids_stat(r, "cross", era)),
    "alignment": ("prompt_align", lambda r, era: _align_stat(r)),
    "occm": ("occm", lambda r, era: _mean_stat(r, "occm", 1.0)),
    "aesthetics": ("aesthetic", lambda r, era: _mean_stat(r, "aesthetic_score", 1.0)),
}


def column_stat(metrics_dir: str | Path, column: str, era: str = "A") -> StoryStat | None:
    """The per-story statistic of ``column`` for one evaluation folder, or None (pooled column / not computed)."""
    if column not in COLUMN_STATS:
        return None
    metric, build = COLUMN_STATS[column]
    recs = read_story_results(metrics_dir, metric)
    return build(recs, era) if recs else None


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
