"""User studies (DESIGN.md §3.6): the store and the statistics, with no Streamlit (the app and the reports both use it).

- the store: studies, invites, assignments and append-only answers in a SQL database (`study.api`, schema in
  `study.schema`; the helpers `study.design`, `study.quality`, `study.export` take an open SQLAlchemy session);
- the statistics: GSB, ranks, agreement and intervals (`study.stats`), per study in `study.report`.

Public API (see `study.api` for the full docstrings)::

    from study import open_store, StudySpec, paper_criteria
"""

from study.api import AccessDenied, StoreError, StudyStore, hash_token, open_store
from study.types import (
    LABELS,
    AnnotatorProgress,
    AnnotatorView,
    Criterion,
    ExclusionDecision,
    ExclusionRules,
    Invite,
    Panel,
    RecordResult,
    ShownItem,
    StudyBrief,
    StudyInfo,
    StudySpec,
    corrupted_shot_order,
    paper_criteria,
)

__all__ = [
    "LABELS",
    "AccessDenied",
    "AnnotatorProgress",
    "AnnotatorView",
    "Criterion",
    "ExclusionDecision",
    "ExclusionRules",
    "Invite",
    "Panel",
    "RecordResult",
    "ShownItem",
    "StoreError",
    "StudyBrief",
    "StudyInfo",
    "StudySpec",
    "StudyStore",
    "corrupted_shot_order",
    "hash_token",
    "open_store",
    "paper_criteria",
]
