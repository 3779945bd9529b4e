"""A small SynthStory set shared by the data tests (generated once per session, in well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._helpers.data import SMALL
from unimage.data.synthstory import generate


@pytest.fixture(scope="session")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(out, SMALL)
    return out
