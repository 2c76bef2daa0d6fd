"""Typed asyncio client for voicecall.v1.VoiceCallService."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

import grpc

from voicecall_client.errors import InvalidArgument, VoiceCallError, from_rpc_error
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from voicecall_client.v1.voicecall_service_pb2_grpc import VoiceCallServiceAsyncStub

DEFAULT_TARGET = "127.0.0.1:50051"

# The server waits transcriptTimeoutMs (default 180 s) for the caller when Continue has no timeout;
# the margin also covers speaking the message before listening starts.
SERVER_DEFAULT_TURN_WAIT = 180.0
CONTINUE_DEADLINE_MARGIN = 60.0

# Events per Tail message the client accepts: a replay or a burst arrives in far fewer messages.
TAIL_BATCH = 256
TAIL_BACKOFF_INITIAL = 0.2
TAIL_BACKOFF_MAX = 5.0

_MODES: dict[str, pb.CallMode.ValueType] = {
    "": pb.CALL_MODE_UNSPECIFIED,
    "unspecified": pb.CALL_MODE_UNSPECIFIED,
    "notify": pb.CALL_MODE_NOTIFY,
    "conversation": pb.CALL_MODE_CONVERSATION,
}

_RespT = TypeVar("_RespT")
_ReqT = TypeVar("_ReqT")

RetryHook = Callable[[VoiceCallError, float], None]


class _Unary(Protocol[_ReqT, _RespT]):
    def __call__(
        self,
        request: _ReqT,
        *,
        timeout: float | None = ...,
        metadata: tuple[tuple[str, str], ...] | None = ...,
    ) -> grpc.aio.UnaryUnaryCall[_ReqT, _RespT]: ...


@dataclass(frozen=True)
class TlsOptions:
    """TLS for the channel: a CA bundle to trust, an optional client certificate, a name override."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the files now, so a bad path fails at construction rather than on the first call."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLS client authentication needs both cert_file and key_file")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def parse_mode(mode: str | int | None) -> pb.CallMode.ValueType:
    """Accept "notify" / "conversation" (any case, also CALL_MODE_*), a pb.CallMode value, or None."""
    if mode is None:
        return pb.CALL_MODE_UNSPECIFIED
    if isinstance(mode, bool):
        raise InvalidArgument(f"invalid mode {mode!r}", reason="INVALID_FIELD", metadata={"field": "mode"})
    if isinstance(mode, int):
        if mode in pb.CallMode.values():
            return pb.CallMode.ValueType(mode)
        raise InvalidArgument(f"invalid mode {mode}", reason="INVALID_FIELD", metadata={"field": "mode"})
    key = mode.strip().lower().removeprefix("call_mode_")
    if key in _MODES:
        return _MODES[key]
    raise InvalidArgument(
        f"invalid mode {mode!r}: use notify or conversation",
        reason="INVALID_FIELD",
        metadata={"field": "mode"},
    )


def _retryable(err: VoiceCallError) -> bool:
    # Only transport failures (no ErrorInfo) and a server on its way down: the request never ran, or it
    # carries a request_id that makes the repeat safe. PROVIDER_UNAVAILABLE is the server's verdict.
    return err.code == grpc.StatusCode.UNAVAILABLE and err.reason in ("", "SHUTTING_DOWN")


