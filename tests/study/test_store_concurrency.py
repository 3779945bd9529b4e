"""50 annotators answer 100 items each in parallel (5000 answers), against a SQLite file and a PostgreSQL server.

Every annotator works from two threads at once (a second browser tab / a double click) for the first quarter of
the queue: both walk the same queue through `next_assignment` and submit, so the same (annotator, item, criterion)
is submitted twice at the same moment; on top, every tenth answer is re-sent at once (a retried request).
The test asserts that the database holds exactly one answer per (annotator, item, criterion), that every one of the 5000 is there with
the value its annotator meant, and that the store reported exactly 5000 inserts.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from study import Criterion, ExclusionRules, StudySpec, open_store, schema
from tests.study.pg_server import PgUnavailable, shared_server

N_ANNOTATORS = 50
N_ITEMS = 100


def intended(assignment_id: int) -> str:
    """The answer an annotator means to give to an assignment (the same in both of their threads)."""
    return "GSB"[(assignment_id * 7 + 3) % 3]


def annotate(url: str, tokens: list[str], n_items: int, second_tab_items: int) -> Counter[str]:
    """Every token answers its queue from two threads (the second stops after ``second_tab_items``).

    Opens its own store, so it can run in a separate process too. Returns submissions and inserts reported.
    """
    store = open_store(url, pool_size=20)
    lock = threading.Lock()
    tally: Counter[str] = Counter()
    errors: list[BaseException] = []

    def worker(token: str, limit: int) -> None:
        try:
            while limit > 0 and (item := store.next_assignment(token)) is not None:
                limit -= 1
                value = intended(item.assignment_id)
                res = store.record_answer(token, item.assignment_id, "overall", value)
                n_sub = 1
                if item.assignment_id % 10 == 0:  # a retried request right after the first
                    again = store.record_answer(token, item.assignment_id, "overall", value)
                    assert not again.created and again.answer_id == res.answer_id
                    n_sub += 1
                assert not res.conflict and res.stored_value == value
                with lock:
                    tally["submissions"] += n_sub
                    tally["created"] += res.created
        except BaseException as err:  # surfaced below
            errors.append(err)
            raise

    with ThreadPoolExecutor(max_workers=2 * len(tokens)) as pool:
        futures = [pool.submit(worker, t, limit) for t in tokens for limit in (n_items, second_tab_items)]
        for f in futures:
            f.exception()
    store.close()
    if errors:
        raise AssertionError(f"{len(errors)} worker errors, first: {errors[0]!r}")
    return tally


def run_study(
    url: str,
    n_annotators: int = N_ANNOTATORS,
    n_items: int = N_ITEMS,
    second_tab_items: int = N_ITEMS // 4,
    processes: int = 1,
) -> dict:
    """Run the simulated study; returns the figures (answers stored, inserts reported, duplicates, wall time)."""
    store = open_store(url)
    spec = StudySpec(
        name="load",
        methods=("unimage", "baseline"),
        stories=tuple(f"s{i:03d}" for i in range(n_items)),
        criteria=(Criterion("overall", "Overall", "Compare A with B", "gsb"),),
        reference_method="baseline",
        raters_per_item=n_annotators,
        catch_rate=0.0,
        exclusion=ExclusionRules(min_catch_accuracy=None, min_median_seconds=None, max_identical_share=None),
    )
    sid = store.create_study(spec)
    tokens = [inv.token for inv in store.issue_invites(sid, n_annotators)]
    t0 = time.perf_counter()
    if processes == 1:
        tally = annotate(url, tokens, n_items, second_tab_items)
    else:
        ctx = multiprocessing.get_context("spawn")
        chunks = [tokens[i::processes] for i in range(processes)]
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
            parts = list(
                pool.map(annotate, [url] * processes, chunks, [n_items] * processes, [second_tab_items] * processes)
            )
        tally = sum(parts, Counter())
    wall = time.perf_counter() - t0

    with store.engine.connect() as c:
        n_rows = c.scalar(select(func.count()).select_from(schema.Answer).where(schema.Answer.study_id == sid))
        per_key = (
            select(func.count().label("n"))
            .select_from(schema.Answer)
            .where(schema.Answer.study_id == sid)
            .group_by(schema.Answer.annotator_id, schema.Answer.item_id, schema.Answer.criterion)
            .subquery()
        )
        max_per_key = c.scalar(select(func.max(per_key.c.n)))
        per_ann = c.execute(
            select(schema.Answer.annotator_id, func.count())
            .where(schema.Answer.study_id == sid)
            .group_by(schema.Answer.annotator_id)
        ).all()
        stored = c.execute(
            select(schema.Answer.assignment_id, schema.Answer.value_raw).where(schema.Answer.study_id == sid)
        ).all()
        n_assign = c.scalar(
            select(func.count()).select_from(schema.Assignment).where(schema.Assignment.study_id == sid)
        )
    progress = store.progress(sid)
    store.close()
    return {
        "rows": int(n_rows or 0),
        "max_per_key": max_per_key,
        "per_annotator": sorted(int(n) for _, n in per_ann),
        "wrong_values": sum(v != intended(a) for a, v in stored),
        "assignments": int(n_assign or 0),
        "created": tally["created"],
        "submissions": tally["submissions"],
        "duplicates": tally["submissions"] - tally["created"],
        "completed": sum(p.completed for p in progress),
        "wall_s": wall,
    }


def check(fig: dict, label: str, n_annotators: int = N_ANNOTATORS, n_items: int = N_ITEMS) -> None:
    expected = n_annotators * n_items
    print(
        f"\n[{label}] {fig['rows']} answers stored of {expected} expected; inserts reported {fig['created']}; "
        f"submissions {fig['submissions']} ({fig['duplicates']} duplicates refused); wall {fig['wall_s']:.1f} s "
        f"({fig['submissions'] / fig['wall_s']:.0f} submissions/s)"
    )
    assert fig["assignments"] == expected
    assert fig["rows"] == expected  # zero lost
    assert fig["max_per_key"] == 1  # zero duplicated
    assert fig["per_annotator"] == [n_items] * n_annotators
    assert fig["wrong_values"] == 0
    assert fig["created"] == expected
    assert fig["completed"] == expected
    assert fig["duplicates"] >= expected // 10  # the deliberate retries alone are 10%


def test_concurrent_annotators_sqlite(tmp_path):
    check(run_study(f"sqlite:///{tmp_path / 'load.db'}"), "sqlite")


def _pg_url() -> str:
    try:
        return shared_server().create_database("load")
    except PgUnavailable as err:
        pytest.skip(f"PostgreSQL server cannot be started here: {err}")


@pytest.mark.slow
def test_concurrent_annotators_postgresql():
    """The full 50 x 100 run on PostgreSQL (about 20-35 s on the shared 2-core machine, hence slow)."""
    check(run_study(_pg_url()), "postgresql")


def test_concurrent_annotators_postgresql_default_size():
    """The same protocol at 20 annotators x 50 items (1000 answers) in the default run."""
    fig = run_study(_pg_url(), n_annotators=20, n_items=50, second_tab_items=12)
    check(fig, "postgresql 20x50", n_annotators=20, n_items=50)


@pytest.mark.slow
def test_concurrent_processes_sqlite(tmp_path):
    """Several processes (e.g. app replicas) writing one SQLite file: the file lock and busy timeout hold."""
    fig = run_study(f"sqlite:///{tmp_path / 'multi.db'}", n_annotators=12, n_items=40, second_tab_items=10, processes=3)
    check(fig, "sqlite, 3 processes", n_annotators=12, n_items=40)
