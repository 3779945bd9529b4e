"""The project's one atomic-write helper, and every writer that now goes through it (issue 14 item 8).

The killed writer is real: a child process SIGKILLs itself between writing the temporary file and the rename
(``os.replace`` patched to kill), as a ``kill -9`` at the worst moment would. The old copies left that file forever.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fsio
from fsio.atomic import STALE_AFTER_S

REPO = Path(__file__).resolve().parents[2]

# The project's writers: each must clean what a killed writer of the same file left.
WRITERS = {
    "fsio": "from fsio import atomic_write_text as w",
    "unimage.data.atomic": "from unimage.data.atomic import atomic_write_text as w",
    "ablations.status": "from ablations.status import atomic_write_text as w",
}

_KILLED = """
import os, signal, sys
{import_line}
os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # die after the write, before the rename
w(sys.argv[1], "new content, never visible\\n")
"""


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_killed_writer_leaves_the_old_file_and_the_next_write_cleans_its_temp(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "status.json"
    target.write_text("old\n")
    code = _KILLED.format(import_line=WRITERS[writer])
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert target.read_text() == "old\n"  # never torn, never half-new
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(".status.json."), left
    exec(WRITERS[writer], globals())  # the same writer, in a live process this time
    globals()["w"](target, "next\n")
    assert target.read_text() == "next\n"
    assert _temps(tmp_path) == [], "the dead writer's temporary file is still there"


def test_temps_of_running_writers_and_unrelated_files_are_kept(tmp_path: Path) -> None:
    host = fsio.atomic._host()
    alive = tmp_path / f".a.txt.{os.getppid()}@{host}.0123abcd.tmp"  # our parent: running
    dead_pid = _dead_pid()
    dead = tmp_path / f".a.txt.{dead_pid}@{host}.0123abcd.tmp"
    other_host_fresh = tmp_path / ".a.txt.1@elsewhere.0123abcd.tmp"
    other_host_old = tmp_path / ".a.txt.1@elsewhere.89abcdef.tmp"
    legacy_old = tmp_path / ".a.txt.k3j4h5.tmp"  # mkstemp names of the old copies
    other_target = tmp_path / f".b.txt.{dead_pid}@{host}.0123abcd.tmp"
    longer_name = tmp_path / f".a.txt.bak.{dead_pid}@{host}.0123abcd.tmp"
    for p in (alive, dead, other_host_fresh, other_host_old, legacy_old, other_target, longer_name):
        p.write_text("x")
    old = time.time() - STALE_AFTER_S - 60
    for p in (other_host_old, legacy_old):
        os.utime(p, (old, old))
    removed = fsio.clean_stale_temps(tmp_path, target="a.txt")
    assert sorted(p.name for p in removed) == sorted(p.name for p in (dead, other_host_old, legacy_old))
    assert alive.exists() and other_host_fresh.exists() and other_target.exists() and longer_name.exists()
    assert {p.name for p in fsio.clean_stale_temps(tmp_path)} == {other_target.name, longer_name.name}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid (until the system reuses it)


def test_durable_write_fsyncs_the_file_and_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    fsio.atomic_write_bytes(tmp_path / "x.bin", b"abc")
    assert synced == ["file", "dir"]
    synced.clear()
    fsio.atomic_write_bytes(tmp_path / "y.bin", b"abc", durable=False)
    assert synced == []


def test_an_error_while_writing_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), fsio.atomic_writer(target, "w") as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _temps(tmp_path) == []


def test_written_files_get_plain_permissions_and_exact_bytes(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = fsio.atomic_write_text(tmp_path / "sub" / "t.txt", "a\r\nb\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert path.read_bytes() == b"a\r\nb\n"
    assert fsio.atomic_write_json(tmp_path / "j.json", {"a": 1}).read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(ValueError, match="mode must be"), fsio.atomic_writer(tmp_path / "bad", "a"):  # type: ignore[arg-type]
        pass


def test_fsio_imports_nothing_of_the_project() -> None:
    code = "import sys, fsio; print(sorted(m for m in sys.modules if m.split('.')[0] in {'unimage','bench','ablations','reports','dashboard','torch'}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_atomic_path_for_writers_that_want_a_file_name(tmp_path: Path) -> None:
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")
    with fsio.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".w.safetensors.") and not tmp.exists()
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new" and _temps(tmp_path) == []
    with pytest.raises(OSError), fsio.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert target.read_bytes() == b"new" and _temps(tmp_path) == []
