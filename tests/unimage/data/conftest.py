"""A small SynthStory set shared by the data tests (generated once per session, in well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimage.data.synthstory import SynthStoryConfig, generate

SMALL = SynthStoryConfig(
    seed=7, train_stories=6, text_stories=4, pairs=5, eval_stories=4, image_size=96, refs_per_character=2
)


@pytest.fixture(scope="session")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(out, SMALL)
    return out
