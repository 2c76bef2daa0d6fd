"""REST behaviour and error mapping of TwilioProvider against a loopback fake of Twilio's API."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from providers.base import CallMode, CallRef, DialRequest, EndReason, ProviderError, ProviderErrorKind
from providers.twilio import TwilioProvider, TwilioSettings
from providers.twilio.api import map_error

from .fakes import ACCOUNT_SID, AUTH_TOKEN, CALL_SID, FakeTwilio, call_json, error_json, fake_twilio

WEBHOOK = "https://voice.example.com/voice/webhook"
CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with fake_twilio() as f:
        yield f


def settings(base_url: str, **kw: object) -> TwilioSettings:
    return TwilioSettings(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, base_url=base_url, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def provider(fake: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    p = TwilioProvider(settings(fake.base_url, request_timeout_s=0.5))
    await p.start(_sink, WEBHOOK)
    try:
        yield p
    finally:
        await p.aclose()


async def _sink(events: object) -> None:
    return None


def dial(mode: CallMode = CallMode.CONVERSATION, message: str = "", amd: str = "off") -> DialRequest:
    return DialRequest(
        call_id="c-1",
        from_number="+15005550006",
        to_number="+15551230000",
        webhook_url=WEBHOOK,
        mode=mode,
        message=message,
        machine_detection=amd,
    )


async def test_dial_sends_callbacks_and_answer_url(provider: TwilioProvider, fake: FakeTwilio) -> None:
    result = await provider.dial(dial())
    assert result.provider_call_id == CALL_SID
    assert result.status == "queued"
    assert not result.message_delivered_inline
    req = fake.requests[-1]
    assert (req.method, req.path, req.user) == ("POST", CALLS, ACCOUNT_SID)
    form = req.form
    assert ("Url", WEBHOOK + "?callId=c-1") in form
    assert ("StatusCallback", WEBHOOK + "?callId=c-1&type=status") in form
    assert [v for k, v in form if k == "StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert ("StatusCallbackMethod", "POST") in form
    assert ("Timeout", "30") in form
    assert not any(k in ("Twiml", "MachineDetection") for k, _ in form)


async def test_notify_message_is_inline_twiml(provider: TwilioProvider, fake: FakeTwilio) -> None:
    result = await provider.dial(dial(CallMode.NOTIFY, "Fish & chips <today> at 5"))
    assert result.message_delivered_inline
    form = dict(fake.requests[-1].form)
    assert "Url" not in form
    assert "StatusCallback" in form
    assert form["Twiml"] == (
        '<Response><Say language="en-US" voice="Polly.Joanna">Fish &amp; chips &lt;today&gt; at 5</Say>'
        "<Hangup /></Response>"
    )


async def test_too_long_notify_message_falls_back_to_answer_url(
    provider: TwilioProvider, fake: FakeTwilio
) -> None:
    result = await provider.dial(dial(CallMode.NOTIFY, "word " * 900))
    assert not result.message_delivered_inline
    form = fake.requests[-1].form
    assert ("Url", WEBHOOK + "?callId=c-1") in form
    assert [v for k, v in form if k == "StatusCallbackEvent"] == ["initiated", "ringing", "completed"]


async def test_machine_detection_parameters(provider: TwilioProvider, fake: FakeTwilio) -> None:
    await provider.dial(dial(amd="detect"))
    form = dict(fake.requests[-1].form)
    assert form["MachineDetection"] == "Enable"
    assert form["AsyncAmd"] == "true"
    assert form["AsyncAmdStatusCallback"] == WEBHOOK + "?callId=c-1&type=amd"
    await provider.dial(dial(CallMode.NOTIFY, "hello", amd="leave-message"))
    form = dict(fake.requests[-1].form)
    assert form["MachineDetection"] == "DetectMessageEnd"
    assert "AsyncAmd" not in form
    await provider.dial(dial(CallMode.NOTIFY, "word " * 900, amd="detect"))
    form = dict(fake.requests[-1].form)
    assert form["MachineDetection"] == "Enable"
    assert "AsyncAmd" not in form
    assert "Url" in form


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, 20003, ProviderErrorKind.AUTH),
        (403, 20003, ProviderErrorKind.AUTH),
        (429, 20429, ProviderErrorKind.RATE_LIMITED),
        (500, 20500, ProviderErrorKind.UNAVAILABLE),
        (503, 20503, ProviderErrorKind.UNAVAILABLE),
        (400, 21211, ProviderErrorKind.REJECTED),
    ],
)
async def test_dial_errors_are_classified(
    provider: TwilioProvider, fake: FakeTwilio, status: int, code: int, kind: ProviderErrorKind
) -> None:
    fake.script("POST", "/Calls.json", status, error_json(status, code, f"Problem {code} with {AUTH_TOKEN}"))
    with pytest.raises(ProviderError) as info:
        await provider.dial(dial())
    err = info.value
    assert err.kind is kind
    assert err.provider_code == str(code)
    assert AUTH_TOKEN not in err.message
    assert "{" not in err.message  # never the raw body
    if kind is ProviderErrorKind.REJECTED:
        assert "21211" in err.message
        assert "Problem 21211" in err.message


async def test_non_json_error_body_is_not_echoed(provider: TwilioProvider, fake: FakeTwilio) -> None:
    fake.script("POST", "/Calls.json", 502, "<html>bad gateway secret-ish</html>")
    with pytest.raises(ProviderError) as info:
        await provider.dial(dial())
    assert info.value.kind is ProviderErrorKind.UNAVAILABLE
    assert "html" not in info.value.message


async def test_timeout_is_unavailable(provider: TwilioProvider, fake: FakeTwilio) -> None:
    fake.script("POST", "/Calls.json", 201, call_json(), delay_s=5)
    with pytest.raises(ProviderError) as info:
        await provider.dial(dial())
    assert info.value.kind is ProviderErrorKind.UNAVAILABLE
    assert "did not answer" in info.value.message


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = TwilioProvider(settings(f"http://127.0.0.1:{port}", request_timeout_s=1.0))
    try:
        with pytest.raises(ProviderError) as info:
            await p.dial(dial())
        assert info.value.kind is ProviderErrorKind.UNAVAILABLE
        assert "could not connect" in info.value.message
        status = await p.fetch_status(CALL_SID)
        assert status.is_unknown
        assert not status.is_terminal
    finally:
        await p.aclose()


async def test_hangup_and_already_ended(provider: TwilioProvider, fake: FakeTwilio) -> None:
    await provider.hangup(CallRef("c-1", CALL_SID))
    req = fake.requests[-1]
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
    assert req.form == [("Status", "completed")]
    fake.script(
        "POST", f"/Calls/{CALL_SID}.json", 404, error_json(404, 20404, "The requested resource was not found")
    )
    await provider.hangup(CallRef("c-1", CALL_SID))
    fake.script("POST", f"/Calls/{CALL_SID}.json", 400, error_json(400, 21220, "Call is not in-progress."))
    await provider.hangup(CallRef("c-1", CALL_SID))
    fake.script("POST", f"/Calls/{CALL_SID}.json", 401, error_json(401, 20003, "Authenticate"))
    with pytest.raises(ProviderError) as info:
        await provider.hangup(CallRef("c-1", CALL_SID))
    assert info.value.kind is ProviderErrorKind.AUTH
    count = len(fake.requests)
    await provider.hangup(CallRef("c-1", None))
    assert len(fake.requests) == count


@pytest.mark.parametrize(
    ("remote", "terminal", "reason"),
    [
        ("queued", False, None),
        ("ringing", False, None),
        ("in-progress", False, None),
        ("completed", True, EndReason.COMPLETED),
        ("failed", True, EndReason.FAILED),
        ("busy", True, EndReason.BUSY),
        ("no-answer", True, EndReason.NO_ANSWER),
        ("canceled", True, EndReason.HANGUP_BOT),
    ],
)
async def test_fetch_status(
    provider: TwilioProvider, fake: FakeTwilio, remote: str, terminal: bool, reason: EndReason | None
) -> None:
    fake.script("GET", f"/Calls/{CALL_SID}.json", 200, call_json(status=f" {remote.upper()} "))
    status = await provider.fetch_status(CALL_SID)
    assert (status.status, status.is_terminal, status.end_reason, status.is_unknown) == (
        remote,
        terminal,
        reason,
        False,
    )


async def test_fetch_status_not_found_and_transient(provider: TwilioProvider, fake: FakeTwilio) -> None:
    fake.script("GET", f"/Calls/{CALL_SID}.json", 404, error_json(404, 20404, "not found"))
    status = await provider.fetch_status(CALL_SID)
    assert (status.status, status.is_terminal, status.is_unknown) == ("not-found", True, False)
    for code in (500, 429, 401):
        fake.script("GET", f"/Calls/{CALL_SID}.json", code, error_json(code, 20000 + code, "x"))
        status = await provider.fetch_status(CALL_SID)
        assert status.is_unknown
        assert not status.is_terminal
    fake.script("GET", f"/Calls/{CALL_SID}.json", 200, "not json")
    assert (await provider.fetch_status(CALL_SID)).is_unknown


async def test_speak_and_listen_updates(provider: TwilioProvider, fake: FakeTwilio) -> None:
    await provider.speak(CallRef("c-1", CALL_SID), "hi", voice="onyx")
    form = dict(fake.requests[-1].form)
    assert form["Twiml"].startswith(
        '<Response><Say language="en-US" voice="Polly.Brian">hi</Say><Pause length="60" />'
    )
    await provider.speak(CallRef("c-1", CALL_SID, "wss://voice.example.com/s", "tok-s"), "back")
    form = dict(fake.requests[-1].form)
    assert form["Twiml"].endswith(
        '<Say language="en-US" voice="Polly.Joanna">back</Say><Connect><Stream url="wss://voice.example.com/s">'
        '<Parameter name="token" value="tok-s" /></Stream></Connect></Response>'
    )
    await provider.start_listening(CallRef("c-1", CALL_SID), "tok-1")
    form = dict(fake.requests[-1].form)
    assert form["Twiml"].startswith(
        f'<Response><Gather action="{WEBHOOK}?callId=c-1&amp;turnToken=tok-1" input="speech" language="en-US"'
        ' method="POST" speechTimeout="auto" /><Pause length="60" /><Redirect method="POST">'
        f"{WEBHOOK}?callId=c-1&amp;ka="
    )
    with pytest.raises(ProviderError) as info:
        await provider.speak(CallRef("c-1", None), "hi")
    assert info.value.kind is ProviderErrorKind.REJECTED


async def test_map_error_unexpected_and_repr() -> None:
    err = map_error(RuntimeError("boom " + AUTH_TOKEN), "place the call", secret=AUTH_TOKEN)
    assert err.kind is ProviderErrorKind.UNAVAILABLE
    assert AUTH_TOKEN not in err.message
    s = TwilioSettings(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    p = TwilioProvider(s)
    try:
        assert AUTH_TOKEN not in repr(s)
        assert AUTH_TOKEN not in repr(p)
        assert AUTH_TOKEN not in repr(p.rest)
    finally:
        await p.aclose()


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="authToken"):
        TwilioSettings(account_sid=ACCOUNT_SID, auth_token="")
    with pytest.raises(ValueError, match="base URL"):
        TwilioSettings(account_sid=ACCOUNT_SID, auth_token="x", base_url="ftp://h")
