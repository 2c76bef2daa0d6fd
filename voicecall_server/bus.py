"""Publishes committed call events to live Tail subscribers through bounded queues.

Publishing never blocks: a subscriber whose queue is full is cut off (it resumes by sequence from
the durable log), so a slow consumer can never stall webhooks or other subscribers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .domain import CallEvent


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind and was cut off; resume from its last sequence."""


class Subscription:
    __slots__ = ("_bus", "call_id", "overflowed", "queue")

    def __init__(self, bus: EventBus, call_id: str, maxsize: int) -> None:
        self._bus = bus
        self.call_id = call_id
        self.queue: asyncio.Queue[CallEvent | None] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, event: CallEvent) -> None:
        if self.overflowed or (self.call_id and event.call_id != self.call_id):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake a waiting consumer so it notices the overflow now, not at the next event.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def get(self) -> CallEvent:
        event = await self.queue.get()
        if event is None:
            if self.overflowed:
                raise SubscriberOverflow
            raise asyncio.CancelledError
        return event

    def ready(self, limit: int) -> list[CallEvent]:
        """Up to ``limit`` events already queued, without waiting; an end-of-stream marker stays
        queued for the next ``get``."""
        out: list[CallEvent] = []
        queue = self.queue
        while len(out) < limit and not queue.empty():
            event = queue.get_nowait()
            if event is None:
                queue.put_nowait(None)
                break
            out.append(event)
        return out

    def close(self) -> None:
        self._bus._subscribers.discard(self)
        if self.queue.empty():
            self.queue.put_nowait(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, *, queue_size: int = 1024) -> None:
        self._subscribers: set[Subscription] = set()
        self.queue_size = queue_size

    def subscribe(self, call_id: str = "") -> Subscription:
        sub = Subscription(self, call_id, self.queue_size)
        self._subscribers.add(sub)
        return sub

    def publish(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            for sub in tuple(self._subscribers):
                sub.offer(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close_all(self) -> None:
        for sub in tuple(self._subscribers):
            sub.close()
