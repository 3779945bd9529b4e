"""Reading a multi-seed sweep for the effects report: ``arm.json`` per run, the per-story long CSVs, the controls.

Input contract (written by the sweep runner; validated here, never trusted)::

    runs/<sweep>/<arm>.seed<k>/arm.json            {"arm", "seed", "role", "reference"}   one per trained arm × seed
    runs/<sweep>/<arm>/arm.json                    role "external" (e.g. ground_truth), one folder
    <run>/metrics/perstory_long.csv                story,metric,family,higher_is_better,value   (value empty = undefined)
    runs/<sweep>/controls/controls_long.csv        corruption,story,metric,family,higher_is_better,clean,corrupted
    runs/<sweep>/controls/expected.csv             corruption,metric,expected,target

Every problem is raised as :class:`EffectsInputError` (a ``ValueError``) naming the file and line, so a malformed
file stops the report with a message instead of silently dropping rows. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("oracle", "diag", "toy", "official")
ROLES = ("reference", "ablation", "null", "external")
EXPECTED = ("down", "up", "any")
LONG_FILE = Path("metrics") / "perstory_long.csv"
LONG_COLUMNS = ("story", "metric", "family", "higher_is_better", "value")
CONTROLS_COLUMNS = ("corruption", "story", "metric", "family", "higher_is_better", "clean", "corrupted")
EXPECTED_COLUMNS = ("corruption", "metric", "expected", "target")
#: Folders of a sweep that are not runs.
NOT_RUNS = ("report", "controls")
_SEED_DIR = re.compile(r"^(?P<arm>.+)\.seed(?P<seed>\d+)$")


class EffectsInputError(ValueError):
    """A sweep folder that does not follow the effects input contract (the message names file and line)."""


@dataclass(frozen=True)
class RunInfo:
    """One run folder and its ``arm.json``."""

    path: Path
    arm: str
    seed: int | None
    role: str
    reference: str | None

    @property
    def name(self) -> str:
        """The folder name (``full.seed0``, ``ground_truth``)."""
        return self.path.name


@dataclass
class MetricTable:
    """Per-story values of one run: ``values[m, s]`` for ``metrics[m]`` and ``stories[s]``; NaN = undefined."""

    stories: list[str]
    metrics: list[str]
    family: dict[str, str]
    higher_is_better: dict[str, bool]
    values: np.ndarray  # [M, S]
    n_undefined: dict[str, int] = field(default_factory=dict)


@dataclass
class ArmData:
    """All seeds of one arm on a common story and metric grid: ``values[m, k, s]`` (NaN = undefined or absent)."""

    arm: str
    role: str
    reference: str | None
    runs: list[RunInfo]
    stories: list[str]
    metrics: list[str]
    family: dict[str, str]
    higher_is_better: dict[str, bool]
    values: np.ndarray  # [M, K, S]
    n_undefined: dict[str, int]

    @property
    def seeds(self) -> list[int | None]:
        """Seeds in the order they are paired with the reference's (ascending)."""
        return [r.seed for r in self.runs]


@dataclass
class Controls:
    """Per (corruption, metric): the per-story clean and corrupted values, and what the metric should do."""

    corruptions: list[str]
    rows: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (corruption, metric) -> (clean [S], corrupted [S])
    family: dict[str, str]
    expected: dict[tuple[str, str], tuple[str, bool]]  # (corruption, metric) -> (direction, is target)
    n_undefined: dict[tuple[str, str], int] = field(default_factory=dict)


##### small parsers


def _where(path: Path, line: int | None = None) -> str:
    return f"{path}" if line is None else f"{path}:{line}"


def _float_cell(text: str, path: Path, line: int, column: str) -> float:
    """A float, NaN for an empty cell; anything else unparsable is an error."""
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise EffectsInputError(f"{_where(path, line)}: column {column!r} is not a number: {text!r}") from None


