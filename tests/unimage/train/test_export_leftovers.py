"""A killed export leaves ``.<export>.tmp-<pid>@<host>``; the next export removes it if that writer is dead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fsio.atomic import writer_gone, writer_tag
from unimage.train.export import _remove_dead_exports


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_exports_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "export"
    host = writer_tag().split("@", 1)[1]
    dead = tmp_path / f".export.tmp-{_dead_pid()}@{host}"
    dead_old = tmp_path / f".export.old-{_dead_pid()}@{host}"
    live = tmp_path / f".export.tmp-{os.getppid()}@{host}"
    elsewhere = tmp_path / ".export.tmp-1@another-host"
    other = tmp_path / f".export2.tmp-{_dead_pid()}@{host}"
    for d in (dead, dead_old, live, elsewhere, other):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "ema.safetensors").write_bytes(b"x")
    _remove_dead_exports(out)
    assert not dead.exists() and not dead_old.exists()
    assert live.exists() and elsewhere.exists() and other.exists()
    assert writer_gone(dead.name.split("-", 1)[1]) and not writer_gone(writer_tag())
