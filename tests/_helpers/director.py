"""Tiny BAGEL-layout checkpoints and sampling settings of the Director and diagnostics tests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unimage.infer.config import SamplingConfig

#: Director settings of the inference tests. Small but real: CFG on (three branches), a few steps, 64 px keyframes
#: (4x4 latent tokens) for speed.
FAST = SamplingConfig(
    max_entry_tokens=12,
    max_characters=2,
    max_environments=2,
    max_shots=3,
    num_timesteps=3,
    image_height=64,
    image_width=64,
)


def with_id_prompting(ckpt: Path, out: Path) -> Path:
    """``out`` = the checkpoint ``ckpt`` with ``id_prompting: true`` in its config.json (weights symlinked).

    The same weights as a checkpoint trained with In-Context ID Prompting.
    """
    out.mkdir(parents=True, exist_ok=True)
    for p in ckpt.iterdir():
        if p.name == "config.json":
            data = json.loads(p.read_text())
            data["id_prompting"] = True
            (out / p.name).write_text(json.dumps(data))
        elif p.is_file():
            os.symlink(p, out / p.name)
        else:
            shutil.copytree(p, out / p.name)
    return out


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: tiny models are dominated by per-op overhead, so it is faster and steadier on a shared box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
