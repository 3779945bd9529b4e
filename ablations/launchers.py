"""Launchers: run the plan in this process (``local``) or emit per-arm commands (``torchrun``, ``slurm``).

Why commands rather than in-process for clusters: training a 7B arm is a multi-process FSDP job, but data
preparation, generation and evaluation are single-process. So an arm's pending stages are cut into groups: the
``train`` stage is launched under ``torchrun`` (or ``srun`` inside an sbatch allocation) and every other group runs
as one plain ``unimage sweep FILE --arms ARM --stages ...`` process. All commands call the same runner, so the
resume, hashing and status rules are identical however an arm is launched.

- ``local``: :func:`ablations.runner.run_sweep` in this process.
- ``torchrun``: per arm, the commands are written to ``<arm>/launch/commands.sh`` and run one after another here
  (``torchrun --standalone`` on one node; multi-node reads ``NNODES``/``NODE_RANK``/``MASTER_ADDR``/``MASTER_PORT``).
- ``slurm``: per arm, an sbatch script ``<arm>/launch/sbatch.sh`` (nodes and GPUs from ``train.trainer.num_nodes``
  and ``train.trainer.devices``; partition, account, time, setup lines from the sweep's ``launch`` section) is
  written and submitted with ``sbatch``.

``dry_run`` prints the plan and the exact commands (and for slurm the script text) and writes or runs nothing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ablations.config import SweepSpec, get_dotted
from ablations.runner import ArmPlan
from ablations.status import atomic_write_text

Launcher = Literal["local", "torchrun", "slurm"]
LAUNCHERS: tuple[str, ...] = ("local", "torchrun", "slurm")


@dataclass(frozen=True)
class Resources:
    """What the train stage of an arm asks for."""

    nodes: int
    gpus_per_node: int


def resources(plan: ArmPlan) -> Resources:
    """Nodes and GPUs per node from the arm's training config (``train.trainer.num_nodes`` / ``devices``)."""
    cfg = plan.arm.config
    nodes = get_dotted(cfg, "train.trainer.num_nodes", 1)
    devices = get_dotted(cfg, "train.trainer.devices", 1)
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"arms.{plan.arm.name}: train.trainer.num_nodes must be a positive integer, got {nodes!r}")
    if not isinstance(devices, int) or devices < 1:
        raise ValueError(
            f"arms.{plan.arm.name}: train.trainer.devices must be a positive integer for torchrun/slurm, got {devices!r}"
        )
    return Resources(nodes, devices)


def _sweep_cmd(sweep: SweepSpec, arm: str, stages: list[str], runs: Path | None) -> list[str]:
    cmd = ["unimage", "sweep", str(sweep.path), "--arms", arm, "--stages", ",".join(stages), "--no-progress"]
    if runs is not None:
        cmd += ["--runs", str(runs)]
    return cmd


def stage_groups(pending: list[str]) -> list[list[str]]:
    """Consecutive pending stages grouped so that ``train`` stands alone: ``[data], [train], [generate, evaluate]``."""
    groups: list[list[str]] = []
    for s in pending:
        if s == "train" or not groups or groups[-1] == ["train"]:
            groups.append([s])
        else:
            groups[-1].append(s)
    return groups


def arm_commands(sweep: SweepSpec, plan: ArmPlan, launcher: Launcher, runs: Path | None) -> list[str]:
    """The shell commands that finish ``plan`` with ``launcher`` (empty when nothing is pending)."""
    if launcher == "local":
        return [shlex.join(_sweep_cmd(sweep, plan.arm.name, plan.pending, runs))] if plan.pending else []
    out: list[str] = []
    for group in stage_groups(plan.pending):
        cmd = _sweep_cmd(sweep, plan.arm.name, group, runs)
        if group != ["train"]:
            out.append(shlex.join(cmd))
            continue
        res = resources(plan)
        extra = [str(a) for a in plan.arm.config["launch"].get("torchrun") or []]
        if launcher == "torchrun":
            if res.nodes == 1:
                prefix = ["torchrun", "--standalone", f"--nproc_per_node={res.gpus_per_node}"]
            else:
                prefix = [
                    "torchrun",
                    f"--nnodes={res.nodes}",
                    f"--nproc_per_node={res.gpus_per_node}",
                    "--node_rank=${NODE_RANK}",
                    "--master_addr=${MASTER_ADDR}",
                    "--master_port=${MASTER_PORT:-29500}",
                ]
            head = " ".join([*prefix, *extra, "--no-python"])
            out.append(f"{head} {shlex.join(cmd)}")
        else:  # slurm: one task per GPU; Lightning's SLURM environment wires the ranks
            out.append(f"srun --kill-on-bad-exit=1 {shlex.join(cmd)}")
    return out


