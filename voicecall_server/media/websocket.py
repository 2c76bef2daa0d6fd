"""One media-stream WebSocket: the upgrade through aiohttp, then the frames read off the connection
by ``wsframes.FrameParser`` inside aiohttp's ``data_received``.

Before the stream is accepted, messages wait in a small queue for ``receive``; once the media
server hands the socket a callback (``deliver_to``), each text message is passed to it as it is
parsed: no queue, future or task wake-up per audio frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from . import wsframes

# How long our close frame waits for the peer's before the connection is dropped anyway.
CLOSE_TIMEOUT_S = 2.0


class MediaSocket:
    """A server-side WebSocket for one media stream. ``closed`` turns true as soon as either side
    starts the closing handshake or the connection drops: no data frame may follow a close."""

    def __init__(self, request: web.Request, *, max_message: int) -> None:
        self._request = request
        self._transport: asyncio.WriteTransport | None = None
        self._parser = wsframes.FrameParser(
            max_message=max_message,
            on_message=self._on_message,
            on_ping=self._on_ping,
            on_close=self._on_close,
        )
        self._inbox: deque[str | bytes] = deque()
        self._arrived: asyncio.Event = asyncio.Event()
        self._deliver: Callable[[str], None] | None = None
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._peer_closed = asyncio.Event()
        self.closed = False

    async def accept(self) -> web.StreamResponse:
        """Answer the upgrade (101) and start reading frames; raises ``web.HTTPBadRequest`` when the
        request is not a WebSocket upgrade."""
        try:
            accept = wsframes.accept_key(self._request.headers)
        except wsframes.HandshakeError as err:
            raise web.HTTPBadRequest(text=f"{err}\n") from None
        response = web.StreamResponse(
            status=101,
            headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept},
        )
        response.force_close()
        protocol = self._request.protocol
        transport = self._request.transport
        if transport is None:
            raise ConnectionResetError("the connection closed during the upgrade")
        # Duck-typed: uvloop's transports do not subclass asyncio's transport classes.
        self._transport = cast(asyncio.WriteTransport, transport)
        await response.prepare(self._request)
        # Bytes that arrived after the upgrade request are kept by aiohttp and fed to the parser
        # here; from now on data_received feeds it directly.
        protocol.set_parser(cast(Any, _ParserAdapter(self)))
        protocol.keep_alive(False)
        return response

    @property
    def transport(self) -> asyncio.WriteTransport | None:
        return self._transport

    # -- inbound ---------------------------------------------------------------------------------

    def _on_message(self, opcode: int, payload: str | bytes) -> None:
        deliver = self._deliver
        if deliver is not None:
            if opcode == wsframes.OP_TEXT:
                deliver(cast(str, payload))
            return
        self._inbox.append(payload)
        self._arrived.set()

    def _on_ping(self, payload: bytes) -> None:
        if not self.closed:
            self.write(wsframes.frame(wsframes.OP_PONG, payload))

    def _on_close(self, code: int | None, reason: str) -> None:
        self._peer_closed.set()
        if not self.closed:
            # The peer started the closing handshake: answer it, then drop the connection.
            self.begin_close(code if code is not None else wsframes.CLOSE_NORMAL)
            self._drop()

    def _protocol_error(self, err: wsframes.ProtocolError) -> None:
        self.begin_close(err.code, err.reason)
        self._drop()

    def _lost(self) -> None:
        self.closed = True
        self._peer_closed.set()
        self._arrived.set()
        if not self._gone.done():
            self._gone.set_result(None)

    def _drop(self) -> None:
        self._arrived.set()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        # connection_lost follows and resolves _gone.

    async def receive(self, timeout: float) -> str | bytes | None:
        """The next message before the stream is accepted; None once the socket is closing or
        closed. Raises TimeoutError when nothing arrives in time."""
        async with asyncio.timeout(timeout):
            while not self._inbox:
                if self.closed:
                    return None
                self._arrived.clear()
                await self._arrived.wait()
        return self._inbox.popleft()

    def deliver_to(self, callback: Callable[[str], None]) -> None:
        """From now on pass each text message to ``callback`` as it is parsed (after those already
        queued); binary messages are dropped, as media streams carry none."""
        self._deliver = callback
        while self._inbox and self._deliver is callback:
            message = self._inbox.popleft()
            if isinstance(message, str):
                callback(message)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._gone)

    # -- outbound --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def begin_close(self, code: int = wsframes.CLOSE_NORMAL, reason: str = "") -> None:
        """Send our close frame now (once); nothing is written after it."""
        if not self.closed:
            self.closed = True
            self.write(wsframes.close_frame(code, reason))

    async def close(self, code: int = wsframes.CLOSE_NORMAL, reason: str = "") -> None:
        """Start (or finish) the closing handshake and drop the connection once the peer answers,
        or after ``CLOSE_TIMEOUT_S``."""
        self.begin_close(code, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._peer_closed.wait()
        self._drop()


class _ParserAdapter:
    """What aiohttp's request handler feeds an upgraded connection's bytes to."""

    __slots__ = ("_socket",)

    def __init__(self, socket: MediaSocket) -> None:
        self._socket = socket

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        try:
            self._socket._parser.feed(data)
        except wsframes.ProtocolError as err:
            self._socket._protocol_error(err)
        return False, b""

    def feed_eof(self) -> None:
        self._socket._lost()
