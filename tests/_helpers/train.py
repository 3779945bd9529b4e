"""Training configs of the tests that run ``unimage fit`` (in a subprocess when the strategy spawns ranks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests._helpers.data import PACKER

REPO = Path(__file__).resolve().parents[2]


def data_section(synth: Path) -> dict:
    """The ``data`` section of a training config for ``synth``."""
    return {
        "synthstory": str(synth),
        "packer": {
            "expected_num_tokens": PACKER.expected_num_tokens,
            "max_num_tokens": PACKER.max_num_tokens,
            "max_num_tokens_per_sample": PACKER.max_num_tokens_per_sample,
            "max_buffer_size": PACKER.max_buffer_size,
        },
        "images": {"vae_max_size": 32, "vae_min_size": 16, "vit_max_size": 28, "vit_min_size": 14},
    }


def two_process_config(synth: Path) -> dict:
    """A tiny icl (2 steps) → del (1 step) run on 2 CPU processes with DDP; tests swap the strategy."""
    return {
        "model": {"size": "tiny", "icl_steps": 2, "del_steps": 1, "lr": 1e-3, "attention_backend": "sdpa"},
        "data": data_section(synth),
        "trainer": {
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp_find_unused_parameters_true",
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
    }


def run_fit(cfg: dict, run_dir: Path, *overrides: str) -> None:
    """Run ``unimage.train.cli fit`` in a subprocess (multi-process strategies spawn their own ranks)."""
    cfg_path = run_dir.with_suffix(".yaml")
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "unimage.train.cli", "fit", "--config", str(cfg_path), "--run_dir", str(run_dir)]
    proc = subprocess.run(
        [*cmd, *overrides],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
