"""Keyframe learning curve: render a few held-out SynthStory stories from a training run's latest checkpoint and
score them with the oracle metrics, one row per training step.

Why: the question "has the model learnt to draw the figures yet?" (issue 11: synth-long must reach oracle identity
>= 50% before the ID-P question can be asked of images) is only answered by rendering keyframes; the training losses
(flow MSE falls from 1.95 to 1.77 while the keyframes stay blocks of colour) do not answer it. Run beside training::

    python -m unimage.eval.curve RUN_DIR DATA --stories 4 --watch 120

Each probe exports ``<run>/checkpoints/last.ckpt`` (EMA weights, as the run's own export), renders the first
``stories`` eval stories with a fixed noise seed (so successive rows differ by the weights only), scores them with
`unimage.data.synthoracle`, and appends ``step, <metrics>, stories, shots, seconds`` to ``<run>/keyframe_curve.csv``
(rewritten atomically). A step already in the CSV is not probed again. The keyframe options of ``SamplingConfig``
change the sampler as a sweep's ``generate.sampling`` does (``--cfg-text-scale 1.0`` renders as ``synth-long.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from cliargs import add_dataclass_arguments, given_values
from unimage.data.atomic import atomic_write_text
from unimage.data.synthoracle import METRICS, score_story_dir

__all__ = ["COLUMNS", "CURVE_FILE", "probe", "read_curve"]

CURVE_FILE = "keyframe_curve.csv"
#: The ``SamplingConfig`` fields a probe sets itself (its own arguments and the ground truth's keyframe size).
PROBE_FIELDS = ("seed", "num_timesteps", "image_height", "image_width")
COLUMNS: tuple[str, ...] = ("step", *METRICS, "stories", "shots", "seconds")


def read_curve(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of ``<run_dir>/keyframe_curve.csv`` ([] when there is none yet)."""
    path = Path(run_dir) / CURVE_FILE
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _write_curve(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: int(r["step"])):
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    atomic_write_text(run_dir / CURVE_FILE, buf.getvalue())


def _score(data: Path, run_dir: Path, ids: Sequence[str]) -> tuple[dict[str, float | None], int]:
    """Mean oracle metric over stories (each story's rate weighted by its items), and the number of shots scored."""
    sums = dict.fromkeys(METRICS, 0.0)
    counts = dict.fromkeys(METRICS, 0)
    shots = 0
    for sid in ids:
        score = score_story_dir(data / "eval" / "ground_truth" / f"{sid}.json", run_dir / sid / "shots")
        shots += score.counts["count_acc"]
        for m in METRICS:
            value = score.values[m]
            if value is not None:
                sums[m] += value * score.counts[m]
                counts[m] += score.counts[m]
    return {m: (sums[m] / counts[m] if counts[m] else None) for m in METRICS}, shots


