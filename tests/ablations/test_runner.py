"""The runner's bookkeeping with stage functions that record their calls: skip finished work, rerun exactly the
changed stages and everything downstream (and nothing else), resume interrupted stages in place."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from ablations.config import STAGES, load_sweep
from ablations.provenance import CONSTRAINTS
from ablations.runner import plan_sweep, run_sweep
from ablations.stages import StageContext
from ablations.status import ArmStatus


def recording_stages(calls: list[tuple[str, str]], fail: set[tuple[str, str]] | None = None):
    """Stage functions that log (arm, stage), write a marker into the stage's folder, and optionally fail."""

    def make(stage: str):
        def fn(ctx: StageContext) -> dict:
            calls.append((ctx.arm.name, stage))
            folder = ctx.paths.stage_dir(stage) or ctx.sweep_dir / "_data"
            folder.mkdir(parents=True, exist_ok=True)
            marker = folder / "marker.txt"
            marker.write_text(f"{marker.read_text() if marker.exists() else ''}{stage}:{ctx.config['seed']}\n")
            if fail and (ctx.arm.name, stage) in fail:
                raise RuntimeError(f"injected failure in {stage}")
            return {"stage": stage, "upstream": sorted(ctx.upstream)}

        return fn

    return {s: make(s) for s in STAGES}


