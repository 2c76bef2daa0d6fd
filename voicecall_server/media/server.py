"""The media-stream WebSocket endpoint (reference section 5), for every provider.

Admission, in order: total connection cap (503 before upgrading), pending caps overall and per IP
(close 1013), a valid ``start`` within ``preStartTimeoutMs`` (close 1008), and a per-call one-time
token compared in constant time for every provider. A dropped stream gets a reconnect grace; after
it the provider is asked whether the call is still up: a closed stream alone never ends a call.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from providers.base import EventType, ProviderError, ProviderEvent

from ..domain import CallRecord
from ..logs import set_call_id
from ..manager import CallManager
from . import wsframes
from .codec import Inbound, Kind, StreamCodec, StreamCodecError
from .websocket import MediaSocket

log = logging.getLogger("voicecall.media")

CLOSE_POLICY = wsframes.CLOSE_POLICY  # 1008
CLOSE_TRY_AGAIN = wsframes.CLOSE_TRY_AGAIN  # 1013


@dataclass(frozen=True, slots=True)
class MediaSettings:
    path: str = "/voice/stream"
    max_connections: int = 128
    max_pending: int = 32
    max_pending_per_ip: int = 4
    pre_start_timeout_s: float = 5.0
    max_frame_bytes: int = 64 * 1024
    max_buffered_bytes: int = 1024 * 1024
    reconnect_grace_s: float = 2.0


class StreamSession:
    """One accepted stream of one call. Sending never blocks the caller (the pacer): each frame is
    written to the socket's transport at once, already framed, with no task, queue or coroutine per
    frame; a stream whose unsent bytes exceed the limit stopped draining and is closed (1013)
    rather than letting audio pile up."""

    def __init__(self, sock: MediaSocket, codec: StreamCodec, start: Inbound, call: CallRecord, limit: int):
        self.sock = sock
        self.call_id = call.call_id
        self.provider_call_id = start.provider_call_id
        self.stream_id = start.stream_id
        self.frames = codec.outbound(start.stream_id)
        self.closed = False
        self.on_media: Callable[[bytes], None] | None = None
        self.on_mark: Callable[[str], None] | None = None
        self._limit = limit
        self._closer: asyncio.Task[None] | None = None
        # DTMF events of this stream, handled one after another in arrival order.
        self.dtmf: asyncio.Task[None] | None = None

    def _send(self, text: str) -> None:
        if self.closed:
            return
        sock = self.sock
        transport = sock.transport
        # sock.closed turns true when either side starts the closing handshake: no data frame may
        # follow a close frame (RFC 6455 5.5.1), so nothing is written after it.
        if transport is None or transport.is_closing() or sock.closed:
            self.closed = True
            return
        if transport.get_write_buffer_size() > self._limit:
            log.warning("media stream for call %s is not draining; closing it", self.call_id)
            self.closed = True
            self._closer = asyncio.get_running_loop().create_task(self._close_overloaded())
            return
        transport.write(wsframes.frame(wsframes.OP_TEXT, text.encode()))

    async def _close_overloaded(self) -> None:
        await self.sock.close(CLOSE_TRY_AGAIN, "Back-pressure")

    def send_frame(self, frame: bytes) -> None:
        self._send(self.frames.media(frame))

    def send_mark(self, name: str) -> None:
        self._send(self.frames.mark(name))

    def send_clear(self) -> None:
        self._send(self.frames.clear())

    async def aclose(self) -> None:
        self.closed = True
        pending = [t for t in (self._closer, self.dtmf) if t is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


SessionHook = Callable[[StreamSession], None]


class MediaServer:
    def __init__(self, settings: MediaSettings, codec: StreamCodec, manager: CallManager) -> None:
        self.settings = settings
        self.codec = codec
        self.manager = manager
        self.sessions: dict[str, StreamSession] = {}
        self.on_session_start: SessionHook | None = None
        self.on_session_end: SessionHook | None = None
        self._open = 0
        self._pending = 0
        self._pending_by_ip: dict[str, int] = {}
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._sockets: set[MediaSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.rejected: dict[str, int] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(self.settings.path, self.handle)

    def has_stream(self, call_id: str) -> bool:
        session = self.sessions.get(call_id)
        return session is not None and not session.closed

    def _reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._open >= self.settings.max_connections:
            self._reject("capacity")
            return web.Response(status=503, text="Service Unavailable\n")
        # No extensions (permessage-deflate): base64 audio does not compress.
        sock = MediaSocket(request, max_message=self.settings.max_frame_bytes)
        response = await sock.accept()
        self._open += 1
        self._sockets.add(sock)
        try:
            await self._serve(sock, request.remote or "", dict(request.query))
        finally:
            self._open -= 1
            self._sockets.discard(sock)
            await sock.close()
        return response

    async def _serve(self, sock: MediaSocket, ip: str, query: dict[str, str]) -> None:
        if (
            self._pending >= self.settings.max_pending
            or self._pending_by_ip.get(ip, 0) >= self.settings.max_pending_per_ip
        ):
            self._reject("pending")
            await sock.close(CLOSE_TRY_AGAIN, "Too many pending connections")
            return
        self._pending += 1
        self._pending_by_ip[ip] = self._pending_by_ip.get(ip, 0) + 1
        try:
            accepted = await self._await_start(sock, query)
        finally:
            self._pending -= 1
            left = self._pending_by_ip[ip] - 1
            if left:
                self._pending_by_ip[ip] = left
            else:
                del self._pending_by_ip[ip]
        if accepted is None:
            return
        start, call = accepted
        session = StreamSession(sock, self.codec, start, call, self.settings.max_buffered_bytes)
        await self._run(sock, session)

    async def _await_start(
        self, sock: MediaSocket, query: dict[str, str]
    ) -> tuple[Inbound, CallRecord] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.pre_start_timeout_s
        while True:
            remaining = deadline - loop.time()
            try:
                msg = await sock.receive(max(0.0, remaining))
            except TimeoutError:
                self._reject("start_timeout")
                await sock.close(CLOSE_POLICY, "Start timeout")
                return None
            if msg is None:
                self._reject("closed_before_start")
                return None
            if not isinstance(msg, str):
                self._reject("closed_before_start")
                await sock.close(CLOSE_POLICY, "Expected a text frame")
                return None
            try:
                frame = self.codec.parse(msg)
            except StreamCodecError:
                continue  # unparseable frames are ignored, as the providers' own clients do
            if frame.kind is not Kind.START:
                continue
            return await self._authenticate(sock, frame, query)

    async def _authenticate(
        self, sock: MediaSocket, start: Inbound, query: dict[str, str]
    ) -> tuple[Inbound, CallRecord] | None:
        token = start.token or query.get("token", "")
        call = self.manager.find(start.provider_call_id) if start.provider_call_id else None
        expected = call.stream_token if call is not None and not call.terminal else None
        if not start.provider_call_id or call is None or expected is None:
            self._reject("unknown_call")
            await sock.close(CLOSE_POLICY, "Unknown call")
            return None
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            self._reject("bad_token")
            log.warning("media stream for call %s rejected: invalid token", call.call_id)
            await sock.close(CLOSE_POLICY, "Invalid token")
            return None
        if self.has_stream(call.call_id):
            # A genuine reconnect comes after the old stream dropped; a second stream while one is
            # live is a replayed token, and must not take over the call's audio.
            self._reject("already_streaming")
            log.warning("second media stream for call %s rejected: one is already live", call.call_id)
            await sock.close(CLOSE_POLICY, "Stream already active")
            return None
        return start, call

    async def _run(self, sock: MediaSocket, session: StreamSession) -> None:
        call_id = session.call_id
        set_call_id(call_id)  # this stream's log lines, and the voice tasks it starts, name the call
        if (old := self.sessions.get(call_id)) is not None and old is not session:
            old.closed = True
        if (handle := self._grace.pop(call_id, None)) is not None:
            handle.cancel()
        self.sessions[call_id] = session
        if self.on_session_start is not None:
            self.on_session_start(session)
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        closed = asyncio.ensure_future(sock.wait_closed())
        # Frames that arrived with or after the start are delivered from here on, in order.
        sock.deliver_to(self._receiver(session, stopped))
        try:
            await asyncio.wait((stopped, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            await session.aclose()
            if self.sessions.get(call_id) is session:
                del self.sessions[call_id]
                self._start_grace(session)
            if self.on_session_end is not None:
                self.on_session_end(session)

    def _receiver(self, session: StreamSession, stopped: asyncio.Future[None]) -> Callable[[str], None]:
        """Called with each text message as the socket parses it (inside data_received)."""
        parse = self.codec.parse
        call_id = session.call_id
        # Frames are parsed in the connection's callbacks, outside this stream's task and the call
        # id it bound for logging; work started from them runs in a copy of that context.
        context = contextvars.copy_context()

        def receive(text: str) -> None:
            if stopped.done():
                return  # after `stop` (or a failure) the stream is over, whatever still arrives
            try:
                frame = parse(text)
            except StreamCodecError:
                return  # unparseable frames are ignored, as the providers' own clients do
            try:
                kind = frame.kind
                if kind is Kind.MEDIA:
                    if session.on_media is not None:
                        session.on_media(frame.payload)
                elif kind is Kind.MARK:
                    if session.on_mark is not None:
                        session.on_mark(frame.name)
                elif kind is Kind.DTMF and frame.name:
                    event = ProviderEvent(
                        EventType.DTMF, session.provider_call_id, call_id, digits=frame.name
                    )
                    # In the stream's own context: the handling logs under the call's id.
                    session.dtmf = asyncio.get_running_loop().create_task(
                        self._dtmf(session.dtmf, event), context=context
                    )
                elif kind is Kind.STOP and not stopped.done():
                    stopped.set_result(None)
            except Exception:
                context.run(
                    log.exception, "media stream of call %s failed on an inbound frame; closing it", call_id
                )
                if not stopped.done():
                    stopped.set_result(None)

        return receive

    async def _dtmf(self, before: asyncio.Task[None] | None, event: ProviderEvent) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        await self.manager.handle_events([event])

    def _start_grace(self, session: StreamSession) -> None:
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._grace.pop(session.call_id, None)
            task = loop.create_task(self._after_grace(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._grace[session.call_id] = loop.call_later(self.settings.reconnect_grace_s, expire)

    async def _after_grace(self, session: StreamSession) -> None:
        """No reconnect in time: the provider, not the socket, says whether the call is over."""
        rec = self.manager.find(session.call_id)
        if rec is None or rec.terminal or not rec.provider_call_id or session.call_id in self.sessions:
            return
        try:
            status = await self.manager.provider.fetch_status(rec.provider_call_id)
        except ProviderError:
            return
        if status.is_terminal:
            end = ProviderEvent(
                EventType.ENDED, rec.provider_call_id, rec.call_id, end_reason=status.end_reason
            )
            await self.manager.handle_events([end])
        else:
            log.info(
                "media stream of call %s dropped; the call goes on with the provider's own voice", rec.call_id
            )

    async def aclose(self) -> None:
        for handle in self._grace.values():
            handle.cancel()
        self._grace.clear()
        sockets = list(self._sockets)
        for sock in sockets:  # every close frame goes out now; the handshakes finish together
            sock.begin_close(wsframes.CLOSE_GOING_AWAY, "Server shutting down")
        await asyncio.gather(*(sock.close() for sock in sockets))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
