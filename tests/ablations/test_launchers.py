"""Launchers: the dry-run plan text, torchrun commands and the sbatch script of an arm; the CLI around them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from ablations.config import load_sweep
from ablations.launchers import arm_commands, launch, sbatch_script, stage_groups
from ablations.runner import plan_sweep
from unimage.cli import main

REPO = Path(__file__).resolve().parents[2]


def cluster_sweep(tmp_path: Path) -> Path:
    (tmp_path / "train.yaml").write_text("model: {size: tiny}\n")
    doc = {
        "name": "big",
        "stages": ["train", "generate", "evaluate"],
        "base": {
            "evaluate": {"dataset": str(tmp_path)},
            "train": {"config": "train.yaml", "trainer": {"num_nodes": 2, "devices": 8}},
            "launch": {
                "partition": "gpu",
                "account": "proj42",
                "time": "72:00:00",
                "setup": ["source .venv/bin/activate"],
                "sbatch": ["--exclusive"],
            },
        },
        "arms": {
            "unimage": {"published_as": "UniMAGE"},
            "wo_idp": {"overrides": {"train.model.id_prompting": False, "train.trainer.num_nodes": 1}},
            "sd": {"external": {"outputs": str(tmp_path), "method": "SD"}},
        },
    }
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_stage_groups_isolate_train():
    assert stage_groups(["data", "train", "generate", "evaluate"]) == [["data"], ["train"], ["generate", "evaluate"]]
    assert stage_groups(["generate", "evaluate"]) == [["generate", "evaluate"]]
    assert stage_groups(["train"]) == [["train"]]


def test_slurm_script_for_a_multi_node_arm(tmp_path):
    path = cluster_sweep(tmp_path)
    sweep = load_sweep(path)
    plans = {p.arm.name: p for p in plan_sweep(sweep, runs=tmp_path / "runs")}
    script = sbatch_script(sweep, plans["unimage"], tmp_path / "runs")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in (
        "#SBATCH --job-name=big-unimage",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --time=72:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
        "#SBATCH --exclusive",
        f"#SBATCH --output={tmp_path}/runs/big/unimage/launch/slurm-%j.out",
        "set -euo pipefail",
        "source .venv/bin/activate",
        f"srun --kill-on-bad-exit=1 unimage sweep {path} --arms unimage --stages train --no-progress --runs {tmp_path}/runs",
        f"unimage sweep {path} --arms unimage --stages generate,evaluate --no-progress --runs {tmp_path}/runs",
    ):
        assert expected in lines, expected
    # train runs under srun, after the setup lines and before generate/evaluate
    assert lines.index("source .venv/bin/activate") < next(i for i, l in enumerate(lines) if l.startswith("srun"))
    assert "#SBATCH --nodes=1" in sbatch_script(sweep, plans["wo_idp"], None)
    # the external arm needs only one process
    sd = sbatch_script(sweep, plans["sd"], None)
    assert "#SBATCH --nodes=1" in sd and "srun" not in sd and "--stages evaluate" in sd


def test_torchrun_commands(tmp_path):
    sweep = load_sweep(cluster_sweep(tmp_path))
    plans = {p.arm.name: p for p in plan_sweep(sweep)}
    multi = arm_commands(sweep, plans["unimage"], "torchrun", None)
    assert multi[0].startswith("torchrun --nnodes=2 --nproc_per_node=8 --node_rank=${NODE_RANK}")
    assert multi[0].endswith(f"--no-python unimage sweep {sweep.path} --arms unimage --stages train --no-progress")
    single = arm_commands(sweep, plans["wo_idp"], "torchrun", None)
    assert single[0].startswith("torchrun --standalone --nproc_per_node=8 --no-python unimage sweep")
    assert single[1] == f"unimage sweep {sweep.path} --arms wo_idp --stages generate,evaluate --no-progress"
    assert arm_commands(sweep, plans["sd"], "local", None) == [
        f"unimage sweep {sweep.path} --arms sd --stages evaluate --no-progress"
    ]


def test_slurm_submission_writes_scripts_and_calls_sbatch(tmp_path, monkeypatch):
    """A stand-in ``sbatch`` on PATH records its arguments (the real one needs a cluster)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    fake = bindir / "sbatch"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho 4242\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    sweep = load_sweep(cluster_sweep(tmp_path))
    plans = plan_sweep(sweep, runs=tmp_path / "runs")
    res = launch(sweep, plans, "slurm", tmp_path / "runs", say=lambda m: None)
    assert res.submitted == {"unimage": "4242", "wo_idp": "4242", "sd": "4242"}
    calls = log.read_text().splitlines()
    assert calls == [f"--parsable {tmp_path}/runs/big/{a}/launch/sbatch.sh" for a in ("unimage", "wo_idp", "sd")]
    script = tmp_path / "runs" / "big" / "unimage" / "launch" / "sbatch.sh"
    assert script.read_text() == sbatch_script(sweep, plans[0], tmp_path / "runs")


def test_cli_dry_run_prints_plan_and_commands(tmp_path, capsys):
    smoke = REPO / "ablations" / "sweeps" / "smoke.yaml"
    code = main(["sweep", str(smoke), "--dry-run", "--runs", str(tmp_path), "--arms", "full,no_id_prompting"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"sweep smoke ({smoke}) → {tmp_path}/smoke, launcher local (dry run: nothing is run)" in out
    for seed in (0, 1, 2):  # an arm name selects all its seeds
        assert f"arm full.seed{seed} → {tmp_path}/smoke/full.seed{seed}" in out
        assert f"arm no_id_prompting.seed{seed} → " in out
    for stage in ("data", "train", "generate", "evaluate"):
        assert f"  run  {stage:<9} new " in out
    assert (
        f"  $ unimage sweep {smoke} --arms full.seed1 --stages data,train,generate,evaluate --no-progress "
        f"--runs {tmp_path}" in out
    )
    assert "no_script_splitting" not in out and "null_arm" not in out
    assert not (tmp_path / "smoke").exists()  # a dry run writes nothing

    code = main(
        ["sweep", str(smoke), "--dry-run", "--launcher", "slurm", "--arms", "full.seed0", "--runs", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "(not written: dry run)" in out and "#SBATCH --job-name=smoke-full.seed0" in out
    assert not (tmp_path / "smoke").exists()


def test_cli_bad_input_exit_code_and_message(tmp_path, capsys):
    smoke = REPO / "ablations" / "sweeps" / "smoke.yaml"
    assert main(["sweep", str(smoke), "--dry-run", "--arms", "nope"]) == 2
    assert "unknown arm(s) ['nope']" in capsys.readouterr().err
    assert main(["sweep", str(smoke), "--dry-run", "--stages", "train,deploy"]) == 2
    assert "unknown stage(s) ['deploy']" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\narms: {a: {overrides: {evaluate.era: Z}}}\nbase: {evaluate: {dataset: /x}}\n")
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert f"sweep {bad}: arms.a.overrides: evaluate.era: 'Z' is not one of" in capsys.readouterr().err
