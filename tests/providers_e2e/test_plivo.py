"""Plivo through the real sidecar: gRPC in, the Voice API fake out, V3-signed callbacks back in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc
import pytest

from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import Running, error_reason, start
from ..providers.plivo.fakes import AUTH_ID, AUTH_TOKEN
from .conftest import self_public_config
from .fakes_plivo import PlivoCarrier, plivo_carrier, verbs

FROM = "+15005550006"
TO = "+15551230000"
FRIEND = "+15557654321"
STRANGER = "+15559990000"
GREETING = "Hello from the sidecar"


@dataclass
class Rig:
    running: Running
    carrier: PlivoCarrier
    public: str

    async def initiate(self, mode: int, message: str) -> pb.Call:
        resp = await self.running.stub.Initiate(
            pb.InitiateRequest(to_number=TO, message=message, mode=mode)  # type: ignore[arg-type]
        )
        return resp.call

    async def call(self, call_id: str) -> pb.Call:
        return (await self.running.stub.Status(pb.StatusRequest(call_id=call_id))).call

    async def calls(self) -> list[pb.Call]:
        return list((await self.running.stub.ListCalls(pb.ListCallsRequest())).calls)


RigFactory = Callable[..., Awaitable[Rig]]


def plivo_overrides(base_url: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "provider": "plivo",
        "fromNumber": FROM,
        "plivo": {"authId": AUTH_ID, "authToken": AUTH_TOKEN, "baseUrl": base_url},
        "inboundPolicy": "allowlist",
        "allowFrom": [FRIEND],
        "inboundGreeting": GREETING,
    }
    out.update(extra)
    return out


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[RigFactory]:
    async with AsyncExitStack() as stack:

        async def make(**extra: Any) -> Rig:
            carrier = await stack.enter_async_context(plivo_carrier())
            cfg, public = self_public_config(tmp_path / "s", **plivo_overrides(carrier.base_url, **extra))
            running = await start(cfg)
            stack.push_async_callback(running.close)
            carrier.voice_url = public
            return Rig(running, carrier, public)

        yield make


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def bot_lines(call: pb.Call) -> list[str]:
    return [t.text for t in call.transcript if t.speaker == pb.SPEAKER_BOT]


def start_turn(rig: Rig, call_id: str, message: str) -> asyncio.Task[pb.ContinueResponse]:
    async def run() -> pb.ContinueResponse:
        return await rig.running.stub.Continue(pb.ContinueRequest(call_id=call_id, message=message))

    return asyncio.create_task(run())


async def test_notify_answer_xml_speaks_and_hangs_up(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_NOTIFY, "Build 42 failed")
    ruuid = call.provider_call_id
    pc = rig.carrier.calls[ruuid]
    assert query(pc.answer_url) == {"provider": "plivo", "flow": "answer", "callId": call.call_id}
    assert pc.answer_url.startswith(rig.public + "?")
    await rig.carrier.ring(ruuid)
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_RINGING
    answered = await rig.carrier.pick_up(ruuid)
    assert answered.status == 200 and verbs(answered.body) == ["Speak", "Hangup"]
    assert "Build 42 failed" in answered.body
    ended = await rig.running.wait_state(call.call_id, pb.CALL_STATE_COMPLETED, pb.CALL_STATE_HANGUP_BOT)
    assert bot_lines(ended) == ["Build 42 failed"]
    assert ended.provider_call_id == pc.call_uuid  # RequestUUID -> CallUUID
    assert pc.transfers == []  # spoken by the answer XML only


async def test_conversation_getinput_turns(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hi, this is the build bot")
    ruuid = call.provider_call_id
    await rig.carrier.ring(ruuid)
    answered = await rig.carrier.pick_up(ruuid)
    assert "Hangup" not in verbs(answered.body)
    pc = rig.carrier.calls[ruuid]
    await rig.carrier.wait_for(lambda: len(pc.transfers) >= 1)
    turn = start_turn(rig, call.call_id, "Deploy now?")
    action = await rig.carrier.wait_actions(ruuid, 1)
    token1 = query(action)["turnToken"]
    assert query(action)["flow"] == "getinput" and query(action)["callId"] == call.call_id
    forged = action.replace(token1, "0" * len(token1))
    assert (await rig.carrier.say(ruuid, "noise", action=forged)).status == 200
    assert not turn.done()
    await rig.carrier.say(ruuid, "yes please")
    resp = await turn
    assert resp.transcript == "yes please" and [t.turn for t in resp.call.turn_latencies] == [1]
    turn2 = start_turn(rig, call.call_id, "Which region?")
    await rig.carrier.wait_actions(ruuid, 2)
    await rig.carrier.say(ruuid, "late answer to turn one", action=action)
    await rig.carrier.say(ruuid, "europe")
    resp2 = await turn2
    assert resp2.transcript == "europe"
    caller = [t.text for t in resp2.call.transcript if t.speaker == pb.SPEAKER_CALLER]
    assert caller == ["yes please", "europe"]
    assert bot_lines(resp2.call) == ["Hi, this is the build bot", "Deploy now?", "Which region?"]
    ended = await rig.running.stub.End(pb.EndRequest(call_id=call.call_id))
    assert ended.call.state == pb.CALL_STATE_HANGUP_BOT and pc.deletes == 1
    await rig.carrier.flush()
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_HANGUP_BOT


async def test_inbound_stranger_is_rejected_and_hung_up_once(rig: Rig) -> None:
    cuuid, posted = await rig.carrier.inbound(STRANGER, FROM)
    assert posted.status == 200 and verbs(posted.body) == ["Hangup"]
    await rig.carrier.wait_for(lambda: rig.carrier.calls[cuuid].deletes == 1)
    again = await rig.carrier.resend(posted)
    assert (again.status, again.body) == (posted.status, posted.body)
    await rig.carrier.settle()
    assert rig.carrier.calls[cuuid].deletes == 1
    assert await rig.calls() == []


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("busy", pb.CALL_STATE_BUSY),
        ("no-answer", pb.CALL_STATE_NO_ANSWER),
        ("timeout", pb.CALL_STATE_NO_ANSWER),
        ("failed", pb.CALL_STATE_FAILED),
    ],
)
async def test_hangup_before_answer(rig: Rig, status: str, state: int) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    await rig.carrier.ring(call.provider_call_id)
    await rig.carrier.end(call.provider_call_id, status)
    ended = await rig.call(call.call_id)
    assert ended.state == state and not ended.HasField("answer_time")


async def test_caller_hangs_up_after_answer(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    ruuid = call.provider_call_id
    await rig.carrier.pick_up(ruuid)
    turn = start_turn(rig, call.call_id, "Still there?")
    await rig.carrier.wait_actions(ruuid, 1)
    await rig.carrier.end(ruuid, "completed")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await turn
    assert error_reason(info.value) == "CALL_NOT_ACTIVE"
    ended = await rig.call(call.call_id)
    assert ended.state == pb.CALL_STATE_COMPLETED and ended.HasField("answer_time")


async def test_replayed_answer_callback_is_one_effect(rig: Rig) -> None:
    _, first = await rig.carrier.inbound(FRIEND, FROM)
    again = await rig.carrier.resend(first)
    assert (again.status, again.body) == (first.status, first.body)
    (call,) = await rig.calls()
    assert bot_lines(call) == [GREETING]


async def test_bad_signatures_are_401_and_change_nothing(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    pc = rig.carrier.calls[call.provider_call_id]
    pc.call_uuid = rig.carrier.answer(pc.request_uuid)
    params = rig.carrier.params(pc, Event="StartApp")
    bad = await rig.carrier.post(pc.answer_url, params, token="not-the-auth-token")
    assert bad.status == 401
    _, inbound = await rig.carrier.inbound(FRIEND, FROM, token="not-the-auth-token")
    assert inbound.status == 401
    unchanged = await rig.call(call.call_id)
    assert unchanged.state == pb.CALL_STATE_INITIATED and not unchanged.HasField("answer_time")
    assert [c.call_id for c in await rig.calls()] == [call.call_id]
    ok = await rig.carrier.post(pc.answer_url, params)
    assert ok.status == 200 and (await rig.call(call.call_id)).HasField("answer_time")
