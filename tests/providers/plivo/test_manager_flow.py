"""The Plivo adapter driven by the real call manager, with Plivo played by the fake and signed callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.base import CallMode, CallRef, WebhookRequest
from providers.plivo import PlivoProvider
from voicecall_server.bus import EventBus
from voicecall_server.domain import CallState
from voicecall_server.manager import CallManager, ManagerSettings
from voicecall_server.store import Store

from .conftest import WEBHOOK, make_provider
from .fakes import FakePlivo, signed_callback


@dataclass
class Rig:
    provider: PlivoProvider
    manager: CallManager
    fake: FakePlivo

    async def deliver(self, req: WebhookRequest) -> str:
        """What the webhook listener does with a callback, minus HTTP: verify, parse, apply, reply."""
        verification = self.provider.verify_webhook(req)
        assert verification.ok, verification.reason
        events = self.provider.parse_webhook(req, verification)
        outcome = await self.manager.handle_events(events)
        return self.provider.webhook_reply(req, outcome).body.decode()


@pytest.fixture
async def rig(tmp_path: Path, fake: FakePlivo) -> AsyncIterator[Rig]:
    store = Store(tmp_path / "store")
    provider = make_provider(fake.base_url)
    settings = ManagerSettings(provider_name="plivo", max_concurrent_calls=3, stale_call_reaper_s=0)
    manager = CallManager(settings, store, EventBus(), provider)
    manager.webhook_url = WEBHOOK
    await provider.start(manager.handle_events, WEBHOOK)
    await manager.start()
    yield Rig(provider, manager, fake)
    await manager.aclose()
    await provider.aclose()
    store.close()


def url(flow: str, call_id: str, **extra: str) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in {"provider": "plivo", "flow": flow, "callId": call_id, **extra}.items()
    )
    return f"{WEBHOOK}?{query}"


def answer_params(call_uuid: str, request_uuid: str) -> dict[str, str]:
    return {"CallUUID": call_uuid, "RequestUUID": request_uuid, "CallStatus": "in-progress",
            "Direction": "outbound", "Event": "StartApp", "From": "15550000000", "To": "15551112222"}  # fmt: skip


async def test_notify_call_speaks_in_the_answer_and_ends_on_the_hangup_callback(rig: Rig) -> None:
    rec = await rig.manager.initiate(
        to_number="+15551112222", message="Your table is ready", mode=CallMode.NOTIFY
    )
    request_uuid = rig.fake.request_uuids[0]
    assert rec.provider_call_id == request_uuid
    call_uuid = rig.fake.answer(request_uuid)
    body = await rig.deliver(
        signed_callback(url("answer", rec.call_id), answer_params(call_uuid, request_uuid))
    )
    assert (
        body
        == '<Response><Speak voice="WOMAN" language="en-US">Your table is ready</Speak><Hangup/></Response>'
    )
    assert rig.manager.get(rec.call_id).provider_call_id == call_uuid
    hangup = {
        "CallUUID": call_uuid,
        "RequestUUID": request_uuid,
        "CallStatus": "completed",
        "Event": "Hangup",
    }
    assert await rig.deliver(signed_callback(url("hangup", rec.call_id), hangup)) == "<Response/>"
    assert rig.manager.get(rec.call_id).state is CallState.COMPLETED


async def test_a_conversation_turn_through_xml_transfers_and_getinput(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    listening = asyncio.Event()
    start_listening = rig.provider.start_listening

    async def spy(ref: CallRef, turn_token: str) -> None:
        await start_listening(ref, turn_token)
        listening.set()

    monkeypatch.setattr(rig.provider, "start_listening", spy)
    rec = await rig.manager.initiate(to_number="+15551112222", message="", mode=CallMode.CONVERSATION)
    request_uuid = rig.fake.request_uuids[0]
    call_uuid = rig.fake.answer(request_uuid)
    body = await rig.deliver(
        signed_callback(url("answer", rec.call_id), answer_params(call_uuid, request_uuid))
    )
    assert '<Wait length="300"/>' in body
    turn = asyncio.create_task(rig.manager.continue_turn(rec.call_id, "What would you like?"))
    try:
        await _turn(rig, rec.call_id, call_uuid, turn, listening)
    finally:
        turn.cancel()


async def _turn(
    rig: Rig, call_id: str, call_uuid: str, turn: asyncio.Task[tuple[str, object]], listening: asyncio.Event
) -> None:
    # Plivo is still playing the speech when the manager starts listening.
    await asyncio.wait_for(listening.wait(), 5)
    assert len(rig.fake.requests) == 2  # the dial, then one transfer: the GetInput waits for the speech
    transfer = rig.fake.requests[1]
    assert transfer.path.endswith(f"/Call/{call_uuid}/")
    assert "flow=xml-speak" in transfer.body["aleg_url"]
    speech = await rig.deliver(signed_callback(url("xml-speak", call_id), {"CallUUID": call_uuid}))
    assert "What would you like?" in speech
    listen = await rig.deliver(signed_callback(url("xml-next", call_id), {"CallUUID": call_uuid}))
    assert "<GetInput " in listen
    token = listen.split("turnToken=")[1].split('"')[0]
    stale = {"CallUUID": call_uuid, "Speech": "an old answer"}
    await rig.deliver(signed_callback(url("getinput", call_id, turnToken="stale"), stale))
    assert not turn.done()
    fresh = {"CallUUID": call_uuid, "Speech": "A pot of tea", "SpeechConfidenceScore": "0.9"}
    reply = await rig.deliver(signed_callback(url("getinput", call_id, turnToken=token), fresh))
    assert '<Wait length="300"/>' in reply
    transcript, _ = await asyncio.wait_for(turn, 5)
    assert transcript == "A pot of tea"


async def test_end_hangs_up_through_the_api(rig: Rig) -> None:
    rec = await rig.manager.initiate(to_number="+15551112222", message="", mode=CallMode.CONVERSATION)
    request_uuid = rig.fake.request_uuids[0]
    await rig.manager.end(rec.call_id)
    assert rig.fake.paths()[-1] == ("DELETE", f"/v1/Account/{rig.fake.auth_id}/Request/{request_uuid}/")
    assert rig.manager.get(rec.call_id).state is CallState.HANGUP_BOT