def probe(
    run_dir: str | Path,
    data: str | Path,
    *,
    stories: int = 4,
    num_timesteps: int = 25,
    seed: int = 0,
    device: str | None = None,
    keep: bool = False,
    sampling: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Probe the run's ``last.ckpt`` once; returns the new row, or None when its step is already in the curve.

    Args:
        run_dir: A training run directory (``unimage fit --run_dir``).
        data: The SynthStory folder the run trains on (its ``eval/`` is held out).
        stories: How many eval stories to render (the first ones, in id order).
        num_timesteps: Euler steps per keyframe.
        seed: Noise seed (fixed, so rows differ by the weights only).
        device: Torch device for rendering (default: CPU).
        keep: Keep the export and keyframes under ``<run>/curve/<step>/`` (default: deleted after scoring).
        sampling: More ``SamplingConfig`` fields (e.g. ``{"cfg_text_scale": 1.0}``); seed, steps and size are the
            arguments above.

    Raises:
        FileNotFoundError: No ``checkpoints/last.ckpt`` yet, or ``data`` is not a SynthStory folder with an eval set.
        ValueError: A bad ``sampling`` field (checked before anything is rendered).
    """
    import torch

    from unimage.infer.config import SamplingConfig
    from unimage.infer.vistory import generate_vistory
    from unimage.train.export import export_checkpoint

    run, data = Path(run_dir), Path(data)
    clash = sorted(set(sampling or {}) & set(PROBE_FIELDS))
    if clash:
        raise ValueError(f"sampling: {clash} are set by the probe's own arguments (seed, num_timesteps, image size)")
    gt_dir = data / "eval" / "ground_truth"
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{data}: not a SynthStory folder (no eval/ground_truth/)")
    ids = sorted(p.stem for p in gt_dir.glob("*.json"))[:stories]
    size = _image_size(gt_dir / f"{ids[0]}.json")
    # built before the checkpoint is touched, so a bad field fails before anything is exported
    config = SamplingConfig.from_dict(
        {**(sampling or {}), "seed": seed, "num_timesteps": num_timesteps, "image_height": size, "image_width": size}
    )
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint yet")
    # mmap: only the step is read here (the tensors stay on disk until the export loads the file)
    step = int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    rows = read_curve(run)
    if any(int(r["step"]) == step for r in rows):
        return None
    t0 = time.perf_counter()
    work = run / "curve" / str(step)
    export = export_checkpoint(ckpt, work / "export")
    rep = generate_vistory(
        data / "eval" / "ViStory",
        export,
        method="curve",
        mode=str(step),
        outputs=work / "outputs",
        config=config,
        stories=ids,
        progress=False,
        device=device,
        scripts=data / "eval" / "scripts",
    )
    if rep.failed:
        raise RuntimeError(
            f"{run}: step {step}: {len(rep.failed)} stories failed, e.g. {next(iter(rep.failed.items()))}"
        )
    values, shots = _score(data, rep.run_dir, ids)
    row: dict[str, Any] = {"step": step, **values, "stories": len(ids), "shots": shots}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    _write_curve(run, [*rows, row])
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


def _image_size(gt_path: Path) -> int:
    width, height = json.loads(gt_path.read_text(encoding="utf-8"))["image_size"]
    if width != height:
        raise ValueError(f"{gt_path}: keyframes are {width}x{height}; the curve renders square keyframes")
    return int(width)


def _complete(run: Path) -> bool:
    status = run / "train_status.json"
    return status.is_file() and bool(json.loads(status.read_text(encoding="utf-8")).get("complete"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unimage.eval.curve RUN DATA [--stories N] [--watch SECONDS]``."""
    parser = argparse.ArgumentParser(prog="python -m unimage.eval.curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="training run directory (holds checkpoints/last.ckpt)")
    parser.add_argument("data", help="the SynthStory folder the run trains on")
    parser.add_argument("--stories", type=int, default=4, help="eval stories rendered per probe (default 4)")
    parser.add_argument("--num-timesteps", type=int, default=25, help="Euler steps per keyframe (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed, fixed across probes (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default cpu)")
    parser.add_argument("--keep", action="store_true", help="keep each probe's export and keyframes")
    from unimage.infer.cli import SAMPLING_OPTIONS, TEXT_FIELDS
    from unimage.infer.config import SamplingConfig

    keyframe = [f.name for f in fields(SamplingConfig) if f.name not in (*TEXT_FIELDS, *PROBE_FIELDS)]
    group = parser.add_argument_group("keyframe sampling (SamplingConfig; defaults: BAGEL's)")
    add_dataclass_arguments(group, SamplingConfig, only=keyframe, options=SAMPLING_OPTIONS)
    parser.add_argument(
        "--watch", type=float, default=0.0, help="probe every SECONDS until the run is complete (default: once)"
    )
    args = parser.parse_args(argv)
    sampling = given_values(args, SamplingConfig)
    run = Path(args.run_dir)
    while True:
        try:
            row = probe(
                run,
                args.data,
                stories=args.stories,
                num_timesteps=args.num_timesteps,
                seed=args.seed,
                device=args.device,
                keep=args.keep,
                sampling=sampling,
            )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except FileNotFoundError as err:
            if not args.watch or not str(err).endswith("no checkpoint yet"):
                print(f"error: {err}", file=sys.stderr)
                return 2
            row = None
        if row is not None:
            shown = " ".join(f"{m}={row[m]:.3f}" for m in METRICS if row[m] is not None)
            print(f"step {row['step']}: {shown} ({row['shots']} shots, {row['seconds']} s)", flush=True)
        if not args.watch or (_complete(run) and row is None):
            return 0
        time.sleep(args.watch)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
