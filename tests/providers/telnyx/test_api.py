"""Telnyx REST through the SDK against a loopback Call Control fake: commands, errors, status."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from providers.base import CallMode, CallRef, DialRequest, ProviderError, ProviderErrorKind
from providers.telnyx import TelnyxProvider, TelnyxSettings
from providers.telnyx.api import first_error

from .fakes import API_KEY, CCID, CONNECTION_ID, FakeTelnyx, call_json, error_json, fake_telnyx

WEBHOOK = "https://example.test/voice/webhook"
REF = CallRef("call-1", CCID)


@asynccontextmanager
async def provider(timeout_s: float = 5.0) -> AsyncIterator[tuple[TelnyxProvider, FakeTelnyx]]:
    async with fake_telnyx() as fake:
        settings = TelnyxSettings(
            api_key=API_KEY,
            connection_id=CONNECTION_ID,
            public_key=None,
            base_url=fake.base_url,
            request_timeout_s=timeout_s,
        )
        p = TelnyxProvider(settings)
        await p.start(_sink, WEBHOOK)
        try:
            yield p, fake
        finally:
            await p.aclose()


async def _sink(events: Any) -> None:
    return None


def _is_uuid(value: object) -> bool:
    return isinstance(value, str) and str(uuid.UUID(value)) == value


def _dial(**kw: Any) -> DialRequest:
    base: dict[str, Any] = {
        "call_id": "call-1",
        "from_number": "+15550001",
        "to_number": "+15550002",
        "webhook_url": WEBHOOK,
        "mode": CallMode.CONVERSATION,
        "ring_timeout_s": 25,
    }
    base.update(kw)
    return DialRequest(**base)


async def test_dial_posts_the_call_control_request() -> None:
    async with provider() as (p, fake):
        result = await p.dial(_dial())
    assert result.provider_call_id == CCID and result.status == "initiated"
    (req,) = fake.requests
    assert (req.method, req.path, req.token) == ("POST", "/v2/calls", API_KEY)
    body = dict(req.body)
    assert _is_uuid(body.pop("command_id"))
    assert body == {
        "connection_id": CONNECTION_ID,
        "to": "+15550002",
        "from": "+15550001",
        "webhook_url": WEBHOOK,
        "webhook_url_method": "POST",
        "client_state": base64.b64encode(b"call-1").decode(),
        "timeout_secs": 25,
    }


@pytest.mark.parametrize(("mode", "amd"), [("detect", "detect"), ("leave-message", "detect_beep")])
async def test_dial_with_machine_detection(mode: str, amd: str) -> None:
    async with provider() as (p, fake):
        await p.dial(_dial(machine_detection=mode))
    assert fake.requests[0].body["answering_machine_detection"] == amd


async def test_dial_without_call_control_id_is_unavailable() -> None:
    async with provider() as (p, fake):
        fake.script("POST", "/v2/calls", 200, {"data": {}})
        with pytest.raises(ProviderError) as info:
            await p.dial(_dial())
    assert info.value.kind is ProviderErrorKind.UNAVAILABLE


async def test_answer_plain_and_with_stream() -> None:
    async with provider() as (p, fake):
        await p.answer(CallRef("call-9", CCID))
        await p.answer(
            CallRef("call-9", CCID, stream_url="wss://example.test/voice/stream", stream_token="tok-1")
        )
    plain, streamed = fake.commands("answer")
    assert plain.path == f"/v2/calls/{CCID}/actions/answer"
    assert plain.body["client_state"] == base64.b64encode(b"call-9").decode()
    assert _is_uuid(plain.body["command_id"])
    assert "stream_url" not in plain.body
    assert streamed.body["stream_url"] == "wss://example.test/voice/stream?token=tok-1"
    assert streamed.body["stream_track"] == "inbound_track"
    assert streamed.body["stream_bidirectional_mode"] == "rtp"
    assert streamed.body["stream_bidirectional_codec"] == "PCMU"
    assert plain.body["command_id"] != streamed.body["command_id"]


async def test_speak_listen_dtmf_commands() -> None:
    async with provider() as (p, fake):
        await p.speak(REF, "Hello there")
        await p.speak(REF, "Hi", voice="male")
        await p.start_listening(REF, "turn-1")
        await p.stop_listening(REF)
        await p.send_dtmf(REF, "12#")
    first, second = fake.commands("speak")
    assert first.body["payload"] == "Hello there"
    assert (first.body["voice"], first.body["language"]) == ("female", "en-US")
    assert second.body["voice"] == "male"
    (start,) = fake.commands("transcription_start")
    assert start.body["transcription_engine"] == "Telnyx"
    assert start.body["transcription_engine_config"] == {"transcription_engine": "Telnyx", "language": "en"}
    assert len(fake.commands("transcription_stop")) == 1
    (dtmf,) = fake.commands("send_dtmf")
    assert dtmf.body["digits"] == "12#"
    assert all(_is_uuid(r.body["command_id"]) for r in fake.requests)
    assert len({r.body["command_id"] for r in fake.requests}) == len(fake.requests)


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, error_json("10005", "Resource not found")), (422, error_json("90018", "Call has already ended"))],
)
async def test_hangup_of_an_ended_call_succeeds(status: int, body: Any) -> None:
    async with provider() as (p, fake):
        fake.script("POST", "/actions/hangup", status, body)
        await p.hangup(REF)
        fake.script("POST", "/actions/transcription_stop", status, body)
        await p.stop_listening(REF)
    assert len(fake.commands("hangup")) == 1


async def test_hangup_without_provider_id_is_a_no_op() -> None:
    async with provider() as (p, fake):
        await p.hangup(CallRef("call-1", None))
        with pytest.raises(ProviderError) as info:
            await p.speak(CallRef("call-1", None), "hi")
    assert fake.requests == []
    assert info.value.kind is ProviderErrorKind.REJECTED


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, ProviderErrorKind.AUTH),
        (403, ProviderErrorKind.AUTH),
        (429, ProviderErrorKind.RATE_LIMITED),
        (500, ProviderErrorKind.UNAVAILABLE),
        (503, ProviderErrorKind.UNAVAILABLE),
        (400, ProviderErrorKind.REJECTED),
        (422, ProviderErrorKind.REJECTED),
    ],
)
async def test_error_mapping(status: int, kind: ProviderErrorKind) -> None:
    body = error_json("10015", "Bad request", f"detail mentioning {API_KEY}")
    async with provider() as (p, fake):
        fake.script("POST", "/actions/hangup", status, body)
        with pytest.raises(ProviderError) as info:
            await p.hangup(REF)
    err = info.value
    assert err.kind is kind
    assert err.provider_code == "10015"
    assert API_KEY not in err.message and API_KEY not in str(err)
    assert f"HTTP {status}" in err.message
    if kind is ProviderErrorKind.REJECTED:
        assert "***" in err.message


async def test_error_body_that_is_not_json_is_never_echoed() -> None:
    async with provider() as (p, fake):
        fake.script("POST", "/actions/speak", 400, "<html>secret proxy page</html>")
        with pytest.raises(ProviderError) as info:
            await p.speak(REF, "hi")
    assert info.value.kind is ProviderErrorKind.REJECTED
    assert "secret proxy page" not in info.value.message
    assert info.value.provider_code is None


async def test_timeout_and_connection_refused_are_unavailable() -> None:
    async with provider(timeout_s=0.2) as (p, fake):
        fake.script("POST", "/actions/speak", 200, {"data": {"result": "ok"}}, delay_s=5)
        with pytest.raises(ProviderError) as info:
            await p.speak(REF, "hi")
        assert info.value.kind is ProviderErrorKind.UNAVAILABLE
        assert "did not answer" in info.value.message
        fake.release()
    # The fake is gone now: nothing listens on its port.
    with pytest.raises(ProviderError) as refused:
        await p.rest.run(
            "speak on the call", lambda: p.rest.client.calls.actions.speak(CCID, payload="x", voice="f")
        )
    assert refused.value.kind is ProviderErrorKind.UNAVAILABLE


async def test_closed_adapter_refuses() -> None:
    async with provider() as (p, _fake):
        pass
    with pytest.raises(ProviderError, match="closed"):
        await p.speak(REF, "hi")


async def test_fetch_status() -> None:
    async with provider() as (p, fake):
        alive = await p.fetch_status(CCID)
        assert not alive.is_terminal and not alive.is_unknown
        assert fake.requests[-1].method == "GET" and fake.requests[-1].path == f"/v2/calls/{CCID}"
        fake.script("GET", f"/calls/{CCID}", 200, call_json(is_alive=False))
        ended = await p.fetch_status(CCID)
        assert ended.is_terminal and not ended.is_unknown
        fake.script("GET", f"/calls/{CCID}", 404, error_json("10005", "Resource not found"))
        gone = await p.fetch_status(CCID)
        assert gone.is_terminal and gone.status == "not-found"
        fake.script("GET", f"/calls/{CCID}", 500, error_json("10000", "oops"))
        assert (await p.fetch_status(CCID)).is_unknown
        fake.script("GET", f"/calls/{CCID}", 401, error_json("10009", "auth"))
        assert (await p.fetch_status(CCID)).is_unknown
        fake.script("GET", f"/calls/{CCID}", 200, {"data": {"call_control_id": CCID}})
        missing = await p.fetch_status(CCID)
        assert missing.is_unknown and not missing.is_terminal
        fake.script("GET", f"/calls/{CCID}", 200, "not json")
        assert (await p.fetch_status(CCID)).is_unknown


async def test_first_error_and_settings_repr() -> None:
    assert first_error({"errors": [{"code": "90018", "title": "Call has already ended"}]}) == (
        "90018",
        "Call has already ended",
    )
    assert first_error({"errors": []}) == (None, "")
    assert first_error("x") == (None, "")
    settings = TelnyxSettings(api_key=API_KEY, connection_id=CONNECTION_ID, public_key="k")
    assert API_KEY not in repr(settings)
    provider_ = TelnyxProvider(settings)
    assert API_KEY not in repr(provider_) and API_KEY not in repr(provider_.rest)
    await provider_.aclose()
    with pytest.raises(ValueError, match="apiKey"):
        TelnyxSettings(api_key="", connection_id="c", public_key=None)
    with pytest.raises(ValueError, match="base URL"):
        TelnyxSettings(api_key="k", connection_id="c", public_key=None, base_url="ftp://x")
