"""Sweep files: dotted overrides, defaults, validation errors that name the file and key, chained stage hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ablations.config import (
    SweepError,
    apply_overrides,
    flatten,
    load_sweep,
    parse_sweep,
    resolved_yaml,
    stage_hashes,
)

REPO = Path(__file__).resolve().parents[2]


def doc(**arms) -> dict:
    return {
        "name": "t",
        "base": {"data": {"synthstory": {"seed": 0}}, "train": {"config": "x.yaml", "model": {"id_prompting": True}}},
        "arms": arms or {"full": {}},
    }


def test_overrides_merge_and_replace():
    base = {"train": {"model": {"id_prompting": True, "lr": 1e-3}}, "seed": 0}
    out = apply_overrides(base, {"train.model.id_prompting": False, "seed": 3, "train.trainer": {"devices": 2}})
    assert out == {"train": {"model": {"id_prompting": False, "lr": 1e-3}, "trainer": {"devices": 2}}, "seed": 3}
    assert base["train"]["model"]["id_prompting"] is True  # input untouched
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": {}}) == {"a.b": 1, "a.c.d": 2, "e": {}}


def test_arm_resolution_and_defaults():
    sweep = parse_sweep(doc(full={"published_as": "UniMAGE"}, noid={"overrides": {"train.model.id_prompting": False}}))
    full, noid = sweep.arms["full"], sweep.arms["noid"]
    assert full.config["train"]["model"]["id_prompting"] is True
    assert noid.config["train"]["model"]["id_prompting"] is False
    assert full.config["evaluate"]["era"] == "A" and full.config["evaluate"]["backbones"] == "toy"
    assert full.published_as == "UniMAGE" and noid.published_as is None
    assert full.stages == ("data", "train", "generate", "evaluate")


def test_stage_hashes_chain_downstream_only():
    sweep = parse_sweep(
        doc(
            a={},
            b={"overrides": {"train.model.id_prompting": False}},
            c={"overrides": {"evaluate.era": "B"}},
        )
    )
    ha, hb, hc = (sweep.arms[n].stage_hashes() for n in "abc")
    assert ha["data"] == hb["data"] == hc["data"]
    assert ha["train"] != hb["train"] and ha["generate"] != hb["generate"] and ha["evaluate"] != hb["evaluate"]
    assert ha["train"] == hc["train"] and ha["generate"] == hc["generate"] and ha["evaluate"] != hc["evaluate"]
    # dict order never changes a hash
    cfg = sweep.arms["a"].config
    shuffled = {k: cfg[k] for k in reversed(list(cfg))}
    assert stage_hashes(shuffled, sweep.arms["a"].stages) == ha


def test_external_arm_has_no_train_or_generate():
    d = doc(sd={"external": {"outputs": "/o", "method": "StoryDiffusion"}, "published_as": "StoryDiffusion"})
    arm = parse_sweep(d).arms["sd"]
    assert arm.stages == ("data", "evaluate")
    assert arm.external == {"outputs": "/o", "method": "StoryDiffusion", "mode": None, "timestamp": None, "lang": None}


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(bogus=1), "unknown key 'bogus'; allowed: ['arms', 'base',"),
        (lambda d: d["arms"].update(x={"overides": {}}), "arms.x: unknown key 'overides' (did you mean 'overrides'?)"),
        (
            lambda d: d["arms"].update(x={"overrides": {"trian.model.lr": 1}}),
            "arms.x.overrides: unknown key 'trian.model.lr' (did you mean 'train.model.lr'?)",
        ),
        (lambda d: d["base"].update(evaluate={"era": "D"}), "base.evaluate.era: 'D' is not one of"),
        (lambda d: d["base"].update(evaluate={"metrics": ["csd", "fid"]}), "base.evaluate.metrics.1: 'fid' is not one"),
        (lambda d: d["base"].update(evaluate={"backbones": "official"}), "base.evaluate.weights"),
        (lambda d: d["base"].update(evaluate={"judge": "none"}), "prompt_align needs a judge"),
        (
            lambda d: d.update(stages=["train", "deploy"]),
            "stages.1: 'deploy' is not one of ['data', 'train', 'generate', 'evaluate']",
        ),
        (lambda d: d["arms"].update({"bad name": {}}), "'bad name' is not a plain folder name"),
        (lambda d: d["arms"].update(x={"external": {"method": "m"}}), "arms.x.external.outputs: required"),
        (
            lambda d: d["arms"].update(x={"overrides": {"seed.value": 1}}),
            "override 'seed.value': 'seed' is int, not a mapping",
        ),
        (lambda d: d["base"]["train"].pop("config"), "stage 'train' needs train.config"),
    ],
)
def test_bad_sweeps_name_file_and_key(tmp_path, mutate, needle):
    d = doc()
    mutate(d)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SweepError, match=r"broken\.yaml: not valid YAML"):
        load_sweep(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_sweep(tmp_path / "nope.yaml")


def test_resolved_config_replays_to_the_same_hashes(tmp_path):
    sweep = parse_sweep(
        doc(
            full={"published_as": "UniMAGE"},
            noid={"overrides": {"train.model.id_prompting": False, "evaluate.era": "B"}},
            sd={"external": {"outputs": "/o", "method": "SD"}},
        ),
        tmp_path / "s.yaml",
    )
    for arm in sweep.arms.values():
        path = tmp_path / f"{arm.name}.yaml"
        path.write_text(resolved_yaml(arm, sweep), encoding="utf-8")
        replay = load_sweep(path)
        again = replay.arms[arm.name]
        assert again.config == arm.config
        assert again.stages == arm.stages
        assert again.stage_hashes() == arm.stage_hashes()


@pytest.mark.parametrize("name", ["smoke", "synth-long", "table1"])
def test_bundled_sweeps_parse(name):
    sweep = load_sweep(REPO / "ablations" / "sweeps" / f"{name}.yaml")
    assert sweep.name == name
    assert "unimage sweep ablations/sweeps/" in sweep.header  # the header states the launch command
    if name in ("smoke", "synth-long"):
        groups = list(dict.fromkeys(a.group for a in sweep.arms.values()))
        seeds = [a.seed for a in sweep.arms.values() if a.group == "full"]
        assert len(seeds) >= 2 and len(set(seeds)) == len(seeds)  # several training seeds per arm
        assert sweep.arms[f"no_id_prompting.seed{seeds[0]}"].config["train"]["model"]["id_prompting"] is False
        assert {a.config["evaluate"]["backbones"] for a in sweep.arms.values()} == {"toy"}
        assert sweep.controls and sweep.reference == "full"
        if name == "smoke":  # the main job: both ablations, the null arm and the ground truth
            assert groups == ["full", "no_script_splitting", "no_id_prompting", "null_arm", "ground_truth"]
            assert seeds == [0, 1, 2]
            nss = sweep.arms["no_script_splitting.seed0"].config["train"]["data"]["script_splitting"]
            assert nss is False
            null = [a for a in sweep.arms.values() if a.role == "null"]
            assert len(null) == 3 and all(a.config["train"] == sweep.arms["full.seed0"].config["train"] for a in null)
    else:
        ev = sweep.arms["unimage"].config["evaluate"]
        assert (ev["backbones"], ev["era"], ev["split"]) == ("official", "A", "full")
        assert sweep.arms["unimage_wo_idp"].published_as == "UniMAGE w/o ID-P"
        ext = [a for a in sweep.arms.values() if a.external]
        assert {a.published_as for a in ext} >= {"StoryDiffusion", "Story2Board", "SEED-Story"}


def test_fit_config_fills_the_data_stage_folder_into_the_tokenizer_path():
    from ablations.config import fit_config

    section = {"config": "x.yaml", "model": {"tokenizer": "{data}/tokenizer", "icl_steps": 3}}
    cfg = fit_config(section, {"model": {"size": "small-synth"}}, 2, "/r/ckpt", "/s/_data/synthstory-ab")
    assert cfg["model"] == {
        "size": "small-synth",
        "tokenizer": "/s/_data/synthstory-ab/tokenizer",
        "icl_steps": 3,
        "seed": 2,
    }
    assert cfg["data"]["synthstory"] == "/s/_data/synthstory-ab" and section["model"]["tokenizer"] == "{data}/tokenizer"
    with pytest.raises(ValueError, match="no data stage"):
        fit_config(section, {}, 0, "/r", None)


def test_a_data_tokenizer_without_a_data_stage_is_a_located_sweep_error():
    doc = yaml.safe_load((REPO / "ablations/sweeps/synth-long.yaml").read_text(encoding="utf-8"))
    doc["stages"] = ["train", "generate", "evaluate"]
    doc["base"]["data"] = {}
    doc["base"]["evaluate"]["dataset"] = "somewhere"
    doc.pop("controls")
    del doc["arms"]["ground_truth"]
    with pytest.raises(SweepError, match=r"arms\.full\.train: .*names \{data\}, but the sweep has no data stage"):
        parse_sweep(doc, REPO / "ablations/sweeps/synth-long.yaml")
