"""Fixtures of the training tests: a very small SynthStory set (2–3 shots, 32 px); budgets in ``tests._helpers``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._helpers.data import TRAIN_SET
from unimage.data.synthstory import generate


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train_set") / "synth"
    generate(out, TRAIN_SET)
    return out
