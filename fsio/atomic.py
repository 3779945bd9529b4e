"""Atomic, durable file writes, and the cleanup of temporary files left by killed writers.

Why (DESIGN.md §3.4): a killed stage must never leave a half-written file under a name that a later stage trusts.
The content goes to a temporary sibling (same folder, so the same filesystem), is flushed and ``fsync``'d, renamed
over the target with ``os.replace`` (atomic on POSIX and Windows), and the folder is ``fsync``'d so the rename itself
survives a crash of the machine, not only of the process.

A writer killed before the rename leaves its temporary file behind. Its name records who wrote it,
``.<target>.<pid>@<host>.<random>.tmp``, so the next write of the same target (or `clean_stale_temps` over a
folder) removes the temporary files whose writer is gone: on this host, a pid that no longer runs; from another
host, or in an older naming, files older than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "STALE_AFTER_S",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "clean_stale_temps",
    "fsync_dir",
    "writer_gone",
    "writer_tag",
]

#: Age after which a temporary file whose writer cannot be checked (another host, an older naming) counts as stale.
STALE_AFTER_S = 3600.0

_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.(?P<token>[0-9a-f]{8})\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}@{_host()}.{secrets.token_hex(4)}.tmp")


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """``fsync`` a folder so a rename or a new entry in it is on disk (a no-op where folders cannot be opened)."""
    if os.name == "nt":  # Windows cannot open a directory for fsync; NTFS journals the rename itself
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str], mode: Literal["wb", "w"] = "wb", *, encoding: str = "utf-8", durable: bool = True
) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit it replaces ``path``, on an error it goes.

    Args:
        path: Target file; its parent folders are created.
        mode: ``"wb"`` (bytes) or ``"w"`` (text in ``encoding``).
        encoding: Text encoding for ``mode="w"``.
        durable: ``fsync`` the file before the rename and the folder after it. False only for files that are cheap
            to regenerate and written by the thousand, where a machine crash may lose them but a killed process
            still never leaves a partial file.

    Yields:
        The open file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target=target.name)
    tmp = _temp_name(target)
    # O_EXCL: never write through someone else's file; 0o666 & ~umask: the permissions a plain open() would give.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        handle = os.fdopen(fd, "w", encoding=encoding, newline="") if mode == "w" else os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """A temporary sibling *path* of ``path`` for writers that want a file name (``safetensors.save_file``,
    ``shutil.copyfile``); on a clean exit the file written there replaces ``path`` (fsync'd as in `atomic_writer`),
    on an error it is removed.

    Yields:
        The temporary path (not yet created).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target=target.name)
    tmp = _temp_name(target)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see `atomic_writer`); returns the path."""
    with atomic_writer(path, "wb", durable=durable) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", *, durable: bool = True
) -> Path:
    """Write ``text`` to ``path`` atomically, newlines as given (no platform translation); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding), durable=durable)


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, durable: bool = True, **dumps: Any) -> Path:
    """Write ``json.dumps(data, indent=2, **dumps)`` and a final newline atomically; returns the path."""
    return atomic_write_text(path, json.dumps(data, **({"indent": 2} | dumps)) + "\n", durable=durable)


def writer_tag() -> str:
    """``<pid>@<host>`` of this process, as temporary names carry it (see `writer_gone`)."""
    return f"{os.getpid()}@{_host()}"


def writer_gone(tag: str) -> bool:
    """Whether the writer named by a `writer_tag` is known to be dead: same host and no such pid (else False)."""
    pid, _, host = tag.partition("@")
    return pid.isdigit() and host == _host() and not _pid_running(int(pid))


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot be checked: keep the file
    return True


def clean_stale_temps(
    folder: str | os.PathLike[str], target: str | None = None, *, now: float | None = None
) -> list[Path]:
    """Remove temporary files of dead writers in ``folder`` (not recursive); returns what was removed.

    Args:
        folder: The folder to look in (a missing folder has nothing to clean).
        target: Only temporary files of this target file name; None for every target in the folder.
        now: The current time (``time.time()``), for tests.

    A file counts as stale when its name says it was written on this host by a pid that no longer runs, or when it
    is older than :data:`STALE_AFTER_S` and its writer cannot be checked (another host, or the ``.<target>.*.tmp``
    names of older versions). Files of running writers are kept.
    """
    folder = Path(folder)
    prefix = f".{target}." if target is not None else "."
    removed: list[Path] = []
    host, clock = _host(), time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        m = _TEMP_RE.match(name)
        if target is not None and m is not None and m.group("target") != target:
            continue  # a longer target name that starts with the same prefix
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if m is not None and m.group("host") == host:
                stale = not _pid_running(int(m.group("pid")))
            else:
                stale = clock - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue  # its writer renamed or removed it meanwhile
    return removed
