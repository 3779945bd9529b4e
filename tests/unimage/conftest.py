"""Fixtures shared by the ``unimage`` test packages: one random tiny BAGEL-layout checkpoint per session (and its
``id_prompting`` copy), made only when a test asks for it (the Director and the diagnostics tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._helpers.director import with_id_prompting


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unimage.model.checkpoint import write_tiny_bagel_dir

    return write_tiny_bagel_dir(tmp_path_factory.mktemp("tiny_ckpt"), seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt_id(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights with ``id_prompting: true`` in config.json (a checkpoint trained with ID prompting)."""
    return with_id_prompting(tiny_ckpt, tmp_path_factory.mktemp("tiny_ckpt_id"))
