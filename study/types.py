"""Plain value types of the study store's public API (no ORM objects ever leave the store).

Two audiences read these types:

- the **annotator-facing** side (the Study page) sees only `AnnotatorView`, `StudyBrief`, `ShownItem` and
  `AnnotatorProgress`; none of them carries a method name, a catch-trial flag or a run path, so nothing that
  identifies a method can reach an annotator's browser through them;
- the **admin** side (the Admin page, exports, statistics) sees `StudySpec`, `StudyInfo`, `Invite`,
  `ExclusionDecision` and the statistics objects from `study.stats`.

`Panel` is the one bridge: the server needs the method and its run directory to load images, so
`StudyStore.panels` returns them; the app must use them server-side only (load/downscale the images and
send bytes, never the path, file name or method name).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

CriterionKind = Literal["rank", "gsb"]
"""``rank``: order all methods of an item best→worst. ``gsb``: compare the two storyboards of a pair item."""

GSBValue = Literal["G", "S", "B"]
"""Good / Same / Bad. In the annotator API always "storyboard A compared with storyboard B"."""

CatchKind = Literal["identical", "corrupted"]
"""``identical``: both panels of a pair show the same storyboard (expected answer: Same).
``corrupted``: one panel is a deliberately degraded copy (expected: it loses / is ranked last)."""

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Criterion:
    """One question asked per item, e.g. "plot alignment".

    Args:
        key: stable identifier stored with every answer (``[a-z0-9_]+``).
        label: short name shown to annotators ("Plot alignment").
        question: the full instruction shown above the answer widget.
        kind: ``rank`` (rank all methods of the item) or ``gsb`` (pair items: A vs B).
    """

    key: str
    label: str
    question: str
    kind: CriterionKind = "rank"


def paper_criteria(kind: CriterionKind = "rank") -> tuple[Criterion, ...]:
    """The four criteria of the UniMAGE user study (paper §4.2), all of the given kind."""
    return (
        Criterion(
            "overall", "Overall quality", "Which storyboard is better overall (images and script together)?", kind
        ),
        Criterion(
            "plot", "Plot alignment", "Which storyboard follows the story prompt and its plot more faithfully?", kind
        ),
        Criterion(
            "consistency",
            "Character consistency",
            "In which storyboard do the characters keep the same identity and look across shots?",
            kind,
        ),
        Criterion("logic", "Narrative logic", "Which storyboard tells a more coherent story from shot to shot?", kind),
    )


@dataclass(frozen=True)
class ExclusionRules:
    """Rules for dropping annotators, declared when the study is created (pre-registered, stored with it).

    An annotator is excluded from the statistics when any enabled rule fires; ``None`` disables a rule.

    Args:
        min_catch_accuracy: minimum share of catch-trial answers that are correct (default 0.8, the usual
            "responses count only if ≥80% of checks are correct").
        min_median_seconds: minimum median time per answered item (shown → last answer of the item).
        max_identical_share: straight-lining: maximum share of the annotator's answers equal to their most frequent
            raw answer of the same kind (e.g. always "A is better", always "Same", always the ranking A>B>C); since
            the shown order is random, an honest annotator's raw answers vary.
        min_answers_for_rules: the speed and straight-lining rules only apply once an annotator has at least this
            many answers (a rater with 3 answers is not "straight-lining").
    """

    min_catch_accuracy: float | None = 0.8
    min_median_seconds: float | None = 5.0
    max_identical_share: float | None = 0.9
    min_answers_for_rules: int = 10


@dataclass(frozen=True)
class StudySpec:
    """Everything needed to create a study; stored with the study so the design is reproducible.

    Items are generated from the spec: for ``rank`` criteria one item per story showing all methods; for ``gsb``
    criteria one pair item per (story, method other than the reference) showing that method and the reference.
    Catch items are added to the pool at ``catch_rate`` (share of an annotator's items that are catch trials).

    Args:
        name: human-readable study name (unique in the database).
        methods: method (or arm) names, at least two; never shown to annotators.
        stories: story ids (e.g. ViStoryBench "01".."80").
        criteria: the questions; mix of kinds allowed.
        reference_method: the baseline of GSB comparisons; required when any criterion is ``gsb``.
        raters_per_item: how many annotators should answer each (non-catch) item.
        items_per_annotator: real (non-catch) items per annotator; ``None`` = as many as still need raters.
        catch_rate: share of catch trials in each annotator's queue, in [0, 0.5].
        exclusion: the exclusion rules (declared up front).
        seed: seed of the catch-trial draw when the study is created. Annotators' queues and each item's method
            order are drawn from ``secrets`` instead (a seed an annotator could know would unblind them) and stored
            per assignment, so the shown order can be replayed.
        instructions: markdown shown to annotators before the first item (include a worked example).
        sources: optional method → run directory / ViStoryBench outputs root, for the app's image loading.
    """

    name: str
    methods: tuple[str, ...]
    stories: tuple[str, ...]
    criteria: tuple[Criterion, ...] = field(default_factory=paper_criteria)
    reference_method: str | None = None
    raters_per_item: int = 3
    items_per_annotator: int | None = None
    catch_rate: float = 0.1
    exclusion: ExclusionRules = field(default_factory=ExclusionRules)
    seed: int = 0
    instructions: str = ""
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyInfo:
    """Admin view of a stored study (includes method names)."""

    study_id: int
    spec: StudySpec
    created_at: datetime
    n_items: int
    n_catch_items: int
    n_annotators: int


@dataclass(frozen=True)
class Invite:
    """A freshly issued invite. ``token`` is returned only once; the database stores only its SHA-256."""

    annotator_id: int
    name: str
    token: str


@dataclass(frozen=True)
class AnnotatorView:
    """Who a token belongs to (annotator-facing; no study design details)."""

    annotator_id: int
    study_id: int
    name: str


@dataclass(frozen=True)
class StudyBrief:
    """What an annotator may know about their study: no methods, no reference, no sources."""

    study_id: int
    name: str
    instructions: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class ShownItem:
    """One item as an annotator sees it: anonymised labels in the order to display them.

    Args:
        assignment_id: pass back to `StudyStore.record_answer` / `skip`.
        position: 0-based place of this item in the annotator's queue; ``total`` is the queue length.
        story_id: which story's script/prompt to show (not method-identifying).
        kind: ``rank`` (``labels`` has one label per method) or ``gsb`` (exactly two labels, A and B).
        labels: display order, always ``("A", "B", ...)``; label i is panel i (left to right).
        criteria: the criteria to answer for this item (those of the item's kind).
        answered: criterion key → the stored raw answer (labels), so a resumed item shows what was given.
    """

    assignment_id: int
    position: int
    total: int
    story_id: str
    kind: CriterionKind
    labels: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    answered: dict[str, str | tuple[str, ...]]


@dataclass(frozen=True)
class Panel:
    """SERVER-SIDE ONLY: what to render under one anonymised label (never send these fields to a browser).

    Args:
        label: "A", "B", ...
        method: the method whose storyboard to load.
        source: the method's run directory / outputs root from `StudySpec.sources` (``None`` if not given).
        story_id: the story.
        corruption_seed: ``None`` for a normal panel; for a deliberately corrupted catch panel, the seed to
            degrade it with (see `corrupted_shot_order`); render it visibly worse (scrambled shot order, heavy
            blur or noise) but in the same style as the other panels.
    """

    label: str
    method: str
    source: str | None
    story_id: str
    corruption_seed: int | None = None

    @property
    def corrupted(self) -> bool:
        return self.corruption_seed is not None


def corrupted_shot_order(n_shots: int, seed: int) -> list[int]:
    """The shot order a corrupted catch panel is shown in: a seeded derangement-like shuffle of ``range(n)``."""
    order = list(range(n_shots))
    if n_shots < 2:
        return order
    rng = random.Random(seed)
    while order == sorted(order):
        rng.shuffle(order)
    return order


@dataclass(frozen=True)
class AnnotatorProgress:
    """Progress of one annotator (both the annotator's own view and a row of the admin table)."""

    annotator_id: int
    name: str
    total: int
    completed: int
    skipped: int
    answers: int
    last_answer_at: datetime | None
    excluded: bool = False
    exclusion_reasons: tuple[str, ...] = ()

    @property
    def remaining(self) -> int:
        return self.total - self.completed

    @property
    def done(self) -> bool:
        return self.completed + self.skipped >= self.total


@dataclass(frozen=True)
class RecordResult:
    """What `StudyStore.record_answer` did.

    Args:
        answer_id: id of the stored row (the existing one when the answer was already there).
        created: True when this call inserted the row; False for a repeat (double click, retried request).
        conflict: True when a row already existed with a *different* value; the first answer stands
            (answers are append-only), the new value is not stored.
        stored_value: the raw stored answer (labels), as in `ShownItem.answered`.
    """

    answer_id: int
    created: bool
    conflict: bool
    stored_value: str | tuple[str, ...]


@dataclass(frozen=True)
class ExclusionDecision:
    """Per-annotator quality figures and the verdict of the study's exclusion rules (plus manual exclusion)."""

    annotator_id: int
    name: str
    n_answers: int
    n_catch_answers: int
    catch_accuracy: float | None
    median_seconds: float | None
    identical_share: float | None
    excluded: bool
    reasons: tuple[str, ...]
