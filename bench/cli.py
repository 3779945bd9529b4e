"""``unimage bench ...``: thin command line over :func:`bench.evaluate.evaluate`.

    unimage bench evaluate --dataset ROOT --outputs DIR --method M [--mode X] [--lang en] [--split full|lite]
        [--era A] [--metrics csd cids ...] [--backbones official|toy] [--weights DIR] [--judge toy|openai]
        [--rubrics DIR] [--fix QUIRK ...] [--out DIR]

Heavy imports (torch, the backbones) happen inside the command function, so ``unimage --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

METRIC_CHOICES = ("csd", "cids", "occm", "prompt_align", "aesthetic", "diversity")
#: `bench.quirks.QUIRKS` names, repeated here so `unimage --help` imports nothing heavy (a test keeps them equal).
QUIRK_NAMES = (
    "gpt-eval-matching",
    "gpt-eval-crops",
    "drop-empty-boxes-first",
    "align-face-rows",
    "arcface-threshold-reset",
    "unrounded-story-means",
    "occm-empty-story-nan",
    "cids-all-ref-formats",
    "copy-paste-mirror-no-face",
    "inception-split-only",
    "zero-based-shift",
    "latest-nested-run",
    "first-duplicate-shot",
    "any-shot-folder",
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    ev = sub.add_parser("evaluate", help="score one method's generated images with the ViStoryBench metrics")
    ev.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="dataset root: <ROOT>/<NN>/story.json (the official 'ViStory' folder)",
    )
    ev.add_argument(
        "--outputs",
        type=Path,
        required=True,
        help="outputs root: <DIR>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story>/shots/",
    )
    ev.add_argument("--method", required=True, help="method folder under --outputs")
    ev.add_argument("--mode", default=None, help="mode folder (default: the method's only mode)")
    ev.add_argument(
        "--lang",
        default="en",
        choices=("en", "ch"),
        help="which language's outputs to read (texts are English, as officially)",
    )
    ev.add_argument("--split", default="full", choices=("full", "lite"))
    ev.add_argument(
        "--era", default="A", choices=("A", "B", "C"), help="metric conventions; A = the paper's Table 1 (default)"
    )
    ev.add_argument(
        "--metrics",
        nargs="+",
        default=list(METRIC_CHOICES),
        choices=METRIC_CHOICES,
        metavar="METRIC",
        help=f"subset of {METRIC_CHOICES}",
    )
    ev.add_argument("--timestamp", default=None, help="outputs run folder YYYYMMDD_HHMMSS (default: the latest)")
    ev.add_argument(
        "--pairing",
        default=None,
        choices=("index", "positional"),
        help="image-shot pairing (default: the era's official one, positional for A, by file number for B/C; another choice marks the row non-comparable)",
    )
    ev.add_argument(
        "--backbones",
        default="toy",
        choices=("official", "toy"),
        help="toy = weight-free, NOT comparable with published numbers",
    )
    ev.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="ViStoryBench weight bundle directory (needed for --backbones official)",
    )
    ev.add_argument(
        "--judge",
        default="toy",
        choices=("toy", "openai"),
        help="prompt-alignment judge (openai = OpenAI-compatible API)",
    )
    ev.add_argument("--judge-model", default=None, help="judge model id (default: env MODEL_ID, else gpt-4.1)")
    ev.add_argument("--judge-base-url", default=None, help="judge base URL (default: env BASE_URL)")
    ev.add_argument(
        "--judge-cache",
        type=Path,
        default=None,
        help="judge answer cache directory (default: <results root>/judge_cache)",
    )
    ev.add_argument(
        "--rubrics",
        type=Path,
        default=None,
        help="the official rubric folder (<ViStoryBench checkout>/vistorybench/bench/prompt_align/user_prompts); "
        "default: found beside --weights, else this project's own texts and Alignment is marked NOT comparable",
    )
    ev.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="QUIRK",
        choices=QUIRK_NAMES,
        help="replace an official quirk by the corrected behaviour (repeatable; marks the row non-comparable): "
        + ", ".join(QUIRK_NAMES),
    )
    ev.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: <outputs>/../bench_results/<method>/<mode>/<lang>/<ts>-era<E>-<split>)",
    )
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--chunk-images", type=int, default=64, help="images per resume chunk")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``bench evaluate``; prints the results-table row as JSON and returns the exit code."""
    from bench.backbones import BackboneError, load_backbones
    from bench.dataset import DatasetError
    from bench.evaluate import EvalConfig, evaluate
    from bench.judge.openai import JudgeError
    from bench.outputs import OutputsError

    try:
        cfg = EvalConfig(
            dataset=args.dataset,
            outputs=args.outputs,
            method=args.method,
            mode=args.mode,
            lang=args.lang,
            split=args.split,
            era=args.era,
            metrics=tuple(args.metrics),
            timestamp=args.timestamp,
            pairing=args.pairing,
            out=args.out,
            batch_size=args.batch_size,
            chunk_images=args.chunk_images,
            progress=not args.no_progress,
            fixes=tuple(args.fix),
        )
        backbones = load_backbones(args.backbones, weights_dir=args.weights, device=args.device, era=args.era)
        judge = make_judge(args) if "prompt_align" in cfg.metrics else None
        report = evaluate(cfg, backbones, judge)
    except (DatasetError, OutputsError, BackboneError, JudgeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for reason in report.row.get("non_comparable_reasons", []):
        print(f"note: NOT comparable with published numbers: {reason}", file=sys.stderr)
    from bench.results import clean

    print(json.dumps(clean({"out": str(report.out), **report.row}), indent=2, default=str))
    if report.failed:
        print(
            f"{len(report.failed)} (story, metric) units failed; see {report.out}/metrics/*/story_results.json",
            file=sys.stderr,
        )
        return 1
    return 0


def make_judge(args: argparse.Namespace) -> Any:
    """Build the judge named by ``--judge``."""
    if args.judge == "toy":
        from bench.judge.toy import ToyJudge

        return ToyJudge()
    from bench.judge import make_judge as make

    # Default cache beside the results, so a rerun (or a resumed run) asks the API nothing twice.
    cache_dir = args.judge_cache or (args.out or args.outputs.parent / "bench_results") / "judge_cache"
    if args.rubrics is None:
        from bench.judge.openai import find_rubrics

        args.rubrics = find_rubrics(args.weights)
        if args.rubrics is not None:
            print(f"note: official rubrics found at {args.rubrics}", file=sys.stderr)
    return make(
        "openai",
        model=args.judge_model,
        base_url=args.judge_base_url,
        era=args.era,
        rubrics_dir=args.rubrics,
        cache_dir=cache_dir,
    )
