"""In-process rate limits: one token bucket per client key.

A bucket holds up to ``requests`` tokens and refills at ``requests / seconds`` per second; a request takes one.
State lives in the worker process, so with N gunicorn workers a client can get up to N times the limit, and a
restart forgets it; put a shared limiter (the proxy, or a Redis-backed one) in front when that matters
(docs/deploy.md). Keys are client addresses or keyed hashes, never raw student numbers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from electives.web.config import RateLimit

_MAX_KEYS = 50_000  # beyond this the least recently seen buckets are forgotten (bounded memory under a flood)


class RateLimiter:
    """Token buckets for one :class:`~electives.web.config.RateLimit`; thread-safe."""

    def __init__(
        self, limit: RateLimit, clock: Callable[[], float] = time.monotonic, max_keys: int = _MAX_KEYS
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._rate = limit.requests / limit.seconds if not limit.unlimited else math.inf
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, time)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (float(self.limit.requests), now))
        return min(float(self.limit.requests), tokens + (now - then) * self._rate)

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it may now (takes nothing)."""
        if self.limit.unlimited:
            return None
        with self._lock:
            tokens = self._tokens(key, self._clock())
        return None if tokens >= 1 else (1 - tokens) / self._rate

    def hit(self, key: str) -> float | None:
        """Take one token for ``key``: None when allowed, else the seconds to wait (nothing taken)."""
        if self.limit.unlimited:
            return None
        with self._lock:
            now = self._clock()
            tokens = self._tokens(key, now)
            if tokens < 1:
                return (1 - tokens) / self._rate
            self._buckets[key] = (tokens - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return None

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
