"""Telnyx through the real sidecar: gRPC in, the Call Control fake out, Ed25519-signed webhooks back in."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from providers.base import EndReason
from providers.telnyx.webhook import HANGUP_CAUSES
from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import Running, error_reason, start
from ..providers.telnyx.fakes import API_KEY, CONNECTION_ID
from .conftest import self_public_config
from .fakes_telnyx import TelnyxCarrier, signed_headers, telnyx_carrier

FROM = "+15005550006"
TO = "+15551230000"
FRIEND = "+15557654321"
STRANGER = "+15559990000"
GREETING = "Hello from the sidecar"


@dataclass
class Rig:
    running: Running
    carrier: TelnyxCarrier
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

    async def answered(self, mode: int, message: str) -> pb.Call:
        """An outbound call, rung and picked up."""
        call = await self.initiate(mode, message)
        await self.carrier.ring(call.provider_call_id)
        posted = await self.carrier.answer(call.provider_call_id)
        assert posted.status == 200, posted.text
        return call


RigFactory = Callable[..., Awaitable[Rig]]


def telnyx_overrides(carrier: TelnyxCarrier, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "provider": "telnyx",
        "fromNumber": FROM,
        "telnyx": {
            "apiKey": API_KEY,
            "connectionId": CONNECTION_ID,
            "publicKey": carrier.public_key,
            "baseUrl": carrier.base_url,
        },
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
            carrier = await stack.enter_async_context(telnyx_carrier())
            cfg, public = self_public_config(tmp_path / "s", **telnyx_overrides(carrier, **extra))
            running = await start(cfg)
            stack.push_async_callback(running.close)
            carrier.voice_url = public
            return Rig(running, carrier, public)

        yield make


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


def b64(call_id: str) -> str:
    return base64.b64encode(call_id.encode()).decode()


def bot_lines(call: pb.Call) -> list[str]:
    return [t.text for t in call.transcript if t.speaker == pb.SPEAKER_BOT]


def caller_finals(call: pb.Call) -> list[str]:
    return [t.text for t in call.transcript if t.speaker == pb.SPEAKER_CALLER and t.is_final]


def start_turn(rig: Rig, call_id: str, message: str) -> asyncio.Task[pb.ContinueResponse]:
    async def run() -> pb.ContinueResponse:
        return await rig.running.stub.Continue(pb.ContinueRequest(call_id=call_id, message=message))

    return asyncio.create_task(run())


async def until(rig: Rig, call_id: str, predicate: Callable[[pb.Call], bool]) -> pb.Call:
    async def poll() -> pb.Call:
        while True:
            call = await rig.call(call_id)
            if predicate(call):
                return call
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), 5)


def actions(rig: Rig, ccid: str) -> list[str]:
    return [c.path.rsplit("/", 1)[-1] for c in rig.carrier.calls[ccid].commands]


async def test_notify_dials_speaks_once_then_hangs_up(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_NOTIFY, "Build 42 failed")
    ccid = call.provider_call_id
    (dial,) = [r.body for r in rig.carrier.requests if r.path == "/v2/calls"]
    assert dial["connection_id"] == CONNECTION_ID and (dial["to"], dial["from"]) == (TO, FROM)
    assert dial["webhook_url"] == rig.public and dial["client_state"] == b64(call.call_id)
    assert dial["command_id"] and "answering_machine_detection" not in dial
    await rig.carrier.ring(ccid)
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_RINGING
    await rig.carrier.answer(ccid)
    ended = await rig.running.wait_state(call.call_id, pb.CALL_STATE_HANGUP_BOT, pb.CALL_STATE_COMPLETED)
    assert actions(rig, ccid) == ["speak", "hangup"]
    (speak,) = rig.carrier.sent(ccid, "speak")
    assert speak["payload"] == "Build 42 failed" and speak["voice"] and speak["language"] == "en-US"
    await rig.carrier.flush()
    final = await rig.call(call.call_id)
    assert final.state == ended.state and bot_lines(final) == ["Build 42 failed"]
    assert final.HasField("answer_time") and final.HasField("end_time")
    assert all(p.status == 200 for p in rig.carrier.posted)


async def test_conversation_turns_resolve_on_call_transcription(rig: Rig) -> None:
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Hi, this is the build bot")
    ccid = call.provider_call_id
    greeting = await rig.carrier.wait_commands(ccid, "speak", 1)
    assert greeting["payload"] == "Hi, this is the build bot"

    turn = start_turn(rig, call.call_id, "Deploy now?")
    await rig.carrier.wait_commands(ccid, "transcription_start", 1)
    assert rig.carrier.sent(ccid, "speak")[1]["payload"] == "Deploy now?"
    interim = await rig.carrier.say(ccid, "yes", final=False)
    assert interim.status == 200
    await asyncio.sleep(0.05)  # a chance for a wrong resolution; the turn must still wait
    assert not turn.done()
    await rig.carrier.say(ccid, "yes please")
    resp = await turn
    assert resp.transcript == "yes please" and [t.turn for t in resp.call.turn_latencies] == [1]
    await rig.carrier.wait_commands(ccid, "transcription_stop", 1)

    turn2 = start_turn(rig, call.call_id, "Which region?")
    await rig.carrier.wait_commands(ccid, "transcription_start", 2)
    await rig.carrier.say(ccid, "europe")
    assert (await turn2).transcript == "europe"

    ended = await rig.running.stub.End(pb.EndRequest(call_id=call.call_id))
    assert ended.call.state == pb.CALL_STATE_HANGUP_BOT and rig.carrier.hangups(ccid) == 1
    await rig.carrier.flush()
    final = await rig.call(call.call_id)
    assert final.state == pb.CALL_STATE_HANGUP_BOT
    assert caller_finals(final) == ["yes please", "europe"]
    assert bot_lines(final) == ["Hi, this is the build bot", "Deploy now?", "Which region?"]
    assert actions(rig, ccid).count("transcription_start") == 2


async def test_inbound_allowlisted_is_answered_greeted_and_converses(rig: Rig) -> None:
    ccid, posted = await rig.carrier.inbound(FRIEND, FROM)
    assert posted.status == 200
    answer = await rig.carrier.wait_commands(ccid, "answer", 1)
    (call,) = await rig.calls()
    assert answer["client_state"] == b64(call.call_id) and answer["command_id"]
    assert answer["webhook_url"] == rig.public
    assert "stream_url" not in answer  # streaming is off
    greeting = await rig.carrier.wait_commands(ccid, "speak", 1)
    assert greeting["payload"] == GREETING
    call = await until(rig, call.call_id, lambda c: bot_lines(c) == [GREETING])
    assert call.state in (pb.CALL_STATE_ANSWERED, pb.CALL_STATE_SPEAKING)
    assert call.direction == pb.CALL_DIRECTION_INBOUND and call.provider_call_id == ccid
    assert (call.from_number, call.to_number) == (FRIEND, FROM)
    assert call.HasField("answer_time") and bot_lines(call) == [GREETING]

    turn = start_turn(rig, call.call_id, "How can I help?")
    await rig.carrier.wait_commands(ccid, "transcription_start", 1)
    await rig.carrier.say(ccid, "reset my password")
    assert (await turn).transcript == "reset my password"
    assert rig.carrier.hangups(ccid) == 0 and len(rig.carrier.sent(ccid, "answer")) == 1


async def test_inbound_stranger_is_hung_up_once_and_never_answered(rig: Rig) -> None:
    ccid, posted = await rig.carrier.inbound(STRANGER, FROM)
    assert posted.status == 200
    await rig.carrier.wait_for(lambda: rig.carrier.hangups(ccid) == 1)
    again = await rig.carrier.resend(posted)
    assert again.status == 200
    retried = await rig.carrier.post(  # a fresh delivery of the same event (new signature)
        rig.public, posted.body
    )
    assert retried.status == 200
    await rig.carrier.flush()  # the call.hangup of the rejected call reaches the sidecar too
    assert rig.carrier.hangups(ccid) == 1 and rig.carrier.sent(ccid, "answer") == []
    assert await rig.calls() == []


_STATE_OF = {reason: pb.CallState.Value("CALL_STATE_" + reason.name) for reason in EndReason}


@pytest.mark.parametrize(("cause", "reason"), sorted(HANGUP_CAUSES.items()))
async def test_every_hangup_cause_is_the_end_reason(rig: Rig, cause: str, reason: EndReason) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    await rig.carrier.ring(call.provider_call_id)
    posted = await rig.carrier.end(call.provider_call_id, cause)
    assert posted is not None and posted.status == 200
    ended = await rig.call(call.call_id)
    assert ended.state == _STATE_OF[reason]
    assert ended.end_reason == pb.EndReason.Value("END_REASON_" + reason.name)
    assert ended.HasField("end_time") and rig.carrier.hangups(call.provider_call_id) == 0


async def test_unknown_hangup_cause_after_answer_is_completed(rig: Rig) -> None:
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Hello?")
    await rig.carrier.end(call.provider_call_id, "something_new")
    ended = await rig.call(call.call_id)
    assert ended.state == pb.CALL_STATE_COMPLETED and ended.HasField("answer_time")


async def test_machine_detection_ends_as_voicemail(make_rig: RigFactory) -> None:
    rig = await make_rig(outbound={"machineDetection": "detect"})
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Hi, this is the build bot")
    ccid = call.provider_call_id
    (dial,) = [r.body for r in rig.carrier.requests if r.path == "/v2/calls"]
    assert dial["answering_machine_detection"] == "detect"
    verdict = await rig.carrier.machine(ccid, "machine")
    assert verdict.status == 200
    ended = await rig.running.wait_state(call.call_id, pb.CALL_STATE_VOICEMAIL)
    assert ended.end_reason == pb.END_REASON_VOICEMAIL and ended.answered_by == "machine"
    await rig.carrier.wait_for(lambda: rig.carrier.hangups(ccid) == 1)
    await rig.carrier.flush()
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_VOICEMAIL


async def test_machine_detection_human_keeps_the_call(make_rig: RigFactory) -> None:
    rig = await make_rig(outbound={"machineDetection": "detect"})
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Hi")
    await rig.carrier.machine(call.provider_call_id, "human", premium=True)
    live = await rig.call(call.call_id)
    assert live.answered_by == "human" and live.state not in (pb.CALL_STATE_VOICEMAIL,)
    assert rig.carrier.hangups(call.provider_call_id) == 0


async def tail_until(rig: Rig, call_id: str, done: Callable[[pb.CallEvent], bool]) -> list[pb.CallEvent]:
    out: list[pb.CallEvent] = []

    async def run() -> None:
        async for item in rig.running.stub.Tail(pb.TailRequest(call_id=call_id)):
            out.append(item.event)
            if done(item.event):
                return

    await asyncio.wait_for(run(), 5)
    return out


async def test_dtmf_webhook_is_a_dtmf_event_once(rig: Rig) -> None:
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Press a key")
    pressed = await rig.carrier.dtmf(call.provider_call_id, "7")
    assert pressed.status == 200
    assert (await rig.carrier.resend(pressed)).status == 200
    await rig.carrier.dtmf(call.provider_call_id, "#")
    events = await tail_until(rig, call.call_id, lambda e: e.dtmf.digits == "#")
    assert [e.dtmf.digits for e in events if e.HasField("dtmf")] == ["7", "#"]


async def test_replays_have_one_effect(rig: Rig) -> None:
    ccid, first = await rig.carrier.inbound(FRIEND, FROM)
    again = await rig.carrier.resend(first)
    assert again.status == 200
    await rig.carrier.wait_commands(ccid, "speak", 1)
    (call,) = await rig.calls()
    assert len(rig.carrier.sent(ccid, "answer")) == 1
    turn = start_turn(rig, call.call_id, "How can I help?")
    await rig.carrier.wait_commands(ccid, "transcription_start", 1)
    said = await rig.carrier.say(ccid, "reset my password")
    assert (await turn).transcript == "reset my password"
    replayed = await rig.carrier.resend(said)
    assert (replayed.status, replayed.text) == (said.status, said.text)
    # base64url spelling of the same signature is the same delivery.
    url_safe = dict(said.headers)
    url_safe["telnyx-signature-ed25519"] = (
        url_safe["telnyx-signature-ed25519"].replace("+", "-").replace("/", "_").rstrip("=")
    )
    assert (await rig.carrier.post(said.url, said.body, headers=url_safe)).status == 200
    final = await rig.call(call.call_id)
    assert caller_finals(final) == ["reset my password"] and bot_lines(final)[0] == GREETING
    assert bot_lines(final).count(GREETING) == 1 and len(rig.carrier.sent(ccid, "speak")) == 2


async def test_bad_signature_stale_timestamp_and_wrong_key_are_401(rig: Rig) -> None:
    call = await rig.initiate(pb.CALL_MODE_CONVERSATION, "Hello?")
    ccid = call.provider_call_id
    carrier = rig.carrier
    body = carrier.envelope(ccid, "call.answered", state="answered")
    tampered = dict(signed_headers(carrier.key, body))
    forged_body = body.replace(b"call.answered", b"call.hangup  ")
    stranger = Ed25519PrivateKey.generate()
    attempts = [
        await carrier.post(rig.public, forged_body, headers=tampered),
        await carrier.post(rig.public, body, timestamp=int(time.time()) - 600),
        await carrier.post(rig.public, body, timestamp=int(time.time()) + 600),
        await carrier.post(rig.public, body, key=stranger),
        await carrier.post(rig.public, body, headers={"Content-Type": "application/json"}),
    ]
    assert [a.status for a in attempts] == [401] * len(attempts)
    inbound_ccid, inbound = await carrier.inbound(FRIEND, FROM, key=stranger)
    assert inbound.status == 401
    await carrier.settle()
    unchanged = await rig.call(call.call_id)
    assert unchanged.state == pb.CALL_STATE_INITIATED and not unchanged.HasField("answer_time")
    assert [c.call_id for c in await rig.calls()] == [call.call_id]
    assert carrier.sent(inbound_ccid, "answer") == [] and carrier.hangups(inbound_ccid) == 0
    # The genuine delivery still works afterwards.
    ok = await carrier.post(rig.public, body)
    assert ok.status == 200 and (await rig.call(call.call_id)).HasField("answer_time")


async def test_send_dtmf_and_speak_are_commands(rig: Rig) -> None:
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Hi")
    ccid = call.provider_call_id
    await rig.carrier.wait_commands(ccid, "speak", 1)
    await rig.running.stub.SendDtmf(pb.SendDtmfRequest(call_id=call.call_id, digits="12#"))
    (dtmf,) = rig.carrier.sent(ccid, "send_dtmf")
    assert dtmf["digits"] == "12#" and dtmf["command_id"]
    await rig.running.stub.Speak(pb.SpeakRequest(call_id=call.call_id, message="One moment"))
    assert rig.carrier.sent(ccid, "speak")[-1]["payload"] == "One moment"
    ids = [c.body["command_id"] for c in rig.carrier.calls[ccid].commands]
    assert len(ids) == len(set(ids))


async def test_caller_hangs_up_during_a_turn(rig: Rig) -> None:
    call = await rig.answered(pb.CALL_MODE_CONVERSATION, "Hello?")
    ccid = call.provider_call_id
    turn = start_turn(rig, call.call_id, "Still there?")
    await rig.carrier.wait_commands(ccid, "transcription_start", 1)
    await rig.carrier.end(ccid, "user_hangup", source="caller")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await turn
    assert error_reason(info.value) == "CALL_NOT_ACTIVE"
    assert (await rig.call(call.call_id)).state == pb.CALL_STATE_HANGUP_USER
