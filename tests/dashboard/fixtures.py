"""Fixture builder: small run directories (DESIGN.md §3.4) and plain ViStoryBench output folders (§3.3).

Images are generated (a colour per method, a bar whose position encodes the shot), scripts follow the UniMAGE
format with mentions and cues, and metrics use the official ViStoryBench file layout, so the dashboard is
tested on the formats the other parts write without waiting for them. Every value written is returned, so tests
compare what the app shows with what was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TIMESTAMP = "20260101_120000"
OLD_TIMESTAMP = "20250101_120000"


@dataclass
class Built:
    """What a builder wrote: the root and the expected values, keyed for assertions."""

    root: Path
    sets: dict[str, Path] = field(default_factory=dict)  # label -> timestamp dir
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # arm -> column -> value (paper scale)
    story_values: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # arm -> story -> col
    stories: dict[str, int] = field(default_factory=dict)  # story id -> number of shots


def color_for(i: int) -> tuple[int, int, int]:
    """A distinct colour per method index (so screenshots and pixels identify the column)."""
    palette = [(220, 60, 60), (60, 140, 220), (60, 180, 90), (230, 170, 40), (150, 80, 200), (40, 190, 190)]
    r, g, b = palette[i % len(palette)]
    return (r - 20 * (i // len(palette)) % 200, g, b)


def write_png(path: Path, color: tuple[int, int, int], shot: int, size: tuple[int, int] = (64, 48)) -> None:
    """A small PNG: a colour field with a dark bar whose x position encodes the shot number, plus mild noise."""
    w, h = size
    rng = np.random.default_rng(shot * 7919 + sum(color))
    arr = np.empty((h, w, 3), dtype=np.uint8)
    arr[:] = color
    noise = rng.integers(0, 24, size=(h, w, 3), dtype=np.uint8)
    arr = np.clip(arr.astype(np.int16) - noise, 0, 255).astype(np.uint8)
    x0 = (shot * 5) % max(1, w - 6)
    arr[:, x0 : x0 + 5] = (20, 20, 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def script_text(story: str, n_shots: int, tag: str) -> str:
    """A UniMAGE-format script with two characters, one environment, mentions and cues (``tag`` is not written:
    scripts must not name the method, or blinding breaks)."""
    del tag
    lines = [
        f"<User>: Story {story}: a baker meets an inspector.",
        "<Character1>: A young baker with blonde hair and a white apron.",
        "<Character2>: An inspector with a grey uniform and a clipboard.",
        "<Environment1>: A small sunlit patisserie full of pastries.",
        "",
    ]
    for i in range(1, n_shots + 1):
        lines.append(f"<Frame{i}>: Medium shot: the baker<Character1> in the patisserie<Environment1>, shot {i}.")
        lines.append(
            f"<Video{i}>: The inspector<Character2> looks around. <-Good morning, shot {i}.-> <-Soft piano music->."
        )
        lines.append("")
    return "\n".join(lines)


def script_json(story: str, n_shots: int, tag: str) -> dict:
    """The structured form of `script_text` (fields of `unimage script parse --json`)."""
    return {
        "user_prompt": f"Story {story}: a baker meets an inspector.",
        "generator": tag,  # never displayed: the study test checks that method names do not leak
        "characters": [
            {"index": 1, "description": "A young baker with blonde hair and a white apron."},
            {"index": 2, "description": "An inspector with a grey uniform and a clipboard."},
        ],
        "environments": [{"index": 1, "description": "A small sunlit patisserie full of pastries."}],
        "shots": [
            {
                "index": i,
                "frame": f"Medium shot: the baker<Character1> in the patisserie<Environment1>, shot {i}.",
                "video": f"The inspector<Character2> looks around. <-Good morning, shot {i}.-> <-Soft piano music->.",
            }
            for i in range(1, n_shots + 1)
        ],
    }


def write_story(
    ts_dir: Path,
    story: str,
    n_shots: int,
    color: tuple[int, int, int],
    tag: str,
    size: tuple[int, int] = (64, 48),
    as_json: bool = True,
) -> None:
    """One story folder: ``shots/shot_NN.png`` (1-based) and the script beside them."""
    d = ts_dir / story
    for i in range(1, n_shots + 1):
        write_png(d / "shots" / f"shot_{i:02d}.png", color, i, size)
    if as_json:
        (d / "script.json").write_text(json.dumps(script_json(story, n_shots, tag)), encoding="utf-8")
    (d / "script.txt").write_text(script_text(story, n_shots, tag), encoding="utf-8")


def _official_summary(v: dict[str, float]) -> dict[str, dict[str, float]]:
    """Paper-scale values -> the official per-metric summary.json tree (CSD/CIDS on 0–1, OCCM on 0–100)."""
    return {
        "csd": {"self_csd": v["csd_self"] / 100, "cross_csd": v["csd_cross"] / 100},
        "cids": {"cids_self_mean": v["cids_self"] / 100, "cids_cross_mean": v["cids_cross"] / 100, "occm": v["occm"]},
        "prompt_align": {
            "scene": v["scene"],
            "camera": v["camera"],
            "global_character_action": v["global_character_action"],
            "single_character_action": v["single_character_action"],
        },
        "aesthetic": {"aesthetic_score": v["aesthetics"]},
        "diversity": {"inception_score": v["inception"]},
    }


def arm_values(k: int) -> dict[str, float]:
    """Deterministic metric values for the k-th arm, on the paper's scales."""
    sub = {
        "scene": 3.0 + 0.1 * k,
        "camera": 2.5 + 0.1 * k,
        "global_character_action": 2.0 + 0.1 * k,
        "single_character_action": 1.5 + 0.1 * k,
    }
    return {
        "csd_self": 50.0 + 2 * k,
        "csd_cross": 30.0 + k,
        "cids_self": 55.0 + k,
        "cids_cross": 35.0 + k,
        "occm": 85.0 + k,
        "inception": 12.0 + 0.5 * k,
        "aesthetics": 4.5 + 0.1 * k,
        **sub,
        "alignment": 25.0 * sum(sub.values()) / 4,
    }


