"""Seeds per arm, the null arm, arm.json, per-arm locks, parallel arm processes and the positive controls."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ablations.config import SweepError, load_sweep, parse_sweep
from ablations.lock import ArmLock, ArmLocked
from ablations.runner import run_sweep
from tests.ablations.helpers import ext_sweep_doc, write_yaml


def _doc(**arms) -> dict:
    return {
        "name": "s",
        "seeds": [0, 1, 2],
        "stages": ["train"],
        "base": {"train": {"config": "x.yaml"}, "evaluate": {"dataset": "/d"}},
        "arms": arms,
    }


def test_seeds_expand_every_trained_arm_and_the_null_arm_copies_its_target():
    doc = _doc(
        full={"published_as": "UniMAGE"},
        no_ss={"overrides": {"train.data.script_splitting": False}},
        null_arm={"null_of": "no_ss", "seeds": [7, 8]},
        gt={"external": {"outputs": "/o", "method": "gt"}},
    )
    sweep = parse_sweep(doc)
    info = {name: (a.group, a.seed, a.role, a.reference, a.config["seed"]) for name, a in sweep.arms.items()}
    assert info == {
        "full.seed0": ("full", 0, "reference", None, 0),
        "full.seed1": ("full", 1, "reference", None, 1),
        "full.seed2": ("full", 2, "reference", None, 2),
        "no_ss.seed0": ("no_ss", 0, "ablation", "full", 0),
        "no_ss.seed1": ("no_ss", 1, "ablation", "full", 1),
        "no_ss.seed2": ("no_ss", 2, "ablation", "full", 2),
        "null_arm.seed7": ("null_arm", 7, "null", "full", 7),
        "null_arm.seed8": ("null_arm", 8, "null", "full", 8),
        "gt": ("gt", None, "external", None, 0),
    }
    # the null arm is its target's exact config (overrides included), other seeds
    assert sweep.arms["null_arm.seed7"].config["train"] == sweep.arms["no_ss.seed0"].config["train"]
    assert sweep.arms["full.seed1"].stage_hashes() != sweep.arms["full.seed2"].stage_hashes()
    assert [a.name for a in sweep.select(["no_ss"])] == ["no_ss.seed0", "no_ss.seed1", "no_ss.seed2"]
    assert sweep.arms["no_ss.seed1"].info() == {"arm": "no_ss", "seed": 1, "role": "ablation", "reference": "full"}


def test_each_seed_reaches_the_training_config(tmp_path):
    """The arm's seed must become ``model.seed`` (init, data order, noise), else all seeds train one model."""
    from ablations.stages import ArmPaths, StageContext, train_config

    (tmp_path / "x.yaml").write_text("model:\n  seed: 0\n  lr: 1.0\n", encoding="utf-8")
    doc = _doc(full={}, pinned={"overrides": {"train.model.seed": 5}})
    doc["base"]["train"]["config"] = str(tmp_path / "x.yaml")
    sweep = parse_sweep(doc, tmp_path / "s.yaml")
    got = {}
    for name, arm in sweep.arms.items():
        ctx = StageContext(sweep=sweep, arm=arm, paths=ArmPaths(tmp_path / name), sweep_dir=tmp_path)
        got[name] = train_config(ctx)["model"]["seed"]
    assert got == {"full.seed0": 0, "full.seed1": 1, "full.seed2": 2, "pinned.seed0": 5, "pinned.seed1": 5,
                   "pinned.seed2": 5}  # fmt: skip


def test_without_seeds_an_arm_keeps_its_name():
    doc = _doc(full={})
    del doc["seeds"]
    arm = parse_sweep(doc).arms["full"]
    assert (arm.name, arm.seed, arm.role) == ("full", 0, "reference")


@pytest.mark.parametrize(
    ("arms", "top", "message"),
    [
        ({"full": {}, "n": {"null_of": "full"}}, {}, "needs its own seeds"),
        ({"full": {}, "n": {"null_of": "nope", "seeds": [5]}}, {}, "arms.n.null_of: 'nope' is not another arm"),
        ({"full": {}, "n": {"null_of": "fulll", "seeds": [5]}}, {}, r"arms\.n\.null_of: .* \(did you mean 'full'\?\)"),
        ({"full": {}, None: {}}, {}, "arm names must be strings"),
        ({"full": {}}, {"seeds": [1, 1]}, "seeds repeat"),
        ({"full": {}}, {"seeds": ["a"]}, r"seeds\.0: expected int, got 'a' \(str\)"),
        ({"full": {}}, {"reference": "other"}, "reference: 'other' is not a trained arm"),
        ({"full": {}}, {"reference": "ful"}, r"reference: 'ful' is not a trained arm .* \(did you mean 'full'\?\)"),
        ({"full": {}}, {"controls": "noise"}, r"controls: expected a list of str or null, got 'noise'"),
    ],
)
def test_bad_seed_settings_are_refused(arms, top, message):
    doc = _doc(**{k: v for k, v in arms.items() if k is not None}) | top
    if None in arms:
        doc["arms"][None] = arms[None]
    with pytest.raises(SweepError, match=message):
        parse_sweep(doc)


