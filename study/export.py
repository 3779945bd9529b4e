"""Answers as a pandas table, and CSV/JSON export and re-import (atomic writes, lossless round trip).

List-valued columns (``ranking``, ``shown_order``) are JSON text in CSV files; `read_answers` turns them back
into lists and restores the dtypes, so ``read_answers(write(frame))`` equals ``frame``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

import fsio
from study import design, schema
from study.errors import StoreError
from study.quality import evaluate
from study.types import StudySpec

COLUMNS = [
    "answer_id",
    "study_id",
    "annotator_id",
    "annotator",
    "item_id",
    "story_id",
    "kind",
    "criterion",
    "catch_kind",
    "value_raw",
    "value",
    "ranking",
    "gsb",
    "test_method",
    "reference_method",
    "shown_order",
    "seed",
    "position",
    "shown_at",
    "created_at",
    "seconds",
    "correct",
    "excluded",
]
_LIST_COLUMNS = ("ranking", "shown_order")
_TIME_COLUMNS = ("shown_at", "created_at")
_INT_COLUMNS = ("answer_id", "study_id", "annotator_id", "item_id", "seed", "position")


def answers_frame(
    s: Session, spec: StudySpec, study_id: int, *, include_catch: bool, include_excluded: bool
) -> pd.DataFrame:
    """One row per stored answer, ordered by answer id (see `StudyStore.answers_frame` for the columns).

    Args:
        s: An open session of the store (the answers and the exclusion verdicts are read in it).
        spec: The study's spec (for its exclusion rules).
        study_id: The study.
        include_catch: Keep the answers to catch trials.
        include_excluded: Keep the answers of annotators the rules exclude.
    """
    excluded = {d.annotator_id for d in evaluate(s, spec, study_id) if d.excluded}
    q = (
        select(
            schema.Answer,
            schema.Annotator.name,
            schema.Item.story_id,
            schema.Item.kind,
            schema.Item.catch_kind,
            schema.Item.corrupted_slot,
            schema.Item.methods_json,
            schema.Assignment.position,
        )
        .join(schema.Annotator, schema.Annotator.id == schema.Answer.annotator_id)
        .join(schema.Item, schema.Item.id == schema.Answer.item_id)
        .join(schema.Assignment, schema.Assignment.id == schema.Answer.assignment_id)
        .where(schema.Answer.study_id == study_id)
        .order_by(schema.Answer.id)
    )
    rows = s.execute(q).all()
    records = []
    for r in rows:
        a = r.Answer
        methods = json.loads(r.methods_json)
        order = design.shown_order(a.seed, len(methods))
        gsb = r.kind == "gsb"
        records.append(
            {
                "answer_id": a.id,
                "study_id": a.study_id,
                "annotator_id": a.annotator_id,
                "annotator": r.name,
                "item_id": a.item_id,
                "story_id": r.story_id,
                "kind": r.kind,
                "criterion": a.criterion,
                "catch_kind": r.catch_kind,
                "value_raw": a.value_raw,
                "value": a.value,
                "ranking": None if gsb else json.loads(a.value),
                "gsb": a.value if gsb else None,
                "test_method": methods[0] if gsb else None,
                "reference_method": methods[1] if gsb else None,
                "shown_order": json.loads(a.shown_order_json),
                "seed": a.seed,
                "position": r.position,
                "shown_at": a.shown_at,
                "created_at": a.created_at,
                "seconds": design.seconds_between(a.shown_at, a.created_at),
                "correct": design.is_correct(r.catch_kind, r.corrupted_slot, r.kind, a.value_raw, order, a.value),
                "excluded": a.annotator_id in excluded,
            }
        )
    frame = _normalise(pd.DataFrame.from_records(records, columns=COLUMNS))
    if not include_catch:
        frame = frame[frame["catch_kind"].isna()]
    if not include_excluded:
        frame = frame[~frame["excluded"]]
    return frame.reset_index(drop=True)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes, so a frame read back from CSV/JSON compares equal to the one written."""
    frame = frame.copy()
    for c in _INT_COLUMNS:
        frame[c] = frame[c].astype("int64")
    for c in _TIME_COLUMNS:
        frame[c] = pd.to_datetime(frame[c])
    frame["seconds"] = frame["seconds"].astype("float64")
    frame["excluded"] = frame["excluded"].astype(bool)
    frame["correct"] = frame["correct"].astype("object").where(frame["correct"].notna(), None)
    for c in (
        "annotator",
        "story_id",
        "kind",
        "criterion",
        "catch_kind",
        "value_raw",
        "value",
        "gsb",
        "test_method",
        "reference_method",
    ):
        frame[c] = frame[c].astype("object").where(frame[c].notna(), None)
    return frame


def _fmt(path: Path, fmt: str | None) -> str:
    f = (fmt or path.suffix.lstrip(".")).lower()
    if f not in ("csv", "json"):
        raise StoreError(f"export format: {f!r} is not csv or json (from {path})")
    return f


def to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialise an answers frame as CSV (lists as JSON text) or JSON records (ISO timestamps)."""
    out = frame.copy()
    if fmt == "csv":
        for c in _LIST_COLUMNS:
            out[c] = out[c].map(lambda v: None if v is None else json.dumps(v))
        buf = io.StringIO()
        out.to_csv(buf, index=False)
        return buf.getvalue().encode("utf-8")
    if fmt == "json":
        for c in _TIME_COLUMNS:
            out[c] = out[c].map(lambda v: None if pd.isna(v) else v.isoformat())
        return json.dumps(out.to_dict(orient="records"), indent=1, default=str).encode("utf-8")
    raise StoreError(f"export format: {fmt!r} is not csv or json")


def write(frame: pd.DataFrame, path: Path, fmt: str | None = None) -> Path:
    """Write an answers frame atomically (temporary file in the same folder, then rename)."""
    data = to_bytes(frame, _fmt(path, fmt))
    fsio.atomic_write_bytes(path, data)
    return path


def read_answers(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read an export back into the same frame `StudyStore.answers_frame` returned."""
    path = Path(path)
    f = _fmt(path, fmt)
    if f == "csv":
        frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
        for c in _LIST_COLUMNS:
            frame[c] = frame[c].map(lambda v: None if pd.isna(v) else json.loads(v))
        frame["excluded"] = frame["excluded"].map(lambda v: v == "True")
        frame["correct"] = frame["correct"].map(lambda v: None if pd.isna(v) else v == "True")
    else:
        frame = pd.DataFrame.from_records(json.loads(path.read_text(encoding="utf-8")), columns=COLUMNS)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise StoreError(f"{path}: not an answers export, missing columns {missing}")
    return _normalise(frame[COLUMNS])
