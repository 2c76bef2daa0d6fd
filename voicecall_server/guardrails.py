"""Outbound guardrails: who may be called, when, and how often.

Checked before every outbound dial so an agent cannot call a denied number, call outside the
configured hours of the callee's region, or burst more calls than the operator allows. Pure and
clock-injectable so every rule is tested with fixed instants.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PATTERN = re.compile(r"^(\*|\+[0-9]{1,15}\*?)$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_MINUTES_PER_DAY = 24 * 60

GuardCode = Literal["DENIED_NUMBER", "OUTSIDE_CALLING_HOURS", "RATE_LIMITED"]


@dataclass(frozen=True, slots=True)
class GuardDecision:
    ok: bool
    reason: str = ""
    code: GuardCode | None = None


ALLOWED = GuardDecision(ok=True)


def _parse_hhmm(value: str, *, allow_24: bool) -> int:
    if allow_24 and value == "24:00":
        return _MINUTES_PER_DAY
    m = _HHMM.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not a time of day in HH:MM form")
    return int(m.group(1)) * 60 + int(m.group(2))


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Minutes since local midnight on the listed start days; ``end`` exclusive.

    ``start > end`` crosses midnight (22:00-02:00 on Friday covers Friday 22:00 to Saturday 02:00);
    ``start == end`` is the whole day.
    """

    days: frozenset[int]
    start_minute: int
    end_minute: int

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> CallingWindow:
        unknown = set(raw) - {"days", "start", "end"}
        if unknown:
            raise ValueError(f"unknown calling-window keys: {', '.join(sorted(unknown))}")
        days_raw = raw.get("days", list(DAYS))
        if not isinstance(days_raw, list | tuple) or not days_raw:
            raise ValueError("calling-window days must be a non-empty list of mon..sun")
        days: set[int] = set()
        for day in days_raw:
            name = str(day).strip().lower()[:3]
            if name not in DAYS:
                raise ValueError(f"{day!r} is not a day (use mon, tue, wed, thu, fri, sat, sun)")
            days.add(DAYS.index(name))
        start = _parse_hhmm(str(raw.get("start", "")), allow_24=False)
        end = _parse_hhmm(str(raw.get("end", "")), allow_24=True)
        return cls(frozenset(days), start, end % _MINUTES_PER_DAY)

    def contains(self, weekday: int, minute: int) -> bool:
        start, end = self.start_minute, self.end_minute
        if start == end:
            return weekday in self.days
        if start < end:
            return weekday in self.days and start <= minute < end
        # Crossing midnight: the evening part belongs to today, the morning part to yesterday.
        if minute >= start:
            return weekday in self.days
        return minute < end and (weekday - 1) % 7 in self.days

    def describe(self) -> str:
        names = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{names} {_hhmm(self.start_minute)}-{_hhmm(self.end_minute)}"


@dataclass(frozen=True, slots=True)
class CallingHours:
    time_zone: str
    windows: tuple[CallingWindow, ...]

    @classmethod
    def from_config(cls, time_zone: str, windows: Sequence[Mapping[str, Any]]) -> CallingHours:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{time_zone!r} is not an IANA time zone") from None
        if not windows:
            raise ValueError("calling hours need at least one window")
        return cls(time_zone, tuple(CallingWindow.from_config(w) for w in windows))

    def allows(self, now: datetime) -> bool:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        # Wall-clock time in the zone, so DST shifts move the window with local clocks.
        local = now.astimezone(ZoneInfo(self.time_zone))
        minute = local.hour * 60 + local.minute
        return any(w.contains(local.weekday(), minute) for w in self.windows)

    def describe(self) -> str:
        return f"{'; '.join(w.describe() for w in self.windows)} {self.time_zone}"


def _validate_patterns(patterns: Sequence[str], key: str) -> tuple[str, ...]:
    cleaned = []
    for p in patterns:
        p = p.strip()
        if not _PATTERN.match(p):
            raise ValueError(f"{key}: {p!r} is not an E.164 number or prefix (e.g. +1555*)")
        cleaned.append(p)
    return tuple(cleaned)


def number_matches(pattern: str, number: str) -> bool:
    if pattern.endswith("*"):
        return number.startswith(pattern[:-1])
    return number == pattern


class OutboundGuard:
    """Deny/allow lists (deny wins), calling hours and a sliding one-minute rate limit.

    ``max_calls_per_minute <= 0`` disables the rate limit; an empty ``allow_to`` allows every
    number not denied.
    """

    def __init__(
        self,
        allow_to: Sequence[str] = (),
        deny_to: Sequence[str] = (),
        calling_hours: CallingHours | None = None,
        max_calls_per_minute: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_to = _validate_patterns(allow_to, "allowTo")
        self.deny_to = _validate_patterns(deny_to, "denyTo")
        self.calling_hours = calling_hours
        self.max_calls_per_minute = max_calls_per_minute
        self._clock = clock
        self._placed: deque[float] = deque()

    def _recent(self) -> int:
        cutoff = self._clock() - 60.0
        while self._placed and self._placed[0] <= cutoff:
            self._placed.popleft()
        return len(self._placed)

    def check(self, to_number: str, now: datetime | None = None) -> GuardDecision:
        """Whether a call to ``to_number`` may be placed at ``now`` (default: the current time)."""
        number = to_number.strip()
        if any(number_matches(p, number) for p in self.deny_to):
            return GuardDecision(False, "the destination number is on the deny list", "DENIED_NUMBER")
        if self.allow_to and not any(number_matches(p, number) for p in self.allow_to):
            return GuardDecision(False, "the destination number is not on the allow list", "DENIED_NUMBER")
        if self.calling_hours is not None and not self.calling_hours.allows(now or datetime.now(UTC)):
            return GuardDecision(
                False,
                f"outside calling hours ({self.calling_hours.describe()})",
                "OUTSIDE_CALLING_HOURS",
            )
        if self.max_calls_per_minute > 0 and self._recent() >= self.max_calls_per_minute:
            return GuardDecision(
                False,
                f"rate limit reached: at most {self.max_calls_per_minute} calls per minute",
                "RATE_LIMITED",
            )
        return ALLOWED

    def record(self, now: datetime | None = None) -> None:
        """Count one placed call.

        The window runs on the injected monotonic clock (wall-clock jumps must not reopen or
        freeze it); ``now`` is accepted so callers can pass the instant they used for ``check``.
        """
        del now
        if self.max_calls_per_minute > 0:
            self._recent()
            self._placed.append(self._clock())

    def try_place(self, to_number: str, now: datetime | None = None) -> GuardDecision:
        """``check`` and, when allowed, ``record`` in one step (no await in between)."""
        decision = self.check(to_number, now)
        if decision.ok:
            self.record(now)
        return decision
