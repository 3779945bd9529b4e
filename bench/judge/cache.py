"""On-disk cache of judge answers, keyed by (model, full prompt, image hash), in one SQLite file.

Why SQLite: every insert is an atomic transaction (an interrupted run never leaves a half-written entry),
several judge threads can share it, and one file is easy to ship next to a results directory. Only
successful answers are stored, so a re-run retries the requests that failed and costs nothing for the rest.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from PIL import Image

from bench.judge.base import JudgeScore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judge_cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    score INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    raw TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def image_digest(image: Image.Image) -> str:
    """sha256 of an image's size and RGB pixels (independent of file format and of the JPEG encoder)."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def cache_key(model: str, prompt: object, image_hash: str) -> str:
    """Key of one question: model id, the full prompt (every text part, roles and request settings), image hash."""
    payload = json.dumps({"model": model, "prompt": prompt, "image": image_hash}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class JudgeCache:
    """A thread-safe SQLite-backed map key → `JudgeScore`."""

    def __init__(self, path: Path | str) -> None:
        """Open (creating if needed) the cache file at `path`."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)

    def get(self, key: str) -> JudgeScore | None:
        """The cached answer, marked `cached=True, attempts=0`, or None."""
        with self._lock:
            row = self._conn.execute("SELECT score, raw FROM judge_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return JudgeScore(score=int(row[0]), attempts=0, cached=True, raw=str(row[1]))

    def put(self, key: str, model: str, answer: JudgeScore) -> None:
        """Store a successful answer (failed answers are never cached, so re-runs retry them)."""
        if answer.failed:
            return
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO judge_cache (key, model, score, attempts, raw, created) VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, answer.score, answer.attempts, answer.raw, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
