"""The Director's commands: ``unimage write | extend | continue | render | generate-vistory``.

Thin wrappers over ``unimage.infer.director`` and ``unimage.infer.vistory``; the top-level dispatcher registers
each ``configure_<command>``. The sampling options are generated from ``SamplingConfig`` (``cliargs``): their
types, defaults and help texts are its fields and docstring, old spellings (``--steps``, ``--height``,
``--no-cache``, ``--sample``) kept as aliases. Scripts are read from ``.txt`` (script text) or ``.json``
(``unimage script parse --json`` output) and written as text, or as JSON when the output name ends in ``.json``.

Exit codes: 0 success, 1 generation failed (problems printed), 2 bad input (unreadable file, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from cliargs import add_dataclass_arguments, add_function_arguments, given_values
from unimage.data.atomic import atomic_write_bytes, atomic_write_text
from unimage.infer.config import SamplingConfig

__all__ = ["configure_continue", "configure_extend", "configure_render", "configure_vistory", "configure_write"]


########################################################################################################################
# shared arguments
########################################################################################################################


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--ckpt", required=True, type=Path, help="BAGEL-layout directory (or a run directory holding one)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None, help="cast the weights")


# The SamplingConfig fields each command takes: script decoding for write/extend/continue, keyframes (every other
# field) for render/generate-vistory; `seed` for both. Options, types, defaults and help come from SamplingConfig.
TEXT_FIELDS = (
    "seed",
    "do_sample",
    "temperature",
    "top_p",
    "max_new_tokens",
    "max_entry_tokens",
    "max_characters",
    "max_environments",
    "max_shots",
    "use_cache",
)
# Spellings the commands had before the options were generated (README and scripts use them).
_ALIASES = {
    "do_sample": ["--sample"],
    "use_cache": ["--cache"],
    "num_timesteps": ["--steps"],
    "timestep_shift": ["--shift"],
    "image_height": ["--height"],
    "image_width": ["--width"],
}
SAMPLING_OPTIONS = {"cfg_interval": {"metavar": ("LOW", "HIGH")}}


def _add_sampling_args(parser: argparse.ArgumentParser, *, text: bool) -> None:
    title = "script decoding" if text else "keyframes"
    g = parser.add_argument_group(f"{title} (SamplingConfig; defaults: BAGEL's)")
    names = [f.name for f in fields(SamplingConfig)]
    only = TEXT_FIELDS if text else ("seed", *(n for n in names if n not in TEXT_FIELDS))
    add_dataclass_arguments(g, SamplingConfig, only=only, aliases=_ALIASES, options=SAMPLING_OPTIONS)
    if not text:
        g.add_argument(
            "--sizes-from-run",
            dest="sizes_from_run",
            type=Path,
            default=None,
            help="take keyframe and context image sizes from a training run's config.yaml (data.images); "
            "size options given as well win",
        )
        g.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    """The ``SamplingConfig`` of BAGEL's defaults (or a training run's sizes) with the options that were given."""
    run = getattr(args, "sizes_from_run", None)
    base = SamplingConfig.for_training_run(run) if run is not None else SamplingConfig()
    return base.replace(**given_values(args, SamplingConfig))


def _director(args: argparse.Namespace) -> Any:
    import torch

    from unimage.infer.director import Director

    dtype = getattr(torch, args.dtype) if args.dtype else None
    return Director.from_pretrained(args.ckpt, config=sampling_config(args), device=args.device, dtype=dtype)


def read_script(path: Path) -> Any:
    """A ``Script`` from a ``.txt`` or ``.json`` file.

    Raises:
        ValueError: Unreadable file or a script with problems (the message lists them with line:column).
    """
    from unimage.script import ScriptError, from_dict, parse

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read: {err}") from err
    if path.suffix == ".json":
        try:
            return from_dict(json.loads(raw)).script
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err
    result = parse(raw, source=str(path))
    errors = tuple(p for p in result.problems if p.code != "possibly-truncated")
    if errors:
        raise ValueError(str(ScriptError(errors, str(path))))
    return result.script


def write_script(script: Any, path: Path) -> None:
    """Write a script atomically: JSON for ``*.json``, canonical text otherwise."""
    from unimage.script import parse, serialize, to_dict

    text = serialize(script)
    if path.suffix == ".json":
        result = parse(text)
        text = json.dumps(to_dict(result.script, result.problems), ensure_ascii=False, indent=2) + "\n"
    atomic_write_text(path, text)


def _report(generation: Any, out: Path) -> None:
    notes = [f"{generation.new_shots} new shot(s), {generation.num_tokens} tokens in {generation.seconds:.1f} s"]
    notes.append(f"stopped: {generation.stopped}")
    if generation.repairs:
        notes.append("closed cues in " + ", ".join(generation.repairs))
    if generation.truncated:
        notes.append("cut at --max-entry-tokens: " + ", ".join(generation.truncated))
    print(f"wrote {out} ({'; '.join(notes)})", file=sys.stderr)


def _guard(func: Any) -> Any:
    """Map bad input to exit code 2 and generation failures to 1, with the message on stderr."""

    def run(args: argparse.Namespace) -> int:
        from unimage.infer.director import DirectorError

        try:
            return int(func(args))
        except DirectorError as err:
            print(f"unimage {args.command}: {err}", file=sys.stderr)
            return 1
        except (ValueError, FileNotFoundError, FileExistsError) as err:
            print(f"unimage {args.command}: {err}", file=sys.stderr)
            return 2

    return run


########################################################################################################################
# commands
########################################################################################################################


def configure_write(parser: argparse.ArgumentParser) -> None:
    """``unimage write "PROMPT" --ckpt DIR -o script.txt [--shots N]``."""
    parser.add_argument("prompt", help="the user prompt")
    parser.add_argument("-o", "--output", type=Path, required=True, help="script file (.txt, or .json)")
    parser.add_argument("--shots", type=int, default=None, help="exactly N shots (default: the model decides)")
    _add_model_args(parser)
    _add_sampling_args(parser, text=True)
    parser.set_defaults(func=_guard(_run_write))


def _run_write(args: argparse.Namespace) -> int:
    generation = _director(args).write_generation(args.prompt, args.shots)
    write_script(generation.script, args.output)
    _report(generation, args.output)
    return 0


def configure_extend(parser: argparse.ArgumentParser) -> None:
    """``unimage extend script.txt "NEW PROMPT" --ckpt DIR -o out.txt [--shots N]``."""
    parser.add_argument("script", type=Path, help="script file to extend (.txt or .json)")
    parser.add_argument("prompt", help="the new user prompt (written after <Extension>)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output script file")
    parser.add_argument("--shots", type=int, default=None, help="exactly N new shots (default: the model decides)")
    _add_model_args(parser)
    _add_sampling_args(parser, text=True)
    parser.set_defaults(func=_guard(_run_extend))


def _run_extend(args: argparse.Namespace) -> int:
    script = read_script(args.script)
    generation = _director(args).extend_generation(script, args.prompt, args.shots)
    write_script(generation.script, args.output)
    _report(generation, args.output)
    return 0


def configure_continue(parser: argparse.ArgumentParser) -> None:
    """``unimage continue script.txt --ckpt DIR -o out.txt [--shots N] [--times K]``."""
    parser.add_argument("script", type=Path, help="script file to continue (.txt or .json)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output script file")
    parser.add_argument("--shots", type=int, default=1, help="shots per continuation (default 1)")
    parser.add_argument("--times", type=int, default=1, help="continue this many times in a row (default 1)")
    _add_model_args(parser)
    _add_sampling_args(parser, text=True)
    parser.set_defaults(func=_guard(_run_continue))


def _run_continue(args: argparse.Namespace) -> int:
    if args.times < 1:
        raise ValueError(f"--times must be >= 1, got {args.times}")
    director = _director(args)
    script = read_script(args.script)
    for _ in range(args.times):
        generation = director.continue_generation(script, args.shots)
        script = generation.script
        _report(generation, args.output)
    write_script(script, args.output)
    return 0


def configure_render(parser: argparse.ArgumentParser) -> None:
    """``unimage render script.txt --ckpt DIR -o DIR``: shot_01.png … plus script.txt / script.json."""
    parser.add_argument("script", type=Path, help="script file (.txt or .json)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_model_args(parser)
    _add_sampling_args(parser, text=False)
    parser.set_defaults(func=_guard(_run_render))


def _run_render(args: argparse.Namespace) -> int:
    import io

    script = read_script(args.script)
    director = _director(args)
    out: Path = args.output
    for k, image in enumerate(director.render_iter(script, progress=args.progress), start=1):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        atomic_write_bytes(out / f"shot_{k:02d}.png", buf.getvalue())
    write_script(script, out / "script.txt")
    write_script(script, out / "script.json")
    print(f"wrote {len(script.shots)} keyframe(s) to {out}", file=sys.stderr)
    return 0


_VISTORY_PARAMS = (
    "dataset",
    "method",
    "mode",
    "split",
    "lang",
    "outputs",
    "timestamp",
    "stories",
    "batch_stories",
    "scripts",
)


def configure_vistory(parser: argparse.ArgumentParser) -> None:
    """``unimage generate-vistory --dataset ROOT --ckpt DIR --method NAME --mode ARM ...``.

    The layout options are ``generate_vistory``'s parameters (help from its docstring, defaults from its signature).
    """
    from unimage.infer.vistory import generate_vistory

    g = parser.add_argument_group("stories and output layout (generate_vistory)")
    options: dict[str, dict[str, Any]] = {"lang": {"choices": ("en", "ch")}, "batch_stories": {"metavar": "N"}}
    add_function_arguments(g, generate_vistory, only=_VISTORY_PARAMS, options=options)
    _add_model_args(parser)
    _add_sampling_args(parser, text=False)
    parser.set_defaults(func=_guard(_run_vistory))


def _run_vistory(args: argparse.Namespace) -> int:
    from unimage.infer.vistory import generate_vistory

    report = generate_vistory(ckpt=_director(args), progress=args.progress, **given_values(args, generate_vistory))
    print(
        f"{report.run_dir}: {len(report.generated)} generated, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed, {report.keyframes} keyframes in {report.seconds:.1f} s",
        file=sys.stderr,
    )
    for sid, message in report.failed.items():
        print(f"  story {sid}: {message}", file=sys.stderr)
    return 1 if report.failed else 0
