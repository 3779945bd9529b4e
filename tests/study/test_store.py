"""Behaviour of the study store on a real SQLite file and on a real PostgreSQL server the test starts.

Covers: spec validation, token isolation and hashing, blinding (no method names on the annotator side, the
shown order derived from the stored seed), database-enforced uniqueness and idempotent answers, resume and
skip, balanced assignment and catch trials, the exclusion rules, export round trips and statistics.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from study import (
    AccessDenied,
    Criterion,
    ExclusionRules,
    StoreError,
    StudySpec,
    design,
    hash_token,
    open_store,
    paper_criteria,
    schema,
)
from study.engine import SchemaTooNew
from study.export import read_answers
from tests.study.pg_server import PgUnavailable, shared_server

METHODS = ("UniMAGE", "StoryDiffusion", "Seed-Story")
REF = "StoryDiffusion"


class FakeClock:
    """Naive-UTC clock the test advances by hand (for the speed rule)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    try:
        return shared_server().create_database()
    except PgUnavailable as err:
        pytest.skip(f"PostgreSQL server cannot be started here: {err}")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(db_url, clock):
    """A store on both backends (for behaviour that depends on the database: locking, types, constraints)."""
    st = open_store(db_url, clock=clock)
    yield st
    st.close()


@pytest.fixture
def lite(tmp_path, clock):
    """A store on a SQLite file only (for backend-independent logic, to keep the default run short)."""
    st = open_store(tmp_path / "study.db", clock=clock)
    yield st
    st.close()


def spec(**kw) -> StudySpec:
    base: dict = {
        "name": "pilot",
        "methods": METHODS,
        "stories": tuple(f"{i:02d}" for i in range(1, 7)),
        "criteria": (*paper_criteria("rank")[:2], Criterion("pref", "Preference", "Compare A with B", "gsb")),
        "reference_method": REF,
        "raters_per_item": 2,
        "catch_rate": 0.2,
        "seed": 11,
        "sources": {"UniMAGE": "/runs/sweep/unimage"},
    }
    base.update(kw)
    return StudySpec(**base)


def answer_all(store, token, clock=None, step=10.0, choose=None):
    """Answer every item of a token's queue; ``choose(item, panels, criterion)`` returns the raw value."""
    n = 0
    while (item := store.next_assignment(token)) is not None:
        panels = store.panels(token, item.assignment_id)
        if clock is not None:
            clock.tick(step)
        for c in item.criteria:
            store.record_answer(token, item.assignment_id, c.key, choose(item, panels, c))
            n += 1
    return n


def honest(item, panels, criterion):
    """Prefers UniMAGE > Seed-Story > StoryDiffusion; a corrupted panel always loses; identical pairs are Same."""
    score = {"UniMAGE": 0, "Seed-Story": 1, "StoryDiffusion": 2}
    if item.kind == "rank":
        return [p.label for p in sorted(panels, key=lambda p: (p.corrupted, score[p.method]))]
    a, b = panels
    if a.corrupted or b.corrupted:
        return "B" if a.corrupted else "G"
    if a.method == b.method:
        return "S"
    return "G" if score[a.method] < score[b.method] else "B"


# ------------------------------------------------------------------------------------------- creation


def test_spec_validation_names_the_field(lite):
    with pytest.raises(StoreError, match="reference_method"):
        lite.create_study(spec(reference_method=None))
    with pytest.raises(StoreError, match="methods"):
        lite.create_study(spec(methods=("only",)))
    with pytest.raises(StoreError, match="catch_rate"):
        lite.create_study(spec(catch_rate=0.9))
    with pytest.raises(StoreError, match="sources"):
        lite.create_study(spec(sources={"nope": "/x"}))
    sid = lite.create_study(spec())
    with pytest.raises(StoreError, match="already exists"):
        lite.create_study(spec())
    with pytest.raises(StoreError, match="no study"):
        lite.get_study(sid + 100)


def test_items_and_spec_round_trip(lite):
    sid = lite.create_study(spec())
    info = lite.get_study(sid)
    assert info.spec == spec()
    # rank: one item per story (6); gsb: one per (story, non-reference method) = 12
    assert info.n_items == 6 + 12
    assert info.n_catch_items >= 2
    assert [s.study_id for s in lite.list_studies()] == [sid]


