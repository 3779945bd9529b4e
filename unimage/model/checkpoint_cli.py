"""``unimage checkpoint``: check a BAGEL-layout directory (headers only) or write a random tiny one.

Thin wrapper over ``unimage.model.checkpoint``:

    unimage checkpoint check /path/to/BAGEL-7B-MoT          # key table + shapes, no weights read
    unimage checkpoint write-tiny runs/tiny_bagel --seed 0  # random tiny BAGEL-layout dir for tests and demos
"""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` and ``write-tiny`` subcommands."""
    sub = parser.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a BAGEL-layout directory against the key table (no weights loaded)")
    check.add_argument("path", help="directory (or a Hugging Face repo id already in the local cache)")
    check.add_argument("--allow-pickle", action="store_true", help="accept ema.bin / ema.pt when no safetensors exist")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_check)
    tiny = sub.add_parser("write-tiny", help="write a random tiny BAGEL-layout directory")
    tiny.add_argument("path", help="target directory (created)")
    tiny.add_argument("--size", choices=["tiny", "small"], default="tiny", help="named model size (default: tiny)")
    tiny.add_argument("--seed", type=int, default=0, help="random seed of the weights (default: 0)")
    tiny.set_defaults(func=_write_tiny)


def _check(args: argparse.Namespace) -> int:
    from unimage.model.checkpoint import check_bagel_dir

    try:
        report = check_bagel_dir(args.path, allow_pickle=args.allow_pickle)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    cfg = report.config
    summary = {
        "path": str(args.path),
        "tensors": report.num_tensors,
        "numbers": report.num_numbers,
        "dtypes": list(report.dtypes),
        "ae_tensors": report.ae_tensors,
        "recomputed_pos_tables": list(report.missing_pos_tables),
        "llm": {"layers": cfg.llm.num_hidden_layers, "hidden": cfg.llm.hidden_size, "vocab": cfg.llm.vocab_size},
        "vit_layers": cfg.vit.num_hidden_layers,
        "max_latent_size": cfg.max_latent_size,
        "vit_max_num_patch_per_side": cfg.vit_max_num_patch_per_side,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"OK {args.path}: {report.num_tensors} tensors, {report.num_numbers:,} numbers ({', '.join(report.dtypes)}); "
            f"LLM {cfg.llm.num_hidden_layers} layers × {cfg.llm.hidden_size}, ViT {cfg.vit.num_hidden_layers} layers, "
            f"latent table {cfg.max_latent_size}², ae.safetensors {report.ae_tensors} tensors"
        )
    return 0


def _write_tiny(args: argparse.Namespace) -> int:
    from unimage.model.checkpoint import write_tiny_bagel_dir

    path = write_tiny_bagel_dir(args.path, size=args.size, seed=args.seed)
    print(f"wrote {path}")
    return 0
