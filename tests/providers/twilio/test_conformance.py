"""Every request the Twilio provider sends validates against Twilio's own OpenAPI spec (via Prism)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from providers.base import CallMode, CallRef, DialRequest, ProviderError, ProviderErrorKind
from providers.twilio import TwilioProvider, TwilioSettings

from .conftest import Prism
from .fakes import ACCOUNT_SID, AUTH_TOKEN

WEBHOOK = "https://voice.example.com/voice/webhook"
PASSED = "The request passed the validation rules"
FAILED = "did not pass the validation rules"


@pytest.fixture
async def provider(prism: Prism) -> AsyncIterator[TwilioProvider]:
    p = TwilioProvider(
        TwilioSettings(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, base_url=prism.base_url)
    )
    await p.start(_sink, WEBHOOK)
    try:
        yield p
    finally:
        await p.aclose()


async def _sink(events: object) -> None:
    return None


def _dial(mode: CallMode, message: str = "", amd: str = "off") -> DialRequest:
    return DialRequest(
        call_id="0f8e2f3c-6d0a-4a55-9d1c-2f7d1b8f1a11",
        from_number="+15005550006",
        to_number="+15551230000",
        webhook_url=WEBHOOK,
        mode=mode,
        message=message,
        voice="shimmer",
        ring_timeout_s=25,
        machine_detection=amd,
    )


async def test_every_provider_request_validates(provider: TwilioProvider, prism: Prism) -> None:
    before = prism.lines()
    results = [
        await provider.dial(_dial(CallMode.CONVERSATION)),
        await provider.dial(_dial(CallMode.NOTIFY, "Your table for 2 & a dog is ready <now>.")),
        await provider.dial(_dial(CallMode.CONVERSATION, amd="detect")),
        await provider.dial(_dial(CallMode.NOTIFY, "Please call back.", amd="leave-message")),
        await provider.dial(_dial(CallMode.NOTIFY, "long " * 900)),
    ]
    sid = results[0].provider_call_id
    assert sid.startswith("CA")
    assert len(sid) == 34
    ref = CallRef("0f8e2f3c-6d0a-4a55-9d1c-2f7d1b8f1a11", sid)
    streamed = CallRef(ref.call_id, sid, "wss://voice.example.com/voice/stream", "tok-123")
    await provider.speak(ref, "Hello & welcome <caller>")
    await provider.speak(streamed, "Back to the stream")
    await provider.start_listening(ref, "turn-1")
    await provider.send_dtmf(ref, "1w2#")
    await provider.send_dtmf(streamed, "9")
    await provider.hangup(ref)
    status = await provider.fetch_status(sid)
    assert not status.is_unknown
    sent = 5 + 6 + 1
    new = prism.lines()[len(before) :]
    assert not [line for line in new if FAILED in line or "✖" in line]
    assert sum(PASSED in line for line in new) == sent


def _raw_create(prism: Prism, form: bytes) -> int:
    req = urllib.request.Request(
        f"{prism.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
        data=form,
        method="POST",
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def test_the_check_can_fail(prism: Prism) -> None:
    valid = b"From=%2B15005550006&To=%2B15551230000&Url=https%3A%2F%2Fvoice.example.com%2Fhook"
    assert _raw_create(prism, valid) == 201
    assert _raw_create(prism, b"From=%2B15005550006&Url=https%3A%2F%2Fvoice.example.com%2Fhook") == 422
    assert _raw_create(prism, valid + b"&Timeout=abc") == 422


async def test_invalid_request_surfaces_as_rejected(prism: Prism) -> None:
    # An account SID that breaks the spec's pattern: Prism answers 422, the adapter says REJECTED.
    bad = TwilioProvider(
        TwilioSettings(account_sid="AC-not-a-sid", auth_token=AUTH_TOKEN, base_url=prism.base_url)
    )
    try:
        with pytest.raises(ProviderError) as info:
            await bad.dial(_dial(CallMode.CONVERSATION))
        assert info.value.kind is ProviderErrorKind.REJECTED
        assert "422" in info.value.message
    finally:
        await bad.aclose()