# ------------------------------------------------------------------------------------------- tokens and blinding


def test_tokens_are_random_hashed_and_isolated(store, db_url):
    sid = store.create_study(spec())
    a, b = store.issue_invites(sid, 2, names=["alice", "bob"])
    assert a.token != b.token and len(a.token) >= 40
    assert store.resolve_token(a.token).name == "alice"
    assert store.resolve_token("not-a-token") is None
    assert store.resolve_token("") is None
    with store.engine.connect() as c:
        stored = c.execute(select(schema.Annotator.token_hash)).scalars().all()
    assert a.token not in stored and hash_token(a.token) in stored

    item_a = store.next_assignment(a.token)
    with pytest.raises(AccessDenied):
        store.get_assignment(b.token, item_a.assignment_id)
    with pytest.raises(AccessDenied):
        store.panels(b.token, item_a.assignment_id)
    with pytest.raises(AccessDenied):
        store.record_answer(b.token, item_a.assignment_id, item_a.criteria[0].key, "G")
    with pytest.raises(AccessDenied):
        store.skip(b.token, item_a.assignment_id)
    with pytest.raises(AccessDenied):
        store.next_assignment("forged")
    assert store.my_progress(b.token).answers == 0

    admin = store.issue_admin_token()
    assert store.verify_admin_token(admin)
    assert not store.verify_admin_token(a.token)
    assert not store.verify_admin_token(None)


def test_annotator_side_never_sees_method_names(lite):
    sid = lite.create_study(spec(instructions="Rank the storyboards."))
    (inv,) = lite.issue_invites(sid, 1)
    brief = lite.study_brief(inv.token)
    seen = [repr(brief), repr(lite.resolve_token(inv.token)), repr(lite.my_progress(inv.token))]
    while (item := lite.next_assignment(inv.token)) is not None:
        seen.append(repr(item))
        for c in item.criteria:
            lite.record_answer(inv.token, item.assignment_id, c.key, "S" if item.kind == "gsb" else list(item.labels))
        seen.append(repr(lite.get_assignment(inv.token, item.assignment_id)))
    text_seen = "\n".join(seen)
    for m in METHODS:
        assert m not in text_seen
    assert "/runs/" not in text_seen and "catch" not in text_seen and "identical" not in text_seen


def test_shown_order_derives_from_stored_seed_and_is_randomised(lite):
    sid = lite.create_study(spec(raters_per_item=4, catch_rate=0.0))
    invites = lite.issue_invites(sid, 4)
    first_label_method = Counter()
    for inv in invites:
        while (item := lite.next_assignment(inv.token)) is not None:
            panels = lite.panels(inv.token, item.assignment_id)
            assert [p.label for p in panels] == list(item.labels)
            if item.kind == "rank":
                first_label_method[panels[0].method] += 1
            for c in item.criteria:
                lite.record_answer(
                    inv.token, item.assignment_id, c.key, "G" if item.kind == "gsb" else list(item.labels)
                )
    frame = lite.answers_frame(sid)
    with lite.engine.connect() as c:
        items = {r.id: json.loads(r.methods_json) for r in c.execute(select(schema.Item))}
    for r in frame.itertuples():
        methods = items[r.item_id]
        assert r.shown_order == [methods[i] for i in design.shown_order(r.seed, len(methods))]
        if r.kind == "rank":
            # the raw answer "A>B>C" decodes to the shown order itself
            assert r.ranking == r.shown_order
        else:
            # "A is better" decodes to G for the test method only when the test method was shown as A
            assert r.gsb == ("G" if r.shown_order[0] == r.test_method else "B")
    # 4 raters x 6 stories = 24 rank items; every method is shown first sometimes
    assert sum(first_label_method.values()) == 24
    assert set(first_label_method) == set(METHODS)
    positions = frame.groupby("annotator_id")["item_id"].apply(list)
    assert len({tuple(p) for p in positions}) > 1  # item order differs between annotators


# ------------------------------------------------------------------------------------------- answers


