"""AppTest tests of the Storyboards and Results pages and of the navigation (streamlit.testing.v1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.settings import Settings
from tests.dashboard.conftest import APP, set_env


def run_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)


def image_protos(at: AppTest):
    return [e.proto for e in at.get("image")]


def test_storyboards_side_by_side_with_scripts_and_badges(app_settings, tree):
    at = run_app()
    assert not at.exception
    assert at.title[0].value == "Storyboards"
    assert at.sidebar.selectbox(key="sb_group").options == ["smoke", "vsb"]
    at.sidebar.selectbox(key="sb_group").set_value("smoke").run()
    md = texts(at)
    assert "**full**" in md and "**no_id_prompting**" in md
    # story-level metric badges carry the values written into metrics/<metric>/story_results.json
    expected = tree.runs.story_values["no_id_prompting"]["01"]
    assert f":blue-badge[CSD-self {expected['csd_self']:.1f}]" in md
    assert f":blue-badge[CIDS-self {expected['cids_self']:.1f}]" in md
    assert f":blue-badge[OCCM {expected['occm']:.1f}]" in md
    # 4 shots of story 01 fit the default page of 5: 4 shots x 2 columns
    imgs = image_protos(at)
    assert [i.imgs[0].caption for i in imgs] == [f"shot {n}" for n in (1, 1, 2, 2, 3, 3, 4, 4)]
    assert imgs[0].imgs[0].alt == "full, shot 1"
    assert all("shot_0" not in i.imgs[0].url and "/runs/" not in i.imgs[0].url for i in imgs)  # bytes, no paths
    # the script text is shown per shot with the mention's name and the cue
    assert any(
        "Character1 · young baker</span>" in m.value and "“Good morning, shot 3.”" in m.value for m in at.markdown
    )


def test_story_navigation_and_pagination(app_settings):
    at = run_app()
    at.sidebar.selectbox(key="sb_group").set_value("smoke").run()
    skey = "sb_story::smoke::en"
    assert at.selectbox(key=skey).value == "01"
    at.button(key="sb_next_story").click().run()
    assert at.selectbox(key=skey).value == "02"
    assert len(image_protos(at)) == 3 * 2
    at.button(key="sb_next_story").click().run()  # wraps around
    assert at.selectbox(key=skey).value == "01"
    at.sidebar.select_slider(key="sb_per_page").set_value(3).run()
    assert [i.imgs[0].caption for i in image_protos(at)][::2] == ["shot 1", "shot 2", "shot 3"]
    at.button(key="sb_next_page").click().run()
    assert [i.imgs[0].caption for i in image_protos(at)] == ["shot 4", "shot 4"]
    at.button(key="sb_prev_page").click().run()
    at.selectbox(key="sb_jump").set_value(4).run()
    assert [i.imgs[0].caption for i in image_protos(at)] == ["shot 4", "shot 4"]
    # fewer columns
    at.sidebar.multiselect(key="sb_cols::smoke::en").set_value(["no_id_prompting"]).run()
    assert [i.imgs[0].alt for i in image_protos(at)] == ["no_id_prompting, shot 4"]


def test_deep_link_opens_story_and_shot(app_settings):
    at = run_app(group="vsb", story="02", shot="3")
    assert not at.exception
    assert at.sidebar.selectbox(key="sb_group").value == "vsb"
    assert at.selectbox(key="sb_story::vsb::en").value == "02"
    caps = [i.imgs[0].caption for i in image_protos(at)]
    assert "shot 3" in caps
    assert "no per-story metrics" not in texts(at)  # plain outputs have no arm: no badge line at all


def test_missing_and_unreadable_shots_keep_columns_aligned(app_settings, tree):
    (tree.runs.sets["full"] / "01" / "shots" / "shot_02.png").unlink()
    (tree.runs.sets["no_id_prompting"] / "01" / "shots" / "shot_03.png").write_bytes(b"not a png")
    at = run_app()
    at.sidebar.selectbox(key="sb_group").set_value("smoke").run()
    caps = [i.imgs[0].caption for i in image_protos(at)]
    assert caps == ["shot 1", "shot 1", "shot 2: missing", "shot 2", "shot 3", "shot 3: unreadable", "shot 4", "shot 4"]
    assert not at.exception


def test_symlink_escaping_the_roots_is_not_served(app_settings, tree, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes((tree.runs.sets["full"] / "01" / "shots" / "shot_01.png").read_bytes())
    target = tree.runs.sets["full"] / "01" / "shots" / "shot_01.png"
    target.unlink()
    target.symlink_to(secret)
    at = run_app()
    at.sidebar.selectbox(key="sb_group").set_value("smoke").run()
    assert image_protos(at)[0].imgs[0].caption == "shot 1: unreadable"
    assert any("outside the configured run roots" in c.value for c in at.caption)


def test_no_runs_configured(monkeypatch, tmp_path):
    set_env(monkeypatch, Settings(runs=(), db_url=f"sqlite:///{tmp_path / 's.db'}"))
    at = run_app()
    assert not at.exception
    assert "No run roots configured" in at.info[0].value


def test_results_table_filters_and_drill_down(app_settings, tree):
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/results.py").run()
    assert not at.exception
    assert at.title[0].value == "Results"
    assert any("NOT comparable" in w.value and "2 row(s)" in w.value for w in at.warning)
    df = at.dataframe[0].value
    assert sorted(df["arm"]) == ["full", "no_id_prompting"]
    for arm, expected in tree.runs.summary.items():
        row = df[df["arm"] == arm].iloc[0]
        for col, v in expected.items():
            assert row[col] == pytest.approx(v), (arm, col)
    # per-story drill-down of the second run
    at.selectbox(key="res_drill").set_value(at.selectbox(key="res_drill").options[1]).run()
    story = at.dataframe[1].value.set_index("story")
    for sid, expected in tree.runs.story_values["no_id_prompting"].items():
        for col, v in expected.items():
            assert story.loc[sid, col] == pytest.approx(v)
    # Table 1: the paper's rows beside ours
    t1 = at.dataframe[2].value
    assert "UniMAGE" in set(t1["method"]) and "smoke/full" in set(t1["method"])
    ours = t1[t1["method"] == "UniMAGE"].iloc[0]
    assert (ours["CSD-self"], ours["CIDS-self"], ours["Alignment"], ours["OCCM"]) == (59.0, 59.2, 80.8, 88.07)
    # filters: an era no row has empties the table
    at.sidebar.multiselect(key="res_era").set_value([]).run()
    assert len(at.dataframe[0].value) == 0


def test_no_legacy_pages_folder_beside_the_entry_script():
    # Streamlit serves every file of a "pages/" folder beside the entry script as a v1 page, navigation included.
    assert not (Path(APP).parent / "pages").exists()


def test_navigation_hides_named_pages_from_annotators(app_settings, monkeypatch):
    at = run_app(token="whatever")
    assert not at.exception
    assert at.title[0].value == "User study"  # the study page, with an invalid token
    with pytest.raises(ValueError):
        at.switch_page("views/storyboards.py")
    set_env(monkeypatch, Settings(runs=app_settings.runs, db_url=app_settings.db_url, mode="study"))
    at = run_app()
    assert at.title[0].value == "User study"
    with pytest.raises(ValueError):
        at.switch_page("views/results.py")
