"""Running the steps: time boxes, partial results, checks, and ``gpucheck.json`` rewritten after every step.

A GPU is lent for minutes, so nothing may be lost to one slow or broken step:

- every step has a time box (``Deadline``); timed loops stop when it runs out (after at least one timed iteration),
  and a part that cannot start in time is recorded as not reached;
- a step that raises is recorded as ``error`` with the traceback's tail, and the next step still runs;
- ``gpucheck.json`` (and the markdown summary) are written atomically after every step, so a run killed at any point
  leaves every finished step on disk; a watchdog thread ends the process if the whole run overstays its budget,
  after marking the step it interrupted and the ones it never reached.

Step statuses: ``ok`` (ran, every check passed), ``failed`` (ran, a check failed), ``error`` (raised), ``timeout``
(its box ran out; partial results kept), ``skipped`` (not run, with the reason).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch

from unimage.gpucheck.env import EnvInfo
from unimage.gpucheck.scale import CheckScale

__all__ = [
    "SCHEMA",
    "Check",
    "Deadline",
    "StepContext",
    "StepReport",
    "StepSkipped",
    "StepTimeout",
    "run_steps",
    "timed",
]

SCHEMA = "unimage.gpucheck/1"
StepStatus = Literal["ok", "failed", "error", "timeout", "skipped"]


class StepSkipped(Exception):
    """Raised by a step that cannot run here (missing dependency or device); the message is the reason."""


class StepTimeout(Exception):
    """Raised when a step's box ran out before a part it cannot do without."""


class Deadline:
    """A time box: ``seconds`` from construction (monotonic clock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the box opened."""
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left (negative once over)."""
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        """True once the box has run out."""
        return self.remaining() <= 0


@dataclass
class Check:
    """One tolerance: passes when ``value <= limit`` (value None = not measured = fails)."""

    name: str
    value: float | None
    limit: float
    note: str = ""

    @property
    def passed(self) -> bool:
        """``value <= limit``."""
        return self.value is not None and self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``passed``."""
        return asdict(self) | {"passed": self.passed}


@dataclass
class StepReport:
    """What one step left: status, reason, timing, results and checks."""

    name: str
    title: str
    status: StepStatus
    reason: str | None = None
    wall_s: float | None = None
    box_s: float | None = None
    results: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "wall_s": None if self.wall_s is None else round(self.wall_s, 3),
            "box_s": self.box_s,
            "results": self.results,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass
class StepContext:
    """What a step gets: the scale, device and dtype, its deadline, a scratch folder, and where to put results.

    Steps write into ``results`` and ``checks`` as they go, so a step that times out or raises keeps what it did.
    ``cleanups`` run if the watchdog ends the process inside the step (e.g. killing the step's child processes).
    ``backend`` is the attention backend the timed steps (train, inference) use; ``auto`` is what production picks.
    """

    scale: CheckScale
    device: torch.device
    dtype: torch.dtype
    deadline: Deadline
    work_dir: Path
    env: EnvInfo
    results: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    log: Callable[[str], None] = print
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    backend: str = "auto"

    def check(self, name: str, value: float | None, limit: float, note: str = "") -> Check:
        """Record a tolerance check (``value <= limit``)."""
        c = Check(name, None if value is None else float(value), float(limit), note)
        self.checks.append(c)
        return c

    def require_time(self, what: str, seconds: float = 0.0) -> None:
        """Raise ``StepTimeout`` unless ``seconds`` are left in the box (for a part that cannot be cut short)."""
        if self.deadline.remaining() <= seconds:
            raise StepTimeout(f"time box ({self.deadline.seconds:.0f} s) ran out before {what}")

    def sync(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def timed(
    fn: Callable[[], object],
    ctx: StepContext,
    iters: int,
    warmup: int = 1,
    share: float = 1.0,
) -> dict[str, Any]:
    """Time ``fn``: ``warmup`` untimed calls, then up to ``iters`` timed ones within ``share`` of the box left.

    At least one timed call always runs once the warm-up is done (a measurement with no sample is useless).

    Returns:
        ``{"median_s", "min_s", "times_s", "iters", "cut_short", "warmup_s"}`` (``warmup_s``: the untimed calls,
        where compiles and kernel selection show up).
    """
    until = time.monotonic() + max(ctx.deadline.remaining(), 0.0) * share
    t_warm = time.perf_counter()
    for _ in range(warmup):
        fn()
    ctx.sync()
    warmup_s = time.perf_counter() - t_warm
    times: list[float] = []
    while len(times) < iters:
        t0 = time.perf_counter()
        fn()
        ctx.sync()
        times.append(time.perf_counter() - t0)
        if time.monotonic() >= until:
            break
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": [round(t, 6) for t in times],
        "iters": len(times),
        "cut_short": len(times) < iters,
        "warmup_s": round(warmup_s, 6),
    }


StepFn = Callable[[StepContext], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _tail(exc: BaseException, limit: int = 2000) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-limit:]