def _bool_cell(text: str, path: Path, line: int) -> bool:
    """1/0 as the contract says; True/False (Python's ``str(bool)``) is read too rather than refused."""
    text = text.strip()
    if text.lower() not in ("0", "1", "true", "false"):
        raise EffectsInputError(f"{_where(path, line)}: higher_is_better must be 1 or 0, got {text!r}")
    return text.lower() in ("1", "true")


def _family(text: str, path: Path, line: int) -> str:
    text = text.strip()
    if text not in FAMILIES:
        raise EffectsInputError(f"{_where(path, line)}: family {text!r} is not one of {', '.join(FAMILIES)}")
    return text


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows with their 1-based line numbers; the header must hold every column of ``columns``."""
    if not path.is_file():
        raise EffectsInputError(f"{path}: missing")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise EffectsInputError(
                f"{path}: header {','.join(header) or '(empty)'} lacks column(s) {', '.join(missing)}; "
                f"expected {','.join(columns)}"
            )
        rows = []
        for raw in reader:
            line = reader.line_num
            if None in raw or any(raw.get(c) is None for c in columns):
                raise EffectsInputError(f"{_where(path, line)}: wrong number of cells")
            rows.append((line, {c: str(raw[c]) for c in columns}))
    return rows


##### runs


def read_arm_json(run_dir: str | Path) -> RunInfo:
    """The run's ``arm.json``, validated.

    Raises:
        EffectsInputError: missing file, invalid JSON, or a field of the wrong type or value.
    """
    run = Path(run_dir)
    path = run / "arm.json"
    if not path.is_file():
        raise EffectsInputError(
            f"{path}: missing (every run folder of a sweep needs arm.json: arm, seed, role, reference)"
        )
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EffectsInputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise EffectsInputError(f"{path}: expected a JSON object")
    arm, seed, role, ref = data.get("arm"), data.get("seed"), data.get("role"), data.get("reference")
    if not isinstance(arm, str) or not arm:
        raise EffectsInputError(f"{path}: 'arm' must be a non-empty string, got {arm!r}")
    if role not in ROLES:
        raise EffectsInputError(f"{path}: 'role' must be one of {', '.join(ROLES)}, got {role!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise EffectsInputError(f"{path}: 'seed' must be an integer or null, got {seed!r}")
    if role != "external" and seed is None:
        raise EffectsInputError(f"{path}: a {role} run needs an integer 'seed'")
    if ref is not None and not isinstance(ref, str):
        raise EffectsInputError(f"{path}: 'reference' must be an arm name or null, got {ref!r}")
    if role in ("ablation", "null") and not ref:
        raise EffectsInputError(f"{path}: a {role} arm needs 'reference' (the arm its effects are measured against)")
    if role in ("reference", "external") and ref:
        raise EffectsInputError(f"{path}: a {role} arm has no reference, got {ref!r}")
    return RunInfo(path=run, arm=arm, seed=seed, role=role, reference=ref or None)


def _looks_like_run(folder: Path) -> bool:
    """A ``<arm>.seed<k>`` folder or one with a per-story CSV: a run, so it must have an arm.json."""
    return bool(_SEED_DIR.match(folder.name)) or (folder / LONG_FILE).is_file()


def discover_runs(sweep: str | Path) -> list[RunInfo]:
    """Every run folder of ``sweep`` (sorted by name). A folder that looks like a run but has no arm.json is an error.

    Raises:
        FileNotFoundError: ``sweep`` is not a folder.
        EffectsInputError: no run folder with arm.json, a run folder without one, or inconsistent arm.json files.
    """
    root = Path(sweep)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such sweep folder")
    runs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NOT_RUNS):
        if (folder / "arm.json").is_file() or _looks_like_run(folder):
            runs.append(read_arm_json(folder))
    if not runs:
        raise EffectsInputError(f"{root}: no run folder with an arm.json (is this a multi-seed sweep?)")
    by_arm: dict[str, list[RunInfo]] = {}
    for r in runs:
        by_arm.setdefault(r.arm, []).append(r)
    for arm, rs in by_arm.items():
        roles = {(r.role, r.reference) for r in rs}
        if len(roles) > 1:
            raise EffectsInputError(
                f"{root}: arm {arm!r} has runs with different role/reference: {sorted(roles, key=str)}"
            )
        seeds = [r.seed for r in rs]
        if len(set(seeds)) != len(seeds):
            raise EffectsInputError(f"{root}: arm {arm!r} has the same seed twice: {seeds}")
        if rs[0].role == "external" and len(rs) > 1:
            raise EffectsInputError(f"{root}: external arm {arm!r} has {len(rs)} folders; it must have one")
        ref = rs[0].reference
        if ref is not None and ref not in by_arm:
            raise EffectsInputError(f"{root}: arm {arm!r} is measured against {ref!r}, which has no run folder")
    return runs


def read_perstory_long(path: str | Path) -> MetricTable:
    """One run's ``perstory_long.csv`` as a metric × story array (undefined values are NaN and counted).

    Raises:
        EffectsInputError: a missing column, a bad cell, a story/metric given twice, or a metric whose family or
            direction changes between rows.
    """
    p = Path(path)
    rows = _read_csv(p, LONG_COLUMNS)
    family: dict[str, str] = {}
    hib: dict[str, bool] = {}
    cells: dict[tuple[str, str], float] = {}
    for line, r in rows:
        story, metric = r["story"].strip(), r["metric"].strip()
        if not story or not metric:
            raise EffectsInputError(f"{_where(p, line)}: empty story or metric")
        fam, up = _family(r["family"], p, line), _bool_cell(r["higher_is_better"], p, line)
        if family.setdefault(metric, fam) != fam or hib.setdefault(metric, up) != up:
            raise EffectsInputError(f"{_where(p, line)}: metric {metric!r} changes family or higher_is_better")
        if (story, metric) in cells:
            raise EffectsInputError(f"{_where(p, line)}: story {story!r} × metric {metric!r} given twice")
        cells[(story, metric)] = _float_cell(r["value"], p, line, "value")
    if not cells:
        raise EffectsInputError(f"{p}: no rows")
    stories = sorted({s for s, _ in cells})
    metrics = list(family)
    values = np.full((len(metrics), len(stories)), np.nan)
    si = {s: i for i, s in enumerate(stories)}
    mi = {m: i for i, m in enumerate(metrics)}
    for (s, m), v in cells.items():
        values[mi[m], si[s]] = v
    undefined = {m: int(np.sum(~np.isfinite(values[mi[m]]))) for m in metrics}
    return MetricTable(stories, metrics, family, hib, values, undefined)


def load_arms(sweep: str | Path) -> dict[str, ArmData]:
    """Every arm of ``sweep`` with its seeds stacked (seeds ascending), in the order arms are first seen.

    An external arm without a per-story CSV is kept with no metrics (its keyframes can still be shown).

    Raises:
        EffectsInputError: see :func:`discover_runs` and :func:`read_perstory_long`; also a trained run without its
            long CSV.
    """
    runs = discover_runs(sweep)
    grouped: dict[str, list[RunInfo]] = {}
    for r in runs:
        grouped.setdefault(r.arm, []).append(r)
    out: dict[str, ArmData] = {}
    for arm, rs in grouped.items():
        rs = sorted(rs, key=lambda r: -1 if r.seed is None else r.seed)
        if rs[0].role == "external" and not (rs[0].path / LONG_FILE).is_file():
            # e.g. ground-truth keyframes that were not scored: nothing to compare, but its sheet can still be drawn
            empty = np.zeros((0, len(rs), 0))
            out[arm] = ArmData(arm, "external", None, rs, [], [], {}, {}, empty, {})
            continue
        tables = [read_perstory_long(r.path / LONG_FILE) for r in rs]
        stories = sorted({s for t in tables for s in t.stories})
        metrics = list(dict.fromkeys(m for t in tables for m in t.metrics))
        family: dict[str, str] = {}
        hib: dict[str, bool] = {}
        for r, t in zip(rs, tables):
            for m in t.metrics:
                if (
                    family.setdefault(m, t.family[m]) != t.family[m]
                    or hib.setdefault(m, t.higher_is_better[m]) != (t.higher_is_better[m])
                ):
                    raise EffectsInputError(f"{r.path / LONG_FILE}: metric {m!r} has another family or direction")
        values = np.full((len(metrics), len(rs), len(stories)), np.nan)
        si = {s: i for i, s in enumerate(stories)}
        mi = {m: i for i, m in enumerate(metrics)}
        for k, t in enumerate(tables):
            values[np.ix_([mi[m] for m in t.metrics], [k], [si[s] for s in t.stories])] = t.values[:, None, :]
        undefined = {m: sum(t.n_undefined.get(m, 0) for t in tables) for m in metrics}
        out[arm] = ArmData(arm, rs[0].role, rs[0].reference, rs, stories, metrics, family, hib, values, undefined)
    return out


##### controls


def read_controls(sweep: str | Path) -> Controls | None:
    """The positive controls of ``sweep`` (None when ``controls/controls_long.csv`` is absent).

    Raises:
        EffectsInputError: a malformed controls or expected file, or an expectation other than down/up/any.
    """
    folder = Path(sweep) / "controls"
    long_path = folder / "controls_long.csv"
    if not long_path.is_file():
        return None
    family: dict[str, str] = {}
    cells: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for line, r in _read_csv(long_path, CONTROLS_COLUMNS):
        corruption, story, metric = r["corruption"].strip(), r["story"].strip(), r["metric"].strip()
        if not corruption or not story or not metric:
            raise EffectsInputError(f"{_where(long_path, line)}: empty corruption, story or metric")
        fam = _family(r["family"], long_path, line)
        _bool_cell(r["higher_is_better"], long_path, line)
        if family.setdefault(metric, fam) != fam:
            raise EffectsInputError(f"{_where(long_path, line)}: metric {metric!r} changes family")
        per_story = cells.setdefault((corruption, metric), {})
        if story in per_story:
            raise EffectsInputError(f"{_where(long_path, line)}: {corruption} × {story} × {metric} given twice")
        clean = _float_cell(r["clean"], long_path, line, "clean")
        corrupted = _float_cell(r["corrupted"], long_path, line, "corrupted")
        per_story[story] = (clean, corrupted)
    rows: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    undefined: dict[tuple[str, str], int] = {}
    for key, per_story in cells.items():
        pairs = np.array([per_story[s] for s in sorted(per_story)], dtype=np.float64).reshape(-1, 2)
        ok = np.isfinite(pairs).all(axis=1)
        rows[key] = (pairs[ok, 0], pairs[ok, 1])
        undefined[key] = int((~ok).sum())
    expected: dict[tuple[str, str], tuple[str, bool]] = {}
    exp_path = folder / "expected.csv"
    if exp_path.is_file():
        for line, r in _read_csv(exp_path, EXPECTED_COLUMNS):
            key = (r["corruption"].strip(), r["metric"].strip())
            direction = r["expected"].strip()
            if direction not in EXPECTED:
                raise EffectsInputError(
                    f"{_where(exp_path, line)}: expected must be down, up or any, got {direction!r}"
                )
            target = r["target"].strip()
            if target not in ("0", "1"):
                raise EffectsInputError(f"{_where(exp_path, line)}: target must be 1 or 0, got {target!r}")
            if key in expected:
                raise EffectsInputError(f"{_where(exp_path, line)}: {key[0]} × {key[1]} given twice")
            expected[key] = (direction, target == "1")
    corruptions = list(dict.fromkeys(c for c, _ in cells))
    return Controls(corruptions, rows, family, expected, undefined)


def unscored_expectations(controls: Controls) -> list[tuple[str, str]]:
    """(corruption, metric) pairs of expected.csv with no scores in controls_long.csv (e.g. a metric not run)."""
    return [k for k in controls.expected if k not in controls.rows]
