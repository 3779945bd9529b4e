"""Per-story metric values in one long table: what the effects report resamples.

Every evaluated run writes ``metrics/perstory_long.csv`` with the columns `COLUMNS`, one row per (story, metric):

- ViStoryBench columns from the evaluator's per-story files (family = the backbone set, ``toy`` or ``official``;
  metric ``<family>.<column>``), each story's value from the evaluator's ``per_story.json`` (`formats.perstory`:
  the reports read bench's numbers, they never re-derive them); Inception is pooled over the split and has no
  per-story value, so it is not here;
- SynthStory oracle metrics (family ``oracle``, `unimage.data.synthoracle`) when the dataset has ground truth;
- teacher-forced diagnostics (family ``diag``, `unimage.eval.diagnostics`) for trained runs.

An undefined value is written as an empty cell (the report counts and skips it), never as 0.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ablations.status import atomic_write_text
from formats.results import PER_STORY_COLUMNS

COLUMNS = ("story", "metric", "family", "higher_is_better", "value")
LONG_CSV = "perstory_long.csv"


@dataclass(frozen=True)
class LongRow:
    """One story's value of one metric."""

    story: str
    metric: str
    family: str
    higher_is_better: bool
    value: float | None


def bench_rows(metrics_dir: str | Path, family: str) -> list[LongRow]:
    """Per-story ViStoryBench values from an evaluator folder (its ``per_story.json``, `formats.perstory`)."""
    from reports.perstory import story_columns

    rows = []
    columns = story_columns(metrics_dir)
    for column in PER_STORY_COLUMNS:
        parts = columns.get(column)
        if parts is None:
            continue
        for story in parts.stories:
            value = parts.value([story])
            rows.append(LongRow(story, f"{family}.{column}", family, True, value if math.isfinite(value) else None))
    return rows


def oracle_rows(gt_dir: str | Path, story_dirs: dict[str, Path]) -> list[LongRow]:
    """SynthStory oracle metrics of each story's ``shots/`` folder against ``<gt_dir>/<story>.json``."""
    from unimage.data.synthoracle import METRICS, score_story_dir

    rows = []
    for story, sdir in sorted(story_dirs.items()):
        gt = Path(gt_dir) / f"{story}.json"
        if not gt.is_file():
            continue
        score = score_story_dir(gt, sdir / "shots")
        rows += [LongRow(story, f"oracle.{m}", "oracle", True, score.values[m]) for m in METRICS]
    return rows


def write_long_csv(path: str | Path, rows: Iterable[LongRow]) -> Path:
    """Write the rows (atomically) with the header `COLUMNS`; returns the path."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        value = "" if r.value is None or not math.isfinite(r.value) else repr(float(r.value))
        w.writerow([r.story, r.metric, r.family, int(r.higher_is_better), value])
    out = Path(path)
    atomic_write_text(out, buf.getvalue())
    return out


def story_dirs(run_dir: str | Path) -> dict[str, Path]:
    """Story id → story folder of one output run folder (``<method>/<mode>/<lang>/<timestamp>/``)."""
    return {p.name: p for p in sorted(Path(run_dir).iterdir()) if p.is_dir() and (p / "shots").is_dir()}
