"""``unimage synth``: write a SynthStory set (training manifests + ViStoryBench-layout eval set).

A thin wrapper over `unimage.data.synthstory.generate`; see that module for the output layout.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` arguments to ``parser``."""
    parser.add_argument("--out", required=True, help="output folder (created; existing complete files are kept)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--train-stories", type=int, default=64, help="interleaved training stories (default 64)")
    parser.add_argument(
        "--text-stories", type=int, default=-1, help="text-only scripts (default: as many as --train-stories)"
    )
    parser.add_argument("--pairs", type=int, default=-1, help="text-image pairs (default: as many as --train-stories)")
    parser.add_argument(
        "--eval-stories", type=int, default=8, help="ViStoryBench-layout evaluation stories (default 8)"
    )
    parser.add_argument("--image-size", type=int, default=128, help="keyframe side in pixels (default 128)")
    parser.add_argument("--ref-size", type=int, default=0, help="reference image side (default: --image-size)")
    parser.add_argument("--refs-per-character", type=int, default=1, help="reference images per character (default 1)")
    parser.add_argument(
        "--ref-format",
        choices=("png", "jpg"),
        default="jpg",
        help="reference image format (default jpg, which the official CIDS code reads; png is lossless)",
    )
    parser.add_argument("--max-characters", type=int, default=3, help="largest cast of a story (default 3, at most 10)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the set; exit code 0 on success, 2 on a bad argument or a conflicting output folder."""
    from unimage.data.synthstory import SynthStoryConfig, generate

    try:
        config = SynthStoryConfig(
            seed=args.seed,
            train_stories=args.train_stories,
            text_stories=args.text_stories,
            pairs=args.pairs,
            eval_stories=args.eval_stories,
            image_size=args.image_size,
            ref_size=args.ref_size,
            refs_per_character=args.refs_per_character,
            ref_format=args.ref_format,
            max_characters=args.max_characters,
        )
        report = generate(args.out, config)
    except (ValueError, FileExistsError) as exc:
        print(f"unimage synth: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"SynthStory -> {report.out_dir}: {report.stories} stories, {report.keyframes} keyframes; "
        f"{report.files_written} files written, {report.files_skipped} already complete; {report.seconds:.2f} s"
    )
    return 0
