"""The user-study store: studies, invites, assignments and append-only answers in a SQL database.

Public API (see `dashboard.store.api` for the full docstrings)::

    from dashboard.store import open_store, StudySpec, paper_criteria
"""

from dashboard.store.api import AccessDenied, StoreError, StudyStore, hash_token, open_store
from dashboard.store.types import (
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