##### locks

_HOLD = textwrap.dedent(
    """
    import sys, time
    from ablations.lock import ArmLock
    with ArmLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _holder(root: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(root), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_dead_one_is_taken_over(tmp_path):
    proc = _holder(tmp_path, 30)
    try:
        with pytest.raises(ArmLocked, match=f"pid {proc.pid}"):
            ArmLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    # SIGKILL left the file behind: its pid is dead, so the lock is stale and is taken
    assert (tmp_path / ".lock").is_file()
    with ArmLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_wait_takes_the_lock_once_the_holder_releases_it(tmp_path):
    first = ArmLock(tmp_path)
    first.acquire()
    threading.Timer(0.5, first.release).start()
    t0 = time.monotonic()
    with ArmLock(tmp_path, wait=10, poll=0.05):
        assert time.monotonic() - t0 >= 0.4


def test_a_second_sweep_leaves_a_held_arm_alone(tmp_path):
    """Two sweeps over one runs folder: the arm another process holds is reported with its holder, not run."""
    sweep = load_sweep(write_yaml(tmp_path / "ext.yaml", ext_sweep_doc("ext", n_stories=1, metrics=["occm"])))
    arm_dir = tmp_path / "runs" / "ext" / "gt"
    proc = _holder(arm_dir, 30)
    try:
        calls = []
        fns = {"data": lambda ctx: calls.append("data") or {}, "evaluate": lambda ctx: calls.append("ev") or {}}
        res = run_sweep(sweep, runs=tmp_path / "runs", stage_fns=fns, log=lambda m: None)
    finally:
        proc.kill()
        proc.wait()
    assert calls == [] and not res.ok
    assert f"in use by pid {proc.pid}" in (res.arms[0].error or "")
    assert not (arm_dir / "status.json").exists()


##### parallel processes and controls


def _two_arm_doc() -> dict:
    doc = ext_sweep_doc("par", n_stories=2, metrics=["csd", "occm"])
    doc["arms"]["gt2"] = {"external": {"outputs": "{data}/eval/outputs", "method": "ground_truth"}}
    doc["controls"] = ["identity_swap", "noise"]
    return doc


def test_parallel_arms_give_the_rows_of_a_serial_run_and_controls_are_scored(tmp_path):
    path = write_yaml(tmp_path / "par.yaml", _two_arm_doc())
    serial = run_sweep(load_sweep(path), runs=tmp_path / "a", progress=False, log=lambda m: None, jobs=1)
    par = run_sweep(load_sweep(path), runs=tmp_path / "b", progress=False, log=lambda m: None, jobs=2)
    assert serial.ok and par.ok, (serial.arms, par.arms)
    for arm in ("gt", "gt2"):
        a = json.loads((tmp_path / "a/par" / arm / "metrics/results_row.json").read_text())
        b = json.loads((tmp_path / "b/par" / arm / "metrics/results_row.json").read_text())
        keys = ("csd_self", "csd_cross", "occm", "n_stories")
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
        assert (tmp_path / "b/par" / arm / "launch/sweep.log").is_file()  # it ran in a child process
        assert json.loads((tmp_path / "b/par" / arm / "arm.json").read_text())["role"] == "external"
        long_a = (tmp_path / "a/par" / arm / "metrics/perstory_long.csv").read_text()
        assert long_a == (tmp_path / "b/par" / arm / "metrics/perstory_long.csv").read_text()
    # controls: the clean ground truth scores 1 on every oracle metric, noise 0; expected.csv carries the family
    rows = list(csv.DictReader((tmp_path / "b/par/controls/controls_long.csv").open()))
    oracle = [r for r in rows if r["family"] == "oracle" and r["clean"]]
    assert oracle and all(float(r["clean"]) == 1.0 for r in oracle)
    noise = [r for r in oracle if r["corruption"] == "noise"]
    assert noise and all(float(r["corrupted"]) == 0.0 for r in noise)
    assert {r["corruption"] for r in rows} == {"identity_swap", "noise"}
    expected = list(csv.DictReader((tmp_path / "b/par/controls/expected.csv").open()))
    assert {"identity_swap", "noise"} == {r["corruption"] for r in expected}
    assert any(r["metric"] == "toy.csd_self" for r in expected)
    # a rerun does nothing: every stage skipped, controls reused by hash
    mtime = (tmp_path / "b/par/controls/controls_long.csv").stat().st_mtime_ns
    again = run_sweep(load_sweep(path), runs=tmp_path / "b", progress=False, log=lambda m: None, jobs=2)
    assert again.ok and all(not a.ran for a in again.arms), again.arms
    assert again.arms[-1].arm == "controls" and again.arms[-1].skipped == ["controls"]
    assert (tmp_path / "b/par/controls/controls_long.csv").stat().st_mtime_ns == mtime