def build_runs(
    root: Path,
    sweep: str = "smoke",
    arms: tuple[str, ...] = ("full", "no_id_prompting"),
    stories: dict[str, int] | None = None,
    size: tuple[int, int] = (64, 48),
    split: str = "full",
    era: str = "A",
    backbones: str = "toy",
    nested_split: bool = True,
    evaluator_layout: bool = False,
) -> Built:
    """Write ``root/<sweep>/<arm>/`` run directories with outputs, metrics, config, provenance and status.

    ``evaluator_layout`` writes ``metrics/`` as `bench` evaluate does: ``results_row.json`` (the §3.5 row),
    ``summary.json``, ``metrics/<metric>/story_results.json`` one level deeper, and ``units/`` resume records.
    """
    stories = stories or {"01": 4, "02": 3}
    built = Built(root=root, stories=dict(stories))
    for k, arm in enumerate(arms):
        a = root / sweep / arm
        ts = a / "outputs" / "unimage" / arm / "en" / TIMESTAMP
        for sid, n in stories.items():
            write_story(ts, sid, n, color_for(k), f"{sweep}/{arm}", size)
        # an older, superseded generation that must not be shown
        write_story(a / "outputs" / "unimage" / arm / "en" / OLD_TIMESTAMP, "01", 1, (0, 0, 0), "old", size)
        built.sets[arm] = ts
        (a / "config.yaml").write_text(f"arm: {arm}\nmodel:\n  size: tiny\n", encoding="utf-8")
        prov = {
            "git_commit": "0" * 40,
            "seeds": {"generate": 1},
            "metric_era": era,
            "dataset_split": split,
            "backbones": backbones,
            "judge_model": "toy",
        }
        (a / "provenance.json").write_text(json.dumps(prov), encoding="utf-8")
        (a / "status.json").write_text(json.dumps({"train": "done", "generate": "done", "evaluate": "done"}))
        v = arm_values(k)
        summary = _official_summary(v)
        m = a / "metrics"
        m.mkdir(parents=True, exist_ok=True)
        (m / "summary.json").write_text(json.dumps({split: summary} if nested_split else summary), encoding="utf-8")
        built.summary[arm] = {
            c: v[c]
            for c in (
                "csd_self",
                "csd_cross",
                "cids_self",
                "cids_cross",
                "occm",
                "inception",
                "aesthetics",
                "alignment",
            )
        }
        per_story: dict[str, dict[str, float]] = {}
        csd_res, cids_res = {}, {}
        for j, sid in enumerate(stories):
            cs, ci = v["csd_self"] + j, v["cids_self"] - j
            csd_res[sid] = {"run": arm, "metric": "csd", "status": "ok", "metrics": {"self_csd": cs / 100}}
            cids_res[sid] = {
                "run": arm,
                "metric": "cids",
                "status": "ok",
                "metrics": {"cids_self_mean": ci / 100, "occm": v["occm"] - j},
            }
            per_story[sid] = {"csd_self": cs, "cids_self": ci, "occm": v["occm"] - j}
        per_metric = m / "metrics" if evaluator_layout else m
        for name, res in (("csd", csd_res), ("cids", cids_res)):
            (per_metric / name).mkdir(parents=True, exist_ok=True)
            (per_metric / name / "story_results.json").write_text(json.dumps(res), encoding="utf-8")
            if evaluator_layout:  # resume records hold the same values; a reader must not count them twice
                (per_metric / name / "units").mkdir(exist_ok=True)
                for sid, rec in res.items():
                    bogus = {**rec, "metrics": dict.fromkeys(rec["metrics"], -1.0)}
                    (per_metric / name / "units" / f"{sid}.json").write_text(json.dumps(bogus), encoding="utf-8")
        if evaluator_layout:
            row = {
                **built.summary[arm],
                "copy_paste": None,
                "split": split,
                "era": era,
                "backbones": backbones,
                "judge": "toy",
                "comparable_with_published": backbones != "toy",
                "method": "unimage",
                "n_stories": 2,
            }
            row["inception"] += 1000.0  # differs from summary.json: the row must win
            built.summary[arm]["inception"] = row["inception"]
            (m / "results_row.json").write_text(json.dumps(row), encoding="utf-8")
            (m / "manifest.json").write_text(json.dumps({sid: {"csd": "ok"} for sid in stories}), encoding="utf-8")
        built.story_values[arm] = per_story
    return built


def build_outputs(
    root: Path,
    methods: tuple[str, ...] = ("StoryDiffusion", "SEED-Story"),
    stories: dict[str, int] | None = None,
    mode: str = "base",
    lang: str = "en",
    size: tuple[int, int] = (64, 48),
) -> Built:
    """Write a plain ViStoryBench outputs folder: ``root/<method>/<mode>/<lang>/<timestamp>/<story>/shots/``."""
    stories = stories or {"01": 4, "02": 3}
    built = Built(root=root, stories=dict(stories))
    for k, method in enumerate(methods):
        ts = root / method / mode / lang / TIMESTAMP
        for sid, n in stories.items():
            write_story(ts, sid, n, color_for(k + 3), method, size, as_json=(k % 2 == 0))
        built.sets[f"{method}/{mode}"] = ts
    return built


def build_benchmark(root: Path, n_methods: int = 8, n_shots: int = 30, size: tuple[int, int] = (512, 512)) -> Built:
    """The benchmark case: one 30-shot story from 8 methods at a realistic image size."""
    methods = tuple(f"method{i}" for i in range(n_methods))
    return build_outputs(root / "bench_outputs", methods=methods, stories={"01": n_shots}, size=size)
