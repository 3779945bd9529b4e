"""The sweep runner: every arm's pending stages, in its run directory, resumable and safe.

For each arm (in sweep order) and each of its stages (in pipeline order) the runner compares the stage hash of the
current resolved config with ``status.json``:

- ``done`` under the same hash → skipped (nothing is redone);
- recorded under another hash (the config changed) → the stage and everything downstream run again (hashes chain,
  so the downstream stages see the change too); the folders of train and generate (``checkpoints/``, ``outputs/``)
  are first moved aside to ``superseded/`` (nothing is deleted), while ``metrics/`` stays: the evaluator rescores
  exactly the (story, metric) units whose settings or images changed;
- ``running`` under the same hash (a killed run) → the stage runs again and its own resume logic continues where
  it stopped (training from ``last.ckpt``, generation and evaluation per story), never trusting half-written files
  because every writer renames complete files into place.

Before any stage the arm gets ``config.yaml`` (the resolved config, replayable) and ``provenance.json`` (git commit,
package versions, seeds, device, era, judge, split). A failing stage is reported and the other arms go on.

Under a distributed launcher (``torchrun`` / ``srun`` set ``WORLD_SIZE`` or ``SLURM_NTASKS``), only the ``train``
stage may run; every rank calls it (Lightning joins them), and only rank 0 writes the arm's files.

Parallel runs (``jobs > 1``): the data stage runs first, in this process (the arms share its folder); then every
arm's other stages run in their own process, at most ``jobs`` at a time, each with one torch thread (on CPU, one
thread per process and parallel processes beat threads in one process: 0.55 vs 4 s per training step measured on a
loaded 2-core box). Each child's output goes to ``<arm>/launch/sweep.log``.

Locking: while a process works on an arm it holds ``<arm>/.lock`` (`ablations.lock`); a second sweep over the same
runs folder is told who holds it and leaves that arm alone (or waits, ``wait`` seconds).

Controls: a sweep with ``controls:`` scores corrupted copies of the ground-truth keyframes after the arms
(`ablations.controls`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ablations.config import ArmSpec, SweepSpec, resolved_yaml
from ablations.lock import ArmLock, ArmLocked
from ablations.provenance import provenance
from ablations.stages import DEFAULT_STAGES, ArmPaths, StageContext, StageFn, missing_paths
from ablations.status import ArmStatus, Pending, atomic_write_json, atomic_write_text
from formats.vistory import new_timestamp

#: Stages whose folder is moved to ``superseded/`` when their config changed (their own resume would otherwise
#: continue from outputs made under the old config: Lightning from ``last.ckpt``, generation from finished stories).
SUPERSEDED_STAGES = ("train", "generate")


@dataclass
class StagePlan:
    """One stage of one arm: whether it runs and why."""

    stage: str
    state: Pending
    hash: str

    @property
    def pending(self) -> bool:
        """True when the stage must run."""
        return self.state != "done"


@dataclass
class ArmPlan:
    """The plan of one arm: its run directory and its stages (only the selected ones)."""

    arm: ArmSpec
    paths: ArmPaths
    stages: list[StagePlan]

    @property
    def pending(self) -> list[str]:
        """Stages that must run, in order."""
        return [s.stage for s in self.stages if s.pending]


@dataclass
class ArmResult:
    """What the runner did for one arm."""

    arm: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    sweep_dir: Path
    arms: list[ArmResult]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no stage failed."""
        return all(a.failed is None for a in self.arms)


def sweep_dir(sweep: SweepSpec, runs: str | Path | None = None) -> Path:
    """``<runs>/<sweep name>/``."""
    return Path(runs if runs is not None else sweep.runs) / sweep.name


def plan_sweep(
    sweep: SweepSpec, arms: list[str] | None = None, stages: list[str] | None = None, runs: str | Path | None = None
) -> list[ArmPlan]:
    """Which stages each selected arm still needs (reads status.json; writes nothing).

    Args:
        sweep: the sweep.
        arms: arm names (default: all).
        stages: restrict to these stages (default: each arm's own).
        runs: runs root (default: the sweep's ``runs``).
    """
    root = sweep_dir(sweep, runs)
    plans = []
    for arm in sweep.select(arms):
        paths = ArmPaths(root / arm.name)
        status = ArmStatus.load(paths.root, arm.name, sweep.name)
        hashes = arm.stage_hashes()
        chosen = [s for s in arm.stages if stages is None or s in stages]
        plans.append(ArmPlan(arm, paths, [StagePlan(s, status.state(s, hashes[s]), hashes[s]) for s in chosen]))
    return plans


