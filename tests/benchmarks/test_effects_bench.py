"""Effects statistics on a full-size sweep: 10 arms (+ reference) × 30 metrics × 3 seeds × 50 stories.

Run: ``OMP_NUM_THREADS=1 python -m pytest tests/benchmarks/test_effects_bench.py --benchmark-only -p no:cacheprovider``

``compute_effects`` with the hierarchical bootstrap at 4000 resamples (the report's default count), and with the
default two-level test (no resampling), plus the controls' story bootstrap for 5 corruptions × 30 metrics.
"""

from __future__ import annotations

import numpy as np
import pytest

from reports.effects import compute_controls, compute_effects
from reports.effects_io import ArmData, Controls, RunInfo

N_ARMS, N_METRICS, N_SEEDS, N_STORIES = 10, 30, 3, 50


def _arms() -> dict[str, ArmData]:
    rng = np.random.default_rng(0)
    metrics = [f"diag.m{i}" for i in range(N_METRICS)]
    stories = [f"{s:02d}" for s in range(N_STORIES)]
    out = {}
    for i in range(N_ARMS + 1):
        name = "full" if i == 0 else f"arm{i}"
        role, ref = ("reference", None) if i == 0 else ("ablation", "full")
        runs = [
            RunInfo(path=__import__("pathlib").Path(f"{name}.seed{k}"), arm=name, seed=k, role=role, reference=ref)
            for k in range(N_SEEDS)
        ]
        values = rng.normal(size=(N_METRICS, N_SEEDS, N_STORIES))
        out[name] = ArmData(
            name,
            role,
            ref,
            runs,
            stories,
            metrics,
            dict.fromkeys(metrics, "diag"),
            dict.fromkeys(metrics, False),
            values,
            {},
        )
    return out


@pytest.mark.benchmark(group="effects")
@pytest.mark.parametrize("method", ["bootstrap", "twolevel"])
def test_effects_full_size(benchmark, method):
    arms = _arms()
    rows = benchmark(compute_effects, arms, method, 4000, 0)
    assert len(rows) == N_ARMS * N_METRICS


@pytest.mark.benchmark(group="effects")
def test_controls_full_size(benchmark):
    rng = np.random.default_rng(1)
    clean = rng.normal(size=N_STORIES)
    rows = {
        (f"c{c}", f"diag.m{m}"): (clean, clean + rng.normal(size=N_STORIES)) for c in range(5) for m in range(N_METRICS)
    }
    controls = Controls([f"c{c}" for c in range(5)], rows, {f"diag.m{m}": "diag" for m in range(N_METRICS)}, {})
    out = benchmark(compute_controls, controls, 4000, 0)
    assert len(out) == 5 * N_METRICS
