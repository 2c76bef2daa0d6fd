"""Plivo's callbacks, signed as Plivo signs them, through verify_webhook, parse_webhook and webhook_reply."""

from __future__ import annotations

import re

import pytest

from providers.base import (
    CallMode,
    CallRef,
    CallView,
    Direction,
    EndReason,
    EventType,
    ProviderEvent,
    WebhookOutcome,
    WebhookReply,
    WebhookRequest,
)
from providers.plivo import PlivoProvider
from providers.plivo.media import decode_token

from .conftest import WEBHOOK
from .fakes import FakePlivo, signed_callback


def url(flow: str | None, call_id: str | None = "call-1", **extra: str) -> str:
    query = [("provider", "plivo")]
    if flow:
        query.append(("flow", flow))
    if call_id:
        query.append(("callId", call_id))
    query.extend(extra.items())
    return WEBHOOK + "?" + "&".join(f"{k}={v}" for k, v in query)


ANSWER = {
    "CallUUID": "u-1",
    "RequestUUID": "r-1",
    "CallStatus": "in-progress",
    "Direction": "outbound",
    "Event": "StartApp",
    "From": "15550000000",
    "To": "15551112222",
}


def events(provider: PlivoProvider, req: WebhookRequest) -> list[ProviderEvent]:
    verification = provider.verify_webhook(req)
    assert verification.ok, verification.reason
    return provider.parse_webhook(req, verification)


def view(**kw: object) -> CallView:
    fields: dict[str, object] = {
        "call_id": "call-1",
        "provider_call_id": "u-1",
        "direction": Direction.OUTBOUND,
        "mode": CallMode.CONVERSATION,
        "terminal": False,
    }
    fields.update(kw)
    return CallView(**fields)  # type: ignore[arg-type]


def reply(provider: PlivoProvider, req: WebhookRequest, *views: CallView, replay: bool = False) -> str:
    result: WebhookReply = provider.webhook_reply(
        req, WebhookOutcome(replay, {v.provider_call_id or "": v for v in views})
    )
    assert result.status == 200
    assert result.content_type == "text/xml"
    return result.body.decode()


KEEP_ALIVE = '<Wait length="300"/>'


# -- events --------------------------------------------------------------------------------------
def test_answer_of_an_outbound_call(provider: PlivoProvider) -> None:
    req = signed_callback(url("answer"), ANSWER, nonce="nonce-a")
    (ev,) = events(provider, req)
    assert ev.type is EventType.ANSWERED
    assert (ev.call_id, ev.provider_call_id) == ("call-1", "u-1")
    assert ev.direction is Direction.OUTBOUND
    assert (ev.from_number, ev.to_number) == ("15550000000", "15551112222")
    assert ev.dedupe_key == provider.verify_webhook(req).replay_key
    assert ev.timestamp is not None
    assert ev.timestamp.tzinfo is not None
    assert provider.calls.call_uuid("r-1") == "u-1"  # learned for transfers and hang-ups


def test_inbound_answer_without_a_flow(provider: PlivoProvider) -> None:
    params = {"CallUUID": "u-in", "CallStatus": "ringing", "Direction": "inbound", "Event": "StartApp",
              "From": "+15557770000", "To": "+15550000000"}  # fmt: skip
    (ev,) = events(provider, signed_callback(WEBHOOK, params))
    assert ev.type is EventType.ANSWERED
    assert ev.call_id is None
    assert ev.provider_call_id == "u-in"
    assert ev.direction is Direction.INBOUND
    assert ev.from_number == "+15557770000"


def test_ring_callback(provider: PlivoProvider) -> None:
    (ev,) = events(provider, signed_callback(url("ring"), {"CallUUID": "u-1", "RequestUUID": "r-1",
                                                           "CallStatus": "ringing"}))  # fmt: skip
    assert ev.type is EventType.RINGING


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("completed", EndReason.COMPLETED),
        ("busy", EndReason.BUSY),
        ("no-answer", EndReason.NO_ANSWER),
        ("failed", EndReason.FAILED),
        ("timeout", EndReason.NO_ANSWER),
        ("cancel", EndReason.HANGUP_BOT),
        ("machine", EndReason.VOICEMAIL),
        ("hangup", EndReason.HANGUP_USER),
        ("", EndReason.COMPLETED),
    ],
)
def test_hangup_statuses(provider: PlivoProvider, status: str, reason: EndReason) -> None:
    (ev,) = events(provider, signed_callback(url("hangup"), {"CallUUID": "u-1", "CallStatus": status}))
    assert ev.type is EventType.ENDED
    assert ev.end_reason is reason


def test_hangup_before_answer_names_the_request(provider: PlivoProvider) -> None:
    (ev,) = events(
        provider, signed_callback(url("hangup"), {"RequestUUID": "r-7", "CallStatus": "no-answer"})
    )
    assert (ev.type, ev.provider_call_id, ev.end_reason) == (EventType.ENDED, "r-7", EndReason.NO_ANSWER)


