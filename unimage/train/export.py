"""Export of the trained (EMA) weights to a BAGEL-layout directory, as a function and as a ``Callback``.

The directory (``checkpoints/export/`` of the run by default) is what ``unimage.model.checkpoint.load_bagel_dir``,
the Director and the public BAGEL tooling read: ``ema.safetensors`` (the EMA weights when an ``EMA`` callback ran,
else the raw weights), ``ae.safetensors``, the json configs (with ``id_prompting`` etc.) and the tokenizer files of
the initial checkpoint (none for the offline byte tokenizer of tiny configs). It is written into a temporary sibling
folder and renamed into place, so a killed export never leaves a half directory under the final name.

Under FSDP (``UniMAGEFSDPStrategy``) the callback gathers the full (EMA) weights onto rank 0 at the end of ``fit``
(``gather_sharded_state``; every rank takes part), so a sharded run exports the same directory a DDP run does.
"""

from __future__ import annotations

import logging
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from fsio.atomic import writer_gone, writer_tag
from unimage.model.checkpoint import build_model_on_meta, save_bagel_dir
from unimage.model.vae import Autoencoder
from unimage.train.ema import EMA

__all__ = [
    "BagelExport",
    "UnsafeCheckpointError",
    "export_checkpoint",
    "export_module",
    "gather_sharded_state",
    "load_checkpoint_file",
]

logger = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


