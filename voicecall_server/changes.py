"""A unit of work on one call: state moves, transcript lines and log events, committed together."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import EndReason

from .bus import EventBus
from .domain import (
    CallEvent,
    CallRecord,
    CallState,
    EventKind,
    Speaker,
    TranscriptEntry,
    can_transition,
    utcnow,
)
from .store import Store


@dataclass
class Changes:
    record: CallRecord
    events: list[CallEvent] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    dedupe_keys: list[str] = field(default_factory=list)
    request: tuple[str, str, str, dict[str, Any] | None] | None = None

    def event(self, kind: EventKind, data: dict[str, Any], when: datetime | None = None) -> None:
        self.events.append(CallEvent(self.record.call_id, kind, when or utcnow(), data))

    def move(self, state: CallState) -> bool:
        """Apply a state transition if the rules allow it (reference 2.3); report whether it moved."""
        if not can_transition(self.record.state, state):
            return False
        self.record.state = state
        self.event(EventKind.STATE_CHANGED, {"state": state.value})
        return True

    def finish(self, reason: EndReason, when: datetime | None = None) -> bool:
        rec = self.record
        if rec.terminal:
            return False
        rec.state = CallState.for_end(reason)
        rec.end_reason = reason
        rec.ended_at = when or utcnow()
        self.event(
            EventKind.STATE_CHANGED, {"state": rec.state.value, "end_reason": reason.value}, rec.ended_at
        )
        return True

    def say(
        self, speaker: Speaker, text: str, *, is_final: bool = True, confidence: float | None = None
    ) -> None:
        entry = TranscriptEntry(utcnow(), speaker, text, is_final)
        if is_final:
            self.record.transcript.append(entry)
            self.transcript.append(entry)
        if speaker is Speaker.BOT:
            self.event(EventKind.BOT_SPEECH, {"text": text}, entry.time)
        else:
            data: dict[str, Any] = {"transcript": text, "is_final": is_final}
            if confidence is not None:
                data["confidence"] = confidence
            self.event(EventKind.CALLER_SPEECH, data, entry.time)

    def commit(self, store: Store, bus: EventBus) -> list[CallEvent]:
        stored = store.commit(
            self.record,
            events=self.events,
            transcript_added=self.transcript,
            dedupe_keys=self.dedupe_keys,
            request=self.request,
        )
        bus.publish(stored)
        self.events.clear()
        self.transcript.clear()
        self.dedupe_keys.clear()
        self.request = None
        return stored
