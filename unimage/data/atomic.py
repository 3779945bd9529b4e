"""Atomic file writes: write to a temporary name in the same folder, then rename over the target.

Why: a killed generator or trainer must never leave a half-written file that a later run trusts as complete
(DESIGN.md §3.4). ``os.replace`` is atomic on POSIX and Windows when source and target share a filesystem,
which a sibling temporary file guarantees.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders.

    Args:
        path: Target file.
        data: Full file content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode(encoding))
