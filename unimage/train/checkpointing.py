"""``ModelCheckpoint`` that never leaves a half-written checkpoint under its final name.

Lightning writes ``last.ckpt`` in place; a run killed during the write would leave a truncated file that the next
``fit`` resumes from (DESIGN.md §3.4 forbids that). Here every checkpoint (a file, or a folder for FSDP sharded
checkpoints) is written under ``<name>.tmp`` by all ranks and then renamed by rank 0.
"""

from __future__ import annotations

import os
import shutil
from typing import Any
from weakref import proxy

from lightning.pytorch.callbacks import ModelCheckpoint

import fsio

__all__ = ["AtomicModelCheckpoint"]


class AtomicModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with write-then-rename saves (same arguments)."""

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        tmp = f"{filepath}.tmp"
        if trainer.is_global_zero and os.path.lexists(tmp):
            shutil.rmtree(tmp) if os.path.isdir(tmp) else os.remove(tmp)
        trainer.strategy.barrier("atomic_checkpoint_pre")
        trainer.save_checkpoint(tmp, self.save_weights_only)
        trainer.strategy.barrier("atomic_checkpoint_saved")
        if trainer.is_global_zero:
            if os.path.isdir(tmp):  # sharded checkpoint folder: folders cannot replace folders atomically
                old = f"{filepath}.old"
                if os.path.lexists(filepath):
                    os.replace(filepath, old)
                os.replace(tmp, filepath)
                if os.path.lexists(old):
                    shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)
            else:
                os.replace(tmp, filepath)
            fsio.fsync_dir(os.path.dirname(os.path.abspath(filepath)))  # the rename itself on disk
        trainer.strategy.barrier("atomic_checkpoint_renamed")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