class VoiceCallClient:
    """Async client for the voicecall sidecar. Use ``async with`` or call ``close()``.

    Every method raises a :class:`VoiceCallError` subclass, never a raw gRPC error.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        tls: TlsOptions | None = None,
        default_timeout: float = 30.0,
        retry_attempts: int = 3,
        retry_backoff: float = 0.2,
    ) -> None:
        if default_timeout <= 0:
            raise ValueError("default_timeout must be positive")
        self.target = target
        self.default_timeout = default_timeout
        self.retry_attempts = max(1, retry_attempts)
        self.retry_backoff = retry_backoff
        self._tls = tls
        self._credentials = tls.credentials() if tls is not None else None
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub_obj: VoiceCallServiceAsyncStub | None = None

    def __repr__(self) -> str:
        # The token is deliberately absent.
        auth = "token" if self._metadata else "none"
        return f"VoiceCallClient(target={self.target!r}, tls={self._tls is not None}, auth={auth})"

    async def __aenter__(self) -> VoiceCallClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        channel, self._channel, self._stub_obj = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _stub(self) -> VoiceCallServiceAsyncStub:
        # The aio channel binds to the running loop, so it is made on first use, not in __init__.
        if self._stub_obj is None:
            if self._credentials is not None:
                options: list[tuple[str, str | int]] = []
                if self._tls is not None and self._tls.server_name:
                    options.append(("grpc.ssl_target_name_override", self._tls.server_name))
                self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=options)
            else:
                self._channel = grpc.aio.insecure_channel(self.target)
            self._stub_obj = pb_grpc.VoiceCallServiceStub(self._channel)
        return self._stub_obj

    async def _unary(
        self,
        method: _Unary[_ReqT, _RespT],
        request: _ReqT,
        timeout: float | None = None,
        *,
        retry: bool = True,
    ) -> _RespT:
        deadline = self.default_timeout if timeout is None else timeout
        delay = self.retry_backoff
        attempts = self.retry_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await method(request, timeout=deadline, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                err = from_rpc_error(exc)
                if attempt >= attempts or not _retryable(err):
                    raise err from exc
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def initiate_call(
        self,
        to: str = "",
        message: str = "",
        *,
        mode: str | int | None = None,
        session_key: str = "",
        request_id: str | None = None,
        dtmf_sequence: str = "",
    ) -> pb.InitiateResponse:
        """Place an outbound call. Empty ``to`` means the server's toNumber; mode None its defaultMode.

        ``dtmf_sequence`` is played once the call is answered, before the message (w = wait).
        """
        request = pb.InitiateRequest(
            to_number=to,
            message=message,
            mode=parse_mode(mode),
            session_key=session_key,
            request_id=request_id or str(uuid.uuid4()),
            dtmf_sequence=dtmf_sequence,
        )
        return await self._unary(self._stub().Initiate, request)

    async def continue_call(
        self, call_id: str, message: str, *, timeout: float | None = None, request_id: str | None = None
    ) -> pb.ContinueResponse:
        """Speak ``message`` and wait up to ``timeout`` seconds (None: server default) for the reply."""
        request = pb.ContinueRequest(
            call_id=call_id, message=message, request_id=request_id or str(uuid.uuid4())
        )
        if timeout is not None:
            if timeout <= 0:
                raise InvalidArgument(
                    "timeout must be positive", reason="INVALID_FIELD", metadata={"field": "timeout"}
                )
            request.timeout.FromNanoseconds(round(timeout * 1e9))
        wait = SERVER_DEFAULT_TURN_WAIT if timeout is None else timeout
        return await self._unary(self._stub().Continue, request, timeout=wait + CONTINUE_DEADLINE_MARGIN)

    async def speak(self, call_id: str, message: str, *, request_id: str | None = None) -> pb.SpeakResponse:
        """Say ``message`` on a live call without waiting for the caller."""
        request = pb.SpeakRequest(
            call_id=call_id, message=message, request_id=request_id or str(uuid.uuid4())
        )
        return await self._unary(self._stub().Speak, request)

    async def end_call(self, call_id: str) -> pb.EndResponse:
        """Hang up; ending an ended call succeeds."""
        return await self._unary(self._stub().End, pb.EndRequest(call_id=call_id))

    async def status(self, call_id: str) -> pb.Call:
        """The call record for a call id or provider call id; NotFound if unknown."""
        response = await self._unary(self._stub().Status, pb.StatusRequest(call_id=call_id))
        return response.call

    async def send_dtmf(self, call_id: str, digits: str) -> pb.SendDtmfResponse:
        """Play touch tones (0-9 * # A-D, w = half-second wait) on a live call."""
        # SendDtmf carries no request_id, so a repeat could play the digits twice: never retried.
        request = pb.SendDtmfRequest(call_id=call_id, digits=digits)
        return await self._unary(self._stub().SendDtmf, request, retry=False)

    async def list_calls(
        self, *, live_only: bool = False, page_size: int = 0, page_token: str = ""
    ) -> pb.ListCallsResponse:
        """One page of calls, newest first."""
        request = pb.ListCallsRequest(live_only=live_only, page_size=page_size, page_token=page_token)
        return await self._unary(self._stub().ListCalls, request)

    async def iter_calls(
        self, *, live_only: bool = False, page_size: int = 100
    ) -> AsyncGenerator[pb.Call, None]:
        """Every call, newest first, fetching pages as the caller consumes them."""
        token = ""
        while True:
            page = await self.list_calls(live_only=live_only, page_size=page_size, page_token=token)
            for call in page.calls:
                yield call
            token = page.next_page_token
            if not token or not page.calls:
                return

    async def tail(
        self,
        call_id: str = "",
        after_sequence: int = 0,
        *,
        reconnect: bool = True,
        on_retry: RetryHook | None = None,
    ) -> AsyncGenerator[pb.CallEvent, None]:
        """Events after ``after_sequence`` (0: the whole log), then live, in sequence order.

        With ``reconnect``, a dropped stream (UNAVAILABLE) or a slow-consumer cut-off
        (RESOURCE_EXHAUSTED) is resumed after the last event yielded, with capped exponential
        backoff; ``on_retry(error, delay)`` is told before each wait. Close the iterator (e.g.
        ``contextlib.aclosing``) to stop early.
        """
        last = after_sequence
        delay = TAIL_BACKOFF_INITIAL
        while True:
            call = self._stub().Tail(
                pb.TailRequest(call_id=call_id, after_sequence=last, max_batch=TAIL_BATCH),
                metadata=self._metadata,
            )
            try:
                async for response in call:
                    # A sidecar older than max_batch sends one event per message, in `event`.
                    events = response.events or [response.event]
                    for event in events:
                        if event.sequence <= last:
                            continue
                        last = event.sequence
                        delay = TAIL_BACKOFF_INITIAL
                        yield event
                return
            except grpc.aio.AioRpcError as exc:
                err = from_rpc_error(exc)
                resumable = err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
                if not (reconnect and resumable):
                    raise err from exc
            finally:
                call.cancel()
            if on_retry is not None:
                on_retry(err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, TAIL_BACKOFF_MAX)
