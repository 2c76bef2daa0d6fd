from __future__ import annotations

from datetime import UTC, datetime

import pytest

from voicecall_server.guardrails import CallingHours, CallingWindow, OutboundGuard, number_matches

NOON_UTC = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("pattern", "number", "match"),
    [
        ("+1555*", "+15550001111", True),
        ("+1555*", "+15450001111", False),
        ("+15550001111", "+15550001111", True),
        ("+15550001111", "+155500011112", False),
        ("+1*", "+447700900000", False),
        ("*", "+447700900000", True),
    ],
)
def test_patterns(pattern: str, number: str, match: bool) -> None:
    assert number_matches(pattern, number) is match


def test_deny_wins_over_allow() -> None:
    guard = OutboundGuard(allow_to=["+1555*"], deny_to=["+15550009999"])
    assert guard.check("+15550001111", NOON_UTC).ok
    denied = guard.check("+15550009999", NOON_UTC)
    assert not denied.ok
    assert denied.code == "DENIED_NUMBER"
    assert "deny" in denied.reason


def test_allow_list_restricts_when_set() -> None:
    guard = OutboundGuard(allow_to=["+4477*"])
    decision = guard.check("+15550001111", NOON_UTC)
    assert (decision.ok, decision.code) == (False, "DENIED_NUMBER")
    assert "allow" in decision.reason
    assert OutboundGuard().check("+15550001111", NOON_UTC).ok


