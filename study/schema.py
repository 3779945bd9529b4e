"""SQLAlchemy 2.x ORM tables of the study store (version `SCHEMA_VERSION`).

Answers are append-only: the store never updates or deletes an ``answers`` row, and the unique index on
(annotator, item, criterion) makes the database itself refuse a second answer, so a double click, a retried
request or two racing threads can never duplicate one. Mutable state (an item shown / skipped, a manual
exclusion) lives in the other tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    """One row: the schema version the database was created/migrated to."""

    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class AdminToken(Base):
    __tablename__ = "admin_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class Study(Base):
    """A study; its full design (`StudySpec`) is stored as JSON so it can be replayed exactly."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    spec_json: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class Item(Base):
    """One story × methods unit. ``methods_json`` lists the methods by slot (for pair items: [test, reference]).

    Catch items have ``catch_kind`` set; ``corrupted_slot`` says which slot is shown degraded.
    """

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True, nullable=False)
    story_id: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    methods_json: Mapped[str] = mapped_column(Text, nullable=False)
    catch_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    corrupted_slot: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Annotator(Base):
    """An invited annotator; only the SHA-256 of the invite token is stored."""

    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    manual_exclusion: Mapped[str | None] = mapped_column(Text, nullable=True)


class Assignment(Base):
    """An item in an annotator's queue: its place (``position``) and the seed of its shown method order."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("annotator_id", "item_id", name="uq_assignment_annotator_item"),
        UniqueConstraint("annotator_id", "position", name="uq_assignment_annotator_position"),
        Index("ix_assignments_item", "item_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True, nullable=False)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), nullable=False)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    skipped_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Answer(Base):
    """One answer to one criterion of one item; never updated or deleted.

    ``value_raw`` is what the annotator chose in labels ("C>A>B", or G/S/B of A vs B); ``value`` is its decoding
    to methods (JSON list best→worst, or G/S/B of the test method vs the reference); ``shown_order_json`` lists
    the methods in label order and ``seed`` is the assignment seed it derives from.
    """

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("annotator_id", "item_id", "criterion", name="uq_answer_annotator_item_criterion"),
        Index("ix_answers_study", "study_id"),
        Index("ix_answers_assignment", "assignment_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), nullable=False)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), nullable=False)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), nullable=False)
    criterion: Mapped[str] = mapped_column(String(64), nullable=False)
    value_raw: Mapped[str] = mapped_column(String(200), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    shown_order_json: Mapped[str] = mapped_column(Text, nullable=False)
    seed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
