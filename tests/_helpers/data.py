"""SynthStory sets, budgets and image sizes of the data and training tests."""

from __future__ import annotations

from unimage.data.packer import PackerConfig
from unimage.data.segments import ImageSizes
from unimage.data.synthstory import SynthStoryConfig

#: The data tests' set (generated once per session, in well under a second).
SMALL = SynthStoryConfig(
    seed=7, train_stories=6, text_stories=4, pairs=5, eval_stories=4, image_size=96, refs_per_character=2
)

#: The training tests' set: 2-3 shots at 32 px, with budgets and image sizes to match.
TRAIN_SET = SynthStoryConfig(
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