def test_answers_unique_idempotent_and_append_only(store):
    sid = store.create_study(spec(catch_rate=0.0))
    (inv,) = store.issue_invites(sid, 1)
    item = store.next_assignment(inv.token)
    key = item.criteria[0].key
    value = "G" if item.kind == "gsb" else list(item.labels)
    first = store.record_answer(inv.token, item.assignment_id, key, value)
    again = store.record_answer(inv.token, item.assignment_id, key, value)
    assert first.created and not first.conflict
    assert not again.created and not again.conflict and again.answer_id == first.answer_id
    other = "B" if item.kind == "gsb" else list(reversed(item.labels))
    changed = store.record_answer(inv.token, item.assignment_id, key, other)
    assert changed.conflict and not changed.created and changed.stored_value == first.stored_value
    frame = store.answers_frame(sid)
    assert len(frame) == 1 and frame.loc[0, "answer_id"] == first.answer_id

    # the database itself refuses a second row, not only the store's code path
    with store.engine.connect() as c:
        row = c.execute(select(schema.Answer)).mappings().one()
    dup = {k: v for k, v in row.items() if k != "id"}
    with pytest.raises(IntegrityError), store.engine.begin() as c:
        c.execute(insert(schema.Answer).values(**dup))


def test_invalid_answers_are_rejected_with_the_field(lite):
    sid = lite.create_study(spec(catch_rate=0.0))
    (inv,) = lite.issue_invites(sid, 1)
    item = lite.next_assignment(inv.token)
    with pytest.raises(StoreError, match="criterion"):
        lite.record_answer(inv.token, item.assignment_id, "nonexistent", "G")
    key = item.criteria[0].key
    with pytest.raises(StoreError, match="value"):
        lite.record_answer(inv.token, item.assignment_id, key, "X" if item.kind == "gsb" else ["A", "A", "B"])
    assert lite.answers_frame(sid).empty


def test_resume_after_reopen_and_partial_items(db_url, clock):
    st = open_store(db_url, clock=clock)
    sid = st.create_study(spec(catch_rate=0.0))
    (inv,) = st.issue_invites(sid, 1)
    done = []
    for _ in range(3):
        item = st.next_assignment(inv.token)
        for c in item.criteria:
            st.record_answer(
                inv.token, item.assignment_id, c.key, honest(item, st.panels(inv.token, item.assignment_id), c)
            )
        done.append(item.assignment_id)
    # a rank item answered on one criterion only stays open and shows the stored answer
    while (item := st.next_assignment(inv.token)).kind != "rank":
        for c in item.criteria:
            st.record_answer(inv.token, item.assignment_id, c.key, "S")
        done.append(item.assignment_id)
    st.record_answer(inv.token, item.assignment_id, item.criteria[0].key, list(item.labels))
    st.close()

    st2 = open_store(db_url, clock=clock)  # a new process / server restart
    resumed = st2.next_assignment(inv.token)
    assert resumed.assignment_id == item.assignment_id
    assert resumed.answered == {item.criteria[0].key: tuple(item.labels)}
    assert resumed.position == len(done)
    prog = st2.my_progress(inv.token)
    assert (prog.completed, prog.total) == (len(done), 6 + 12)
    st2.close()


def test_skip_and_revisit(lite):
    sid = lite.create_study(spec(catch_rate=0.0, stories=("01",)))
    (inv,) = lite.issue_invites(sid, 1)
    first = lite.next_assignment(inv.token)
    lite.skip(inv.token, first.assignment_id)
    second = lite.next_assignment(inv.token)
    assert second.assignment_id != first.assignment_id
    assert lite.my_progress(inv.token).skipped == 1
    answer_all(lite, inv.token, choose=honest)
    assert lite.next_assignment(inv.token) is None
    again = lite.next_assignment(inv.token, include_skipped=True)
    assert again.assignment_id == first.assignment_id
    for c in again.criteria:
        lite.record_answer(
            inv.token, again.assignment_id, c.key, honest(again, lite.panels(inv.token, again.assignment_id), c)
        )
    prog = lite.my_progress(inv.token)
    assert prog.done and prog.completed == prog.total == 3 and prog.skipped == 0


# ------------------------------------------------------------------------------------------- assignment


