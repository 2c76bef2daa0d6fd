"""Calls survive a restart: records, transcripts, the event log and dedupe keys; Tail resumes exactly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest

from providers.base import CallMode
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.domain import CallRecord, CallState, utcnow
from voicecall_server.store import Store

from .harness import collect, make_config, start

TO = "+15551230001"


async def post_events(url: str, events: list[dict[str, object]]) -> None:
    async with aiohttp.ClientSession() as http, http.post(url, json={"events": events}) as reply:
        assert reply.status == 200, await reply.text()


async def test_stop_and_start_keeps_everything(tmp_path: Path) -> None:
    config = make_config(tmp_path / "s", mock={"callerReplies": ["sure"]})
    first = await start(config)
    call = await first.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    await first.wait_state(call.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    turn = await first.stub.Continue(pb.ContinueRequest(call_id=call.call_id, message="Ready?"))
    dtmf = [{"type": "call.dtmf", "callId": call.call_id, "digits": "9", "id": "dtmf-once"}]
    await post_events(first.webhook_url, dtmf)
    before = (await first.stub.Status(pb.StatusRequest(call_id=call.call_id))).call
    log_before = first.sidecar.store.events_after(0, limit=10_000)
    await first.close()

    second = await start(config)
    try:
        after = (await second.stub.Status(pb.StatusRequest(call_id=call.call_id))).call
        assert turn.transcript == "sure"
        assert [(t.speaker, t.text) for t in after.transcript] == [
            (t.speaker, t.text) for t in before.transcript
        ]
        assert after.state == before.state  # still live: the provider says it is in progress
        assert second.sidecar.manager.live_count == 1
        await post_events(second.webhook_url, dtmf)  # a replay of an event applied before the restart
        log_after = second.sidecar.store.events_after(0, limit=10_000)
        assert log_after == log_before
        await second.stub.End(pb.EndRequest(call_id=call.call_id))
        resumed = second.stub.Tail(pb.TailRequest(after_sequence=log_before[-1].sequence))
        tail = await collect(resumed, 1)
        resumed.cancel()
        assert tail[0].sequence == log_before[-1].sequence + 1
        assert tail[0].state_changed.state == pb.CALL_STATE_HANGUP_BOT
    finally:
        await second.close()


async def test_restore_closes_what_ended_while_down(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    store = Store(store_dir)
    old = utcnow().replace(year=utcnow().year - 1)
    never_dialed = CallRecord(
        "c-undialed", "mock", pb_direction(), CallState.INITIATED, "+1", TO, CallMode.NOTIFY, old
    )
    expired = CallRecord(
        "c-expired", "mock", pb_direction(), CallState.LISTENING, "+1", TO, CallMode.CONVERSATION, old,
        provider_call_id="mock-c-expired", answered_at=old,
    )  # fmt: skip
    gone = CallRecord(
        "c-gone", "mock", pb_direction(), CallState.ANSWERED, "+1", TO, CallMode.CONVERSATION, utcnow(),
        provider_call_id="mock-ended-elsewhere", answered_at=utcnow(),
    )  # fmt: skip
    for rec in (never_dialed, expired, gone):
        store.commit(rec)
    store.close()
    running = await start(make_config(store_dir))
    try:
        states = {}
        for cid in ("c-undialed", "c-expired", "c-gone"):
            states[cid] = await running.wait_state(
                cid, pb.CALL_STATE_FAILED, pb.CALL_STATE_TIMEOUT, pb.CALL_STATE_COMPLETED
            )
        assert states["c-undialed"].state == pb.CALL_STATE_FAILED  # never re-dialed
        assert states["c-expired"].state == pb.CALL_STATE_TIMEOUT
        assert states["c-gone"].state == pb.CALL_STATE_COMPLETED
        assert running.sidecar.manager.live_count == 0
    finally:
        await running.close()


def pb_direction():  # type: ignore[no-untyped-def]
    from providers.base import Direction

    return Direction.OUTBOUND


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_serving(port: int, proc: subprocess.Popen[bytes]) -> grpc.aio.Channel:
    for _ in range(200):
        if proc.poll() is not None:
            raise AssertionError(
                f"voicecall-server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            await asyncio.wait_for(channel.channel_ready(), 0.2)
            return channel
        except TimeoutError:
            await channel.close()
    raise AssertionError("voicecall-server did not start")


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
async def test_killed_subprocess_restarts_with_calls_and_log(tmp_path: Path, kill: signal.Signals) -> None:
    grpc_port, http_port = free_port(), free_port()
    cfg = tmp_path / "voicecall.json5"
    cfg.write_text(
        json.dumps(
            {
                "provider": "mock",
                "store": str(tmp_path / "store"),
                "maxConcurrentCalls": 10,
                "grpc": {"port": grpc_port},
                "serve": {"port": http_port},
                "mock": {"answerAfterMs": 20},
            }
        )
    )
    cmd = [sys.executable, "-m", "voicecall_server.main", "--config", str(cfg)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        channel = await wait_serving(grpc_port, proc)
        stub = pb_grpc.VoiceCallServiceStub(channel)
        ids = []
        for i in range(3):
            req = pb.InitiateRequest(
                to_number=TO, message=f"m{i}", mode=pb.CALL_MODE_CONVERSATION, request_id=f"r{i}"
            )
            ids.append((await stub.Initiate(req)).call_id)
        await asyncio.sleep(0.2)
        seen = [e.sequence for e in await collect(stub.Tail(pb.TailRequest()), 4)]
        await channel.close()
        proc.send_signal(kill)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        channel = await wait_serving(grpc_port, proc)
        stub = pb_grpc.VoiceCallServiceStub(channel)
        listed = await stub.ListCalls(pb.ListCallsRequest())
        assert sorted(c.call_id for c in listed.calls) == sorted(ids)
        again = await stub.Initiate(
            pb.InitiateRequest(to_number=TO, message="m0", mode=pb.CALL_MODE_CONVERSATION, request_id="r0")
        )
        assert again.call_id == ids[0]  # acknowledged before the kill: never dialed twice
        assert len((await stub.ListCalls(pb.ListCallsRequest())).calls) == 3
        store = Store(tmp_path / "store")
        everything = [e.sequence for e in store.events_after(0, limit=10_000)]
        store.close()
        assert everything == list(range(1, len(everything) + 1))  # gap-free
        rest = await collect(stub.Tail(pb.TailRequest(after_sequence=seen[-1])), len(everything) - len(seen))
        assert [e.sequence for e in rest] == everything[len(seen) :]
        await channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stderr:
                proc.stderr.close()
