"""Shared helpers for the script-format tests: the six published UniMAGE scripts by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from .samples import FIXTURE_NAMES


@pytest.fixture(scope="session")
def script_texts(fixtures_dir: Path) -> dict[str, str]:
    """name -> text of every published sample script."""
    folder = fixtures_dir / "unimage_scripts"
    return {name: (folder / name).read_text(encoding="utf-8") for name in FIXTURE_NAMES}
