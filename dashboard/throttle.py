"""Throttling of wrong admin tokens: after a few free tries, each failure doubles the wait before the next try.

Why global (one per app process) and not per session: a guesser opens a new browser session for free, and
Streamlit does not reliably know client addresses behind a proxy. The price is that a guesser also delays the real
admin for at most :data:`MAX_WAIT_S`; a correct token resets the count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FREE_TRIES = 5
MAX_WAIT_S = 300.0


class Throttle:
    """Counts consecutive failures; `wait` is how long the next attempt must wait (0 when allowed).

    Args:
        free_tries: failures allowed without waiting.
        max_wait_s: cap of the doubling wait (1 s after the first extra failure, then 2, 4, ...).
        clock: monotonic seconds (``time.monotonic``); tests inject a fake one.
    """

    def __init__(
        self, free_tries: int = FREE_TRIES, max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] | None = None
    ) -> None:
        self.free_tries = free_tries
        self.max_wait_s = max_wait_s
        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._last_failure = 0.0

    def wait(self) -> float:
        """Seconds until the next attempt may be checked (0.0: check it now)."""
        with self._lock:
            extra = self._failures - self.free_tries
            if extra < 0:
                return 0.0
            delay = min(self.max_wait_s, 2.0**extra)
            return max(0.0, self._last_failure + delay - self.clock())

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._last_failure = self.clock()

    def success(self) -> None:
        with self._lock:
            self._failures = 0
