"""parse_webhook / webhook_reply / verify_webhook over realistic Twilio form bodies."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from providers.base import (
    CallMode,
    CallView,
    Direction,
    EndReason,
    EventType,
    Verification,
    WebhookOutcome,
    WebhookRequest,
)
from providers.twilio import TwilioProvider, TwilioSettings
from providers.twilio.signature import compute_signature
from providers.twilio.voices import say_voice

from .fakes import ACCOUNT_SID, AUTH_TOKEN, CALL_SID

HOOK = "https://voice.example.com/voice/webhook"
STREAM = "wss://voice.example.com/voice/stream"


def form(**fields: str) -> list[tuple[str, str]]:
    base = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "Called": "+15551230000",
        "Caller": "+15005550006",
        "From": "+15005550006",
        "To": "+15551230000",
        "Direction": "outbound-api",
        "CallStatus": "in-progress",
    }
    base.update(fields)
    return [(k, v) for k, v in base.items() if v != ""]


def request(
    items: list[tuple[str, str]],
    query: dict[str, str] | None = None,
    *,
    token: str = AUTH_TOKEN,
    sign: bool = True,
) -> WebhookRequest:
    query = query or {}
    url = HOOK + ("?" + urlencode(query) if query else "")
    headers = {"content-type": "application/x-www-form-urlencoded", "host": "voice.example.com"}
    if sign:
        headers["x-twilio-signature"] = compute_signature(token, url, items)
    return WebhookRequest(
        method="POST",
        url=url,
        path="/voice/webhook",
        query=query,
        headers=headers,
        body=urlencode(items).encode(),
        query_items=tuple(query.items()),
    )


def parse_xml(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 - the adapter's own output, not untrusted input


OK = Verification(ok=True, replay_key="twilio:req:abc")


@pytest.fixture
async def provider() -> AsyncIterator[TwilioProvider]:
    p = TwilioProvider(TwilioSettings(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, tts_voice="nova"))
    await p.start(_sink, HOOK)
    try:
        yield p
    finally:
        await p.aclose()


async def _sink(events: object) -> None:
    return None


@pytest.mark.parametrize(
    ("status", "etype", "reason"),
    [
        ("initiated", EventType.INITIATED, None),
        ("ringing", EventType.RINGING, None),
        ("in-progress", EventType.ANSWERED, None),
        ("completed", EventType.ENDED, EndReason.COMPLETED),
        ("failed", EventType.ENDED, EndReason.FAILED),
        ("busy", EventType.ENDED, EndReason.BUSY),
        ("no-answer", EventType.ENDED, EndReason.NO_ANSWER),
        ("canceled", EventType.ENDED, EndReason.HANGUP_BOT),
    ],
)
def test_status_callbacks(
    provider: TwilioProvider, status: str, etype: EventType, reason: EndReason | None
) -> None:
    items = form(
        CallStatus=status, Timestamp="Tue, 31 Aug 2010 20:36:29 +0000", CallbackSource="call-progress-events"
    )
    req = request(items, {"callId": "c-1", "type": "status"})
    events = provider.parse_webhook(req, OK)
    assert [e.type for e in events] == [etype]
    ev = events[0]
    assert ev.provider_call_id == CALL_SID
    assert ev.call_id == "c-1"
    assert ev.end_reason is reason
    assert ev.direction is Direction.OUTBOUND
    assert ev.dedupe_key == "twilio:req:abc"
    assert ev.timestamp is not None
    assert ev.timestamp.isoformat() == "2010-08-31T20:36:29+00:00"
    assert (ev.from_number, ev.to_number) == ("+15005550006", "+15551230000")
    reply = provider.webhook_reply(req, WebhookOutcome(replay=False, calls={CALL_SID: view()}))
    assert reply.content_type == "application/xml"
    assert list(parse_xml(reply.body)) == []


def test_unknown_status_and_queued_give_no_event(provider: TwilioProvider) -> None:
    assert provider.parse_webhook(request(form(CallStatus="queued"), {"type": "status"}), OK) == []
    assert provider.parse_webhook(request(form(CallStatus="weird"), {}), OK) == []


def test_speech_result_with_turn_token(provider: TwilioProvider) -> None:
    items = form(SpeechResult="Yes, tomorrow at 5 works.", Confidence="0.87")
    events = provider.parse_webhook(request(items, {"callId": "c-1", "turnToken": "t-9"}), OK)
    assert len(events) == 1
    ev = events[0]
    assert ev.type is EventType.SPEECH
    assert ev.text == "Yes, tomorrow at 5 works."
    assert ev.is_final
    assert ev.confidence == pytest.approx(0.87)
    assert ev.turn_token == "t-9"
    for raw in ("", "abc", "7"):
        items = form(SpeechResult="hello", Confidence=raw)
        (ev,) = provider.parse_webhook(request(items, {"callId": "c-1"}), OK)
        assert ev.confidence == pytest.approx(0.9)
    # An empty result falls through to the call status (the call must still get a reply).
    (ev,) = provider.parse_webhook(request(form(SpeechResult=""), {"callId": "c-1"}), OK)
    assert ev.type is EventType.ANSWERED


def test_digits(provider: TwilioProvider) -> None:
    (ev,) = provider.parse_webhook(request(form(Digits="12#", FinishedOnKey="#"), {"callId": "c-1"}), OK)
    assert ev.type is EventType.DTMF
    assert ev.digits == "12#"


def test_inbound_call(provider: TwilioProvider) -> None:
    items = form(Direction="inbound", CallStatus="ringing", From="+15557654321", To="+15005550006")
    events = provider.parse_webhook(request(items), OK)
    assert [e.type for e in events] == [EventType.RINGING, EventType.ANSWERED]
    for ev in events:
        assert ev.direction is Direction.INBOUND
        assert ev.call_id is None
        assert ev.provider_call_id == CALL_SID
        assert (ev.from_number, ev.to_number) == ("+15557654321", "+15005550006")
    # A status callback for an inbound call is not a pick-up.
    events = provider.parse_webhook(request(items, {"type": "status"}), OK)
    assert [e.type for e in events] == [EventType.RINGING]


@pytest.mark.parametrize("direction", ["outbound-api", "outbound-dial"])
def test_outbound_directions(provider: TwilioProvider, direction: str) -> None:
    (ev,) = provider.parse_webhook(request(form(Direction=direction), {"callId": "c-1"}), OK)
    assert ev.direction is Direction.OUTBOUND


@pytest.mark.parametrize(
    "answered_by",
    [
        "human",
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        "unknown",
    ],
)
def test_answered_by(provider: TwilioProvider, answered_by: str) -> None:
    amd = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("AnsweredBy", answered_by),
        ("MachineDetectionDuration", "2300"),
    ]
    req = request(amd, {"callId": "c-1", "type": "amd"})
    (ev,) = provider.parse_webhook(req, OK)
    assert ev.type is EventType.ANSWERED
    assert ev.answered_by == answered_by
    assert ev.call_id == "c-1"
    reply = provider.webhook_reply(req, WebhookOutcome(replay=False, calls={CALL_SID: view()}))
    assert list(parse_xml(reply.body)) == []
    # Synchronous detection: AnsweredBy on the answer request itself.
    (ev,) = provider.parse_webhook(request(form(AnsweredBy=answered_by), {"callId": "c-1"}), OK)
    assert (ev.type, ev.answered_by) == (EventType.ANSWERED, answered_by)


def test_dedupe_key_fallback_and_malformed(provider: TwilioProvider) -> None:
    req = request(form(CallStatus="completed"), {"callId": "c-1", "type": "status"})
    (a,) = provider.parse_webhook(req, Verification(ok=True))
    (b,) = provider.parse_webhook(req, Verification(ok=True))
    assert a.dedupe_key is not None
    assert a.dedupe_key.startswith("twilio:fallback:")
    assert a.dedupe_key == b.dedupe_key
    other = request(form(CallStatus="busy"), {"callId": "c-1", "type": "status"})
    assert provider.parse_webhook(other, Verification(ok=True))[0].dedupe_key != a.dedupe_key
    with pytest.raises(ValueError, match="CallSid"):
        provider.parse_webhook(request([("Foo", "bar")]), OK)


def view(**kw: object) -> CallView:
    base: dict[str, object] = {
        "call_id": "c-1",
        "provider_call_id": CALL_SID,
        "direction": Direction.OUTBOUND,
        "mode": CallMode.CONVERSATION,
        "terminal": False,
    }
    base.update(kw)
    return CallView(**base)  # type: ignore[arg-type]


def reply_xml(
    provider: TwilioProvider, req: WebhookRequest, v: CallView | None, *, replay: bool = False
) -> ET.Element:
    calls = {CALL_SID: v} if v is not None else {}
    reply = provider.webhook_reply(req, WebhookOutcome(replay=replay, calls=calls))
    assert reply.status == 200
    assert reply.content_type == "application/xml"
    root = parse_xml(reply.body)
    assert root.tag == "Response"
    return root


def redirect_query(el: ET.Element) -> dict[str, str]:
    assert el.tag == "Redirect"
    assert el.get("method") == "POST"
    url = el.text or ""
    assert url.startswith(HOOK + "?")
    return dict(parse_qsl(urlsplit(url).query))


def test_reply_notify_message_escaped(provider: TwilioProvider) -> None:
    req = request(form(), {"callId": "c-1"})
    root = reply_xml(
        provider, req, view(mode=CallMode.NOTIFY, pending_message='Tom & Jerry <3 "quotes" > all')
    )
    say, hangup = list(root)
    assert say.tag == "Say"
    assert say.text == 'Tom & Jerry <3 "quotes" > all'
    assert say.get("voice") == say_voice("nova") == "Polly.Salli"
    assert say.get("language") == "en-US"
    assert hangup.tag == "Hangup"
    raw = provider.webhook_reply(
        req, WebhookOutcome(False, {CALL_SID: view(mode=CallMode.NOTIFY, pending_message="a & b")})
    )
    assert b"a &amp; b" in raw.body


def test_reply_stream(provider: TwilioProvider) -> None:
    root = reply_xml(
        provider, request(form(), {"callId": "c-1"}), view(stream_url=STREAM, stream_token="tok-&-1")
    )
    (connect,) = list(root)
    assert connect.tag == "Connect"
    (stream,) = list(connect)
    assert stream.tag == "Stream"
    assert stream.get("url") == STREAM
    (param,) = list(stream)
    assert (param.tag, param.get("name"), param.get("value")) == ("Parameter", "token", "tok-&-1")


def test_reply_greeting_then_stream(provider: TwilioProvider) -> None:
    v = view(direction=Direction.INBOUND, pending_message="Hello!", stream_url=STREAM, stream_token="t")
    say, connect = list(reply_xml(provider, request(form(Direction="inbound", CallStatus="ringing")), v))
    assert (say.tag, say.text, connect.tag) == ("Say", "Hello!", "Connect")


def test_reply_replay_never_streams_or_speaks(provider: TwilioProvider) -> None:
    v = view(stream_url=STREAM, stream_token="tok", pending_message="again?", mode=CallMode.NOTIFY)
    root = reply_xml(provider, request(form(), {"callId": "c-1"}), v, replay=True)
    pause, redirect = list(root)
    assert pause.tag == "Pause"
    assert redirect_query(redirect)["callId"] == "c-1"
    assert b"tok" not in ET.tostring(root)
    assert list(reply_xml(provider, request(form(), {"callId": "c-1"}), None, replay=True)) == []


def test_reply_rejected_inbound(provider: TwilioProvider) -> None:
    v = view(call_id="", direction=Direction.INBOUND, terminal=True, rejected=True)
    (reject,) = list(reply_xml(provider, request(form(Direction="inbound", CallStatus="ringing")), v))
    assert reject.tag == "Reject"


def test_reply_inbound_without_stream_keeps_call_open(provider: TwilioProvider) -> None:
    v = view(call_id="c-7", direction=Direction.INBOUND)
    pause, redirect = list(reply_xml(provider, request(form(Direction="inbound", CallStatus="ringing")), v))
    assert (pause.tag, pause.get("length")) == ("Pause", "1")
    query = redirect_query(redirect)
    assert query["callId"] == "c-7"
    assert "ka" in query
    # Each keep-alive turn answers with the long pause and the loop again.
    pause, redirect = list(reply_xml(provider, request(form(Direction="inbound"), query), v))
    assert (pause.tag, pause.get("length")) == ("Pause", "60")
    assert redirect_query(redirect)["callId"] == "c-7"


def test_reply_gather_result_keeps_call_open(provider: TwilioProvider) -> None:
    req = request(form(SpeechResult="hi"), {"callId": "c-1", "turnToken": "t"})
    pause, redirect = list(reply_xml(provider, req, view()))
    assert pause.tag == "Pause"
    assert redirect_query(redirect)["callId"] == "c-1"


def test_reply_unknown_or_ended_call_is_empty(provider: TwilioProvider) -> None:
    assert list(reply_xml(provider, request(form(), {"callId": "c-1"}), None)) == []
    assert list(reply_xml(provider, request(form(), {"callId": "c-1"}), view(terminal=True))) == []


def test_verify_webhook_real_body(provider: TwilioProvider) -> None:
    req = request(form(CallStatus="ringing"), {"callId": "c-1", "type": "status"})
    ok = provider.verify_webhook(req)
    assert ok.ok
    assert ok.replay_key is not None
    assert ok.replay_key.startswith("twilio:req:")
    forged = request(form(CallStatus="ringing"), {"callId": "c-1", "type": "status"}, token="wrong")
    bad = provider.verify_webhook(forged)
    assert not bad.ok
    assert bad.reason.startswith("Invalid signature for URL: " + HOOK)
    unsigned = provider.verify_webhook(request(form(), sign=False))
    assert unsigned.reason == "Missing X-Twilio-Signature header"


async def test_skip_mode() -> None:
    p = TwilioProvider(
        TwilioSettings(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, skip_signature_verification=True)
    )
    try:
        result = p.verify_webhook(request(form(), sign=False))
        assert result.ok
        assert result.replay_key is not None
        assert result.replay_key.startswith("twilio:skip:")
    finally:
        await p.aclose()


@pytest.mark.parametrize(
    ("name", "voice"),
    [
        ("alloy", "Polly.Joanna"),
        ("echo", "Polly.Matthew"),
        ("fable", "Polly.Amy"),
        ("onyx", "Polly.Brian"),
        ("nova", "Polly.Salli"),
        ("shimmer", "Polly.Kimberly"),
        ("Polly.Vicki", "Polly.Vicki"),
        ("Google.en-US-Neural2-F", "Google.en-US-Neural2-F"),
        (None, "Polly.Joanna"),
        ("", "Polly.Joanna"),
        ("something-else", "Polly.Joanna"),
    ],
)
def test_voices(name: str | None, voice: str) -> None:
    assert say_voice(name) == voice


def test_dtmf_twiml_plays_digits_then_restores_the_stream() -> None:
    from providers.twilio import twiml

    response = twiml.empty()
    response.play(digits="1w2#")
    twiml.stream(response, "wss://voice.example.com/voice/stream", "tok")
    root = parse_xml(twiml.render(response).encode())
    assert [child.tag for child in root] == ["Play", "Connect"]
    assert root[0].attrib["digits"] == "1w2#"
    assert root[1][0].attrib["url"] == "wss://voice.example.com/voice/stream"