def write_sweep(path: Path, arms: dict | None = None, **base_extra) -> Path:
    doc = {
        "name": "rec",
        "base": {"data": {"synthstory": {"seed": 0}}, "train": {"config": "x.yaml", "model": {"lr": 1}}, **base_extra},
        "arms": arms or {"a": {}, "b": {"overrides": {"train.model.lr": 2}}, "c": {"overrides": {"evaluate.era": "B"}}},
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    (path.parent / "x.yaml").write_text("model: {}\n")  # train.config must exist (checked before an arm starts)
    return path


def run(path: Path, runs: Path, calls: list, **kw):
    return run_sweep(
        load_sweep(path), runs=runs, stage_fns=recording_stages(calls, kw.pop("fail", None)), log=lambda m: None, **kw
    )


def test_first_run_does_everything_in_order_then_nothing(tmp_path):
    path, runs, calls = write_sweep(tmp_path / "s.yaml"), tmp_path / "runs", []
    res = run(path, runs, calls)
    assert res.ok
    assert calls == [(a, s) for a in "abc" for s in STAGES]
    st = ArmStatus.load(runs / "rec" / "b")
    hashes = load_sweep(path).arms["b"].stage_hashes()
    assert {s: r["hash"] for s, r in st.stages.items()} == hashes
    assert all(r["state"] == "done" for r in st.stages.values())
    assert st.info("evaluate") == {"stage": "evaluate", "upstream": ["data", "generate", "train"]}
    for f in ("config.yaml", "provenance.json", "status.json"):
        assert (runs / "rec" / "b" / f).is_file()
    prov = json.loads((runs / "rec" / "c" / "provenance.json").read_text())
    assert prov["metric_era"] == "B" and prov["stage_hashes"] == load_sweep(path).arms["c"].stage_hashes()
    assert len(prov["git_commit"] or "") in (0, 40)
    assert prov["constraints"]["sha256"] == hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    finished = {a: ArmStatus.load(runs / "rec" / a).stages["train"]["finished_at"] for a in "abc"}

    calls.clear()
    res = run(path, runs, calls)
    assert calls == [] and res.ok
    assert all(r.skipped == list(STAGES) for r in res.arms)
    assert {a: ArmStatus.load(runs / "rec" / a).stages["train"]["finished_at"] for a in "abc"} == finished


def test_config_change_to_one_arm_reruns_exactly_its_affected_stages(tmp_path):
    path, runs, calls = write_sweep(tmp_path / "s.yaml"), tmp_path / "runs", []
    run(path, runs, calls)
    before = {a: ArmStatus.load(runs / "rec" / a).stages for a in "abc"}

    # arm b: a training change → train, generate, evaluate of b; nothing else
    write_sweep(path, {"a": {}, "b": {"overrides": {"train.model.lr": 3}}, "c": {"overrides": {"evaluate.era": "B"}}})
    plans = {p.arm.name: p.pending for p in plan_sweep(load_sweep(path), runs=runs)}
    assert plans == {"a": [], "b": ["train", "generate", "evaluate"], "c": []}
    calls.clear()
    assert run(path, runs, calls).ok
    assert calls == [("b", "train"), ("b", "generate"), ("b", "evaluate")]
    b = runs / "rec" / "b"
    # the previous outputs were moved aside, not deleted; the new folders hold only the new run's marker
    superseded = sorted(p.name.split("-")[0] for p in (b / "superseded").iterdir())
    assert superseded == ["generate", "train"]  # metrics/ stays (the evaluator reuses unchanged units)
    assert (b / "metrics" / "marker.txt").read_text() == "evaluate:0\nevaluate:0\n"
    assert (b / "checkpoints" / "marker.txt").read_text() == "train:0\n"
    old = next((b / "superseded").glob("train-*"))
    assert old.name.startswith(f"train-{before['b']['train']['hash'][:8]}")
    assert (old / "marker.txt").read_text() == "train:0\n"
    for arm in "ac":
        assert ArmStatus.load(runs / "rec" / arm).stages == before[arm]

    # arm c: an evaluation change → only c's evaluate
    write_sweep(path, {"a": {}, "b": {"overrides": {"train.model.lr": 3}}, "c": {"overrides": {"evaluate.era": "C"}}})
    calls.clear()
    assert run(path, runs, calls).ok
    assert calls == [("c", "evaluate")]

    # the base seed feeds train and generate of every arm, not data
    write_sweep(
        path,
        {"a": {}, "b": {"overrides": {"train.model.lr": 3}}, "c": {"overrides": {"evaluate.era": "C"}}},
        seed=7,
    )
    calls.clear()
    assert run(path, runs, calls).ok
    assert calls == [(a, s) for a in "abc" for s in ("train", "generate", "evaluate")]


def test_interrupted_stage_resumes_in_place_and_failures_do_not_stop_other_arms(tmp_path):
    path, runs, calls = write_sweep(tmp_path / "s.yaml"), tmp_path / "runs", []
    res = run(path, runs, calls, fail={("a", "generate")})
    assert not res.ok
    assert res.arms[0].failed == "generate" and "injected failure" in (res.arms[0].error or "")
    assert ("a", "evaluate") not in calls  # nothing downstream of a failure
    assert [r.failed for r in res.arms[1:]] == [None, None]
    st = ArmStatus.load(runs / "rec" / "a")
    assert st.stages["generate"]["state"] == "running"
    assert st.state("generate", load_sweep(path).arms["a"].stage_hashes()["generate"]) == "interrupted"

    calls.clear()
    assert run(path, runs, calls).ok
    assert calls == [("a", "generate"), ("a", "evaluate")]
    # same hash → the half-done folder was kept for the stage's own resume logic (two attempts wrote into it)
    assert (runs / "rec" / "a" / "outputs" / "marker.txt").read_text() == "generate:0\ngenerate:0\n"
    assert not (runs / "rec" / "a" / "superseded").exists()
    assert ArmStatus.load(runs / "rec" / "a").stages["generate"]["attempts"] == 2


def test_stage_selection_needs_upstream_done(tmp_path):
    path, runs, calls = write_sweep(tmp_path / "s.yaml"), tmp_path / "runs", []
    res = run(path, runs, calls, arms=["a"], stages=["generate"])
    assert calls == [] and res.arms[0].failed == "generate"
    assert "needs upstream stage(s) ['data', 'train'] done first" in (res.arms[0].error or "")
    assert run(path, runs, calls, arms=["a"], stages=["data", "train"]).ok
    assert run(path, runs, calls, arms=["a"], stages=["generate"]).ok
    assert calls == [("a", "data"), ("a", "train"), ("a", "generate")]


def test_unreadable_status_is_an_error_not_a_restart(tmp_path):
    path, runs, calls = write_sweep(tmp_path / "s.yaml"), tmp_path / "runs", []
    run(path, runs, calls, arms=["a"])
    (runs / "rec" / "a" / "status.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"status.json: not valid JSON"):
        plan_sweep(load_sweep(path), runs=runs)


def test_missing_input_paths_fail_the_arm_before_any_stage(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "rec",
                "stages": ["evaluate"],
                "base": {"evaluate": {"dataset": "/path/to/ViStory"}},
                "arms": {"sd": {"external": {"outputs": "/path/to/outs", "method": "SD"}}},
            }
        )
    )
    calls: list = []
    res = run(path, tmp_path / "runs", calls)
    assert calls == [] and not res.ok
    assert "arms.sd: evaluate.dataset = /path/to/ViStory does not exist" in (res.arms[0].error or "")
    assert "external.outputs = /path/to/outs does not exist" in (res.arms[0].error or "")


def test_distributed_ranks_only_train_and_only_rank0_writes(tmp_path, monkeypatch):
    path, runs, calls = write_sweep(tmp_path / "s.yaml"), tmp_path / "runs", []
    run(path, runs, calls, arms=["a"], stages=["data"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="only --stages train"):
        run(path, runs, calls, arms=["a"])
    # rank 1 waits for rank 0 to record the start, then runs the stage but writes nothing itself
    arm = load_sweep(path).arms["a"]
    st = ArmStatus.load(runs / "rec" / "a")
    st.start("train", arm.stage_hashes()["train"])
    before = (runs / "rec" / "a" / "status.json").read_text()
    calls.clear()
    res = run(path, runs, calls, arms=["a"], stages=["train"])
    assert res.ok and calls == [("a", "train")]
    assert (runs / "rec" / "a" / "status.json").read_text() == before
    monkeypatch.setenv("RANK", "0")
    calls.clear()
    assert run(path, runs, calls, arms=["a"], stages=["train"]).ok
    assert ArmStatus.load(runs / "rec" / "a").stages["train"]["state"] == "done"
