"""Shared set-up of the training tests: a very small SynthStory set (2–3 shots, 32 px) and matching budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

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
