"""``python -m unimage.gpucheck --out DIR``: run the GPU proof (or its tiny CPU version) and write its record.

Writes ``DIR/gpucheck.json`` (schema ``unimage.gpucheck/1``) and ``DIR/gpucheck.md`` after every step; scratch files
(the FSDP step's sharded checkpoint and rank logs) go to ``DIR/work/``. Exit code 0 when every step is ``ok`` or
``skipped``, 1 when a step failed a check, raised or timed out, 2 for bad arguments, 3 when the watchdog ended the
run (the JSON then holds everything finished before it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["STEPS", "build_parser", "main", "run"]

# name → (title, "module:function"), in run order.
STEPS: dict[str, tuple[str, str]] = {
    "parity": ("attention kernel parity vs float64", "unimage.gpucheck.parity:run_parity"),
    "train": ("training step tokens/s and MFU", "unimage.gpucheck.train_step:run_train"),
    "inference": ("prefill, KV-cached decoding, keyframe CFG step", "unimage.gpucheck.inference:run_inference"),
    "fsdp": ("FSDP sharded step, checkpoint and resume", "unimage.gpucheck.fsdp:run_fsdp"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    p = argparse.ArgumentParser(prog="python -m unimage.gpucheck", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (gpucheck.json, gpucheck.md, work/)")
    p.add_argument("--scale", choices=["auto", "7b", "tiny"], default="auto", help="auto: 7b on CUDA, tiny on CPU")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    p.add_argument(
        "--backend",
        choices=["auto", "sdpa", "flex", "flash"],
        default="auto",
        help="attention backend of the train and inference steps (parity always tries all three)",
    )
    p.add_argument("--box-factor", type=float, default=1.0, help="multiply every step's time box")
    p.add_argument("--budget", type=float, default=None, help="whole-run seconds before the watchdog stops it")
    return p


def _load(target: str) -> Any:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def run(args: argparse.Namespace, exit_fn: Any = None) -> dict[str, Any]:
    """Run the selected steps; return the document that was written to ``gpucheck.json``.

    Raises:
        ValueError: Unknown step, unusable device, or the 7b scale without CUDA.
    """
    import os

    import torch

    from unimage.data.atomic import atomic_write_text
    from unimage.gpucheck.env import collect_env
    from unimage.gpucheck.report import summary_markdown
    from unimage.gpucheck.runner import run_steps
    from unimage.gpucheck.scale import get_scale

    selected = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(selected) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}; choose from {list(STEPS)}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} but CUDA is not available here")
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"--device must be cuda[:N] or cpu, got {device}")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    name = args.scale if args.scale != "auto" else ("7b" if device.type == "cuda" else "tiny")
    if name == "7b" and device.type != "cuda":
        raise ValueError("--scale 7b needs a CUDA device (real 7B layer shapes); use --scale tiny on the CPU")
    scale = get_scale(name, args.box_factor)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    from unimage.model.attention import resolve_backend

    resolve_backend(args.backend, device)  # a forced backend that cannot run here is refused before any step
    budget = args.budget if args.budget is not None else scale.total_box + 20.0
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def write(doc: dict[str, Any]) -> None:
        atomic_write_text(out / "gpucheck.json", json.dumps(doc, indent=2, default=str) + "\n")
        atomic_write_text(out / "gpucheck.md", summary_markdown(doc))

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    steps = {n: (title, _load(target)) for n, (title, target) in STEPS.items()}
    return run_steps(
        steps,
        selected,
        scale,
        device,
        dtype,
        collect_env(device),
        out,
        write,
        budget,
        log=log,
        exit_fn=exit_fn or os._exit,
        backend=args.backend,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        doc = run(args)
    except ValueError as exc:
        parser.error(str(exc))
    print(args.out / "gpucheck.json")
    return 0 if doc["ok"] else 1
