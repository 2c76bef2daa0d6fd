"""Plivo webhooks: which flow a callback belongs to, and the normalised events it carries.

Every URL this adapter gives Plivo names its flow in the query (``flow=``): ``answer`` (the answer
URL), ``ring``, ``hangup``, ``amd`` (asynchronous machine detection), ``getinput`` (the GetInput
action, with ``turnToken``), and the XML fetches ``xml-speak``, ``xml-listen`` and ``xml-next``
that carry no events. A Plivo application's own answer/hangup URLs (inbound calls) may have no
``flow``; it is inferred from ``Event`` and ``CallStatus``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..base import Direction, EndReason, EventType, ProviderEvent, Verification, WebhookRequest
from .signature import V2_NONCE, V3_NONCE, post_params

XML_FLOWS = frozenset({"xml-speak", "xml-listen", "xml-next"})
SPEECH_FIELDS = ("Speech", "Transcription", "TranscriptionText", "SpeechResult", "RecognizedSpeech", "Text")
CONFIDENCE_FIELDS = ("SpeechConfidenceScore", "Confidence")

END_REASONS: Mapping[str, EndReason] = {
    "completed": EndReason.COMPLETED,
    "busy": EndReason.BUSY,
    "no-answer": EndReason.NO_ANSWER,
    "failed": EndReason.FAILED,
    # Plivo's own ring timeout expired.
    "timeout": EndReason.NO_ANSWER,
    # The request was cancelled (by us, DELETE /Request/) before anyone answered.
    "cancel": EndReason.HANGUP_BOT,
    # machine_detection=hangup ended it on an answering machine.
    "machine": EndReason.VOICEMAIL,
    "hangup": EndReason.HANGUP_USER,
}
TERMINAL_STATUSES = frozenset(END_REASONS)


def form(request: WebhookRequest) -> dict[str, str]:
    """The callback's parameters: the form body of a POST, the query of a GET (first value wins)."""
    if request.method.upper() == "POST":
        items = post_params(request)
    else:
        items = list(request.query_items) or list(request.query.items())
    out: dict[str, str] = {}
    for key, value in items:
        out.setdefault(key, value)
    return out


def flow_of(request: WebhookRequest, params: Mapping[str, str]) -> str:
    flow = request.query.get("flow", "")
    if flow:
        return flow
    event = params.get("Event", "")
    status = params.get("CallStatus", "").strip().lower()
    if event == "Hangup" or status in TERMINAL_STATUSES:
        return "hangup"
    if event == "MachineDetection":
        return "amd"
    return "answer"


def provider_ids(params: Mapping[str, str]) -> tuple[str, str]:
    """(CallUUID, RequestUUID) as sent (either may be empty)."""
    return params.get("CallUUID", "").strip(), params.get("RequestUUID", "").strip()


def _direction(value: str) -> Direction | None:
    value = value.strip().lower()
    if value == "inbound":
        return Direction.INBOUND
    if value == "outbound":
        return Direction.OUTBOUND
    return None


def _confidence(params: Mapping[str, str]) -> float | None:
    for name in CONFIDENCE_FIELDS:
        try:
            value = float(params.get(name, ""))
        except ValueError:
            continue
        if 0.0 <= value <= 1.0:
            return value
        if 1.0 < value <= 100.0:  # some Plivo surfaces report a percentage
            return value / 100.0
    return None


@dataclass(frozen=True, slots=True)
class _Common:
    """What every event of one callback shares."""

    provider_call_id: str | None
    call_id: str | None
    dedupe_key: str
    direction: Direction | None
    from_number: str | None
    to_number: str | None

    def event(self, kind: EventType, **fields: Any) -> ProviderEvent:
        return ProviderEvent(
            kind,
            provider_call_id=self.provider_call_id,
            call_id=self.call_id,
            dedupe_key=self.dedupe_key,
            timestamp=datetime.now(UTC),
            direction=self.direction,
            from_number=self.from_number,
            to_number=self.to_number,
            **fields,
        )


def dedupe_key(request: WebhookRequest, verification: Verification) -> str:
    """The verified request key; else the signature nonce; else a hash of URL and body."""
    if verification.replay_key:
        return verification.replay_key
    for header, prefix in ((V3_NONCE, "plivo:v3:"), (V2_NONCE, "plivo:v2:")):
        if nonce := request.headers.get(header):
            return prefix + nonce
    return "plivo:body:" + hashlib.sha256(request.url.encode() + b"\n" + request.body).hexdigest()


def parse(
    request: WebhookRequest, verification: Verification, params: Mapping[str, str] | None = None
) -> list[ProviderEvent]:
    """The normalised events of one verified callback (none for the XML fetches)."""
    params = form(request) if params is None else params
    flow = flow_of(request, params)
    if flow in XML_FLOWS:
        return []
    call_uuid, request_uuid = provider_ids(params)
    call_id = request.query.get("callId", "").strip() or None
    pid = call_uuid or request_uuid or None
    if pid is None and call_id is None:
        raise ValueError("Plivo callback without CallUUID, RequestUUID or callId")
    common = _Common(
        provider_call_id=pid,
        call_id=call_id,
        dedupe_key=dedupe_key(request, verification),
        direction=_direction(params.get("Direction", "")),
        from_number=params.get("From") or None,
        to_number=params.get("To") or None,
    )
    if flow == "getinput":
        return _input_events(params, common, request.query.get("turnToken") or None)
    status = params.get("CallStatus", "").strip().lower()
    if flow == "amd":
        machine = params.get("Machine", "").strip().lower() == "true"
        return [common.event(EventType.ANSWERED, answered_by="machine" if machine else "human")]
    if flow == "hangup":
        return [common.event(EventType.ENDED, end_reason=END_REASONS.get(status, EndReason.COMPLETED))]
    if status in TERMINAL_STATUSES:
        return [common.event(EventType.ENDED, end_reason=END_REASONS[status])]
    if status == "in-progress" or params.get("Event") == "StartApp":
        return [common.event(EventType.ANSWERED)]
    if status == "ringing":
        return [common.event(EventType.RINGING)]
    return []


def _input_events(params: Mapping[str, str], common: _Common, turn_token: str | None) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []
    text = next((params[n].strip() for n in SPEECH_FIELDS if params.get(n, "").strip()), "")
    if text:
        events.append(
            common.event(
                EventType.SPEECH,
                text=text,
                is_final=True,
                confidence=_confidence(params),
                turn_token=turn_token,
            )
        )
    digits = params.get("Digits", "").strip()
    if digits:
        events.append(common.event(EventType.DTMF, digits=digits, turn_token=turn_token))
    return events
