"""An exclusive lock per arm run folder, so two ``unimage sweep`` processes never work on the same arm.

Without it two sweeps over one runs folder train the same arm twice into the same files (``batches.jsonl`` with
twice the records, ``metrics.csv`` doubled). The lock is a file ``<arm>/.lock`` created with ``O_CREAT | O_EXCL``
(atomic on every local file system), holding the holder's pid, host and start time. A lock whose holder is dead is
stale: on the same host that is checked with ``kill(pid, 0)``; a lock from another host is never taken over
(its process cannot be checked from here), and the message says how to remove it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".lock"


class ArmLocked(RuntimeError):
    """Another live process holds the arm's lock (the message names it)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ArmLock:
    """``with ArmLock(arm_dir): ...`` holds ``<arm_dir>/.lock`` for the block.

    Args:
        root: the arm's run folder (created if missing).
        wait: seconds to wait for a live holder to finish (0: fail at once with `ArmLocked`).
        poll: seconds between tries while waiting.
    """

    def __init__(self, root: str | Path, wait: float = 0.0, poll: float = 1.0) -> None:
        self.path = Path(root) / LOCK_NAME
        self.wait, self.poll = wait, poll
        self._held = False

    def holder(self) -> dict[str, object] | None:
        """The current holder's record, or None when the lock is free (an unreadable record counts as held)."""
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": None, "started": None}

    def _stale(self, rec: dict[str, object]) -> bool:
        pid, host = rec.get("pid"), rec.get("host")
        return isinstance(pid, int) and host == socket.gethostname() and not _alive(pid)

    def acquire(self) -> None:
        """Take the lock, removing a stale one; wait up to ``wait`` seconds for a live holder; else `ArmLocked`."""
        deadline = time.monotonic() + self.wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                rec = self.holder()
                if rec is None:
                    continue  # released between our open and our read
                if self._stale(rec):
                    self.path.unlink(missing_ok=True)
                    continue
                if time.monotonic() >= deadline:
                    raise ArmLocked(
                        f"{self.path.parent} is in use by pid {rec.get('pid')} on host {rec.get('host')} "
                        f"(since {time.ctime(float(str(rec.get('started') or 0)))}); wait for it, rerun with --wait, "
                        f"or remove {self.path} if that process is gone"
                    ) from None
                time.sleep(self.poll)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(record)
            self._held = True
            return

    def release(self) -> None:
        """Give the lock back (only if this object holds it)."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> ArmLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
