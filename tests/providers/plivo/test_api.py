"""The real PlivoProvider against the loopback fake of Plivo's Voice API."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from providers.base import CallMode, CallRef, DialRequest, EndReason, ProviderError, ProviderErrorKind
from providers.plivo import PlivoProvider, PlivoSettings

from .conftest import WEBHOOK, make_provider
from .fakes import AUTH_ID, AUTH_TOKEN, FakePlivo

ACCOUNT = f"/v1/Account/{AUTH_ID}"


def _dial(call_id: str = "call-1", **kw: object) -> DialRequest:
    fields: dict[str, object] = {
        "call_id": call_id,
        "from_number": "+1 (555) 000-0000",
        "to_number": "+15551112222",
        "webhook_url": WEBHOOK,
        "mode": CallMode.CONVERSATION,
    }
    fields.update(kw)
    return DialRequest(**fields)  # type: ignore[arg-type]


def _query(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == WEBHOOK
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_dial_places_the_call_with_our_callback_urls(provider: PlivoProvider, fake: FakePlivo) -> None:
    result = await provider.dial(_dial(ring_timeout_s=25))
    assert result.provider_call_id == fake.request_uuids[0]
    assert result.status == "initiated"
    (req,) = fake.requests
    assert (req.method, req.path) == ("POST", f"{ACCOUNT}/Call/")
    assert req.auth == (AUTH_ID, AUTH_TOKEN)
    body = req.body
    assert body["from"] == "+15550000000"
    assert body["to"] == "+15551112222"
    assert _query(body["answer_url"]) == {"provider": "plivo", "callId": "call-1", "flow": "answer"}
    assert _query(body["hangup_url"]) == {"provider": "plivo", "callId": "call-1", "flow": "hangup"}
    assert _query(body["ring_url"])["flow"] == "ring"
    assert body["answer_method"] == body["hangup_method"] == "POST"
    assert body["ring_timeout"] == 25
    assert body["hangup_on_ring"] == 25
    assert "machine_detection" not in body


async def test_ring_timeout_is_at_least_one_second(provider: PlivoProvider, fake: FakePlivo) -> None:
    await provider.dial(_dial(ring_timeout_s=0))
    assert fake.requests[0].body["hangup_on_ring"] == 1


@pytest.mark.parametrize("mode", ["detect", "leave-message"])
async def test_dial_with_machine_detection(provider: PlivoProvider, fake: FakePlivo, mode: str) -> None:
    await provider.dial(_dial(machine_detection=mode))
    body = fake.requests[0].body
    assert body["machine_detection"] == "true"
    assert _query(body["machine_detection_url"]) == {"provider": "plivo", "callId": "call-1", "flow": "amd"}
    assert body["machine_detection_method"] == "POST"


async def test_sip_destinations_are_kept(provider: PlivoProvider, fake: FakePlivo) -> None:
    await provider.dial(_dial(to_number="sip:alice@phone.plivo.com"))
    assert fake.requests[0].body["to"] == "sip:alice@phone.plivo.com"


async def test_a_number_without_digits_is_rejected_before_any_request(
    provider: PlivoProvider, fake: FakePlivo
) -> None:
    with pytest.raises(ProviderError) as err:
        await provider.dial(_dial(to_number="call me"))
    assert err.value.kind is ProviderErrorKind.REJECTED
    assert fake.requests == []


async def test_the_sdks_own_validation_is_a_rejection(provider: PlivoProvider, fake: FakePlivo) -> None:
    with pytest.raises(ProviderError) as err:
        await provider.dial(_dial(from_number="+15551112222"))
    assert err.value.kind is ProviderErrorKind.REJECTED
    assert "cannot overlap" in err.value.message
    assert fake.requests == []


async def test_request_uuid_list_takes_the_first(provider: PlivoProvider, fake: FakePlivo) -> None:
    fake.request_uuid_list = True
    result = await provider.dial(_dial())
    assert result.provider_call_id == fake.request_uuids[0]


def _answered(provider: PlivoProvider, fake: FakePlivo, request_uuid: str) -> str:
    call_uuid = fake.answer(request_uuid)
    provider.calls.learn(call_uuid, request_uuid)  # what the answer callback teaches the adapter
    return call_uuid


async def test_speak_and_listen_transfer_the_a_leg(provider: PlivoProvider, fake: FakePlivo) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    call_uuid = _answered(provider, fake, pid)
    ref = CallRef("call-1", pid)
    await provider.speak(ref, "Hello there")
    transfer = fake.requests[-1]
    assert (transfer.method, transfer.path) == ("POST", f"{ACCOUNT}/Call/{call_uuid}/")
    assert transfer.body["legs"] == "aleg"
    assert transfer.body["aleg_method"] == "POST"
    assert _query(transfer.body["aleg_url"]) == {"provider": "plivo", "flow": "xml-speak", "callId": "call-1"}
    # The speech is still playing: the GetInput waits for its redirect instead of cutting it off.
    await provider.start_listening(ref, "turn-1")
    assert len(fake.requests) == 2
    assert provider.calls.take("call-1", "xml-speak") is not None
    assert "turnToken=turn-1" in (provider.calls.take("call-1", "xml-next") or "")


async def test_listening_with_nothing_playing_transfers_to_the_listen_xml(
    provider: PlivoProvider, fake: FakePlivo
) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    call_uuid = _answered(provider, fake, pid)
    await provider.start_listening(CallRef("call-1", call_uuid), "turn-9")
    transfer = fake.requests[-1]
    assert transfer.path == f"{ACCOUNT}/Call/{call_uuid}/"
    assert _query(transfer.body["aleg_url"])["flow"] == "xml-listen"
    assert "turnToken=turn-9" in (provider.calls.take("call-1", "xml-listen") or "")


async def test_a_failed_speak_transfer_leaves_nothing_pending(
    provider: PlivoProvider, fake: FakePlivo
) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    with pytest.raises(ProviderError) as err:
        await provider.speak(CallRef("call-1", pid), "Hi")  # never answered: Plivo has no such call
    assert err.value.kind is ProviderErrorKind.NOT_FOUND
    assert provider.calls.take("call-1", "xml-speak") is None
    with pytest.raises(ProviderError):  # not held back by the failed speech: it tries at once
        await provider.start_listening(CallRef("call-1", pid), "t")
    assert _query(fake.requests[-1].body["aleg_url"])["flow"] == "xml-listen"


async def test_hangup_of_a_live_call_deletes_the_call(provider: PlivoProvider, fake: FakePlivo) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    call_uuid = _answered(provider, fake, pid)
    await provider.hangup(CallRef("call-1", pid))
    assert fake.paths()[-1] == ("DELETE", f"{ACCOUNT}/Call/{call_uuid}/")
    assert call_uuid not in fake.live
    await provider.hangup(CallRef("call-1", pid))  # already ended: 404 is success
    assert fake.paths()[-1] == ("DELETE", f"{ACCOUNT}/Call/{call_uuid}/")


async def test_hangup_of_a_ringing_request_cancels_it(provider: PlivoProvider, fake: FakePlivo) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    await provider.hangup(CallRef("call-1", pid))
    assert fake.paths()[-2:] == [
        ("DELETE", f"{ACCOUNT}/Call/{pid}/"),
        ("DELETE", f"{ACCOUNT}/Request/{pid}/"),
    ]
    assert pid not in fake.queued
    await provider.hangup(CallRef("call-1", pid))  # both 404 now: still success


async def test_hangup_of_an_unknown_call_uuid_stops_at_the_call(
    provider: PlivoProvider, fake: FakePlivo
) -> None:
    fake.live["u-restored"] = {"call_uuid": "u-restored", "call_status": "in-progress"}
    await provider.hangup(CallRef("call-1", "u-restored"))
    assert fake.paths() == [("DELETE", f"{ACCOUNT}/Call/u-restored/")]


async def test_hangup_failure_is_raised(provider: PlivoProvider, fake: FakePlivo) -> None:
    fake.fail(503)
    with pytest.raises(ProviderError) as err:
        await provider.hangup(CallRef("call-1", "u-x"))
    assert err.value.kind is ProviderErrorKind.UNAVAILABLE


async def test_send_dtmf(provider: PlivoProvider, fake: FakePlivo) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    call_uuid = _answered(provider, fake, pid)
    await provider.send_dtmf(CallRef("call-1", pid), "12w#")
    req = fake.requests[-1]
    assert (req.method, req.path) == ("POST", f"{ACCOUNT}/Call/{call_uuid}/DTMF/")
    assert req.body["digits"] == "12w#"
    assert req.body["leg"] == "aleg"
    with pytest.raises(ProviderError) as err:
        await provider.send_dtmf(CallRef("call-1", pid), "12; rm")
    assert err.value.kind is ProviderErrorKind.REJECTED
    assert len(fake.requests) == 2


# -- status --------------------------------------------------------------------------------------
async def test_status_of_a_live_call(provider: PlivoProvider, fake: FakePlivo) -> None:
    fake.live["u-1"] = {"call_uuid": "u-1", "call_status": "in-progress"}
    status = await provider.fetch_status("u-1")
    assert (status.status, status.is_terminal, status.answered, status.is_unknown) == (
        "in-progress",
        False,
        True,
        False,
    )
    assert fake.requests[0].query == {"status": "live"}


async def test_status_of_a_queued_request(provider: PlivoProvider, fake: FakePlivo) -> None:
    pid = (await provider.dial(_dial())).provider_call_id
    status = await provider.fetch_status(pid)
    assert (status.status, status.is_terminal) == ("queued", False)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"call_status": "completed"}, EndReason.COMPLETED),
        ({"call_status": "busy"}, EndReason.BUSY),
        ({"call_status": "no-answer"}, EndReason.NO_ANSWER),
        ({"call_status": "timeout"}, EndReason.NO_ANSWER),
        ({"call_status": "cancel"}, EndReason.HANGUP_BOT),
        ({"call_status": "machine"}, EndReason.VOICEMAIL),
        ({"call_status": "failed"}, EndReason.FAILED),
        ({"call_state": "BUSY"}, EndReason.BUSY),
        ({"call_state": "ANSWER", "answer_time": "2026-01-01 10:00:00+00:00"}, EndReason.COMPLETED),
    ],
)
async def test_status_of_an_ended_call(
    provider: PlivoProvider, fake: FakePlivo, record: dict[str, str], reason: EndReason
) -> None:
    fake.records["u-2"] = {"call_uuid": "u-2", **record}
    status = await provider.fetch_status("u-2")
    assert status.is_terminal
    assert status.end_reason is reason
    assert status.answered is ("answer_time" in record)


async def test_status_of_a_call_plivo_does_not_know_is_terminal(
    provider: PlivoProvider, fake: FakePlivo
) -> None:
    status = await provider.fetch_status("u-gone")
    assert (status.status, status.is_terminal, status.is_unknown) == ("not-found", True, False)
    assert [r.query.get("status") for r in fake.requests] == ["live", "queued", None]


@pytest.mark.parametrize("code", [500, 429, 401])
async def test_status_on_errors_is_unknown_and_never_raises(
    provider: PlivoProvider, fake: FakePlivo, code: int
) -> None:
    fake.fail(code)
    status = await provider.fetch_status("u-1")
    assert status.is_unknown
    assert not status.is_terminal


async def test_status_on_timeout_is_unknown(fake: FakePlivo) -> None:
    adapter = make_provider(fake.base_url, timeout=0.2)
    fake.stall = True
    try:
        status = await adapter.fetch_status("u-1")
    finally:
        fake.stall = False
        await fake.close()  # unblock the stalled handler before the worker thread is joined
        await adapter.aclose()
    assert status.is_unknown


# -- error mapping -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, ProviderErrorKind.REJECTED),
        (401, ProviderErrorKind.AUTH),
        (403, ProviderErrorKind.AUTH),
        (404, ProviderErrorKind.NOT_FOUND),
        (405, ProviderErrorKind.REJECTED),
        (422, ProviderErrorKind.REJECTED),
        (429, ProviderErrorKind.RATE_LIMITED),
        (500, ProviderErrorKind.UNAVAILABLE),
        (502, ProviderErrorKind.UNAVAILABLE),
        (503, ProviderErrorKind.UNAVAILABLE),
    ],
)
async def test_every_http_failure_maps_once(
    provider: PlivoProvider, fake: FakePlivo, code: int, kind: ProviderErrorKind
) -> None:
    fake.fail(code, error=f"bad thing {AUTH_TOKEN}")
    with pytest.raises(ProviderError) as err:
        await provider.dial(_dial())
    assert err.value.kind is kind
    assert f"HTTP {code}" in err.value.message
    assert AUTH_TOKEN not in err.value.message
    assert AUTH_TOKEN not in str(err.value)
    assert len(fake.requests) == 1  # never re-sent: a 5xx may still have placed the call


async def test_a_rejection_carries_plivos_short_reason(provider: PlivoProvider, fake: FakePlivo) -> None:
    fake.fail(400, error="invalid to number")
    with pytest.raises(ProviderError) as err:
        await provider.dial(_dial())
    assert err.value.message == "Plivo rejected the request to place the call (HTTP 400): invalid to number"


async def test_a_failing_delete_names_its_status(provider: PlivoProvider, fake: FakePlivo) -> None:
    fake.fail(429, path_contains="/Call/u-1/")
    with pytest.raises(ProviderError) as err:
        await provider.hangup(CallRef("c", "u-1"))
    assert err.value.kind is ProviderErrorKind.RATE_LIMITED


async def test_wrong_credentials_are_an_auth_error(fake: FakePlivo) -> None:
    adapter = PlivoProvider(PlivoSettings(AUTH_ID, "not-the-token", base_url=fake.base_url))
    try:
        with pytest.raises(ProviderError) as err:
            await adapter.dial(_dial())
    finally:
        await adapter.aclose()
    assert err.value.kind is ProviderErrorKind.AUTH
    assert "not-the-token" not in err.value.message


async def test_a_timeout_is_unavailable(fake: FakePlivo) -> None:
    adapter = make_provider(fake.base_url, timeout=0.2)
    fake.stall = True
    try:
        with pytest.raises(ProviderError) as err:
            await adapter.dial(_dial())
    finally:
        fake.stall = False
        await fake.close()
        await adapter.aclose()
    assert err.value.kind is ProviderErrorKind.UNAVAILABLE
    assert "did not answer" in err.value.message


async def test_an_unreachable_api_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = make_provider(f"http://127.0.0.1:{port}", timeout=2)
    try:
        with pytest.raises(ProviderError) as err:
            await adapter.dial(_dial())
    finally:
        await adapter.aclose()
    assert err.value.kind is ProviderErrorKind.UNAVAILABLE
    assert err.value.message == "could not connect to Plivo to place the call"


async def test_a_closed_adapter_refuses_work(fake: FakePlivo) -> None:
    adapter = make_provider(fake.base_url)
    await adapter.aclose()
    with pytest.raises(ProviderError) as err:
        await adapter.dial(_dial())
    assert err.value.kind is ProviderErrorKind.UNAVAILABLE
    assert fake.requests == []


# -- the event loop never blocks -----------------------------------------------------------------
async def test_requests_run_off_the_event_loop(provider: PlivoProvider, fake: FakePlivo) -> None:
    """The fake holds every request until this coroutine, on the same loop, releases them: a
    request that blocked the loop could never be released. Five dials are held at once, so they
    also run side by side."""
    fake.gate = asyncio.Event()
    dials = [asyncio.create_task(provider.dial(_dial(f"call-{i}"))) for i in range(5)]
    await asyncio.wait_for(fake.wait_for_requests(5), 10)
    assert not any(d.done() for d in dials)
    fake.gate.set()
    results = await asyncio.gather(*dials)
    assert sorted(r.provider_call_id for r in results) == sorted(fake.request_uuids)


def test_settings_keep_the_token_out_of_reprs() -> None:
    settings = PlivoSettings(AUTH_ID, AUTH_TOKEN)
    assert AUTH_TOKEN not in repr(settings)
    adapter = PlivoProvider(settings)
    assert AUTH_TOKEN not in repr(adapter)
    assert AUTH_TOKEN not in repr(adapter.rest)
    asyncio.run(adapter.aclose())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auth_id": ""},
        {"auth_id": "XX123"},
        {"auth_token": ""},
        {"request_timeout_s": 0},
        {"base_url": "ftp://x"},
        {"base_url": "https://x?y=1"},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"auth_id": AUTH_ID, "auth_token": AUTH_TOKEN, **kwargs}
    with pytest.raises(ValueError, match=r"\S"):
        PlivoSettings(**fields)  # type: ignore[arg-type]
