"""Reading run directories and ViStoryBench output folders (dashboard.runs)."""

from __future__ import annotations

import json
import shutil

import pytest

from dashboard import runs
from tests.dashboard.fixtures import TIMESTAMP, build_runs, write_story


def test_scan_finds_arms_and_plain_outputs(tree):
    cat = runs.scan([str(tree.root)])
    assert cat.groups() == ["smoke", "vsb"]
    smoke = {x.label: x for x in cat.in_group("smoke")}
    assert set(smoke) == {"full", "no_id_prompting"}
    assert smoke["full"].arm_dir == str((tree.root / "runs" / "smoke" / "full").resolve())
    # the latest timestamp wins over the superseded one (which holds only story 01 with one shot)
    assert smoke["full"].timestamp == TIMESTAMP
    assert smoke["full"].stories == ("01", "02")
    assert [s.index for s in runs.shots(smoke["full"], "01")] == [1, 2, 3, 4]
    vsb = {x.label: x for x in cat.in_group("vsb")}
    assert set(vsb) == {"StoryDiffusion/base", "SEED-Story/base"}
    assert all(x.arm_dir is None and x.lang == "en" for x in vsb.values())
    assert len(cat.arms) == 2


def test_language_first_layout_and_images_without_shots_folder(tmp_path):
    ts = tmp_path / "out" / "M" / "ch" / "mymode" / TIMESTAMP
    (ts / "07").mkdir(parents=True)
    from tests.dashboard.fixtures import write_png

    for i in (3, 1, 2):
        write_png(ts / "07" / f"{i}.png", (10, 20, 30), i)
    (ts / "07" / "notes.txt").write_text("not an image")
    cat = runs.scan([str(tmp_path)])
    (sb,) = cat.sets
    assert (sb.method, sb.mode, sb.lang, sb.group) == ("M", "mymode", "ch", "out")
    assert [s.index for s in runs.shots(sb, "07")] == [1, 2, 3]
    with pytest.raises(KeyError):
        runs.story_dir(sb, "../07")


def test_results_table_matches_written_values(tree):
    rows, problems = runs.results_table(runs.scan([str(tree.root)]))
    assert problems == []
    by_arm = {r["arm"]: r for r in rows}
    assert set(by_arm) == {"full", "no_id_prompting"}
    for arm, expected in tree.runs.summary.items():
        r = by_arm[arm]
        assert (r["sweep"], r["split"], r["era"], r["backbones"], r["judge"]) == ("smoke", "full", "A", "toy", "toy")
        for col, v in expected.items():
            assert r[col] == pytest.approx(v, abs=1e-9), (arm, col)


def test_single_split_summary_takes_split_from_provenance(tmp_path):
    build_runs(tmp_path, arms=("a",), split="lite", era="B", backbones="official", nested_split=False)
    (row,) = runs.results_table(runs.scan([str(tmp_path)]))[0]
    assert (row["split"], row["era"], row["backbones"]) == ("lite", "B", "official")
    assert row["csd_self"] == pytest.approx(50.0)


def test_alignment_known_answer_from_subscores():
    # UNO's published Era-A sub-scores (reference/vistorybench.md §10.1) give Alignment 70.43.
    flat = {
        "prompt_align.scene": 3.47,
        "prompt_align.camera": 3.062,
        "prompt_align.global_character_action": 2.617,
        "prompt_align.single_character_action": 2.121,
    }
    # 25 * (3.47 + 3.062 + 2.617 + 2.121) / 4 = 25 * 11.27 / 4 = 70.4375 (published, rounded inputs: 70.430)
    assert runs.to_columns(flat)["alignment"] == pytest.approx(70.4375, abs=1e-9)
    assert runs.to_columns(flat)["alignment"] == pytest.approx(70.430, abs=0.01)


def test_columns_scales():
    cols = runs.to_columns({"cids.occm": 88.07, "csd.self_csd": 0.59, "diversity.inception_score": 12.97})
    assert cols == pytest.approx({"occm": 88.07, "csd_self": 59.0, "inception": 12.97})
    # a row already in the results-table form is taken as written
    row = {"csd_self": 59.0, "cids_self": 59.2, "occm": 0.5, "alignment": 80.8}
    assert runs.to_columns(row) == row


def test_story_metrics_per_story(tree):
    arm = str((tree.root / "runs" / "smoke" / "no_id_prompting").resolve())
    got = {sid: runs.story_columns(v) for sid, v in runs.story_metrics(arm).items()}
    assert set(got) == {"01", "02"}
    for sid, expected in tree.runs.story_values["no_id_prompting"].items():
        assert got[sid] == pytest.approx(expected)


