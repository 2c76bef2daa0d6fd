from __future__ import annotations

import pytest

from voicecall_server.webhook.replay import ReplayCache, ResponseCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_second_sighting_is_a_replay() -> None:
    cache = ReplayCache(clock=FakeClock())
    assert cache.seen_or_add("twilio:req:a") is False
    assert cache.seen_or_add("twilio:req:a") is True
    assert cache.seen_or_add("twilio:req:b") is False
    assert "twilio:req:a" in cache
    assert "twilio:req:c" not in cache


def test_entries_expire_after_ttl_and_are_pruned() -> None:
    clock = FakeClock()
    cache = ReplayCache(ttl_s=600, clock=clock)
    cache.seen_or_add("a")
    clock.now += 599
    assert cache.seen_or_add("a") is True
    cache.seen_or_add("b")
    clock.now += 1  # "a" reaches its expiry; a replay does not extend it
    assert cache.seen_or_add("a") is False
    clock.now += 600
    cache.seen_or_add("c")
    assert len(cache) == 1


def test_capacity_evicts_oldest_first() -> None:
    cache = ReplayCache(max_entries=3, clock=FakeClock())
    for key in "abcd":
        assert cache.seen_or_add(key) is False
    assert len(cache) == 3
    assert "a" not in cache
    assert all(k in cache for k in "bcd")
    assert cache.seen_or_add("a") is False
    assert "b" not in cache


def test_capacity_holds_under_many_keys() -> None:
    cache = ReplayCache(max_entries=100, clock=FakeClock())
    for i in range(10_000):
        cache.seen_or_add(f"k{i}")
    assert len(cache) == 100
    assert "k9999" in cache
    assert "k9899" not in cache


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReplayCache(ttl_s=0)
    with pytest.raises(ValueError, match="positive"):
        ResponseCache(max_entries=0)


def test_response_cache_keeps_first_reply() -> None:
    clock = FakeClock()
    cache: ResponseCache[bytes] = ResponseCache(clock=clock)
    assert cache.get("k") is None
    assert cache.remember("k", b"<Response>token-1</Response>") == b"<Response>token-1</Response>"
    # A replay that produced a fresh reply must still get the first bytes back.
    assert cache.remember("k", b"<Response>token-2</Response>") == b"<Response>token-1</Response>"
    assert cache.get("k") == b"<Response>token-1</Response>"
    clock.now += 120
    assert cache.get("k") is None


def test_response_cache_capacity() -> None:
    cache: ResponseCache[str] = ResponseCache(max_entries=2, clock=FakeClock())
    cache.remember("a", "1")
    cache.remember("b", "2")
    cache.remember("c", "3")
    assert cache.get("a") is None
    assert cache.get("b") == "2"
    assert len(cache) == 2
