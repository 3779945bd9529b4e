"""A 2-process DDP run on CPU (gloo) through ``unimage.train.cli``: ranks read disjoint data, the run completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.unimage.train.conftest import data_section

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_set, tmp_path):
    cfg = {
        "model": {"size": "tiny", "icl_steps": 2, "del_steps": 1, "lr": 1e-3, "attention_backend": "sdpa"},
        "data": data_section(tiny_set),
        "trainer": {
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp_find_unused_parameters_true",
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "checkpoint": {"every_n_train_steps": 3},
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "unimage.train.cli", "fit", "--config", str(cfg_path), "--run_dir", str(run_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rank0 = [json.loads(r) for r in (run_dir / "batches.jsonl").read_text().splitlines()]
    rank1 = [json.loads(r) for r in (run_dir / "batches.rank1.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rank0] == [r["step"] for r in rank1] == [0, 1, 2]
    # Each rank reads its own shard: the first packs of the two ranks share no record.
    assert not set(rank0[0]["ids"]["joint"]) & set(rank1[0]["ids"]["joint"])
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    ranks = ckpt["UniMAGEDataModule"]["ranks"]
    assert len(ranks) == 2 and [r["consumed"] for r in ranks] == [3, 3]
    assert json.loads((run_dir / "train_status.json").read_text())["complete"]
    assert (run_dir / "checkpoints" / "export" / "ema.safetensors").is_file()
