"""Input limits of the study store, checked in Python before any value reaches the database.

Why here and not in the database: the backends disagree (SQLite stores a 5 MB name in a ``VARCHAR(200)``,
PostgreSQL raises ``DataError``; Python ints beyond 64 bits raise ``OverflowError`` in the SQLite driver, ids beyond
the ``INTEGER`` range ``DataError`` in PostgreSQL; PostgreSQL text cannot hold NUL; a lone surrogate cannot be
encoded at all). Checking first gives one behaviour on every backend: a `StoreError` naming the field, with the
offending value shortened, never repeated whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from study.errors import StoreError

MAX_NAME = 200  # study, annotator and admin-token names, story ids, method names: the String(200) columns
MAX_KEY = 64  # criterion keys
MAX_LABEL = 2_000  # criterion labels and questions, exclusion reasons, source paths
MAX_TEXT = 100_000  # study instructions (markdown)
MAX_TOKEN = 256  # invite and admin tokens (issued ones have 43 characters)
MAX_ANSWER = 200  # one raw answer ("C>A>B" or "G"), far above the longest valid one
MAX_INVITES = 10_000  # invites per call
MAX_ID = 2**31 - 1  # ids are INTEGER columns: 32-bit on PostgreSQL
MAX_SEED = 2**63 - 1


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def valid_text(value: str) -> bool:
    """Encodable as UTF-8 (no lone surrogates) and free of NUL, which PostgreSQL text cannot store."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text(value: Any, field: str, max_len: int) -> str:
    """``value`` if it is a valid string of at most ``max_len`` characters, else `StoreError` naming ``field``."""
    if not isinstance(value, str):
        raise StoreError(f"{field}: must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise StoreError(f"{field}: {len(value)} characters, at most {max_len} allowed")
    if not valid_text(value):
        raise StoreError(f"{field}: not valid text (NUL or an unpaired surrogate) in {short(value)}")
    return value


def texts(values: Sequence[Any], field: str, max_len: int, max_count: int = MAX_INVITES) -> None:
    """`text` for each element of a list (``field[i]`` in messages)."""
    if len(values) > max_count:
        raise StoreError(f"{field}: {len(values)} entries, at most {max_count} allowed")
    for i, v in enumerate(values):
        text(v, f"{field}[{i}]", max_len)


def ident(value: Any, field: str) -> int:
    """A database id: an ``int`` (not a bool) in [1, `MAX_ID`]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"{field}: must be an integer id, got {type(value).__name__} {short(value)}")
    if not 1 <= value <= MAX_ID:
        raise StoreError(f"{field}: {short(value)} is not a valid id (1..{MAX_ID})")
    return value


def token_ok(token: Any) -> bool:
    """Whether ``token`` can be an issued token at all (checked before hashing; anything else is unknown)."""
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN and valid_text(token)


def answer(value: Any, field: str = "value") -> None:
    """A raw answer: a short string, or a short list of short strings."""
    if isinstance(value, str):
        text(value, field, MAX_ANSWER)
        return
    if not isinstance(value, (list, tuple)):
        raise StoreError(f"{field}: must be a string or a list of labels, got {type(value).__name__}")
    if len(value) > 26:
        raise StoreError(f"{field}: {len(value)} labels, at most 26 allowed")
    for i, v in enumerate(value):
        text(v, f"{field}[{i}]", 8)


def spec_fields(spec: Any) -> None:
    """Every text and number of a `StudySpec` within its limit (before `design.validate_spec`)."""
    text(spec.name, "name", MAX_NAME)
    texts(spec.methods, "methods", MAX_NAME, 26)
    texts(spec.stories, "stories", MAX_NAME)
    for i, c in enumerate(spec.criteria if isinstance(spec.criteria, (list, tuple)) else ()):
        text(c.key, f"criteria[{i}].key", MAX_KEY)
        text(c.label, f"criteria[{i}].label", MAX_LABEL)
        text(c.question, f"criteria[{i}].question", MAX_LABEL)
    if spec.reference_method is not None:
        text(spec.reference_method, "reference_method", MAX_NAME)
    text(spec.instructions, "instructions", MAX_TEXT)
    for k, v in dict(spec.sources).items():
        text(k, "sources (method)", MAX_NAME)
        text(v, f"sources[{short(k, 30)}]", MAX_LABEL)
    for field, value, low, high in (
        ("seed", spec.seed, -MAX_SEED, MAX_SEED),
        # lower bounds (>= 1) are design.validate_spec's
        ("raters_per_item", spec.raters_per_item, -MAX_ID, MAX_INVITES),
        ("items_per_annotator", spec.items_per_annotator, -MAX_ID, MAX_ID),
    ):
        if value is None and field == "items_per_annotator":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise StoreError(f"{field}: must be an integer in [{low}, {high}], got {short(value)}")
