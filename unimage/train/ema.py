"""Exponential moving average of the trainable weights, as a Lightning ``Callback``.

BAGEL keeps an EMA copy (decay 0.9999, updated after every optimiser step over the parameters that require grad,
bagel-compat §5.5) and releases the EMA weights (``ema.safetensors``). Here the shadow is one fp32 tensor per
trainable parameter, updated in place with ``shadow ← shadow + (1 − decay)·(param − shadow)``.

Sharded-friendly: the shadow mirrors each parameter's LOCAL tensor. Under FSDP (``use_orig_params=True``) a rank's
parameters are its shards, so the EMA costs 1/world of the full model per rank and never gathers weights; the
update is elementwise, so sharding does not change its result. In a checkpoint the shadow is saved from every rank
(gathered as objects when the strategy shards parameters; a single copy for DDP, where all ranks agree) and each
rank takes its own back on resume.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

__all__ = ["EMA"]


class EMA(pl.Callback):
    """EMA of the trainable parameters of ``pl_module.model``.

    Args:
        decay: EMA decay per optimiser step (BAGEL: 0.9999).
        start_step: Optimiser steps before the EMA starts tracking (the shadow is a copy until then).
    """

    def __init__(self, decay: float = 0.9999, start_step: int = 0) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA.decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.shadow: dict[str, Tensor] = {}
        self.num_updates = 0
        self._last_step = -1
        self._pending: dict[str, Any] | None = None
        self._sharded = False

    @staticmethod
    def trainable_parameters(pl_module: pl.LightningModule) -> dict[str, torch.nn.Parameter]:
        """The parameters the EMA tracks, by the names its shadow uses (the local shards under FSDP)."""
        return EMA._params(pl_module)

    @staticmethod
    def _params(pl_module: pl.LightningModule) -> dict[str, torch.nn.Parameter]:
        model = getattr(pl_module, "model", None)
        if model is None:
            raise RuntimeError("EMA: the LightningModule has no `model` (configure_model did not run?)")
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        self._sharded = isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1
        if self._pending is not None:
            self._restore(trainer, pl_module)
            return
        params = self._params(pl_module)
        self.shadow = {n: p.detach().float().clone() for n, p in params.items()}
        self._last_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take a checkpoint's state that arrived after ``on_fit_start``.

        Strategies with ``restore_checkpoint_after_setup`` (FSDP) restore callback states only after ``on_fit_start``
        has run; the fresh shadow made there is then replaced here, before the first step.
        """
        if self._pending is not None:
            self._restore(trainer, pl_module)

    def _restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._pending is not None
        state = self._pending
        self._pending = None
        params = self._params(pl_module)
        shadow = state["shadow"]
        if isinstance(shadow, list):  # one entry per rank (sharded strategies)
            if len(shadow) != trainer.world_size:
                raise ValueError(f"EMA state was saved by {len(shadow)} ranks; this run has {trainer.world_size}")
            shadow = shadow[trainer.global_rank]
        bad = sorted(set(shadow) ^ set(params))
        if bad:
            raise ValueError(f"EMA state does not match the trainable parameters: {bad[:8]}")
        self.shadow = {n: shadow[n].to(params[n].device, torch.float32) for n in params}
        self.num_updates = int(state["num_updates"])
        self._last_step = trainer.global_step

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_step:  # no optimiser step (gradient accumulation)
            return
        self._last_step = trainer.global_step
        params = self._params(pl_module)
        if trainer.global_step <= self.start_step:
            for n, p in params.items():
                self.shadow[n].copy_(p.detach().float())
            return
        for n, p in params.items():
            self.shadow[n].lerp_(p.detach().float(), 1.0 - self.decay)
        self.num_updates += 1

    def averaged_state_dict(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """The model's state dict with every trainable tensor replaced by its EMA (in the parameter's dtype)."""
        model = getattr(pl_module, "model", None)
        if model is None:
            raise RuntimeError("EMA: the LightningModule has no `model`")
        state = dict(model.state_dict())
        for n, s in self.shadow.items():
            state[n] = s.to(state[n].dtype).view_as(state[n])
        return state

    def state_dict(self) -> dict[str, Any]:
        shadow: Any = {n: t.detach().cpu() for n, t in self.shadow.items()}
        if self._sharded and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, shadow)
            shadow = gathered
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": shadow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict
