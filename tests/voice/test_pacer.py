"""The shared 20 ms pacing clock, driven by a fake monotonic clock and sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicecall_server.voice.pacer import Pacer

from .fakes_tts import FakeClock, settle

P = 0.020


class Channel:
    """Sends ``frames`` frames, one per pace() call, recording the clock at each."""

    def __init__(self, clock: FakeClock, frames: int) -> None:
        self.clock = clock
        self.left = frames
        self.times: list[float] = []
        self.calls = 0

    def pace(self) -> bool:
        self.calls += 1
        if not self.left:
            return False
        self.left -= 1
        self.times.append(self.clock())
        return True


@pytest.fixture
async def clock_pacer() -> AsyncIterator[tuple[FakeClock, Pacer]]:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep, max_catchup=3)
    pacer.start()
    yield clock, pacer
    await pacer.aclose()


def grid(start: float, n: int) -> list[Any]:
    return [pytest.approx(start + k * P, abs=1e-9) for k in range(n)]


async def test_frames_follow_monotonic_deadlines(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    ch = Channel(clock, 50)
    handle = pacer.register(ch)
    start = clock()
    handle.wake()
    await settle(lambda: ch.left == 0 and pacer.active_channels == 0)
    assert ch.times == grid(start, 50)  # start + k*20 ms: no drift over 1 s
    assert pacer.frames_sent == 50
    assert pacer.late_ticks == 0
    assert pacer.dropped_ticks == 0


async def test_idle_pacer_does_not_tick(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    ch = Channel(clock, 2)
    handle = pacer.register(ch)
    await settle(rounds=50)
    assert clock.sleeps == []
    assert pacer.ticks == 0
    handle.wake()
    await settle(lambda: pacer.active_channels == 0)
    ticks, sleeps = pacer.ticks, len(clock.sleeps)
    await settle(rounds=50)
    assert (pacer.ticks, len(clock.sleeps)) == (ticks, sleeps)  # idle again: no spinning
    assert ch.calls == 3  # two frames, then one call that found nothing


async def test_late_wake_catches_up_on_the_same_grid(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    clock.oversleep[2] = 0.045  # the third sleep wakes 45 ms late
    ch = Channel(clock, 10)
    handle = pacer.register(ch)
    start = clock()
    handle.wake()
    await settle(lambda: ch.left == 0)
    late = start + 3 * P + 0.045
    assert ch.times[:3] == grid(start, 3)
    assert ch.times[3:6] == [pytest.approx(late)] * 3  # ticks 3, 4 and 5 were due: sent together
    assert ch.times[6:] == grid(start, 10)[6:]  # and the schedule did not shift
    assert pacer.late_ticks == 1
    assert pacer.dropped_ticks == 0
    assert pacer.max_lag_ms == pytest.approx(45, abs=0.01)


async def test_long_stall_catches_up_a_bounded_number(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    clock.oversleep[1] = 0.2  # wakes at +240 ms: ticks 2..12 (11) due at once; max_catchup is 3
    ch = Channel(clock, 10)
    handle = pacer.register(ch)
    start = clock()
    handle.wake()
    await settle(lambda: ch.left == 0)
    assert ch.times[2:5] == [pytest.approx(start + 2 * P + 0.2)] * 3
    assert pacer.dropped_ticks == 11 - 3
    # Frames are delayed, never lost.
    assert pacer.frames_sent == 10
    assert ch.times[5] == pytest.approx(start + 13 * P)


async def test_many_channels_one_clock(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    channels = [Channel(clock, 5 + i % 3) for i in range(450)]
    handles = [pacer.register(ch) for ch in channels]
    idle = Channel(clock, 0)
    pacer.register(idle)  # registered, never woken: never called
    start = clock()
    for h in handles:
        h.wake()
    await settle(lambda: pacer.active_channels == 0, rounds=1000)
    for ch in channels:
        assert ch.times == grid(start, len(ch.times))
    assert pacer.frames_sent == sum(5 + i % 3 for i in range(450))
    assert pacer.ticks == 8
    assert idle.calls == 0
    assert pacer.channels == 451


async def test_unregistered_channel_is_not_called(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    a, b = Channel(clock, 100), Channel(clock, 5)
    ha, hb = pacer.register(a), pacer.register(b)
    ha.wake()
    hb.wake()
    await settle(lambda: b.left == 0)
    pacer.unregister(ha)
    calls = a.calls
    await settle(lambda: pacer.active_channels == 0)
    assert a.calls == calls
    assert pacer.channels == 1


async def test_a_failing_channel_does_not_stop_the_others(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer

    class Broken:
        def pace(self) -> bool:
            raise RuntimeError("boom")

    good = Channel(clock, 4)
    pacer.register(Broken()).wake()
    pacer.register(good).wake()
    await settle(lambda: good.left == 0)
    assert pacer.channel_errors == 1
    assert len(good.times) == 4


async def test_channel_woken_mid_run_joins_on_the_grid(clock_pacer: tuple[FakeClock, Pacer]) -> None:
    clock, pacer = clock_pacer
    a = Channel(clock, 10)
    b = Channel(clock, 3)
    ha, hb = pacer.register(a), pacer.register(b)
    start = clock()
    ha.wake()
    await settle(lambda: len(a.times) >= 4)
    hb.wake()
    await settle(lambda: b.left == 0)
    assert b.times == [t for t in grid(start, 10) if t in b.times]
    assert len(set(b.times)) == 3
