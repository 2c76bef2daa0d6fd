"""Call records, states and events as the server keeps them (proto-free; see servicer for the wire)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from providers.base import CallMode, Direction, EndReason


def utcnow() -> datetime:
    return datetime.now(UTC)


class CallState(enum.StrEnum):
    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    ACTIVE = "active"
    SPEAKING = "speaking"
    LISTENING = "listening"
    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"

    @property
    def terminal(self) -> bool:
        return self.value in _TERMINAL_VALUES

    @classmethod
    def for_end(cls, reason: EndReason) -> CallState:
        return cls(reason.value)


_TERMINAL_VALUES = frozenset(r.value for r in EndReason)
_FORWARD_ORDER = (
    CallState.INITIATED,
    CallState.RINGING,
    CallState.ANSWERED,
    CallState.ACTIVE,
    CallState.SPEAKING,
    CallState.LISTENING,
)
_RANK = {s: i for i, s in enumerate(_FORWARD_ORDER)}
_CONVERSING = frozenset({CallState.SPEAKING, CallState.LISTENING})


def can_transition(current: CallState, target: CallState) -> bool:
    """Reference section 2.3: forward only, speaking <-> listening, terminal states absorbing."""
    if current == target or current.terminal:
        return False
    if target.terminal:
        return True
    if current in _CONVERSING and target in _CONVERSING:
        return True
    return _RANK[target] > _RANK[current]


class Speaker(enum.StrEnum):
    BOT = "bot"
    CALLER = "caller"


@dataclass(slots=True)
class TranscriptEntry:
    time: datetime
    speaker: Speaker
    text: str
    is_final: bool = True


@dataclass(slots=True)
class TurnLatency:
    turn: int
    total_ms: float
    listen_wait_ms: float
    stages: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class CallRecord:
    call_id: str
    provider: str
    direction: Direction
    state: CallState
    from_number: str
    to_number: str
    mode: CallMode
    created_at: datetime
    provider_call_id: str | None = None
    session_key: str = ""
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    transcript: list[TranscriptEntry] = field(default_factory=list)
    initial_message: str = ""
    """Spoken once the call is answered; kept until it has actually played."""
    stream_token: str | None = None
    answered_by: str = ""
    turn_latencies: list[TurnLatency] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state.terminal


class EventKind(enum.StrEnum):
    STATE_CHANGED = "state_changed"
    CALLER_SPEECH = "caller_speech"
    BOT_SPEECH = "bot_speech"
    DTMF = "dtmf"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One entry of the durable event log; ``sequence`` is the log's row id (0 before it is stored)."""

    call_id: str
    kind: EventKind
    time: datetime
    data: dict[str, Any]
    sequence: int = 0
