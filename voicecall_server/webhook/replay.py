"""In-memory replay protection for verified webhooks (reference section 3.7).

A provider (or an attacker holding a captured request) may deliver the same signed request again.
The first layer is per provider: a verified request key seen within the TTL is a replay, and its
events are not applied. The durable, per-call dedupe in the call manager is the second layer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _ExpiringKeys(Generic[T]):
    """Insertion-ordered entries with one TTL, so the oldest entry is also the first to expire."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        if ttl_s <= 0 or max_entries <= 0:
            raise ValueError("ttl_s and max_entries must be positive")
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self, now: float) -> None:
        # Expiry order equals insertion order, so this stops at the first live entry: O(expired).
        entries = self._entries
        while entries:
            key, (expires, _) = next(iter(entries.items()))
            if expires > now:
                break
            del entries[key]

    def _get(self, key: str, now: float) -> tuple[float, T] | None:
        self._prune(now)
        return self._entries.get(key)

    def _put(self, key: str, value: T, now: float) -> None:
        self._entries[key] = (now + self._ttl, value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class ReplayCache(_ExpiringKeys[None]):
    """Verified request keys seen in the last ``ttl_s`` seconds; one instance per provider."""

    def __init__(
        self, ttl_s: float = 600.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(ttl_s, max_entries, clock)

    def seen_or_add(self, key: str) -> bool:
        """True when ``key`` was already seen within the TTL (a replay); otherwise remember it."""
        now = self._clock()
        if self._get(key, now) is not None:
            return True
        self._put(key, None, now)
        return False

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._get(key, self._clock()) is not None


class ResponseCache(_ExpiringKeys[T]):
    """The reply first sent for a replay key, so a signed replay gets the same bytes back.

    A replay must never mint fresh state (a new media-stream token, a new turn): the listener
    answers it from here, or with a safe provider default when the entry has expired.
    """

    def __init__(
        self, ttl_s: float = 120.0, max_entries: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(ttl_s, max_entries, clock)

    def get(self, key: str) -> T | None:
        entry = self._get(key, self._clock())
        return None if entry is None else entry[1]

    def remember(self, key: str, reply: T) -> T:
        """Store ``reply`` unless one is already stored; returns the reply to send."""
        now = self._clock()
        entry = self._get(key, now)
        if entry is not None:
            return entry[1]
        self._put(key, reply, now)
        return reply
