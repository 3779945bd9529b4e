"""The ``train`` section of a sweep, held against the very parser ``unimage fit`` runs (its LightningCLI).

A sweep's ``train`` keys are merged onto the training YAML (``train.config``) by `ablations.config.fit_config`, the
function the train stage uses to write ``checkpoints/train_input.yaml``. Here that merged config is parsed by the
``fit`` parser of `unimage.train.cli.build_cli`, built once per process (``jsonargparse.capture_parser`` stops it
right before it parses: nothing is instantiated or run), so a key or a type ``unimage fit`` would refuse fails when
the sweep is loaded, not when its train stage starts. The parser's options also become :func:`fit_keys`, the keys
`ablations.schema_check` suggests from (``train.model.icl_step`` → ``train.model.icl_steps``).

Building the parser imports Lightning (about 12 s of CPU; the checks themselves take under a second). A check that
passed is remembered in a cache folder (``$UNIMAGE_SWEEP_CACHE``, default ``~/.cache/unimage/sweep-checks``; ``off``
disables it) under the hash of what was checked and of what decides the answer (the ``unimage`` and ``ablations``
sources, the Python, Lightning, jsonargparse and torch versions), so loading the same sweep again, e.g. in each arm's
child process, costs no Lightning import. Failures are never cached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablations.schema_check import At, Key, check, check_dotted, record_of

__all__ = [
    "CACHE_ENV",
    "check_train",
    "checked",
    "fit_keys",
    "fit_parser",
    "is_train_key",
    "parse_fit",
    "without_train",
]

CACHE_ENV = "UNIMAGE_SWEEP_CACHE"


@functools.cache
def fit_parser() -> Any:
    """The ``unimage fit`` parser (subcommand ``fit``), raising ``argparse.ArgumentError`` instead of exiting."""
    from jsonargparse import capture_parser

    from unimage.train.cli import build_cli

    parser = capture_parser(build_cli, [], run=True)
    parser.exit_on_error = False
    return parser


@functools.cache
def fit_keys() -> dict[str, Key]:
    """The options of ``unimage fit`` as nested keys: ``model`` → ``icl_steps`` → ``int``, and so on.

    Read from the ``fit`` subparser's actions (their dotted ``dest`` and jsonargparse type hint); the per-option
    ``--X.help`` actions of class-typed options are skipped.
    """
    parser = fit_parser()._subcommands_action._name_parser_map["fit"]
    dests = {a.dest for a in parser._actions}
    tree: dict[str, Any] = {}
    for action in parser._actions:
        hint = getattr(action, "_typehint", None)
        if hint is None or (action.dest.endswith(".help") and action.dest[: -len(".help")] in dests):
            continue
        *groups, name = action.dest.split(".")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = Key(hint)
    return _as_keys(tree)


def _as_keys(tree: dict[str, Any]) -> dict[str, Key]:
    return {k: Key(_as_keys(v)) if isinstance(v, dict) else v for k, v in tree.items()}


def parse_fit(config: dict[str, Any], at: At) -> None:
    """Parse a merged training config with the ``unimage fit`` parser; its refusal becomes a :class:`SweepError`."""
    from argparse import ArgumentError

    try:
        fit_parser().parse_object({"subcommand": "fit", "fit": config})
    except (ArgumentError, ValueError, TypeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        at.fail(f"`unimage fit` refuses the merged training config: {' '.join(lines[:6])}")


def _fingerprint() -> str:
    """What decides whether a training config parses: the ``unimage`` sources and the parser's libraries."""
    h = hashlib.sha256(sys.version.encode())
    for dist in ("lightning", "jsonargparse", "torch"):
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}=none".encode())
    spec = importlib.util.find_spec("unimage")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    roots.append(Path(__file__).parent)  # the ablations package, this checker included
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return Path.home() / ".cache" / "unimage" / "sweep-checks"
    return None if value.strip().lower() in ("", "0", "off", "none") else Path(value)


def checked(payload: Any, run: Callable[[], None]) -> bool:
    """Run the check ``run`` unless the same ``payload`` passed it before with the same code; True when it ran.

    ``payload`` is everything ``run`` looks at (JSON-able); ``run`` raises :class:`SweepError` on a bad config.
    """
    root = _cache_dir()
    marker = None
    if root is not None:
        text = json.dumps(payload, sort_keys=True, default=str)
        marker = root / hashlib.sha256(f"{_fingerprint()}\n{text}".encode()).hexdigest()[:32]
        if marker.is_file():
            return False
    run()
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("ok\n", encoding="utf-8")  # only its existence counts
        except OSError:
            pass  # a read-only home only costs the next load the same check
    return True


def is_train_key(dotted: str) -> bool:
    """A dotted override only the ``unimage fit`` schema can check (``train.*`` but ``train.config``)."""
    return dotted == "train" or (dotted.startswith("train.") and dotted != "train.config")


def without_train(data: dict[str, Any]) -> dict[str, Any]:
    """A sweep file without the keys :func:`check_train` checks, so the rest is checked without Lightning."""
    out = dict(data)
    base = out.get("base")
    if isinstance(base, dict) and isinstance(base.get("train"), dict):
        out["base"] = {**base, "train": {k: v for k, v in base["train"].items() if k == "config"}}
    arms = out.get("arms")
    if isinstance(arms, dict):
        out["arms"] = {
            name: {**arm, "overrides": {k: v for k, v in arm["overrides"].items() if not is_train_key(str(k))}}
            if isinstance(arm, dict) and isinstance(arm.get("overrides"), dict)
            else arm
            for name, arm in arms.items()
        }
    return out


def check_train(
    where: str,
    base: dict[str, Any],
    overrides: dict[str, dict[str, Any]],
    docs: dict[str, dict[str, Any]],
    merged: list[tuple[At, dict[str, Any]]],
) -> None:
    """Check a sweep's ``train`` keys against ``unimage fit`` (cached, :func:`checked`); nothing to check, no parser.

    Args:
        where: the message prefix (``sweep <file>``).
        base: ``base.train`` without ``config``.
        overrides: per arm, its ``train.*`` overrides.
        docs: the training YAMLs (``train.config``) by path.
        merged: each trained arm's merged training config, with where to report it.
    """
    if not base and not any(overrides.values()) and not merged:
        return
    from ablations.schema import BaseSection, TrainSection

    def run() -> None:
        check(record_of(TrainSection), base, At(where, "base.train"))
        keys = record_of(BaseSection)
        for name, train in overrides.items():
            for key, value in train.items():
                check_dotted(keys, key, value, At(where, f"arms.{name}.overrides"))
        for path, doc in docs.items():
            check(fit_keys(), doc, At(f"{where}: train.config {path}"))
        for at, cfg in merged:
            parse_fit(cfg, at)

    # the YAMLs by content, not path: the same files elsewhere (another checkout, a test folder) pass the same way
    checked(
        {
            "base": base,
            "overrides": overrides,
            "docs": sorted(docs.values(), key=str),
            "merged": [c for _, c in merged],
        },
        run,
    )
