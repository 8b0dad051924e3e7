"""A per-client token bucket, kept in the app (one per API worker process).

Each client key (its address) gets ``burst`` tokens, refilled at ``rate`` per second; a
request takes one or is told how long to wait. The table is bounded: when it holds
``max_clients`` keys, the buckets that are full again (idle clients) are dropped, and if
that frees nothing, the oldest half.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets per client key."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> int:
        """Take a token for ``key``: 0 if allowed, else whole seconds to wait (>= 1)."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        if key not in self._buckets and len(self._buckets) >= self.max_clients:
            self._evict(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0

    def _evict(self, now: float) -> None:
        full = [
            k
            for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_clients:
            for k in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[k]
