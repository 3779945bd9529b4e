"""Study-store throughput: answers/s under concurrent annotators, SQLite file vs a local PostgreSQL server.

Run: ``python -m pytest tests/benchmarks/test_store_bench.py --benchmark-only -p no:cacheprovider -s``

Each writer thread is one annotator doing what the Study page does per item: `next_assignment` then
`record_answer` (a write transaction each). The baseline, measured in the same test, is one annotator alone on a
SQLite file; the ratio says how much concurrency buys (or costs) on each backend. Rates use the best of 3 rounds
(the least disturbed by other processes on a shared machine). PostgreSQL runs with its
default durability (fsync and synchronous commit on); SQLite with WAL and ``synchronous=NORMAL``.
On a 2-core machine the Python side (SQLAlchemy) is the bottleneck for both; the figures are for comparison
within one run, not absolute capacity.
"""

from __future__ import annotations

import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from study import Criterion, ExclusionRules, StudySpec, open_store
from tests.study.pg_server import PgServer, PgUnavailable, start_server

ITEMS = 40


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer | None]:
    try:
        server = start_server(durable=True)
    except PgUnavailable as err:
        print(f"\nPostgreSQL unavailable, only SQLite is measured: {err}")
        yield None
        return
    yield server
    server.stop()


def _prepare(url: str, writers: int):
    store = open_store(url, pool_size=max(5, writers))
    spec = StudySpec(
        name="bench",
        methods=("a", "b"),
        stories=tuple(f"s{i}" for i in range(ITEMS)),
        criteria=(Criterion("overall", "Overall", "Compare A with B", "gsb"),),
        reference_method="b",
        raters_per_item=writers,
        catch_rate=0.0,
        exclusion=ExclusionRules(min_catch_accuracy=None, min_median_seconds=None, max_identical_share=None),
    )
    sid = store.create_study(spec)
    return store, [inv.token for inv in store.issue_invites(sid, writers)]


def _annotate(store, tokens: list[str]) -> int:
    """All tokens answer their whole queue concurrently; returns the number of answers stored."""
    counts = [0] * len(tokens)

    def one(k: int) -> None:
        while (item := store.next_assignment(tokens[k])) is not None:
            counts[k] += store.record_answer(
                tokens[k], item.assignment_id, "overall", "GSB"[item.assignment_id % 3]
            ).created

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def _url(backend: str, pg: PgServer | None, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkstemp(suffix='.db', dir=tmp)[1]}"
    assert pg is not None
    return pg.create_database("bench")


@pytest.mark.parametrize("writers", [1, 8, 32])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_answers_per_second(benchmark, pg, tmp_path, backend, writers):
    if backend == "postgresql" and pg is None:
        pytest.skip("PostgreSQL server cannot be started here")

    base_rates = []  # best of 3: on a shared machine the minimum time is the least disturbed one
    for _ in range(3):
        base_store, base_tokens = _prepare(_url("sqlite", None, tmp_path), 1)
        t0 = time.perf_counter()
        base_n = _annotate(base_store, base_tokens)
        base_rates.append(base_n / (time.perf_counter() - t0))
        base_store.close()
    base_rate = max(base_rates)

    stores = []

    def setup():
        store, tokens = _prepare(_url(backend, pg, tmp_path), writers)
        stores.append(store)
        return (store, tokens), {}

    benchmark.group = "store-answers"
    n = benchmark.pedantic(_annotate, setup=setup, rounds=3, iterations=1)
    for s in stores:
        s.close()
    assert n == writers * ITEMS
    rate = n / benchmark.stats.stats.min
    benchmark.extra_info.update(
        {
            "backend": backend,
            "writers": writers,
            "answers": n,
            "answers_per_s": round(rate, 1),
            "baseline_sqlite_1_writer_answers_per_s": round(base_rate, 1),
            "ratio_vs_baseline": round(rate / base_rate, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )
    print(
        f"\n{backend:10s} writers={writers:3d}: {rate:7.1f} answers/s | baseline sqlite x1 {base_rate:7.1f} answers/s"
        f" | ratio x{rate / base_rate:.2f}"
    )