@pytest.mark.parametrize("bad", ["1555*", "+1-555", "+1555**", "", "+", "abc"])
def test_bad_patterns_are_config_errors(bad: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        OutboundGuard(deny_to=[bad])


def office_hours(tz: str = "America/New_York") -> CallingHours:
    return CallingHours.from_config(
        tz, [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]
    )


def test_calling_hours_inside_and_outside() -> None:
    guard = OutboundGuard(calling_hours=office_hours())
    # Wednesday 2024-06-05: 13:00 UTC is 09:00 EDT (start inclusive), 21:00 UTC is 17:00 (end exclusive).
    assert guard.check("+15550001111", datetime(2024, 6, 5, 13, 0, tzinfo=UTC)).ok
    assert guard.check("+15550001111", datetime(2024, 6, 5, 20, 59, tzinfo=UTC)).ok
    late = guard.check("+15550001111", datetime(2024, 6, 5, 21, 0, tzinfo=UTC))
    assert (late.ok, late.code) == (False, "OUTSIDE_CALLING_HOURS")
    assert "America/New_York" in late.reason
    assert not guard.check("+15550001111", datetime(2024, 6, 5, 12, 59, tzinfo=UTC)).ok
    # Saturday.
    assert not guard.check("+15550001111", datetime(2024, 6, 8, 15, 0, tzinfo=UTC)).ok


def test_calling_hours_follow_dst() -> None:
    hours = CallingHours.from_config(
        "America/New_York", [{"days": ["fri", "mon"], "start": "09:00", "end": "17:00"}]
    )
    # Same UTC time of day, either side of the 2024-03-10 spring-forward: 08:30 EST vs 09:30 EDT.
    assert not hours.allows(datetime(2024, 3, 8, 13, 30, tzinfo=UTC))
    assert hours.allows(datetime(2024, 3, 11, 13, 30, tzinfo=UTC))
    # And back in autumn (2024-11-03): 21:30 UTC is 17:30 EDT on Friday but 16:30 EST on Monday.
    assert not hours.allows(datetime(2024, 11, 1, 21, 30, tzinfo=UTC))
    assert hours.allows(datetime(2024, 11, 4, 21, 30, tzinfo=UTC))


def test_window_crossing_midnight() -> None:
    hours = CallingHours.from_config("Europe/London", [{"days": ["fri"], "start": "22:00", "end": "02:00"}])
    assert hours.allows(datetime(2024, 6, 7, 21, 0, tzinfo=UTC))  # Fri 22:00 BST
    assert hours.allows(datetime(2024, 6, 8, 0, 59, tzinfo=UTC))  # Sat 01:59 BST, Friday's window
    assert not hours.allows(datetime(2024, 6, 8, 1, 0, tzinfo=UTC))  # Sat 02:00 BST, end exclusive
    assert not hours.allows(datetime(2024, 6, 8, 21, 30, tzinfo=UTC))  # Sat 22:30: Saturday not listed
    assert not hours.allows(datetime(2024, 6, 7, 0, 30, tzinfo=UTC))  # Fri 01:30 is Thursday's night
    assert not hours.allows(datetime(2024, 6, 7, 20, 59, tzinfo=UTC))  # Fri 21:59


def test_window_crossing_midnight_wraps_sunday_to_monday() -> None:
    hours = CallingHours.from_config("UTC", [{"days": ["sun"], "start": "23:00", "end": "01:00"}])
    assert hours.allows(datetime(2024, 6, 10, 0, 30, tzinfo=UTC))  # Monday 00:30
    assert not hours.allows(datetime(2024, 6, 11, 0, 30, tzinfo=UTC))  # Tuesday 00:30


def test_whole_day_and_24_00() -> None:
    all_day = CallingHours.from_config("UTC", [{"days": ["wed"], "start": "00:00", "end": "24:00"}])
    assert all_day.allows(datetime(2024, 6, 5, 23, 59, tzinfo=UTC))
    assert all_day.allows(datetime(2024, 6, 5, 0, 0, tzinfo=UTC))
    assert not all_day.allows(datetime(2024, 6, 6, 0, 0, tzinfo=UTC))
    evening = CallingHours.from_config("UTC", [{"days": ["wed"], "start": "18:00", "end": "24:00"}])
    assert evening.allows(datetime(2024, 6, 5, 23, 59, tzinfo=UTC))
    assert not evening.allows(datetime(2024, 6, 6, 0, 0, tzinfo=UTC))


def test_several_windows() -> None:
    hours = CallingHours.from_config(
        "Asia/Tokyo",
        [
            {"days": ["mon"], "start": "09:00", "end": "12:00"},
            {"days": ["mon"], "start": "13:00", "end": "17:00"},
        ],
    )
    assert hours.allows(datetime(2024, 6, 10, 1, 0, tzinfo=UTC))  # Mon 10:00 JST
    assert not hours.allows(datetime(2024, 6, 10, 3, 30, tzinfo=UTC))  # Mon 12:30 JST
    assert hours.allows(datetime(2024, 6, 10, 4, 0, tzinfo=UTC))  # Mon 13:00 JST


@pytest.mark.parametrize(
    ("tz", "windows", "message"),
    [
        ("Mars/Olympus", [{"days": ["mon"], "start": "09:00", "end": "17:00"}], "IANA"),
        ("UTC", [], "at least one"),
        ("UTC", [{"days": ["funday"], "start": "09:00", "end": "17:00"}], "not a day"),
        ("UTC", [{"days": ["mon"], "start": "9am", "end": "17:00"}], "HH:MM"),
        ("UTC", [{"days": ["mon"], "start": "09:00", "end": "25:00"}], "HH:MM"),
        ("UTC", [{"days": [], "start": "09:00", "end": "17:00"}], "non-empty"),
        ("UTC", [{"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "x"}], "unknown"),
    ],
)
def test_calling_hours_config_errors(tz: str, windows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CallingHours.from_config(tz, windows)


def test_window_days_default_to_every_day() -> None:
    window = CallingWindow.from_config({"start": "08:00", "end": "20:00"})
    assert window.days == frozenset(range(7))


def test_rate_limit_sliding_window() -> None:
    clock = FakeClock()
    guard = OutboundGuard(max_calls_per_minute=2, clock=clock)
    assert guard.try_place("+15550001111", NOON_UTC).ok
    clock.now += 10
    assert guard.try_place("+15550001111", NOON_UTC).ok
    clock.now += 49.9
    limited = guard.check("+15550001111", NOON_UTC)
    assert (limited.ok, limited.code) == (False, "RATE_LIMITED")
    assert "2 calls per minute" in limited.reason
    clock.now += 0.1  # 60 s after the first call: it leaves the window
    assert guard.check("+15550001111", NOON_UTC).ok
    guard.record(NOON_UTC)
    assert not guard.check("+15550001111", NOON_UTC).ok
    clock.now += 10  # the second call leaves the window too
    assert guard.check("+15550001111", NOON_UTC).ok


def test_checks_do_not_count_as_calls() -> None:
    clock = FakeClock()
    guard = OutboundGuard(max_calls_per_minute=1, clock=clock)
    for _ in range(5):
        assert guard.check("+15550001111", NOON_UTC).ok
    guard.record()
    assert not guard.check("+15550001111", NOON_UTC).ok


def test_denied_attempts_are_not_counted() -> None:
    guard = OutboundGuard(deny_to=["+1900*"], max_calls_per_minute=1, clock=FakeClock())
    assert not guard.try_place("+19005550000", NOON_UTC).ok
    assert guard.try_place("+15550001111", NOON_UTC).ok


def test_zero_rate_disables_limit() -> None:
    guard = OutboundGuard(max_calls_per_minute=0, clock=FakeClock())
    for _ in range(100):
        assert guard.try_place("+15550001111", NOON_UTC).ok


def test_order_of_checks_number_first() -> None:
    guard = OutboundGuard(deny_to=["+1555*"], calling_hours=office_hours(), clock=FakeClock())
    saturday = datetime(2024, 6, 8, 15, 0, tzinfo=UTC)
    assert guard.check("+15550001111", saturday).code == "DENIED_NUMBER"
    assert guard.check("+16170001111", saturday).code == "OUTSIDE_CALLING_HOURS"
