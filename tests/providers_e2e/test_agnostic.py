"""The same gateway-visible behaviour on every provider: RPCs, states, transcripts, errors, Tail.

The suite body never names a provider: each provider's fake is driven through its driver
(fakes_drivers.py). A provider joins the suite by adding a driver to ``DRIVERS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import Running, error_reason
from .fakes_drivers import DRIVERS, Driver

TO = "+15551230000"
GUARD_S = 5.0
TERMINAL_OK = (pb.CALL_STATE_COMPLETED, pb.CALL_STATE_HANGUP_BOT)
PROGRESS = (pb.CALL_STATE_INITIATED, pb.CALL_STATE_RINGING, pb.CALL_STATE_ANSWERED)


@dataclass
class Sut:
    driver: Driver
    running: Running

    async def initiate(self, mode: int, message: str) -> pb.Call:
        resp = await self.running.stub.Initiate(
            pb.InitiateRequest(to_number=TO, message=message, mode=mode)  # type: ignore[arg-type]
        )
        assert resp.call.call_id == resp.call_id
        return resp.call

    async def status(self, call_id: str) -> pb.Call:
        return (await self.running.stub.Status(pb.StatusRequest(call_id=call_id))).call

    async def until_bot_said(self, call_id: str, text: str) -> pb.Call:
        async def poll() -> pb.Call:
            while True:
                call = await self.status(call_id)
                if text in bot_lines(call):
                    return call
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(poll(), GUARD_S)


@pytest.fixture(params=sorted(DRIVERS))
async def sut(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sut]:
    driver: Driver = DRIVERS[request.param]()
    async with AsyncExitStack() as stack:
        running = await driver.start(tmp_path, stack)
        yield Sut(driver, running)
        await driver.settle()


def bot_lines(call: pb.Call) -> list[str]:
    return [t.text for t in call.transcript if t.speaker == pb.SPEAKER_BOT]


async def events_until_terminal(sut: Sut, call_id: str) -> list[pb.CallEvent]:
    out: list[pb.CallEvent] = []

    async def run() -> None:
        async for item in sut.running.stub.Tail(pb.TailRequest(call_id=call_id)):
            out.append(item.event)
            if item.event.HasField("state_changed") and item.event.state_changed.state not in (
                *PROGRESS,
                pb.CALL_STATE_ACTIVE,
                pb.CALL_STATE_SPEAKING,
                pb.CALL_STATE_LISTENING,
            ):
                return

    await asyncio.wait_for(run(), GUARD_S)
    return out


def shape(events: list[pb.CallEvent]) -> list[str]:
    """The provider-independent outline: progress states, bot speech, the terminal state."""
    out: list[str] = []
    for ev in events:
        kind = ev.WhichOneof("kind")
        if kind == "state_changed":
            state = ev.state_changed.state
            if state in PROGRESS:
                out.append(pb.CallState.Name(state))
            elif state in TERMINAL_OK:
                out.append("TERMINAL")
            elif state not in (pb.CALL_STATE_ACTIVE, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING):
                out.append(pb.CallState.Name(state))
        elif kind == "bot_speech":
            out.append("BOT:" + ev.bot_speech.text)
    return out


async def test_notify_call(sut: Sut) -> None:
    call = await sut.initiate(pb.CALL_MODE_NOTIFY, "Build 42 failed")
    assert call.state == pb.CALL_STATE_INITIATED and call.provider_call_id
    await sut.driver.ring(call)
    assert (await sut.status(call.call_id)).state == pb.CALL_STATE_RINGING
    await sut.driver.answer(call)
    ended = await sut.running.wait_state(call.call_id, *TERMINAL_OK)
    assert bot_lines(ended) == ["Build 42 failed"]
    assert ended.HasField("answer_time") and ended.HasField("end_time")
    events = await events_until_terminal(sut, call.call_id)
    assert shape(events) == [
        "CALL_STATE_INITIATED",
        "CALL_STATE_RINGING",
        "CALL_STATE_ANSWERED",
        "BOT:Build 42 failed",
        "TERMINAL",
    ]
    sequences = [ev.sequence for ev in events]
    assert sequences == sorted(set(sequences)) and all(ev.call_id == call.call_id for ev in events)


async def test_conversation_continue_speak_end(sut: Sut) -> None:
    call = await sut.initiate(pb.CALL_MODE_CONVERSATION, "Hi, this is the build bot")
    await sut.driver.ring(call)
    await sut.driver.answer(call)
    await sut.until_bot_said(call.call_id, "Hi, this is the build bot")

    async def turn() -> pb.ContinueResponse:
        return await sut.running.stub.Continue(pb.ContinueRequest(call_id=call.call_id, message="Deploy?"))

    task = asyncio.create_task(turn())
    await asyncio.wait_for(sut.driver.wait_listening(call, 1), GUARD_S)
    await sut.driver.caller_says(call, "yes please")
    resp = await task
    assert resp.transcript == "yes please"
    assert [t.turn for t in resp.call.turn_latencies] == [1]
    assert resp.call.turn_latencies[0].total.ToTimedelta().total_seconds() > 0

    spoke = await sut.running.stub.Speak(pb.SpeakRequest(call_id=call.call_id, message="Deploying now"))
    assert spoke.call.transcript[-1].text == "Deploying now"
    assert spoke.call.transcript[-1].speaker == pb.SPEAKER_BOT

    live = await sut.status(call.call_id)
    by_provider = await sut.status(live.provider_call_id)
    assert by_provider.call_id == call.call_id

    ended = await sut.running.stub.End(pb.EndRequest(call_id=call.call_id))
    assert ended.call.state == pb.CALL_STATE_HANGUP_BOT
    await sut.driver.settle()
    again = await sut.running.stub.End(pb.EndRequest(call_id=call.call_id))
    assert again.call.state == pb.CALL_STATE_HANGUP_BOT
    final = await sut.status(call.call_id)
    assert [(t.speaker, t.text) for t in final.transcript] == [
        (pb.SPEAKER_BOT, "Hi, this is the build bot"),
        (pb.SPEAKER_BOT, "Deploy?"),
        (pb.SPEAKER_CALLER, "yes please"),
        (pb.SPEAKER_BOT, "Deploying now"),
    ]


async def expect(coro: object, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro  # type: ignore[misc]
    assert (info.value.code(), error_reason(info.value)) == (code, reason), info.value.details()


async def test_bad_number_and_unknown_call(sut: Sut) -> None:
    stub = sut.running.stub
    await expect(
        stub.Initiate(pb.InitiateRequest(to_number="5551234", message="x", mode=pb.CALL_MODE_NOTIFY)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PHONE_NUMBER",
    )
    await expect(
        stub.Status(pb.StatusRequest(call_id="no-such-call")), grpc.StatusCode.NOT_FOUND, "CALL_NOT_FOUND"
    )
    await expect(stub.End(pb.EndRequest(call_id="no-such-call")), grpc.StatusCode.NOT_FOUND, "CALL_NOT_FOUND")


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (401, grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_AUTH_FAILED"),
        (500, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
    ],
)
async def test_provider_api_errors(sut: Sut, status: int, code: grpc.StatusCode, reason: str) -> None:
    sut.driver.fail_next_dial(status)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sut.initiate(pb.CALL_MODE_NOTIFY, "hello")
    assert (info.value.code(), error_reason(info.value)) == (code, reason), info.value.details()
    calls = (await sut.running.stub.ListCalls(pb.ListCallsRequest())).calls
    assert [c.state for c in calls] == [pb.CALL_STATE_FAILED]
    # The next dial goes through.
    ok = await sut.initiate(pb.CALL_MODE_NOTIFY, "hello again")
    assert ok.state == pb.CALL_STATE_INITIATED
