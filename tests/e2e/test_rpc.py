"""Every RPC on the mock provider through the real gRPC server, including every error row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from providers.base import DialRequest, DialResult, ProviderError, ProviderErrorKind
from providers.mock import MockProvider, MockSettings
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_server import servicer as servicer_module

from .harness import Running, collect, error_reason, make_config, start

TO = "+15551230001"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(make_config(tmp_path / "store", mock={"callerReplies": ["yes please", "bye"]}))
    yield running
    await running.close()


async def expect_error(coro: object, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    assert error_reason(info.value) == reason
    return info.value


async def test_notify_call_end_to_end(server: Running) -> None:
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Build failed", mode=pb.CALL_MODE_NOTIFY)
    )
    assert resp.call_id and resp.call.state == pb.CALL_STATE_INITIATED and resp.call.provider == "mock"
    call = await server.wait_state(resp.call_id, pb.CALL_STATE_HANGUP_BOT)
    assert call.end_reason == pb.END_REASON_HANGUP_BOT
    assert [(t.speaker, t.text) for t in call.transcript] == [(pb.SPEAKER_BOT, "Build failed")]
    assert call.HasField("answer_time") and call.HasField("end_time")
    by_provider = await server.stub.Status(pb.StatusRequest(call_id=call.provider_call_id))
    assert by_provider.call.call_id == resp.call_id


async def test_conversation_continue_speak_end(server: Running) -> None:
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    await server.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    turn = await server.stub.Continue(pb.ContinueRequest(call_id=resp.call_id, message="Deploy?"))
    assert turn.transcript == "yes please"
    assert turn.call.turn_latencies[0].turn == 1
    spoke = await server.stub.Speak(pb.SpeakRequest(call_id=resp.call_id, message="Deploying now"))
    assert spoke.call.transcript[-1].text == "Deploying now"
    ended = await server.stub.End(pb.EndRequest(call_id=resp.call_id))
    assert ended.call.state == pb.CALL_STATE_HANGUP_BOT
    again = await server.stub.End(pb.EndRequest(call_id=resp.call_id))
    assert again.call.state == pb.CALL_STATE_HANGUP_BOT
    listed = await server.stub.ListCalls(pb.ListCallsRequest())
    assert [c.call_id for c in listed.calls] == [resp.call_id]
    live = await server.stub.ListCalls(pb.ListCallsRequest(live_only=True))
    assert list(live.calls) == []


async def test_default_mode_and_to_number_come_from_config(tmp_path: Path) -> None:
    running = await start(
        make_config(tmp_path / "s", toNumber="+15557770000", outbound={"defaultMode": "conversation"})
    )
    try:
        resp = await running.stub.Initiate(pb.InitiateRequest(message="Hi"))
        assert resp.call.to_number == "+15557770000"
        assert resp.call.mode == pb.CALL_MODE_CONVERSATION
    finally:
        await running.close()


async def test_list_calls_pages(server: Running) -> None:
    ids = []
    for i in range(3):
        r = await server.stub.Initiate(
            pb.InitiateRequest(to_number=TO, message=f"m{i}", mode=pb.CALL_MODE_CONVERSATION)
        )
        ids.append(r.call_id)
        await server.stub.End(pb.EndRequest(call_id=r.call_id))
    first = await server.stub.ListCalls(pb.ListCallsRequest(page_size=2))
    second = await server.stub.ListCalls(pb.ListCallsRequest(page_size=2, page_token=first.next_page_token))
    assert [c.call_id for c in first.calls] + [c.call_id for c in second.calls] == ids[::-1]
    assert second.next_page_token == ""
    await expect_error(
        server.stub.ListCalls(pb.ListCallsRequest(page_token="garbage!")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )


@pytest.mark.parametrize(
    ("request_kwargs", "reason"),
    [
        ({"to_number": "5551234", "message": "x", "mode": pb.CALL_MODE_NOTIFY}, "INVALID_PHONE_NUMBER"),
        ({"to_number": TO, "message": "", "mode": pb.CALL_MODE_NOTIFY}, "INVALID_FIELD"),
        ({"to_number": "", "message": "x"}, "INVALID_FIELD"),
        ({"to_number": TO, "message": "x", "mode": 99}, "INVALID_FIELD"),
        ({"to_number": TO, "message": "x" * 5000, "mode": pb.CALL_MODE_NOTIFY}, "INVALID_FIELD"),
    ],
)
async def test_initiate_invalid_argument(
    server: Running, request_kwargs: dict[str, object], reason: str
) -> None:
    err = await expect_error(
        server.stub.Initiate(pb.InitiateRequest(**request_kwargs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,  # type: ignore[arg-type]
    )
    assert err.details()


async def test_not_found_and_not_active(server: Running) -> None:
    await expect_error(
        server.stub.Status(pb.StatusRequest(call_id="nope")), grpc.StatusCode.NOT_FOUND, "CALL_NOT_FOUND"
    )
    await expect_error(
        server.stub.Speak(pb.SpeakRequest(call_id="nope", message="x")),
        grpc.StatusCode.NOT_FOUND,
        "CALL_NOT_FOUND",
    )
    await expect_error(
        server.stub.Status(pb.StatusRequest(call_id="")), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
    )
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    await server.stub.End(pb.EndRequest(call_id=resp.call_id))
    await expect_error(
        server.stub.Speak(pb.SpeakRequest(call_id=resp.call_id, message="hello?")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CALL_NOT_ACTIVE",
    )
    await expect_error(
        server.stub.Continue(pb.ContinueRequest(call_id=resp.call_id, message="hello?")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CALL_NOT_ACTIVE",
    )


async def test_turn_in_progress_and_transcript_timeout(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path / "s"))
    try:
        resp = await running.stub.Initiate(
            pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
        )
        await running.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
        long_turn = running.stub.Continue(
            pb.ContinueRequest(call_id=resp.call_id, message="One?", timeout=Duration(nanos=400_000_000))
        )
        task = asyncio.ensure_future(long_turn)
        await asyncio.sleep(0.1)
        await expect_error(
            running.stub.Continue(pb.ContinueRequest(call_id=resp.call_id, message="Two?")),
            grpc.StatusCode.ABORTED,
            "TURN_IN_PROGRESS",
        )
        await expect_error(task, grpc.StatusCode.DEADLINE_EXCEEDED, "TRANSCRIPT_TIMEOUT")
    finally:
        await running.close()


async def test_max_concurrent_calls(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path / "s", maxConcurrentCalls=1))
    try:
        await running.stub.Initiate(
            pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
        )
        await expect_error(
            running.stub.Initiate(
                pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "MAX_CONCURRENT_CALLS",
        )
    finally:
        await running.close()


class FailingProvider(MockProvider):
    def __init__(self, error: BaseException) -> None:
        super().__init__(MockSettings())
        self.error = error
        self.dials = 0

    async def dial(self, request: DialRequest) -> DialResult:
        self.dials += 1
        raise self.error


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        (ProviderErrorKind.REJECTED, grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_REJECTED"),
        (ProviderErrorKind.AUTH, grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_AUTH_FAILED"),
        (ProviderErrorKind.RATE_LIMITED, grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
        (ProviderErrorKind.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    ],
)
async def test_provider_failures_map_and_leave_a_failed_record(
    tmp_path: Path, kind: ProviderErrorKind, code: grpc.StatusCode, reason: str
) -> None:
    provider = FailingProvider(ProviderError(kind, "nope", provider_code="21211"))
    running = await start(make_config(tmp_path / "s"), provider=provider)
    try:
        await expect_error(
            running.stub.Initiate(pb.InitiateRequest(to_number=TO, message="Hi", request_id="r1")),
            code,
            reason,
        )
        # The retry returns the same outcome and never dials again.
        await expect_error(
            running.stub.Initiate(pb.InitiateRequest(to_number=TO, message="Hi", request_id="r1")),
            code,
            reason,
        )
        assert provider.dials == 1
        calls = (await running.stub.ListCalls(pb.ListCallsRequest())).calls
        assert [c.state for c in calls] == [pb.CALL_STATE_FAILED]
        assert [c.end_reason for c in calls] == [pb.END_REASON_FAILED]
    finally:
        await running.close()


async def test_a_bug_is_internal_without_details(tmp_path: Path) -> None:
    running = await start(
        make_config(tmp_path / "s"), provider=FailingProvider(RuntimeError("secret-ish detail"))
    )
    try:
        err = await expect_error(
            running.stub.Initiate(pb.InitiateRequest(to_number=TO, message="Hi")),
            grpc.StatusCode.INTERNAL,
            "INTERNAL",
        )
        assert "secret-ish" not in (err.details() or "")
    finally:
        await running.close()


async def test_idempotent_initiate_dials_once_even_concurrently(server: Running) -> None:
    req = pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION, request_id="same")
    a, b = await asyncio.gather(server.stub.Initiate(req), server.stub.Initiate(req))
    c = await server.stub.Initiate(req)
    assert a.call_id == b.call_id == c.call_id
    assert len((await server.stub.ListCalls(pb.ListCallsRequest())).calls) == 1
    other = pb.InitiateRequest(
        to_number=TO, message="Different", mode=pb.CALL_MODE_CONVERSATION, request_id="same"
    )
    await expect_error(server.stub.Initiate(other), grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")


async def test_idempotent_continue_and_speak(server: Running) -> None:
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    await server.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    req = pb.ContinueRequest(call_id=resp.call_id, message="Deploy?", request_id="turn-1")
    first = await server.stub.Continue(req)
    second = await server.stub.Continue(req)
    assert first.transcript == second.transcript == "yes please"
    assert len(second.call.turn_latencies) == 1
    speak = pb.SpeakRequest(call_id=resp.call_id, message="ok", request_id="say-1")
    await server.stub.Speak(speak)
    after = await server.stub.Speak(speak)
    assert [t.text for t in after.call.transcript].count("ok") == 1


async def test_health_and_reflection(server: Running) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "voicecall.v1.VoiceCallService"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(server.channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for answer in refl.ServerReflectionInfo(ask()):
        names = {s.name for s in answer.list_services_response.service}
        assert "voicecall.v1.VoiceCallService" in names
        break


async def test_tail_replays_then_follows_live_and_filters(server: Running) -> None:
    a = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="A", mode=pb.CALL_MODE_CONVERSATION)
    )
    stream = server.stub.Tail(pb.TailRequest())
    first = await collect(stream, 1)
    assert first[0].call_id == a.call_id and first[0].state_changed.state == pb.CALL_STATE_INITIATED
    await server.stub.End(pb.EndRequest(call_id=a.call_id))
    seen = first
    while not any(e.state_changed.state == pb.CALL_STATE_HANGUP_BOT for e in seen):
        seen += await collect(stream, 1)
    stream.cancel()
    sequences = [e.sequence for e in seen]
    assert sequences == sorted(set(sequences))
    assert sequences == [e.sequence for e in server.sidecar.store.events_after(0)]
    b = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="B", mode=pb.CALL_MODE_CONVERSATION)
    )
    only_b = server.stub.Tail(pb.TailRequest(call_id=b.call_id))
    got = await collect(only_b, 1)
    only_b.cancel()
    assert got[0].call_id == b.call_id
    resumed = server.stub.Tail(pb.TailRequest(after_sequence=sequences[-1]))
    after = await collect(resumed, 1)
    resumed.cancel()
    assert after[0].sequence > sequences[-1] and after[0].call_id == b.call_id
    await expect_error(
        collect(server.stub.Tail(pb.TailRequest(call_id="nope")), 1),
        grpc.StatusCode.NOT_FOUND,
        "CALL_NOT_FOUND",
    )


async def test_slow_tail_subscriber_is_cut_off_and_resumes(server: Running) -> None:
    server.sidecar.bus.queue_size = 4
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    stream = server.stub.Tail(pb.TailRequest(call_id=resp.call_id))
    got = await collect(stream, 1)
    await server.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    # A burst committed in one go: far more than the subscriber's queue holds.
    burst = [
        {"type": "call.dtmf", "callId": resp.call_id, "digits": str(i % 10), "id": f"d{i}"} for i in range(20)
    ]
    async with aiohttp.ClientSession() as http:
        async with http.post(server.webhook_url, json={"events": burst}) as reply:
            assert reply.status == 200
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in stream:
            got.append(item.event)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(info.value) == "SUBSCRIBER_TOO_SLOW"
    resumed = server.stub.Tail(pb.TailRequest(call_id=resp.call_id, after_sequence=got[-1].sequence))
    all_events = server.sidecar.store.events_after(0, call_id=resp.call_id, limit=1000)
    missing = len(all_events) - len(got)
    more = await collect(resumed, missing)
    resumed.cancel()
    assert [e.sequence for e in got + more] == [e.sequence for e in all_events]


async def _messages(stream: AsyncIterator[pb.TailResponse], events: int) -> list[pb.TailResponse]:
    """Whole Tail messages until ``events`` events (batched or not) have arrived."""
    out: list[pb.TailResponse] = []

    async def run() -> None:
        seen = 0
        async for item in stream:
            out.append(item)
            seen += len(item.events) or 1
            if seen >= events:
                return

    await asyncio.wait_for(run(), 5.0)
    return out


async def _dtmf_burst(server: Running, call_id: str, n: int) -> None:
    """``n`` events committed, and published, together."""
    burst = [{"type": "call.dtmf", "callId": call_id, "digits": "5", "id": f"b{i}"} for i in range(n)]
    async with aiohttp.ClientSession() as http:
        async with http.post(server.webhook_url, json={"events": burst}) as reply:
            assert reply.status == 200


async def test_batched_tail_coalesces_a_burst_and_replays_in_batches(server: Running) -> None:
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    await server.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    before = server.sidecar.store.events_after(0, call_id=resp.call_id, limit=1000)
    live = server.stub.Tail(
        pb.TailRequest(call_id=resp.call_id, after_sequence=before[-1].sequence, max_batch=8)
    )
    # A subscriber waiting on the bus when a burst of 20 lands takes it in three messages.
    replay = server.stub.Tail(pb.TailRequest(call_id=resp.call_id, max_batch=3))
    assert [len(m.events) for m in await _messages(replay, len(before))] == [
        min(3, len(before) - i) for i in range(0, len(before), 3)
    ]
    await asyncio.sleep(0.2)  # the live stream has reached the server and waits on the bus
    await _dtmf_burst(server, resp.call_id, 20)
    got = await _messages(live, 20)
    live.cancel()
    assert [len(m.events) for m in got] == [8, 8, 4]
    assert not any(m.HasField("event") for m in got)
    after = server.sidecar.store.events_after(before[-1].sequence, call_id=resp.call_id, limit=1000)
    assert [e.sequence for m in got for e in m.events] == [e.sequence for e in after]
    # Without max_batch, the same log is one event per message, as before.
    single = server.stub.Tail(pb.TailRequest(call_id=resp.call_id, after_sequence=before[-1].sequence))
    plain = await _messages(single, 20)
    single.cancel()
    assert all(not m.events and m.HasField("event") for m in plain)
    assert [m.event.sequence for m in plain] == [e.sequence for e in after]


async def test_tail_batches_are_capped(server: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servicer_module, "MAX_TAIL_BATCH", 4)
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hi", mode=pb.CALL_MODE_CONVERSATION)
    )
    await server.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    await _dtmf_burst(server, resp.call_id, 10)
    logged = server.sidecar.store.events_after(0, call_id=resp.call_id, limit=1000)
    stream = server.stub.Tail(pb.TailRequest(call_id=resp.call_id, max_batch=4_000_000_000))
    got = await _messages(stream, len(logged))
    stream.cancel()
    assert max(len(m.events) for m in got) == 4
    assert [e.sequence for m in got for e in m.events] == [e.sequence for e in logged]


async def test_initiate_while_shutting_down_is_unavailable(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path / "s"))
    try:
        running.sidecar.manager.stop_accepting()  # what stop() does first, before gRPC drains
        await expect_error(
            running.stub.Initiate(pb.InitiateRequest(to_number=TO, message="Hi")),
            grpc.StatusCode.UNAVAILABLE,
            "SHUTTING_DOWN",
        )
        assert list((await running.stub.ListCalls(pb.ListCallsRequest())).calls) == []
    finally:
        running.sidecar.manager._closing = False
        await running.close()
