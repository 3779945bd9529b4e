"""A 2-process DDP run on CPU (gloo) through ``unimage.train.cli``: ranks read disjoint data, the run completes."""

from __future__ import annotations

import json

import pytest
import torch

from tests._helpers.train import run_fit, two_process_config


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_set, tmp_path):
    cfg = two_process_config(tiny_set)
    cfg["checkpoint"] = {"every_n_train_steps": 3}
    run_dir = tmp_path / "run"
    run_fit(cfg, run_dir)
    rank0 = [json.loads(r) for r in (run_dir / "batches.jsonl").read_text().splitlines()]
    rank1 = [json.loads(r) for r in (run_dir / "batches.rank1.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rank0] == [r["step"] for r in rank1] == [0, 1, 2]
    # Each rank reads its own shard: the first packs of the two ranks share no record.
    assert not set(rank0[0]["ids"]["joint"]) & set(rank1[0]["ids"]["joint"])
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ranks = ckpt["UniMAGEDataModule"]["ranks"]
    assert len(ranks) == 2 and [r["consumed"] for r in ranks] == [3, 3]
    assert json.loads((run_dir / "train_status.json").read_text())["complete"]
    assert (run_dir / "checkpoints" / "export" / "ema.safetensors").is_file()
