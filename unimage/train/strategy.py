"""Lightning's FSDP strategy set up for UniMAGE: wrap units, activation checkpointing, sharded checkpoints.

Follows BAGEL's FSDP recipe (bagel-compat §5.5) through Lightning (peers-and-practice §5): every MoT decoder layer
and every SigLIP encoder layer is an FSDP unit and is recomputed in the backward (non-reentrant activation
checkpointing); the rest (embeddings, heads, connector, frozen VAE) lives in the root unit. ``use_orig_params=True``
keeps the original parameter names and allows frozen and trainable parameters in one unit (frozen VAE and sin-cos
tables; the EMA callback then sees per-rank shards). ``HYBRID_SHARD`` shards inside a node and replicates across
nodes (BAGEL's default), ``FULL_SHARD`` shards across all ranks. Checkpoints are sharded by default (one file per
rank, no full-model gather; consolidate with ``python -m lightning.pytorch.utilities.consolidate_checkpoint``).
The model is built in ``UniMAGETrainModule.configure_model``, inside the strategy's init context.

Use in YAML::

    trainer:
      strategy:
        class_path: unimage.train.strategy.UniMAGEFSDPStrategy
        init_args: {sharding_strategy: HYBRID_SHARD}
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

__all__ = ["UniMAGEFSDPStrategy", "wrap_layer_classes"]


def wrap_layer_classes() -> set[type[nn.Module]]:
    """The FSDP wrap / activation-checkpointing units: MoT decoder layers and SigLIP encoder layers."""
    from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

    from unimage.model.mot import MoTDecoderLayer

    return {MoTDecoderLayer, SiglipEncoderLayer}


class UniMAGEFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` with UniMAGE's wrap policy and activation checkpointing (plain arguments for YAML).

    Args:
        sharding_strategy: ``FULL_SHARD``, ``HYBRID_SHARD``, ``SHARD_GRAD_OP`` or ``NO_SHARD``.
        activation_checkpointing: Recompute the wrapped layers in the backward.
        cpu_offload: Offload parameters to CPU.
        state_dict_type: ``sharded`` (one file per rank) or ``full`` (gathered on rank 0).
        **kwargs: Passed to ``FSDPStrategy`` (e.g. ``device_mesh``, ``timeout``).
    """

    def __init__(
        self,
        sharding_strategy: Literal["FULL_SHARD", "HYBRID_SHARD", "SHARD_GRAD_OP", "NO_SHARD"] = "FULL_SHARD",
        activation_checkpointing: bool = True,
        cpu_offload: bool = False,
        state_dict_type: Literal["full", "sharded"] = "sharded",
        **kwargs: Any,
    ) -> None:
        layers = wrap_layer_classes()
        kwargs.setdefault("use_orig_params", True)
        super().__init__(
            auto_wrap_policy=layers,
            activation_checkpointing_policy=layers if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            cpu_offload=cpu_offload,
            state_dict_type=state_dict_type,
            **kwargs,
        )
