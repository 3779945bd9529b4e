"""AppTest tests of the Study (annotator) and Admin pages against a real SQLite study store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from study import Criterion, StudySpec, open_store, paper_criteria
from tests.dashboard.conftest import ADMIN_TOKEN, APP

RANK = paper_criteria("rank")[:2]  # overall, plot
GSB = (Criterion("consistency_gsb", "Character consistency", "Which keeps the characters consistent?", "gsb"),)


@pytest.fixture
def study(app_settings, tree):
    """A study over three methods (two arms and a plain output folder), rank and GSB criteria, with catch trials."""
    store = open_store(app_settings.db_url)
    sources = {
        "full": str(tree.runs.sets["full"]),
        "no_id_prompting": str(tree.runs.sets["no_id_prompting"]),
        "StoryDiffusion": str(tree.outputs.sets["StoryDiffusion/base"]),
    }
    spec = StudySpec(
        name="Pilot study",
        methods=tuple(sources),
        stories=("01", "02"),
        criteria=RANK + GSB,
        reference_method="StoryDiffusion",
        raters_per_item=2,
        catch_rate=0.25,
        seed=7,
        instructions="Judge each storyboard carefully.",
        sources=sources,
    )
    sid = store.create_study(spec)
    invites = store.issue_invites(sid, 2)
    yield store, sid, spec, invites
    store.close()


def page_dump(at: AppTest) -> str:
    """Every element the browser would receive, as text (protobuf dumps of the whole tree)."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for c in children.values():
                walk(c)

    walk(at._tree)
    return "\n".join(out)