def test_hangup_after_answer_forgets_the_call(provider: PlivoProvider) -> None:
    events(provider, signed_callback(url("answer"), ANSWER))
    provider.calls.set_listen("call-1", "<Response/>")
    (ev,) = events(
        provider, signed_callback(url("hangup"), {**ANSWER, "CallStatus": "completed", "Event": "Hangup"})
    )
    assert ev.end_reason is EndReason.COMPLETED
    assert provider.calls.call_uuid("r-1") is None
    assert provider.calls.take("call-1", "xml-listen") is None


def test_inbound_hangup_without_a_flow(provider: PlivoProvider) -> None:
    (ev,) = events(provider, signed_callback(WEBHOOK, {"CallUUID": "u-in", "CallStatus": "completed",
                                                       "Event": "Hangup", "Direction": "inbound"}))  # fmt: skip
    assert (ev.type, ev.end_reason) == (EventType.ENDED, EndReason.COMPLETED)


@pytest.mark.parametrize(
    "field", ["Speech", "Transcription", "TranscriptionText", "SpeechResult", "RecognizedSpeech", "Text"]
)
def test_getinput_speech_from_any_field_with_the_turn_token(provider: PlivoProvider, field: str) -> None:
    req = signed_callback(url("getinput", turnToken="turn-2"), {"CallUUID": "u-1", field: " yes please "})
    (ev,) = events(provider, req)
    assert ev.type is EventType.SPEECH
    assert (ev.text, ev.is_final, ev.turn_token, ev.call_id) == ("yes please", True, "turn-2", "call-1")


def test_getinput_takes_the_first_non_empty_field_and_confidence(provider: PlivoProvider) -> None:
    params = {"CallUUID": "u-1", "Speech": " ", "Transcription": "second", "Text": "last",
              "SpeechConfidenceScore": "0.87"}  # fmt: skip
    (ev,) = events(provider, signed_callback(url("getinput", turnToken="t"), params))
    assert (ev.text, ev.confidence) == ("second", 0.87)


def test_getinput_digits_and_silence(provider: PlivoProvider) -> None:
    (ev,) = events(
        provider, signed_callback(url("getinput", turnToken="t"), {"CallUUID": "u-1", "Digits": "42#"})
    )
    assert (ev.type, ev.digits, ev.turn_token) == (EventType.DTMF, "42#", "t")
    assert events(provider, signed_callback(url("getinput", turnToken="t"), {"CallUUID": "u-1"})) == []


@pytest.mark.parametrize(("machine", "who"), [("true", "machine"), ("false", "human")])
def test_machine_detection(provider: PlivoProvider, machine: str, who: str) -> None:
    params = {"CallUUID": "u-1", "RequestUUID": "r-1", "Machine": machine, "Event": "MachineDetection",
              "CallStatus": "in-progress", "Direction": "outbound"}  # fmt: skip
    (ev,) = events(provider, signed_callback(url("amd"), params))
    assert (ev.type, ev.answered_by, ev.call_id) == (EventType.ANSWERED, who, "call-1")


@pytest.mark.parametrize("flow", ["xml-speak", "xml-listen", "xml-next"])
def test_xml_fetches_carry_no_events(provider: PlivoProvider, flow: str) -> None:
    assert (
        events(provider, signed_callback(url(flow), {"CallUUID": "u-1", "CallStatus": "in-progress"})) == []
    )


def test_a_callback_without_any_id_is_malformed(provider: PlivoProvider) -> None:
    req = signed_callback(url("answer", call_id=None), {"CallStatus": "in-progress"})
    with pytest.raises(ValueError, match="CallUUID"):
        events(provider, req)


def test_replays_share_the_replay_key_and_bad_signatures_fail(provider: PlivoProvider) -> None:
    first = provider.verify_webhook(signed_callback(url("answer"), ANSWER, nonce="same"))
    second = provider.verify_webhook(signed_callback(url("answer"), ANSWER, nonce="same"))
    assert first.ok
    assert second.ok
    assert first.replay_key == second.replay_key
    forged = signed_callback(url("answer"), ANSWER, token="someone-else")
    result = provider.verify_webhook(forged)
    assert not result.ok
    assert url("answer") in result.reason


# -- replies -------------------------------------------------------------------------------------
def test_notify_answer_speaks_the_message_and_hangs_up(provider: PlivoProvider) -> None:
    req = signed_callback(url("answer"), ANSWER)
    body = reply(provider, req, view(mode=CallMode.NOTIFY, pending_message='Pay <now> & "save"'))
    assert body == (
        '<Response><Speak voice="WOMAN" language="en-US">Pay &lt;now&gt; &amp; "save"</Speak>'
        "<Hangup/></Response>"
    )


def test_streaming_answer_connects_the_stream_with_the_token(provider: PlivoProvider) -> None:
    req = signed_callback(url("answer"), ANSWER)
    body = reply(
        provider, req, view(stream_url="wss://voice.example.com/voice/stream", stream_token="tok-_9")
    )
    match = re.search(r"<Stream ([^>]*)>wss://voice.example.com/voice/stream</Stream>", body)
    assert match is not None, body
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
    assert attrs["bidirectional"] == "true"
    assert attrs["keepCallAlive"] == "true"
    assert attrs["contentType"] == "audio/x-mulaw;rate=8000"
    key, _, value = attrs["extraHeaders"].partition("=")
    assert key == "vctoken"
    assert value.isalnum()
    assert decode_token(value) == "tok-_9"
    assert KEEP_ALIVE in body  # the call outlives a dropped stream


