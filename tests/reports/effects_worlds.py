"""Simulated sweeps with known truth for the effects-report tests, written in the sweep's file layout.

A world is ``values[arm] = x[m, k, s]`` (metric, seed, story): the generator below plants a per-arm effect on chosen
metrics, a per-seed offset (seed noise: one draw per run, shared by all its stories), a per-story difficulty
shared by every arm, and cell noise.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Metric:
    name: str
    family: str = "diag"
    higher_is_better: bool = False


def simulate(
    rng: np.random.Generator,
    n_metrics: int,
    seeds: dict[str, int],
    n_stories: int,
    effects: dict[str, np.ndarray] | None = None,
    sd_seed: float = 0.0,
    sd_story: float = 1.0,
    sd_cell: float = 1.0,
) -> dict[str, np.ndarray]:
    """``arm → x[m, k, s]``; ``effects[arm]`` is the true delta per metric (default 0)."""
    story = rng.normal(0.0, sd_story, size=(n_metrics, 1, n_stories))
    out = {}
    for arm, k in seeds.items():
        eff = np.zeros(n_metrics) if effects is None or arm not in effects else np.asarray(effects[arm], float)
        seed_off = rng.normal(0.0, sd_seed, size=(n_metrics, k, 1))
        out[arm] = eff[:, None, None] + story + seed_off + rng.normal(0.0, sd_cell, size=(n_metrics, k, n_stories))
    return out


def write_run(
    root: Path, folder: str, arm: str, seed: int | None, role: str, reference: str | None, x: np.ndarray, metrics
) -> Path:
    """One run folder: ``arm.json`` and ``metrics/perstory_long.csv`` from ``x[m, s]`` (NaN → empty cell)."""
    run = root / folder
    (run / "metrics").mkdir(parents=True, exist_ok=True)
    (run / "arm.json").write_text(json.dumps({"arm": arm, "seed": seed, "role": role, "reference": reference}))
    with (run / "metrics" / "perstory_long.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["story", "metric", "family", "higher_is_better", "value"])
        for i, m in enumerate(metrics):
            for s in range(x.shape[1]):
                v = x[i, s]
                w.writerow(
                    [f"{s + 1:02d}", m.name, m.family, int(m.higher_is_better), "" if np.isnan(v) else repr(float(v))]
                )
    return run


def write_sweep(
    root: Path,
    values: dict[str, np.ndarray],
    roles: dict[str, tuple[str, str | None]],
    metrics: list[Metric],
    first_seed: dict[str, int] | None = None,
) -> Path:
    """Write every arm × seed of ``values`` (``roles[arm] = (role, reference)``); external arms get one folder."""
    root.mkdir(parents=True, exist_ok=True)
    for arm, x in values.items():
        role, ref = roles[arm]
        if role == "external":
            write_run(root, arm, arm, None, role, None, x[:, 0, :], metrics)
            continue
        start = (first_seed or {}).get(arm, 0)
        for k in range(x.shape[1]):
            write_run(root, f"{arm}.seed{start + k}", arm, start + k, role, ref, x[:, k, :], metrics)
    return root


def write_controls(root: Path, rows: list[tuple[str, str, str, np.ndarray, np.ndarray]], expected) -> None:
    """``controls/controls_long.csv`` from (corruption, metric, family, clean[S], corrupted[S]) and expected.csv."""
    folder = root / "controls"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "controls_long.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["corruption", "story", "metric", "family", "higher_is_better", "clean", "corrupted"])
        for corruption, metric, family, clean, corrupted in rows:
            for s, (a, b) in enumerate(zip(clean, corrupted)):
                w.writerow([corruption, f"{s + 1:02d}", metric, family, 1, repr(float(a)), repr(float(b))])
    with (folder / "expected.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["corruption", "metric", "expected", "target"])
        for row in expected:
            w.writerow(row)


def write_keyframes(run: Path, n_stories: int, n_shots: int, size: int = 32) -> dict[tuple[int, int], tuple]:
    """Solid-colour shots in the ViStoryBench layout; returns (story, shot) → RGB colour."""
    from PIL import Image

    colours = {}
    base = run / "outputs" / "unimage" / "base" / "en" / "20260101_000000"
    for s in range(1, n_stories + 1):
        shots = base / f"{s:02d}" / "shots"
        shots.mkdir(parents=True, exist_ok=True)
        for n in range(1, n_shots + 1):
            c = (20 * s % 256, 30 * n % 256, 200)
            Image.new("RGB", (size, size), c).save(shots / f"shot_{n:02d}.png")
            colours[(s, n)] = c
    return colours
