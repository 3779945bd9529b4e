"""Atomic file writes (the project-wide helper of :mod:`fsio.atomic`, re-exported under its old import path).

Why: a killed generator or trainer must never leave a half-written file that a later run trusts as complete
(DESIGN.md §3.4). ``os.replace`` is atomic on POSIX and Windows when source and target share a filesystem,
which a sibling temporary file guarantees.
"""

from __future__ import annotations

from fsio.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
