"""A 2-process FSDP run on CPU (gloo) through ``unimage.train.cli``, checked against a 2-process DDP run.

Both runs see the same data on the same ranks with the same seed, so FSDP (sharded parameters, gradients, optimiser
state, activation checkpointing) must reproduce DDP's losses step by step and its EMA export. The FSDP run is stopped
after the ``icl`` stage and resumed from its sharded ``last.ckpt`` for the ``del`` step, which also checks that the
sharded checkpoint restores weights, optimiser, EMA shards and data position.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tests._helpers.train import run_fit, two_process_config

FSDP = {"class_path": "unimage.train.strategy.UniMAGEFSDPStrategy", "init_args": {"sharding_strategy": "FULL_SHARD"}}


def _losses(run_dir: Path) -> dict[int, float]:
    rows = pd.read_csv(run_dir / "logs" / "csv" / "metrics.csv").dropna(subset=["train/loss"])
    return {int(s): float(v) for s, v in zip(rows["step"], rows["train/loss"], strict=True)}


def _steps(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(r) for r in (run_dir / name).read_text().splitlines()]


@pytest.mark.slow
def test_two_process_fsdp_on_cpu_matches_ddp_and_resumes(tiny_set, tmp_path):
    from torch.distributed.checkpoint import FileSystemReader

    from unimage.model.checkpoint import load_bagel_dir

    cfg = two_process_config(tiny_set) | {
        "checkpoint": {"every_n_train_steps": 2},
        "ema": {"decay": 0.5},  # far from both the initial and the final weights after 3 steps
    }
    ddp = tmp_path / "ddp"
    run_fit(cfg, ddp)

    cfg["trainer"]["strategy"] = FSDP
    fsdp = tmp_path / "fsdp"
    run_fit(cfg, fsdp, "--trainer.max_steps", "2")  # stop after the icl stage

    # A sharded checkpoint: one file per rank, each holding about half of every model tensor's elements.
    last = fsdp / "checkpoints" / "last.ckpt"
    assert last.is_dir() and {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= {p.name for p in last.iterdir()}
    meta = FileSystemReader(str(last)).read_metadata()
    per_rank: Counter[str] = Counter()
    for index, info in meta.storage_data.items():
        if index.fqn.startswith("model."):
            chunk = meta.state_dict_metadata[index.fqn].chunks[index.index]  # type: ignore[union-attr]
            per_rank[info.relative_path] += math.prod(chunk.sizes)
    full = torch.load(ddp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    total = sum(t.numel() for t in full.values())
    assert sum(per_rank.values()) == total
    assert sorted(per_rank) == ["__0_0.distcp", "__1_0.distcp"]
    assert all(0.4 * total < n < 0.6 * total for n in per_rank.values()), (per_rank, total)
    assert not json.loads((fsdp / "train_status.json").read_text())["complete"]
    got_loss = _losses(fsdp)  # the resumed run starts a new metrics.csv

    run_fit(cfg, fsdp, "--trainer.max_steps", "3")  # resumes from the sharded last.ckpt for the del step

    # Same data order on both ranks as DDP, the resumed step included.
    for name in ("batches.jsonl", "batches.rank1.jsonl"):
        got, want = _steps(fsdp, name), _steps(ddp, name)
        assert [r["step"] for r in got] == [0, 1, 2]
        assert [r["ids"] for r in got] == [r["ids"] for r in want]
    # Losses: finite and equal to DDP's on every step (after sharded updates and the resume).
    got_loss, want_loss = got_loss | _losses(fsdp), _losses(ddp)
    assert sorted(got_loss) == sorted(want_loss) == [0, 1, 2]
    for step, value in want_loss.items():
        assert math.isfinite(got_loss[step])
        assert got_loss[step] == pytest.approx(value, rel=1e-4, abs=1e-5), step
    # The EMA export is gathered from the shards and equals DDP's (which never sharded anything).
    status = json.loads((fsdp / "train_status.json").read_text())
    assert status["complete"] and status["global_step"] == 3
    got_ema = load_file(fsdp / "checkpoints" / "export" / "ema.safetensors")
    want_ema = load_file(ddp / "checkpoints" / "export" / "ema.safetensors")
    assert set(got_ema) == set(want_ema)
    for name, tensor in want_ema.items():
        torch.testing.assert_close(got_ema[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    raw = {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}
    moved = [k for k in want_ema if k in raw and not torch.equal(raw[k], want_ema[k])]
    assert moved, "the EMA export should differ from the raw trained weights (decay 0.5)"
    torch.testing.assert_close(
        load_file(fsdp / "checkpoints" / "export" / "ae.safetensors"),
        load_file(ddp / "checkpoints" / "export" / "ae.safetensors"),
    )
    assert load_bagel_dir(fsdp / "checkpoints" / "export").model is not None


def test_hybrid_shard_is_refused_on_the_cpu_with_a_clear_message():
    from unimage.train.strategy import UniMAGEFSDPStrategy

    s = UniMAGEFSDPStrategy(sharding_strategy="HYBRID_SHARD", parallel_devices=[torch.device("cpu")])
    with pytest.raises(ValueError, match="HYBRID_SHARD is not supported on the CPU"):
        s._setup_model(torch.nn.Linear(2, 2))


def test_precision_plugin_passes_the_train_batch_through():
    from lightning.pytorch.plugins.precision import FSDPPrecision

    from unimage.data.datamodule import TrainBatch
    from unimage.train.strategy import BatchKeepingFSDPPrecision, UniMAGEFSDPStrategy

    s = UniMAGEFSDPStrategy()
    s.precision_plugin = FSDPPrecision("bf16-true")  # what the accelerator connector assigns
    plugin = s.precision_plugin
    assert isinstance(plugin, BatchKeepingFSDPPrecision) and plugin.precision == "bf16-true"
    batch = TrainBatch(index=0, slot=0, stage="icl", packs={})
    assert plugin.convert_input(batch) is batch
    assert plugin.convert_input({"x": torch.ones(2)})["x"].dtype == torch.bfloat16
