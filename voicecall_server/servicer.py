"""The gRPC servicer: validates requests, calls the manager, maps errors (one place) to statuses."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc

from .bus import EventBus, SubscriberOverflow
from .domain import CallEvent
from .errors import ERROR_DOMAIN, CallError, Reason
from .manager import CallManager
from .store import Store
from .wire import call_to_pb, event_to_pb, mode_from_pb

log = logging.getLogger("voicecall.rpc")
T = TypeVar("T")
MAX_MESSAGE_CHARS = 4096
REPLAY_PAGE = 500
# The most events one batched Tail message carries (TailRequest.max_batch above it is capped).
MAX_TAIL_BATCH = 1000
LIVE_MESSAGE_CACHE = 1024


def _status_for(err: CallError) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=err.reason.value, domain=ERROR_DOMAIN, metadata=err.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=err.status.value[0], message=err.message, details=[detail])


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: CallError) -> None:
    await context.abort_with_status(rpc_status.to_status(_status_for(err)))


def _check_text(value: str, name: str) -> str:
    if len(value) > MAX_MESSAGE_CHARS:
        raise CallError(
            Reason.INVALID_FIELD, f"{name} is longer than {MAX_MESSAGE_CHARS} characters", field=name
        )
    return value


def _tail_message(events: Sequence[CallEvent], batched: bool) -> pb.TailResponse:
    if batched:
        return pb.TailResponse(events=[event_to_pb(ev) for ev in events])
    (only,) = events
    return pb.TailResponse(event=event_to_pb(only))


class VoiceCallServicer(pb_grpc.VoiceCallServiceServicer):
    def __init__(self, manager: CallManager, store: Store, bus: EventBus) -> None:
        self.manager = manager
        self.store = store
        self.bus = bus
        self.shutting_down = asyncio.Event()
        self._live_messages: OrderedDict[tuple[bool, tuple[int, ...]], pb.TailResponse] = OrderedDict()

    def _live_message(self, events: list[CallEvent], batched: bool) -> pb.TailResponse:
        """One message per live event (or batch of events), shared by every subscriber it fans
        out to: a burst reaches most subscribers as the same batch, and a thousand Tail streams
        would otherwise each build the same message. Never mutated once built."""
        key = (batched, tuple(ev.sequence for ev in events))
        message = self._live_messages.get(key)
        if message is None:
            message = _tail_message(events, batched)
            self._live_messages[key] = message
            if len(self._live_messages) > LIVE_MESSAGE_CACHE:
                self._live_messages.popitem(last=False)
        return message

    async def _run(self, context: grpc.aio.ServicerContext[Any, Any], op: Callable[[], Awaitable[T]]) -> T:
        # Whatever the RPC changed (a failed dial's record too) is on disk before it answers.
        try:
            result = await op()
            await self.store.flush()
            return result
        except CallError as err:
            await self.store.flush()
            await abort(context, err)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("internal error")
            await abort(context, CallError(Reason.INTERNAL, "internal error; see the sidecar's log"))
        raise AssertionError("unreachable")  # abort() always raises

    async def Initiate(
        self, request: pb.InitiateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InitiateResponse:
        async def op() -> pb.InitiateResponse:
            try:
                mode = mode_from_pb(request.mode)
            except ValueError as err:
                raise CallError(Reason.INVALID_FIELD, str(err), field="mode") from None
            rec = await self.manager.initiate(
                to_number=request.to_number,
                message=_check_text(request.message, "message"),
                mode=mode,
                session_key=_check_text(request.session_key, "session_key"),
                request_id=_check_text(request.request_id, "request_id"),
                dtmf_sequence=request.dtmf_sequence,
            )
            return pb.InitiateResponse(call_id=rec.call_id, call=call_to_pb(rec))

        return await self._run(context, op)

    async def Continue(
        self, request: pb.ContinueRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ContinueResponse:
        async def op() -> pb.ContinueResponse:
            timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else None
            transcript, rec = await self.manager.continue_turn(
                request.call_id,
                _check_text(request.message, "message"),
                timeout_s=timeout,
                request_id=request.request_id,
            )
            return pb.ContinueResponse(transcript=transcript, call=call_to_pb(rec))

        return await self._run(context, op)

    async def Speak(
        self, request: pb.SpeakRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SpeakResponse:
        async def op() -> pb.SpeakResponse:
            rec = await self.manager.speak(
                request.call_id, _check_text(request.message, "message"), request_id=request.request_id
            )
            return pb.SpeakResponse(call=call_to_pb(rec))

        return await self._run(context, op)

    async def End(
        self, request: pb.EndRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EndResponse:
        async def op() -> pb.EndResponse:
            return pb.EndResponse(call=call_to_pb(await self.manager.end(request.call_id)))

        return await self._run(context, op)

    async def SendDtmf(
        self, request: pb.SendDtmfRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SendDtmfResponse:
        async def op() -> pb.SendDtmfResponse:
            return pb.SendDtmfResponse(
                call=call_to_pb(await self.manager.send_dtmf(request.call_id, request.digits))
            )

        return await self._run(context, op)

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StatusResponse:
        async def op() -> pb.StatusResponse:
            return pb.StatusResponse(call=call_to_pb(self.manager.get(request.call_id)))

        return await self._run(context, op)

    async def ListCalls(
        self, request: pb.ListCallsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCallsResponse:
        async def op() -> pb.ListCallsResponse:
            if request.page_size < 0:
                raise CallError(Reason.INVALID_FIELD, "page_size must not be negative", field="page_size")
            calls, token = self.manager.list_calls(
                live_only=request.live_only, page_size=request.page_size, page_token=request.page_token
            )
            return pb.ListCallsResponse(calls=[call_to_pb(c) for c in calls], next_page_token=token)

        return await self._run(context, op)

    async def Tail(
        self, request: pb.TailRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TailResponse]:
        if request.after_sequence < 0:
            await abort(context, CallError(Reason.INVALID_FIELD, "after_sequence must not be negative"))
        call_id = request.call_id.strip()
        if call_id:
            rec = self.manager.find(call_id)
            if rec is None:
                await abort(context, CallError(Reason.CALL_NOT_FOUND, f"no call with id {call_id!r}"))
            assert rec is not None
            call_id = rec.call_id
        last = request.after_sequence
        batch = min(request.max_batch, MAX_TAIL_BATCH) or 1
        batched = batch > 1
        # Subscribe before replaying: anything committed from now on is queued, anything before is
        # in the log, and the sequence check drops what is both.
        with self.bus.subscribe(call_id) as sub:
            while True:
                page = self.store.events_after(last, call_id=call_id, limit=REPLAY_PAGE)
                for i in range(0, len(page), batch):
                    chunk = page[i : i + batch]
                    yield _tail_message(chunk, batched)
                    last = chunk[-1].sequence
                if len(page) < REPLAY_PAGE:
                    break
            while True:
                try:
                    first = await sub.get()
                except SubscriberOverflow:
                    await abort(
                        context,
                        CallError(
                            Reason.SUBSCRIBER_TOO_SLOW,
                            "subscriber too slow; resume with after_sequence set to the last sequence received",
                        ),
                    )
                    return
                except asyncio.CancelledError:
                    if self.shutting_down.is_set():
                        await abort(context, CallError(Reason.SHUTTING_DOWN, "the sidecar is shutting down"))
                    raise
                fresh = [ev for ev in (first, *sub.ready(batch - 1)) if ev.sequence > last]
                if not fresh:
                    continue
                yield self._live_message(fresh, batched)
                last = fresh[-1].sequence
