"""The parser is linear in time and memory (issue 14 item 1: it was quadratic in the number of shots).

The time test compares CPU time at two sizes measured interleaved in one process (the machine may be loaded), so it
checks the growth, not an absolute speed: 4x the text must cost well under 16x (quadratic) the time. The memory test
bounds tracemalloc's peak per input character (the old parser kept a position tuple per character: ~70 bytes).
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from unimage.script.parse import MAX_PROBLEMS_PER_CODE, parse

from .large import KINDS, large_text

SAMPLES = "unimage_scripts"


def _cpu_seconds(text: str) -> float:
    t0 = time.process_time()
    parse(text)
    return time.process_time() - t0


@pytest.mark.parametrize("kind", ["repeated-tag", "realistic"])
def test_parse_time_grows_linearly(fixtures_dir: Path, kind: str) -> None:
    small, large = large_text(kind, 30_000, fixtures_dir / SAMPLES), large_text(kind, 120_000, fixtures_dir / SAMPLES)
    best_small = best_large = float("inf")
    for _ in range(3):  # interleaved, best of three: load on the machine hits both sizes alike
        best_small = min(best_small, _cpu_seconds(small))
        best_large = min(best_large, _cpu_seconds(large))
    ratio = best_large / max(best_small, 1e-3)
    assert ratio < 8, f"4x the text took {ratio:.1f}x the time ({best_small:.3f}s -> {best_large:.3f}s)"


@pytest.mark.parametrize(("kind", "bytes_per_char"), [("repeated-tag", 30), ("realistic", 10), ("cr-only", 10)])
def test_parse_peak_memory_per_character(fixtures_dir: Path, kind: str, bytes_per_char: int) -> None:
    text = large_text(kind, 120_000, fixtures_dir / SAMPLES)
    tracemalloc.start()
    try:
        result = parse(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.script.shots
    assert peak / len(text) < bytes_per_char, f"peak {peak / 1e6:.1f} MB for {len(text) / 1e6:.2f} MB of text"


def test_repeated_problems_are_counted_not_listed() -> None:
    n = MAX_PROBLEMS_PER_CODE + 250
    result = parse("<User>: u.\n" + "<Frame1>: x.\n" * n)
    codes = [p.code for p in result.problems]
    assert len(result.script.shots) == n  # the structure keeps every shot
    assert codes.count("duplicate-index") == MAX_PROBLEMS_PER_CODE  # shots 2..n are duplicates: n - 1 in all
    assert codes.count("missing-video") == MAX_PROBLEMS_PER_CODE
    omitted = {p.message: (p.line, p.column) for p in result.problems if p.code == "problems-omitted"}
    # Each at the first problem left out: line 1 is <User>, shot k is on line k + 1, the first duplicate is shot 2.
    assert omitted == {
        f"{n - 1 - MAX_PROBLEMS_PER_CODE} more 'duplicate-index' problems are not listed (at most 1000 per code)": (
            MAX_PROBLEMS_PER_CODE + 3,
            1,
        ),
        f"{n - MAX_PROBLEMS_PER_CODE} more 'missing-video' problems are not listed (at most 1000 per code)": (
            MAX_PROBLEMS_PER_CODE + 2,
            1,
        ),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_large_inputs_parse_as_their_parts(fixtures_dir: Path, kind: str) -> None:
    """The generated inputs are what their names say (guards the scaling tests against testing nothing)."""
    result = parse(large_text(kind, 50_000, fixtures_dir / SAMPLES))
    assert len(result.script.shots) > 50
    codes = {p.code for p in result.problems}
    if kind in ("realistic", "cr-only"):
        assert result.ok, result.problems[:3]
    if kind == "repeated-tag":
        assert {"duplicate-index", "missing-video"} <= codes
