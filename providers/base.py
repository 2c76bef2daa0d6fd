"""The provider interface and the normalised types providers and the call manager exchange."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class EndReason(enum.StrEnum):
    """Why a call ended; each value is also the name of the terminal state."""

    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"


class EventType(enum.StrEnum):
    INITIATED = "call.initiated"
    RINGING = "call.ringing"
    ANSWERED = "call.answered"
    ACTIVE = "call.active"
    SPEAKING = "call.speaking"
    SPEECH = "call.speech"
    DTMF = "call.dtmf"
    ENDED = "call.ended"
    ERROR = "call.error"


class CallMode(enum.StrEnum):
    NOTIFY = "notify"
    CONVERSATION = "conversation"


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One thing a provider told us about a call, normalised (reference section 2.4).

    ``call_id`` is our internal id when the provider round-trips it (query ``callId``, Telnyx
    ``client_state``); otherwise None and the manager resolves the call by ``provider_call_id``.
    ``dedupe_key`` identifies the provider request the event came from; the manager drops an event
    whose key it has already applied (persisted across restarts).
    """

    type: EventType
    provider_call_id: str | None = None
    call_id: str | None = None
    dedupe_key: str | None = None
    timestamp: datetime | None = None
    direction: Direction | None = None
    from_number: str | None = None
    to_number: str | None = None
    turn_token: str | None = None
    text: str = ""
    is_final: bool = True
    confidence: float | None = None
    digits: str = ""
    end_reason: EndReason | None = None
    error: str = ""
    retryable: bool = False
    answered_by: str = ""


EventSink = Callable[[Sequence[ProviderEvent]], Awaitable[object]]
"""Where a provider delivers events that do not arrive as webhooks (mock timers, media streams)."""


@dataclass(frozen=True, slots=True)
class CallRef:
    call_id: str
    provider_call_id: str | None
    stream_url: str | None = None
    """Set when the call should (re)connect a media stream after a provider-voice fallback."""
    stream_token: str | None = None


@dataclass(frozen=True, slots=True)
class DialRequest:
    call_id: str
    from_number: str
    to_number: str
    webhook_url: str
    """The public webhook URL (no query); providers add their own query (callId, type, flow)."""
    mode: CallMode
    message: str = ""
    voice: str | None = None
    ring_timeout_s: int = 30
    machine_detection: str = "off"
    """off | detect | leave-message"""


@dataclass(frozen=True, slots=True)
class DialResult:
    provider_call_id: str
    status: str = "initiated"
    message_delivered_inline: bool = False
    """True when the dial request itself carries the notify message (Twilio inline TwiML), so the
    manager must not speak it again on answer."""


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """A provider's view of a call, used to reconcile restored calls after a restart."""

    status: str
    is_terminal: bool
    is_unknown: bool = False
    end_reason: EndReason | None = None
    answered: bool = False


class ProviderErrorKind(enum.StrEnum):
    AUTH = "auth"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    NOT_FOUND = "not_found"


class ProviderError(Exception):
    """A provider REST failure, classified. ``message`` is safe to show: no secrets, no raw bodies."""

    def __init__(self, kind: ProviderErrorKind, message: str, *, provider_code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.provider_code = provider_code


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook as the listener received it, with the public URL the provider signed.

    ``url`` is the reconstructed public URL (scheme, host, path and query of the request);
    ``url_variants`` are the other forms a verifier may try (port added or stripped).
    Header names in ``headers`` are lower-case.
    """

    method: str
    url: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    remote: str = ""
    url_variants: tuple[str, ...] = ()
    query_items: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str = ""
    replay_key: str | None = None
    checked_url: str = ""


@dataclass(frozen=True, slots=True)
class CallView:
    """What a provider needs to know about a call to shape its webhook reply."""

    call_id: str
    provider_call_id: str | None
    direction: Direction
    mode: CallMode
    terminal: bool
    rejected: bool = False
    pending_message: str = ""
    """A message to speak inline (notify TwiML), consumed once by the reply that carries it."""
    stream_url: str | None = None
    """Where the provider should open a media stream, if streaming is possible for this call."""
    stream_token: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    replay: bool
    calls: Mapping[str, CallView] = field(default_factory=dict)
    """Calls touched by the request's events, by provider_call_id."""


@dataclass(frozen=True, slots=True)
class WebhookReply:
    status: int = 200
    body: bytes = b"OK"
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)


class Provider(Protocol):
    """What a telephony provider adapter offers the call manager (reference section 3.0)."""

    name: str
    speaks_pending_in_reply: bool
    """True when the provider delivers a notify message in its answer-webhook reply
    (CallView.pending_message) rather than through ``speak`` after the call is answered."""
    signature_headers: tuple[str, ...]
    """Header names (lower-case) at least one of which a genuine webhook carries; checked before
    the body is read. Empty for providers that do not sign (mock)."""

    async def start(self, sink: EventSink, webhook_url: str) -> None:
        """Begin work. ``webhook_url`` is the public webhook URL (no query) for callbacks."""

    async def aclose(self) -> None: ...
    async def dial(self, request: DialRequest) -> DialResult: ...
    async def hangup(self, ref: CallRef) -> None:
        """Hang up; a call that has already ended is success."""

    async def speak(self, ref: CallRef, text: str, *, voice: str | None = None) -> None:
        """Speak with the provider's own voice (the fallback when no stream or TTS is available)."""

    async def start_listening(self, ref: CallRef, turn_token: str) -> None: ...
    async def stop_listening(self, ref: CallRef) -> None: ...
    async def fetch_status(self, provider_call_id: str) -> RemoteStatus: ...
    def verify_webhook(self, request: WebhookRequest) -> Verification: ...
    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> list[ProviderEvent]: ...
    def webhook_reply(self, request: WebhookRequest, outcome: WebhookOutcome) -> WebhookReply: ...
