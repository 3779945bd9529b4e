"""Hostile input to the study store becomes a short `StoreError` (or `AccessDenied` for tokens), the same on SQLite
and PostgreSQL, before the database sees it (issue 14 item 7).

Before: PostgreSQL raised ``DataError`` for names longer than their column and SQLite stored them; huge ids raised
``OverflowError``; a lone surrogate raised ``UnicodeEncodeError``; error messages repeated a 5 MB value; two admins
creating the same study name at once got a raw ``IntegrityError``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace

import pytest

from study import AccessDenied, Criterion, StoreError, StudySpec, limits, open_store
from tests.study.pg_server import PgUnavailable, shared_server

HUGE = "x" * 5_000_000
SURROGATE = "bad\ud800name"
CRIT = (Criterion("overall", "Overall", "Which is better?", "gsb"),)
SPEC = StudySpec(
    name="s", methods=("a", "b"), stories=("01", "02"), criteria=CRIT, reference_method="b", catch_rate=0.0
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        try:
            url = shared_server().create_database()
        except PgUnavailable as err:
            pytest.skip(f"PostgreSQL server cannot be started here: {err}")
    st = open_store(url)
    yield st
    st.close()


def _short_store_error(call, *args, **kwargs) -> str:
    with pytest.raises(StoreError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert len(message) < 300, f"{len(message)} characters: {message[:120]}..."
    return message


BAD_SPEC_FIELDS = [
    ("name", "n" * (limits.MAX_NAME + 1), "name: 201 characters"),
    ("name", SURROGATE, "name: not valid text"),
    ("name", "a\x00b", "name: not valid text"),
    ("name", HUGE, "name: 5000000 characters"),
    ("stories", ("01", "s" * (limits.MAX_NAME + 1)), r"stories\[1\]: 201 characters"),
    ("stories", ("01", SURROGATE), r"stories\[1\]: not valid text"),
    ("methods", ("a", HUGE), r"methods\[1\]: 5000000 characters"),
    ("instructions", HUGE, "instructions: 5000000 characters"),
    ("seed", 10**30, "seed: must be an integer"),
]


def test_bad_spec_fields_are_short_store_errors(store) -> None:
    """One store per backend for all cases (a PostgreSQL database per case would dominate the run)."""
    for field, value, match in BAD_SPEC_FIELDS:
        spec = replace(SPEC, **{field: value})
        if field == "methods":
            spec = replace(spec, reference_method="a")
        message = _short_store_error(store.create_study, spec)
        assert re.search(match, message), (field, message)
    assert store.list_studies() == []  # nothing stored


def test_names_at_the_limit_are_stored_on_both_backends(store) -> None:
    spec = replace(SPEC, name="n" * limits.MAX_NAME, stories=("s" * limits.MAX_NAME,))
    sid = store.create_study(spec)
    assert store.get_study(sid).spec.name == "n" * limits.MAX_NAME
    (invite,) = store.issue_invites(sid, 1, names=["r" * limits.MAX_NAME])
    assert store.resolve_token(invite.token).name == "r" * limits.MAX_NAME


def test_bad_ids_are_short_store_errors(store) -> None:
    sid = store.create_study(SPEC)
    (invite,) = store.issue_invites(sid, 1)
    for bad_id in (10**30, -1, 0, 2**31, True, "1"):
        _short_store_error(store.get_study, bad_id)
        _short_store_error(store.issue_invites, bad_id, 1)
        _short_store_error(store.set_manual_exclusion, sid, bad_id, "why")
        for call in (store.skip, store.get_assignment, store.panels):
            _short_store_error(call, invite.token, bad_id)
        _short_store_error(store.record_answer, invite.token, bad_id, "overall", "G")


def test_bad_answers_and_tokens(store) -> None:
    sid = store.create_study(SPEC)
    (invite,) = store.issue_invites(sid, 1)
    item = store.next_assignment(invite.token)
    assert item is not None
    for value in (HUGE, SURROGATE, ["A"] * 1000, "G\x00"):
        _short_store_error(store.record_answer, invite.token, item.assignment_id, "overall", value)
    for criterion in (HUGE, SURROGATE):
        _short_store_error(store.record_answer, invite.token, item.assignment_id, criterion, "G")
    _short_store_error(store.issue_invites, sid, 1, names=[SURROGATE])
    _short_store_error(store.issue_invites, sid, 1, names=["r" * (limits.MAX_NAME + 1)])
    _short_store_error(store.issue_invites, sid, limits.MAX_INVITES + 1)
    _short_store_error(store.set_manual_exclusion, sid, 1, HUGE)
    _short_store_error(store.issue_admin_token, SURROGATE)
    for token in (SURROGATE, HUGE, "\x00"):
        assert store.resolve_token(token) is None
        assert store.verify_admin_token(token) is False
        with pytest.raises(AccessDenied):
            store.next_assignment(token)
    assert store.record_answer(invite.token, item.assignment_id, "overall", "G").created  # the store still works


def test_racing_creators_of_one_study_name_get_a_store_error(store) -> None:
    results: list[object] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        barrier.wait()
        try:
            results.append(store.create_study(SPEC))
        except Exception as exc:  # collected: the test checks their type
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r for r in results if isinstance(r, int)]
    errors = [r for r in results if not isinstance(r, int)]
    assert len(ids) == 1 and len(errors) == 3
    assert all(isinstance(e, StoreError) and "already exists" in str(e) for e in errors), errors
