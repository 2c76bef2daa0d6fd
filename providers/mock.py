"""The mock provider: no network, scripted outcomes, and a JSON webhook for injecting events.

Outbound calls ring and are answered (or end per ``outcome``) after ``answer_after_ms``; each
listen turn gets the next scripted caller reply; ``hangup_after_ms`` makes the caller hang up.
The webhook takes ``{"events": [...]}`` (or ``{"event": {...}}``) in the reference's mock shape so
tests and developers can inject inbound calls, speech, DTMF and hang-ups through the same pipeline
as real providers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .base import (
    CallRef,
    DialRequest,
    DialResult,
    Direction,
    EndReason,
    EventSink,
    EventType,
    ProviderEvent,
    RemoteStatus,
    Verification,
    WebhookOutcome,
    WebhookReply,
    WebhookRequest,
)

OUTCOMES = ("answered", "no-answer", "busy", "failed", "voicemail")
_END_FOR_OUTCOME = {
    "no-answer": EndReason.NO_ANSWER,
    "busy": EndReason.BUSY,
    "failed": EndReason.FAILED,
    "voicemail": EndReason.VOICEMAIL,
}
_TYPES = {t.value: t for t in EventType} | {t.value.removeprefix("call."): t for t in EventType}


@dataclass(frozen=True, slots=True)
class MockSettings:
    answer_after_ms: int = 300
    outcome: str = "answered"
    caller_replies: tuple[str, ...] = ()
    reply_after_ms: int = 500
    hangup_after_ms: int = 0


class MockProvider:
    name = "mock"
    signature_headers: tuple[str, ...] = ()
    speaks_pending_in_reply = False

    def __init__(self, settings: MockSettings | None = None) -> None:
        self.settings = settings or MockSettings()
        self._sink: EventSink | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._status: dict[str, str] = {}
        self._replies: dict[str, int] = {}
        self.spoken: list[tuple[str, str]] = []
        self.hangups: list[str] = []
        self.listens: list[tuple[str, str]] = []
        self.dtmf_sent: list[tuple[str, str]] = []

    async def start(self, sink: EventSink, webhook_url: str) -> None:
        self._sink = sink

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _later(self, delay_ms: int, events: Sequence[ProviderEvent]) -> None:
        self._spawn(self._emit_after(delay_ms, events))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit_after(self, delay_ms: int, events: Sequence[ProviderEvent]) -> None:
        await asyncio.sleep(delay_ms / 1000)
        pid = events[0].provider_call_id or ""
        if self._status.get(pid) == "completed" and events[0].type is not EventType.ENDED:
            return
        for ev in events:
            if ev.type is EventType.ANSWERED:
                self._status[pid] = "in-progress"
            elif ev.type is EventType.ENDED:
                self._status[pid] = "completed"
        if self._sink is not None:
            await self._sink(events)

    async def dial(self, request: DialRequest) -> DialResult:
        pid = f"mock-{request.call_id}"
        self._status[pid] = "queued"
        cid = request.call_id
        delay = self.settings.answer_after_ms
        ringing = ProviderEvent(EventType.RINGING, pid, cid)
        outcome = self.settings.outcome
        if outcome == "answered":
            self._later(delay, [ringing, ProviderEvent(EventType.ANSWERED, pid, cid, answered_by="human")])
            if self.settings.hangup_after_ms > 0:
                hangup = ProviderEvent(EventType.ENDED, pid, cid, end_reason=EndReason.HANGUP_USER)
                self._later(delay + self.settings.hangup_after_ms, [hangup])
        else:
            ended = ProviderEvent(EventType.ENDED, pid, cid, end_reason=_END_FOR_OUTCOME[outcome])
            self._later(delay, [ringing, ended])
        return DialResult(pid, "queued")

    async def hangup(self, ref: CallRef) -> None:
        if ref.provider_call_id:
            self.hangups.append(ref.provider_call_id)
            self._status[ref.provider_call_id] = "completed"

    async def speak(self, ref: CallRef, text: str, *, voice: str | None = None) -> None:
        self.spoken.append((ref.call_id, text))

    async def send_dtmf(self, ref: CallRef, digits: str) -> None:
        self.dtmf_sent.append((ref.call_id, digits))

    async def start_listening(self, ref: CallRef, turn_token: str) -> None:
        self.listens.append((ref.call_id, turn_token))
        index = self._replies.get(ref.call_id, 0)
        if index >= len(self.settings.caller_replies):
            return
        self._replies[ref.call_id] = index + 1
        reply = self.settings.caller_replies[index]
        event = ProviderEvent(
            EventType.SPEECH,
            provider_call_id=ref.provider_call_id,
            call_id=ref.call_id,
            turn_token=turn_token,
            text=reply,
            confidence=0.95,
        )
        self._later(self.settings.reply_after_ms, [event])

    async def stop_listening(self, ref: CallRef) -> None:
        return None

    async def fetch_status(self, provider_call_id: str) -> RemoteStatus:
        status = self._status.get(provider_call_id)
        if status is None:
            # Not ours since the restart: the reference's rule, by id.
            terminal = any(word in provider_call_id for word in ("stale", "ended", "completed"))
            status = "completed" if terminal else "in-progress"
        terminal = status == "completed"
        return RemoteStatus(status, terminal, end_reason=EndReason.COMPLETED if terminal else None)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return Verification(True, replay_key=None, checked_url=request.url)

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> list[ProviderEvent]:
        """Parse ``{"events": [...]}``; raises ValueError with a message for a malformed body."""
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"mock webhook body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise ValueError('mock webhook body must be an object like {"events": [...]}')
        raw = body.get("events", [body["event"]] if "event" in body else None)
        if not isinstance(raw, list):
            raise ValueError('mock webhook body must hold "events": [...] or "event": {...}')
        return [parse_mock_event(item, i) for i, item in enumerate(raw)]

    def webhook_reply(self, request: WebhookRequest, outcome: WebhookOutcome) -> WebhookReply:
        calls = {pid: {"callId": v.call_id, "rejected": v.rejected} for pid, v in outcome.calls.items()}
        body = json.dumps({"ok": True, "replay": outcome.replay, "calls": calls}).encode()
        return WebhookReply(200, body, "application/json")


def parse_mock_event(item: object, index: int) -> ProviderEvent:
    if not isinstance(item, dict):
        raise ValueError(f"events[{index}] must be an object")
    kind = _TYPES.get(str(item.get("type", "")))
    if kind is None:
        raise ValueError(f"events[{index}].type must be one of {sorted(t.value for t in EventType)}")
    call_id, pid = item.get("callId"), item.get("providerCallId")
    if not call_id and not pid:
        raise ValueError(f"events[{index}] needs callId or providerCallId")
    direction = item.get("direction")
    if direction not in (None, "inbound", "outbound"):
        raise ValueError(f"events[{index}].direction must be inbound or outbound")
    reason = item.get("reason", "completed")
    try:
        end_reason = EndReason(reason) if kind is EventType.ENDED else None
    except ValueError:
        raise ValueError(f"events[{index}].reason must be one of {[r.value for r in EndReason]}") from None
    ts = item.get("timestamp")
    return ProviderEvent(
        kind,
        provider_call_id=str(pid) if pid else None,
        call_id=str(call_id) if call_id else None,
        dedupe_key=f"mock:{item['id']}" if item.get("id") else None,
        timestamp=datetime.fromtimestamp(ts / 1000, UTC) if isinstance(ts, int | float) else None,
        direction=Direction(direction) if direction else None,
        from_number=item.get("from"),
        to_number=item.get("to"),
        turn_token=item.get("turnToken"),
        text=str(item.get("transcript") or item.get("text") or ""),
        is_final=bool(item.get("isFinal", True)),
        confidence=float(item["confidence"]) if isinstance(item.get("confidence"), int | float) else None,
        digits=str(item.get("digits", "")),
        end_reason=end_reason,
        error=str(item.get("error", "")),
        retryable=bool(item.get("retryable", False)),
        answered_by=str(item.get("answeredBy", "")),
    )
