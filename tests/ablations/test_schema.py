"""The typed sweep schema: a typo or a wrong type anywhere in a sweep file, ``train.*`` included, fails at load with
its dotted path and the nearest valid key; the ``train`` section is held against the ``unimage fit`` parser itself."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import pytest
import yaml

from ablations import cli, schema_fit
from ablations.config import SweepError, load_sweep, parse_sweep
from ablations.schema_check import At, check, check_dotted

REPO = Path(__file__).resolve().parents[2]
TINY = "unimage/train/configs/tiny-synthstory.yaml"


def typed_doc() -> dict:
    """A sweep with every section, two seeds, an ablation, a null arm and an external arm."""
    return {
        "name": "typed",
        "seeds": [0, 1],
        "base": {
            "data": {"synthstory": {"seed": 0, "eval_stories": 2, "image_size": 64, "eval_shots": [3, 4]}},
            "train": {
                "config": TINY,
                "model": {"icl_steps": 20, "del_steps": 10},
                "data": {"packer": {"max_num_tokens": 2048}},
                "trainer": {"log_every_n_steps": 5},
            },
            "generate": {"sampling": {"num_timesteps": 4}},
            "evaluate": {"batch_size": 8, "diagnostics": True},
        },
        "arms": {
            "full": {"published_as": "UniMAGE"},
            "no_id": {"overrides": {"train.model.id_prompting": False, "evaluate.era": "B"}},
            "null": {"null_of": "full", "seeds": [7]},
            "gt": {"external": {"outputs": "{data}/eval/outputs", "method": "ground_truth"}},
        },
    }


def parse(doc: dict):
    return parse_sweep(doc, REPO / "typed.yaml")  # train.config resolves beside it: the repo's tiny-synthstory.yaml


def test_stage_hashes_are_the_ones_the_untyped_loader_gave():
    """Known answer: these hashes were computed by the previous hand-written loader (commit 7ffb1a5) on this exact
    doc; equal hashes mean the typed defaults resolve every arm to the same config, so no finished run reruns."""
    arms = parse(typed_doc()).arms
    assert arms["full.seed1"].stage_hashes() == {
        "data": "02e11230c74d8b23",
        "train": "e1b28e6afaa2cb12",
        "generate": "7b691b6701718b1d",
        "evaluate": "ed48ac67aece3d95",
    }
    assert arms["no_id.seed0"].stage_hashes()["evaluate"] == "6e205af1e22baec3"
    assert arms["null.seed7"].stage_hashes()["train"] == "813c8cf0c5c5bba3"
    assert arms["gt"].stage_hashes() == {"data": "02e11230c74d8b23", "evaluate": "87e1c6ff1529a82a"}


def _set(*path: str, value: object):
    def mutate(d: dict) -> None:
        node = d
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return mutate


def _override(arm: str, key: str, value: object):
    return lambda d: d["arms"][arm].setdefault("overrides", {}).update({key: value})


TYPOS = {
    "top level": (_set("seed", value=[0]), "sweep {p}: unknown key 'seed' (did you mean 'seeds'?)"),
    "base": (_set("base", "devise", value="cpu"), "base: unknown key 'devise' (did you mean 'device'?)"),
    "synthstory": (
        _set("base", "data", "synthstory", "eval_storie", value=3),
        "base.data.synthstory: unknown key 'eval_storie' (did you mean 'eval_stories'?)",
    ),
    "train.model": (
        _set("base", "train", "model", "icl_step", value=3),
        "base.train.model: unknown key 'icl_step' (did you mean 'icl_steps'?)",
    ),
    "train.data.packer": (
        _set("base", "train", "data", "packer", "max_num_token", value=3),
        "base.train.data.packer: unknown key 'max_num_token' (did you mean 'max_num_tokens'?)",
    ),
    "train.trainer": (
        _set("base", "train", "trainer", "log_every_n_step", value=3),
        "base.train.trainer: unknown key 'log_every_n_step' (did you mean 'log_every_n_steps'?)",
    ),
    "train.checkpoint": (
        _set("base", "train", "checkpoint", "every_n_train_step", value=3),
        "base.train.checkpoint: unknown key 'every_n_train_step' (did you mean 'every_n_train_steps'?)",
    ),
    "train section": (
        _set("base", "train", "trainr", value={}),
        "base.train: unknown key 'trainr' (did you mean 'trainer'?)",
    ),
    "sampling": (
        _set("base", "generate", "sampling", "num_timestep", value=3),
        "base.generate.sampling: unknown key 'num_timestep' (did you mean 'num_timesteps'?)",
    ),
    "evaluate": (
        _set("base", "evaluate", "diagnostic", value=False),
        "base.evaluate: unknown key 'diagnostic' (did you mean 'diagnostics'?)",
    ),
    "launch": (
        _set("base", "launch", "cpus_per_tasks", value=4),
        "base.launch: unknown key 'cpus_per_tasks' (did you mean 'cpus_per_task'?)",
    ),
    "arm key": (
        _set("arms", "full", "publised_as", value="x"),
        "arms.full: unknown key 'publised_as' (did you mean 'published_as'?)",
    ),
    "external": (
        _set("arms", "gt", "external", "metod", value="x"),
        "arms.gt.external: unknown key 'metod' (did you mean 'method'?)",
    ),
    "override train": (
        _override("no_id", "train.model.id_prompt", False),
        "arms.no_id.overrides: unknown key 'train.model.id_prompt' (did you mean 'train.model.id_prompting'?)",
    ),
    "override packer": (
        _override("no_id", "train.data.packer.max_buffer", 2),
        "arms.no_id.overrides: unknown key 'train.data.packer.max_buffer' "
        "(did you mean 'train.data.packer.max_buffer_size'?)",
    ),
    "override section": (
        _override("no_id", "evalute.era", "A"),
        "arms.no_id.overrides: unknown key 'evalute.era' (did you mean 'evaluate.era'?)",
    ),
    "override sampling": (
        _override("full", "generate.sampling.cfg_text_scal", 2.0),
        "arms.full.overrides: unknown key 'generate.sampling.cfg_text_scal' "
        "(did you mean 'generate.sampling.cfg_text_scale'?)",
    ),
    "null_of": (
        _set("arms", "null", "null_of", value="fulll"),
        "arms.null.null_of: 'fulll' is not another arm of the sweep (did you mean 'full'?)",
    ),
    "reference name": (_set("reference", value="no-id"), "reference: 'no-id' is not a trained arm"),
    "literal value": (
        _set("base", "evaluate", "backbones", value="offical"),
        "base.evaluate.backbones: 'offical' is not one of ['toy', 'official'] (did you mean 'official'?)",
    ),
}


@pytest.mark.parametrize("case", list(TYPOS))
def test_a_typo_anywhere_names_its_dotted_path_and_the_nearest_key(case):
    mutate, message = TYPOS[case]
    doc = typed_doc()
    mutate(doc)
    with pytest.raises(SweepError) as err:
        parse(doc)
    assert message.format(p=REPO / "typed.yaml") in str(err.value)
    assert str(err.value).startswith(f"sweep {REPO / 'typed.yaml'}: ")


def test_the_reference_typo_suggests_the_arm():
    doc = typed_doc()
    doc["reference"] = "fulll"
    with pytest.raises(SweepError, match=r"reference: 'fulll' is not a trained arm .*\(did you mean 'full'\?\)"):
        parse(doc)


WRONG_TYPES = {
    "int as string, train": (_set("base", "train", "model", "icl_steps", value="20"), "base.train.model.icl_steps"),
    "int as string, sampling": (
        _set("base", "generate", "sampling", "num_timesteps", value="4"),
        "base.generate.sampling.num_timesteps",
    ),
    "int as string, synthstory": (
        _set("base", "data", "synthstory", "eval_stories", value="2"),
        "base.data.synthstory.eval_stories",
    ),
    "int as string, evaluate": (_set("base", "evaluate", "batch_size", value="8"), "base.evaluate.batch_size"),
    "int as string, seed": (_set("base", "seed", value="0"), "base.seed"),
    "int as string, override": (_override("no_id", "train.model.icl_steps", "many"), "arms.no_id.overrides: "),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_a_string_for_an_int_is_refused_with_its_path(case):
    mutate, where = WRONG_TYPES[case]
    doc = typed_doc()
    mutate(doc)
    with pytest.raises(SweepError) as err:
        parse(doc)
    assert where in str(err.value) and "expected int, got '" in str(err.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("base", "train", "model", "betas", value=[0.9]), "base.train.model.betas: expected 2 items, got 1"),
        (_set("base", "train", "model", "lr_schedule", value="cosin"), "(did you mean 'cosine'?)"),
        (_set("base", "train", "trainer", "precision", value="bf16-mix"), "(did you mean 'bf16-mixed'?)"),
        (_set("base", "train", "data", "packer", value=[1]), "base.train.data.packer: expected"),
        (_set("base", "evaluate", "oracle", value="yes"), "base.evaluate.oracle: expected bool, got 'yes'"),
        (_set("base", "data", "synthstory", "eval_shots", value=[3, 4, 5]), "eval_shots: expected 2 items, got 3"),
        (_set("base", "data", "synthstory", "image_size", value=8), "base.data.synthstory: image_size must be in"),
        (_set("base", "generate", "sampling", "num_timesteps", value=1), "base.generate.sampling: SamplingConfig"),
        (_override("full", "train.model.lr.x", 1), "override 'train.model.lr.x': 'train.model.lr' is float, not a"),
    ],
)
def test_wrong_values_in_nested_sections(mutate, message):
    doc = typed_doc()
    mutate(doc)
    with pytest.raises(SweepError) as err:
        parse(doc)
    assert message in str(err.value)


def test_the_fit_parser_has_the_last_word(tmp_path):
    """What only jsonargparse knows (a logger class that does not exist) and typos inside the training YAML itself."""
    doc = typed_doc()
    doc["base"]["train"]["trainer"]["logger"] = {"class_path": "no_such_module.Logger"}
    with pytest.raises(SweepError, match=r"arms\.full: `unimage fit` refuses .*trainer\.logger.*no_such_module"):
        parse(doc)
    bad_yaml = yaml.safe_load((REPO / TINY).read_text(encoding="utf-8"))
    bad_yaml["model"]["icl_stpes"] = 5
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(bad_yaml), encoding="utf-8")
    doc = typed_doc()
    doc["base"]["train"]["config"] = str(tmp_path / "train.yaml")
    with pytest.raises(SweepError, match=r"train\.config .*train\.yaml: model: unknown key 'icl_stpes' \(did you mean"):
        parse(doc)


def test_the_checked_config_is_the_one_the_train_stage_writes(tmp_path):
    """Both go through ``fit_config``: the stage's train_input.yaml parses with the same fit parser."""
    from ablations.stages import ArmPaths, StageContext, train_config

    sweep = parse(typed_doc())
    arm = sweep.arms["no_id.seed1"]
    cfg = train_config(StageContext(sweep=sweep, arm=arm, paths=ArmPaths(tmp_path / "a"), sweep_dir=tmp_path))
    assert cfg["model"]["id_prompting"] is False and cfg["model"]["seed"] == 1 and cfg["seed_everything"] == 1
    assert cfg["data"]["packer"]["max_num_tokens"] == 2048 and cfg["run_dir"] == str(tmp_path / "a" / "checkpoints")
    schema_fit.parse_fit(cfg, At("t"))
    cfg["model"]["icl_steps"] = "x"
    with pytest.raises(SweepError, match=r"refuses .*model\.icl_steps"):
        schema_fit.parse_fit(cfg, At("t"))


