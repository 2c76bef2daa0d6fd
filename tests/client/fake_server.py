"""A scriptable VoiceCallService on a real grpc.aio server, run in its own thread and event loop.

Its own loop lets sync tests (the CLI's main() runs asyncio.run) and async tests share one server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from voicecall_client.errors import ERROR_DOMAIN
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc


@dataclass
class Failure:
    """One scripted failure. ``reason=None`` sends a bare status with no ErrorInfo."""

    code: grpc.StatusCode
    reason: str | None = None
    message: str = "scripted failure"
    metadata: dict[str, str] = field(default_factory=dict)
    domain: str = ERROR_DOMAIN
    extra_details: list[Any] = field(default_factory=list)


@dataclass
class TailLeg:
    """One Tail connection: replay from ``resend_from`` (default: after_sequence + 1), send at most
    ``count`` events, then fail with ``fail`` (None: end the stream, or hold it open if ``hold``)."""

    count: int | None = None
    fail: Failure | None = None
    resend_from: int | None = None
    hold: bool = False
    batch: int = 0  # above 1: up to this many events per message, in `events`, as max_batch asks


@dataclass
class Recorded:
    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


def make_status(failure: Failure) -> grpc.Status:
    details = []
    for extra in failure.extra_details:
        packed = any_pb2.Any()
        packed.Pack(extra)
        details.append(packed)
    if failure.reason is not None:
        info = error_details_pb2.ErrorInfo(
            reason=failure.reason, domain=failure.domain, metadata=failure.metadata
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        details.append(packed)
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message, details=details)
    grpc_status: grpc.Status = rpc_status.to_status(status)
    return grpc_status


def make_call(call_id: str, **kw: Any) -> pb.Call:
    defaults: dict[str, Any] = {
        "provider": "mock",
        "provider_call_id": f"mock-{call_id}",
        "direction": pb.CALL_DIRECTION_OUTBOUND,
        "state": pb.CALL_STATE_ACTIVE,
        "from_number": "+15550001111",
        "to_number": "+15550002222",
        "mode": pb.CALL_MODE_CONVERSATION,
    }
    defaults.update(kw)
    return pb.Call(call_id=call_id, **defaults)


class FakeVoiceCall(pb_grpc.VoiceCallServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failures: dict[str, list[Failure]] = {}
        self.calls: dict[str, pb.Call] = {}
        self.listing: list[pb.Call] = []  # newest first
        self.max_page = 1000
        self.events: list[pb.CallEvent] = []
        self.tail_legs: list[TailLeg] = []
        self.transcript = "yes please"
        self.tail_started = threading.Event()
        self.stall: set[str] = set()  # methods that never answer (to hit client deadlines)

    def of(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    async def _enter(self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        self.requests.append(Recorded(method, request, md, context.time_remaining()))
        if method in self.stall:
            await asyncio.Event().wait()
        queue = self.failures.get(method)
        if queue:
            await context.abort_with_status(make_status(queue.pop(0)))

    async def Initiate(self, request: pb.InitiateRequest, context: Any) -> pb.InitiateResponse:
        await self._enter("Initiate", request, context)
        call = make_call("call-1", to_number=request.to_number or "+15550009999", mode=request.mode)
        return pb.InitiateResponse(call_id=call.call_id, call=call)

    async def Continue(self, request: pb.ContinueRequest, context: Any) -> pb.ContinueResponse:
        await self._enter("Continue", request, context)
        return pb.ContinueResponse(transcript=self.transcript, call=make_call(request.call_id))

    async def Speak(self, request: pb.SpeakRequest, context: Any) -> pb.SpeakResponse:
        await self._enter("Speak", request, context)
        return pb.SpeakResponse(call=make_call(request.call_id))

    async def End(self, request: pb.EndRequest, context: Any) -> pb.EndResponse:
        await self._enter("End", request, context)
        return pb.EndResponse(call=make_call(request.call_id, state=pb.CALL_STATE_HANGUP_BOT))

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        await self._enter("Status", request, context)
        call = self.calls.get(request.call_id)
        if call is None:
            await context.abort_with_status(
                make_status(
                    Failure(grpc.StatusCode.NOT_FOUND, "CALL_NOT_FOUND", f"call {request.call_id} not found")
                )
            )
        return pb.StatusResponse(call=call)

    async def SendDtmf(self, request: pb.SendDtmfRequest, context: Any) -> pb.SendDtmfResponse:
        await self._enter("SendDtmf", request, context)
        return pb.SendDtmfResponse(call=make_call(request.call_id))

    async def ListCalls(self, request: pb.ListCallsRequest, context: Any) -> pb.ListCallsResponse:
        await self._enter("ListCalls", request, context)
        rows = [c for c in self.listing if not request.live_only or c.end_reason == pb.END_REASON_UNSPECIFIED]
        start = int(request.page_token or 0)
        size = min(request.page_size or 50, self.max_page)
        page = rows[start : start + size]
        nxt = str(start + size) if start + size < len(rows) else ""
        return pb.ListCallsResponse(calls=page, next_page_token=nxt)

    async def Tail(self, request: pb.TailRequest, context: Any) -> AsyncIterator[pb.TailResponse]:
        await self._enter("Tail", request, context)
        self.tail_started.set()
        leg = self.tail_legs.pop(0) if self.tail_legs else TailLeg()
        first = leg.resend_from if leg.resend_from is not None else request.after_sequence + 1
        picked = [
            event
            for event in self.events
            if event.sequence >= first and not (request.call_id and event.call_id != request.call_id)
        ][: leg.count]
        if leg.batch > 1:
            for i in range(0, len(picked), leg.batch):
                yield pb.TailResponse(events=picked[i : i + leg.batch])
        else:
            for event in picked:
                yield pb.TailResponse(event=event)
        if leg.fail is not None:
            await context.abort_with_status(make_status(leg.fail))
        if leg.hold:
            await asyncio.Event().wait()


@contextmanager
def serve(servicer: FakeVoiceCall, address: str = "127.0.0.1:0", **server_kw: Any) -> Iterator[str]:
    """Run ``servicer`` on a grpc.aio server in a background thread; yields the target to dial."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def run() -> None:
        server = grpc.aio.server(**server_kw)
        pb_grpc.add_VoiceCallServiceServicer_to_server(servicer, server)
        creds = box.get("credentials")
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        await server.start()
        stop = asyncio.Event()
        box["loop"], box["stop"], box["port"] = asyncio.get_running_loop(), stop, port
        ready.set()
        await stop.wait()
        await server.stop(0)

    def thread_main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced to the test below
            box["error"] = exc
            ready.set()

    box["credentials"] = server_kw.pop("credentials", None)
    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise box["error"]
    try:
        yield address if address.startswith("unix:") else f"127.0.0.1:{box['port']}"
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join()
        if "error" in box:
            raise box["error"]
