"""Shared fixtures of the diagnostics tests: a random tiny BAGEL-layout checkpoint (and an ``id_prompting`` copy) and
a small SynthStory set (64 px keyframes, 3-4 shot held-out stories), each made once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unimage.data.synthstory import SynthStoryConfig, generate

SET = SynthStoryConfig(
    seed=0,
    train_stories=12,
    text_stories=12,
    pairs=0,
    eval_stories=3,
    image_size=64,
    max_characters=2,
    train_shots=(2, 3),
    text_shots=(2, 4),
    eval_shots=(3, 4),
)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("diag_synth") / "synth"
    generate(out, SET)
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unimage.model.checkpoint import write_tiny_bagel_dir

    return write_tiny_bagel_dir(tmp_path_factory.mktemp("diag_ckpt"), seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt_id(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights with ``id_prompting: true`` (a checkpoint trained with In-Context ID Prompting)."""
    out = tmp_path_factory.mktemp("diag_ckpt_id")
    for p in tiny_ckpt.iterdir():
        if p.name == "config.json":
            data = json.loads(p.read_text())
            data["id_prompting"] = True
            (out / p.name).write_text(json.dumps(data))
        elif p.is_file():
            os.symlink(p, out / p.name)
    return out


@pytest.fixture(scope="session")
def director(tiny_ckpt: Path):
    from unimage.infer.config import SamplingConfig
    from unimage.infer.director import Director

    return Director.from_pretrained(tiny_ckpt, config=SamplingConfig(max_entry_tokens=24), device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are dominated by per-op overhead; one intra-op thread is faster and steadier on a shared box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