def _world() -> tuple[int, int]:
    """(rank, world size) of a torchrun / srun launch; (0, 1) otherwise."""
    for rank_var, size_var in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if os.environ.get(size_var):
            return int(os.environ.get(rank_var, "0")), int(os.environ[size_var])
    return 0, 1


def run_sweep(
    sweep: SweepSpec,
    arms: list[str] | None = None,
    stages: list[str] | None = None,
    runs: str | Path | None = None,
    stage_fns: Mapping[str, StageFn] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    keep_going: bool = True,
    jobs: int = 1,
    wait: float = 0.0,
    controls: bool = True,
) -> SweepResult:
    """Run every selected arm's pending stages (module docstring).

    Args:
        sweep: the sweep (``ablations.config.load_sweep``).
        arms: arm names (default: all).
        stages: only these stages (default: each arm's own). An upstream stage that is not done is an error.
        runs: runs root (default: the sweep's ``runs``).
        stage_fns: stage name → callable (default :data:`ablations.stages.DEFAULT_STAGES`).
        progress: progress bars inside the stages.
        log: one-line progress messages (default: print to stderr).
        keep_going: after a failed arm, go on with the next (else stop).
        jobs: arms run in parallel processes (module docstring); 1 runs them one after the other in this process.
            Parallel runs need the sweep's file (the children load it) and the default stage functions.
        wait: seconds to wait for an arm another process holds (0: skip it at once, reported as failed).
        controls: score the sweep's positive controls after the arms (the parallel children do not: the parent
            does, once).

    Returns:
        A :class:`SweepResult`; failed stages are listed there, not raised.
    """
    fns = dict(stage_fns or DEFAULT_STAGES)
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    rank, world = _world()
    if world > 1 and (not stages or any(s != "train" for s in stages)):
        raise ValueError(f"under a distributed launch (world size {world}) only --stages train can run")
    start = time.perf_counter()
    root = sweep_dir(sweep, runs)
    plans = plan_sweep(sweep, arms, stages, runs)
    parallel = jobs > 1 and world == 1 and stage_fns is None and sweep.path.is_file()
    if parallel and sum(bool(p.pending) for p in plans) > 1:
        results = _run_parallel(sweep, plans, root, runs, fns, progress, say, jobs, wait)
    else:
        results = []
        for plan in plans:
            res = _run_arm(sweep, plan, root, fns, progress, say, rank, world, wait)
            results.append(res)
            if res.failed and not keep_going:
                break
    if controls and rank == 0 and sweep.controls and (stages is None or "evaluate" in stages):
        _controls(sweep, root, say, results)
    return SweepResult(root, results, time.perf_counter() - start)


def _controls(sweep: SweepSpec, root: Path, say: Callable[[str], None], results: list[ArmResult]) -> None:
    """Score the sweep's positive controls (`ablations.controls`); a failure is reported as a pseudo-arm."""
    from ablations.controls import run_controls
    from ablations.stages import data_dir

    arms = sorted(sweep.arms.values(), key=lambda a: a.role != "reference")  # the reference arm's settings first
    ref = next((a for a in arms if a.config["data"].get("synthstory") is not None), None)
    if ref is None:
        say(f"[{sweep.name}] controls: skipped (they need an arm with a SynthStory data stage)")
        return
    ctx = StageContext(sweep=sweep, arm=ref, paths=ArmPaths(root / ref.name), sweep_dir=root)
    data = data_dir(ctx)
    if not (data / "eval" / "ground_truth").is_dir():
        say(f"[{sweep.name}] controls: skipped (no SynthStory ground truth at {data}; run the data stage)")
        return
    t0 = time.perf_counter()
    res = ArmResult("controls")
    try:
        if run_controls(sweep, root, ref, data):
            res.ran.append("controls")
            say(f"[{sweep.name}] controls: {', '.join(sweep.controls)} scored in {time.perf_counter() - t0:.1f} s")
        else:
            res.skipped.append("controls")
            say(f"[{sweep.name}] controls: done (same settings), skipped")
    except Exception as e:
        res.failed, res.error = "controls", f"{type(e).__name__}: {e}"
        say(f"[{sweep.name}] controls: FAILED: {res.error}\n{traceback.format_exc(limit=6)}")
    res.seconds = time.perf_counter() - t0
    results.append(res)


