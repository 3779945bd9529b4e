"""Study design: validating a spec, generating items and catch trials, assigning items, blinding and decoding.

Blinding works through one stored number per assignment: ``seed``. `shown_order(seed, k)` is the permutation of
the item's method slots shown under labels A, B, C...; everything the annotator answers is in labels and is
decoded back to methods with the same permutation, which is also stored with every answer.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.orm import Session

from study import schema
from study.errors import StoreError
from study.limits import short
from study.types import (
    LABELS,
    Criterion,
    ExclusionRules,
    Panel,
    ShownItem,
    StudySpec,
)

_KEY = re.compile(r"^[a-z0-9_]+$")
GSB_VALUES = ("G", "S", "B")
_FLIP = {"G": "B", "S": "S", "B": "G"}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------------------------- spec
def validate_spec(spec: StudySpec) -> None:
    """Raise `StoreError` naming the first invalid field of ``spec``."""
    if not spec.name.strip():
        raise StoreError("name: must not be empty")
    _validate_methods(spec)
    if not spec.stories:
        raise StoreError("stories: must not be empty")
    if len(set(spec.stories)) != len(spec.stories):
        raise StoreError("stories: duplicates")
    _validate_criteria(spec)
    _validate_assignment(spec)
    unknown = set(spec.sources) - set(spec.methods)
    if unknown:
        raise StoreError(f"sources: unknown methods {sorted(unknown)}")
    _validate_exclusion(spec.exclusion)


def _validate_methods(spec: StudySpec) -> None:
    if len(spec.methods) < 2:
        raise StoreError(f"methods: need at least 2, got {list(spec.methods)}")
    if len(set(spec.methods)) != len(spec.methods):
        raise StoreError(f"methods: duplicates in {list(spec.methods)}")
    if len(spec.methods) > len(LABELS):
        raise StoreError(f"methods: at most {len(LABELS)} per study")


def _validate_criteria(spec: StudySpec) -> None:
    """Criteria keys and kinds, and the reference method that a GSB criterion needs."""
    if not spec.criteria:
        raise StoreError("criteria: must not be empty")
    keys = [c.key for c in spec.criteria]
    if len(set(keys)) != len(keys):
        raise StoreError(f"criteria: duplicate keys in {keys}")
    for c in spec.criteria:
        if not _KEY.match(c.key):
            raise StoreError(f"criteria: key {c.key!r} must match [a-z0-9_]+")
        if c.kind not in ("rank", "gsb"):
            raise StoreError(f"criteria[{c.key}].kind: {c.kind!r} is not 'rank' or 'gsb'")
    if any(c.kind == "gsb" for c in spec.criteria):
        if spec.reference_method is None:
            raise StoreError("reference_method: required when a criterion has kind 'gsb'")
        if spec.reference_method not in spec.methods:
            raise StoreError(f"reference_method: {spec.reference_method!r} is not one of methods")


def _validate_assignment(spec: StudySpec) -> None:
    """How items are handed out: raters per item, items per annotator, share of catch trials."""
    if spec.raters_per_item < 1:
        raise StoreError(f"raters_per_item: must be >= 1, got {spec.raters_per_item}")
    if spec.items_per_annotator is not None and spec.items_per_annotator < 1:
        raise StoreError(f"items_per_annotator: must be >= 1 or None, got {spec.items_per_annotator}")
    if not 0.0 <= spec.catch_rate <= 0.5:
        raise StoreError(f"catch_rate: must be in [0, 0.5], got {spec.catch_rate}")


def _validate_exclusion(r: ExclusionRules) -> None:
    if r.min_catch_accuracy is not None and not 0.0 <= r.min_catch_accuracy <= 1.0:
        raise StoreError("exclusion.min_catch_accuracy: must be in [0, 1]")
    if r.max_identical_share is not None and not 0.0 < r.max_identical_share <= 1.0:
        raise StoreError("exclusion.max_identical_share: must be in (0, 1]")


def spec_to_json(spec: StudySpec) -> str:
    return dumps(dataclasses.asdict(spec))


def spec_from_json(text: str) -> StudySpec:
    d = json.loads(text)
    return StudySpec(
        name=d["name"],
        methods=tuple(d["methods"]),
        stories=tuple(d["stories"]),
        criteria=tuple(Criterion(**c) for c in d["criteria"]),
        reference_method=d["reference_method"],
        raters_per_item=d["raters_per_item"],
        items_per_annotator=d["items_per_annotator"],
        catch_rate=d["catch_rate"],
        exclusion=ExclusionRules(**d["exclusion"]),
        seed=d["seed"],
        instructions=d["instructions"],
        sources=dict(d["sources"]),
    )


def criteria_of(spec: StudySpec, kind: str) -> tuple[Criterion, ...]:
    return tuple(c for c in spec.criteria if c.kind == kind)


# ---------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class ItemPlan:
    story_id: str
    kind: str
    methods: tuple[str, ...]
    catch_kind: str | None = None
    corrupted_slot: int | None = None


def catch_count(n_real: int, rate: float) -> int:
    """Catch trials to add to ``n_real`` real items so that they make up ``rate`` of the queue (≥1 if rate > 0)."""
    if rate <= 0 or n_real == 0:
        return 0
    return max(1, round(rate * n_real / (1.0 - rate)))


def build_items(spec: StudySpec) -> list[ItemPlan]:
    """Real items (rank: story × all methods; gsb: story × (method, reference)) and a pool of catch items.

    The catch pool holds enough items that an annotator who gets every real item still sees distinct catch
    trials: pair studies alternate identical pairs and (clean, corrupted) pairs; rank items get one corrupted panel.
    """
    rng = random.Random(f"{spec.seed}:items")
    items: list[ItemPlan] = []
    kinds = [k for k in ("rank", "gsb") if criteria_of(spec, k)]
    for kind in kinds:
        real: list[ItemPlan] = []
        for story in spec.stories:
            if kind == "rank":
                real.append(ItemPlan(story, kind, tuple(spec.methods)))
            else:
                ref = spec.reference_method
                assert ref is not None
                real.extend(ItemPlan(story, kind, (m, ref)) for m in spec.methods if m != ref)
        items.extend(real)
        per_annotator = len(real) if spec.items_per_annotator is None else min(len(real), spec.items_per_annotator)
        for i in range(catch_count(per_annotator, spec.catch_rate)):
            story = rng.choice(spec.stories)
            if kind == "rank":
                items.append(ItemPlan(story, kind, tuple(spec.methods), "corrupted", rng.randrange(len(spec.methods))))
            else:
                m = rng.choice(spec.methods)
                if i % 2 == 0:
                    items.append(ItemPlan(story, kind, (m, m), "identical", None))
                else:
                    # slot 0 clean, slot 1 the degraded copy: the expected decoded answer is "G"
                    items.append(ItemPlan(story, kind, (m, m), "corrupted", 1))
    return items


def shown_order(seed: int, k: int) -> list[int]:
    """The method slots shown under labels A, B, ... for an assignment seed (label i shows slot ``order[i]``)."""
    return random.Random(seed).sample(range(k), k)


def assign_items(s: Session, spec: StudySpec, study_id: int, annotator_id: int) -> int:
    """Give a new annotator the least-covered real items plus catch trials, in a random order.

    The queue order, the catch trials and each assignment's ``seed`` (which decides the labels) come from the
    operating system's CSPRNG (``secrets``), not from anything an annotator can know (the code, the study seed,
    their sequential id): a seeded ``random.Random`` let an annotator replay it and find the reference method behind
    its label in every pair (issue 14). The seeds are stored, so what was shown stays replayable.

    Returns:
        The number of assignments created.
    """
    rng = secrets.SystemRandom()
    coverage = dict(
        s.execute(
            select(schema.Assignment.item_id, func.count())
            .where(schema.Assignment.study_id == study_id)
            .group_by(schema.Assignment.item_id)
        ).all()
    )
    rows = s.execute(
        select(schema.Item.id, schema.Item.kind, schema.Item.catch_kind).where(schema.Item.study_id == study_id)
    ).all()
    chosen: list[int] = []
    for kind in ("rank", "gsb"):
        real = [r.id for r in rows if r.kind == kind and r.catch_kind is None]
        if not real:
            continue
        open_items = [i for i in real if coverage.get(i, 0) < spec.raters_per_item]
        rng.shuffle(open_items)
        open_items.sort(key=lambda i: coverage.get(i, 0))  # stable: random among equally covered
        take = open_items if spec.items_per_annotator is None else open_items[: spec.items_per_annotator]
        chosen.extend(take)
        catch_pool = [r.id for r in rows if r.kind == kind and r.catch_kind is not None]
        n_catch = min(len(catch_pool), catch_count(len(take), spec.catch_rate))
        chosen.extend(rng.sample(catch_pool, n_catch))
    if not chosen:
        raise StoreError(f"study {study_id}: every item already has {spec.raters_per_item} raters")
    rng.shuffle(chosen)
    rows_out = [
        {
            "study_id": study_id,
            "annotator_id": annotator_id,
            "item_id": item_id,
            "position": pos,
            "seed": rng.randrange(2**31),
        }
        for pos, item_id in enumerate(chosen)
    ]
    s.execute(insert(schema.Assignment), rows_out)  # one executemany, not one ORM flush per row
    return len(chosen)


# ---------------------------------------------------------------------------------------------- serving
def answered_raw(s: Session, assignment_id: int) -> dict[str, str]:
    rows = s.execute(
        select(schema.Answer.criterion, schema.Answer.value_raw).where(schema.Answer.assignment_id == assignment_id)
    ).all()
    return {r.criterion: r.value_raw for r in rows}


def raw_to_public(kind: str, raw: str) -> str | tuple[str, ...]:
    return tuple(raw.split(">")) if kind == "rank" else raw


def next_open_assignment(
    s: Session, annotator_id: int, *, include_skipped: bool, spec: StudySpec
) -> schema.Assignment | None:
    """First assignment (by position) with a criterion still unanswered; skipped ones only if asked.

    One indexed query returning one row, so serving an item costs the same at the first and the last item.
    """
    n_crit = {k: len(criteria_of(spec, k)) for k in ("rank", "gsb")}
    answered = (
        select(func.count())
        .select_from(schema.Answer)
        .where(schema.Answer.assignment_id == schema.Assignment.id)
        .correlate(schema.Assignment)
        .scalar_subquery()
    )
    needed = case((schema.Item.kind == "rank", n_crit["rank"]), else_=n_crit["gsb"])
    base = (
        select(schema.Assignment)
        .join(schema.Item, schema.Item.id == schema.Assignment.item_id)
        .where(schema.Assignment.annotator_id == annotator_id, answered < needed)
        .order_by(schema.Assignment.position)
        .limit(1)
    )
    row = s.scalar(base.where(schema.Assignment.skipped_at.is_(None)))
    if row is None and include_skipped:
        row = s.scalar(base)
    return row


@dataclass(frozen=True)
class ItemInfo:
    """An item row as plain immutable data (items never change after creation, so the store caches these)."""

    id: int
    story_id: str
    kind: str
    methods: tuple[str, ...]
    catch_kind: str | None
    corrupted_slot: int | None

    @classmethod
    def from_row(cls, item: schema.Item) -> ItemInfo:
        return cls(
            int(item.id),
            item.story_id,
            item.kind,
            tuple(json.loads(item.methods_json)),
            item.catch_kind,
            item.corrupted_slot,
        )


def shown_item(s: Session, row: schema.Assignment, spec: StudySpec, item: ItemInfo, total: int) -> ShownItem:
    return ShownItem(
        assignment_id=int(row.id),
        position=int(row.position),
        total=total,
        story_id=item.story_id,
        kind=item.kind,  # type: ignore[arg-type]
        labels=tuple(LABELS[: len(item.methods)]),
        criteria=criteria_of(spec, item.kind),
        answered={c: raw_to_public(item.kind, v) for c, v in answered_raw(s, row.id).items()},
    )


def panels_for(spec: StudySpec, item: ItemInfo, row: schema.Assignment) -> list[Panel]:
    methods = item.methods
    order = shown_order(row.seed, len(methods))
    panels = []
    for label, slot in zip(LABELS, order):
        corrupt = item.catch_kind == "corrupted" and item.corrupted_slot == slot
        panels.append(
            Panel(
                label=label,
                method=methods[slot],
                source=spec.sources.get(methods[slot]),
                story_id=item.story_id,
                corruption_seed=(row.seed ^ 0x5A5A5A5A) if corrupt else None,
            )
        )
    return panels


# ---------------------------------------------------------------------------------------------- answers
def parse_value(kind: str, value: str | Sequence[str], k: int) -> str:
    """Validate an annotator's raw answer and return its canonical text ("C>A>B" or "G"/"S"/"B").

    Raises:
        ValueError: the value is not a permutation of the item's labels (rank) or not G/S/B (gsb).
    """
    labels = LABELS[:k]
    if kind == "gsb":
        if not isinstance(value, str) or value.strip().upper() not in GSB_VALUES:
            raise ValueError(f"value: a gsb answer must be one of G, S, B (A compared with B), got {short(value)}")
        return value.strip().upper()
    parts = [p.strip().upper() for p in value.split(">")] if isinstance(value, str) else [str(p).upper() for p in value]
    if sorted(parts) != list(labels):
        raise ValueError(f"value: a ranking must order each of the labels {list(labels)} once, got {short(value)}")
    return ">".join(parts)


def decode(kind: str, raw: str, methods: Sequence[str], order: Sequence[int]) -> str:
    """Map a canonical raw answer in labels to methods (rank: JSON list best→worst; gsb: test vs reference)."""
    if kind == "gsb":
        # raw compares label A with label B; slot 0 is the test method, slot 1 the reference
        return raw if order[0] == 0 else _FLIP[raw]
    return dumps([methods[order[LABELS.index(lab)]] for lab in raw.split(">")])


def is_correct(
    catch_kind: str | None, corrupted_slot: int | None, kind: str, raw: str, order: Sequence[int], decoded: str
) -> bool | None:
    """Whether a catch-trial answer is the expected one (``None`` for real items)."""
    if catch_kind is None:
        return None
    if kind == "gsb":
        return decoded == ("S" if catch_kind == "identical" else "G")
    last_label = raw.split(">")[-1]
    return order[LABELS.index(last_label)] == corrupted_slot


def seconds_between(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    return float((b - a).total_seconds())
