"""The `unimage` command: a thin dispatcher over library functions.

Each subcommand lives in its own module, exposing ``configure(parser)`` (adds arguments) and setting
``parser.set_defaults(func=...)`` to a function ``func(args) -> int``. Only the chosen subcommand's module is
imported, so ``unimage --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (one-line help, module that defines `configure(parser)`)
COMMANDS: dict[str, tuple[str, str]] = {
    "script": ("parse, validate and format UniMAGE scripts", "unimage.script.cli"),
}


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """Build the top-level parser; only the ``selected`` subcommand's module is imported and configured."""
    parser = argparse.ArgumentParser(
        prog="unimage",
        description="UniMAGE harness: script format, model, training, inference, ViStoryBench, sweeps, reports, dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, module_name) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module_name).configure(p)
    return parser


def _version() -> str:
    from unimage import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``unimage`` console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
