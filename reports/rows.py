"""Finding and reading measured result rows (DESIGN.md §3.5) in run directories.

A results row is the ``results_row.json`` written by the ViStoryBench evaluator (``bench.evaluate``): one row per
(method or arm, split, era) with the Table 1 columns on the paper's scales, the Alignment sub-scores, counts, and the
labels ``backbones`` / ``judge`` / ``comparable_with_published``. Inside a sweep it sits at
``<runs>/<sweep>/<arm>/metrics/results_row.json``; a standalone evaluation folder holds it at its top level.

Reports read files only: nothing here imports torch or recomputes a metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formats.results import RESULTS_ROW_FILE
from formats.rundir import CONFIG_FILE, PROVENANCE_FILE, STATUS_FILE

ROW_FILE = RESULTS_ROW_FILE


@dataclass
class MeasuredRow:
    """One measured row plus where it came from.

    Attributes:
        label: how the row is named in tables: ``<sweep>/<arm>`` inside a sweep, else the method name.
        values: the row as the evaluator wrote it (metric columns may be None when not measured).
        path: the folder holding ``results_row.json``.
        sweep / arm: from the run-directory layout, when the row lives in one.
        provenance: the arm's ``provenance.json`` (or the evaluation's), empty if absent.
    """

    label: str
    values: dict[str, Any]
    path: Path
    sweep: str | None = None
    arm: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def published_as(self) -> str | None:
        """The published method this row reproduces: ``published_as`` if the sweep set it, else the method name.

        A row written by a sweep carries the key even when the arm reproduces no published row (``null``): then
        there is none, even if the method folder happens to be named like a published method (``unimage``).
        """
        if "published_as" in self.values:
            value = self.values["published_as"]
            return str(value) if value else None
        return str(self.values.get("method") or self.label)

    @property
    def comparable(self) -> bool:
        """False when toy backbones or a toy judge produced the row (its numbers mean nothing next to the paper's)."""
        return bool(self.values.get("comparable_with_published", False))

    def value(self, column: str) -> float | None:
        """A metric column as a float, or None when it was not measured (missing, null or NaN)."""
        v = self.values.get(column)
        if v is None:
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(f) else f


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def find_row_files(path: str | Path) -> list[Path]:
    """Every ``results_row.json`` at or below ``path`` (a sweep folder, an arm folder or an evaluation folder).

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no results row.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    if root.is_file():
        if root.name != ROW_FILE:
            raise FileNotFoundError(f"{root}: expected a {ROW_FILE} or a folder containing one")
        return [root]
    found = sorted(root.rglob(ROW_FILE))
    if not found:
        raise FileNotFoundError(f"{root}: no {ROW_FILE} found (has the evaluate stage finished?)")
    return found


def read_row(row_file: Path) -> MeasuredRow:
    """Read one row; sweep and arm are taken from ``<sweep>/<arm>/metrics/results_row.json`` when that is the layout."""
    values = _read_json(row_file)
    folder = row_file.parent
    sweep = arm = None
    provenance: dict[str, Any] = {}
    arm_dir = folder.parent
    if folder.name == "metrics" and ((arm_dir / STATUS_FILE).is_file() or (arm_dir / CONFIG_FILE).is_file()):
        arm, sweep = arm_dir.name, arm_dir.parent.name
        if (arm_dir / PROVENANCE_FILE).is_file():
            provenance = _read_json(arm_dir / PROVENANCE_FILE)
    if not provenance and (folder / PROVENANCE_FILE).is_file():
        provenance = _read_json(folder / PROVENANCE_FILE)
    label = f"{sweep}/{arm}" if sweep and arm else str(values.get("method") or folder.name)
    return MeasuredRow(label=label, values=values, path=folder, sweep=sweep, arm=arm, provenance=provenance)


def collect_rows(paths: list[str | Path]) -> list[MeasuredRow]:
    """All measured rows under ``paths``, in path order, each file once."""
    seen: set[Path] = set()
    rows: list[MeasuredRow] = []
    for p in paths:
        for f in find_row_files(p):
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                rows.append(read_row(f))
    return rows
