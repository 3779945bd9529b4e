"""Per-arm ``status.json``: which stages finished, with the hash of the resolved config that produced them.

The runner asks one question per stage: *is it done for the config I have now?* A stage is done when status.json
records it ``done`` under the current stage hash (:func:`ablations.config.stage_hashes`, which chains upstream
hashes, so a change upstream invalidates everything below). A stage recorded ``running`` was interrupted: with the
same hash its own resume logic continues (training from ``last.ckpt``, generation and evaluation per story); with
another hash its folder is stale and is moved aside before the stage runs again.

Writes are atomic (temporary file, fsync, rename), so a ``kill -9`` at any moment leaves either the old or the new
status, never a torn file. An unreadable status.json is an error naming the file (never silently treated as empty:
that would redo finished stages).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import fsio
from formats.rundir import STATUS_FILE

StageState = Literal["running", "done"]
Pending = Literal["done", "new", "changed", "interrupted", "interrupted-changed"]


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsync'd, then renamed over it."""
    fsio.atomic_write_text(path, text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Atomically write indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def now() -> str:
    """UTC timestamp, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ArmStatus:
    """The status of one arm, read from and written to ``<arm>/status.json``."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, arm_dir: str | Path, arm: str = "", sweep: str = "") -> ArmStatus:
        """Read ``<arm_dir>/status.json`` (a fresh status if absent).

        Raises:
            ValueError: the file exists but is not a status object (the message names it).
        """
        path = Path(arm_dir) / STATUS_FILE
        if not path.is_file():
            return cls(path, {"arm": arm, "sweep": sweep, "stages": {}})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); fix or delete it (deleting redoes every stage)") from e
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
            raise ValueError(f"{path}: expected an object with a 'stages' mapping")
        return cls(path, data)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """Stage name → its record (``state``, ``hash``, times, ``info``)."""
        stages: dict[str, dict[str, Any]] = self.data["stages"]
        return stages

    def state(self, stage: str, current_hash: str) -> Pending:
        """Where ``stage`` stands relative to ``current_hash``: ``done`` (skip) or why it must run."""
        rec = self.stages.get(stage)
        if rec is None:
            return "new"
        same = rec.get("hash") == current_hash
        if rec.get("state") == "done":
            return "done" if same else "changed"
        return "interrupted" if same else "interrupted-changed"

    def info(self, stage: str) -> dict[str, Any]:
        """What a finished stage reported (e.g. the export dir, the outputs timestamp)."""
        rec = self.stages.get(stage) or {}
        info = rec.get("info") or {}
        return dict(info)

    def start(self, stage: str, stage_hash: str) -> None:
        """Record that ``stage`` began under ``stage_hash`` (written before any of its work)."""
        old = self.stages.get(stage) or {}
        attempts = int(old.get("attempts", 0)) + 1 if old.get("hash") == stage_hash else 1
        self.stages[stage] = {"state": "running", "hash": stage_hash, "started_at": now(), "attempts": attempts}
        self.save()

    def finish(self, stage: str, stage_hash: str, seconds: float, info: dict[str, Any]) -> None:
        """Record that ``stage`` finished under ``stage_hash`` (written after all of its files)."""
        rec = self.stages.get(stage) or {}
        rec.update(state="done", hash=stage_hash, finished_at=now(), seconds=round(seconds, 3), info=info)
        self.stages[stage] = rec
        self.save()

    def invalidate(self, stages: list[str]) -> None:
        """Forget ``stages`` (their outputs were moved aside)."""
        for s in stages:
            self.stages.pop(s, None)
        self.save()

    def save(self) -> None:
        """Atomically write status.json."""
        self.data["updated_at"] = now()
        atomic_write_json(self.path, self.data)