def export_module(
    pl_module: Any,
    out_dir: str | Path,
    ema: EMA | None = None,
    dtype: str | None = None,
    state: dict[str, torch.Tensor] | None = None,
    vae: Autoencoder | None = None,
) -> Path:
    """Write ``pl_module.model`` (with ``ema``'s weights when given) as a BAGEL-layout directory.

    Args:
        pl_module: A ``UniMAGETrainModule`` (``model``, ``vae``, ``model_config``, ``tokenizer_dir``).
        out_dir: Target directory (replaced atomically).
        ema: The EMA callback whose shadow weights to export.
        dtype: ``bf16`` / ``fp32`` cast of the saved tensors (None keeps them).
        state: The full model state dict to write instead of ``pl_module.model``'s (and ``ema``'s): what
            ``gather_sharded_state`` returns under FSDP.
        vae: The VAE to write instead of ``pl_module.vae`` (a full copy under FSDP).

    Returns:
        The directory.
    """
    if pl_module.model is None:
        raise RuntimeError("export: the module has no model (configure_model did not run)")
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"export dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if state is None:
        use_ema = ema is not None and bool(ema.shadow)
        state = (
            ema.averaged_state_dict(pl_module) if ema is not None and use_ema else dict(pl_module.model.state_dict())
        )
    model = build_model_on_meta(pl_module.model_config)
    model.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True, assign=True)
    out = Path(out_dir)
    _remove_dead_exports(out)
    tmp = out.with_name(f".{out.name}.tmp-{writer_tag()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    if vae is None and pl_module.vae is not None:
        vae = pl_module.vae.cpu()
    save_bagel_dir(model, tmp, vae=vae, tokenizer_dir=pl_module.tokenizer_dir, dtype=_DTYPES.get(dtype or ""))
    if out.exists():
        old = out.with_name(f".{out.name}.old-{writer_tag()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out


class UnsafeCheckpointError(ValueError):
    """A checkpoint file would run code when unpickled (it holds more than tensors and plain containers)."""


def load_checkpoint_file(path: str | Path, trust_pickle: bool = False) -> Any:
    """``torch.load`` a checkpoint file onto the CPU with ``weights_only=True`` unless the caller trusts the file.

    A Lightning ``.ckpt`` is a pickle; full unpickling runs whatever ``__reduce__`` the file carries before any check
    could look at it, so only ``trust_pickle=True`` (the caller's explicit statement that the file is theirs) allows
    it. Our own checkpoints hold tensors, numbers, strings and containers and load without it.

    Raises:
        UnsafeCheckpointError: The file holds other objects; the message names the file and the opt-in.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = f"it asks for {found.group(1)}" if found else str(err).strip().split("\n")[0][:200]
        raise UnsafeCheckpointError(
            f"{path}: refused to unpickle: the file holds objects other than tensors and plain containers "
            f"({detail}); loading it could run code from the file. Only if you trust it, pass "
            "trust_pickle=True (export_checkpoint(..., trust_pickle=True))."
        ) from None


def _remove_dead_exports(out: Path) -> None:
    """Remove ``.<out>.tmp-<pid>@<host>`` / ``.old-`` folders left by exports that were killed (issue 14)."""
    if not out.parent.is_dir():
        return
    for entry in out.parent.iterdir():
        for kind in (".tmp-", ".old-"):
            prefix = f".{out.name}{kind}"
            if entry.name.startswith(prefix) and entry.is_dir() and writer_gone(entry.name[len(prefix) :]):
                shutil.rmtree(entry, ignore_errors=True)


def export_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    use_ema: bool = True,
    dtype: str | None = None,
    *,
    trust_pickle: bool = False,
) -> Path:
    """Export a saved Lightning checkpoint (a single file: a DDP/single-device one, or an FSDP one consolidated with
    ``python -m lightning.pytorch.utilities.consolidate_checkpoint``) to a BAGEL-layout directory.

    The file is read with ``torch.load(weights_only=True)`` unless ``trust_pickle=True`` (see `load_checkpoint_file`).

    Raises:
        UnsafeCheckpointError: The file holds pickled objects beyond tensors and containers, and ``trust_pickle``
            is False.
        ValueError: The checkpoint holds no ``UniMAGETrainModule`` hyper-parameters or weights.
    """
    from unimage.train.module import UniMAGETrainModule

    ckpt = load_checkpoint_file(ckpt_path, trust_pickle)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path}: not a UniMAGETrainModule checkpoint (no hyper_parameters / state_dict)")
    # LightningCLI adds its own entries (``_instantiator``, ``_class_path``) to the saved hyper-parameters.
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not str(k).startswith("_")}
    module = UniMAGETrainModule(**hparams)
    module.configure_model()
    module.load_state_dict(ckpt["state_dict"], strict=True)
    ema: EMA | None = None
    states = [v for k, v in ckpt.get("callbacks", {}).items() if k.split("{")[0] == "EMA"]
    if use_ema and states:
        ema = EMA(decay=float(states[0]["decay"]))
        shadow = states[0]["shadow"]
        if isinstance(shadow, list):
            raise ValueError(f"{ckpt_path}: the EMA was saved per FSDP shard; export it from the training run instead")
        ema.shadow = dict(shadow)
    return export_module(module, out_dir, ema, dtype)


def gather_sharded_state(
    trainer: pl.Trainer, pl_module: Any, ema: EMA | None
) -> tuple[dict[str, torch.Tensor], Autoencoder] | None:
    """Gather the full model state (EMA weights when ``ema`` is given) and the VAE from an FSDP run; every rank
    must call it (it all-gathers), rank 0 gets them, the other ranks None.

    The EMA shadow mirrors each rank's local parameter shard exactly (``use_orig_params=True``), so it is copied
    into the shards, the full state dict is gathered through FSDP (onto rank 0's CPU), and the trained shards are
    put back.
    """
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    root = trainer.strategy.model
    assert root is not None
    saved: dict[str, torch.Tensor] = {}
    params = EMA.trainable_parameters(pl_module) if ema is not None and ema.shadow else {}
    try:
        with torch.no_grad():
            for name, p in params.items():
                saved[name] = p.detach().clone()
                p.detach().copy_(ema.shadow[name].to(p.dtype).view_as(p))  # type: ignore[union-attr]
        config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
        with FSDP.state_dict_type(root, StateDictType.FULL_STATE_DICT, config):
            full = root.state_dict()
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.detach().copy_(saved[name])
    if not trainer.is_global_zero:
        return None
    model_state = {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}
    with torch.device("cpu"):
        from unimage.train.synth_fit import training_autoencoder

        vae = training_autoencoder(pl_module.model_config, None)  # FLUX or an unfitted synth AE, filled next
    vae.load_state_dict({k.removeprefix("vae."): v for k, v in full.items() if k.startswith("vae.")}, strict=True)
    return model_state, vae


class BagelExport(pl.Callback):
    """At the end of ``fit``, export the (EMA) weights and write ``train_status.json``.

    Args:
        dirpath: Target directory (default ``<default_root_dir>/checkpoints/export``).
        use_ema: Export the EMA weights when an ``EMA`` callback is present.
        dtype: ``bf16`` / ``fp32`` cast of the saved tensors (None keeps fp32 training weights).
    """

    def __init__(self, dirpath: str | None = None, use_ema: bool = True, dtype: str | None = None) -> None:
        self.dirpath = dirpath
        self.use_ema = use_ema
        self.dtype = dtype
        self.exported: Path | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        ema = next((c for c in trainer.callbacks if isinstance(c, EMA)), None) if self.use_ema else None  # type: ignore[attr-defined]
        out = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "checkpoints" / "export"
        if isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1:
            gathered = gather_sharded_state(trainer, pl_module, ema)  # every rank takes part
            if gathered is not None:
                self.exported = export_module(pl_module, out, dtype=self.dtype, state=gathered[0], vae=gathered[1])
            trainer.strategy.barrier("bagel_export")
        elif trainer.is_global_zero:
            self.exported = export_module(pl_module, out, ema, self.dtype)
        if not trainer.is_global_zero:
            return
        write_status = getattr(pl_module, "write_status", None)
        if write_status is not None:
            write_status(self.exported)
