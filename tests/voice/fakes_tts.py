"""Loopback fakes for the TTS APIs (their real wire formats) and test doubles for playback/pacing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OPENAI_KEY = "sk-test-openai-0123456789"
ELEVEN_KEY = "xi-test-eleven-0123456789"


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeTtsServer:
    """Serves OpenAI's ``POST /v1/audio/speech`` and ElevenLabs' ``POST /v1/text-to-speech/{id}/stream``.

    ``chunks`` are streamed one by one; when ``hold_last`` is set the last chunk waits for
    ``release`` so a test can observe what the client produced before the stream ended.
    """

    chunks: list[bytes] = field(default_factory=list)
    hold_last: bool = False
    status: int = 200
    error_body: str = ""
    break_after: int | None = None
    requests: list[Recorded] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    last_sent: bool = False
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeTtsServer:
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self._openai)
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._eleven)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> None:
        raw = await request.read()
        self.requests.append(
            Recorded(request.path, dict(request.query), dict(request.headers), json.loads(raw or b"{}"))
        )

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if request.headers.get("Authorization") != f"Bearer {OPENAI_KEY}" or self.status != 200:
            status = self.status if self.status != 200 else 401
            body = self.error_body or json.dumps(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {OPENAI_KEY}",
                        "type": "invalid_request_error",
                    }
                }
            )
            return web.Response(status=status, text=body, content_type="application/json")
        return await self._stream(request, "application/octet-stream")

    async def _eleven(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if request.headers.get("xi-api-key") != ELEVEN_KEY or self.status != 200:
            status = self.status if self.status != 200 else 401
            body = self.error_body or json.dumps(
                {"detail": {"status": "invalid_api_key", "message": f"Invalid API key {ELEVEN_KEY}"}}
            )
            return web.Response(status=status, text=body, content_type="application/json")
        if "output_format" not in request.query:
            return web.Response(
                status=422, text='{"detail": "output_format"}', content_type="application/json"
            )
        return await self._stream(request, "audio/basic")

    async def _stream(self, request: web.Request, content_type: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i, chunk in enumerate(self.chunks):
            if self.break_after is not None and i == self.break_after:
                # Drop the connection mid-body, as a failing upstream would.
                assert request.transport is not None
                request.transport.close()
                return resp
            if self.hold_last and i == len(self.chunks) - 1:
                await self.release.wait()
            await resp.write(chunk)
        self.last_sent = True
        await resp.write_eof()
        return resp


class FakeSink:
    """Records what playback sends to the media stream, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.on_frame: Callable[[int], None] | None = None

    def send_frame(self, frame: bytes) -> None:
        self.events.append(("frame", frame))
        if self.on_frame is not None:
            self.on_frame(len(self.frames))

    def send_mark(self, name: str) -> None:
        self.events.append(("mark", name))

    def send_clear(self) -> None:
        self.events.append(("clear", None))

    @property
    def frames(self) -> list[bytes]:
        return [v for k, v in self.events if k == "frame"]

    @property
    def marks(self) -> list[str]:
        return [v for k, v in self.events if k == "mark"]

    @property
    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


_END = object()


class ScriptedAudio:
    """An audio iterator a test feeds by hand: ``feed(bytes)``, ``fail(exc)``, ``end()``."""

    def __init__(self, *chunks: bytes, end: bool = False) -> None:
        self._q: asyncio.Queue[object] = asyncio.Queue()
        self.started = False
        self.closed = False
        for c in chunks:
            self.feed(c)
        if end:
            self.end()

    def feed(self, data: bytes) -> None:
        self._q.put_nowait(data)

    def fail(self, exc: BaseException) -> None:
        self._q.put_nowait(exc)

    def end(self) -> None:
        self._q.put_nowait(_END)

    @property
    def drained(self) -> bool:
        return self._q.empty()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        item = await self._q.get()
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, bytes)
        return item

    async def aclose(self) -> None:
        self.closed = True


async def settle(until: Callable[[], bool] | None = None, rounds: int = 200) -> None:
    """Let the loop run queued work (no I/O involved) until ``until()`` holds."""
    for _ in range(rounds):
        if until is not None and until():
            return
        await asyncio.sleep(0)
    if until is not None:
        assert until(), "condition not reached"


class FakeClock:
    """Monotonic time that only moves when the pacer sleeps; optional extra lateness per sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.oversleep: dict[int, float] = {}  # sleep index -> extra seconds

    def __call__(self) -> float:
        return self.now

    def sleep(self, delay: float) -> Awaitable[None]:
        extra = self.oversleep.get(len(self.sleeps), 0.0)
        self.sleeps.append(delay)
        self.now += delay + extra
        return asyncio.sleep(0)
