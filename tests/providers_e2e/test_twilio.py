"""Twilio through the real sidecar: gRPC in, Twilio's REST fake out, signed callbacks back in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import Running, start
from ..providers.twilio.fakes import ACCOUNT_SID, AUTH_TOKEN
from .conftest import self_public_config
from .fakes_twilio import TwilioCarrier, sign, twilio_carrier, verbs

FROM = "+15005550006"
TO = "+15551230000"
FRIEND = "+15557654321"
STRANGER = "+15559990000"
GREETING = "Hello from the sidecar"


@dataclass
class Rig:
    running: Running
    carrier: TwilioCarrier
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


def twilio_overrides(base_url: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": FROM,
        "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "baseUrl": base_url},
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
            carrier = await stack.enter_async_context(twilio_carrier())
            cfg, public = self_public_config(tmp_path / "s", **twilio_overrides(carrier.base_url, **extra))
            running = await start(cfg)
            stack.push_async_callback(running.close)
            carrier.voice_url = public
            return Rig(running, carrier, public)

        yield make


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


def start_turn(rig: Rig, call_id: str, message: str) -> asyncio.Task[pb.ContinueResponse]:
    async def run() -> pb.ContinueResponse:
        return await rig.running.stub.Continue(pb.ContinueRequest(call_id=call_id, message=message))

    return asyncio.create_task(run())


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def bot_lines(call: pb.Call) -> list[str]:
    return [t.text for t in call.transcript if t.speaker == pb.SPEAKER_BOT]


async def test_notify_speaks_inline_once_and_ends(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_NOTIFY, "Build 42 failed")
    sid = call.provider_call_id
    tw = rig.carrier.calls[sid]
    assert verbs(tw.twiml) == ["Say", "Hangup"] and "Build 42 failed" in tw.twiml
    assert tw.url == "" and tw.status_callback.startswith(rig.public + "?")
    assert query(tw.status_callback) == {"callId": call.call_id, "type": "status"}
    assert set(tw.status_events) == {"initiated", "ringing", "answered", "completed"}
    await rig.carrier.ring(sid)
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_RINGING
    await rig.carrier.answer(sid)
    ended = await rig.running.wait_state(call.call_id, pb.CALL_STATE_COMPLETED, pb.CALL_STATE_HANGUP_BOT)
    await rig.carrier.flush()
    assert bot_lines(ended) == ["Build 42 failed"]
    assert ended.HasField("answer_time") and ended.HasField("end_time")
    # Spoken once: no live update ever carried the message again.
    assert not any("Build 42 failed" in u.get("Twiml", "") for u in tw.updates)
    assert all(p.status == 200 for p in rig.carrier.posted)
    assert bot_lines(await rig.call(call.call_id)) == ["Build 42 failed"]


async def test_conversation_gather_turns_ignore_stale_tokens(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hi, this is the build bot")
    sid = call.provider_call_id
    tw = rig.carrier.calls[sid]
    assert tw.twiml == "" and query(tw.url) == {"callId": call.call_id}
    await rig.carrier.ring(sid)
    fetched = await rig.carrier.answer(sid)
    assert fetched is not None and fetched.status == 200
    assert verbs(fetched.body)[-1] == "Redirect"  # kept alive, not hung up
    await rig.carrier.wait_for(lambda: any("build bot" in u.get("Twiml", "") for u in tw.updates))

    turn = start_turn(rig, call.call_id, "Deploy now?")
    first_action = await rig.carrier.wait_gathers(sid, 1)
    token1 = query(first_action)["turnToken"]
    assert query(first_action)["callId"] == call.call_id and token1
    forged = first_action.replace(token1, "0" * len(token1))
    stale = await rig.carrier.say(sid, "words from nowhere", action=forged)
    assert stale.status == 200
    assert not turn.done()
    await rig.carrier.say(sid, "yes please")
    resp = await turn
    assert resp.transcript == "yes please"
    assert [t.turn for t in resp.call.turn_latencies] == [1]

    turn2 = start_turn(rig, call.call_id, "Which region?")
    second_action = await rig.carrier.wait_gathers(sid, 2)
    assert query(second_action)["turnToken"] != token1
    await rig.carrier.say(sid, "late answer to turn one", action=first_action)
    await rig.carrier.say(sid, "europe")
    resp2 = await turn2
    assert resp2.transcript == "europe"
    caller = [t.text for t in resp2.call.transcript if t.speaker == pb.SPEAKER_CALLER]
    assert caller == ["yes please", "europe"]
    assert bot_lines(resp2.call) == ["Hi, this is the build bot", "Deploy now?", "Which region?"]

    ended = await rig.running.stub.End(pb.EndRequest(call_id=call.call_id))
    assert ended.call.state == pb.CALL_STATE_HANGUP_BOT
    assert rig.carrier.hangups(sid) == 1
    await rig.carrier.flush()
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_HANGUP_BOT


async def test_inbound_allowlisted_is_answered_and_greeted(rig: Rig) -> None:
    sid, posted = await rig.carrier.inbound(FRIEND, FROM)
    assert posted.status == 200
    assert verbs(posted.body)[0] == "Say" and GREETING in posted.body
    assert "Reject" not in posted.body and verbs(posted.body)[-1] == "Redirect"
    (call,) = await rig.calls()
    assert call.direction == pb.CALL_DIRECTION_INBOUND and call.provider_call_id == sid
    assert call.from_number == FRIEND and call.state == pb.CALL_STATE_ANSWERED
    assert bot_lines(call) == [GREETING]
    assert rig.carrier.hangups(sid) == 0


async def test_inbound_stranger_is_rejected_and_hung_up_once(rig: Rig) -> None:
    sid, posted = await rig.carrier.inbound(STRANGER, FROM)
    assert posted.status == 200 and verbs(posted.body) == ["Reject"]
    await rig.carrier.wait_for(lambda: rig.carrier.hangups(sid) == 1)
    # Twilio retries the voice request: same reply, no second hang-up, still no call record.
    again = await rig.carrier.post(rig.public, posted.params)
    assert again.body == posted.body
    await rig.carrier.settle()
    assert rig.carrier.hangups(sid) == 1
    assert await rig.calls() == []


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("busy", pb.CALL_STATE_BUSY),
        ("no-answer", pb.CALL_STATE_NO_ANSWER),
        ("failed", pb.CALL_STATE_FAILED),
        ("canceled", pb.CALL_STATE_HANGUP_BOT),
    ],
)
async def test_unanswered_outcomes(rig: Rig, status: str, state: int) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    await rig.carrier.ring(call.provider_call_id)
    await rig.carrier.end(call.provider_call_id, status)
    ended = await rig.call(call.call_id)
    assert ended.state == state
    assert not ended.HasField("answer_time") and list(ended.transcript) == []
    assert rig.carrier.hangups(call.provider_call_id) == 0


async def test_machine_detection_ends_as_voicemail(make_rig: RigFactory) -> None:
    rig = await make_rig(outbound={"machineDetection": "detect"})
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hi, this is the build bot")
    sid = call.provider_call_id
    create = next(f for f in rig.carrier.forms() if ("To", TO) in f)
    assert ("MachineDetection", "Enable") in create and ("AsyncAmd", "true") in create
    assert query(rig.carrier.calls[sid].amd_callback) == {"callId": call.call_id, "type": "amd"}
    await rig.carrier.ring(sid)
    await rig.carrier.answer(sid, answered_by="machine_start")
    ended = await rig.running.wait_state(call.call_id, pb.CALL_STATE_VOICEMAIL)
    assert ended.end_reason == pb.END_REASON_VOICEMAIL and ended.answered_by == "machine_start"
    await rig.carrier.wait_for(lambda: rig.carrier.hangups(sid) == 1)
    await rig.carrier.flush()
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_VOICEMAIL


async def test_replayed_callback_same_reply_one_effect(rig: Rig) -> None:
    sid, first = await rig.carrier.inbound(FRIEND, FROM)
    again = await rig.carrier.post(rig.public, first.params)
    assert (again.status, again.body) == (first.status, first.body)
    (call,) = await rig.calls()
    assert bot_lines(call) == [GREETING]
    # A second Gather speech post replayed is applied once too.
    turn = start_turn(rig, call.call_id, "How can I help?")
    await rig.carrier.wait_gathers(sid, 1)
    said = await rig.carrier.say(sid, "reset my password")
    assert (await turn).transcript == "reset my password"
    replayed = await rig.carrier.post(said.url, said.params)
    assert (replayed.status, replayed.body) == (said.status, said.body)
    caller = [t.text for t in (await rig.call(call.call_id)).transcript if t.speaker == pb.SPEAKER_CALLER]
    assert caller == ["reset my password"]


async def test_bad_signature_is_401_and_changes_nothing(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    sid = call.provider_call_id
    tw = rig.carrier.calls[sid]
    params = rig.carrier.params(tw, CallStatus="in-progress", CallbackSource="call-progress-events")
    wrong_key = sign(tw.status_callback, params, token="not-the-auth-token")
    rejected = await rig.carrier.post(tw.status_callback, params, signature=wrong_key)
    assert rejected.status == 401
    # Signed over another URL (the signature must cover the query, i.e. the call id).
    other = tw.status_callback.replace(call.call_id, "someone-else")
    moved = await rig.carrier.post(tw.status_callback, params, signature=sign(other, params))
    assert moved.status == 401
    _, inbound = await rig.carrier.inbound(FRIEND, FROM, signature="AAAA")
    assert inbound.status == 401
    unchanged = await rig.call(call.call_id)
    assert unchanged.state == pb.CALL_STATE_INITIATED and not unchanged.HasField("answer_time")
    assert [c.call_id for c in await rig.calls()] == [call.call_id]
    # The genuine callback still works afterwards.
    ok = await rig.carrier.post(tw.status_callback, params)
    assert ok.status == 200
    assert (await rig.call(call.call_id)).HasField("answer_time")
