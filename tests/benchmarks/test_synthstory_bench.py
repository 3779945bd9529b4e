"""SynthStory generation throughput: stories/s and keyframes/s, peak memory, and a ratio to a baseline.

Run: ``python -m pytest tests/benchmarks/test_synthstory_bench.py --benchmark-only -p no:cacheprovider``

Baseline (measured in the same run): sampling the same stories' specifications and texts without drawing or
writing anything; the ratio says how much rendering + PNG encoding + atomic writes cost on top.
"""

from __future__ import annotations

import itertools
import shutil
import time
import tracemalloc

import pytest

from unimage.data.synthstory import SynthStoryConfig, generate, story_specs
from unimage.data.synthtext import script_text

CFG = SynthStoryConfig(seed=0, train_stories=64, eval_stories=8)  # the default set: 64 + 64 + 64 + 8 stories


def _counts() -> tuple[int, int]:
    specs = story_specs(CFG)
    stories = sum(len(v) for v in specs.values())
    keyframes = sum(len(s.shots) for s in specs["train"] + specs["pair"] + specs["eval"])
    return stories, keyframes


def _specs_only() -> None:
    for stories in story_specs(CFG).values():
        for s in stories:
            script_text(s)


@pytest.mark.benchmark(group="synthstory")
def test_generate_default_set(benchmark, tmp_path):
    stories, keyframes = _counts()
    t0 = time.perf_counter()
    for _ in range(5):
        _specs_only()
    baseline_s = (time.perf_counter() - t0) / 5

    counter = itertools.count()

    def fresh_dir():
        out = tmp_path / f"run{next(counter)}"
        return (out,), {}

    def run(out):
        generate(out, CFG)

    benchmark.pedantic(run, setup=fresh_dir, rounds=5, iterations=1)
    mean_s = benchmark.stats.stats.mean

    out = tmp_path / "mem"
    tracemalloc.start()
    generate(out, CFG)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)

    benchmark.extra_info.update(
        {
            "stories": stories,
            "keyframes": keyframes,
            "stories_per_s": round(stories / mean_s, 1),
            "keyframes_per_s": round(keyframes / mean_s, 1),
            "baseline_specs_only_s": round(baseline_s, 4),
            "ratio_generate_to_specs_only": round(mean_s / baseline_s, 2),
            "peak_python_memory_mib": round(peak / 2**20, 2),
            "bytes_written": size,
        }
    )
    print(f"\nSynthStory default set: {stories} stories, {keyframes} keyframes, {size / 2**20:.1f} MiB")
    print(f"  generate: {mean_s:.3f} s -> {stories / mean_s:.0f} stories/s, {keyframes / mean_s:.0f} keyframes/s")
    print(f"  baseline (specs + scripts only): {baseline_s:.3f} s; ratio {mean_s / baseline_s:.1f}x")
    print(f"  peak traced Python memory: {peak / 2**20:.1f} MiB")
    assert mean_s < 30  # "seconds", not minutes, for the default set


@pytest.mark.benchmark(group="synthstory")
def test_generate_thousands(benchmark, tmp_path):
    """Scaling: 1,000 interleaved stories (+ 1,000 text scripts, 1,000 pairs, 80 eval stories), one round."""
    cfg = SynthStoryConfig(seed=0, train_stories=1000, eval_stories=80)
    specs = story_specs(cfg)
    stories = sum(len(v) for v in specs.values())
    keyframes = sum(len(s.shots) for s in specs["train"] + specs["pair"] + specs["eval"])
    benchmark.pedantic(generate, args=(tmp_path / "big", cfg), rounds=1, iterations=1)
    mean_s = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        {
            "stories": stories,
            "keyframes": keyframes,
            "stories_per_s": round(stories / mean_s, 1),
            "keyframes_per_s": round(keyframes / mean_s, 1),
        }
    )
    print(
        f"\nSynthStory 1k set: {stories} stories, {keyframes} keyframes in {mean_s:.1f} s ({keyframes / mean_s:.0f} keyframes/s)"
    )