def test_balanced_assignment_and_catch_rate(lite):
    s = spec(raters_per_item=2, items_per_annotator=9, catch_rate=0.25)
    sid = lite.create_study(s)
    invites = lite.issue_invites(sid, 3)
    with lite.engine.connect() as c:
        rows = c.execute(
            select(schema.Assignment.annotator_id, schema.Assignment.item_id, schema.Item.catch_kind).join(
                schema.Item, schema.Item.id == schema.Assignment.item_id
            )
        ).all()
    real = Counter(r.item_id for r in rows if r.catch_kind is None)
    # 18 real items (6 rank + 12 gsb), at most 9 per kind per annotator, least-covered first:
    # annotator 1 gets 6 rank + 9 gsb, annotator 2 the same (the 3 uncovered gsb items first), annotator 3 the
    # 6 gsb items still at one rater. Then every item has exactly 2 raters.
    assert len(real) == 18 and set(real.values()) == {2}
    real_per_ann = Counter(r.annotator_id for r in rows if r.catch_kind is None)
    catch_per_ann = Counter(r.annotator_id for r in rows if r.catch_kind is not None)
    ids = [i.annotator_id for i in invites]
    assert [real_per_ann[i] for i in ids] == [15, 15, 6]
    # catch trials make up a quarter of each queue: 6 rank -> 2, 9 gsb -> 3, 6 gsb -> 2
    assert [catch_per_ann[i] for i in ids] == [5, 5, 2]
    with pytest.raises(StoreError, match="already has 2 raters"):
        lite.issue_invites(sid, 1)
    assert lite.get_study(sid).n_annotators == 3  # the failed call created nobody


# ------------------------------------------------------------------------------------------- exclusions


def test_exclusion_rules(store, clock):
    rules = ExclusionRules(
        min_catch_accuracy=0.8, min_median_seconds=5.0, max_identical_share=0.9, min_answers_for_rules=10
    )
    sid = store.create_study(spec(raters_per_item=4, catch_rate=0.3, exclusion=rules))
    good, careless, fast, liner = store.issue_invites(sid, 4, names=["good", "careless", "fast", "liner"])

    def careless_choice(item, panels, c):  # ranks the corrupted panel first, calls corrupted pairs Same
        if item.kind == "rank":
            return [p.label for p in sorted(panels, key=lambda p: not p.corrupted)]
        return "S" if any(p.corrupted for p in panels) else "G"

    def liner_choice(item, panels, c):  # always "A wins", whatever is shown
        return "G" if item.kind == "gsb" else list(item.labels)

    answer_all(store, good.token, clock, 30.0, honest)
    answer_all(store, careless.token, clock, 30.0, careless_choice)
    answer_all(store, fast.token, clock, 1.0, honest)
    answer_all(store, liner.token, clock, 30.0, liner_choice)
    decisions = {d.name: d for d in store.exclusions(sid)}
    assert not decisions["good"].excluded and decisions["good"].catch_accuracy == 1.0
    assert decisions["good"].median_seconds == pytest.approx(30.0)
    assert decisions["careless"].excluded and decisions["careless"].catch_accuracy < 0.8
    assert any("catch" in r for r in decisions["careless"].reasons)
    assert decisions["fast"].excluded and decisions["fast"].reasons == ("too fast: median 1.0 s per item < 5.0 s",)
    assert decisions["liner"].excluded and any("straight-lining" in r for r in decisions["liner"].reasons)

    store.set_manual_exclusion(sid, decisions["good"].annotator_id, "left a comment saying they guessed")
    assert {p.name: p.excluded for p in store.progress(sid)} == {
        "good": True,
        "careless": True,
        "fast": True,
        "liner": True,
    }
    store.set_manual_exclusion(sid, decisions["good"].annotator_id, None)
    assert not {d.name: d for d in store.exclusions(sid)}["good"].excluded

    report = store.statistics(sid, n_boot=20)
    assert report.n_annotators_answering == 4 and report.n_annotators_kept == 1
    assert set(report.excluded_annotators) == {"careless", "fast", "liner"}
    kept = store.answers_frame(sid, include_catch=False, include_excluded=False)
    assert set(kept["annotator"]) == {"good"}


# ------------------------------------------------------------------------------------------- export and statistics


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_round_trip(store, tmp_path, clock, fmt):
    sid = store.create_study(spec())
    n = sum(answer_all(store, inv.token, clock, 12.0, honest) for inv in store.issue_invites(sid, 2))
    frame = store.answers_frame(sid)
    assert len(frame) == n > 50
    assert not frame.duplicated(["annotator_id", "item_id", "criterion"]).any()
    path = store.export_answers(sid, tmp_path / f"answers.{fmt}")
    back = read_answers(path)
    pd.testing.assert_frame_equal(back, frame)
    assert store.export_bytes(sid, fmt) == path.read_bytes()
    assert not list(tmp_path.glob(".answers*"))  # no temporary file left behind
    with pytest.raises(StoreError, match="xlsx"):
        store.export_answers(sid, tmp_path / "answers.xlsx")


