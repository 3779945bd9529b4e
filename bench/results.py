"""Result files of an evaluation: per-(story, metric) unit records (the resume points) and the final layout.

Layout of ``<out>/`` (official §9 names, plus ours)::

    metadata.json  manifest.json  summary.json  provenance.json  results_row.json  issues.json
    per_story.json                          per column, per story, the pairs the row aggregates (formats.perstory)
    metrics/<metric>/story_results.json     story_id -> {run, metric, scope, status, metrics, details}
    metrics/<metric>/items.jsonl            one line per shot / character / image item
    metrics/<metric>/units/<story_id>.json  the resume unit (written atomically when the story is done)
    metrics/diversity/units/<story_id>.npy  the story's Inception logits (pooled at the end)
    metrics/diversity/scores.json

Every file is written to a temporary name and renamed, so a killed run leaves only complete files.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fsio import atomic_write_bytes, atomic_write_text


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples become lists, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented UTF-8 JSON (NaN → null)."""
    atomic_write_text(path, json.dumps(clean(data), indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write one JSON object per line."""
    atomic_write_text(path, "".join(json.dumps(clean(r), ensure_ascii=False) + "\n" for r in rows))


class UnitStore:
    """Finished (story, metric) units under ``<out>/metrics/<metric>/units/``; presence of the JSON = done."""

    def __init__(self, out: Path) -> None:
        """Args: out (the results folder)."""
        self.out = Path(out)

    def path(self, metric: str, story_id: str, suffix: str = ".json") -> Path:
        """Where the unit of (``story_id``, ``metric``) lives."""
        return self.out / "metrics" / metric / "units" / f"{story_id}{suffix}"

    def done(self, metric: str, story_id: str, signature: dict[str, Any] | None = None) -> bool:
        """True if the unit finished successfully earlier with the same ``signature`` (era, backbones, inputs...).

        A failed unit, or one computed under other settings or from other images, is recomputed, so a reused
        results folder never mixes eras or stale images.
        """
        rec = self.load(metric, story_id)
        if rec is None or rec.get("status") not in ("ok", "no_images"):
            return False
        return signature is None or rec.get("signature") == clean(signature)

    def load(self, metric: str, story_id: str) -> dict[str, Any] | None:
        """The unit record, or None if absent or unreadable (then it is recomputed)."""
        p = self.path(metric, story_id)
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, metric: str, story_id: str, record: dict[str, Any], array: np.ndarray | None = None) -> None:
        """Write the unit; an accompanying array is written first, so the JSON marks a complete unit."""
        if array is not None:
            buf = io.BytesIO()
            np.save(buf, array)
            atomic_write_bytes(self.path(metric, story_id, ".npy"), buf.getvalue())
        write_json(self.path(metric, story_id), record)

    def load_array(self, metric: str, story_id: str) -> np.ndarray:
        """The array saved with the unit."""
        return np.asarray(np.load(self.path(metric, story_id, ".npy")))
