"""Step 4, FSDP: one sharded training step through ``UniMAGEFSDPStrategy``, a sharded checkpoint, resume, equal loss.

The step runs in child processes (one per rank, started here with the torchrun environment variables, so Lightning
treats them as externally launched), which gives the step a hard time box (the process group is killed when it runs
out) and keeps the process group out of the parent. NCCL on CUDA (1 process, 2 when two GPUs are visible), gloo
on the CPU (1 process).

Each rank runs two ``Trainer.fit`` calls on a small LightningModule around the project's ``MoTModel``
(``scale.fsdp_layers`` layers at the scale's shapes) under ``UniMAGEFSDPStrategy`` (the production wrap policy:
every MoT decoder layer an FSDP unit, activation checkpointing, sharded state dicts, FULL_SHARD), on a
``scale.fsdp_tokens`` pack with SDPA attention (nothing to compile inside the box):

1. ``continuous``: 2 optimiser steps; after step 1 a callback calls ``trainer.save_checkpoint``, which writes a
   sharded checkpoint (one ``.distcp`` file per rank);
2. ``resumed``: a new Trainer and module resume from that checkpoint and run step 2.

The data of step i is a function of i alone (seeded by the global step), so ``resumed``'s step-2 loss must equal
``continuous``'s: the weights and the AdamW state came back from the shards. The model is built on the CPU from a fixed seed in ``configure_model`` (as the training module
does) and sharded onto the device by FSDP.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unimage.gpucheck.runner import StepContext, StepTimeout

__all__ = ["LOSS_RTOL", "main", "run_fsdp"]

LOSS_RTOL = {"cpu": 1e-5, "cuda": 1e-3}
RESULT = "fsdp_result.json"
_REPO = Path(__file__).resolve().parents[2]


########################################################################################################################
# Parent side
########################################################################################################################


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_fsdp(ctx: StepContext) -> None:
    """Launch the ranks, wait within the box, and turn their result file into results and checks."""
    dev = ctx.device
    world = min(2, torch.cuda.device_count()) if dev.type == "cuda" else 1
    out = ctx.work_dir
    port = _free_port()
    cmd = [sys.executable, "-m", "unimage.gpucheck.fsdp", "--out", str(out), "--scale", ctx.scale.name]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for rank in range(world):
        env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE=str(world),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            NODE_RANK="0",
            LOCAL_WORLD_SIZE=str(world),
            GPUCHECK_ACCELERATOR="cuda" if dev.type == "cuda" else "cpu",
            # The ranks import this checkout even when the parent was started from elsewhere without installing it.
            PYTHONPATH=os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        log = (out / f"rank{rank}.log").open("wb")
        logs.append(log)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    ctx.results.update(world_size=world, backend="nccl" if dev.type == "cuda" else "gloo")

    def kill() -> None:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()

    ctx.cleanups.append(kill)
    try:
        for p in procs:
            p.wait(timeout=max(ctx.deadline.remaining(), 1.0))
    except subprocess.TimeoutExpired:
        kill()
        raise StepTimeout(f"FSDP ranks still running when the {ctx.deadline.seconds:.0f} s box ran out") from None
    finally:
        for log in logs:
            log.close()
        shutil.rmtree(out / "sharded.ckpt", ignore_errors=True)  # GBs on 7B; its listing is in the result
    ctx.results["returncodes"] = [p.returncode for p in procs]
    result_file = out / RESULT
    if any(p.returncode for p in procs) or not result_file.is_file():
        tail = (out / "rank0.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"FSDP ranks exited with {ctx.results['returncodes']}; rank 0 log tail:\n{tail}")
    result = json.loads(result_file.read_text())
    ctx.results.update(result)
    cont, resumed = result["continuous"]["losses"], result["resumed"]["losses"]
    rtol = LOSS_RTOL[dev.type]
    ctx.check("resumed_steps", abs(len(resumed) - 1), 0.0, "the resumed fit runs exactly step 2")
    ctx.check("step2_loss_rel_diff_resumed_vs_continuous", abs(resumed[-1] - cont[1]) / abs(cont[1]), rtol)
    ctx.check("step2_loss_changed", -abs(cont[1] - cont[0]), -1e-9, "the optimiser step must move the loss")
    ctx.check("missing_shard_files", float(world - result["checkpoint"]["shard_files"]), 0.0)


########################################################################################################################
# Rank side
########################################################################################################################


def _module(llm: Any, tokens: int, seed: int) -> Any:
    """The LightningModule (defined lazily: importing this file must not import Lightning)."""
    import lightning.pytorch as pl

    from unimage.gpucheck.workload import mixed_pack
    from unimage.model.mot import MoTModel

    class LayerStackModule(pl.LightningModule):
        """A ``MoTModel`` stack regressed onto random targets (MSE); inputs and targets of step i seeded by i."""

        def __init__(self) -> None:
            super().__init__()
            self.stack: MoTModel | None = None
            self.losses: list[float] = []
            self.step_s: list[float] = []
            self.batch = mixed_pack(_scale().model, tokens, seed=3)

        def configure_model(self) -> None:
            if self.stack is not None:
                return
            with torch.device("cpu"), torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                stack = MoTModel(llm)
                for m in stack.modules():
                    if isinstance(m, torch.nn.Linear):
                        torch.nn.init.normal_(m.weight, std=0.02)
            self.stack = stack

        def training_step(self, _: Any, batch_idx: int) -> torch.Tensor:
            assert self.stack is not None
            t0 = time.perf_counter()
            dev = self.device
            batch = self.batch.to(dev)
            gen = torch.Generator().manual_seed(1000 + self.global_step)
            embeds = torch.randn(batch.length, llm.hidden_size, generator=gen).to(dev)
            target = torch.randn(batch.length, llm.hidden_size, generator=gen).to(dev)
            # SDPA: nothing to compile inside this step's box (kernels are step 1's business; this one is sharding).
            hidden, _ = self.stack(embeds, batch.position_ids, batch.routing(), batch.layout(), "sdpa")
            loss = (hidden.float() - target).pow(2).mean()
            self.losses.append(float(loss.detach()))
            self.step_s.append(time.perf_counter() - t0)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-15)

        def train_dataloader(self) -> Any:
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(8)), batch_size=1)

    return LayerStackModule()


def _scale() -> Any:
    from unimage.gpucheck.scale import get_scale

    return get_scale(os.environ["GPUCHECK_SCALE"])


def _saver(path: Path, at_step: int, record: dict[str, float]) -> Any:
    """A callback that writes a (sharded) checkpoint once ``at_step`` optimiser steps are done."""
    import lightning.pytorch as pl

    class SaveAt(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == at_step and "save_s" not in record:
                t0 = time.perf_counter()
                trainer.save_checkpoint(path)
                record["save_s"] = time.perf_counter() - t0

    return SaveAt()


def _fit(accelerator: str, world: int, max_steps: int, ckpt_path: str | None, callbacks: list[Any]) -> tuple[Any, Any]:
    import lightning.pytorch as pl

    from unimage.train.strategy import UniMAGEFSDPStrategy

    scale = _scale()
    module = _module(scale.llm(scale.fsdp_layers, vocab_size=16), scale.fsdp_tokens, seed=0)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=world,
        strategy=UniMAGEFSDPStrategy(sharding_strategy="FULL_SHARD", state_dict_type="sharded"),
        precision="bf16-mixed" if accelerator == "cuda" else "32-true",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return trainer, module


def main(argv: Sequence[str] | None = None) -> int:
    """One rank of the FSDP step (started by ``run_fsdp``); rank 0 writes ``fsdp_result.json``."""
    parser = argparse.ArgumentParser(prog="python -m unimage.gpucheck.fsdp")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", required=True)
    args = parser.parse_args(argv)
    os.environ["GPUCHECK_SCALE"] = args.scale
    accelerator = os.environ.get("GPUCHECK_ACCELERATOR", "cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    import warnings

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")  # the data is seeded by the step
    from torch.distributed.fsdp import FullyShardedDataParallel

    from unimage.model.mot import MoTModel

    scale = _scale()
    llm = scale.llm(scale.fsdp_layers, vocab_size=16)
    with torch.device("meta"):
        params = sum(p.numel() for p in MoTModel(llm).parameters())
    ckpt = args.out / "sharded.ckpt"
    saved: dict[str, float] = {}
    t0 = time.perf_counter()
    trainer, cont = _fit(accelerator, world, 2, None, [_saver(ckpt, 1, saved)])
    fit_s = time.perf_counter() - t0
    units = sum(isinstance(m, FullyShardedDataParallel) for m in trainer.strategy.model.modules())
    peak = torch.cuda.max_memory_allocated() / 2**30 if accelerator == "cuda" else None
    t1 = time.perf_counter()
    _, resumed = _fit(accelerator, world, 2, str(ckpt), [])
    resume_s = time.perf_counter() - t1
    if rank == 0:
        files = sorted(p.name for p in ckpt.iterdir()) if ckpt.is_dir() else [ckpt.name]
        result = {
            "layers": scale.fsdp_layers,
            "tokens": cont.batch.length,
            "params": params,
            "precision": "bf16-mixed" if accelerator == "cuda" else "32-true",
            "fsdp_units": units,
            "continuous": {"losses": cont.losses, "step_s": [round(t, 4) for t in cont.step_s]},
            "resumed": {"losses": resumed.losses, "step_s": [round(t, 4) for t in resumed.step_s]},
            "checkpoint": {
                "after_step": 1,
                "files": files,
                "shard_files": sum(f.endswith(".distcp") for f in files),
                "bytes": sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file()),
                "save_s": round(saved.get("save_s", float("nan")), 3),
            },
            "fit_s": round(fit_s, 3),
            "resume_fit_s": round(resume_s, 3),
            "peak_mem_gib": None if peak is None else round(peak, 3),
        }
        tmp = args.out / (RESULT + ".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(args.out / RESULT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
