"""The `unimage` command: a thin dispatcher over library functions.

Each subcommand names a function ``configure(parser)`` (``"module"`` means its ``configure``,
``"module:function"`` another one) that adds the arguments and sets ``parser.set_defaults(func=...)`` to a
function ``func(args) -> int``. A command in :data:`OWN_ARGV` instead names a ``main(argv) -> int`` that parses
its own arguments (``fit``: LightningCLI, whose dotted overrides and ``--config`` argparse cannot pass through);
it gets every argument after its name unchanged. Only the chosen subcommand's module is imported, so
``unimage --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

# name -> (one-line help, "module[:function]" of its `configure(parser)`, or of its `main(argv)` for OWN_ARGV)
COMMANDS: dict[str, tuple[str, str]] = {
    "script": ("parse, validate and format UniMAGE scripts", "unimage.script.cli"),
    "bench": ("score generated storyboards with the ViStoryBench metrics", "bench.cli"),
    "synth": ("generate the SynthStory set (training manifests + ViStoryBench-layout eval set)", "unimage.data.cli"),
    "dashboard": ("storyboards side by side, results and the user study (Streamlit app)", "dashboard.cli"),
    "write": ("write a UniMAGE script from a prompt (Director)", "unimage.infer.cli:configure_write"),
    "extend": ("extend a script with a new prompt (<Extension>)", "unimage.infer.cli:configure_extend"),
    "continue": ("continue a script by N shots (<Continuation>)", "unimage.infer.cli:configure_continue"),
    "render": ("render one keyframe per shot of a script", "unimage.infer.cli:configure_render"),
    "generate-vistory": (
        "render ViStoryBench stories into the benchmark's output layout",
        "unimage.infer.cli:configure_vistory",
    ),
    "fit": ("train UniMAGE (icl then del) from a YAML config through LightningCLI", "unimage.train.cli:main"),
    "checkpoint": ("check or write BAGEL-layout checkpoint directories", "unimage.model.checkpoint_cli"),
    "sweep": ("run an ablation sweep (data, train, generate, evaluate per arm; resumable)", "ablations.cli"),
    "report": ("Table 1, figures and summary from run directories; user-study figures", "reports.cli"),
}
#: Commands that parse their own argv (`unimage fit --help` is LightningCLI's help).
OWN_ARGV = frozenset({"fit"})


def _target(spec: str, default: str) -> Any:
    """The function named by ``"module[:function]"`` (``default`` when no function is given)."""
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr or default)


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """Build the top-level parser; only the ``selected`` subcommand's module is imported and configured."""
    parser = argparse.ArgumentParser(
        prog="unimage",
        description="UniMAGE harness: script format, model, training, inference, ViStoryBench, sweeps, reports, dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, target) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected and name not in OWN_ARGV:
            _target(target, "configure")(p)
    return parser


def _version() -> str:
    from unimage import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``unimage`` console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in OWN_ARGV:
        own_main = _target(COMMANDS[args_list[0]][1], "main")
        return _call(lambda: own_main(args_list[1:]))
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return _call(lambda: func(args))


def _call(run: Callable[[], Any]) -> int:
    """Run a command; Ctrl-C and a closed output pipe end it with the usual exit codes instead of a traceback."""
    try:
        return int(run())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly, as Unix tools do
        # Point stdout at devnull so the interpreter's final flush does not raise again (Python docs, "signal").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
