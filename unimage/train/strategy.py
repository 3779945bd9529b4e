"""Lightning's FSDP strategy set up for UniMAGE: wrap units, activation checkpointing, sharded checkpoints.

Follows BAGEL's FSDP recipe (bagel-compat §5.5) through Lightning (peers-and-practice §5): every MoT decoder layer
is an FSDP unit, and every decoder layer and SigLIP encoder layer is recomputed in the backward (non-reentrant
activation checkpointing); the rest (embeddings, heads, ViT, connector, frozen VAE) lives in the root unit.
``use_orig_params=True`` keeps the original parameter names and allows frozen and trainable parameters in one unit
(frozen VAE and sin-cos tables; the EMA callback then sees per-rank shards). ``HYBRID_SHARD`` shards inside a node
and replicates across nodes (BAGEL's default), ``FULL_SHARD`` shards across all ranks. Checkpoints are sharded by
default (one file per rank, no full-model gather; consolidate with
``python -m lightning.pytorch.utilities.consolidate_checkpoint``). The model is built in
``UniMAGETrainModule.configure_model``, inside the strategy's init context.

Why the SigLIP layers are NOT separate FSDP units by default: a unit all-gathers its parameters when it runs, and
the ViT runs only on ranks whose pack holds a ViT image (a pack of text scripts, pairs, or one-shot stories has
none). Ranks would then issue different collectives and hang or abort (on gloo: "Received data size doesn't match
expected size"). In the root unit the ViT is gathered with everything else at the start of every step on every
rank. ``wrap_vit=True`` brings the per-layer units back for data where every pack of every rank has a ViT image.

On CPU (``accelerator: cpu``, gloo) the strategy passes ``device_id=cpu`` to FSDP, which otherwise refuses to run
without an accelerator; that is how the 2-process test (``tests/unimage/train/test_fsdp.py``) runs it. ``HYBRID_SHARD``
is refused there (FSDP sizes a node by the device count, which is 1 for the CPU).

Use in YAML::

    trainer:
      strategy:
        class_path: unimage.train.strategy.UniMAGEFSDPStrategy
        init_args: {sharding_strategy: HYBRID_SHARD}
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.plugins.precision import FSDPPrecision, Precision
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

__all__ = ["BatchKeepingFSDPPrecision", "UniMAGEFSDPStrategy", "checkpoint_layer_classes", "wrap_layer_classes"]


def wrap_layer_classes(wrap_vit: bool = False) -> set[type[nn.Module]]:
    """The FSDP wrap units: MoT decoder layers (and SigLIP encoder layers when ``wrap_vit``; see the module doc)."""
    from unimage.model.mot import MoTDecoderLayer

    layers: set[type[nn.Module]] = {MoTDecoderLayer}
    if wrap_vit:
        from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

        layers.add(SiglipEncoderLayer)
    return layers


def checkpoint_layer_classes() -> set[type[nn.Module]]:
    """The activation-checkpointing units: MoT decoder layers and SigLIP encoder layers (local, no collectives)."""
    from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

    from unimage.model.mot import MoTDecoderLayer

    return {MoTDecoderLayer, SiglipEncoderLayer}


class BatchKeepingFSDPPrecision(FSDPPrecision):
    """``FSDPPrecision`` that passes UniMAGE's ``TrainBatch`` through unchanged.

    ``FSDPPrecision.convert_input`` walks the batch to cast its float tensors, and refuses frozen dataclasses (the
    packed samples are). The batch holds raw pixels that the module VAE-encodes and casts itself, so there is
    nothing to convert.
    """

    def convert_input(self, data: Any) -> Any:
        """Return a ``TrainBatch`` as is; anything else as ``FSDPPrecision`` converts it."""
        from unimage.data.datamodule import TrainBatch

        if isinstance(data, TrainBatch):
            return data
        return super().convert_input(data)


class UniMAGEFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` with UniMAGE's wrap policy and activation checkpointing (plain arguments for YAML).

    Args:
        sharding_strategy: ``FULL_SHARD``, ``HYBRID_SHARD``, ``SHARD_GRAD_OP`` or ``NO_SHARD``.
        activation_checkpointing: Recompute the decoder and SigLIP layers in the backward.
        cpu_offload: Offload parameters to CPU.
        state_dict_type: ``sharded`` (one file per rank) or ``full`` (gathered on rank 0).
        wrap_vit: Make every SigLIP layer its own FSDP unit (only safe when every rank's every pack has a ViT
            image; see the module docstring).
        **kwargs: Passed to ``FSDPStrategy`` (e.g. ``device_mesh``, ``timeout``).
    """

    def __init__(
        self,
        sharding_strategy: Literal["FULL_SHARD", "HYBRID_SHARD", "SHARD_GRAD_OP", "NO_SHARD"] = "FULL_SHARD",
        activation_checkpointing: bool = True,
        cpu_offload: bool = False,
        state_dict_type: Literal["full", "sharded"] = "sharded",
        wrap_vit: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("use_orig_params", True)
        super().__init__(
            auto_wrap_policy=wrap_layer_classes(wrap_vit),
            activation_checkpointing_policy=checkpoint_layer_classes() if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            cpu_offload=cpu_offload,
            state_dict_type=state_dict_type,
            **kwargs,
        )

    @property
    def precision_plugin(self) -> FSDPPrecision:
        """The precision plugin, as ``BatchKeepingFSDPPrecision``."""
        plugin = self._precision_plugin
        if plugin is not None:
            assert isinstance(plugin, FSDPPrecision)
            return plugin
        return BatchKeepingFSDPPrecision("32-true")

    @precision_plugin.setter
    def precision_plugin(self, precision_plugin: Precision | None) -> None:
        if precision_plugin is not None and not isinstance(precision_plugin, BatchKeepingFSDPPrecision):
            if not isinstance(precision_plugin, FSDPPrecision):
                raise TypeError(
                    f"The FSDP strategy can only work with an `FSDPPrecision` plugin, got {precision_plugin}"
                )
            precision_plugin = BatchKeepingFSDPPrecision(precision_plugin.precision, precision_plugin.scaler)  # type: ignore[arg-type]
        self._precision_plugin = precision_plugin

    def _setup_model(self, model: nn.Module) -> nn.Module:
        """Wrap as ``FSDPStrategy`` does; on the CPU, with ``device_id=cpu`` (FSDP refuses CPU without it)."""
        if self.root_device.type != "cpu":
            return super()._setup_model(model)
        from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

        hybrid = (ShardingStrategy.HYBRID_SHARD, ShardingStrategy._HYBRID_SHARD_ZERO2)
        if self.sharding_strategy in hybrid and "device_mesh" not in self.kwargs:
            # FSDP sizes the intra-node shard group by the device count, which is 1 for the CPU: every rank would
            # keep the whole model, and a measured run diverged from DDP at step 1 (loss 6.9208 vs 6.9098).
            raise ValueError(
                f"{self.sharding_strategy.name} is not supported on the CPU (FSDP takes torch.cpu.device_count() == 1 "
                "as the node size); use sharding_strategy=FULL_SHARD for CPU runs"
            )
        if not any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            model = FullyShardedDataParallel(
                module=model,
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=torch.device("cpu"),
                **self.kwargs,
            )
        _move_torchmetrics_to_device(model, self.root_device)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model
