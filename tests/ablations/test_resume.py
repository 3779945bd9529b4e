"""Kill a real sweep with SIGKILL at a random moment of a stage, rerun it, and compare with an uninterrupted run.

The evaluate-stage test runs by default (SynthStory's exact keyframes as an external method, toy backbones and
judge); the train and generate tests run the smoke pipeline and are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.config import load_sweep
from ablations.runner import run_sweep
from ablations.status import ArmStatus
from tests.ablations.helpers import ext_sweep_doc, write_yaml

REPO = Path(__file__).resolve().parents[2]


def start_sweep(sweep: Path, runs: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "ablations.cli", str(sweep), "--runs", str(runs), "--no-progress"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for_stage(proc: subprocess.Popen, status: Path, stage: str, timeout: float) -> None:
    """Block until status.json shows ``stage`` running (the process is then inside the stage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited ({proc.returncode}) before stage {stage} started")
        try:
            rec = json.loads(status.read_text())["stages"].get(stage) or {}
        except (OSError, ValueError, KeyError):
            rec = {}
        if rec.get("state") == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"stage {stage} did not start within {timeout} s")


def kill_when(proc: subprocess.Popen, progress, target: int, rng: random.Random, timeout: float) -> None:
    """SIGKILL the process as soon as ``progress()`` reaches ``target`` (plus 0-50 ms), i.e. mid-stage."""
    deadline = time.monotonic() + timeout
    while progress() < target:
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited ({proc.returncode}) before progress reached {target}")
        if time.monotonic() > deadline:
            raise AssertionError(f"progress stayed at {progress()} < {target} for {timeout} s")
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def units(metrics: Path) -> dict[str, int]:
    """Finished (story, metric) units → mtime_ns of their files (a recomputed unit gets new ones).

    A unit is finished when its JSON exists; an array written just before a kill, without its JSON, is not a
    finished unit (the evaluator writes the array first and the JSON last), so it may legitimately be redone.
    """
    out = {}
    for js in metrics.glob("metrics/*/units/*.json"):
        for p in (js, js.with_suffix(".npy")):
            if p.is_file():
                out[str(p.relative_to(metrics))] = p.stat().st_mtime_ns
    return out


def test_kill_during_evaluate_resumes_to_identical_results(tmp_path):
    sweep = write_yaml(tmp_path / "ext.yaml", ext_sweep_doc("ext", n_stories=3))
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))

    # the reference: one uninterrupted run
    ref = run_sweep(load_sweep(sweep), runs=tmp_path / "ref", progress=False, log=lambda m: None)
    assert ref.ok
    ref_row = json.loads((tmp_path / "ref" / "ext" / "gt" / "metrics" / "results_row.json").read_text())

    # the killed run: SIGKILL at a random moment inside evaluate
    runs = tmp_path / "runs"
    arm = runs / "ext" / "gt"
    proc = start_sweep(sweep, runs, tmp_path / "killed.log")
    try:
        wait_for_stage(proc, arm / "status.json", "evaluate", timeout=120)
        target = rng.randint(0, 17)  # finished (story, metric) units out of 18 when the kill comes
        kill_when(proc, lambda: len(list((arm / "metrics").glob("metrics/*/units/*.json"))), target, rng, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    status = ArmStatus.load(arm)
    assert status.stages["data"]["state"] == "done"
    data_finished = status.stages["data"]["finished_at"]
    before = units(arm / "metrics")
    assert status.stages["evaluate"]["state"] == "running"  # killed inside the stage

    res = run_sweep(load_sweep(sweep), runs=runs, progress=False, log=lambda m: None)
    assert res.ok, res.arms[0].error
    after_status = ArmStatus.load(arm)
    assert after_status.stages["data"]["finished_at"] == data_finished  # the finished stage was not redone
    assert res.arms[0].skipped[0] == "data"
    after = units(arm / "metrics")
    # every unit finished before the kill was reused, not recomputed
    assert {k: after[k] for k in before} == before, f"target {target}: units recomputed"
    info = after_status.info("evaluate")
    assert res.arms[0].ran == ["evaluate"]
    assert info["reused_units"] == len([k for k in before if k.endswith(".json")]) >= target
    assert info["computed_units"] + info["reused_units"] == 18  # 3 stories × 6 metrics
    row = json.loads((arm / "metrics" / "results_row.json").read_text())
    assert row == ref_row, f"target {target}"
    # a kill during a write leaves at most an orphaned hidden temporary file, never a torn file under a real name
    for unit in (arm / "metrics").glob("metrics/*/units/*.json"):
        assert json.loads(unit.read_text())["status"] == "ok"
    assert all(p.name.startswith(".") for p in arm.rglob("*.tmp"))

    # a config change that touches only the row's label reruns evaluate (and nothing else) reusing every unit
    doc = ext_sweep_doc("ext", n_stories=3)
    doc["arms"]["gt"]["published_as"] = "Story2Board"
    write_yaml(sweep, doc)
    res = run_sweep(load_sweep(sweep), runs=runs, progress=False, log=lambda m: None)
    assert res.arms[0].ran == ["evaluate"] and res.arms[0].skipped == ["data"]
    info = ArmStatus.load(arm).info("evaluate")
    assert (info["computed_units"], info["reused_units"]) == (0, 18)
    relabelled = json.loads((arm / "metrics" / "results_row.json").read_text())
    assert relabelled.pop("published_as") == "Story2Board"
    assert relabelled == {k: v for k, v in ref_row.items() if k != "published_as"}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train", "generate"])
def test_kill_during_train_or_generate_resumes_to_identical_results(tmp_path, stage):
    """The smoke pipeline (one arm, tiny settings), killed inside ``stage``, finishes identical to a clean run."""
    import yaml

    doc = yaml.safe_load((REPO / "ablations" / "sweeps" / "smoke.yaml").read_text())
    doc["arms"] = {"full": doc["arms"]["full"]}
    doc["base"]["evaluate"]["metrics"] = ["csd", "cids", "aesthetic"]
    sweep = write_yaml(tmp_path / "smoke1.yaml", doc)
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    ref = run_sweep(load_sweep(sweep), runs=tmp_path / "ref", progress=False, log=lambda m: None)
    assert ref.ok, ref.arms[0].error
    ref_arm = tmp_path / "ref" / "smoke" / "full"

    runs = tmp_path / "runs"
    arm = runs / "smoke" / "full"
    proc = start_sweep(sweep, runs, tmp_path / "killed.log")
    try:
        wait_for_stage(proc, arm / "status.json", stage, timeout=600)
        if stage == "train":  # steps done (batches.jsonl has one line per step; 10 steps in all)
            log = arm / "checkpoints" / "batches.jsonl"
            progress = lambda: len(log.read_text().splitlines()) if log.is_file() else 0  # noqa: E731
            target = rng.randint(1, 9)
        else:  # keyframes written (11 in all)
            progress = lambda: len(list((arm / "outputs").rglob("shot_*.png")))  # noqa: E731
            target = rng.randint(0, 10)
        kill_when(proc, progress, target, rng, 600)
    finally:
        if proc.poll() is None:
            proc.kill()
    status = ArmStatus.load(arm)
    finished = {s: r["finished_at"] for s, r in status.stages.items() if r["state"] == "done"}
    res = run_sweep(load_sweep(sweep), runs=runs, progress=False, log=lambda m: None)
    assert res.ok, res.arms[0].error
    after = ArmStatus.load(arm).stages
    assert {s: after[s]["finished_at"] for s in finished} == finished  # finished stages were not redone
    assert status.stages[stage]["state"] == "running" and stage in res.arms[0].ran
    row = json.loads((arm / "metrics" / "results_row.json").read_text())
    ref_row = json.loads((ref_arm / "metrics" / "results_row.json").read_text())
    assert row == ref_row