def _run_parallel(
    sweep: SweepSpec,
    plans: list[ArmPlan],
    root: Path,
    runs: str | Path | None,
    fns: dict[str, StageFn],
    progress: bool,
    say: Callable[[str], None],
    jobs: int,
    wait: float,
) -> list[ArmResult]:
    """Data stages here, then each arm's other stages in a child process, ``jobs`` at a time (module docstring)."""
    results: dict[str, ArmResult] = {}
    queue: list[tuple[ArmPlan, list[str]]] = []
    for plan in plans:
        data = [s for s in plan.stages if s.stage == "data"]
        if any(s.pending for s in data):
            res = _run_arm(sweep, ArmPlan(plan.arm, plan.paths, data), root, fns, progress, say, 0, 1, wait)
            if res.failed:
                results[plan.arm.name] = res
                continue
        rest = [s.stage for s in plan.stages if s.stage != "data" and s.pending]
        if rest:
            queue.append((plan, rest))
        else:
            results[plan.arm.name] = ArmResult(plan.arm.name, skipped=[s.stage for s in plan.stages])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    running: dict[str, tuple[subprocess.Popen[bytes], ArmPlan, list[str], float]] = {}
    while queue or running:
        while queue and len(running) < jobs:
            plan, rest = queue.pop(0)
            cmd = [sys.executable, "-m", "ablations.cli", str(sweep.path), "--arms", plan.arm.name, "--jobs", "1"]
            cmd += ["--stages", ",".join(rest), "--no-progress", "--wait", str(wait), "--no-controls"]
            if runs is not None:
                cmd += ["--runs", str(runs)]
            log_path = plan.paths.launch / "sweep.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[plan.arm.name] = (proc, plan, rest, time.perf_counter())
            say(f"[{sweep.name}/{plan.arm.name}] {','.join(rest)}: started in process {proc.pid} (log {log_path})")
        time.sleep(0.2)
        for name, (proc, plan, rest, t0) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[name]
            res = ArmResult(name, ran=[], seconds=time.perf_counter() - t0)
            status = ArmStatus.load(plan.paths.root, name, sweep.name)
            hashes = plan.arm.stage_hashes()
            res.ran = [s for s in rest if status.state(s, hashes[s]) == "done"]
            res.skipped = [s.stage for s in plan.stages if not s.pending]
            if code != 0 or len(res.ran) < len(rest):
                res.failed = next((s for s in rest if s not in res.ran), rest[-1])
                tail = (plan.paths.launch / "sweep.log").read_text(encoding="utf-8", errors="replace")
                res.error = f"exit code {code}; last lines of {plan.paths.launch / 'sweep.log'}:\n" + "\n".join(
                    tail.splitlines()[-8:]
                )
                say(f"[{sweep.name}/{name}] FAILED in {res.failed} ({res.error})")
            else:
                say(f"[{sweep.name}/{name}] {','.join(rest)}: done in {res.seconds:.1f} s")
            results[name] = res
    return [results[p.arm.name] for p in plans if p.arm.name in results]


def _run_arm(
    sweep: SweepSpec,
    plan: ArmPlan,
    root: Path,
    fns: dict[str, StageFn],
    progress: bool,
    say: Callable[[str], None],
    rank: int,
    world: int,
    wait: float = 0.0,
) -> ArmResult:
    """Run one arm's pending stages, holding its lock (rank 0 only: the other ranks follow rank 0's status)."""
    if rank != 0 or not plan.pending:
        return _run_arm_unlocked(sweep, plan, root, fns, progress, say, rank, world)
    try:
        with ArmLock(plan.paths.root, wait=wait):
            return _run_arm_unlocked(sweep, plan, root, fns, progress, say, rank, world)
    except ArmLocked as e:
        say(f"[{sweep.name}/{plan.arm.name}] not run: {e}")
        return ArmResult(plan.arm.name, failed=plan.pending[0], error=str(e))