def test_statistics_from_stored_answers(store, clock):
    sid = store.create_study(spec(raters_per_item=3, catch_rate=0.2))
    for inv in store.issue_invites(sid, 3):
        answer_all(store, inv.token, clock, 20.0, honest)
    report = store.statistics(sid, n_boot=30)
    by_key = {c.key: c for c in report.criteria}
    frame = store.answers_frame(sid, include_catch=False)
    # GSB: honest raters always prefer UniMAGE and Seed-Story over the reference StoryDiffusion
    pref = by_key["pref"]
    for m in ("UniMAGE", "Seed-Story"):
        g = pref.gsb[m]
        expected = Counter(frame[(frame.criterion == "pref") & (frame.test_method == m)]["gsb"])
        assert (g.good, g.same, g.bad) == (expected["G"], expected["S"], expected["B"]) == (18, 0, 0)
        assert g.net == 1.0 and g.ratio == float("inf")
    assert math.isnan(pref.alpha)  # every rater answered G everywhere: no variation, alpha is undefined
    # UniMAGE and Seed-Story each beat the reference every time and never meet: equal BT scores above it
    assert pref.bt.scores[0] == pytest.approx(pref.bt.scores[2]) and pref.bt.scores[0] > pref.bt.scores[1] + 1.0
    overall = by_key["overall"]
    assert overall.ranks.mean_rank == (1.0, 3.0, 2.0)
    assert overall.ranks.first_share == (1.0, 0.0, 0.0)
    assert overall.kendall_w == pytest.approx(1.0) and overall.kendall_w_items_mean == pytest.approx(1.0)
    assert overall.alpha == pytest.approx(1.0)
    assert overall.ranks.friedman_p < 1e-6
    summary = report.summary_frame()
    assert set(summary["criterion"]) == {"overall", "plot", "pref"}
    assert summary.loc[(summary.criterion == "overall") & (summary.method == "UniMAGE"), "mean_rank"].item() == 1.0


# ------------------------------------------------------------------------------------------- schema


def test_schema_version_and_migration_guard(db_url):
    st = open_store(db_url)
    with st.engine.begin() as c:
        assert c.execute(select(schema.SchemaVersion.version)).scalar_one() == schema.SCHEMA_VERSION
        c.execute(update(schema.SchemaVersion).values(version=schema.SCHEMA_VERSION + 1))
    st.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        open_store(db_url)


def test_sqlite_uses_wal_and_busy_timeout(tmp_path):
    st = open_store(tmp_path / "s.db")
    with st.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    st.close()


def test_urls_paths_and_memory(tmp_path):
    from study.engine import normalise_url

    assert normalise_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert normalise_url("postgresql://u:pw@h:5/db") == "postgresql+psycopg://u:pw@h:5/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    st = open_store("sqlite://")  # in-memory, one shared connection
    sid = st.create_study(spec(catch_rate=0.0, stories=("01",)))
    (inv,) = st.issue_invites(sid, 1)
    assert answer_all(st, inv.token, choose=honest) == 2 + 2  # 1 rank item x 2 criteria + 2 pair items x 1
    assert st.my_progress(inv.token).done
    st.close()


def test_concurrent_invites_keep_coverage_exact(store):
    from concurrent.futures import ThreadPoolExecutor

    sid = store.create_study(spec(raters_per_item=2, catch_rate=0.0))

    def issue(_):
        try:
            return store.issue_invites(sid, 1)[0]
        except StoreError:
            return None

    with ThreadPoolExecutor(max_workers=5) as pool:
        issued = [r for r in pool.map(issue, range(5)) if r is not None]
    assert len(issued) == 2  # each annotator takes every item; the third finds the study full
    with store.engine.connect() as c:
        per_item = Counter(c.execute(select(schema.Assignment.item_id)).scalars())
    assert len(per_item) == 18 and set(per_item.values()) == {2}
