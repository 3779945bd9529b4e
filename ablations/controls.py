"""Positive controls of a sweep: every metric in use scored on the exact keyframes and on corrupted copies.

For each corruption named in the sweep's ``controls:`` list (`unimage.data.synthcontrols`), the SynthStory eval
set's exact keyframes are corrupted and written in the ViStoryBench output layout, then scored by the same
evaluator settings as the arms (the reference arm's ``evaluate`` section: toy or official backbones, era, judge) and
by the oracle. The clean keyframes are scored the same way. Written to ``<sweep>/controls/``:

- ``controls_long.csv``: ``corruption, story, metric, family, higher_is_better, clean, corrupted``;
- ``expected.csv``: ``corruption, metric, expected, target`` (`unimage.data.synthcontrols.EXPECTED`, with each
  ViStoryBench column prefixed by the backbone family in use);
- ``outputs/<corruption>/...`` and ``metrics/<corruption>/`` (the evaluator's folders, resumable per unit);
- ``status.json``: the hash of what produced the files; a rerun with the same hash does nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ablations.config import ArmSpec, SweepSpec, config_hash
from ablations.longform import LongRow, bench_rows, oracle_rows, story_dirs
from ablations.status import atomic_write_json, atomic_write_text
from formats.vistory import OutputWriter

CLEAN = "clean"
_RUN = ("base", "en", "20000101_000000")  # <mode>/<lang>/<timestamp> of every control output folder


def controls_dir(root: Path) -> Path:
    """``<sweep>/controls/``."""
    return root / "controls"


def run_controls(sweep: SweepSpec, root: Path, reference: ArmSpec, data: Path, progress: bool = False) -> bool:
    """Write the controls of ``sweep`` (module docstring); returns False when they were already done (same hash).

    Args:
        sweep: the sweep (its ``controls`` list).
        root: ``<runs>/<sweep>/``.
        reference: the arm whose ``evaluate`` settings score the controls.
        data: the SynthStory folder of the data stage (``eval/ViStory``, ``eval/ground_truth``).
    """
    from bench.backbones import load_backbones
    from bench.evaluate import EvalConfig, evaluate
    from unimage.data.synthcontrols import CORRUPTIONS, EXPECTED, corrupt_story
    from unimage.data.synthspec import SynthStoryConfig
    from unimage.data.synthstory import GT_OUTPUT_RUN, encode_image, story_specs

    if not sweep.controls:
        return False
    unknown = [c for c in sweep.controls if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"{sweep.path}: controls: unknown corruption(s) {unknown}; choose from {sorted(CORRUPTIONS)}")
    out = controls_dir(root)
    ev = reference.config["evaluate"]
    synth = dict(reference.config["data"]["synthstory"])
    digest = config_hash({"controls": sweep.controls, "evaluate": ev, "data": synth, "version": 1})
    status = out / "status.json"
    if status.is_file() and json.loads(status.read_text(encoding="utf-8")).get("hash") == digest:
        return False
    for key in ("train_shots", "text_shots", "eval_shots"):
        if key in synth:
            synth[key] = tuple(synth[key])
    specs = story_specs(SynthStoryConfig(**synth))["eval"]
    dataset, gt_dir = data / "eval" / "ViStory", data / "eval" / "ground_truth"

    def score(name: str, outputs: Path, method: str, mode: str) -> dict[tuple[str, str], LongRow]:
        cfg = EvalConfig(
            dataset=dataset,
            outputs=outputs,
            method=method,
            mode=mode,
            lang="en",
            split=ev["split"],
            era=ev["era"],
            metrics=tuple(ev["metrics"]),
            timestamp=_RUN[2],
            out=out / "metrics" / name,
            batch_size=int(ev["batch_size"]),
            chunk_images=int(ev["chunk_images"]),
            progress=progress,
        )
        report = evaluate(cfg, backbones, judge)
        if report.failed:
            sid, metric, err = report.failed[0]
            raise RuntimeError(f"controls/{name}: {len(report.failed)} units failed, e.g. {sid}/{metric}: {err}")
        rows = bench_rows(out / "metrics" / name, ev["backbones"])
        rows += oracle_rows(gt_dir, story_dirs(outputs / method / mode / "en" / _RUN[2]))
        return {(r.story, r.metric): r for r in rows}

    from ablations.stages import judge_for

    backbones = load_backbones(ev["backbones"], weights_dir=ev.get("weights"), device="cpu", era=ev["era"])
    judge = judge_for(ev, root) if "prompt_align" in ev["metrics"] else None
    gt_outputs = data / "eval" / "outputs"
    clean = score(CLEAN, gt_outputs, GT_OUTPUT_RUN[0], GT_OUTPUT_RUN[1])
    long_rows: list[tuple[str, LongRow, float | None]] = []
    for corruption in sweep.controls:
        outputs = out / "outputs"
        writer = OutputWriter(outputs, corruption, *_RUN)
        for story in specs:
            for index, image in corrupt_story(story, corruption).items():
                if not writer.shot_path(story.story_id, index).is_file():
                    writer.write_shot(story.story_id, index, encode_image(image))
        bad = score(corruption, outputs, corruption, _RUN[0])
        for unit, row in sorted(clean.items()):
            other = bad.get(unit)
            long_rows.append((corruption, row, None if other is None else other.value))
    family = ev["backbones"]
    _write_csv(
        out / "controls_long.csv",
        ("corruption", "story", "metric", "family", "higher_is_better", "clean", "corrupted"),
        [(c, r.story, r.metric, r.family, int(r.higher_is_better), _fmt(r.value), _fmt(v)) for c, r, v in long_rows],
    )
    _write_csv(
        out / "expected.csv",
        ("corruption", "metric", "expected", "target"),
        [
            (c, m if m.startswith("oracle.") else f"{family}.{m}", d, int(t))
            for c, m, d, t in EXPECTED
            if c in sweep.controls
        ],
    )
    atomic_write_json(status, {"hash": digest, "controls": sweep.controls})
    return True


def _fmt(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
