"""User-study figures from a real SQLite study database filled through the study store's own API."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timedelta

import pytest

from reports.study import study_figures
from study import Criterion, StudySpec, open_store, paper_criteria
from unimage.cli import main

METHODS = ("UniMAGE", "StoryDiffusion", "SEED-Story")
PREFERENCE = {"UniMAGE": 0, "SEED-Story": 1, "StoryDiffusion": 2}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=20)  # well above the speed rule
        return self.now


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """3 annotators rank and GSB-judge 4 stories; the first annotator sometimes swaps the two last methods."""
    path = tmp_path_factory.mktemp("study") / "study.db"
    store = open_store(path, clock=Clock())
    spec = StudySpec(
        name="pilot",
        methods=METHODS,
        stories=("01", "02", "03", "04"),
        criteria=(*paper_criteria("rank")[:2], Criterion("logic", "Narrative logic", "A vs B?", "gsb")),
        reference_method="SEED-Story",
        raters_per_item=3,
        catch_rate=0.0,
        seed=5,
    )
    sid = store.create_study(spec)
    given: list[tuple[str, str, object]] = []  # (criterion, kind, ranking or (test, answer))
    for n, inv in enumerate(store.issue_invites(sid, 3)):
        k = 0
        while (item := store.next_assignment(inv.token)) is not None:
            panels = store.panels(inv.token, item.assignment_id)
            for c in item.criteria:
                k += 1
                if item.kind == "rank":
                    order = sorted(panels, key=lambda p: PREFERENCE[p.method])
                    if n == 0 and k % 3 == 0:
                        order[1], order[2] = order[2], order[1]
                    store.record_answer(inv.token, item.assignment_id, c.key, [p.label for p in order])
                    given.append((c.key, "rank", [p.method for p in order]))
                else:
                    a, b = panels
                    test = a.method if a.method != spec.reference_method else b.method
                    win = PREFERENCE[a.method] < PREFERENCE[b.method]
                    raw = "S" if (n == 2 and k % 2 == 0) else ("G" if win else "B")
                    store.record_answer(inv.token, item.assignment_id, c.key, raw)
                    answer = raw if raw == "S" or a.method == test else {"G": "B", "B": "G"}[raw]
                    given.append((c.key, "gsb", (test, answer)))
    store.close()
    return path, given


def test_study_figures_plot_the_answers(study_db, tmp_path):
    path, given = study_db
    written = study_figures(f"sqlite:///{path}", tmp_path, n_boot=100)
    assert set(written) == {"study1_ranks", "study1_gsb"}
    for paths in written.values():
        assert paths["png"].stat().st_size > 20_000 and paths["pdf"].stat().st_size > 5_000

    # rank shares: counted independently from the answers the test gave
    rows = list(csv.DictReader(written["study1_ranks"]["csv"].open()))
    for crit in ("overall", "plot"):
        orders = [o for c, kind, o in given if c == crit and kind == "rank"]
        assert orders, crit
        for m in METHODS:
            counts = Counter(o.index(m) + 1 for o in orders)
            for r in (1, 2, 3):
                row = next(x for x in rows if x["criterion"] == crit and x["method"] == m and x["rank"] == str(r))
                assert int(row["count"]) == counts.get(r, 0)
                assert float(row["share"]) == pytest.approx(counts.get(r, 0) / len(orders))
            mean = sum((o.index(m) + 1) for o in orders) / len(orders)
            assert float(row["mean_rank"]) == pytest.approx(mean)

    # GSB: raw counts per test method, and the net score (G − B) / N
    rows = list(csv.DictReader(written["study1_gsb"]["csv"].open()))
    assert {r["test_method"] for r in rows} == {"UniMAGE", "StoryDiffusion"}
    for r in rows:
        answers = Counter(
            a for c, kind, (t, a) in ((c, k, o) for c, k, o in given if k == "gsb") if t == r["test_method"]
        )
        assert (int(r["G"]), int(r["S"]), int(r["B"])) == (answers["G"], answers["S"], answers["B"])
        n = sum(answers.values())
        assert float(r["net"]) == pytest.approx((answers["G"] - answers["B"]) / n)
        assert r["reference_method"] == "SEED-Story"


def test_report_study_cli(study_db, tmp_path, capsys):
    path, _ = study_db
    assert main(["report", "study", "--db", str(path), "-o", str(tmp_path), "--n-boot", "50"]) == 0
    assert "study1_ranks" in capsys.readouterr().out
    assert (tmp_path / "study1_gsb.png").is_file()
    assert main(["report", "study", "--db", str(path), "--study", "9", "-o", str(tmp_path)]) == 2
    assert "9" in capsys.readouterr().err