def sbatch_script(sweep: SweepSpec, plan: ArmPlan, runs: Path | None) -> str:
    """The sbatch script of one arm: its resources, the sweep's ``launch`` settings, and its commands."""
    launch: dict[str, Any] = plan.arm.config["launch"]
    res = resources(plan) if "train" in plan.pending else Resources(1, 1)
    log = plan.paths.launch / "slurm-%j.out"
    lines = [
        "#!/bin/bash",
        f"# Sweep {sweep.name!r}, arm {plan.arm.name!r}: stages {', '.join(plan.pending)}.",
        f"# Written by: unimage sweep {sweep.path} --launcher slurm; submit with: sbatch {plan.paths.launch / 'sbatch.sh'}",
        f"#SBATCH --job-name={sweep.name}-{plan.arm.name}",
        f"#SBATCH --nodes={res.nodes}",
        f"#SBATCH --ntasks-per-node={res.gpus_per_node}",
        f"#SBATCH --gpus-per-node={res.gpus_per_node}",
        f"#SBATCH --cpus-per-task={launch.get('cpus_per_task') or 8}",
        f"#SBATCH --time={launch.get('time') or '48:00:00'}",
        f"#SBATCH --output={log}",
    ]
    for key in ("partition", "account", "mem"):
        if launch.get(key):
            lines.append(f"#SBATCH --{key}={launch[key]}")
    lines += [f"#SBATCH {s}" for s in launch.get("sbatch") or []]
    lines += ["", "set -euo pipefail", f"cd {shlex.quote(str(Path.cwd()))}"]
    lines += [str(s) for s in launch.get("setup") or []]
    lines += [""]
    lines += arm_commands(sweep, plan, "slurm", runs)
    return "\n".join(lines) + "\n"


@dataclass
class LaunchResult:
    """Per arm: the commands emitted, and what was submitted or run (job ids, exit codes)."""

    commands: dict[str, list[str]]
    scripts: dict[str, Path]
    submitted: dict[str, str]
    failed: dict[str, str]


def launch(
    sweep: SweepSpec,
    plans: list[ArmPlan],
    launcher: Launcher,
    runs: Path | None,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> LaunchResult:
    """Emit (and unless ``dry_run``, run or submit) the per-arm commands of ``torchrun`` or ``slurm``.

    Raises:
        FileNotFoundError: ``sbatch`` / ``torchrun`` is not on PATH (only when not a dry run).
    """
    if launcher not in ("torchrun", "slurm"):
        raise ValueError(f"launch() handles torchrun and slurm; got {launcher!r}")
    result = LaunchResult({}, {}, {}, {})
    for plan in plans:
        cmds = arm_commands(sweep, plan, launcher, runs)
        result.commands[plan.arm.name] = cmds
        if not cmds:
            continue
        if launcher == "slurm":
            text = sbatch_script(sweep, plan, runs)
            path = plan.paths.launch / "sbatch.sh"
            result.scripts[plan.arm.name] = path
            if dry_run:
                say(f"--- {path} (not written: dry run)\n{text}")
                continue
            exe = shutil.which("sbatch")
            if exe is None:
                raise FileNotFoundError("sbatch not found on PATH: run on a SLURM login node, or use --dry-run")
            atomic_write_text(path, text)
            path.chmod(0o755)
            out = subprocess.run([exe, "--parsable", str(path)], capture_output=True, text=True)
            if out.returncode != 0:
                result.failed[plan.arm.name] = out.stderr.strip()
                say(f"[{sweep.name}/{plan.arm.name}] sbatch failed: {out.stderr.strip()}")
            else:
                result.submitted[plan.arm.name] = out.stdout.strip()
                say(f"[{sweep.name}/{plan.arm.name}] submitted job {out.stdout.strip()} ({path})")
            continue
        path = plan.paths.launch / "commands.sh"
        result.scripts[plan.arm.name] = path
        if dry_run:
            continue
        if shutil.which("torchrun") is None:
            raise FileNotFoundError("torchrun not found on PATH (it ships with torch)")
        atomic_write_text(path, "#!/bin/bash\nset -euo pipefail\n" + "\n".join(cmds) + "\n")
        for cmd in cmds:
            say(f"[{sweep.name}/{plan.arm.name}] $ {cmd}")
            code = subprocess.run(["bash", "-c", cmd]).returncode
            if code != 0:
                result.failed[plan.arm.name] = f"exit {code}: {cmd}"
                break
        else:
            result.submitted[plan.arm.name] = "done"
    return result
