"""The study store's public API: `open_store(url)` → `StudyStore`.

Annotator-facing methods take the annotator's invite *token* (never an id), so an annotator can reach only
their own assignments; they return labels ("A", "B", ...) and never method names. Admin methods take ids; the
app gates them behind the admin token (`StudyStore.verify_admin_token`).

Typical use (the Study and Admin pages)::

    store = open_store("sqlite:///study.db")            # or a postgresql+psycopg:// URL
    sid = store.create_study(StudySpec(name="pilot", methods=("unimage", "storydiff"), stories=("01", "02"),
                                       reference_method="storydiff", criteria=paper_criteria("gsb")))
    invites = store.issue_invites(sid, 5)               # hand out invites[i].token as ?token=...
    me = store.resolve_token(token)                      # None for an unknown token
    item = store.next_assignment(token)                  # None when done; resumes where left off
    panels = store.panels(token, item.assignment_id)     # server-side image loading only
    store.record_answer(token, item.assignment_id, "overall", "G")       # idempotent
    store.export_answers(sid, "answers.csv")
    report = store.statistics(sid)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study import design, limits, quality, schema
from study.engine import make_engine, migrate
from study.errors import AccessDenied, StoreError
from study.types import (
    AnnotatorProgress,
    AnnotatorView,
    ExclusionDecision,
    Invite,
    Panel,
    RecordResult,
    ShownItem,
    StudyBrief,
    StudyInfo,
    StudySpec,
)

if TYPE_CHECKING:
    import pandas as pd

    from study.report import StudyReport

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token; tokens are 256-bit random, so an unsalted hash is enough to store."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_store(url: str | Path | None = None, *, pool_size: int = 10, clock: Clock | None = None) -> StudyStore:
    """Open (and create or migrate) a study database.

    Args:
        url: a SQLAlchemy URL (``sqlite:///study.db``, ``postgresql+psycopg://user@host/db``) or a filesystem path
            (a SQLite file). ``None`` means ``study.db`` in the working directory.
        pool_size: connections kept open (raise it for many concurrent annotators on PostgreSQL).
        clock: returns "now" as a naive UTC datetime; tests inject a fake clock to test the speed rule.

    Returns:
        A thread-safe `StudyStore` (share one per process, e.g. via ``st.cache_resource``).
    """
    engine = make_engine(url, pool_size=pool_size)
    migrate(engine)
    return StudyStore(engine, clock=clock)


class StudyStore:
    """All reads and writes of studies, invites, assignments and answers. Thread-safe; no global state."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")
        self._clock: Clock = clock or _utcnow
        # immutable rows cached per store: study specs, items, token -> annotator, queue lengths
        self._specs: dict[int, StudySpec] = {}
        self._items: dict[int, design.ItemInfo] = {}
        self._tokens: dict[str, AnnotatorView] = {}
        self._totals: dict[int, int] = {}

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    def _read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _write(self) -> Session:
        return Session(self._write_engine, expire_on_commit=False)

    # ------------------------------------------------------------------ admin: tokens
    def issue_admin_token(self, label: str = "admin") -> str:
        """Create an admin token (returned once, stored hashed). The Admin page accepts any issued admin token."""
        limits.text(label, "label", limits.MAX_NAME)
        token = secrets.token_urlsafe(32)
        with self._write() as s, s.begin():
            s.add(schema.AdminToken(token_hash=hash_token(token), label=label, created_at=self._clock()))
        return token

    def verify_admin_token(self, token: str | None) -> bool:
        """True when ``token`` is an issued admin token (constant-time comparison of the hashes)."""
        if not token or not limits.token_ok(token):
            return False
        digest = hash_token(token)
        with self._read() as s:
            hashes = s.scalars(select(schema.AdminToken.token_hash)).all()
        return any(hmac.compare_digest(digest, h) for h in hashes)

    # ------------------------------------------------------------------ admin: studies
    def create_study(self, spec: StudySpec) -> int:
        """Validate ``spec``, store it and generate its items (real and catch). Returns the study id.

        Raises:
            StoreError: invalid spec (names the field), or a study with this name exists.
        """
        limits.spec_fields(spec)
        design.validate_spec(spec)
        items = design.build_items(spec)
        try:
            return self._insert_study(spec, items)
        except IntegrityError:  # a concurrent create_study took the name between our check and our insert
            raise StoreError(f"study name {limits.short(spec.name)} already exists") from None

    def _insert_study(self, spec: StudySpec, items: list[design.ItemPlan]) -> int:
        with self._write() as s, s.begin():
            if s.scalar(select(schema.Study.id).where(schema.Study.name == spec.name)) is not None:
                raise StoreError(f"study name {limits.short(spec.name)} already exists")
            study = schema.Study(name=spec.name, spec_json=design.spec_to_json(spec), created_at=self._clock())
            s.add(study)
            s.flush()
            for it in items:
                s.add(
                    schema.Item(
                        study_id=study.id,
                        story_id=it.story_id,
                        kind=it.kind,
                        methods_json=design.dumps(list(it.methods)),
                        catch_kind=it.catch_kind,
                        corrupted_slot=it.corrupted_slot,
                    )
                )
            return int(study.id)

    def list_studies(self) -> list[StudyInfo]:
        """All studies, oldest first (admin view)."""
        with self._read() as s:
            ids = s.scalars(select(schema.Study.id).order_by(schema.Study.id)).all()
        return [self.get_study(i) for i in ids]

    def get_study(self, study_id: int) -> StudyInfo:
        """One study's spec and sizes (admin view). Raises `StoreError` for an unknown id."""
        limits.ident(study_id, "study_id")
        with self._read() as s:
            study = self._study(s, study_id)
            n_items = s.scalar(
                select(func.count()).where(schema.Item.study_id == study_id, schema.Item.catch_kind.is_(None))
            )
            n_catch = s.scalar(
                select(func.count()).where(schema.Item.study_id == study_id, schema.Item.catch_kind.is_not(None))
            )
            n_ann = s.scalar(select(func.count()).where(schema.Annotator.study_id == study_id))
            return StudyInfo(
                study_id=study.id,
                spec=design.spec_from_json(study.spec_json),
                created_at=study.created_at,
                n_items=int(n_items or 0),
                n_catch_items=int(n_catch or 0),
                n_annotators=int(n_ann or 0),
            )

    def issue_invites(self, study_id: int, count: int, names: Sequence[str] | None = None) -> list[Invite]:
        """Create ``count`` annotators with fresh invite tokens and assign each their items.

        Each annotator gets the least-covered real items (up to ``items_per_annotator``, only items with fewer than
        ``raters_per_item`` raters), plus catch trials at the study's rate, in an order shuffled per annotator; each
        assignment stores the seed its method order derives from.

        Args:
            study_id: the study.
            count: how many invites.
            names: optional display names (default ``rater-001``...); length must equal ``count``.

        Returns:
            The invites with plaintext tokens (shown once; only hashes are stored).

        Raises:
            StoreError: unknown study, bad names, or every item already has ``raters_per_item`` raters.
        """
        limits.ident(study_id, "study_id")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limits.MAX_INVITES:
            raise StoreError(f"count must be an integer in [1, {limits.MAX_INVITES}], got {limits.short(count)}")
        if names is not None:
            limits.texts(names, "names", limits.MAX_NAME)
        if names is not None and len(names) != count:
            raise StoreError(f"names has {len(names)} entries for count={count}")
        invites: list[Invite] = []
        with self._write() as s, s.begin():
            # lock the study row so two admins issuing at once see each other's coverage (SQLite: BEGIN IMMEDIATE)
            study = s.get(schema.Study, study_id, with_for_update=True)
            if study is None:
                raise StoreError(f"no study with id {study_id}")
            spec = design.spec_from_json(study.spec_json)
            n_existing = int(s.scalar(select(func.count()).where(schema.Annotator.study_id == study_id)) or 0)
            for i in range(count):
                name = names[i] if names is not None else f"rater-{n_existing + i + 1:03d}"
                token = secrets.token_urlsafe(32)
                ann = schema.Annotator(
                    study_id=study_id, name=name, token_hash=hash_token(token), created_at=self._clock()
                )
                s.add(ann)
                s.flush()
                design.assign_items(s, spec, study_id, ann.id)
                invites.append(Invite(annotator_id=int(ann.id), name=name, token=token))
        return invites

    # ------------------------------------------------------------------ annotator-facing
    def resolve_token(self, token: str | None) -> AnnotatorView | None:
        """The annotator an invite token belongs to, or ``None`` for an unknown/empty token."""
        if not token or not limits.token_ok(token):
            return None
        with self._read() as s:
            try:
                return self._annotator(s, token)
            except AccessDenied:
                return None

    def study_brief(self, token: str) -> StudyBrief:
        """Name, instructions and criteria of the token's study (no methods). Raises `AccessDenied`."""
        with self._read() as s:
            ann = self._annotator(s, token)
            spec = self._spec(s, ann.study_id)
            return StudyBrief(ann.study_id, spec.name, spec.instructions, spec.criteria)

    def next_assignment(self, token: str, *, include_skipped: bool = False) -> ShownItem | None:
        """The first item in the annotator's queue that is neither complete nor skipped (resume where left off).

        The first time an item is served its ``shown_at`` time is recorded (for the speed rule). With
        ``include_skipped`` the skipped items are offered again once everything else is done.

        Returns:
            The item, or ``None`` when the queue is finished.
        """
        # SQLite: read first, then a short separate write, so reads never hold the database-wide write lock.
        # Other databases lock rows, not the database: one transaction saves round trips.
        one_tx = self.engine.dialect.name != "sqlite"
        with self._write() if one_tx else self._read() as s, s.begin():
            ann = self._annotator(s, token)
            spec = self._spec(s, ann.study_id)
            row = design.next_open_assignment(s, ann.annotator_id, include_skipped=include_skipped, spec=spec)
            if row is None:
                return None
            shown = self._shown(s, row, spec)
            if one_tx and row.shown_at is None:
                self._mark_shown(s, row.id)
        if not one_tx and row.shown_at is None:
            with self._write() as s, s.begin():
                self._mark_shown(s, row.id)
        return shown

    def _mark_shown(self, s: Session, assignment_id: int) -> None:
        """Record when an item was first served (the first writer's time wins)."""
        s.execute(
            update(schema.Assignment)
            .where(schema.Assignment.id == assignment_id, schema.Assignment.shown_at.is_(None))
            .values(shown_at=self._clock())
        )

    def get_assignment(self, token: str, assignment_id: int) -> ShownItem:
        """One of the annotator's own items (e.g. to go back). Raises `AccessDenied` for anyone else's."""
        with self._read() as s:
            row = self._own_assignment(s, token, assignment_id)
            return self._shown(s, row, self._spec(s, row.study_id))

    def panels(self, token: str, assignment_id: int) -> list[Panel]:
        """SERVER-SIDE ONLY: method, source and corruption behind each label of an item, in label order.

        For the app's image loading; never put these fields (method, path, file name) into the page.
        """
        with self._read() as s:
            row = self._own_assignment(s, token, assignment_id)
            return design.panels_for(self._spec(s, row.study_id), self._item(s, row.item_id), row)

    def record_answer(self, token: str, assignment_id: int, criterion: str, value: str | Sequence[str]) -> RecordResult:
        """Store one answer; idempotent, append-only, one row per (annotator, item, criterion) by a unique index.

        Args:
            token: the annotator's invite token.
            assignment_id: from `ShownItem.assignment_id`.
            criterion: a criterion key of the item's kind.
            value: for ``rank`` criteria the labels best→worst (a permutation of the item's labels, as a list or
                "C>A>B"); for ``gsb`` criteria "G", "S" or "B" = storyboard **A** compared with storyboard **B**.
                The store decodes it to methods (and to "test method vs reference") using the stored shown order.

        Returns:
            `RecordResult`; a repeated submission returns the stored row with ``created=False``.

        Raises:
            AccessDenied: not the token's assignment. StoreError: unknown criterion or invalid value.
        """
        with self._write() as s, s.begin():
            row = self._own_assignment(s, token, assignment_id)
            item = self._item(s, row.item_id)
            spec = self._spec(s, row.study_id)
            limits.text(criterion, "criterion", limits.MAX_KEY)
            limits.answer(value)
            if criterion not in {c.key for c in design.criteria_of(spec, item.kind)}:
                raise StoreError(f"criterion: {criterion!r} is not a {item.kind} criterion of this study")
            methods = item.methods
            order = design.shown_order(row.seed, len(methods))
            try:
                raw = design.parse_value(item.kind, value, len(methods))
            except ValueError as err:
                raise StoreError(str(err)) from None
            values = {
                "study_id": row.study_id,
                "annotator_id": row.annotator_id,
                "item_id": row.item_id,
                "assignment_id": row.id,
                "criterion": criterion,
                "value_raw": raw,
                "value": design.decode(item.kind, raw, methods, order),
                "shown_order_json": design.dumps([methods[i] for i in order]),
                "seed": row.seed,
                "shown_at": row.shown_at,
                "created_at": self._clock(),
            }
            new_id = insert_answer_once(s, values)
            if new_id is not None:
                return RecordResult(
                    new_id, created=True, conflict=False, stored_value=design.raw_to_public(item.kind, raw)
                )
            stored = s.execute(
                select(schema.Answer.id, schema.Answer.value_raw).where(
                    schema.Answer.annotator_id == row.annotator_id,
                    schema.Answer.item_id == row.item_id,
                    schema.Answer.criterion == criterion,
                )
            ).one()
            return RecordResult(
                answer_id=int(stored.id),
                created=False,
                conflict=stored.value_raw != raw,
                stored_value=design.raw_to_public(item.kind, stored.value_raw),
            )

    def record_item(
        self, token: str, assignment_id: int, answers: dict[str, str | Sequence[str]]
    ) -> dict[str, RecordResult]:
        """Store several criteria of one item (each idempotent, see `record_answer`)."""
        return {key: self.record_answer(token, assignment_id, key, value) for key, value in answers.items()}

    def skip(self, token: str, assignment_id: int) -> None:
        """Mark an item skipped ("can't judge"); `next_assignment` moves on. Answers already given stay."""
        with self._write() as s, s.begin():
            row = self._own_assignment(s, token, assignment_id)
            if row.skipped_at is None:
                row.skipped_at = self._clock()

    def my_progress(self, token: str) -> AnnotatorProgress:
        """The token's own progress (completed / skipped / total)."""
        with self._read() as s:
            ann = self._annotator(s, token)
            return quality.progress_rows(s, self._spec(s, ann.study_id), ann.study_id, only=ann.annotator_id)[0]

    # ------------------------------------------------------------------ admin: monitoring, quality, export
    def progress(self, study_id: int) -> list[AnnotatorProgress]:
        """Progress of every annotator of a study, with the exclusion verdict."""
        limits.ident(study_id, "study_id")
        with self._read() as s:
            return quality.progress_rows(s, self._spec(s, study_id), study_id)

    def exclusions(self, study_id: int) -> list[ExclusionDecision]:
        """Apply the study's declared rules (and manual exclusions) to every annotator."""
        limits.ident(study_id, "study_id")
        with self._read() as s:
            return quality.evaluate(s, self._spec(s, study_id), study_id)

    def set_manual_exclusion(self, study_id: int, annotator_id: int, reason: str | None) -> None:
        """Exclude an annotator by hand (``reason`` is recorded), or lift it with ``reason=None``."""
        limits.ident(study_id, "study_id")
        limits.ident(annotator_id, "annotator_id")
        if reason is not None:
            limits.text(reason, "reason", limits.MAX_LABEL)
        with self._write() as s, s.begin():
            ann = s.get(schema.Annotator, annotator_id)
            if ann is None or ann.study_id != study_id:
                raise StoreError(f"annotator {annotator_id} is not in study {study_id}")
            ann.manual_exclusion = reason

    def answers_frame(
        self, study_id: int, *, include_catch: bool = True, include_excluded: bool = True
    ) -> pd.DataFrame:
        """All answers of a study as a long table (one row per answer), admin view with method names.

        Columns: ``answer_id, study_id, annotator_id, annotator, item_id, story_id, kind, criterion, catch_kind,
        value_raw, value, ranking, gsb, test_method, reference_method, shown_order, seed, position, shown_at,
        created_at, seconds, correct, excluded``. ``ranking`` is a list of methods best→worst (rank items),
        ``gsb`` is G/S/B of ``test_method`` vs ``reference_method`` (pair items), ``value_raw`` the answer as given
        in labels, ``shown_order`` the methods under labels A, B, ... Times are naive UTC; ``seconds`` runs from the
        item first being shown to this answer; ``correct`` is set for catch trials only. Read an export back with
        `study.export.read_answers`.
        """
        from study import export

        limits.ident(study_id, "study_id")
        with self._read() as s:
            spec = self._spec(s, study_id)
            return export.answers_frame(
                s, spec, study_id, include_catch=include_catch, include_excluded=include_excluded
            )

    def export_answers(self, study_id: int, path: str | Path, fmt: str | None = None) -> Path:
        """Write `answers_frame` to ``path`` (CSV or JSON, from ``fmt`` or the suffix), atomically."""
        from study import export

        return export.write(self.answers_frame(study_id), Path(path), fmt)

    def export_bytes(self, study_id: int, fmt: str = "csv") -> bytes:
        """`answers_frame` serialised as CSV or JSON bytes (for ``st.download_button``)."""
        from study import export

        return export.to_bytes(self.answers_frame(study_id), fmt)

    def statistics(
        self, study_id: int, *, n_boot: int = 1000, seed: int = 0, apply_exclusions: bool = True
    ) -> StudyReport:
        """GSB, ranks, Friedman, Kendall's W, Krippendorff's alpha and Bradley–Terry per criterion.

        Catch items are never counted; annotators excluded by the rules are dropped when ``apply_exclusions``.
        ``n_boot`` resamples (over stories) give the GSB intervals; Bradley–Terry uses at most 200 of them (each
        resample is a refit). See `study.report` for the units of each statistic.
        """
        from study.report import study_report

        frame = self.answers_frame(study_id, include_catch=False)
        info = self.get_study(study_id)
        return study_report(frame, info.spec, n_boot=n_boot, seed=seed, apply_exclusions=apply_exclusions)

    # ------------------------------------------------------------------ internals
    def _study(self, s: Session, study_id: int) -> schema.Study:
        limits.ident(study_id, "study_id")
        study = s.get(schema.Study, study_id)
        if study is None:
            raise StoreError(f"no study with id {study_id}")
        return study

    def _annotator(self, s: Session, token: str) -> AnnotatorView:
        if not limits.token_ok(token):
            raise AccessDenied("unknown invite token")
        digest = hash_token(token)
        view = self._tokens.get(digest)
        if view is None:
            ann = s.scalar(select(schema.Annotator).where(schema.Annotator.token_hash == digest))
            if ann is None:
                raise AccessDenied("unknown invite token")
            view = AnnotatorView(annotator_id=int(ann.id), study_id=int(ann.study_id), name=ann.name)
            self._tokens[digest] = view
        return view

    def _item(self, s: Session, item_id: int) -> design.ItemInfo:
        info = self._items.get(item_id)
        if info is None:
            row = s.get(schema.Item, item_id)
            if row is None:
                raise StoreError(f"no item with id {item_id}")
            info = self._items[item_id] = design.ItemInfo.from_row(row)
        return info

    def _shown(self, s: Session, row: schema.Assignment, spec: StudySpec) -> ShownItem:
        total = self._totals.get(row.annotator_id)
        if total is None:
            n = s.scalar(select(func.count()).where(schema.Assignment.annotator_id == row.annotator_id))
            total = self._totals[row.annotator_id] = int(n or 0)
        return design.shown_item(s, row, spec, self._item(s, row.item_id), total)

    def _own_assignment(self, s: Session, token: str, assignment_id: int) -> schema.Assignment:
        limits.ident(assignment_id, "assignment_id")
        ann = self._annotator(s, token)
        row = s.get(schema.Assignment, assignment_id)
        if row is None or row.annotator_id != ann.annotator_id:
            raise AccessDenied(f"assignment {assignment_id} does not belong to this token")
        return row

    def _spec(self, s: Session, study_id: int) -> StudySpec:
        spec = self._specs.get(study_id)
        if spec is None:
            spec = design.spec_from_json(self._study(s, study_id).spec_json)
            self._specs[study_id] = spec
        return spec


def insert_answer_once(s: Session, values: dict[str, Any]) -> int | None:
    """Insert an answer unless one exists for (annotator, item, criterion); the new row's id, or None if it existed.

    SQLite and PostgreSQL get ``INSERT ... ON CONFLICT DO NOTHING`` (no exception, so a PostgreSQL transaction is
    not aborted); other dialects fall back to a savepoint and the unique-constraint error.
    """
    dialect = s.get_bind().dialect.name
    keys = ["annotator_id", "item_id", "criterion"]
    if dialect in ("sqlite", "postgresql"):
        mod = sqlite_dialect if dialect == "sqlite" else pg_dialect
        stmt = (
            mod.insert(schema.Answer)
            .values(**values)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(schema.Answer.id)
        )
        new_id = s.execute(stmt).scalar()
        return None if new_id is None else int(new_id)
    try:
        with s.begin_nested():
            return int(s.execute(insert(schema.Answer).values(**values).returning(schema.Answer.id)).scalar_one())
    except IntegrityError:
        return None


__all__ = ["AccessDenied", "StoreError", "StudyStore", "hash_token", "open_store"]
