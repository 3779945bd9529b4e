"""The Director's ``batch_cfg`` switch: batched and sequential CFG render the same keyframes."""

from __future__ import annotations

import numpy as np

from unimage.infer.config import SamplingConfig
from unimage.script import Description, Entity, Script, Shot


def _script() -> Script:
    return Script(
        "A cat at the window.",
        (Entity(1, Description("Mia, a grey cat.")),),
        (Entity(1, Description("A rainy window sill.")),),
        tuple(Shot(i, Description(f"Close-up: <Character1> on <Environment1>, take {i}."), None) for i in (1, 2)),
    )


def test_batched_cfg_renders_the_same_keyframes(director):
    assert SamplingConfig().batch_cfg and director.config.batch_cfg  # on by default
    assert director.config.cfg_text_scale > 1 and director.config.cfg_img_scale > 1  # three branches per step
    sequential = director.with_config(batch_cfg=False)
    assert not sequential.config.batch_cfg
    a = [np.asarray(im, dtype=np.int16) for im in director.render(_script())]
    b = [np.asarray(im, dtype=np.int16) for im in sequential.render(_script())]
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        # Velocities agree to ~1e-6; after the VAE decode and uint8 rounding at most a rare 1-level flip.
        assert np.abs(x - y).max() <= 1 and (x != y).mean() < 0.01
    assert np.abs(a[0] - a[1]).max() > 10  # the two shots differ, so equality above is not vacuous