def test_a_replayed_answer_never_mints_a_stream(provider: PlivoProvider) -> None:
    req = signed_callback(url("answer"), ANSWER)
    body = reply(provider, req, view(stream_url="wss://x/s", stream_token="t"), replay=True)
    assert "<Stream" not in body
    assert KEEP_ALIVE in body
    assert reply(provider, signed_callback(url("hangup"), ANSWER), replay=True) == "<Response/>"


def test_a_rejected_inbound_call_is_hung_up(provider: PlivoProvider) -> None:
    req = signed_callback(WEBHOOK, {"CallUUID": "u-in", "Direction": "inbound", "Event": "StartApp"})
    body = reply(provider, req, view(call_id="", provider_call_id="u-in", rejected=True, terminal=True))
    assert body == "<Response><Hangup/></Response>"


def test_plain_answer_and_getinput_keep_the_call_alive(provider: PlivoProvider) -> None:
    body = reply(provider, signed_callback(url("answer"), ANSWER), view())
    assert body.startswith("<Response>" + KEEP_ALIVE + '<Redirect method="POST">')
    assert "flow=xml-next&amp;callId=call-1" in body
    body = reply(
        provider, signed_callback(url("getinput", turnToken="t"), {"CallUUID": "u-1", "Speech": "hi"})
    )
    assert KEEP_ALIVE in body


@pytest.mark.parametrize("flow", ["hangup", "amd", "ring"])
def test_other_callbacks_get_an_empty_response(provider: PlivoProvider, flow: str) -> None:
    assert reply(provider, signed_callback(url(flow), ANSWER), view()) == "<Response/>"


def test_answer_for_a_call_that_already_ended_hangs_up(provider: PlivoProvider) -> None:
    assert reply(provider, signed_callback(url("answer"), ANSWER), view(terminal=True)) == (
        "<Response><Hangup/></Response>"
    )


async def test_xml_fetches_return_the_pending_xml_once(provider: PlivoProvider, fake: FakePlivo) -> None:
    fake.live["u-1"] = {"call_uuid": "u-1", "call_status": "in-progress"}
    events(provider, signed_callback(url("answer"), ANSWER))
    await provider.speak(CallRef("call-1", "r-1"), "Tea & cake?")
    await provider.start_listening(CallRef("call-1", "r-1"), "turn-3")
    fetch = signed_callback(url("xml-speak"), {"CallUUID": "u-1"})
    assert reply(provider, fetch, replay=True).count(KEEP_ALIVE) == 1  # a replay consumes nothing
    speech = reply(provider, fetch)
    assert speech.startswith('<Response><Speak voice="WOMAN" language="en-US">Tea &amp; cake?</Speak>')
    assert speech.endswith(
        '<Redirect method="POST">' + url("xml-next").replace("&", "&amp;") + "</Redirect></Response>"
    )
    assert "<Speak" not in reply(provider, fetch)  # consumed
    listen = reply(provider, signed_callback(url("xml-next"), {"CallUUID": "u-1"}))
    assert "<GetInput " in listen
    assert 'inputType="speech"' in listen
    assert "turnToken=turn-3" in listen
    assert "flow=getinput" in listen
    assert reply(provider, signed_callback(url("xml-next"), {"CallUUID": "u-1"})).count(KEEP_ALIVE) == 1


async def test_speech_reconnects_the_stream_when_the_call_has_one(
    provider: PlivoProvider, fake: FakePlivo
) -> None:
    fake.live["u-1"] = {"call_uuid": "u-1", "call_status": "in-progress"}
    ref = CallRef("call-1", "u-1", stream_url="wss://voice.example.com/voice/stream", stream_token="tk")
    await provider.speak(ref, "Sorry, one moment")
    body = reply(provider, signed_callback(url("xml-speak"), {"CallUUID": "u-1"}))
    assert body.index("<Speak") < body.index("<Stream") < body.index(KEEP_ALIVE)
    await provider.start_listening(CallRef("call-1", "u-1"), "t")  # no redirect to wait for
    assert fake.requests[-1].body["aleg_url"].endswith("flow=xml-listen&callId=call-1")


def test_control_characters_are_dropped_from_spoken_text(provider: PlivoProvider) -> None:
    body = reply(provider, signed_callback(url("answer"), ANSWER),
                 view(mode=CallMode.NOTIFY, pending_message="a\x00b\x07c"))  # fmt: skip
    assert ">abc</Speak>" in body


def test_a_get_callback_carries_its_parameters_in_the_query(provider: PlivoProvider) -> None:
    req = signed_callback(url("answer"), ANSWER, method="GET")
    assert req.body == b""
    (ev,) = events(provider, req)
    assert (ev.type, ev.provider_call_id, ev.call_id) == (EventType.ANSWERED, "u-1", "call-1")