def open_study(token: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def item_header(at: AppTest) -> str:
    return next(s.value for s in at.subheader if s.value.startswith("Item "))


def answer_current(at: AppTest, *, gsb: str = "G", reverse: bool = False) -> dict[str, object]:
    """Fill every question of the item on screen; returns what was entered (labels), by criterion key."""
    given: dict[str, object] = {}
    for ms in at.multiselect:
        if ms.key and ms.key.startswith("study_q::"):
            order = list(ms.options)[::-1] if reverse else list(ms.options)
            ms.set_value(order)
            given[ms.key.rsplit("::", 1)[1]] = order
    for r in at.radio:
        if r.key and r.key.startswith("study_q::"):
            r.set_value(gsb)
            given[r.key.rsplit("::", 1)[1]] = gsb
    return given


def click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def test_full_annotator_session_invite_answers_resume_done(study, tree):
    store, sid, _spec, invites = study
    token = invites[0].token
    total = store.my_progress(token).total
    assert total >= 4

    at = open_study(token)
    assert not at.exception
    assert at.title[0].value == "Pilot study"
    assert at.expander[0].label == "Instructions"
    assert any("worked example" in m.value for m in at.markdown)
    assert item_header(at) == f"Item 1 of {total}"

    # blinding: nothing that names a method or a file reaches the page
    secret_words = ["no_id_prompting", "StoryDiffusion", "smoke", str(tree.root), ".png", "shot_0", "generator"]
    dump = page_dump(at)
    for word in secret_words:
        assert word not in dump, word
    labels = [m.value for m in at.markdown if m.value.startswith("#### Storyboard ")]
    assert labels and all(lbl[len("#### Storyboard ") :] in "ABCDEFGH" for lbl in labels)

    # an incomplete answer is refused and nothing is stored
    for ms in at.multiselect:
        ms.set_value(list(ms.options)[:1])
    at = click(at, "Save and next")
    assert any("Please answer every question" in e.value for e in at.error)
    assert store.my_progress(token).answers == 0

    # answer item 1 and check that the stored methods are the ones behind the labels shown
    aid1 = store.next_assignment(token).assignment_id
    panels = {p.label: p.method for p in store.panels(token, aid1)}
    given = answer_current(at)
    at = click(at, "Save and next")
    assert not at.exception
    assert item_header(at) == f"Item 2 of {total}"
    frame = store.answers_frame(sid)
    mine = frame[frame["annotator"] == invites[0].name]
    assert len(mine) == len(given)
    for crit, value in given.items():
        row = mine[mine["criterion"] == crit].iloc[0]
        if isinstance(value, list):
            assert list(row["ranking"]) == [panels[lbl] for lbl in value]

    # skip item 2
    at = click(at, "Skip this item")
    assert item_header(at) == f"Item 3 of {total}"
    assert store.my_progress(token).skipped == 1

    # resume: a fresh session with the same link continues at item 3, and the earlier answers are kept
    at = open_study(token)
    assert item_header(at) == f"Item 3 of {total}"
    assert at.expander[0].proto.expanded is False  # instructions collapse once the annotator has started
    answered_before = store.my_progress(token).answers

    # answer everything else
    for _ in range(total):
        if not any(s.value.startswith("Item ") for s in at.subheader):
            break
        answer_current(at, gsb="S", reverse=True)
        at = click(at, "Save and next")
        assert not at.exception
    assert any("All done" in s.value for s in at.success)
    assert store.my_progress(token).answers > answered_before

    # the skipped item comes back on request; after it the queue is complete
    at = click(at, "Review skipped items")
    assert item_header(at) == f"Item 2 of {total}"
    answer_current(at)
    at = click(at, "Save and next")
    assert any("All done" in s.value for s in at.success)
    progress = store.my_progress(token)
    assert progress.completed == total

    # no duplicates: exactly one answer per (item, criterion) of this annotator
    frame = store.answers_frame(sid)
    mine = frame[frame["annotator"] == invites[0].name]
    assert not mine.duplicated(["item_id", "criterion"]).any()
    assert len(mine) == progress.answers


def test_unknown_token_and_token_entry(study):
    at = open_study("not-a-real-token")
    assert not at.exception
    assert "not valid" in at.error[0].value
    at = open_study(None)
    at.switch_page("views/study.py").run()
    assert at.title[0].value == "User study"
    at.text_input(key="study_token_input").input(study[3][1].token)
    at = click(at, "Start")
    assert at.query_params["token"] == [study[3][1].token] or at.query_params["token"] == study[3][1].token
    assert item_header(at).startswith("Item 1 of ")


def test_corrupted_catch_panel_is_degraded(study, tree):
    """A corrupted catch trial shows the same method's storyboard visibly degraded and out of order."""
    store, _sid, _spec, invites = study
    token = invites[1].token
    seen_corrupted = False
    for _ in range(store.my_progress(token).total):
        item = store.next_assignment(token)
        if item is None:
            break
        panels = store.panels(token, item.assignment_id)
        if any(p.corrupted for p in panels):
            seen_corrupted = True
            from dashboard.runs import scan
            from dashboard.views import study as study_page

            cat = scan([str(tree.root)])
            shown = [study_page._load_panel((str(tree.root),), cat, p) for p in panels]
            clean = [
                study_page._load_panel((str(tree.root),), cat, p.__class__(p.label, p.method, p.source, p.story_id))
                for p in panels
            ]
            for p, a, b in zip(panels, shown, clean):
                assert len(a["images"]) == len(b["images"]) > 0
                assert (a["images"] != b["images"]) == p.corrupted
            break
        for c in item.criteria:
            store.record_answer(token, item.assignment_id, c.key, "S" if c.kind == "gsb" else list(item.labels))
    assert seen_corrupted


@pytest.fixture
def captured_media(monkeypatch):
    """Bytes of every file the app hands to the browser (download buttons, images), by file name."""
    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            files[filename] = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


def admin_session() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/admin.py").run()
    return at


def test_admin_requires_token(app_settings):
    at = admin_session()
    assert at.title[0].value == "Admin"
    at.text_input(key="admin_token_input").input("wrong")
    at = click(at, "Unlock")
    assert "Wrong admin token" in at.error[0].value
    assert not at.tabs
    at.text_input(key="admin_token_input").input(ADMIN_TOKEN)
    at = click(at, "Unlock")
    assert [t.label for t in at.tabs] == ["Create study", "Invites & progress", "Exclusions", "Export", "Statistics"]


def test_admin_store_issued_token_is_accepted(app_settings):
    store = open_store(app_settings.db_url)
    extra = store.issue_admin_token("second admin")
    at = admin_session()
    at.text_input(key="admin_token_input").input(extra)
    at = click(at, "Unlock")
    assert at.tabs


def test_admin_create_invite_progress_export_statistics(app_settings, tree, captured_media):
    at = admin_session()
    at.text_input(key="admin_token_input").input(ADMIN_TOKEN)
    at = click(at, "Unlock")
    sets = at.multiselect(key="admin_new_sets")
    keys = [k for k in sets.options if "smoke" in k or "StoryDiffusion" in k]
    assert len(keys) == 3
    sets.set_value(keys).run()
    at.text_input(key="admin_new_name").input("Admin-made study")
    at.radio(key="admin_new_kind").set_value("both")
    at.selectbox(key="admin_new_ref").set_value("StoryDiffusion/base")
    at.number_input(key="admin_new_raters").set_value(3)
    at.slider(key="admin_new_catch").set_value(0.2)
    at = click(at, "Create study")
    assert not at.exception
    assert any("Created study" in s.value for s in at.success)

    store = open_store(app_settings.db_url)
    (info,) = store.list_studies()
    assert info.spec.name == "Admin-made study"
    assert set(info.spec.methods) == {"full", "no_id_prompting", "StoryDiffusion/base"}
    assert info.spec.reference_method == "StoryDiffusion/base"
    assert info.spec.sources["full"] == str(tree.runs.sets["full"].resolve())
    assert {c.kind for c in info.spec.criteria} == {"rank", "gsb"} and len(info.spec.criteria) == 8
    assert (info.spec.raters_per_item, info.spec.catch_rate) == (3, 0.2)

    # invites: links shown once, each a working token
    at = admin_session()
    at.text_input(key="admin_token_input").input(ADMIN_TOKEN)
    at = click(at, "Unlock")
    at.number_input(key=f"admin_inv_n_{info.study_id}").set_value(3)
    at = click(at, "Issue invites")
    assert not at.error, [e.value for e in at.error]
    links = at.dataframe[0].value
    assert len(links) == 3
    assert all(link.startswith("http://127.0.0.1:8599/?token=") for link in links["link"])
    tokens = [link.split("token=", 1)[1] for link in links["link"]]
    assert all(store.resolve_token(t) is not None for t in tokens)

    # one annotator answers two items through the store; progress and export reflect it
    # The queue is blinded with a secret seed, so the first items may all be catch trials (catch_rate 0.2): answer at
    # least two, and more until one real item is answered, so that the statistics have an annotator to count.
    answered, keys, n_items = 0, set(), 0
    while n_items < 2 or store.answers_frame(info.study_id, include_catch=False).empty:
        n_items += 1
        item = store.next_assignment(tokens[0])
        for c in item.criteria:
            store.record_answer(tokens[0], item.assignment_id, c.key, "G" if c.kind == "gsb" else list(item.labels))
            answered += 1
            keys.add(c.key)
    at = at.run()
    progress = next(df.value for df in at.dataframe if "completed" in df.value.columns)
    assert sorted(progress["completed"]) == [0, 0, n_items] and progress["answers"].sum() == answered

    csv_name = f"study_{info.study_id}_answers.csv"
    json_name = f"study_{info.study_id}_answers.json"
    assert csv_name in captured_media and json_name in captured_media
    exported = pd.read_csv(io.BytesIO(captured_media[csv_name]))
    assert len(exported) == answered
    assert set(exported["criterion"]) == keys
    assert json.loads(captured_media[json_name].decode())  # valid JSON with the same rows
    assert len(pd.read_json(io.BytesIO(captured_media[json_name]))) == answered
    assert captured_media[csv_name] == store.export_bytes(info.study_id, "csv")

    # exclusions table lists every annotator; statistics render on request
    excl = next(df.value for df in at.dataframe if "catch accuracy" in df.value.columns)
    assert len(excl) == 3
    at = click(at, "Compute statistics")
    assert not at.exception
    assert [m.value for m in at.metric][:1] == ["1"]  # one annotator answering


def test_study_sources_outside_the_run_roots_are_not_served(app_settings, tree, tmp_path):
    """A study whose sources point outside the configured roots shows no image (and no path) at all."""
    from tests.dashboard.fixtures import build_outputs

    elsewhere = build_outputs(tmp_path / "elsewhere", methods=("X", "Y"))
    store = open_store(app_settings.db_url)
    sources = {m: str(p) for m, p in (("X", elsewhere.sets["X/base"]), ("Y", elsewhere.sets["Y/base"]))}
    sid = store.create_study(StudySpec(name="Outside", methods=("X", "Y"), stories=("01",), sources=sources,
                                       criteria=RANK[:1], catch_rate=0.0))  # fmt: skip
    (invite,) = store.issue_invites(sid, 1)
    at = open_study(invite.token)
    assert not at.exception
    assert len(at.get("image")) == 0
    assert sorted(w.value for w in at.warning) == [
        "Storyboard A: images unavailable",
        "Storyboard B: images unavailable",
    ]
    assert str(tmp_path) not in page_dump(at)
