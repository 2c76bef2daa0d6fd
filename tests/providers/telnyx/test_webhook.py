"""Telnyx webhook parsing: the reference 3.2 table, direction/from/to, AMD, transcription, DTMF."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from providers.base import (
    Direction,
    EndReason,
    EventType,
    Verification,
    WebhookOutcome,
    WebhookRequest,
)
from providers.telnyx.webhook import (
    HANGUP_CAUSES,
    decode_client_state,
    encode_client_state,
    parse_webhook,
    webhook_reply,
)

CCID = "v3:call-control-id-1"
CALL_ID = "call-123"
OK = Verification(ok=True, replay_key="telnyx:abc")
NO_KEY = Verification(ok=True)


def _body(event_type: str, **payload: Any) -> bytes:
    base: dict[str, Any] = {"call_control_id": CCID, "client_state": encode_client_state(CALL_ID)}
    base.update(payload)
    return json.dumps(
        {
            "data": {
                "id": "ev-1",
                "event_type": event_type,
                "occurred_at": "2026-01-02T03:04:05.123456Z",
                "record_type": "event",
                "payload": base,
            },
            "meta": {"attempt": 1},
        }
    ).encode()


def _req(body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="https://example.test/voice/webhook",
        path="/voice/webhook",
        query={},
        headers={"content-type": "application/json"},
        body=body,
    )


def _one(event_type: str, verification: Verification = OK, **payload: Any) -> Any:
    events = parse_webhook(_req(_body(event_type, **payload)), verification)
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize(
    ("telnyx", "ours"),
    [
        ("call.initiated", EventType.INITIATED),
        ("call.ringing", EventType.RINGING),
        ("call.answered", EventType.ANSWERED),
        ("call.bridged", EventType.ACTIVE),
        ("call.speak.started", EventType.SPEAKING),
    ],
)
def test_simple_events(telnyx: str, ours: EventType) -> None:
    event = _one(telnyx)
    assert event.type is ours
    assert event.provider_call_id == CCID
    assert event.call_id == CALL_ID
    assert event.dedupe_key == "telnyx:abc"
    assert event.timestamp == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def test_inbound_initiated_carries_direction_and_numbers() -> None:
    event = parse_webhook(
        _req(
            _body(
                "call.initiated",
                direction="incoming",
                client_state=None,
                **{"from": "+15550001", "to": "+15550002"},
            )
        ),
        OK,
    )[0]
    assert event.type is EventType.INITIATED
    assert event.direction is Direction.INBOUND
    assert event.from_number == "+15550001"
    assert event.to_number == "+15550002"
    assert event.call_id is None
    assert _one("call.answered", direction="outgoing").direction is Direction.OUTBOUND
    assert _one("call.answered").direction is None


@pytest.mark.parametrize(("cause", "reason"), sorted(HANGUP_CAUSES.items()))
def test_every_hangup_cause(cause: str, reason: EndReason) -> None:
    event = _one("call.hangup", hangup_cause=cause)
    assert event.type is EventType.ENDED and event.end_reason is reason


def test_hangup_cause_table_is_the_reference_one() -> None:
    assert HANGUP_CAUSES["originator_cancel"] is EndReason.HANGUP_BOT
    assert HANGUP_CAUSES["call_rejected"] is EndReason.BUSY
    assert HANGUP_CAUSES["subscriber_absent"] is EndReason.HANGUP_USER
    assert HANGUP_CAUSES["fax_detected"] is EndReason.VOICEMAIL
    assert HANGUP_CAUSES["recovery_on_timer_expire"] is EndReason.FAILED
    assert len(HANGUP_CAUSES) == 15


def test_unknown_or_missing_hangup_cause_is_completed(caplog: pytest.LogCaptureFixture) -> None:
    assert _one("call.hangup", hangup_cause="something_new").end_reason is EndReason.COMPLETED
    assert "something_new" in caplog.text
    assert _one("call.hangup").end_reason is EndReason.COMPLETED


def test_transcription() -> None:
    event = _one(
        "call.transcription",
        transcription_data={"transcript": " hello there ", "confidence": 0.87, "is_final": False},
    )
    assert event.type is EventType.SPEECH
    assert event.text == "hello there"
    assert event.confidence == pytest.approx(0.87)
    assert event.is_final is False
    final = _one("call.transcription", transcription_data={"transcript": "yes"})
    assert final.is_final is True and final.confidence is None
    legacy = _one("call.transcription", transcription="older shape")
    assert legacy.text == "older shape"
    assert parse_webhook(_req(_body("call.transcription", transcription_data={"transcript": ""})), OK) == []


def test_dtmf() -> None:
    event = _one("call.dtmf.received", digit="7")
    assert event.type is EventType.DTMF and event.digits == "7"
    assert parse_webhook(_req(_body("call.dtmf.received")), OK) == []


@pytest.mark.parametrize("kind", ["call.machine.detection.ended", "call.machine.premium.detection.ended"])
@pytest.mark.parametrize("result", ["human", "machine", "fax", "not_sure"])
def test_machine_detection(kind: str, result: str) -> None:
    event = _one(kind, result=result)
    assert event.type is EventType.ANSWERED and event.answered_by == result


def test_unmapped_event_yields_nothing() -> None:
    assert parse_webhook(_req(_body("call.playback.started")), OK) == []


def test_dedupe_key_falls_back_to_event_id() -> None:
    assert _one("call.answered", NO_KEY).dedupe_key == "telnyx:event:ev-1"


def test_client_state() -> None:
    assert decode_client_state(encode_client_state("abc-é")) == "abc-é"
    assert decode_client_state(base64.b64encode(b"\xff\xfe").decode()) is None
    assert decode_client_state("%%%") is None
    assert decode_client_state(None) is None
    assert decode_client_state(base64.b64encode(b"a\x00b").decode()) is None
    assert _one("call.answered", client_state="not base64!").call_id is None


@pytest.mark.parametrize(
    "body", [b"not json", b"\xff\xfe", b"[]", b'{"data": 3}', b'{"data": {"payload": []}}', b""]
)
def test_malformed_bodies_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="Telnyx"):
        parse_webhook(_req(body), OK)


def test_reply_is_plain_ok() -> None:
    reply = webhook_reply(_req(_body("call.answered")), WebhookOutcome(replay=False))
    assert (reply.status, reply.body, reply.content_type) == (200, b"OK", "text/plain")
    assert webhook_reply(_req(b"x"), WebhookOutcome(replay=True)).body == b"OK"
