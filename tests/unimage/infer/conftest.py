"""Shared fixtures of the Director tests: one random tiny BAGEL-layout checkpoint (and an id_prompting copy) and one
SynthStory evaluation set per session."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from unimage.infer.config import SamplingConfig

# Small but real: CFG on (three branches), a few steps, 64 px keyframes (4x4 latent tokens) for speed.
FAST = SamplingConfig(
    max_entry_tokens=12,
    max_characters=2,
    max_environments=2,
    max_shots=3,
    num_timesteps=3,
    image_height=64,
    image_width=64,
)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    from unimage.model.checkpoint import write_tiny_bagel_dir

    return write_tiny_bagel_dir(tmp_path_factory.mktemp("tiny_ckpt"), seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt_id(tiny_ckpt, tmp_path_factory) -> Path:
    """The same weights with ``id_prompting: true`` in config.json (a checkpoint trained with ID prompting)."""
    out = tmp_path_factory.mktemp("tiny_ckpt_id")
    for p in tiny_ckpt.iterdir():
        if p.name == "config.json":
            data = json.loads(p.read_text())
            data["id_prompting"] = True
            (out / p.name).write_text(json.dumps(data))
        elif p.is_file():
            os.symlink(p, out / p.name)
        else:
            shutil.copytree(p, out / p.name)
    return out


@pytest.fixture(scope="session")
def director(tiny_ckpt):
    from unimage.infer.director import Director

    return Director.from_pretrained(tiny_ckpt, config=FAST, device="cpu")


@pytest.fixture(scope="session")
def synth_eval(tmp_path_factory) -> Path:
    from unimage.data.synthstory import SynthStoryConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthStoryConfig(seed=0, train_stories=0))
    return out / "eval" / "ViStory"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are dominated by per-op overhead; one intra-op thread is faster and steadier on a shared box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