def _run_arm_unlocked(
    sweep: SweepSpec,
    plan: ArmPlan,
    root: Path,
    fns: dict[str, StageFn],
    progress: bool,
    say: Callable[[str], None],
    rank: int,
    world: int,
) -> ArmResult:
    arm, paths = plan.arm, plan.paths
    tag = f"[{sweep.name}/{arm.name}]"
    res = ArmResult(arm.name)
    t0 = time.perf_counter()
    lead = rank == 0
    status = ArmStatus.load(paths.root, arm.name, sweep.name)
    hashes = arm.stage_hashes()
    problems = missing_paths(sweep, arm, plan.pending)
    if problems:
        res.failed, res.error = plan.pending[0], "; ".join(problems)
        say(f"{tag} cannot start: " + "\n  ".join(problems))
        return res
    if lead and plan.pending:
        paths.root.mkdir(parents=True, exist_ok=True)
        text = resolved_yaml(arm, sweep)
        if not paths.config.is_file() or paths.config.read_text(encoding="utf-8") != text:
            atomic_write_text(paths.config, text)
        atomic_write_json(paths.root / "arm.json", arm.info())
        atomic_write_json(paths.provenance, provenance(arm, sweep, hashes, status))
    for sp in plan.stages:
        if not sp.pending:
            res.skipped.append(sp.stage)
            say(f"{tag} {sp.stage}: done (hash {sp.hash[:8]}), skipped")
            continue
        missing = [u for u in arm.stages[: arm.stages.index(sp.stage)] if status.state(u, hashes[u]) != "done"]
        if missing:
            res.failed, res.error = sp.stage, f"needs upstream stage(s) {missing} done first"
            say(f"{tag} {sp.stage}: cannot run: {res.error}")
            break
        state = status.state(sp.stage, sp.hash)
        if lead:
            if state in ("changed", "interrupted-changed"):
                _supersede(paths, arm.stages, sp.stage, status, say, tag)
            status.start(sp.stage, sp.hash)
        else:
            _wait_for_start(status, paths.root, arm, sp)
        say(f"{tag} {sp.stage}: running ({state}, hash {sp.hash[:8]})")
        ctx = StageContext(
            sweep=sweep,
            arm=arm,
            paths=paths,
            sweep_dir=root,
            upstream={u: status.info(u) for u in arm.stages[: arm.stages.index(sp.stage)]},
            progress=progress and lead,
            log=say,
        )
        s0 = time.perf_counter()
        try:
            info = fns[sp.stage](ctx)
        except Exception as e:
            res.failed, res.error = sp.stage, f"{type(e).__name__}: {e}"
            say(f"{tag} {sp.stage}: FAILED: {res.error}\n{traceback.format_exc(limit=6)}")
            break
        seconds = time.perf_counter() - s0
        if lead:
            status.finish(sp.stage, sp.hash, seconds, info or {})
        res.ran.append(sp.stage)
        say(f"{tag} {sp.stage}: done in {seconds:.1f} s")
    if lead and res.ran:
        status = ArmStatus.load(paths.root, arm.name, sweep.name)
        atomic_write_json(paths.provenance, provenance(arm, sweep, hashes, status))
    res.seconds = time.perf_counter() - t0
    return res


def _supersede(
    paths: ArmPaths, stages: tuple[str, ...], stage: str, status: ArmStatus, say: Callable[[str], None], tag: str
) -> None:
    """Move the folders of ``stage`` and every stage after it to ``superseded/`` and forget them in status.json."""
    later = list(stages[stages.index(stage) :])
    stamp = new_timestamp()
    for s in later:
        # evaluate keeps its folder: the evaluator re-scores every (story, metric) unit whose settings or images
        # changed and reuses the rest, so a relabelled row costs nothing and a stale unit is never trusted.
        folder = paths.stage_dir(s) if s in SUPERSEDED_STAGES else None
        old = (status.stages.get(s) or {}).get("hash", "unknown")
        if folder is not None and folder.exists():
            target = paths.root / "superseded" / f"{s}-{str(old)[:8]}-{stamp}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(target))
            say(f"{tag} {s}: config changed; previous {folder.name}/ moved to {target.relative_to(paths.root)}")
    status.invalidate(later)


def _wait_for_start(status: ArmStatus, root: Path, arm: ArmSpec, sp: StagePlan, timeout_s: float = 600.0) -> None:
    """Non-zero ranks wait until rank 0 has recorded the stage as started under this hash (it may move folders)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = ArmStatus.load(root, arm.name)
        rec = current.stages.get(sp.stage) or {}
        if rec.get("hash") == sp.hash:
            return
        time.sleep(1.0)
    raise TimeoutError(f"rank 0 did not start stage {sp.stage} of arm {arm.name} within {timeout_s:.0f} s")


def format_plan(
    plans: list[ArmPlan], commands: Mapping[str, list[str]] | None = None, sweep: SweepSpec | None = None
) -> str:
    """Human-readable plan: per arm, each stage's state and, when given, the exact commands."""
    lines = []
    for p in plans:
        todo = p.pending
        head = f"arm {p.arm.name}" + (" (external method)" if p.arm.external else "") + f" → {p.paths.root}"
        lines.append(head)
        for s in p.stages:
            mark = "run " if s.pending else "skip"
            lines.append(f"  {mark} {s.stage:<9} {s.state:<20} hash {s.hash[:8]}")
        if not todo:
            lines.append("  nothing to do")
        for problem in missing_paths(sweep, p.arm, todo) if sweep is not None else []:
            lines.append(f"  ! {problem}")
        for cmd in (commands or {}).get(p.arm.name, []):
            lines.append(f"  $ {cmd}")
    return "\n".join(lines) + "\n"


__all__ = [
    "ArmPlan",
    "ArmResult",
    "StagePlan",
    "SweepResult",
    "format_plan",
    "plan_sweep",
    "run_sweep",
    "sweep_dir",
]