def test_malformed_files_are_reported_by_name_and_do_not_hide_other_arms(tree):
    bad = tree.root / "runs" / "smoke" / "full" / "metrics" / "summary.json"
    bad.write_text("{not json")
    story_bad = tree.root / "runs" / "smoke" / "full" / "metrics" / "csd" / "story_results.json"
    story_bad.write_text("[1, 2")
    rows, problems = runs.results_table(runs.scan([str(tree.root)]))
    assert [r["arm"] for r in rows] == ["no_id_prompting"]
    assert len(problems) == 1 and str(bad.resolve()) in problems[0]
    arm = str((tree.root / "runs" / "smoke" / "full").resolve())
    assert any("story_results.json" in p for p in runs.story_metric_problems(arm))
    # the readable per-story file still counts
    assert runs.story_metrics(arm)["01"]["cids.occm"] == pytest.approx(85.0)


def test_missing_root_is_a_problem_not_a_crash(tmp_path):
    cat = runs.scan([str(tmp_path / "nope")])
    assert cat.sets == () and "not a directory" in cat.problems[0]


def test_find_set_by_source_and_name(tree):
    cat = runs.scan([str(tree.root)])
    full = next(x for x in cat.sets if x.label == "full")
    assert runs.find_set(cat, full.base, "anything", "01") == full
    assert runs.find_set(cat, full.arm_dir, "full", "02") == full
    assert runs.find_set(cat, None, "StoryDiffusion/base", "01").label == "StoryDiffusion/base"
    assert runs.find_set(cat, "/etc", "full", "01") is None
    assert runs.find_set(cat, full.base, "full", "99") is None


def test_status_and_provenance(tree):
    arm = str(tree.root / "runs" / "smoke" / "full")
    assert runs.status(arm)["evaluate"] == "done"
    assert runs.describe(runs.provenance(arm))["era"] == "A"
    shutil.rmtree(tree.root / "runs" / "smoke" / "full" / "metrics")
    json.dumps(runs.describe({}))  # an arm without provenance describes as empty strings
    assert runs.summary_rows(arm) == []


def test_write_story_helper_layout(tmp_path):
    write_story(tmp_path / TIMESTAMP, "05", 2, (1, 2, 3), "x")
    assert sorted(p.name for p in (tmp_path / TIMESTAMP / "05" / "shots").iterdir()) == ["shot_01.png", "shot_02.png"]


def test_evaluator_layout_results_row_wins_and_resume_units_are_ignored(tmp_path):
    built = build_runs(tmp_path, evaluator_layout=True, split="lite", era="B", backbones="official")
    rows, problems = runs.results_table(runs.scan([str(tmp_path)]))
    assert problems == []
    for r in rows:
        expected = built.summary[r["arm"]]
        assert expected["inception"] > 1000  # only results_row.json has this value
        for col, v in expected.items():
            assert r[col] == pytest.approx(v), (r["arm"], col)
        assert (r["split"], r["era"], r["backbones"], r["comparable"]) == ("lite", "B", "official", True)
    arm = str((tmp_path / "smoke" / "full").resolve())
    got = {sid: runs.story_columns(v) for sid, v in runs.story_metrics(arm).items()}
    for sid, expected in built.story_values["full"].items():
        assert got[sid] == pytest.approx(expected)  # the -1 values of units/*.json were not read


def test_external_arm_shows_the_folder_its_evaluator_scored(tmp_path):
    root = tmp_path / "root"
    from tests.dashboard.fixtures import build_outputs

    outs = build_outputs(root / "baselines", methods=("StoryDiffusion",))
    arm = root / "runs" / "table1" / "storydiffusion"
    (arm / "metrics").mkdir(parents=True)
    (arm / "config.yaml").write_text("external: true\n")
    run_dir = outs.sets["StoryDiffusion/base"]
    (arm / "metrics" / "metadata.json").write_text(json.dumps({"run_dir": str(run_dir)}))
    cat = runs.scan([str(root)])
    (ext,) = cat.in_group("table1")
    assert (ext.label, ext.arm_dir, ext.base) == ("storydiffusion", str(arm.resolve()), str(run_dir.resolve()))
    assert {x.label for x in cat.in_group("baselines")} == {"StoryDiffusion/base"}  # still listed on its own
    # a scored folder outside the configured roots is not served
    cat2 = runs.scan([str(root / "runs")])
    assert cat2.sets == () and cat2.arms == (str(arm.resolve()),)
