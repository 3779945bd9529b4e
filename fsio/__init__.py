"""Small file-system helpers shared by every package (``unimage``, ``bench``, ``ablations``, ``reports``, ``dashboard``).

A leaf package: pure Python, standard library only, importing nothing of the project, so ``bench`` (which must not
import ``unimage``) can use it too.
"""

from fsio.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_writer,
    clean_stale_temps,
    fsync_dir,
)

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "clean_stale_temps",
    "fsync_dir",
]
