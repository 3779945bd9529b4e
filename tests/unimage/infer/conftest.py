"""Fixtures of the Director tests: a Director on the shared tiny checkpoint (``tests/unimage/conftest.py``) and one
SynthStory evaluation set per session (helpers in ``tests._helpers.director``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers.director import FAST, one_thread


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
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield
