"""CallIdInterceptor: a request's call_id is bound to log lines for the whole RPC."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.harness import make_config, start
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.logs import CallIdInterceptor, configure_logging, current_call_id

CALL = "5f1c2e9a-8d7b-4c3a-9e21-0a1b2c3d4e5f"
log = logging.getLogger("voicecall.test.rpc")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging("debug", "json", stream=stream)
    yield stream
    root.removeHandler(handler)
    handler.close()
    root.setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TinyServicer(pb_grpc.VoiceCallServiceServicer):
    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StatusResponse:
        log.info("status asked")
        return pb.StatusResponse(call=pb.Call(call_id=request.call_id))

    async def Tail(
        self, request: pb.TailRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TailResponse]:
        for sequence in (1, 2):
            log.info("event %d sent", sequence)
            yield pb.TailResponse(event=pb.CallEvent(sequence=sequence, call_id=request.call_id))


async def serve(servicer: pb_grpc.VoiceCallServiceServicer) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[CallIdInterceptor()], options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_VoiceCallServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def tiny() -> AsyncIterator[pb_grpc.VoiceCallServiceAsyncStub]:
    # Only Status and Tail are served; the stubs mark every RPC abstract.
    server, port = await serve(TinyServicer())  # type: ignore[abstract]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.VoiceCallServiceStub(channel)
    await server.stop(None)


async def test_unary_rpc_lines_carry_the_request_call_id(
    tiny: pb_grpc.VoiceCallServiceAsyncStub, lines: io.StringIO
) -> None:
    await tiny.Status(pb.StatusRequest(call_id=CALL))
    await tiny.Status(pb.StatusRequest(call_id=""))
    asked = [e for e in entries(lines) if e["message"] == "status asked"]
    assert [e.get("call_id") for e in asked] == [CALL, None]
    assert current_call_id.get() is None


async def test_streaming_rpc_lines_carry_the_request_call_id(
    tiny: pb_grpc.VoiceCallServiceAsyncStub, lines: io.StringIO
) -> None:
    got = [r.event.sequence async for r in tiny.Tail(pb.TailRequest(call_id=CALL))]
    assert got == [1, 2]
    sent = [e for e in entries(lines) if e["message"].startswith("event ")]
    assert [(e["message"], e.get("call_id")) for e in sent] == [
        ("event 1 sent", CALL),
        ("event 2 sent", CALL),
    ]


async def test_real_servicer_is_bound_through_to_the_manager(
    tmp_path: Path, lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start(make_config(tmp_path / "store"))
    server, port = await serve(running.sidecar.servicer)
    try:
        made = await running.stub.Initiate(
            pb.InitiateRequest(to_number="+15551230001", message="hi", mode=pb.CALL_MODE_CONVERSATION)
        )
        manager = running.sidecar.manager
        real_get = manager.get

        def logged_get(call_id: str) -> Any:
            log.info("manager lookup")
            return real_get(call_id)

        monkeypatch.setattr(manager, "get", logged_get)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VoiceCallServiceStub(channel)
            status = await stub.Status(pb.StatusRequest(call_id=made.call_id))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Status(pb.StatusRequest(call_id="no-such-call"))
        assert status.call.call_id == made.call_id
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        lookups = [e for e in entries(lines) if e["message"] == "manager lookup"]
        assert [e.get("call_id") for e in lookups] == [made.call_id, "no-such-call"]
    finally:
        await server.stop(None)
        await running.close()
