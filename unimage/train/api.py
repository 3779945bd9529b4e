"""Programmatic training: ``fit(config, run_dir, overrides) -> export dir`` (what the sweep runner calls).

It runs exactly what ``unimage fit --config ... --run_dir ...`` runs (the same LightningCLI, in this process), so
a run started either way can be resumed the other way: a second call with the same ``run_dir`` continues from
``<run_dir>/checkpoints/last.ckpt``; a finished run is not trained again (``train_status.json`` says complete and
the export exists) unless ``force=True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BUNDLED_CONFIGS", "bundled_config", "fit", "overrides_to_args"]

BUNDLED_CONFIGS = ("tiny-synthstory", "bagel-7b-mot-finetune")


def bundled_config(name: str) -> Path:
    """Path of a bundled config (``tiny-synthstory``, ``bagel-7b-mot-finetune``).

    Raises:
        ValueError: Unknown name.
    """
    if name not in BUNDLED_CONFIGS:
        raise ValueError(f"unknown bundled config {name!r}; choose one of {BUNDLED_CONFIGS}")
    return Path(__file__).parent / "configs" / f"{name}.yaml"


def overrides_to_args(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """CLI arguments from ``{"model.lr": 1e-4, "data.synthstory": "d"}`` or ``["--model.lr", "1e-4"]``."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        args = []
        for key, value in overrides.items():
            text = value if isinstance(value, str) else json.dumps(value)
            args.append(f"--{key.removeprefix('--')}={text}")
        return args
    return [str(a) for a in overrides]


def fit(
    config: str | Path | Mapping[str, Any],
    run_dir: str | Path,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Train (or resume) one run and return its exported BAGEL-layout directory.

    Args:
        config: A YAML file, the name of a bundled config, or the config as a dict (the YAML's structure).
        run_dir: The run directory (DESIGN.md §3.4): ``config.yaml``, ``checkpoints/`` (with ``export/``), ``logs/``,
            ``batches.jsonl``, ``train_status.json``.
        overrides: Dotted overrides, as a dict or as CLI arguments.
        force: Train even if ``train_status.json`` says the run is complete.

    Returns:
        ``<run_dir>/checkpoints/export`` (or the configured ``export.dirpath``).

    Raises:
        ValueError: The config or an override is invalid (the message comes from the CLI parser).
    """
    from unimage.train.cli import build_cli

    run = Path(run_dir)
    status = run / "train_status.json"
    if not force and status.is_file():
        done = json.loads(status.read_text())
        if done.get("complete") and done.get("export") and Path(done["export"]).is_dir():
            return Path(done["export"])
    if isinstance(config, Mapping):
        config_arg = yaml.safe_dump(dict(config), sort_keys=False)
    elif isinstance(config, str) and config in BUNDLED_CONFIGS:
        config_arg = str(bundled_config(config))
    else:
        if not Path(config).is_file():
            raise FileNotFoundError(f"training config not found: {config}")
        config_arg = str(config)
    args = ["--config", config_arg, "--run_dir", str(run), *overrides_to_args(overrides)]
    try:
        cli = build_cli(args)
    except SystemExit as exc:  # jsonargparse reports parse errors by exiting
        raise ValueError(f"invalid training config or overrides (parser exit code {exc.code}); args: {args}") from exc
    from unimage.train.export import BagelExport

    exported = next((c.exported for c in cli.trainer.callbacks if isinstance(c, BagelExport)), None)  # type: ignore[attr-defined]
    if exported is None:
        raise RuntimeError(f"training in {run} finished without an export (see the log)")
    return exported
