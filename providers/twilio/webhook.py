"""Twilio webhooks: form bodies into normalised events, and the TwiML each one is answered with.

Event mapping (first match wins; reference 3.1):

1. a non-empty ``SpeechResult`` -> SPEECH (final; ``Confidence``, default 0.9; ``turnToken`` from the
   query, which start_listening put in the Gather action URL);
2. a non-empty ``Digits`` -> DTMF;
3. ``CallStatus``: initiated/ringing -> INITIATED/RINGING; in-progress -> ANSWERED; completed, failed,
   busy, no-answer -> ENDED with that reason; canceled -> ENDED HANGUP_BOT; others -> nothing.

Two additions. ``AnsweredBy`` (answering machine detection: ``human``, ``machine_start``,
``machine_end_beep``/``_silence``/``_other``, ``fax``, ``unknown``) on a request that is not a call end
yields ANSWERED with ``answered_by`` set to the value as Twilio sent it; the manager decides what a
machine means (end as VOICEMAIL in detect mode, carry on in leave-message mode). The first voice
request of an inbound call (``Direction=inbound``, ``CallStatus=ringing``, not a status callback) also
yields ANSWERED after RINGING: Twilio answers the call as soon as our reply's first verb runs and
sends no answered callback of its own for inbound calls.

Query keys we put on our own URLs: ``callId`` (our call id), ``type`` (``status`` for status
callbacks, ``amd`` for asynchronous machine detection results), ``turnToken`` (Gather actions),
``ka`` (keep-alive turns, see twiml.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import parse_qsl

from twilio.twiml.voice_response import VoiceResponse

from ..base import (
    CallMode,
    CallView,
    Direction,
    EndReason,
    EventType,
    ProviderEvent,
    Verification,
    WebhookOutcome,
    WebhookReply,
    WebhookRequest,
)
from . import twiml
from .signature import SIGNATURE_HEADER
from .voices import say_voice

XML = "application/xml"
CALLBACK_TYPES = ("status", "amd")
_ENDED = {
    "completed": EndReason.COMPLETED,
    "failed": EndReason.FAILED,
    "busy": EndReason.BUSY,
    "no-answer": EndReason.NO_ANSWER,
    "canceled": EndReason.HANGUP_BOT,
}
_PROGRESS = {
    "initiated": EventType.INITIATED,
    "ringing": EventType.RINGING,
    "in-progress": EventType.ANSWERED,
}


def form_params(request: WebhookRequest) -> list[tuple[str, str]]:
    """The form fields of a form-encoded body in form order; empty for other bodies."""
    ctype = request.headers.get("content-type", "application/x-www-form-urlencoded")
    if ctype.split(";")[0].strip().lower() != "application/x-www-form-urlencoded" or not request.body:
        return []
    return list(_parse_form(request.body))


@lru_cache(maxsize=256)
def _parse_form(body: bytes) -> tuple[tuple[str, str], ...]:
    # Verification, parsing and the reply each read the form of the same request: parse it once.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the webhook body is not UTF-8 form data") from None
    return tuple(parse_qsl(text, keep_blank_values=True))


def _direction(value: str) -> Direction | None:
    value = value.strip().lower()
    if value == "inbound":
        return Direction.INBOUND
    if value.startswith("outbound"):
        return Direction.OUTBOUND
    return None


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _confidence(value: str | None) -> float:
    try:
        conf = float(value) if value not in (None, "") else 0.9
    except ValueError:
        return 0.9
    return conf if 0.0 <= conf <= 1.0 else 0.9


def _fallback_key(request: WebhookRequest, form: Mapping[str, str]) -> str:
    q = request.query
    parts = [
        request.headers.get(SIGNATURE_HEADER, ""),
        form.get("CallSid", ""),
        form.get("CallStatus", ""),
        form.get("Direction", ""),
        q.get("callId", ""),
        q.get("type", ""),
        q.get("turnToken", ""),
    ]
    digest = hashlib.sha256("\n".join(parts).encode() + b"\n" + request.body).hexdigest()
    return "twilio:fallback:" + digest


def parse_webhook(request: WebhookRequest, verification: Verification) -> list[ProviderEvent]:
    """Normalised events for one Twilio webhook. Raises ValueError for a body that is not one."""
    form = dict(form_params(request))
    call_sid = form.get("CallSid", "").strip()
    call_id = request.query.get("callId", "").strip() or None
    if not call_sid and not call_id:
        raise ValueError("not a Twilio voice webhook (no CallSid)")
    kind = request.query.get("type", "")
    status = form.get("CallStatus", "").strip().lower()
    direction = _direction(form.get("Direction", ""))
    base = ProviderEvent(
        EventType.ANSWERED,
        provider_call_id=call_sid or None,
        call_id=call_id,
        dedupe_key=verification.replay_key or _fallback_key(request, form),
        timestamp=_timestamp(form.get("Timestamp", "")),
        direction=direction,
        from_number=form.get("From") or None,
        to_number=form.get("To") or None,
        turn_token=request.query.get("turnToken") or None,
    )
    speech = form.get("SpeechResult", "").strip()
    if speech:
        return [
            replace(base, type=EventType.SPEECH, text=speech, confidence=_confidence(form.get("Confidence")))
        ]
    digits = form.get("Digits", "").strip()
    if digits:
        return [replace(base, type=EventType.DTMF, digits=digits)]
    answered_by = form.get("AnsweredBy", "").strip().lower()
    if status in _ENDED:
        return [replace(base, type=EventType.ENDED, end_reason=_ENDED[status], answered_by=answered_by)]
    events: list[ProviderEvent] = []
    progress = _PROGRESS.get(status)
    if progress is not None and progress is not EventType.ANSWERED:
        events.append(replace(base, type=progress))
    first_inbound = direction is Direction.INBOUND and status == "ringing" and kind not in CALLBACK_TYPES
    if progress is EventType.ANSWERED or answered_by or first_inbound:
        events.append(replace(base, answered_by=answered_by))
    return events


def _reply(response: VoiceResponse) -> WebhookReply:
    body = twiml.render(response, declaration=True).encode("utf-8")
    return WebhookReply(status=200, body=body, content_type=XML)


# The answer to every status/AMD callback and to unknown or ended calls: rendered once.
_EMPTY = _reply(twiml.empty())


def _base_url(request: WebhookRequest, webhook_url: str | None) -> str:
    return webhook_url or request.url.split("?", 1)[0]


def webhook_reply(
    request: WebhookRequest,
    outcome: WebhookOutcome,
    *,
    webhook_url: str | None = None,
    voice: str | None = None,
    language: str = "en-US",
) -> WebhookReply:
    """The TwiML answer (decision table of reference 3.1, fixed per its section 13).

    Stream URLs and tokens come only from the manager's CallView, so nothing here mints a stream;
    a replay gets no stream and no message, only what keeps a live call open.
    """
    if request.query.get("type", "") in CALLBACK_TYPES:
        return _EMPTY  # Twilio ignores TwiML in answer to callbacks
    form = dict(form_params(request))
    view = outcome.calls.get(form.get("CallSid", ""))
    if view is None:
        return _EMPTY
    if view.rejected:
        return _reply(twiml.reject())
    if view.terminal:
        return _EMPTY
    ringing = form.get("CallStatus", "").strip().lower() in ("ringing", "queued", "initiated")
    first_pause = twiml.RINGING_PAUSE_S if ringing else twiml.KEEPALIVE_PAUSE_S
    redirect = twiml.keepalive_url(_base_url(request, webhook_url), view.call_id)
    response = twiml.empty()
    if outcome.replay:
        return _reply(twiml.keep_alive(response, redirect, first_pause_s=first_pause))
    if view.pending_message:
        twiml.say(response, view.pending_message, say_voice(voice), language)
        if view.mode is CallMode.NOTIFY:
            return _reply(twiml.hangup(response))
        first_pause = twiml.KEEPALIVE_PAUSE_S
    return _reply(_continue(response, view, redirect, first_pause))


def _continue(response: VoiceResponse, view: CallView, redirect: str, first_pause: int) -> VoiceResponse:
    if view.stream_url and view.stream_token:
        return twiml.stream(response, view.stream_url, view.stream_token)
    return twiml.keep_alive(response, redirect, first_pause_s=first_pause)