def test_a_passed_check_is_cached_and_a_failed_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv(schema_fit.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    real = schema_fit.parse_fit
    monkeypatch.setattr(schema_fit, "parse_fit", lambda cfg, at: (calls.append(at.path), real(cfg, at))[1])
    parse(typed_doc())
    assert calls == ["arms.full", "arms.no_id"]  # one parse per distinct merged config (the null arm is full's)
    parse(typed_doc())
    assert len(calls) == 2  # cached
    doc = typed_doc()
    doc["arms"]["no_id"]["overrides"]["train.model.icl_steps"] = 30
    parse(doc)
    assert len(calls) == 4  # changed config: checked again
    doc["arms"]["no_id"]["overrides"]["train.model.icl_step"] = 30
    for _ in range(2):  # a failure is not remembered
        with pytest.raises(SweepError, match=r"did you mean 'train\.model\.icl_steps'"):
            parse(doc)
    monkeypatch.setenv(schema_fit.CACHE_ENV, "off")
    parse(typed_doc())
    assert len(calls) == 6 and len(list((tmp_path / "cache").iterdir())) == 2


def test_a_sweep_without_train_keys_never_builds_the_fit_parser(monkeypatch):
    def boom() -> None:
        raise AssertionError("the fit parser was built")

    monkeypatch.setattr(schema_fit, "fit_keys", boom)
    monkeypatch.setattr(schema_fit, "parse_fit", boom)
    doc = typed_doc()
    del doc["base"]["train"]
    doc["stages"] = ["data", "evaluate"]
    del doc["arms"]["no_id"]["overrides"]["train.model.id_prompting"]
    assert parse(doc).arms["full.seed0"].stages == ("data", "evaluate")


@pytest.mark.parametrize("name", ["smoke", "synth-long", "table1"])
def test_bundled_sweeps_pass_the_typed_check_and_the_dry_run(name, capsys):
    path = REPO / "ablations" / "sweeps" / f"{name}.yaml"
    assert load_sweep(path).arms
    assert cli.main([str(path), "--dry-run"]) == 0


def test_dry_run_refuses_a_typo_with_exit_code_2(tmp_path, capsys):
    doc = copy.deepcopy(yaml.safe_load((REPO / "ablations" / "sweeps" / "smoke.yaml").read_text(encoding="utf-8")))
    doc["arms"]["no_id_prompting"]["overrides"] = {"train.model.id_prompt": False}
    doc["base"]["train"]["config"] = str(REPO / TINY)
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert cli.main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert (
        f"error: sweep {path}: arms.no_id_prompting.overrides: unknown key 'train.model.id_prompt' "
        "(did you mean 'train.model.id_prompting'?)" in err
    )


def test_arm_and_stage_names_on_the_command_line_get_suggestions(capsys):
    sweep = parse(typed_doc())
    with pytest.raises(SweepError, match=r"unknown arm\(s\) \['ful'\] \(did you mean 'full'\?\)"):
        sweep.select(["ful"])
    smoke = str(REPO / "ablations" / "sweeps" / "smoke.yaml")
    assert cli.main([smoke, "--dry-run", "--stages", "data,trian"]) == 2
    assert "--stages: unknown stage(s) ['trian'] (did you mean 'train'?)" in capsys.readouterr().err


##### the checker on its own


def test_checker_unions_report_the_member_with_the_value_shape():
    hint = dict[str, int] | None
    check(hint, {"a": 1}, At("f"))
    with pytest.raises(SweepError, match=r"f: x\.a: expected int, got 'b' \(str\)"):
        check(hint, {"a": "b"}, At("f", "x"))
    with pytest.raises(SweepError, match=r"f: x: expected 'a' or 'b' or null, got 3 \(int\)"):
        check(Literal["a", "b"] | None, 3, At("f", "x"))
    with pytest.raises(SweepError, match=r"expected int, got True"):
        check(int, True, At("f"))
    check(float, 3, At("f"))  # an int is a float in YAML


def test_checker_dotted_overrides_walk_the_keys():
    from ablations.schema import BaseSection
    from ablations.schema_check import record_of

    keys = record_of(BaseSection)
    check_dotted(keys, "evaluate.era", "B", At("f", "o"))
    check_dotted(keys, "generate.sampling", {"num_timesteps": 3}, At("f", "o"))
    with pytest.raises(SweepError, match=r"f: o: generate\.sampling\.num_timesteps: expected int"):
        check_dotted(keys, "generate.sampling", {"num_timesteps": "3"}, At("f", "o"))
    with pytest.raises(SweepError, match=r"bad override key 'evaluate\.\.era'"):
        check_dotted(keys, "evaluate..era", "B", At("f", "o"))
    with pytest.raises(SweepError, match=r"unknown key 'nothing\.like\.it'; allowed under it: \['data', 'device'"):
        check_dotted(keys, "nothing.like.it", 1, At("f", "o"))
