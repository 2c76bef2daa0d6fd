"""The call manager's settings, collaborator protocols and input checks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from providers.base import CallMode

from .domain import CallRecord
from .errors import CallError, Reason
from .inbound import InboundPolicy

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DTMF = re.compile(r"^[0-9*#A-Dw]{1,64}$")
MACHINE_ANSWERS = ("machine", "fax")


def check_e164(value: str, field_name: str) -> str:
    value = value.strip()
    if not E164.match(value):
        raise CallError(
            Reason.INVALID_PHONE_NUMBER,
            f"{field_name} must be an E.164 number like +15551234567, got {value!r}",
            field=field_name,
        )
    return value


def check_dtmf(value: str, field_name: str) -> str:
    value = value.strip()
    if not DTMF.match(value):
        raise CallError(
            Reason.INVALID_FIELD,
            f"{field_name} must be 1-64 of 0-9 * # A-D and w (a half-second wait), got {value!r}",
            field=field_name,
        )
    return value


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    provider_name: str = "mock"
    from_number: str = "+15550000000"
    to_number: str | None = None
    default_mode: CallMode = CallMode.NOTIFY
    notify_hangup_delay_s: float = 3.0
    max_duration_s: float = 300.0
    stale_call_reaper_s: float = 120.0
    transcript_timeout_s: float = 180.0
    ring_timeout_s: int = 30
    max_concurrent_calls: int = 1
    inbound: InboundPolicy = field(default_factory=InboundPolicy)
    machine_detection: str = "off"
    voice: str | None = None
    stream_url: str | None = None
    """The public media-stream URL when streaming is enabled; None disables streams."""
    retention_days: int = 30
    idempotency_ttl_s: float = 48 * 3600.0
    restore_timeout_s: float = 10.0


class OutboundGuard(Protocol):
    def check(self, to_number: str) -> CallError | None: ...
    def record(self) -> None: ...


class MediaBridge(Protocol):
    """The media-stream side: speaks through a live stream when the call has one."""

    def has_stream(self, call_id: str) -> bool: ...
    async def say(self, call_id: str, text: str) -> str | None:
        """Play ``text``; return what the caller heard, or None if the stream could not play it."""


CallerTurnHook = Callable[[CallRecord, str], Coroutine[Any, Any, None]]


@dataclass
class Turn:
    token: str
    future: asyncio.Future[str]
    started: float
