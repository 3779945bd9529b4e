"""Kill a training run mid-stage with SIGKILL and resume it: it continues from the saved step with the same data."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from tests._helpers.data import IMAGES, PACKER
from tests._helpers.train import data_section
from unimage.data.datamodule import TrainDataConfig, UniMAGEDataModule
from unimage.model.config import get_config

REPO = Path(__file__).resolve().parents[3]
ICL, DEL, EVERY = 1, 3, 2


def _config(tiny_set: Path) -> dict:
    return {
        "model": {
            "size": "tiny",
            "id_prompting": True,
            "icl_steps": ICL,
            "del_steps": DEL,
            "lr": 1e-3,
            "attention_backend": "sdpa",
            "seed": 0,
        },
        "data": data_section(tiny_set),
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "checkpoint": {"every_n_train_steps": EVERY},
        "ema": {"decay": 0.9},
    }


def _launch(cfg_path: Path, run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "unimage.train.cli", "fit", "--config", str(cfg_path), "--run_dir", str(run_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _reference_order(tiny_set: Path, n: int) -> list[dict]:
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES)
    dm.bind(TrainDataConfig(model=get_config("tiny", id_prompting=True, attention_backend="sdpa"), icl_steps=ICL))
    dm.setup("fit")
    return [{k: p.ids for k, p in b.packs.items()} for b in itertools.islice(iter(dm.train_dataloader()), n)]


def test_sigkill_mid_stage_then_resume_same_order(tiny_set, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tiny_set)))
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"

    proc = _launch(cfg_path, run_dir)
    deadline = time.monotonic() + 240
    while not last.is_file():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-``del`` stage: the checkpoint is at step 2 of 4 (del = steps 1..3)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == EVERY
    assert not (run_dir / "train_status.json").exists()
    killed_rows = [json.loads(r) for r in (run_dir / "batches.jsonl").read_text().splitlines()]

    proc = _launch(cfg_path, run_dir)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    rows = [json.loads(r) for r in (run_dir / "batches.jsonl").read_text().splitlines()]
    resumed = rows[len(killed_rows) :]
    assert resumed[0]["step"] == EVERY  # continues from the saved step (steps after it were lost with the kill)
    assert [r["step"] for r in resumed] == list(range(EVERY, ICL + DEL))
    # The data order of the whole run (last record per step) equals an uninterrupted stream.
    by_step = {r["step"]: r for r in rows}
    reference = _reference_order(tiny_set, ICL + DEL)
    assert [by_step[s]["ids"] for s in range(ICL + DEL)] == reference
    assert [by_step[s]["stage"] for s in range(ICL + DEL)] == ["icl"] * ICL + ["del"] * DEL
    status = json.loads((run_dir / "train_status.json").read_text())
    assert status["complete"] and status["global_step"] == ICL + DEL
    assert (run_dir / "checkpoints" / "export" / "ema.safetensors").is_file()
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
