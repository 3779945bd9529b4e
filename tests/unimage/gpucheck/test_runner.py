"""The runner's bookkeeping: statuses, partial results, the record rewritten after every step, the watchdog."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from unimage.gpucheck.env import collect_env
from unimage.gpucheck.runner import Deadline, StepContext, StepSkipped, StepTimeout, run_steps, timed
from unimage.gpucheck.scale import get_scale

CPU = torch.device("cpu")


def _ctx(out, seconds):
    return StepContext(get_scale("tiny"), CPU, torch.float32, Deadline(seconds), out, collect_env(CPU))


def _run(out, steps, selected=None, budget=60.0):
    scale = get_scale("tiny")
    writes = []
    exits = []
    doc = run_steps(
        steps,
        list(steps) if selected is None else selected,
        scale,
        CPU,
        torch.float32,
        collect_env(CPU),
        out,
        lambda d: writes.append(copy.deepcopy(d)),
        budget,
        log=lambda _: None,
        exit_fn=exits.append,
    )
    return doc, writes, exits


def test_each_outcome_gets_its_status_and_keeps_its_partial_results(tmp_path):
    def ok(ctx: StepContext) -> None:
        ctx.results["x"] = 1
        ctx.check("small", 0.5, 1.0)

    def failed(ctx: StepContext) -> None:
        ctx.check("big", 2.0, 1.0)

    def error(ctx: StepContext) -> None:
        ctx.results["before"] = True
        raise RuntimeError("boom in the kernel")

    def skipped(ctx: StepContext) -> None:
        raise StepSkipped("flash-attn is not installed")

    def timeout(ctx: StepContext) -> None:
        ctx.results["part"] = "done"
        raise StepTimeout("ran out")

    steps = {n: (n, f) for n, f in [("ok", ok), ("failed", failed), ("error", error), ("skipped", skipped)]}
    steps |= {"timeout": ("timeout", timeout), "unselected": ("unselected", ok)}
    doc, writes, exits = _run(tmp_path, steps, selected=["ok", "failed", "error", "skipped", "timeout"])
    s = doc["steps"]
    assert [s[n]["status"] for n in steps] == ["ok", "failed", "error", "skipped", "timeout", "skipped"]
    assert s["ok"]["results"] == {"x": 1} and s["ok"]["checks"][0]["passed"] is True
    assert s["failed"]["reason"] == "checks failed: big" and s["failed"]["checks"][0]["passed"] is False
    assert "boom in the kernel" in s["error"]["reason"] and s["error"]["results"] == {"before": True}
    assert s["skipped"]["reason"] == "flash-attn is not installed"
    assert s["timeout"]["results"] == {"part": "done"}
    assert s["unselected"]["reason"] == "not selected (--steps)"
    assert doc["complete"] is True and doc["ok"] is False and not exits
    # Written before the first step and after each one, each time with every step present.
    assert len(writes) == 1 + 5 + 1
    assert all(set(w["steps"]) == set(steps) for w in writes)
    assert writes[0]["steps"]["ok"]["reason"] == "not reached"


def test_all_ok_or_skipped_is_ok(tmp_path):
    def ok(ctx: StepContext) -> None:
        ctx.check("fine", 0.0, 0.0)

    def skip(ctx: StepContext) -> None:
        raise StepSkipped("no CUDA")

    doc, _, _ = _run(tmp_path, {"a": ("a", ok), "b": ("b", skip)})
    assert doc["ok"] is True and doc["wall_s"] >= 0 and doc["schema"] == "unimage.gpucheck/1"


def test_watchdog_records_the_interrupted_step_and_the_unreached_ones(tmp_path):
    def slow(ctx: StepContext) -> None:
        ctx.results["started"] = True
        time.sleep(1.5)

    def later(ctx: StepContext) -> None:
        pass

    _, writes, exits = _run(tmp_path, {"slow": ("slow", slow), "later": ("later", later)}, budget=0.3)
    assert exits == [3]  # the real exit function would have ended the process here
    at_exit = next(w for w in writes if w["complete"] is False and w["finished"])
    assert at_exit["steps"]["slow"]["status"] == "timeout" and "watchdog" in at_exit["steps"]["slow"]["reason"]
    assert at_exit["steps"]["slow"]["results"] == {"started": True}
    assert at_exit["steps"]["later"]["status"] == "skipped" and "watchdog" in at_exit["steps"]["later"]["reason"]


def test_timed_stops_at_the_box_but_measures_at_least_once(tmp_path):
    ctx = _ctx(tmp_path, 0.05)
    calls = []
    t = timed(lambda: (calls.append(1), time.sleep(0.03)), ctx, iters=10, warmup=1)
    assert 1 <= t["iters"] < 10 and t["cut_short"] is True and len(calls) == t["iters"] + 1
    assert t["median_s"] >= 0.03
    ctx = _ctx(tmp_path, 60)
    t = timed(lambda: None, ctx, iters=4, warmup=0)
    assert t["iters"] == 4 and t["cut_short"] is False


def test_require_time_raises_once_the_box_is_spent(tmp_path):
    ctx = _ctx(tmp_path, 0.0)
    with pytest.raises(StepTimeout, match="before decoding"):
        ctx.require_time("decoding")
