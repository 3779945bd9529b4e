"""Per-annotator progress and the pre-declared exclusion rules (catch trials, speed, straight-lining).

The figures are derived from the stored answers every time (nothing is cached or written back), so adding an
answer or changing a manual exclusion is reflected at once and the verdict can always be recomputed.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from study import design, schema
from study.types import AnnotatorProgress, ExclusionDecision, ExclusionRules, StudySpec


@dataclass
class _Tally:
    annotator_id: int
    name: str
    manual: str | None
    total: int = 0
    completed: int = 0
    skipped: int = 0
    answers: int = 0
    last_answer_at: datetime | None = None
    raw_values: dict[str, list[str]] = field(default_factory=lambda: {"rank": [], "gsb": []})
    catch_results: list[bool] = field(default_factory=list)
    item_seconds: list[float] = field(default_factory=list)


def _tallies(s: Session, spec: StudySpec, study_id: int, only: int | None) -> list[_Tally]:
    n_crit = {k: len(design.criteria_of(spec, k)) for k in ("rank", "gsb")}
    ann_q = select(schema.Annotator).where(schema.Annotator.study_id == study_id).order_by(schema.Annotator.id)
    asg_q = (
        select(
            schema.Assignment.id,
            schema.Assignment.annotator_id,
            schema.Assignment.seed,
            schema.Assignment.shown_at,
            schema.Assignment.skipped_at,
            schema.Item.kind,
            schema.Item.catch_kind,
            schema.Item.corrupted_slot,
            schema.Item.methods_json,
        )
        .join(schema.Item, schema.Item.id == schema.Assignment.item_id)
        .where(schema.Assignment.study_id == study_id)
    )
    ans_q = select(
        schema.Answer.assignment_id, schema.Answer.value_raw, schema.Answer.value, schema.Answer.created_at
    ).where(schema.Answer.study_id == study_id)
    if only is not None:
        ann_q = ann_q.where(schema.Annotator.id == only)
        asg_q = asg_q.where(schema.Assignment.annotator_id == only)
        ans_q = ans_q.where(schema.Answer.annotator_id == only)
    annotators = s.scalars(ann_q).all()
    assignments = s.execute(asg_q).all()
    answers = s.execute(ans_q).all()
    tallies = {a.id: _Tally(int(a.id), a.name, a.manual_exclusion) for a in annotators}
    by_assignment = defaultdict(list)
    for r in answers:
        by_assignment[r.assignment_id].append(r)
    for a in assignments:
        t = tallies[a.annotator_id]
        t.total += 1
        rows = by_assignment.get(a.id, [])
        t.answers += len(rows)
        complete = len(rows) >= n_crit[a.kind]
        t.completed += complete
        t.skipped += (a.skipped_at is not None) and not complete
        order = design.shown_order(a.seed, len(json.loads(a.methods_json)))
        for r in rows:
            t.raw_values[a.kind].append(r.value_raw)
            if t.last_answer_at is None or r.created_at > t.last_answer_at:
                t.last_answer_at = r.created_at
            ok = design.is_correct(a.catch_kind, a.corrupted_slot, a.kind, r.value_raw, order, r.value)
            if ok is not None:
                t.catch_results.append(ok)
        if complete and a.shown_at is not None:
            t.item_seconds.append((max(r.created_at for r in rows) - a.shown_at).total_seconds())
    return list(tallies.values())


def _decide(t: _Tally, rules: ExclusionRules) -> ExclusionDecision:
    accuracy = sum(t.catch_results) / len(t.catch_results) if t.catch_results else None
    median_s = statistics.median(t.item_seconds) if t.item_seconds else None
    # straight-lining: share of answers equal to the annotator's most frequent answer of the same kind
    top = sum(Counter(v).most_common(1)[0][1] for v in t.raw_values.values() if v)
    identical = top / t.answers if t.answers else None
    reasons: list[str] = []
    if t.manual:
        reasons.append(f"manual: {t.manual}")
    if rules.min_catch_accuracy is not None and accuracy is not None and accuracy < rules.min_catch_accuracy:
        reasons.append(f"catch trials {accuracy:.0%} correct < {rules.min_catch_accuracy:.0%}")
    enough = t.answers >= rules.min_answers_for_rules
    if enough and rules.min_median_seconds is not None and median_s is not None and median_s < rules.min_median_seconds:
        reasons.append(f"too fast: median {median_s:.1f} s per item < {rules.min_median_seconds:.1f} s")
    if (
        enough
        and rules.max_identical_share is not None
        and identical is not None
        and identical > rules.max_identical_share
    ):
        reasons.append(f"straight-lining: {identical:.0%} identical answers > {rules.max_identical_share:.0%}")
    return ExclusionDecision(
        annotator_id=t.annotator_id,
        name=t.name,
        n_answers=t.answers,
        n_catch_answers=len(t.catch_results),
        catch_accuracy=accuracy,
        median_seconds=median_s,
        identical_share=identical,
        excluded=bool(reasons),
        reasons=tuple(reasons),
    )


def evaluate(s: Session, spec: StudySpec, study_id: int, only: int | None = None) -> list[ExclusionDecision]:
    """Exclusion verdicts for every annotator of a study (or one), read in the session ``s``.

    Args:
        s: An open session of the store.
        spec: The study's spec (its declared ``exclusion`` rules are applied).
        study_id: The study.
        only: One annotator id instead of all.
    """
    return [_decide(t, spec.exclusion) for t in _tallies(s, spec, study_id, only)]


def progress_rows(s: Session, spec: StudySpec, study_id: int, only: int | None = None) -> list[AnnotatorProgress]:
    """Progress of every annotator of a study (or one), with the exclusion verdict (arguments as `evaluate`)."""
    out = []
    for t in _tallies(s, spec, study_id, only):
        d = _decide(t, spec.exclusion)
        out.append(
            AnnotatorProgress(
                annotator_id=t.annotator_id,
                name=t.name,
                total=t.total,
                completed=t.completed,
                skipped=t.skipped,
                answers=t.answers,
                last_answer_at=t.last_answer_at,
                excluded=d.excluded,
                exclusion_reasons=d.reasons,
            )
        )
    return out
