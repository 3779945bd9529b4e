"""Shared set-up of the training tests: a very small SynthStory set (2–3 shots, 32 px) and matching budgets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unimage.data.packer import PackerConfig
from unimage.data.segments import ImageSizes
from unimage.data.synthstory import SynthStoryConfig, generate

SET = SynthStoryConfig(
    seed=3,
    train_stories=4,
    text_stories=4,
    pairs=4,
    eval_stories=0,
    image_size=32,
    train_shots=(2, 2),
    text_shots=(2, 3),
    max_characters=2,
)
PACKER = PackerConfig(expected_num_tokens=1024, max_num_tokens=1536, max_num_tokens_per_sample=1536, max_buffer_size=4)
IMAGES = ImageSizes(vae_max_size=32, vae_min_size=16, vit_max_size=28, vit_min_size=14)


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train_set") / "synth"
    generate(out, SET)
    return out


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


REPO = Path(__file__).resolve().parents[3]


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