def _run_step(name: str, title: str, fn: StepFn, ctx: StepContext, box: float) -> StepReport:
    """Run one step in its box and report it: a step that raises is an error, never the end of the run."""
    rep = StepReport(name, title, "ok", box_s=box)
    try:
        fn(ctx)
    except StepSkipped as exc:
        rep.status, rep.reason = "skipped", str(exc)
    except StepTimeout as exc:
        rep.status, rep.reason = "timeout", str(exc)
    except Exception as exc:  # a broken step must not cost the others their turn
        rep.status, rep.reason = "error", _tail(exc)
    finally:
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    rep.wall_s, rep.results, rep.checks = ctx.deadline.elapsed(), ctx.results, ctx.checks
    if rep.status == "ok" and not all(c.passed for c in rep.checks):
        bad = [c.name for c in rep.checks if not c.passed]
        rep.status, rep.reason = "failed", f"checks failed: {', '.join(bad)}"
    if rep.status == "ok" and ctx.deadline.expired():
        rep.reason = f"finished {-ctx.deadline.remaining():.1f} s over its box"
    return rep


def _interrupted(
    ctx: StepContext, name: str, title: str, budget_s: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """The record of the step the watchdog stopped (what it had done so far), after running its cleanups."""
    rep = StepReport(name, title, "timeout", f"watchdog: the run's budget ({budget_s:.0f} s) ran out here")
    rep.results, rep.checks, rep.box_s = ctx.results, ctx.checks, ctx.deadline.seconds
    rep.wall_s = ctx.deadline.elapsed()
    for cleanup in ctx.cleanups:
        try:
            cleanup()
        except Exception as exc:  # the record must still be written
            log(f"gpucheck: cleanup failed: {exc!r}")
    return rep.to_dict()


def run_steps(
    steps: dict[str, tuple[str, StepFn]],
    selected: list[str],
    scale: CheckScale,
    device: torch.device,
    dtype: torch.dtype,
    env: EnvInfo,
    out_dir: Path,
    write: Callable[[dict[str, Any]], None],
    budget_s: float,
    log: Callable[[str], None] = print,
    exit_fn: Callable[[int], None] = os._exit,
    backend: str = "auto",
) -> dict[str, Any]:
    """Run the selected steps in order, rewriting the document with ``write`` after each; return the document.

    Args:
        steps: name → (title, function), in run order; every name appears in the document.
        selected: Names to run; the others are recorded as skipped.
        scale: Shapes and boxes.
        device: Where to run.
        dtype: Working dtype (bf16 on CUDA, fp32 on the CPU).
        env: The environment record.
        out_dir: Output folder (steps get ``out_dir/work/<step>`` as scratch).
        write: Writes the document (atomically) and the summary.
        budget_s: Whole-run budget; the watchdog calls ``exit_fn(3)`` after writing the document when it runs out.
        log: Progress lines.
        exit_fn: How the watchdog ends the process (tests pass a recorder).
        backend: Attention backend of the timed steps (``auto``, ``sdpa``, ``flex``, ``flash``).
    """
    started = time.monotonic()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": _now(),
        "finished": None,
        "complete": False,
        "scale": scale.name,
        "dtype": str(dtype).removeprefix("torch."),
        "backend": backend,
        "budget_s": budget_s,
        "wall_s": None,
        "env": env.to_dict(),
        "steps": {},
        "ok": None,
    }
    for name, (title, _) in steps.items():
        reason = "not reached" if name in selected else "not selected (--steps)"
        doc["steps"][name] = StepReport(name, title, "skipped", reason).to_dict()
    lock = threading.Lock()
    current: dict[str, Any] = {}

    def finish(complete: bool) -> None:
        doc["finished"] = _now()
        doc["wall_s"] = round(time.monotonic() - started, 3)
        doc["complete"] = complete
        doc["ok"] = all(s["status"] in ("ok", "skipped") for s in doc["steps"].values())
        write(doc)

    def watchdog() -> None:
        with lock:
            if current:
                doc["steps"][current["name"]] = _interrupted(
                    current["ctx"], current["name"], current["title"], budget_s, log
                )
            for s in doc["steps"].values():
                if s["reason"] == "not reached":
                    s["reason"] = "not reached: the run's budget ran out (watchdog)"
            finish(complete=False)
        log(f"gpucheck: budget of {budget_s:.0f} s exhausted; wrote partial results")
        exit_fn(3)

    timer = threading.Timer(budget_s, watchdog)
    timer.daemon = True
    timer.start()
    try:
        write(doc)
        for name, (title, fn) in steps.items():
            if name not in selected:
                continue
            box = scale.boxes.get(name, 60.0)
            work = out_dir / "work" / name
            work.mkdir(parents=True, exist_ok=True)
            ctx = StepContext(scale, device, dtype, Deadline(box), work, env, log=log, backend=backend)
            with lock:
                current.update(ctx=ctx, name=name, title=title)
            log(f"gpucheck: {name} ({title}), box {box:.0f} s")
            rep = _run_step(name, title, fn, ctx, box)
            with lock:
                current.clear()
                doc["steps"][name] = rep.to_dict()
                write(doc)
            log(f"gpucheck: {name}: {rep.status} in {rep.wall_s:.1f} s" + (f" ({rep.reason})" if rep.reason else ""))
        with lock:
            finish(complete=True)
    finally:
        timer.cancel()
    return doc
