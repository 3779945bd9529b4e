"""``unimage fit --config FILE.yaml [overrides]``: training through LightningCLI.

A thin layer over ``LightningCLI`` (jsonargparse): the YAML has the sections ``model`` (``UniMAGETrainModule``),
``data`` (``UniMAGEDataModule``), ``trainer``, ``checkpoint`` (``AtomicModelCheckpoint``), ``ema`` (``EMA``), ``export``
(``BagelExport``) and the top-level ``run_dir``; any key can be overridden with a dotted flag
(``--model.id_prompting true``, ``--trainer.devices 2``); ``--print_config`` prints the resolved config.

Given ``run_dir`` (DESIGN.md §3.4), everything goes into it: ``config.yaml`` (the resolved config, replayable as is
with ``--config run_dir/config.yaml``), ``checkpoints/`` (Lightning checkpoints, ``last.ckpt``, and the exported
BAGEL-layout ``export/``), ``logs/csv/metrics.csv`` and ``logs/tb/`` (TensorBoard), ``batches.jsonl`` (the data
order) and ``train_status.json``. A rerun with the same ``run_dir`` resumes from ``checkpoints/last.ckpt``.
``trainer.max_steps`` defaults to ``model.icl_steps + model.del_steps``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from unimage.data.atomic import atomic_write_text
from unimage.data.datamodule import DataBinding, UniMAGEDataModule
from unimage.train.checkpointing import AtomicModelCheckpoint
from unimage.train.ema import EMA
from unimage.train.export import BagelExport
from unimage.train.module import UniMAGETrainModule

__all__ = ["UniMAGECLI", "build_cli", "main"]

CONFIG_FILE = "config.yaml"


class RunDirSaveConfig(SaveConfigCallback):
    """Writes the resolved config to ``<run_dir>/config.yaml`` atomically (rank 0), replacing the previous one."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = self.config.get("run_dir")
        if run_dir is None:
            super().setup(trainer, pl_module, stage)
            return
        if trainer.is_global_zero:
            text = self.parser.dump(self.config, skip_none=False)
            atomic_write_text(Path(run_dir) / self.config_filename, text)
        self.already_saved = True


class UniMAGECLI(LightningCLI):
    """LightningCLI with the run-directory layout, checkpointing, EMA and export wired in."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=str | None, default=None, help="run directory (DESIGN.md §3.4)")
        parser.add_lightning_class_args(AtomicModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_train_steps": 1000,
                "checkpoint.save_top_k": 1,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(EMA, "ema")
        parser.add_lightning_class_args(BagelExport, "export")
        # The data stream's model side (config, tokenizer, schedule, seed) is the module's: handed over once built.
        parser.link_arguments("model", "data.binding", compute_fn=_data_binding, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config  # run=False: no subcommand
        run_dir = cfg.get("run_dir")
        if cfg.trainer.get("max_steps") in (None, -1):
            cfg.trainer.max_steps = int(cfg.model.icl_steps) + int(cfg.model.del_steps)
        if run_dir is None:
            return
        # run_dir decides every output path (also when replaying a config.yaml written for another run_dir).
        root = Path(run_dir)
        cfg.trainer.default_root_dir = str(root)
        cfg.checkpoint.dirpath = str(root / "checkpoints")
        cfg.export.dirpath = str(root / "checkpoints" / "export")
        cfg.trainer.logger = [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(root), "name": "logs", "version": "csv"},
            },
            {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(root), "name": "logs", "version": "tb"},
            },
        ]

    def before_fit(self) -> None:
        """Resume from ``<run_dir>/checkpoints/last.ckpt`` when it exists and no ``ckpt_path`` was given."""
        cfg = self.config_init[self.subcommand]
        if cfg.get("ckpt_path") is None and cfg.get("run_dir") is not None:
            last = Path(self.config[self.subcommand].checkpoint.dirpath) / "last.ckpt"
            if last.exists():  # a file, or a folder (an FSDP sharded checkpoint)
                cfg.ckpt_path = str(last)
        if cfg.get("weights_only") is None:  # resume unpickles tensors and containers only (torch < 2.6 defaults False)
            cfg.weights_only = True


def _data_binding(module: UniMAGETrainModule) -> DataBinding:
    return module.data_binding()


def build_cli(args: Sequence[str], run: bool = True) -> UniMAGECLI:
    """Run (or only parse and instantiate, ``run=False``) the training CLI on ``args`` (without ``fit``)."""
    with warnings.catch_warnings():
        # LightningCLI warns when args are given while sys.argv also has some; ours ARE sys.argv's (unimage fit ...),
        # and sys.argv must stay as is: the DDP launcher re-executes it in the child processes.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return UniMAGECLI(
            UniMAGETrainModule,
            UniMAGEDataModule,
            save_config_callback=RunDirSaveConfig,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            args=(["fit", *args] if run else list(args)),
            run=run,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``unimage fit ...`` / ``python -m unimage.train.cli [fit] --config FILE.yaml ...``; returns the exit code.

    ``unimage`` hands this function every argument after ``fit`` unchanged (``unimage.cli.OWN_ARGV``): LightningCLI
    parses them, so ``--config``, dotted overrides, ``--print_config`` and ``--help`` are all its own.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "fit":
        args = args[1:]
    build_cli(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
