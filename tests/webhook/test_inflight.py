from __future__ import annotations

import asyncio

import pytest

from voicecall_server.webhook.inflight import InflightLimiter


def test_per_key_cap_and_release() -> None:
    limiter = InflightLimiter(per_key=2)
    assert limiter.try_acquire("1.2.3.4")
    assert limiter.try_acquire("1.2.3.4")
    assert not limiter.try_acquire("1.2.3.4")
    assert limiter.try_acquire("5.6.7.8")
    assert limiter.in_flight("1.2.3.4") == 2
    limiter.release("1.2.3.4")
    assert limiter.try_acquire("1.2.3.4")


def test_entries_removed_at_zero() -> None:
    limiter = InflightLimiter(per_key=8)
    for i in range(1000):
        key = f"10.0.{i // 256}.{i % 256}"
        assert limiter.try_acquire(key)
        limiter.release(key)
    assert len(limiter) == 0
    limiter.release("never-seen")
    assert len(limiter) == 0


async def test_slot_context_manager_releases_on_error() -> None:
    limiter = InflightLimiter(per_key=1)
    seen: list[bool] = []

    async def failing_request() -> None:
        async with limiter.slot("ip") as admitted:
            seen.append(admitted)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing_request()
    assert seen == [True]
    assert limiter.in_flight("ip") == 0


async def test_concurrent_requests_beyond_cap_are_refused() -> None:
    limiter = InflightLimiter(per_key=8)
    gate = asyncio.Event()
    all_arrived = asyncio.Event()
    results: list[bool] = []

    async def request() -> None:
        async with limiter.slot("203.0.113.1") as admitted:
            results.append(admitted)
            if len(results) == 12:
                all_arrived.set()
            if admitted:
                await gate.wait()

    tasks = [asyncio.create_task(request()) for _ in range(12)]
    await all_arrived.wait()
    assert results.count(True) == 8
    assert limiter.in_flight("203.0.113.1") == 8
    gate.set()
    await asyncio.gather(*tasks)
    assert len(limiter) == 0


def test_refused_slot_does_not_release_others() -> None:
    limiter = InflightLimiter(per_key=1)

    async def scenario() -> None:
        async with limiter.slot("ip") as first:
            async with limiter.slot("ip") as second:
                assert first
                assert not second
            assert limiter.in_flight("ip") == 1

    asyncio.run(scenario())
    assert len(limiter) == 0


def test_invalid_cap() -> None:
    with pytest.raises(ValueError, match="positive"):
        InflightLimiter(per_key=0)
