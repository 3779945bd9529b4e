"""``unimage bench ...``: thin command line over :func:`bench.evaluate.evaluate`.

    unimage bench evaluate --dataset ROOT --outputs DIR --method M [--mode X] [--lang en] [--split full|lite]
        [--era A] [--metrics csd cids ...] [--backbones official|toy] [--weights DIR] [--judge toy|openai]
        [--rubrics DIR] [--fix QUIRK ...] [--out DIR]

The options are generated from ``bench.evaluate.EvalConfig`` and :class:`Scoring` (``cliargs``): types, defaults
and help texts are the dataclasses' fields and docstrings. ``--fix`` is the old spelling of ``--fixes`` (both
repeatable); ``--no-progress`` is the negative of ``--progress``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cliargs import add_dataclass_arguments, given_values


@dataclass(frozen=True)
class Scoring:
    """What scores the outputs: the backbones and the prompt-alignment judge, by name.

    Not ``EvalConfig`` fields because :func:`bench.evaluate.evaluate` takes them as built objects (``Backbones``,
    ``Judge``); the command builds them from these names.

    Attributes:
        backbones: ``official`` = the ViStoryBench networks from ``--weights``; ``toy`` = weight-free, NOT comparable
            with published numbers.
        weights: ViStoryBench weight bundle directory (needed for ``--backbones official``).
        device: Device the backbones run on.
        judge: Prompt-alignment judge (``openai`` = an OpenAI-compatible API).
        judge_model: Judge model id (None = env MODEL_ID, else gpt-4.1).
        judge_base_url: Judge base URL (None = env BASE_URL).
        judge_cache: Judge answer cache directory (None = ``<results root>/judge_cache``).
        rubrics: The official rubric folder (``<ViStoryBench checkout>/vistorybench/bench/prompt_align/user_prompts``);
            None = found beside ``--weights``, else this project's own texts and Alignment is marked NOT comparable.
    """

    backbones: Literal["official", "toy"] = "toy"
    weights: Path | None = None
    device: str = "cpu"
    judge: Literal["toy", "openai"] = "toy"
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_cache: Path | None = None
    rubrics: Path | None = None


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` subcommands to ``parser``; the options are generated from ``EvalConfig`` and `Scoring`."""
    # EvalConfig lives beside the evaluator, so building this parser imports torch (``bench evaluate --help`` too).
    from bench.evaluate import METRICS, EvalConfig
    from bench.quirks import QUIRKS

    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    ev = sub.add_parser("evaluate", help="score one method's generated images with the ViStoryBench metrics")
    options: dict[str, dict[str, Any]] = {
        "lang": {"choices": ("en", "ch")},
        "metrics": {"choices": METRICS, "metavar": "METRIC"},
        "fixes": {"choices": tuple(QUIRKS), "metavar": "QUIRK"},
    }
    add_dataclass_arguments(
        ev.add_argument_group("evaluation (EvalConfig)"), EvalConfig, aliases={"fixes": ["--fix"]}, options=options
    )
    add_dataclass_arguments(ev.add_argument_group("scoring"), Scoring)
    ev.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``bench evaluate``; prints the results-table row as JSON and returns the exit code."""
    from bench.backbones import BackboneError, load_backbones
    from bench.dataset import DatasetError
    from bench.evaluate import EvalConfig, evaluate
    from bench.judge.openai import JudgeError
    from bench.outputs import OutputsError

    try:
        cfg = EvalConfig(**given_values(args, EvalConfig))
        scoring = Scoring(**given_values(args, Scoring))
        backbones = load_backbones(scoring.backbones, weights_dir=scoring.weights, device=scoring.device, era=cfg.era)
        judge = make_judge(scoring, cfg) if "prompt_align" in cfg.metrics else None
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


def make_judge(scoring: Scoring, cfg: Any) -> Any:
    """Build the judge named by ``--judge`` for the evaluation ``cfg`` (an ``EvalConfig``)."""
    if scoring.judge == "toy":
        from bench.judge.toy import ToyJudge

        return ToyJudge()
    from bench.judge import make_judge as make

    # Default cache beside the results, so a rerun (or a resumed run) asks the API nothing twice.
    cache_dir = scoring.judge_cache or (cfg.out or Path(cfg.outputs).parent / "bench_results") / "judge_cache"
    rubrics = scoring.rubrics
    if rubrics is None:
        from bench.judge.openai import find_rubrics

        rubrics = find_rubrics(scoring.weights)
        if rubrics is not None:
            print(f"note: official rubrics found at {rubrics}", file=sys.stderr)
    return make(
        "openai",
        model=scoring.judge_model,
        base_url=scoring.judge_base_url,
        era=cfg.era,
        rubrics_dir=rubrics,
        cache_dir=cache_dir,
    )
