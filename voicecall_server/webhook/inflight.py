"""A cap on unauthenticated webhook requests in flight per source IP (reference 8.1 step 4).

A client that opens many slow requests before their signatures are checked would otherwise tie up
the listener; each source gets ``per_key`` concurrent pre-auth requests and the rest are refused
(429) before their bodies are read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class InflightLimiter:
    def __init__(self, per_key: int = 8) -> None:
        if per_key <= 0:
            raise ValueError("per_key must be positive")
        self.per_key = per_key
        # Only sources with requests in flight have an entry, so the dict is bounded by concurrency.
        self._counts: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= self.per_key:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0)
        if count <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] = count - 1

    def in_flight(self, key: str) -> int:
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        """Number of sources with at least one request in flight."""
        return len(self._counts)

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[bool]:
        """Yields whether the request was admitted; an admitted slot is released on exit."""
        admitted = self.try_acquire(key)
        try:
            yield admitted
        finally:
            if admitted:
                self.release(key)
