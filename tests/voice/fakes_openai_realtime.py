"""A loopback fake of the OpenAI Realtime transcription WebSocket (GA event shapes).

It serves ``GET /v1/realtime`` on 127.0.0.1, port 0, and speaks what the installed SDK's
``client.realtime`` expects: ``session.created`` on open, ``session.updated`` after a
``session.update``, and scripted server events. Appended audio is decoded and recorded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

_ids = itertools.count(1)


def _event_id() -> str:
    return f"event_{next(_ids)}"


class FakeRealtimeConnection:
    """One accepted socket: what the client sent, and handles to script the server side."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.ws = ws
        self.query = dict(request.query)
        self.authorization = request.headers.get("Authorization", "")
        self.received: list[dict[str, Any]] = []
        self.session_updates: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.appends = 0
        self.closed = asyncio.Event()

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps({"event_id": _event_id(), **event}))

    async def speech_started(self, item_id: str, audio_start_ms: int = 0) -> None:
        await self.send_event(
            {
                "type": "input_audio_buffer.speech_started",
                "item_id": item_id,
                "audio_start_ms": audio_start_ms,
            }
        )

    async def speech_stopped(self, item_id: str, audio_end_ms: int = 0) -> None:
        await self.send_event(
            {
                "type": "input_audio_buffer.speech_stopped",
                "item_id": item_id,
                "audio_end_ms": audio_end_ms,
            }
        )

    async def delta(self, item_id: str, text: str) -> None:
        await self.send_event(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item_id,
                "content_index": 0,
                "delta": text,
            }
        )

    async def completed(self, item_id: str, transcript: str, logprobs: list[float] | None = None) -> None:
        event: dict[str, Any] = {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": transcript,
            "usage": {"type": "tokens", "input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
        }
        if logprobs is not None:
            event["logprobs"] = [
                {"token": f"t{i}", "bytes": [116], "logprob": value} for i, value in enumerate(logprobs)
            ]
        await self.send_event(event)

    async def error(
        self, *, type: str, message: str, code: str | None = None, event_id: str | None = None
    ) -> None:
        await self.send_event(
            {
                "type": "error",
                "error": {
                    "type": type,
                    "code": code,
                    "message": message,
                    "param": None,
                    "event_id": event_id,
                },
            }
        )

    async def close(self, code: int = 1000) -> None:
        await self.ws.close(code=code)

    def drop(self) -> None:
        """Cut the TCP connection with no close frame, as a network failure would."""
        transport = self.request.transport
        assert transport is not None
        transport.abort()


class FakeRealtimeServer:
    """Scriptable fake: refuse upgrades, hold them, drop sockets after configuration."""

    def __init__(self) -> None:
        self.connections: list[FakeRealtimeConnection] = []
        self.attempts = 0
        self.refuse_status = 503
        self.refuse_remaining: int | None = 0  # None refuses every upgrade
        self.drops_after_update = 0
        self.reply_to_update = True
        self.reject_session_update: tuple[str, str, str] | None = None  # (type, code, message)
        self.hold: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = _bound_port(self._runner)

    async def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """The HTTP API base, as a user would configure it; the SDK derives ws:// from it."""
        return f"http://127.0.0.1:{self._port}/v1"

    def refuse(self, count: int | None, status: int = 503) -> None:
        self.refuse_remaining = count
        self.refuse_status = status

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse_remaining is None or self.refuse_remaining > 0:
            if self.refuse_remaining is not None:
                self.refuse_remaining -= 1
            body = {"error": {"type": "server_error", "message": "refused by the fake", "code": None}}
            return web.json_response(body, status=self.refuse_status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = FakeRealtimeConnection(request, ws)
        self.connections.append(conn)
        try:
            await conn.send_event(
                {
                    "type": "session.created",
                    "session": {"type": "transcription", "id": f"sess_{len(self.connections)}"},
                }
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._on_client_event(conn, json.loads(msg.data))
        finally:
            conn.closed.set()
        return ws

    async def _on_client_event(self, conn: FakeRealtimeConnection, data: dict[str, Any]) -> None:
        conn.received.append(data)
        kind = data.get("type")
        if kind == "input_audio_buffer.append":
            conn.audio += base64.b64decode(data["audio"], validate=True)
            conn.appends += 1
        elif kind == "session.update":
            conn.session_updates.append(data)
            if self.reject_session_update is not None:
                err_type, code, message = self.reject_session_update
                await conn.error(type=err_type, code=code, message=message, event_id=data.get("event_id"))
                return
            if not self.reply_to_update:
                return
            session = {**data["session"], "id": "sess_x", "object": "realtime.transcription_session"}
            await conn.send_event({"type": "session.updated", "session": session})
            if self.drops_after_update > 0:
                self.drops_after_update -= 1
                conn.drop()


def _bound_port(runner: web.AppRunner) -> int:
    addresses = runner.addresses
    assert addresses, "the fake is not listening"
    return int(addresses[0][1])


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until predicate() holds; the timeout only stops a broken test from hanging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.002)
