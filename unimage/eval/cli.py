"""``python -m unimage.eval CHECKPOINT DATA --csv long.csv [--col arm=full ...]``: run ``diagnose`` and merge its rows
into a long CSV (or print them). A thin wrapper: everything is in ``unimage.eval.diagnostics``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, diagnose, write or print the rows; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m unimage.eval", description=__doc__)
    parser.add_argument("checkpoint", help="BAGEL-layout directory, or a training run directory holding one")
    parser.add_argument("data", help="the SynthStory folder (its eval/ is the held-out set)")
    parser.add_argument("--csv", help="merge the rows into this long CSV (default: print them)")
    parser.add_argument("--col", action="append", default=[], metavar="KEY=VALUE", help="constant CSV column")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-stories", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="noise seed: keep it equal across arms and seeds")
    parser.add_argument("--structure-stories", type=int, default=2, help="stories the Director continues (0: none)")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.col:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--col expects KEY=VALUE, got {item!r}")
        extra[key] = value

    from unimage.eval.diagnostics import diagnose, write_rows

    rows = diagnose(
        args.checkpoint,
        args.data,
        device=args.device,
        max_stories=args.max_stories,
        seed=args.seed,
        structure=("continue",) if args.structure_stories else (),
        structure_stories=args.structure_stories or None,
    )
    if args.csv:
        write_rows(rows, args.csv, **extra)
        print(f"{len(rows)} rows merged into {args.csv}")
    else:
        for r in rows:
            print(f"{r.story}\t{r.metric}\t{r.value:.6g}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
