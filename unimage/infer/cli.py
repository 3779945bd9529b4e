"""The Director's commands: ``unimage write | extend | continue | render | generate-vistory``.

Thin wrappers over ``unimage.infer.director`` and ``unimage.infer.vistory``; each command has its own tiny module
(``cmd_*.py``) so the top-level dispatcher can register it. Scripts are read from ``.txt`` (script text) or ``.json``
(``unimage script parse --json`` output) and written as text, or as JSON when the output name ends in ``.json``.

Exit codes: 0 success, 1 generation failed (problems printed), 2 bad input (unreadable file, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unimage.data.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["configure_continue", "configure_extend", "configure_render", "configure_vistory", "configure_write"]


########################################################################################################################
# shared arguments
########################################################################################################################


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--ckpt", required=True, type=Path, help="BAGEL-layout directory (or a run directory holding one)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None, help="cast the weights")


def _add_text_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("script decoding (defaults: BAGEL's, see unimage.infer.config)")
    g.add_argument("--seed", type=int, default=None, help="seed of every random draw (default 0)")
    g.add_argument("--sample", dest="do_sample", action="store_true", default=None, help="sample instead of greedy")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-p", dest="top_p", type=float, default=None)
    g.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None)
    g.add_argument("--max-entry-tokens", dest="max_entry_tokens", type=int, default=None)
    g.add_argument("--max-shots", dest="max_shots", type=int, default=None, help="cap of an open-ended call")
    g.add_argument("--no-cache", dest="use_cache", action="store_false", default=None, help="recompute every token")


def _add_image_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("keyframes (defaults: BAGEL interleave_inference, see unimage.infer.config)")
    if not any(a.dest == "seed" for a in parser._actions):
        g.add_argument("--seed", type=int, default=None, help="seed of every random draw (default 0)")
    g.add_argument("--steps", dest="num_timesteps", type=int, default=None, help="flow timesteps N (50)")
    g.add_argument("--shift", dest="timestep_shift", type=float, default=None, help="timestep shift (3.0)")
    g.add_argument("--cfg-text-scale", dest="cfg_text_scale", type=float, default=None)
    g.add_argument("--cfg-img-scale", dest="cfg_img_scale", type=float, default=None)
    g.add_argument("--cfg-interval", dest="cfg_interval", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None)
    g.add_argument("--cfg-renorm-type", dest="cfg_renorm_type", choices=("global", "channel", "text_channel"))
    g.add_argument("--cfg-renorm-min", dest="cfg_renorm_min", type=float, default=None)
    g.add_argument(
        "--no-batch-cfg",
        dest="batch_cfg",
        action="store_false",
        default=None,
        help="run the CFG branches one after another instead of as one batched forward",
    )
    g.add_argument("--height", dest="image_height", type=int, default=None, help="pixels (1024, clamped to the model)")
    g.add_argument("--width", dest="image_width", type=int, default=None)
    g.add_argument("--vae-max-size", dest="vae_max_size", type=int, default=None, help="context VAE copy (1024)")
    g.add_argument("--vae-min-size", dest="vae_min_size", type=int, default=None, help="context VAE copy (512)")
    g.add_argument("--vit-max-size", dest="vit_max_size", type=int, default=None, help="context ViT copy (980)")
    g.add_argument("--vit-min-size", dest="vit_min_size", type=int, default=None, help="context ViT copy (224)")
    g.add_argument(
        "--sizes-from-run",
        dest="sizes_from_run",
        type=Path,
        default=None,
        help="take keyframe and context image sizes from a training run's config.yaml (data.images)",
    )
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


_CONFIG_KEYS = (
    "seed",
    "do_sample",
    "temperature",
    "top_p",
    "max_new_tokens",
    "max_entry_tokens",
    "max_shots",
    "use_cache",
    "num_timesteps",
    "timestep_shift",
    "cfg_text_scale",
    "cfg_img_scale",
    "cfg_interval",
    "cfg_renorm_type",
    "cfg_renorm_min",
    "batch_cfg",
    "image_height",
    "image_width",
    "vae_max_size",
    "vae_min_size",
    "vit_max_size",
    "vit_min_size",
)


def sampling_config(args: argparse.Namespace) -> Any:
    """The ``SamplingConfig`` of BAGEL's defaults with the flags that were given."""
    from unimage.infer.config import SamplingConfig

    run = getattr(args, "sizes_from_run", None)
    base = SamplingConfig.for_training_run(run) if run is not None else SamplingConfig()
    return base.replace(**{k: getattr(args, k, None) for k in _CONFIG_KEYS})


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
    _add_text_args(parser)
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
    _add_text_args(parser)
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
    _add_text_args(parser)
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
    _add_image_args(parser)
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


def configure_vistory(parser: argparse.ArgumentParser) -> None:
    """``unimage generate-vistory --dataset ROOT --ckpt DIR --method NAME --mode ARM ...``."""
    parser.add_argument("--dataset", type=Path, required=True, help="ViStoryBench root (<root>/<NN>/story.json)")
    parser.add_argument("--method", required=True, help="<method> folder of the output layout")
    parser.add_argument("--mode", required=True, help="<mode> folder (e.g. the ablation arm)")
    parser.add_argument("--split", choices=("full", "lite"), default="full")
    parser.add_argument("--lang", choices=("en", "ch"), default="en")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="outputs root (default ./outputs)")
    parser.add_argument("--timestamp", default=None, help="write into this run folder (default: resume or new)")
    parser.add_argument("--stories", nargs="+", default=None, help="only these story ids")
    parser.add_argument(
        "--batch-stories",
        dest="batch_stories",
        type=int,
        default=None,
        metavar="N",
        help="render N stories in lockstep, one batched forward per denoising step (default: 4 on CUDA, 1 on CPU)",
    )
    _add_model_args(parser)
    _add_image_args(parser)
    parser.set_defaults(func=_guard(_run_vistory))


def _run_vistory(args: argparse.Namespace) -> int:
    from unimage.infer.vistory import generate_vistory

    report = generate_vistory(
        args.dataset,
        _director(args),
        args.method,
        args.mode,
        split=args.split,
        lang=args.lang,
        outputs=args.outputs,
        timestamp=args.timestamp,
        stories=args.stories,
        progress=args.progress,
        batch_stories=args.batch_stories,
    )
    print(
        f"{report.run_dir}: {len(report.generated)} generated, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed, {report.keyframes} keyframes in {report.seconds:.1f} s",
        file=sys.stderr,
    )
    for sid, message in report.failed.items():
        print(f"  story {sid}: {message}", file=sys.stderr)
    return 1 if report.failed else 0
