"""One 20 ms pacing clock for every media stream in the process.

A task and a sleep per stream per frame is what caps a Python media plane (see the performance
anchors): here one task wakes every 20 ms on monotonic deadlines (``start + k * 20 ms``, so it never
drifts), and each tick calls ``pace()`` only on the channels that have audio ready. A channel with
nothing to send drops out of the active list and costs nothing until it calls ``handle.wake()``;
with no active channel at all the task waits on a future instead of ticking.

If the task wakes late it runs the ticks that are due back to back (each channel sends one frame
per tick), up to ``max_catchup`` of them; ticks beyond that are skipped (counted in
``dropped_ticks``): the audio is not lost, it is delayed, and the provider's jitter buffer absorbs
a short burst better than a growing lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("voicecall.voice.pacer")

FRAME_S = 0.020


class PacedChannel(Protocol):
    def pace(self) -> bool:
        """Send the frame due now (plus any mark that follows it) to the channel's sink.

        Return True if a frame was sent; False means nothing is ready, and the pacer stops calling
        until the channel's handle is woken again. Must not block.
        """


class ChannelHandle:
    """A registration; ``wake()`` says the channel has audio ready (cheap, idempotent)."""

    __slots__ = ("_pacer", "active", "pace", "registered")

    def __init__(self, pacer: Pacer, channel: PacedChannel) -> None:
        self._pacer = pacer
        self.pace = channel.pace
        self.active = False
        self.registered = True

    def wake(self) -> None:
        if self.active or not self.registered:
            return
        self.active = True
        self._pacer._join(self)


class Pacer:
    def __init__(
        self,
        *,
        frame_s: float = FRAME_S,
        max_catchup: int = 10,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if max_catchup < 1:
            raise ValueError("max_catchup must be at least 1")
        self.frame_s = frame_s
        self.max_catchup = max_catchup
        self._clock = clock
        self._sleep = sleep
        self._active: list[ChannelHandle] = []
        self._joining: list[ChannelHandle] = []
        self._idle: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._channels = 0
        self.frames_sent = 0
        self.ticks = 0
        self.late_ticks = 0
        """Wake-ups that found more than one tick due (the frames of those ticks went out together)."""
        self.dropped_ticks = 0
        """Ticks skipped after a stall longer than ``max_catchup`` ticks."""
        self.max_lag_ms = 0.0
        self.channel_errors = 0

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def active_channels(self) -> int:
        return len(self._active) + len(self._joining)

    def register(self, channel: PacedChannel) -> ChannelHandle:
        self._channels += 1
        return ChannelHandle(self, channel)

    def unregister(self, handle: ChannelHandle) -> None:
        if handle.registered:
            handle.registered = False
            self._channels -= 1
        # An active handle is dropped from the active list at the next tick.

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="voicecall-pacer")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._active.clear()
        self._joining.clear()

    def _join(self, handle: ChannelHandle) -> None:
        self._joining.append(handle)
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    async def _run(self) -> None:
        period = self.frame_s
        clock = self._clock
        start = clock()
        k = 0  # index of the next tick; its deadline is start + k * period
        while True:
            if not self._active and not self._joining:
                self._idle = asyncio.get_running_loop().create_future()
                await self._idle
                self._idle = None
                # A fresh schedule: the first frame goes out now, not on a stale grid.
                start = clock()
                k = 0
            now = clock()
            deadline = start + k * period
            if now < deadline:
                await self._sleep(deadline - now)
                continue
            # max(1, ...): at an exact deadline the float division may land a hair below k.
            due = max(1, int((now - start) / period) - k + 1)
            lag_ms = (now - deadline) * 1000.0
            if lag_ms > self.max_lag_ms:
                self.max_lag_ms = lag_ms
            if due > 1:
                self.late_ticks += 1
                if due > self.max_catchup:
                    self.dropped_ticks += due - self.max_catchup
                    due = self.max_catchup
            for _ in range(due):
                self._tick()
                if not self._active:
                    break
            # Every due tick is spent, run or not: a channel joining later starts on the grid.
            k = int((now - start) / period) + 1 if due > 1 else k + 1

    def _tick(self) -> None:
        self.ticks += 1
        active = self._active
        if self._joining:
            active.extend(self._joining)
            self._joining.clear()
        keep = 0
        sent = 0
        for handle in active:
            if handle.registered:
                try:
                    more = handle.pace()
                except Exception:
                    # One broken channel must not silence every other call.
                    log.exception("media channel failed while pacing; dropping it")
                    self.channel_errors += 1
                    handle.registered = False
                    self._channels -= 1
                    more = False
                if more:
                    active[keep] = handle
                    keep += 1
                    sent += 1
                    continue
            handle.active = False
        del active[keep:]
        self.frames_sent += sent
