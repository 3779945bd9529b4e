"""The `unimage` command: a thin dispatcher over library functions.

Each subcommand lives in its own module, exposing ``configure(parser)`` (adds arguments) and setting
``parser.set_defaults(func=...)`` to a function ``func(args) -> int``. Only the chosen subcommand's module is
imported, so ``unimage --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> (one-line help, module that defines `configure(parser)`)
COMMANDS: dict[str, tuple[str, str]] = {
    "script": ("parse, validate and format UniMAGE scripts", "unimage.script.cli"),
    "bench": ("score generated storyboards with the ViStoryBench metrics", "bench.cli"),
    "synth": ("generate the SynthStory set (training manifests + ViStoryBench-layout eval set)", "unimage.data.cli"),
    "dashboard": ("storyboards side by side, results and the user study (Streamlit app)", "dashboard.cli"),
    "write": ("write a UniMAGE script from a prompt (Director)", "unimage.infer.cmd_write"),
    "extend": ("extend a script with a new prompt (<Extension>)", "unimage.infer.cmd_extend"),
    "continue": ("continue a script by N shots (<Continuation>)", "unimage.infer.cmd_continue"),
    "render": ("render one keyframe per shot of a script", "unimage.infer.cmd_render"),
    "generate-vistory": ("render ViStoryBench stories into the benchmark's output layout", "unimage.infer.cmd_vistory"),
    "fit": ("train UniMAGE (icl then del) from a YAML config through LightningCLI", "unimage.train.cli"),
    "checkpoint": ("check or write BAGEL-layout checkpoint directories", "unimage.model.checkpoint_cli"),
    "sweep": ("run an ablation sweep (data, train, generate, evaluate per arm; resumable)", "ablations.cli"),
    "report": ("Table 1, figures and summary from run directories; user-study figures", "reports.cli"),
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
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly, as Unix tools do
        # Point stdout at devnull so the interpreter's final flush does not raise again (Python docs, "signal").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
