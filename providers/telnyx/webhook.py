"""Telnyx Call Control webhooks: JSON bodies into normalised events (reference 3.2, with its fixes).

Body shape: ``{"data": {"id", "event_type", "occurred_at", "payload": {...}}}``. ``client_state``
is the base64 of our call id (set on dial and answer); when it does not decode to text the event
carries no call id and the manager resolves the call by ``call_control_id``.

Beyond the classic mapping: ``payload.direction`` (``incoming``/``outgoing``) and ``from``/``to`` are
copied, so an inbound ``call.initiated`` reaches the manager as an inbound call (it applies the
inbound policy and then calls ``TelnyxProvider.answer``); the machine-detection verdicts become
ANSWERED with ``answered_by`` (human, machine, fax, not_sure).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..base import (
    Direction,
    EndReason,
    EventType,
    ProviderEvent,
    Verification,
    WebhookOutcome,
    WebhookReply,
    WebhookRequest,
)

log = logging.getLogger(__name__)

_SIMPLE = {
    "call.initiated": EventType.INITIATED,
    "call.ringing": EventType.RINGING,
    "call.answered": EventType.ANSWERED,
    "call.bridged": EventType.ACTIVE,
    "call.speak.started": EventType.SPEAKING,
}
MACHINE_DETECTION_EVENTS = ("call.machine.detection.ended", "call.machine.premium.detection.ended")
HANGUP_CAUSES = {
    "normal_clearing": EndReason.COMPLETED,
    "normal_unspecified": EndReason.COMPLETED,
    "originator_cancel": EndReason.HANGUP_BOT,
    "call_rejected": EndReason.BUSY,
    "user_busy": EndReason.BUSY,
    "no_answer": EndReason.NO_ANSWER,
    "no_user_response": EndReason.NO_ANSWER,
    "destination_out_of_order": EndReason.FAILED,
    "network_out_of_order": EndReason.FAILED,
    "service_unavailable": EndReason.FAILED,
    "recovery_on_timer_expire": EndReason.FAILED,
    "machine_detected": EndReason.VOICEMAIL,
    "fax_detected": EndReason.VOICEMAIL,
    "user_hangup": EndReason.HANGUP_USER,
    "subscriber_absent": EndReason.HANGUP_USER,
}
_DIRECTIONS = {"incoming": Direction.INBOUND, "outgoing": Direction.OUTBOUND}


def encode_client_state(call_id: str) -> str:
    return base64.b64encode(call_id.encode("utf-8")).decode("ascii")


def decode_client_state(value: object) -> str | None:
    """Our call id from ``client_state``; None when it is absent or not base64 of printable text."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if text and text.isprintable() else None


def hangup_reason(cause: object) -> EndReason:
    key = str(cause or "").strip().lower()
    reason = HANGUP_CAUSES.get(key)
    if reason is None:
        log.warning("unknown Telnyx hangup_cause %r; treating the call as completed", key[:64])
        return EndReason.COMPLETED
    return reason


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _confidence(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _load(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the Telnyx webhook body is not JSON") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise ValueError("not a Telnyx webhook (no data object)")
    payload = data.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ValueError("not a Telnyx webhook (payload is not an object)")
    return data, payload


def parse_webhook(request: WebhookRequest, verification: Verification) -> list[ProviderEvent]:
    """Normalised events for one Telnyx webhook. Raises ValueError for a body that is not one."""
    data, payload = _load(request.body)
    event_type = _text(data.get("event_type")).lower()
    event_id = _text(data.get("id"))
    dedupe = verification.replay_key or ("telnyx:event:" + event_id if event_id else None)
    base = ProviderEvent(
        EventType.INITIATED,
        provider_call_id=_text(payload.get("call_control_id")) or None,
        call_id=decode_client_state(payload.get("client_state")),
        dedupe_key=dedupe,
        timestamp=_timestamp(data.get("occurred_at")),
        direction=_DIRECTIONS.get(_text(payload.get("direction")).lower()),
        from_number=_text(payload.get("from")) or None,
        to_number=_text(payload.get("to")) or None,
    )
    simple = _SIMPLE.get(event_type)
    if simple is not None:
        return [replace(base, type=simple)]
    if event_type == "call.hangup":
        return [replace(base, type=EventType.ENDED, end_reason=hangup_reason(payload.get("hangup_cause")))]
    if event_type == "call.transcription":
        return _transcription(base, payload)
    if event_type == "call.dtmf.received":
        digit = _text(payload.get("digit"))
        return [replace(base, type=EventType.DTMF, digits=digit)] if digit else []
    if event_type in MACHINE_DETECTION_EVENTS:
        result = _text(payload.get("result")).lower() or "not_sure"
        return [replace(base, type=EventType.ANSWERED, answered_by=result)]
    return []


def _transcription(base: ProviderEvent, payload: dict[str, Any]) -> list[ProviderEvent]:
    data = payload.get("transcription_data")
    source: dict[str, Any] = data if isinstance(data, dict) else payload
    text = _text(source.get("transcript")) or _text(payload.get("transcription"))
    if not text:
        return []
    is_final = source.get("is_final", True)
    return [
        replace(
            base,
            type=EventType.SPEECH,
            text=text,
            is_final=is_final if isinstance(is_final, bool) else True,
            confidence=_confidence(source.get("confidence")),
        )
    ]


def webhook_reply(request: WebhookRequest, outcome: WebhookOutcome) -> WebhookReply:
    """Telnyx only needs a 2xx; commands go out through the REST API."""
    return WebhookReply(status=200, body=b"OK", content_type="text/plain")
