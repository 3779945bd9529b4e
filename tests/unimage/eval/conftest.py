"""Fixtures of the diagnostics tests: a Director on the shared tiny checkpoint (``tests/unimage/conftest.py``) and
a small SynthStory set (64 px keyframes, 3-4 shot held-out stories), each made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers.director import one_thread
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
def director(tiny_ckpt: Path):
    from unimage.infer.config import SamplingConfig
    from unimage.infer.director import Director

    return Director.from_pretrained(tiny_ckpt, config=SamplingConfig(max_entry_tokens=24), device="cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield
