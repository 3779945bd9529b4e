"""Script parser throughput and peak memory: seconds per MB and peak RSS for four kinds of input at 1, 10, 50 MB.

Run: ``python -m pytest tests/benchmarks/test_parse_bench.py --benchmark-only -p no:cacheprovider -s``
(add ``UNIMAGE_PARSE_BENCH_50MB=1`` for the 50 MB cases: about a minute each on a loaded 2-core machine).

Issue 14 targets: 1 MB in under 1 s, 50 MB in under 60 s and under 1 GB. Each case runs in a fresh interpreter
whose peak RSS is reset (``/proc/self/clear_refs``, Linux) once the input is built: ``peak_rss_mb`` is the process's
peak during ``parse`` (interpreter and input text included), ``parse_rss_mb`` its growth over the RSS before. Wall and CPU seconds are measured inside that process around the
``parse`` call only; the input kinds are described in ``tests/unimage/script/large.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, REPO_ROOT
from tests.unimage.script.large import KINDS

SIZES_MB = (1, 10, 50) if os.environ.get("UNIMAGE_PARSE_BENCH_50MB") else (1, 10)

_CHILD = """
import json, sys, time
from pathlib import Path
from tests.unimage.script.large import large_text
from unimage.script.parse import parse

def status_kib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

kind, size, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
text = large_text(kind, size, folder)
del folder
with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS to the current one: building the text is not counted
    f.write("5")
before = status_kib("VmRSS:")
cpu, wall = time.process_time(), time.perf_counter()
result = parse(text)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"chars": len(text), "wall_s": wall, "cpu_s": cpu, "peak_kib": status_kib("VmHWM:"), "before_kib": before,
                  "shots": len(result.script.shots), "problems": len(result.problems)}))
"""


def _run(kind: str, megabytes: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    args = [sys.executable, "-c", _CHILD, kind, str(megabytes * 1_000_000), str(FIXTURES / "unimage_scripts")]
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("megabytes", SIZES_MB)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.benchmark(group="parse")
def test_parse_large(benchmark, kind: str, megabytes: int) -> None:
    if not (FIXTURES / "unimage_scripts").is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    stats = benchmark.pedantic(_run, args=(kind, megabytes), rounds=1, iterations=1)
    mb = stats["chars"] / 1e6
    info = {
        "mb": round(mb, 2),
        "s_per_mb": round(stats["wall_s"] / mb, 3),
        "cpu_s_per_mb": round(stats["cpu_s"] / mb, 3),
        "peak_rss_mb": round(stats["peak_kib"] / 1024, 1),
        "parse_rss_mb": round((stats["peak_kib"] - stats["before_kib"]) / 1024, 1),
        "shots": stats["shots"],
        "problems": stats["problems"],
    }
    benchmark.extra_info.update(info)
    print(f"\n{kind:>13} {megabytes:>3} MB: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    assert stats["peak_kib"] / 1024 < 1024, "issue 14: under 1 GB up to 50 MB"
